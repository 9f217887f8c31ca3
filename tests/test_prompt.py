import pytest

from codeact_envs import Chat, Turn
from codeact_envs._prompt import context_ids, first_turns, observation_turn, prompt_ids, reply_turn, system_prompt


@pytest.fixture(scope="module", params=["chatml", "qwen2.5"])
def tokenizer(request, tiny_model):
    """The tiny model's tokenizer with its ChatML template, and with the Qwen2.5 template that TRL ships."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    if request.param == "qwen2.5":
        tokenizer.chat_template = pytest.importorskip("trl.chat_template_utils").qwen2_5_chat_template
    return tokenizer


def test_the_env_system_prompt_is_the_one_the_model_reads_with_code_blocks(make_env):
    env = make_env()
    assert env.system_prompt == system_prompt(env._tools, "text")
    assert "def add(a: int, b: int) -> int:" in env.system_prompt
    assert "```python" in env.system_prompt


def test_the_tool_prompt_tells_the_model_to_send_code_with_the_python_tool(make_env):
    prompt = system_prompt(make_env()._tools, "tool")
    assert "def add(a: int, b: int) -> int:" in prompt
    assert "`python` tool" in prompt
    assert "```python" not in prompt


def test_an_unknown_action_format_is_refused():
    with pytest.raises(ValueError, match="actions must be one of"):
        system_prompt({}, "json")


def _canonical_turn(tokenizer, chat: Chat, reply: str) -> Turn:
    """What a model that samples the canonical tokens of `reply` would report."""
    output = [*tokenizer.encode(reply, add_special_tokens=False), tokenizer.eos_token_id]
    return Turn(reply, context_ids(tokenizer, chat), output)


def test_concatenated_turns_equal_the_template_on_the_whole_chat_for_canonical_replies(tokenizer):
    messages = first_turns(system_prompt({}, "text"), "Add 1 and 2.")
    first = _canonical_turn(tokenizer, Chat(messages), "```python\nx = add(1, 2)\nprint(x)\n```")
    messages += [reply_turn(first.text), observation_turn("3")]
    second = _canonical_turn(tokenizer, Chat(messages, [first]), "```python\nfinal_answer(x)\n```")
    whole_chat = prompt_ids(tokenizer, messages)
    assert second.prompt_ids == whole_chat
    assert second.prompt_ids[: len(first.prompt_ids) + len(first.output_ids)] == first.prompt_ids + first.output_ids


def test_a_reply_cut_before_its_end_token_is_closed_before_the_observation(tokenizer):
    messages = first_turns("Be brief.", "Say hi.")
    cut = Turn("hi", prompt_ids(tokenizer, messages), tokenizer.encode("hi", add_special_tokens=False))
    messages += [reply_turn("hi"), observation_turn("again")]
    context = context_ids(tokenizer, Chat(messages, [cut]))
    assert context == prompt_ids(tokenizer, messages)
