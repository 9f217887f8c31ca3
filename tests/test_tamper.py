import shutil
from pathlib import Path

import pytest

from codeact_envs import check
from codeact_envs._tamper import BATTERY

ROOT = Path(__file__).resolve().parents[1]
NAIVE_GRADER = '''

class SaysPass(Transform):
    """A naive grader: full reward when the last observation says PASS."""

    def __call__(self, step: Step) -> Step:
        if not step.done:
            return step
        return step.add_reward(self.name, 1.0 if "PASS" in step.observation else 0.0)


class NaiveEnv(HumanEvalEnv):
    """HumanEval graded by what the agent prints."""

    def oracle(self, task):
        return "print('PASS')\\n" + super().oracle(task)
'''


@pytest.fixture
def naive_env(tmp_path) -> Path:
    folder = tmp_path / "naive"
    shutil.copytree(ROOT / "envs" / "humaneval", folder)
    source = (
        (folder / "env.py")
        .read_text()
        .replace("from codeact_envs import CodeActEnv", "from codeact_envs import CodeActEnv, Step, Transform")
    )
    (folder / "env.py").write_text(source + NAIVE_GRADER)
    manifest = (folder / "environment.yaml").read_text()
    manifest = manifest.replace("entry_point: env:HumanEvalEnv", "entry_point: env:NaiveEnv")
    manifest = manifest.replace("- UnitTests: {setup_column: prompt}", "- env:SaysPass: {}")
    (folder / "environment.yaml").write_text(manifest)
    return folder


def test_an_env_whose_grader_trusts_printed_markers_fails_the_tamper_audit(naive_env):
    report = check(naive_env, trust_remote_code=True, max_tasks=2)
    assert report.oracle_returns == [1.0, 1.0]
    assert report.do_nothing_returns == [0.0, 0.0]
    fooled = [problem for problem in report.problems if problem.startswith("reward hack")]
    assert any(
        "'printing fake pass markers' scores above doing nothing (row 0: 1 > 0; row 1: 1 > 0)" in p for p in fooled
    )
    assert any("'a forged result message, then exit'" in problem for problem in fooled)


@pytest.mark.parametrize("env", ["humaneval", "toolchain", "battleship"])
def test_no_hack_of_the_battery_fools_a_shipped_env(env):
    report = check(ROOT / "envs" / env, trust_remote_code=True, max_tasks=3)
    assert [problem for problem in report.problems if "reward hack" in problem] == []


def test_each_hack_defines_the_functions_the_prompt_asks_for():
    prompt = "Implement this:\n```python\ndef add(a, b):\n    ...\n\ndef _helper(x): ...\n```"
    for hack in BATTERY:
        code = "\n".join(hack.play(prompt))
        assert "def add(*args, **kwargs):" in code
        assert "def _helper(*args, **kwargs):" in code


BLAMES_ITSELF = '''

class RestartIsOurFault(Transform):
    """A grader that takes the agent's interpreter exiting for a failure of the env's own."""

    def __call__(self, step: Step) -> Step:
        if step.execution.restarted:
            raise InfrastructureError("the sandbox restarted")
        return step
'''


def test_a_hack_that_turns_an_episode_into_an_infrastructure_failure_fails_the_audit(tmp_path):
    """Training leaves infrastructure failures out: a policy that can cause one escapes its low reward."""
    folder = tmp_path / "blames-itself"
    shutil.copytree(ROOT / "envs" / "humaneval", folder)
    source = (
        (folder / "env.py")
        .read_text()
        .replace(
            "from codeact_envs import CodeActEnv",
            "from codeact_envs import CodeActEnv, InfrastructureError, Step, Transform",
        )
    )
    (folder / "env.py").write_text(source + BLAMES_ITSELF)
    manifest = (folder / "environment.yaml").read_text()
    manifest = manifest.replace(
        "- UnitTests: {setup_column: prompt}",
        "- env:RestartIsOurFault: {}\n          - UnitTests: {setup_column: prompt}",
    )
    (folder / "environment.yaml").write_text(manifest)
    report = check(folder, trust_remote_code=True, max_tasks=1)
    assert report.oracle_returns == [1.0]
    assert any(
        "'exiting early with os._exit' made task row 0 end as an infrastructure failure (the sandbox restarted)" in p
        for p in report.problems
    )
