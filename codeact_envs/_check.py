"""`check`: the same validation for every env (manifest, Gymnasium API, oracle, do-nothing, determinism)."""

import contextlib
import io
import itertools
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gymnasium.utils.env_checker import check_env

from ._env import CodeActEnv, defines_oracle
from ._loading import default_split, load_env, load_tasks

DO_NOTHING = "final_answer(None)"


@dataclass(frozen=True)
class CheckReport:
    """What `check` found.

    Attributes:
        env: The env's folder or repo id.
        split: The split whose tasks were tried.
        tasks_tried: How many tasks were tried.
        oracle_returns: The oracle's return on each task tried.
        do_nothing_returns: The return of an agent that answers `None` at once, on each task tried.
        problems: Every problem found; empty when the env passed.
    """

    env: str
    split: str
    tasks_tried: int
    oracle_returns: list[float] = field(default_factory=list)
    do_nothing_returns: list[float] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Whether every check passed."""
        return not self.problems


def check(
    repo_id_or_path: str | Path,
    *,
    split: str | None = None,
    max_tasks: int | None = 20,
    seed: int = 0,
    trust_remote_code: bool = False,
    **load_kwargs: Any,
) -> CheckReport:
    """Validate an env the way every env is validated.

    The manifest is valid and the env loads; Gymnasium's `check_env` passes; the oracle reaches the
    maximum return on every task tried; an agent that does nothing gets the minimum, which is lower;
    the same seed gives the same episode.

    Args:
        repo_id_or_path: The env folder or Hub dataset repo.
        split: Split to take tasks from (default: the manifest's first split).
        max_tasks: Tasks to try (None: all).
        seed: Seed of the episodes.
        trust_remote_code: Must be True: checking an env runs its code.
        **load_kwargs: Passed to `load_env` (e.g. `revision`, `env_id`).
    """
    env = load_env(repo_id_or_path, trust_remote_code=trust_remote_code, **load_kwargs)
    try:
        split = split or default_split(env)
        tasks = _first_tasks(env, split, max_tasks)
        report = CheckReport(env=str(repo_id_or_path), split=split, tasks_tried=len(tasks))
        _check_gymnasium_api(env, report.problems)
        if not defines_oracle(env):
            report.problems.append(f"{type(env).__name__} defines no oracle(task): the check cannot prove it solvable")
            return report
        for task in tasks:
            report.oracle_returns.append(_episode_return(env, task, seed, env.oracle(task)))
            report.do_nothing_returns.append(_episode_return(env, task, seed, DO_NOTHING))
        _check_returns(report)
        _check_determinism(env, tasks[0] if tasks else {}, seed, report.problems)
        return report
    finally:
        env.close()


def _first_tasks(env: CodeActEnv, split: str, max_tasks: int | None) -> list[dict[str, Any]]:
    return list(itertools.islice(load_tasks(env, split, streaming=True), max_tasks))


def _check_gymnasium_api(env: CodeActEnv, problems: list[str]) -> None:
    try:
        with warnings.catch_warnings(), contextlib.redirect_stderr(io.StringIO()):
            warnings.simplefilter("ignore")
            check_env(env)
    except Exception as e:
        problems.append(f"gymnasium's check_env failed: {type(e).__name__}: {e}")


def _play(env: CodeActEnv, task: dict[str, Any], seed: int, first_action: str) -> list[Any]:
    """An episode that sends `first_action`, then `final_answer(None)` until it ends.

    Returns the first observation, then `(observation, reward, terminated, truncated)` of every step.
    """
    observation, _ = env.reset(seed=seed, options={"task": task})
    record: list[Any] = [observation]
    action, done = first_action, False
    while not done:
        observation, reward, terminated, truncated, _ = env.step(action)
        record.append((observation, float(reward), terminated, truncated))
        done, action = terminated or truncated, DO_NOTHING
    return record


def _episode_return(env: CodeActEnv, task: dict[str, Any], seed: int, first_action: str) -> float:
    return sum(reward for _, reward, _, _ in _play(env, task, seed, first_action)[1:])


def _check_returns(report: CheckReport) -> None:
    if not report.oracle_returns:
        report.problems.append(f"the split {report.split!r} has no tasks")
        return
    best, worst = max(report.oracle_returns), min(report.do_nothing_returns)
    below = [i for i, value in enumerate(report.oracle_returns) if value < best]
    above = [i for i, value in enumerate(report.do_nothing_returns) if value > worst]
    if below:
        report.problems.append(f"the oracle misses the maximum return {best:g} on task rows {below}")
    if above:
        report.problems.append(f"doing nothing scores above the minimum {worst:g} on task rows {above}")
    if best <= worst:
        report.problems.append(f"doing nothing ({worst:g}) scores as well as the oracle ({best:g}): the env is broken")


def _check_determinism(env: CodeActEnv, task: dict[str, Any], seed: int, problems: list[str]) -> None:
    first, second = (_play(env, task, seed, env.oracle(task)) for _ in range(2))
    if first != second:
        problems.append(f"two episodes with seed {seed} differ: {first!r} != {second!r}")
