import gc
from pathlib import Path

import pytest
from conftest import descendants, still_running
from test_collector import TASKS, make_numbers_env
from test_failures import make_flaky_env
from test_stopping import sandboxes_since

ROOT = Path(__file__).resolve().parents[1]
integration = pytest.importorskip("codeact_envs.torchrl", reason="needs the [torchrl] extra")
torch = pytest.importorskip("torch")
CodeActTransform, RewardComponents, task_primer = (
    integration.CodeActTransform,
    integration.RewardComponents,
    integration.task_primer,
)


@pytest.fixture(autouse=True)
def _lists_stack_as_tensordicts():
    from tensordict import set_list_to_stack

    with set_list_to_stack(True):
        yield


@pytest.fixture
def chat_model(tiny_model):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    return AutoModelForCausalLM.from_pretrained(tiny_model), AutoTokenizer.from_pretrained(tiny_model)


def _two_turns(context: str, occurrence: int) -> str:
    """Print which sample this is, then answer: right for sample 0, wrong for sample 1."""
    if context.count("<|im_start|>assistant") == 1:
        return f"Looking.\n```python\nprint('sample {occurrence}')\n```"
    return "```python\nfinal_answer(add(1, 2))\n```" if "sample 0" in context else "```python\nfinal_answer(0)\n```"


def _chat_env(tokenizer, env_fn, tasks, num_envs=2, group_size=2):
    from torchrl.envs import TransformedEnv
    from torchrl.envs.llm import ChatEnv

    env = TransformedEnv(
        ChatEnv(batch_size=(num_envs,), tokenizer=tokenizer),
        task_primer(tasks, num_envs=num_envs, group_size=group_size),
    )
    transform = CodeActTransform(env_fn)
    env.append_transform(transform)
    return env, transform


def _policy(model, tokenizer, generate: bool):
    from torchrl.modules.llm import TransformersWrapper

    return TransformersWrapper(
        model,
        tokenizer=tokenizer,
        input_mode="history",
        generate=generate,
        return_log_probs=True,
        generate_kwargs={"max_new_tokens": 48, "do_sample": True},
        chat_template_name="chatml_format",
    )


def test_gym_wrapper_resets_with_a_task_steps_with_code_and_reads_reward_components():
    from tensordict.nn import TensorDictModule
    from torchrl.envs import GymWrapper

    codeact_env = make_numbers_env()
    env = GymWrapper(codeact_env).set_info_dict_reader(RewardComponents(codeact_env))
    start = env.reset(options={"task": TASKS[0]})
    assert start["observation"] == "Add 1 and 2 with add(a, b), then call final_answer."
    code = iter(["x = add(1, 2)\nprint(x)", "final_answer(x)"])
    policy = TensorDictModule(lambda observation: next(code), in_keys=["observation"], out_keys=["action"])
    rollout = env.rollout(4, policy, auto_reset=False, tensordict=start)
    assert list(rollout["next", "observation"]) == ["3", "[no output]"]
    assert rollout["next", "reward"].squeeze(-1).tolist() == [0.0, 1.0]
    assert rollout["next", "rewards", "ExactMatch"].squeeze(-1).tolist() == [0.0, 1.0]
    assert rollout["next", "terminated"].squeeze(-1).tolist() == [False, True]
    env.close()


def test_chat_env_plays_codeact_episodes_and_grpo_loss_trains_only_on_assistant_tokens(chat_model):
    from tiny_model import ScriptedReplies
    from torchrl.objectives.llm import GRPOLoss

    model, tokenizer = chat_model
    ScriptedReplies(model, tokenizer, _two_turns)
    env, transform = _chat_env(tokenizer, make_numbers_env, TASKS[:1])
    rollout = env.rollout(
        3, _policy(model, tokenizer, generate=True), break_when_any_done=False, break_when_all_done=True
    )
    returns = rollout["next", "reward"].sum(dim=1)
    assert returns.squeeze(-1).tolist() == [1.0, 0.0]
    assert rollout["next", "done"][:, -1].squeeze(-1).tolist() == [True, True]
    assert [t.actions[0] for t in transform.trajectories()] == ["print('sample 0')", "print('sample 1')"]

    training = _policy(model, tokenizer, generate=False)
    batch = rollout[:, -1].copy()
    assert batch["history"].full.role[0] == ["system", "user", "assistant", "user", "assistant"]
    with torch.no_grad():
        batch = training(batch)
    batch["advantage"] = (returns - returns.mean()).view(2, 1, 1)
    loss = GRPOLoss(training, masking_strategy="rlhf")(batch)
    (loss.loss_objective + loss.loss_entropy).backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())

    tokens = batch.get(("tokens", "full"), as_list=True)[0].tolist()
    trained = batch.get(("masks", "all_assistant_mask"), as_list=True)[0].tolist()
    trained_text = tokenizer.decode([t for t, m in zip(tokens, trained, strict=True) if m])
    replies = [m["content"] for m in transform.trajectories()[0].messages if m["role"] == "assistant"]
    assert trained_text == "".join(replies)
    env.close()


def test_an_infrastructure_failure_ends_the_item_and_is_flagged(chat_model):
    from tiny_model import ScriptedReplies

    model, tokenizer = chat_model
    ScriptedReplies(model, tokenizer, lambda context, occurrence: "```python\nlookup('prices')\n```")
    env, transform = _chat_env(tokenizer, make_flaky_env, TASKS[:1], num_envs=1, group_size=1)
    rollout = env.rollout(
        2, _policy(model, tokenizer, generate=True), break_when_any_done=False, break_when_all_done=True
    )
    assert rollout["next", "infrastructure_failure"][:, 0].squeeze(-1).tolist() == [True]
    assert rollout["next", "done"][:, 0].squeeze(-1).tolist() == [True]
    assert transform.trajectories()[0].infrastructure_error == "InfrastructureError: the database is down"
    env.close()


def test_the_transform_leaves_no_sandbox_after_close_or_garbage_collection(chat_model):
    _, tokenizer = chat_model
    before = descendants()
    env, transform = _chat_env(tokenizer, make_numbers_env, TASKS[:1])
    env.reset()
    first = sandboxes_since(before)
    assert first
    transform.close()
    assert still_running(first) == set()
    env.reset()
    second = sandboxes_since(before)
    assert second
    env.close()
    assert still_running(second) == set()
    env.reset()
    third = sandboxes_since(before)
    assert third
    del env, transform
    gc.collect()
    assert still_running(third) == set()


def test_the_primer_needs_whole_groups():
    with pytest.raises(ValueError, match="multiple of group_size=2"):
        task_primer(TASKS, num_envs=3, group_size=2)


@pytest.mark.parametrize("name", ["humaneval", "toolchain", "battleship"])
def test_gym_wrapper_accepts_every_shipped_env(name):
    from torchrl.envs import GymWrapper

    from codeact_envs import load_env, load_tasks

    codeact_env = load_env(ROOT / "envs" / name, trust_remote_code=True)
    task = next(iter(load_tasks(codeact_env, split="test")))
    env = GymWrapper(codeact_env).set_info_dict_reader(RewardComponents(codeact_env))
    start = env.reset(options={"task": task})
    assert start["observation"] == codeact_env.setup(dict(task))
    start["action"] = codeact_env.oracle(dict(task))
    assert env.step(start)["next", "reward"].item() >= 0.99
    env.close()


def test_an_env_that_cannot_be_built_is_flagged_from_the_reset_on(chat_model):
    from codeact_envs import SandboxError

    def no_sandbox():
        raise SandboxError("bubblewrap cannot start here")

    model, tokenizer = chat_model
    env, transform = _chat_env(tokenizer, no_sandbox, TASKS[:1], num_envs=1, group_size=1)
    start = env.reset()
    assert start["infrastructure_failure"].squeeze(-1).tolist() == [True]
    rollout = env.rollout(2, _policy(model, tokenizer, generate=True), tensordict=start, auto_reset=False)
    assert rollout["next", "done"][:, 0].squeeze(-1).tolist() == [True]
    assert rollout["next", "reward"][:, 0].squeeze(-1).tolist() == [0.0]
    assert transform.trajectories()[0].infrastructure_error == "SandboxError: bubblewrap cannot start here"
