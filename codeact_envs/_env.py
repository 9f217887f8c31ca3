"""`CodeActEnv`: a Gymnasium env whose action is Python code run in a persistent sandboxed interpreter."""

import inspect
import math
from collections.abc import Callable
from typing import Any, ClassVar, SupportsFloat, TypeVar

import gymnasium as gym

from ._errors import InfrastructureError
from ._grading import AgentProgram
from ._manifest import Manifest
from ._origin import EnvOrigin, task_rows
from ._prompt import system_prompt
from ._sandbox import ExecutionResult, Isolation, Sandbox
from ._spaces import UnicodeText
from ._transforms import Step, Transform

_TOOL_MARKER = "__codeact_tool__"
_RESERVED_NAMES = ("final_answer",)

F = TypeVar("F", bound=Callable)


def tool(method: F) -> F:
    """Make an env method callable from the agent's code as a plain function of the same name.

    The method runs on the host, where the env's state lives; its arguments and its return value
    travel as JSON. Its signature and docstring describe it to the agent in `env.system_prompt`.

    Example:
        >>> class Calculator(CodeActEnv):
        ...     @tool
        ...     def add(self, a: int, b: int) -> int:
        ...         \"\"\"Add two integers.\"\"\"
        ...         return a + b
    """
    setattr(method, _TOOL_MARKER, True)
    return method


class CodeActEnv(gym.Env[str, str]):
    """A Gymnasium env whose action is Python source code (CodeAct).

    Each episode runs in a fresh, isolated, persistent CPython interpreter. Authors subclass it and
    override the public hooks: `setup(task)` (state from the task row, returns the prompt), methods
    decorated with `@tool`, and optionally `oracle(task)`.

    Args:
        max_steps: Actions per episode; the last one ends the episode with `truncated=True`.
        timeout_s: Wall-clock limit of one action; past it the interpreter is replaced by a fresh one.
        memory_mb: Address-space limit of each process the agent's code runs.
        max_output_chars: Characters of stdout, of stderr and of the last value shown per action.
        isolation: "bubblewrap" (default) or "none", an explicit opt-in to run without namespaces.
        render_mode: "ansi" (the episode transcript) or None.
        transform: Computes the reward of every step (see `Compose`); None gives reward 0.
        origin: Where the env came from; `load_env` passes it. It gives `repo_id`, `commit`, `manifest` and
            `spec`, and the task of a `reset()` without one: the first row of the manifest's first split.
    """

    metadata: ClassVar[dict[str, Any]] = {"render_modes": ["ansi"], "render_fps": 1}

    def __init__(
        self,
        *,
        max_steps: int = 10,
        timeout_s: float = 10.0,
        memory_mb: int = 1024,
        max_output_chars: int = 10_000,
        isolation: Isolation = "bubblewrap",
        render_mode: str | None = "ansi",
        transform: Transform | None = None,
        origin: EnvOrigin | None = None,
    ):
        _check_render_mode(render_mode, self.metadata["render_modes"])
        self.max_steps = max_steps
        self.timeout_s = timeout_s
        self.render_mode = render_mode
        self.transform = transform
        self.action_space = UnicodeText()
        self.observation_space = UnicodeText()
        self.task: dict[str, Any] = {}
        self.spec = origin.spec if origin is not None else None
        self._origin = origin
        self._example_task: dict[str, Any] | None = None
        self._tools = _collect_tools(self)
        self._sandbox = Sandbox(
            timeout_s=timeout_s,
            memory_mb=memory_mb,
            max_output_chars=max_output_chars,
            cpu_time_s=math.ceil(timeout_s * max_steps),
            isolation=isolation,
        )
        self._agent = AgentProgram(self._sandbox, timeout_s=timeout_s)
        self._steps = 0
        self._done = True
        self._transcript: list[tuple[str, str]] = []
        self._history: list[tuple[str, ExecutionResult]] = []

    @property
    def repo_id(self) -> str | None:
        """The Hub dataset repo the env was loaded from, or its folder's path; None when not built by `load_env`."""
        return None if self._origin is None else self._origin.repo_id

    @property
    def commit(self) -> str | None:
        """The resolved commit of the env's Hub repo; None for a folder or an env not built by `load_env`."""
        return None if self._origin is None else self._origin.commit

    @property
    def manifest(self) -> Manifest | None:
        """The env's declaration in its `environment.yaml`; None when not built by `load_env`."""
        return None if self._origin is None else self._origin.manifest

    def setup(self, task: dict[str, Any]) -> str:
        """Set the env's state from a task row and return the first observation (the prompt).

        Override it. The row stays on the host: only the returned text reaches the agent.
        """
        return str(task.get("prompt", "Write Python code. Call final_answer(value) when you are done."))

    def oracle(self, task: dict[str, Any]) -> str:
        """Return code that solves `task`, for checks; envs that can solve their tasks override it."""
        raise NotImplementedError(f"{type(self).__name__} defines no oracle(task)")

    @property
    def system_prompt(self) -> str:
        """What a model acting in this env is told: how code actions run, every tool, the answer format."""
        return system_prompt(self._tools)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[str, dict[str, Any]]:
        """Start an episode in a fresh interpreter; the task row is `options["task"]`.

        Without a task (as Gymnasium's `check_env` calls it), an env built by `load_env` plays its example task:
        the first row of its manifest's first split. An env built directly gets the empty task `{}`.
        """
        super().reset(seed=seed)
        given = (options or {}).get("task")
        self.task = dict(given) if given is not None else self._default_task()
        self._sandbox.reset(self._tools, seed=seed)
        observation = self.setup(self.task) if given is not None else self._setup_without_a_task()
        self._steps = 0
        self._done = False
        self._transcript = [("task", observation)]
        self._history = []
        return observation, {"tools": list(self._tools)}

    def step(self, action: str) -> tuple[str, SupportsFloat, bool, bool, dict[str, Any]]:
        """Run `action` (Python source) in the episode's interpreter.

        Raises:
            InfrastructureError: The sandbox or a tool failed for a reason that is not the agent's code (a tool
                raised `InfrastructureError`); the episode is over.
        """
        if self._done:
            raise RuntimeError("the episode is over (or never started): call reset() before step()")
        if not isinstance(action, str):
            raise TypeError(f"an action is Python source code as a str, got {type(action).__name__}")
        try:
            result = self._sandbox.run(action)
        except InfrastructureError:
            self._done = True
            raise
        self._steps += 1
        step = self._rewarded(self._step_record(action, result))
        self._done = step.done
        if step.done:
            self._sandbox.finish()
        self._history.append((action, result))
        self._transcript += [(f"action {self._steps}", action), (f"observation {self._steps}", step.observation)]
        return step.observation, step.reward, step.terminated, step.truncated, step.info

    def _default_task(self) -> dict[str, Any]:
        """The task of a `reset()` without one: the first row of the env's first split (read once), or `{}`."""
        if self._origin is None:
            return {}
        if self._example_task is None:
            self._example_task = _first_row(self._origin)
        return dict(self._example_task)

    def _setup_without_a_task(self) -> str:
        """`setup` on the default task; a failure on the empty task of an env with no task set says what to pass."""
        try:
            return self.setup(self.task)
        except InfrastructureError:
            raise
        except Exception as e:
            if self._origin is not None:
                raise
            name = type(self).__name__
            raise ValueError(
                f"{name}.setup raised {e!r} on the empty task {{}}: reset() got no task, and {name} has no task set "
                f"since it was not built by load_env; pass one: env.reset(options={{'task': row}})"
            ) from e

    def _step_record(self, action: str, result: ExecutionResult) -> Step:
        terminated = result.has_final_answer
        info: dict[str, Any] = {"execution": result, "step": self._steps, "rewards": {}}
        if terminated:
            info["answer"] = result.final_answer
        return Step(
            task=self.task,
            action=action,
            observation=_observation(result, self.timeout_s),
            execution=result,
            terminated=terminated,
            truncated=not terminated and self._steps >= self.max_steps,
            info=info,
            history=tuple(self._history),
            agent=self._agent,
        )

    def _rewarded(self, step: Step) -> Step:
        if self.transform is None:
            return step
        step = self.transform(step)
        if not isinstance(step, Step):
            raise TypeError(f"{self.transform!r} returned {type(step).__name__}, not a Step")
        return step

    def render(self) -> str | None:
        """The episode so far, as text (render mode "ansi")."""
        if self.render_mode is None:
            return None
        return "\n".join(f"--- {title} ---\n{text.rstrip()}" for title, text in self._transcript) + "\n"

    def close(self) -> None:
        """Kill every process of the env's sandbox and delete its files."""
        self._sandbox.close()
        if self.transform is not None:
            self.transform.close()
        self._done = True
        super().close()

    def __enter__(self) -> "CodeActEnv":
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()


def env_tools(env: CodeActEnv) -> dict[str, Callable]:
    """The env's tools by name, as the agent's code calls them."""
    return dict(env._tools)


def _first_row(origin: EnvOrigin) -> dict[str, Any]:
    manifest = origin.manifest
    split = manifest.splits[0]
    rows = task_rows(manifest, origin.repo_id, origin.commit, split, streaming=True)
    first = next(iter(rows), None)
    if first is None:
        raise ValueError(
            f"{manifest.path}: split {split!r} has no task rows, and reset() without a task plays its first row; "
            "add task rows, or pass a task: env.reset(options={'task': row})"
        )
    return dict(first)


def defines_oracle(env: CodeActEnv) -> bool:
    """Whether the env's class overrides `oracle`, so its tasks can be solved by code it provides."""
    return type(env).oracle is not CodeActEnv.oracle


def _check_render_mode(render_mode: str | None, supported: list[str]) -> None:
    if render_mode is not None and render_mode not in supported:
        raise ValueError(f"render_mode must be one of {supported} or None, got {render_mode!r}")


def _collect_tools(env: CodeActEnv) -> dict[str, Callable]:
    """Bound methods marked by `@tool`, by name."""
    tools = {}
    for name, member in inspect.getmembers(type(env)):
        if getattr(member, _TOOL_MARKER, False):
            if name in _RESERVED_NAMES:
                raise ValueError(f"a tool cannot be named {name!r}: the sandbox defines it; rename the method")
            tools[name] = getattr(env, name)
    return tools


def _observation(result: ExecutionResult, timeout_s: float) -> str:
    """The text a model reads after an action; it is never empty."""
    parts = [
        _with_omission(result.stdout, result.stdout_omitted),
        _with_omission(result.stderr, result.stderr_omitted),
        result.value or "",
        result.error or "",
        *_status_markers(result, timeout_s),
    ]
    text = "\n".join(part.rstrip("\n") for part in parts if part)
    return text or "[no output]"


def _with_omission(text: str, omitted: int) -> str:
    if not omitted:
        return text
    marker = f"[output truncated: {omitted} more characters not shown]"
    return "\n".join(part for part in (text.rstrip("\n"), marker) if part)


def _status_markers(result: ExecutionResult, timeout_s: float) -> list[str]:
    markers = []
    if result.timed_out_tool is not None:
        markers.append(
            f"[timeout: the tool {result.timed_out_tool}() was still running after {timeout_s:g} s; "
            "the action was stopped]"
        )
    elif result.timed_out:
        markers.append(f"[timeout: the action ran longer than {timeout_s:g} s and was stopped]")
    elif result.restarted:
        markers.append("[the interpreter exited]")
    if result.restarted:
        markers.append("[the interpreter was restarted: your variables are gone]")
    return markers
