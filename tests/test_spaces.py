import gymnasium

from codeact_envs import UnicodeText


def test_any_string_is_in_the_space_whatever_its_characters_and_length():
    space = UnicodeText()
    assert space.contains("")
    assert space.contains("print('héllo 中文 🙂')\n" * 1000)
    assert not space.contains(b"bytes")
    assert not space.contains(42)


def test_it_is_a_gymnasium_text_space_so_converters_treat_it_as_text():
    assert isinstance(UnicodeText(), gymnasium.spaces.Text)


def test_samples_are_strings_of_the_space_and_reproducible_under_a_seed():
    first, again = UnicodeText(max_sample_length=20, seed=3), UnicodeText(max_sample_length=20, seed=3)
    samples = [first.sample() for _ in range(20)]
    assert samples == [again.sample() for _ in range(20)]
    assert all(first.contains(s) and len(s) <= 20 for s in samples)
    assert any(not s.isascii() for s in samples)
