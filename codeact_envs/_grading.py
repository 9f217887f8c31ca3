"""Trusted grading: call the agent's functions, read its variables, run tests against its program.

A verdict never runs where agent code ran. Grading code on the host, or test code in a fresh grading
process forked from the sandbox's template (which never runs agent code), asks the agent's live interpreter
for values; only plain data (None, bool, int, float, str, and lists, tuples, dicts and sets of them, with
size and depth caps) comes back. An object of the agent's, its `__eq__`, its patched builtins or its trace
hooks never reach the verdict.
"""

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ._errors import AgentCallError
from ._sandbox import Sandbox
from ._sandbox._protocol import ProtocolError, decode_value, encode_value


@dataclass(frozen=True)
class Verdict:
    """The outcome of tests run against the agent's program.

    Attributes:
        passed: Whether the tests ran to the end without raising and every call into the agent's program
            answered.
        detail: Why they did not pass (the test's traceback or the failed call), or "".
    """

    passed: bool
    detail: str = ""


class AgentProgram:
    """The agent's live program as trusted grading code sees it.

    `env.step` hands one to transforms as `step.agent`. It reaches the interpreter of the current episode;
    after the episode's last step it still holds the agent's final program until the env ends the episode.

    Example:
        >>> class AddsUp(Transform):
        ...     def __call__(self, step):
        ...         if not step.done:
        ...             return step
        ...         try:
        ...             right = step.agent.call("add", 2, 3) == 5 and step.agent.read("TOTAL") == 10
        ...         except AgentCallError:
        ...             right = False
        ...         return step.add_reward(self.name, 1.0 if right else 0.0)

    Args:
        sandbox: The env's sandbox.
        timeout_s: Time limit of one call or read.
    """

    def __init__(self, sandbox: Sandbox, *, timeout_s: float):
        self._sandbox = sandbox
        self.timeout_s = timeout_s

    def call(self, name: str, /, *args: Any, **kwargs: Any) -> Any:
        """Call the agent's function `name` with plain-data arguments in its interpreter; its result.

        Raises:
            AgentCallError: The function does not exist, raised, exited, did not return within `timeout_s`,
                or returned something that is not plain data.
            TypeError: An argument is not plain data.
        """
        answer = self._sandbox.call(name, encode_value(list(args)), encode_value(kwargs), timeout_s=self.timeout_s)
        return _value_of(answer, f"{name}()")

    def read(self, name: str) -> Any:
        """The value of the agent's variable `name`, as plain data.

        Raises:
            AgentCallError: There is no such variable, or its value is not plain data.
        """
        return _value_of(self._sandbox.read(name, timeout_s=self.timeout_s), name)

    def run_tests(
        self, tests: str, *, functions: Mapping[str, str], setup: str = "", timeout_s: float = 10.0
    ) -> Verdict:
        """Run trusted test code in a fresh grading process against the agent's program.

        The process never ran agent code and no agent process can reach it. It runs `setup` (trusted code the
        tests need, e.g. helpers from the task's prompt), binds each name of `functions` to a function that
        calls the agent's function of the mapped name and returns its result as plain data, then runs
        `tests`. The tests pass when they run to the end without raising. A call that does not answer
        (the agent's function exited, raised a `BaseException`, hung, or returned something that is not plain
        data) fails the tests even if the test code catches the error; an ordinary exception of the agent's
        function is raised in the test code as the same built-in type, so tests can expect it.

        Args:
            tests: Test source code, e.g. HumanEval's `def check(candidate): ...` followed by `check(candidate)`.
            functions: Name in the tests -> name of the agent's function, e.g. `{"candidate": "add"}`.
            setup: Code run first, in the same namespace.
            timeout_s: Time limit of the whole run, calls included.
        """
        passed, detail = self._sandbox.grade(setup, tests, dict(functions), timeout_s=timeout_s)
        return Verdict(passed=passed, detail=detail)


def _value_of(answer: dict, what: str) -> Any:
    if not answer["ok"]:
        if answer["error_type"] is None:
            raise AgentCallError(f"{what} failed: {answer['error']}")
        raise AgentCallError(f"{what} raised {answer['error_type']}: {answer['error']}")
    try:
        return decode_value(answer["value"])
    except ProtocolError as e:
        raise AgentCallError(f"{what} gave something that is not plain data: {e}") from None
