"""Rewards as transforms on `step()`, torchvision style: `Step -> Step` callables and a `Compose` loop."""

import dataclasses
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from ._grading import AgentProgram, Verdict
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
        agent: The agent's live program, for trusted grading code: call its functions, read its variables,
            run tests against it (see `AgentProgram`); None outside an env.
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
    agent: AgentProgram | None = field(default=None, repr=False, compare=False)

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

    The tests run in a fresh grading process that never ran agent code (`AgentProgram.run_tests`): first
    the task's `setup_column` code if any (HumanEval's prompt: the helpers its tests use), then the task's
    test code, then `check(candidate)`, where `candidate` (and the entry point's own name, which some tests
    use) calls the function named by the task's entry point in the agent's live interpreter and returns
    its result as plain data. The hidden tests and
    expected values never enter the agent's interpreter, and nothing the agent prints or forges counts: the
    verdict is a message of the grading process. An exit, a crash, a timeout or a `BaseException` of the
    agent's function, or a result that is not plain data, fails the tests.

    Args:
        test_column: Task column with test code that defines `check(candidate)`.
        entry_point_column: Task column with the name of the function under test.
        setup_column: Task column with trusted code to run before the tests, or None.
        timeout_s: Time limit of the whole test run, the agent's calls included.
    """

    def __init__(
        self,
        test_column: str = "test",
        entry_point_column: str = "entry_point",
        setup_column: str | None = None,
        timeout_s: float = 10.0,
    ):
        self.test_column = test_column
        self.entry_point_column = entry_point_column
        self.setup_column = setup_column
        self.timeout_s = timeout_s

    @property
    def task_columns(self) -> tuple[str, ...]:
        setup = () if self.setup_column is None else (self.setup_column,)
        return (self.test_column, self.entry_point_column, *setup)

    def __call__(self, step: Step) -> Step:
        if not step.done:
            return step
        return step.add_reward(self.name, 1.0 if self.verdict(step).passed else 0.0)

    def verdict(self, step: Step) -> Verdict:
        """The verdict of the task's tests on the program of `step`'s episode."""
        if step.agent is None:
            raise ValueError("UnitTests needs step.agent (the agent's program); CodeActEnv.step provides it")
        task = step.task
        entry_point = task[self.entry_point_column]
        return step.agent.run_tests(
            f"{task[self.test_column]}\ncheck(candidate)\n",
            functions={"candidate": entry_point, entry_point: entry_point},
            setup="" if self.setup_column is None else task[self.setup_column],
            timeout_s=self.timeout_s,
        )
