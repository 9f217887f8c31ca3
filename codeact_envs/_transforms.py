"""Rewards as transforms on `step()`, torchvision style: `Step -> Step` callables and a `Compose` loop."""

import ast
import dataclasses
import math
import re
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from ._sandbox import ExecutionResult


@dataclass(frozen=True)
class Step:
    """One transition of an episode, as transforms see it.

    Attributes:
        task: The task row (host side only).
        action: The code the agent sent.
        observation: The text the agent will read.
        execution: What the code did in the sandbox.
        reward: The reward so far; transforms add to it with `add_reward`.
        terminated: Whether the episode ended (a final answer, or a transform's decision).
        truncated: Whether the episode was cut by `max_steps`.
        info: Gymnasium's info dict; `info["rewards"]` holds every reward component by name.
        history: The earlier `(action, execution)` pairs of the episode, oldest first.
        run_fresh: Runs code in a fresh interpreter of the env's sandbox, for checks on the episode's last
            step: `run_fresh(code, timeout_s=...) -> ExecutionResult`. The agent's interpreter is gone after.
    """

    task: dict[str, Any]
    action: str
    observation: str
    execution: ExecutionResult
    reward: float = 0.0
    terminated: bool = False
    truncated: bool = False
    info: dict[str, Any] = field(default_factory=dict)
    history: tuple[tuple[str, ExecutionResult], ...] = ()
    run_fresh: Callable[..., ExecutionResult] | None = field(default=None, repr=False, compare=False)

    @property
    def done(self) -> bool:
        """Whether this is the episode's last step."""
        return self.terminated or self.truncated

    def add_reward(self, name: str, value: float, *, terminate: bool = False) -> "Step":
        """A copy with `value` added to the reward and recorded as component `name` in `info["rewards"]`."""
        rewards = dict(self.info.get("rewards", {}))
        rewards[name] = rewards.get(name, 0.0) + value
        return dataclasses.replace(
            self,
            reward=self.reward + value,
            terminated=self.terminated or terminate,
            info={**self.info, "rewards": rewards},
        )


class Transform:
    """A reward transform: override `__call__(step) -> step`; record what you add with `step.add_reward`.

    A transform that reads task columns declares them in `task_columns`, so that `check` and `load_tasks`
    refuse task rows without them before an episode runs.
    """

    def __call__(self, step: Step) -> Step:
        raise NotImplementedError(f"{type(self).__name__} must define __call__(self, step) -> Step")

    @property
    def task_columns(self) -> tuple[str, ...]:
        """The task columns this transform reads (override it, or set a class attribute of the same name)."""
        return ()

    @property
    def name(self) -> str:
        """The key of this transform's component in `info["rewards"]`."""
        return type(self).__name__

    def close(self) -> None:
        """Free what the transform holds (a sandbox, a connection); the env calls it on `close()`."""

    def __repr__(self) -> str:
        fields = ", ".join(f"{key}={value!r}" for key, value in vars(self).items() if not key.startswith("_"))
        return f"{type(self).__name__}({fields})"


class Compose(Transform):
    """Apply transforms one after the other.

    Args:
        transforms: The transforms, in order.
    """

    def __init__(self, transforms: Sequence[Transform]):
        self.transforms = list(transforms)

    def __call__(self, step: Step) -> Step:
        for transform in self.transforms:
            step = transform(step)
        return step

    @property
    def task_columns(self) -> tuple[str, ...]:
        """The task columns any of the transforms reads."""
        return tuple(dict.fromkeys(column for transform in self.transforms for column in transform.task_columns))

    def close(self) -> None:
        for transform in self.transforms:
            transform.close()


class StepPenalty(Transform):
    """Subtract `penalty` on every step, so shorter episodes score higher.

    Args:
        penalty: Amount subtracted per step.
    """

    def __init__(self, penalty: float = 0.01):
        self.penalty = penalty

    def __call__(self, step: Step) -> Step:
        return step.add_reward(self.name, -self.penalty)


class ErrorPenalty(Transform):
    """Subtract `penalty` on a step whose code raised, timed out or crashed the interpreter.

    Args:
        penalty: Amount subtracted per failing step.
    """

    def __init__(self, penalty: float = 0.1):
        self.penalty = penalty

    def __call__(self, step: Step) -> Step:
        failed = step.execution.error is not None or step.execution.restarted
        return step.add_reward(self.name, -self.penalty if failed else 0.0)


class ExactMatch(Transform):
    """Reward 1.0 when the final answer equals the task's `column`, else 0.0, on the final-answer step.

    Both sides are compared after normalization: converted to text, surrounding whitespace stripped,
    inner runs of whitespace collapsed to one space, case folded; when both read as numbers they are
    compared as numbers (so `42`, `"42"` and `42.0` match, and so do floats within 1e-9 relative).

    Args:
        column: The task column holding the reference answer.
    """

    def __init__(self, column: str = "answer"):
        self.column = column

    @property
    def task_columns(self) -> tuple[str, ...]:
        return (self.column,)

    def __call__(self, step: Step) -> Step:
        if not step.execution.has_final_answer:
            return step
        if self.column not in step.task:
            raise KeyError(f"ExactMatch needs the task column {self.column!r}; the task has {sorted(step.task)}")
        matched = _answers_match(step.execution.final_answer, step.task[self.column])
        return step.add_reward(self.name, 1.0 if matched else 0.0)


def _normalized(value: Any) -> str:
    """Text with surrounding whitespace stripped, inner whitespace collapsed and case folded."""
    return re.sub(r"\s+", " ", str(value)).strip().casefold()


def _as_number(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def _answers_match(answer: Any, reference: Any) -> bool:
    answer_text, reference_text = _normalized(answer), _normalized(reference)
    answer_number, reference_number = _as_number(answer_text), _as_number(reference_text)
    if answer_number is not None and reference_number is not None:
        return math.isclose(answer_number, reference_number, rel_tol=1e-9, abs_tol=0.0)
    return answer_text == reference_text


class UnitTests(Transform):
    """Reward 1.0 when the task's tests pass against the agent's program, else 0.0, on the last step.

    The agent's program is the episode's actions since its interpreter last started. They are replayed
    in a fresh interpreter of the env's sandbox (never the agent's live namespace); then the task's test
    code runs in a copy of the program's namespace where the original builtins are restored (names
    shadowing a builtin are dropped, attributes the program replaced in the modules the tests import are
    put back, modules the program imported are imported afresh), and
    `check(candidate)` is called on the function named by the task's entry point. A pass needs the check
    to return normally: an exit, a crash, a timeout, an exception of any kind, or builtins patched by the
    agent do not count as a pass.

    Args:
        test_column: Task column with test code that defines `check(candidate)`.
        entry_point_column: Task column with the name of the function under test.
        timeout_s: Time limit for replaying the program and running the tests.
    """

    def __init__(self, test_column: str = "test", entry_point_column: str = "entry_point", timeout_s: float = 10.0):
        self.test_column = test_column
        self.entry_point_column = entry_point_column
        self.timeout_s = timeout_s

    @property
    def task_columns(self) -> tuple[str, ...]:
        return (self.test_column, self.entry_point_column)

    def __call__(self, step: Step) -> Step:
        if not step.done:
            return step
        return step.add_reward(self.name, 1.0 if self.passes(step) else 0.0)

    def passes(self, step: Step) -> bool:
        """Whether the task's tests pass against the program of `step`'s episode."""
        if step.run_fresh is None:
            raise ValueError("UnitTests needs step.run_fresh (a fresh interpreter); CodeActEnv.step provides it")
        nonce = secrets.token_hex(16)
        grader = _grader_source(_program(step), step.task[self.test_column], step.task[self.entry_point_column], nonce)
        result = step.run_fresh(grader, timeout_s=self.timeout_s)
        return result.error is None and not result.restarted and result.stdout.rstrip().endswith(nonce)


def _program(step: Step) -> list[str]:
    """The actions that built the agent's current interpreter: those after its last restart."""
    steps = [*step.history, (step.action, step.execution)]
    program: list[str] = []
    for action, execution in steps:
        program = [] if execution.restarted else [*program, action]
    return program


_GRADER = """\
import builtins as _builtins, sys as _sys
_pristine_builtins = dict(vars(_builtins))
_modules_before = set(_sys.modules)
_module_dicts = {{_name: dict(vars(__import__(_name))) for _name in {test_modules!r}}}
_agent = {{"__name__": "__main__", "__builtins__": _builtins}}
for _source in {actions!r}:
    try:
        exec(compile(_source, "<agent>", "exec"), _agent)
    except BaseException:
        pass
_builtins_dict = vars(_builtins)
_builtins_dict.update(_pristine_builtins)
for _key in _builtins_dict.keys() - _pristine_builtins.keys():
    del _builtins_dict[_key]
for _name in set(_sys.modules) - _modules_before:
    del _sys.modules[_name]
for _name, _saved in _module_dicts.items():
    _current = vars(_sys.modules[_name])
    _current.update(_saved)
    for _key in _current.keys() - _saved.keys():
        del _current[_key]
_tests = {{_name: _value for _name, _value in _agent.items() if _name not in _pristine_builtins}}
_tests.update(__name__="__tests__", __builtins__=_pristine_builtins)
exec(compile({tests!r}, "<tests>", "exec"), _tests)
_tests["check"](_agent[{entry_point!r}])
print({nonce!r})
"""


def _grader_source(actions: list[str], tests: str, entry_point: str, nonce: str) -> str:
    return _GRADER.format(
        actions=actions, tests=tests, entry_point=entry_point, nonce=nonce, test_modules=_imported_modules(tests)
    )


def _imported_modules(source: str) -> list[str]:
    """Top-level modules that `source` imports: the grader restores their attributes after the program ran."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return []
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module.split(".")[0])
    return sorted(names)
