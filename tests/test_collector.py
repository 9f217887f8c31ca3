import threading
import time
from pathlib import Path

import datasets
import pytest
from conftest import CalculatorEnv, descendants, still_running

from codeact_envs import Collector, ExactMatch, OraclePolicy, Trajectory, load_env, load_tasks

HUMANEVAL = Path(__file__).resolve().parents[1] / "envs" / "humaneval"
TASKS = [{"a": a, "b": b, "answer": a + b} for a, b in [(1, 2), (3, 4), (5, 6), (7, 8), (9, 10), (11, 12)]]


def make_env() -> CalculatorEnv:
    return CalculatorEnv(max_steps=4, timeout_s=5.0, transform=ExactMatch("answer"))


def solver(messages: list[dict[str, str]]) -> str:
    """Reads the task's numbers from the conversation so far and answers with one code action."""
    task = messages[1]["content"]
    return f"I will add them.\n```python\nfinal_answer(add(*{_numbers(task)}))\n```"


def _numbers(prompt: str) -> tuple[int, int]:
    return tuple(int(word) for word in prompt.split() if word.isdigit())


class NumbersEnv(CalculatorEnv):
    def setup(self, task):
        super().setup(task)
        return f"Add {task['a']} and {task['b']} with add(a, b), then call final_answer."


def make_numbers_env() -> NumbersEnv:
    return NumbersEnv(max_steps=4, timeout_s=5.0, transform=ExactMatch("answer"))


def collect(**kwargs) -> list[list[Trajectory]]:
    options = {"env_fn": make_numbers_env, "policy": solver, "tasks": TASKS, "num_envs": 2} | kwargs
    with Collector(**options) as collector:
        return list(collector)


def test_batches_hold_complete_trajectories_of_every_task():
    batches = collect(batch_size=2)
    trajectories = [t for batch in batches for t in batch]
    assert [len(batch) for batch in batches] == [2, 2, 2]
    assert sorted(t.row for t in trajectories) == list(range(6))
    assert all(t.terminated and t.reward == 1.0 for t in trajectories)


def test_a_trajectory_records_the_chat_actions_observations_and_rewards():
    trajectory = collect()[0][0]
    assert trajectory.messages[0]["role"] == "system"
    assert "def add(a: int, b: int) -> int:" in trajectory.messages[0]["content"]
    assert trajectory.messages[1]["content"].startswith("Add ")
    assert trajectory.messages[2]["role"] == "assistant"
    assert trajectory.actions == [f"final_answer(add(*{_numbers(trajectory.messages[1]['content'])}))"]
    assert trajectory.rewards == [1.0]
    assert trajectory.reward_components == [{"ExactMatch": 1.0}]
    assert trajectory.answer == trajectory.task["answer"]
    assert len(trajectory.policy_s) == len(trajectory.env_s) == 1


def test_group_size_repeats_each_task_and_keeps_groups_in_one_batch():
    batches = collect(group_size=3, batch_size=6, num_envs=4)
    for batch in batches:
        rows = [t.row for t in batch]
        for row in set(rows):
            assert rows.count(row) == 3
        assert len(batch) == 6
    assert sum(len(batch) for batch in batches) == 18


def test_batch_size_must_hold_whole_groups():
    with pytest.raises(ValueError, match="multiple of group_size=3"):
        Collector(make_numbers_env, solver, TASKS, group_size=3, batch_size=4)


def test_seeds_are_derived_from_one_seed_and_reproduce_the_episodes():
    def key(batches):
        return sorted((t.row, t.sample, t.seed) for batch in batches for t in batch)

    first, again, other = collect(seed=1, group_size=2), collect(seed=1, group_size=2), collect(seed=2, group_size=2)
    assert key(first) == key(again)
    assert key(first) != key(other)
    assert len({t.seed for batch in first for t in batch}) == 12


def test_the_same_seed_gives_the_same_random_draws_in_the_sandbox():
    def random_policy(messages):
        return "```python\nimport random\nfinal_answer(random.random())\n```"

    def answers(seed):
        batches = collect(policy=random_policy, seed=seed)
        return sorted((t.row, t.answer) for batch in batches for t in batch)

    assert answers(3) == answers(3)


def test_a_slow_episode_does_not_stall_the_other_envs():
    release = threading.Event()

    def policy(messages):
        if "Add 1 and 2" in messages[1]["content"]:
            release.wait(timeout=10)
        return solver(messages)

    with Collector(make_numbers_env, policy, TASKS, num_envs=2, batch_size=1) as collector:
        iterator = iter(collector)
        first_five = [next(iterator)[0].row for _ in range(5)]
        release.set()
        last = next(iterator)[0].row
    assert 0 not in first_five
    assert last == 0


def test_a_reply_without_code_is_fed_back_as_an_observation():
    def policy(messages):
        turns = sum(1 for m in messages if m["role"] == "assistant")
        return "I am thinking about it..." if turns == 0 else solver(messages)

    trajectory = collect(policy=policy)[0][0]
    assert trajectory.actions[0] == ""
    assert "regex pattern" in trajectory.observations[0]
    assert trajectory.messages[3] == {"role": "user", "content": trajectory.observations[0]}
    assert trajectory.terminated and trajectory.reward == 1.0


def test_replies_without_code_still_end_the_episode_at_max_steps():
    trajectory = collect(policy=lambda messages: "no code here, sorry")[0][0]
    assert trajectory.truncated
    assert len(trajectory.actions) == 4


def test_an_exception_in_the_policy_surfaces_with_its_cause():
    def policy(messages):
        raise ConnectionError("model server went away")

    with pytest.raises(RuntimeError, match="the Collector stopped") as caught:
        collect(policy=policy)
    assert isinstance(caught.value.__cause__, ConnectionError)


def test_an_exception_building_an_env_surfaces_with_its_cause():
    def broken_env():
        raise FileNotFoundError("no such env")

    with pytest.raises(RuntimeError, match="building an env") as caught:
        collect(env_fn=broken_env)
    assert isinstance(caught.value.__cause__, FileNotFoundError)


def test_tasks_can_come_from_a_datasets_split_and_a_streaming_one():
    split = datasets.Dataset.from_list(TASKS)
    assert sum(len(batch) for batch in collect(tasks=split)) == 6
    assert sum(len(batch) for batch in collect(tasks=split.to_iterable_dataset())) == 6


def test_tasks_can_come_from_a_torch_dataloader():
    torch_data = pytest.importorskip("torch.utils.data")
    loader = torch_data.DataLoader(TASKS, batch_size=None)
    trajectories = [t for batch in collect(tasks=loader) for t in batch]
    assert len(trajectories) == 6
    assert all(t.reward == 1.0 for t in trajectories)


def test_a_batch_becomes_a_datasets_dataset_in_one_call(tmp_path):
    batch = collect(batch_size=6)[0]
    dataset = datasets.Dataset.from_list([t.to_dict() for t in batch])
    assert dataset.num_rows == 6
    assert set(dataset.column_names) >= {"messages", "actions", "rewards", "reward", "seed", "row", "env", "commit"}
    dataset.save_to_disk(tmp_path / "trajectories")
    assert datasets.load_from_disk(tmp_path / "trajectories")[0]["reward"] == 1.0


def test_trajectories_from_load_env_record_the_env_and_the_split():
    probe = load_env(HUMANEVAL, trust_remote_code=True)
    tasks = load_tasks(probe, split="test").select(range(4))
    policy = OraclePolicy(probe, tasks)
    probe.close()
    with Collector(_make_humaneval, policy, tasks, num_envs=2) as collector:
        trajectories = [t for batch in collector for t in batch]
    assert {t.env for t in trajectories} == {str(HUMANEVAL)}
    assert {t.split for t in trajectories} == {"test"}
    assert sorted(t.row for t in trajectories) == [0, 1, 2, 3]
    assert all(t.reward == 1.0 for t in trajectories)


def _make_humaneval():
    return load_env(HUMANEVAL, trust_remote_code=True)


def test_iterating_twice_is_refused():
    collector = Collector(make_numbers_env, solver, TASKS)
    list(collector)
    with pytest.raises(RuntimeError, match="iterates once"):
        list(collector)


def test_shutdown_mid_iteration_stops_workers_and_closes_sandboxes():
    before = {t.name for t in threading.enumerate()}
    running_before = descendants()
    collector = Collector(make_numbers_env, solver, TASKS * 20, num_envs=3, batch_size=1)
    batches = iter(collector)
    next(batches)
    sandboxes = descendants() - running_before
    assert sandboxes
    collector.shutdown()
    time.sleep(0.1)
    assert {t.name for t in threading.enumerate()} - before == set()
    assert still_running(sandboxes) == set()


def test_the_progress_bar_shows_episodes_and_mean_reward(capsys):
    collect(progress=True)
    err = capsys.readouterr().err
    assert "6episode" in err.replace(" ", "") or "6/" in err or "6 episode" in err
    assert "mean_reward=1.000" in err
