import pytest
from test_collector import TASKS, NumbersEnv, make_numbers_env, solver

from codeact_envs import Collector, ExactMatch, InfrastructureError, SandboxError, tool


class FlakyEnv(NumbersEnv):
    """Its `lookup` tool fails on the host side: the database behind it is down."""

    @tool
    def lookup(self, key: str) -> str:
        """Look a key up in the database."""
        raise InfrastructureError("the database is down")


def make_flaky_env() -> FlakyEnv:
    return FlakyEnv(max_steps=4, timeout_s=5.0, transform=ExactMatch("answer"))


def test_a_tool_that_fails_on_the_host_makes_step_raise_it_and_ends_the_episode():
    with make_flaky_env() as env:
        env.reset(options={"task": TASKS[0]})
        with pytest.raises(InfrastructureError, match="database is down"):
            env.step("lookup('prices')")
        with pytest.raises(RuntimeError, match="call reset"):
            env.step("1")


def test_an_episode_the_infrastructure_ended_is_delivered_as_such_and_collection_goes_on():
    def policy(messages):
        if "Add 1 and 2" in messages[1]["content"]:
            return "```python\nlookup('prices')\n```"
        return solver(messages)

    with Collector(make_flaky_env, policy, TASKS) as collector:
        trajectories = sorted((t for batch in collector for t in batch), key=lambda t: t.row)
    failed, *solved = trajectories
    assert failed.infrastructure_error == "InfrastructureError: the database is down"
    assert not failed.terminated and not failed.truncated
    assert [t.infrastructure_error for t in solved] == [None] * 5
    assert all(t.reward == 1.0 for t in solved)


def test_an_env_that_cannot_be_built_gives_infrastructure_failures_not_a_crash():
    def no_sandbox():
        raise SandboxError("bubblewrap cannot start here")

    with Collector(no_sandbox, solver, TASKS[:3], num_envs=2) as collector:
        trajectories = [t for batch in collector for t in batch]
    assert sorted(t.row for t in trajectories) == [0, 1, 2]
    assert {t.infrastructure_error for t in trajectories} == {"SandboxError: bubblewrap cannot start here"}
    assert all(t.actions == [] for t in trajectories)


def test_a_policy_failure_is_not_an_infrastructure_failure():
    def policy(messages):
        raise ConnectionError("model server went away")

    with pytest.raises(RuntimeError, match="the Collector stopped") as caught:
        list(Collector(make_numbers_env, policy, TASKS[:1]))
    assert isinstance(caught.value.__cause__, ConnectionError)


def test_trajectories_record_the_policy_version_when_their_episode_started():
    with Collector(make_numbers_env, solver, TASKS, batch_size=1, policy_version=3) as collector:
        versions = []
        for batch in collector:
            versions.append(batch[0].policy_version)
            collector.policy_version = 4
    assert versions[0] == 3
    assert versions[-1] == 4
