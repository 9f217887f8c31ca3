import pytest
from test_collector import TASKS, make_numbers_env, solver

from codeact_envs import Collector, TransformersPolicy

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

TEMPERATURE = 0.7


@pytest.fixture(scope="module")
def model_and_tokenizer(tiny_model):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(0)
    return AutoModelForCausalLM.from_pretrained(tiny_model), AutoTokenizer.from_pretrained(tiny_model)


@pytest.fixture(scope="module")
def sampled(model_and_tokenizer):
    """Trajectories of the tiny model sampling its replies (garbage code: every episode runs to max_steps)."""
    model, tokenizer = model_and_tokenizer
    policy = TransformersPolicy(model, tokenizer, temperature=TEMPERATURE, max_new_tokens=12)
    with Collector(make_numbers_env, policy, TASKS[:2], num_envs=2) as collector:
        return [t for batch in collector for t in batch]


def test_every_model_call_is_recorded_with_its_tokens(sampled):
    for trajectory in sampled:
        assert len(trajectory.turns) == len(trajectory.actions) >= 1
        assert all(turn.output_ids and len(turn.output_log_probs) == len(turn.output_ids) for turn in trajectory.turns)


def test_the_sampled_ids_decode_to_the_recorded_replies(sampled, model_and_tokenizer):
    _, tokenizer = model_and_tokenizer
    for trajectory in sampled:
        replies = [m["content"] for m in trajectory.messages if m["role"] == "assistant"]
        decoded = [tokenizer.decode(turn.output_ids, skip_special_tokens=True) for turn in trajectory.turns]
        assert decoded == replies


def test_the_episode_is_one_id_sequence_whose_mask_marks_exactly_the_sampled_ids(sampled):
    for trajectory in sampled:
        ids, mask = trajectory.token_ids, trajectory.token_mask
        assert len(ids) == len(mask) == len(trajectory.token_log_probs)
        assert [i for i, m in zip(ids, mask, strict=True) if m] == [i for t in trajectory.turns for i in t.output_ids]
        assert ids[: len(trajectory.turns[0].prompt_ids)] == trajectory.turns[0].prompt_ids
        assert mask[: len(trajectory.turns[0].prompt_ids)] == [0] * len(trajectory.turns[0].prompt_ids)


def test_each_model_call_continues_the_ids_of_the_previous_one(sampled):
    for trajectory in sampled:
        for before, after in zip(trajectory.turns, trajectory.turns[1:], strict=False):
            assert after.prompt_ids[: len(before.prompt_ids) + len(before.output_ids)] == [
                *before.prompt_ids,
                *before.output_ids,
            ]


def test_log_probs_are_those_of_the_sampled_ids_under_the_temperature(sampled, model_and_tokenizer):
    model, _ = model_and_tokenizer
    trajectory = sampled[0]
    ids = torch.tensor([trajectory.token_ids])
    with torch.no_grad():
        log_probs = (model(ids).logits[0, :-1] / TEMPERATURE).log_softmax(-1)
    of_next = log_probs.gather(-1, ids[0, 1:, None]).squeeze(-1)
    model_positions = [i for i, m in enumerate(trajectory.token_mask) if m]
    expected = torch.tensor([of_next[i - 1].item() for i in model_positions])
    recorded = torch.tensor([trajectory.token_log_probs[i] for i in model_positions])
    torch.testing.assert_close(recorded, expected, atol=1e-4, rtol=1e-4)


def test_a_text_policy_gives_trajectories_without_tokens():
    with Collector(make_numbers_env, solver, TASKS[:1]) as collector:
        trajectory = next(iter(collector))[0]
    assert trajectory.turns == []
    assert trajectory.token_ids is None and trajectory.token_mask is None


def test_a_token_row_is_saved_with_its_ids_and_mask(sampled):
    import datasets

    rows = datasets.Dataset.from_list([t.to_dict() for t in sampled])
    assert rows[0]["token_ids"] == sampled[0].token_ids
    assert rows[0]["token_mask"] == sampled[0].token_mask
    assert rows[0]["turns"][0]["output_ids"] == sampled[0].turns[0].output_ids


def test_the_policy_only_samples(model_and_tokenizer):
    with pytest.raises(ValueError, match="temperature must be > 0"):
        TransformersPolicy(*model_and_tokenizer, temperature=0)
