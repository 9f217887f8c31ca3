"""`check`: the same validation for every env, as a list of checks that each add the problems they find.

`push_to_hub` publishes only what passes `check`: there is one validation, not two.
"""

import contextlib
import dataclasses
import io
import itertools
import os
import stat
import traceback
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ._card import card_problems
from ._env import CodeActEnv, defines_oracle
from ._errors import InfrastructureError
from ._loading import column_problems, default_split, load_env
from ._origin import check_split, files_root, task_rows
from ._tamper import BATTERY, Hack

DO_NOTHING = "final_answer(None)"
NOT_UPLOADED = ("__pycache__", ".git", ".cache")
_SCORE_TOLERANCE = 1e-9


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


@dataclass(frozen=True)
class CheckedEnv:
    """What every check sees: the loaded env, the split and its first task rows, the seed of the episodes."""

    env: CodeActEnv
    split: str
    tasks: list[dict[str, Any]]
    seed: int

    @property
    def folder(self) -> Path:
        """The env's folder (for a Hub repo, its downloaded code, manifest and card)."""
        return self.env.manifest.folder

    @property
    def is_local(self) -> bool:
        """Whether the env is a local folder (to publish), rather than a Hub repo."""
        return self.env.commit is None


Check = Callable[[CheckedEnv, CheckReport], None]


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

    The folder holds only files that are its own; the card carries the Hub's tags and `configs:` for every
    split; the task rows have the columns the transforms need; Gymnasium's `check_env` passes; the oracle
    reaches the maximum return on every task tried; an agent that does nothing gets the minimum, which is
    lower; the same seed gives the same episode; no generic reward hack (an object equal to everything, patched
    builtins, trace hooks, reading the grader, forged messages, early exits, `BaseException`s, fake pass
    markers, NaN and infinities, str and float subclasses) scores above doing nothing on any task tried.
    Episodes are played once the task rows can be read and have
    the columns the transforms read. An env that cannot be loaded (a bad manifest, bad `kwargs`) raises the
    loading error instead of returning a report.

    Args:
        repo_id_or_path: The env folder or Hub dataset repo.
        split: Split to take tasks from (default: the manifest's first split).
        max_tasks: Tasks to try (None: all).
        seed: Seed of the episodes.
        trust_remote_code: Must be True: checking an env runs its code.
        **load_kwargs: Passed to `load_env` (e.g. `revision`, `env_id`).
    """
    with load_env(repo_id_or_path, trust_remote_code=trust_remote_code, **load_kwargs) as env:
        split = split or default_split(env)
        check_split(env.manifest, split)
        folder_report = CheckReport(env=str(repo_id_or_path), split=split, tasks_tried=0)
        _run(FOLDER_CHECKS, CheckedEnv(env=env, split=split, tasks=[], seed=seed), folder_report)
        tasks = _first_tasks(env, split, max_tasks, folder_report.problems)
        report = dataclasses.replace(folder_report, tasks_tried=len(tasks))
        subject = CheckedEnv(env=env, split=split, tasks=tasks, seed=seed)
        if tasks and _run(TASK_CHECKS, subject, report):
            _run(PLAY_CHECKS, subject, report)
        return report


def _run(checks: list[Check], subject: CheckedEnv, report: CheckReport) -> bool:
    """Run each check; one that raises adds a problem that says where, unless the machine failed, not the env.

    Returns whether the checks found no problem.
    """
    found_before = len(report.problems)
    for one_check in checks:
        try:
            one_check(subject, report)
        except InfrastructureError:
            raise
        except Exception as e:
            report.problems.append(f"{_title(one_check)} raised {_described(e, subject.folder)}")
    return len(report.problems) == found_before


def _title(one_check: Check) -> str:
    return one_check.__name__.removeprefix("_check_").replace("_", " ")


def _first_tasks(env: CodeActEnv, split: str, max_tasks: int | None, problems: list[str]) -> list[dict[str, Any]]:
    """The first task rows of the split; a failure is a problem of its own unless a problem was found already
    (a card without `configs:` makes `datasets` fail: that problem says what to fix)."""
    try:
        rows = task_rows(env.manifest, env.repo_id, env.commit, split, streaming=True)
        tasks = [dict(row) for row in itertools.islice(rows, max_tasks)]
    except InfrastructureError:
        raise
    except Exception as e:
        if not problems:
            problems.append(f"the task rows of split {split!r} could not be read: {_described(e, env.manifest.folder)}")
        return []
    if not tasks and not problems:
        problems.append(f"the split {split!r} has no task rows")
    return tasks


def _check_files(subject: CheckedEnv, report: CheckReport) -> None:
    """A local folder holds only regular files of its own: nothing that links or resolves outside it."""
    if subject.is_local:
        report.problems.extend(foreign_files(subject.folder))


def foreign_files(folder: Path) -> list[str]:
    """One problem per entry of `folder` (as `push_to_hub` would upload it) that is not a file of its own:
    a link resolving outside the folder or nowhere, a hard link, a FIFO, socket or device."""
    problems = []
    root = folder.resolve()
    for directory, subfolders, files in os.walk(root):
        subfolders[:] = [name for name in subfolders if name not in NOT_UPLOADED]
        for name in subfolders + files:
            problem = _foreign(Path(directory) / name, root)
            if problem:
                problems.append(f"{folder / (Path(directory) / name).relative_to(root)}: {problem}")
    return problems


def _foreign(path: Path, root: Path) -> str | None:
    if path.is_symlink():
        target = path.resolve()
        if not target.exists():
            return f"a link to {os.readlink(path)!r}, which does not exist; remove it"
        if not target.is_relative_to(root):
            return (
                f"links to {str(target)!r}, outside the env folder, so publishing would upload that file; "
                "put a copy of the file in the folder, or remove the link"
            )
        return None
    info = path.lstat()
    if stat.S_ISDIR(info.st_mode):
        return None
    if not stat.S_ISREG(info.st_mode):
        return "not a regular file (a FIFO, socket or device); remove it"
    if info.st_nlink > 1:
        return (
            f"a hard link ({info.st_nlink} names for one file), so it may be a file outside the env folder; "
            "replace it by a copy"
        )
    return None


def _check_card(subject: CheckedEnv, report: CheckReport) -> None:
    """The card carries the Hub's tags, and `configs:` that point `datasets` at the task rows of every split."""
    env = subject.env
    root = files_root(subject.folder, env.commit)
    report.problems.extend(card_problems(subject.folder, env.manifest, root=root, local=subject.is_local))


def _check_task_columns(subject: CheckedEnv, report: CheckReport) -> None:
    """Every task row tried has every column that the env's transforms read."""
    common = [column for column in subject.tasks[0] if all(column in task for task in subject.tasks)]
    rows = f"{subject.env.repo_id}: the task rows of split {subject.split!r}"
    report.problems.extend(column_problems(subject.env.transform, common, rows))


def _check_gymnasium_api(subject: CheckedEnv, report: CheckReport) -> None:
    """Gymnasium's `check_env` passes (it resets without a task: the env plays its example task)."""
    from gymnasium.utils.env_checker import check_env

    try:
        with warnings.catch_warnings(), contextlib.redirect_stderr(io.StringIO()):
            warnings.simplefilter("ignore")
            check_env(subject.env)
    except InfrastructureError:
        raise
    except Exception as e:
        report.problems.append(f"gymnasium's check_env failed: {_described(e, subject.folder)}")


def _check_oracle_and_do_nothing(subject: CheckedEnv, report: CheckReport) -> None:
    """The oracle reaches the maximum return on every task; doing nothing gets the minimum, which is lower."""
    env = subject.env
    if not defines_oracle(env):
        report.problems.append(f"{type(env).__name__} defines no oracle(task): the check cannot prove it solvable")
        return
    for row, task in enumerate(subject.tasks):
        for returns, action in ((report.oracle_returns, None), (report.do_nothing_returns, DO_NOTHING)):
            try:
                returns.append(_episode_return(env, task, subject.seed, action or env.oracle(task)))
            except InfrastructureError:
                raise
            except Exception as e:
                who = "the oracle" if action is None else "doing nothing"
                report.problems.append(f"task row {row}: {who}'s episode raised {_described(e, subject.folder)}")
                return
    _compare_returns(report)


def _check_determinism(subject: CheckedEnv, report: CheckReport) -> None:
    """Two episodes with the same seed, task and actions are the same episode (the oracle's, when it played
    every task without raising; else doing nothing's)."""
    env = subject.env
    task = subject.tasks[0]
    oracle_played = defines_oracle(env) and len(report.oracle_returns) == len(subject.tasks)
    action = env.oracle(task) if oracle_played else DO_NOTHING
    first, second = (_play(env, task, subject.seed, action) for _ in range(2))
    if first != second:
        report.problems.append(f"two episodes with seed {subject.seed} differ: {first!r} != {second!r}")


def _check_tamper_audit(subject: CheckedEnv, report: CheckReport) -> None:
    """No generic reward hack (see `_tamper.BATTERY`) scores above doing nothing on any task tried."""
    env = subject.env
    floors = report.do_nothing_returns
    if len(floors) != len(subject.tasks):
        floors = [_episode_return(env, task, subject.seed, DO_NOTHING) for task in subject.tasks]
    for hack in BATTERY:
        above = []
        for row, (task, floor) in enumerate(zip(subject.tasks, floors, strict=True)):
            try:
                score = _hack_return(env, task, subject.seed, hack)
            except InfrastructureError as e:
                report.problems.append(
                    f"reward hack {hack.name!r} made task row {row} end as an infrastructure failure ({e}): "
                    "training leaves such episodes out, so a policy could escape a low reward with it"
                )
                break
            except Exception as e:
                report.problems.append(
                    f"reward hack {hack.name!r} made task row {row} raise {_described(e, subject.folder)}"
                )
                break
            if score > floor + _SCORE_TOLERANCE:
                above.append(f"row {row}: {score:g} > {floor:g}")
        if above:
            report.problems.append(
                f"reward hack {hack.name!r} scores above doing nothing ({'; '.join(above[:5])}"
                f"{'; ...' if len(above) > 5 else ''}): the env's grader can be fooled by it"
            )


def _hack_return(env: CodeActEnv, task: dict[str, Any], seed: int, hack: Hack) -> float:
    """The return of an episode where the agent plays `hack`, then answers None until the episode ends."""
    observation, _ = env.reset(seed=seed, options={"task": task})
    pending, total, done = hack.play(observation), 0.0, False
    while not done:
        _, reward, terminated, truncated, _ = env.step(pending.pop(0) if pending else DO_NOTHING)
        total += float(reward)
        done = terminated or truncated
    return total


FOLDER_CHECKS: list[Check] = [_check_files, _check_card]
TASK_CHECKS: list[Check] = [_check_task_columns]
PLAY_CHECKS: list[Check] = [
    _check_gymnasium_api,
    _check_oracle_and_do_nothing,
    _check_determinism,
    _check_tamper_audit,
]


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


def _compare_returns(report: CheckReport) -> None:
    best, worst = max(report.oracle_returns), min(report.do_nothing_returns)
    below = [i for i, value in enumerate(report.oracle_returns) if value < best]
    above = [i for i, value in enumerate(report.do_nothing_returns) if value > worst]
    if below:
        report.problems.append(f"the oracle misses the maximum return {best:g} on task rows {below}")
    if above:
        report.problems.append(f"doing nothing scores above the minimum {worst:g} on task rows {above}")
    if best <= worst:
        report.problems.append(f"doing nothing ({worst:g}) scores as well as the oracle ({best:g}): the env is broken")


def _described(error: BaseException, folder: Path) -> str:
    """`Type: message`, and the line of the env's own code that raised it, when it did."""
    where = ""
    for frame in reversed(traceback.extract_tb(error.__traceback__)):
        path = Path(frame.filename)
        if path.is_relative_to(folder):
            where = f" (at {path.relative_to(folder)}, line {frame.lineno}, in {frame.name})"
            break
    return f"{type(error).__name__}: {error}{where}"
