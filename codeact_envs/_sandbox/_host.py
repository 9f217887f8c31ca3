"""The host side of the sandbox: a warm template, a fresh interpreter per episode, actions and tool calls.

Nothing from the sandbox is trusted: every frame is validated by `_protocol`, every cap is applied here,
every send and receive has a deadline, and host tools run on their own thread so that a step ends on
time whatever a tool does.
"""

import base64
import contextlib
import functools
import marshal
import math
import os
import queue
import socket
import subprocess
import tempfile
import threading
import time
import traceback
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .._errors import InfrastructureError, SandboxError
from . import _protocol as protocol
from ._cgroups import Cgroups
from ._channel import Channel, ChannelClosed, ChannelTimeout, wait_for_any
from ._launch import Isolation, Launch, Recipe, recipe

_START_TIMEOUT_S = 30.0
_CONTROL_TIMEOUT_S = 10.0
_EXTRA_PIDS = 6
_TEMPLATE_MEMORY_BYTES = 64 << 20
_MARKER_ALLOWANCE = 64
_DETAIL_CHARS = 4000
_COMPILED_TESTS = 1024
_DURING_ACTION = frozenset({"tool", "result"})
_DURING_CALL = frozenset({"tool", "returned"})
_FROM_GRADER = frozenset({"verdict"})
_WHILE_SERVING = frozenset({"tool", "served"})
_READY = frozenset({"ready"})


@dataclass(frozen=True)
class ExecutionResult:
    """What one action did inside the sandbox.

    Attributes:
        stdout: Text written to standard output (at most `max_output_chars` characters).
        stderr: Text written to standard error (at most `max_output_chars` characters).
        value: `repr` of the action's last expression, or None when it has none or it is None.
        error: The traceback of an uncaught exception (the agent's frames only), or None.
        error_type: The exception's class name, or None.
        stdout_omitted: Characters of standard output left out by the cap.
        stderr_omitted: Characters of standard error left out by the cap.
        final_answer: The value given to `final_answer`, as plain data (its `repr` when it is not plain data).
        has_final_answer: Whether the action called `final_answer`.
        timed_out: Whether the action ran past `timeout_s` and was killed.
        restarted: Whether the interpreter was replaced by a fresh one (timeout, crash or invalid message).
        tool_calls: How many tool calls the action made.
        timed_out_tool: The host tool that was still running when the time ran out, or None.
    """

    stdout: str = ""
    stderr: str = ""
    value: str | None = None
    error: str | None = None
    error_type: str | None = None
    stdout_omitted: int = 0
    stderr_omitted: int = 0
    final_answer: Any = None
    has_final_answer: bool = False
    timed_out: bool = False
    restarted: bool = False
    tool_calls: int = 0
    timed_out_tool: str | None = None


class _ToolOverran(Exception):
    """A host tool was still running at the action's deadline."""

    def __init__(self, name: str):
        super().__init__(name)
        self.name = name


class Sandbox:
    """A persistent, isolated CPython interpreter per episode, started from a warm template.

    Args:
        timeout_s: Wall-clock limit of one action, tool calls included; past it every process of the
            episode is killed and a fresh interpreter takes its place.
        memory_mb: Address-space limit of each process of the episode.
        max_output_chars: Characters of stdout, of stderr and of the last value kept per action.
        max_processes: Processes an episode may run at once; None lifts the limit.
        cpu_time_s: CPU seconds an episode's process may use in all; None lifts the limit.
        max_file_mb: Size limit of any file the episode writes, and of each scratch folder.
        max_open_files: Open file descriptors per process.
        isolation: "bubblewrap" (namespaces, read-only system, no network) or "none", an explicit
            opt-in to run without namespaces.
    """

    def __init__(
        self,
        *,
        timeout_s: float = 10.0,
        memory_mb: int = 1024,
        max_output_chars: int = 10_000,
        max_processes: int | None = 64,
        cpu_time_s: float | None = 600.0,
        max_file_mb: int = 64,
        max_open_files: int = 256,
        isolation: Isolation = "bubblewrap",
    ):
        self._recipe: Recipe = recipe(isolation, max_file_mb=max_file_mb)
        self.timeout_s = timeout_s
        self.memory_mb = memory_mb
        self.max_output_chars = max_output_chars
        self.max_processes = max_processes
        self.cpu_time_s = cpu_time_s
        self.max_file_mb = max_file_mb
        self.max_open_files = max_open_files
        self.isolation = isolation
        self._template: _Template | None = None
        self._interpreter: Channel | None = None
        self._tools: dict[str, Callable] = {}
        self._tool_thread = _ToolThread()
        self._seed: int | None = None
        self._requests = 0
        self._lost_since_last_action = False
        self._needs_fresh_interpreter = False

    def reset(self, tools: dict[str, Callable] | None = None, *, seed: int | None = None) -> None:
        """Replace the episode interpreter by a fresh one whose namespace holds stubs for `tools`.

        Args:
            tools: Host functions the agent's code may call by name.
            seed: Seed of the interpreter's `random` module; the same seed gives the same draws.
        """
        self._tools = dict(tools or {})
        self._seed = seed
        self._needs_fresh_interpreter = False
        self._spawn()
        self._lost_since_last_action = False

    def run(self, code: str, *, timeout_s: float | None = None) -> ExecutionResult:
        """Execute `code` in the episode's namespace; tool calls are served here, on the host.

        Args:
            code: Python source.
            timeout_s: Overrides the sandbox's `timeout_s` for this call.
        """
        if self._needs_fresh_interpreter:
            self._spawn()
        interpreter = self._live_interpreter()
        deadline = time.monotonic() + (self.timeout_s if timeout_s is None else timeout_s)
        restarted, self._lost_since_last_action = self._lost_since_last_action, False
        request = self._next_request()
        tool_calls = 0
        try:
            interpreter.send(protocol.message("exec", id=request, code=code), deadline)
            while True:
                msg = interpreter.receive(_DURING_ACTION, deadline)
                if msg["op"] == "result":
                    return self._result(msg, request, tool_calls, restarted)
                tool_calls += 1
                interpreter.send(self._serve_tool(msg, deadline), deadline)
        except ChannelTimeout:
            self._spawn()
            return ExecutionResult(timed_out=True, restarted=True, tool_calls=tool_calls)
        except _ToolOverran as overran:
            self._spawn()
            return ExecutionResult(timed_out=True, restarted=True, tool_calls=tool_calls, timed_out_tool=overran.name)
        except ChannelClosed:
            self._spawn()
            return ExecutionResult(restarted=True, tool_calls=tool_calls)
        except InfrastructureError:
            self.finish()
            raise

    def call(self, name: str, args: str, kwargs: str, *, timeout_s: float) -> dict:
        """Call the function `name` of the agent's program with encoded arguments; the "returned" message.

        `args` and `kwargs` are `_protocol.encode_value` texts of a list and of a dict with str keys. The
        answer's value is left encoded (a grader decodes it itself). A failure on the agent's side is a
        message with `ok` False, never an exception: with the exception's type when the function raised an
        `Exception`, without one for anything else (an exit, a timeout, an invalid message). After a timeout
        or an invalid message the interpreter is replaced before the next action.
        """
        call = protocol.message("call", id=self._next_request(), name=name, args=args, kwargs=kwargs)
        return self._ask(call, timeout_s)

    def read(self, name: str, *, timeout_s: float) -> dict:
        """The value of the variable `name` of the agent's program, as a "returned" message (see `call`)."""
        return self._ask(protocol.message("read", id=self._next_request(), name=name), timeout_s)

    def grade(self, setup: str, tests: str, stubs: dict[str, str], *, timeout_s: float) -> tuple[bool, str]:
        """Run trusted test code in a fresh grading process; `(passed, detail)`.

        The grading process is forked from the template, so it never ran agent code. It runs `setup`, binds
        each name of `stubs` to a function that calls the agent's function of the mapped name, then runs
        `tests`; it passes when nothing was raised and every call answered. The calls go straight to the
        agent's interpreter on a socket between the two, and the grader validates every answer as the host
        would; the verdict comes on the grader's own socket, which no agent process can reach. A grading
        process that dies, hangs or breaks the protocol is a failed verdict.
        """
        interpreter = self._interpreter
        if interpreter is None:
            return False, "the agent's interpreter is gone"
        try:
            code = _compiled_tests(setup, tests)
        except (SyntaxError, ValueError, RecursionError, MemoryError) as e:
            return False, _capped(protocol.valid_text("".join(traceback.format_exception_only(e))), _DETAIL_CHARS)
        deadline = time.monotonic() + timeout_s
        grader = self._template_for_grading().spawn(self._grader_settings(timeout_s))
        grader_end, interpreter_end = socket.socketpair()
        served = self._next_request()
        try:
            interpreter.send(protocol.message("serve", id=served), deadline, fds=(interpreter_end.fileno(),))
            job = protocol.message("grade", code=code, stubs=protocol.encode_value(stubs))
            grader.send(job, deadline, fds=(grader_end.fileno(),))
            grader_end.close()
            interpreter_end.close()
            return self._verdict(grader, interpreter, served, deadline, timeout_s)
        except (ChannelTimeout, ChannelClosed) as e:
            self._drop_interpreter()
            return False, _grading_failure(e, timeout_s)
        finally:
            grader_end.close()
            interpreter_end.close()
            grader.close()

    def _verdict(self, grader: Channel, interpreter: Channel, served: int, deadline: float, timeout_s: float):
        """Wait for the grader's verdict, then for the interpreter to be back; tools are refused meanwhile.

        A grading that cannot start (episode code holds every process the sandbox may have, or made the template
        exit) is a failed verdict, never an infrastructure failure: an agent must not be able to turn a wrong
        program into an episode that training leaves out.
        """
        control = self._template.control
        verdict, started, back = None, False, False
        while verdict is None or not back:
            ready = wait_for_any([grader, interpreter, control] if verdict is None else [interpreter], deadline)
            if control in ready and not started:
                verdict = False, "no grading process could start: the sandbox's template exited"
                continue
            if grader in ready and verdict is None:
                try:
                    msg = grader.receive(_FROM_GRADER if started else _READY, deadline)
                    started = True
                    if msg["op"] == "verdict":
                        verdict = msg["passed"], msg["detail"]
                except ChannelClosed as e:
                    verdict = False, f"the grading process failed: {e}"
            if interpreter in ready:
                msg = interpreter.receive(_WHILE_SERVING, deadline)
                if msg["op"] == "tool":
                    interpreter.send(_tool_refused(msg["name"]), deadline)
                elif msg["id"] != served:
                    raise ChannelClosed("an answer to a request that was never made")
                else:
                    back = True
        return verdict

    def finish(self) -> None:
        """End the episode: its processes are killed and a fresh interpreter is prepared in the background."""
        interpreter, self._interpreter = self._interpreter, None
        if interpreter is None:
            return
        interpreter.close()
        if self._template is not None:
            with contextlib.suppress(ChannelClosed, ChannelTimeout):
                self._template.control.send(protocol.message("finish"), time.monotonic() + _CONTROL_TIMEOUT_S)

    def close(self) -> None:
        """Kill every process of the sandbox and delete its files; calling it again does nothing."""
        if self._interpreter is not None:
            self._interpreter.close()
            self._interpreter = None
        if self._template is not None:
            self._template.release()
            self._template = None
        self._tool_thread.stop()

    def __enter__(self) -> "Sandbox":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    @property
    def template_pid(self) -> int | None:
        """Host PID of the process that runs the sandbox (bwrap, or the template itself)."""
        return None if self._template is None else self._template.process.pid

    def _live_interpreter(self) -> Channel:
        if self._interpreter is None:
            raise RuntimeError("the sandbox has no episode: call reset() first")
        return self._interpreter

    def _next_request(self) -> int:
        self._requests += 1
        return self._requests

    def _ask(self, msg: dict, timeout_s: float) -> dict:
        interpreter = self._interpreter
        if interpreter is None:
            return _failed_call(msg, "the agent's interpreter is gone")
        deadline = time.monotonic() + timeout_s
        try:
            interpreter.send(msg, deadline)
            while True:
                answer = interpreter.receive(_DURING_CALL, deadline)
                if answer["op"] == "returned" and answer["id"] == msg["id"]:
                    return answer
                if answer["op"] == "returned":
                    raise ChannelClosed("an answer to a call that was never made")
                interpreter.send(_tool_refused(answer["name"]), deadline)
        except ChannelTimeout:
            failure = f"it did not return within {timeout_s:g} s"
        except ChannelClosed as e:
            failure = f"the agent's interpreter failed: {e}"
        self._drop_interpreter()
        return _failed_call(msg, failure)

    def _drop_interpreter(self) -> None:
        """Give up on the interpreter (it hangs or broke the protocol); a fresh one starts before the next action."""
        self._interpreter.close()
        self._interpreter = None
        self._needs_fresh_interpreter = True

    def _template_for_grading(self) -> "_Template":
        if self._template is None or not self._template.alive():
            raise RuntimeError("the sandbox has no episode to grade: call reset() first")
        return self._template

    def _grader_settings(self, timeout_s: float) -> dict:
        return {
            "role": "grader",
            "memory_bytes": self.memory_mb << 20,
            "cpu_time_s": math.ceil(timeout_s) + 1,
            "max_processes": self._template.nproc,
            "max_file_bytes": self.max_file_mb << 20,
            "max_open_files": self.max_open_files,
        }

    def _serve_tool(self, msg: dict, deadline: float) -> dict:
        name = msg["name"]
        if name not in self._tools:
            return _tool_error("NameError", f"no tool named {name!r}")
        args, kwargs = _tool_arguments(msg)
        outcome = self._tool_thread.run(self._tools[name], args, kwargs, deadline)
        if outcome is None:
            raise _ToolOverran(name)
        value, error = outcome
        if isinstance(error, InfrastructureError):
            raise error
        if error is not None:
            return _tool_error(type(error).__name__, _describe(error, self.max_output_chars))
        try:
            return protocol.message("reply", ok=True, value=protocol.encode_value(value), error_type=None, error=None)
        except (TypeError, ValueError, RecursionError) as e:
            return _tool_error("TypeError", f"tool {name!r} returned a value that cannot be sent to the sandbox: {e}")

    def _result(self, msg: dict, request: int, tool_calls: int, restarted: bool) -> ExecutionResult:
        if msg["id"] != request:
            raise ChannelClosed(f"a result for action {msg['id']}, not for action {request}")
        limit = self.max_output_chars
        stdout, stdout_cut = _cut(msg["stdout"], limit)
        stderr, stderr_cut = _cut(msg["stderr"], limit)
        error, error_type = _capped(msg["error"], limit), msg["error_type"]
        answer, has_answer = None, msg["answer"] is not None
        if has_answer and len(msg["answer"]) > protocol.MAX_ANSWER_CHARS:
            has_answer = False
            error_type = "ValueError"
            error = (
                f"ValueError: final_answer got {len(msg['answer'])} characters of data, more than the cap of "
                f"{protocol.MAX_ANSWER_CHARS}; answer with less"
            )
        elif has_answer:
            answer = _decoded(msg["answer"])
        return ExecutionResult(
            stdout=stdout,
            stderr=stderr,
            value=_capped(msg["value"], limit),
            error=error,
            error_type=error_type,
            stdout_omitted=msg["stdout_omitted"] + stdout_cut,
            stderr_omitted=msg["stderr_omitted"] + stderr_cut,
            final_answer=answer,
            has_final_answer=has_answer,
            restarted=restarted,
            tool_calls=tool_calls,
        )

    def _spawn(self) -> None:
        """Start a fresh interpreter, and a fresh template first when the old one is gone or broken."""
        self._lost_since_last_action = self._lost_since_last_action or self._needs_fresh_interpreter
        self._needs_fresh_interpreter = False
        if self._interpreter is not None:
            self._interpreter.close()
            self._interpreter = None
        if self._template is None or not self._template.alive():
            self._restart_template()
        try:
            self._interpreter = self._template.open(self._interpreter_settings())
        except SandboxError:
            self._restart_template()
            self._interpreter = self._template.open(self._interpreter_settings())

    def _restart_template(self) -> None:
        if self._template is not None:
            self._template.release()
            self._template = None
        self._template = _Template.start(self, self._recipe, self._cgroup_limits(), self._nproc_limit())

    def _interpreter_settings(self) -> dict:
        return {
            "role": "interpreter",
            "tools": [{"name": name, "doc": fn.__doc__ or ""} for name, fn in self._tools.items()],
            "max_output_chars": self.max_output_chars,
            "memory_bytes": self.memory_mb << 20,
            "cpu_time_s": None if self.cpu_time_s is None else math.ceil(self.cpu_time_s),
            "max_processes": self._template.nproc,
            "max_file_bytes": self.max_file_mb << 20,
            "max_open_files": self.max_open_files,
            "seed": self._seed,
        }

    def _cgroup_limits(self) -> dict[str, int]:
        """A pids cgroup (the only fork cap that holds for root) and a memory cgroup for the whole episode."""
        limits = {"memory": (self.memory_mb << 20) + _TEMPLATE_MEMORY_BYTES}
        if self.max_processes is not None:
            limits["pids"] = self.max_processes + _EXTRA_PIDS
        return limits

    def _nproc_limit(self) -> int | None:
        """RLIMIT_NPROC counts all processes of the host user, so a non-root user's limit adds those.

        Counted once per template, not on every reset: the count walks /proc.
        """
        if self.max_processes is None or os.geteuid() == 0:
            return None
        return self.max_processes + _processes_of(os.geteuid())


@functools.lru_cache(maxsize=_COMPILED_TESTS)
def _compiled_tests(setup: str, tests: str) -> str:
    """`setup` and `tests` compiled here, once per distinct text, as base64 `marshal` data for a grader.

    A grader is a fresh process per episode: compiling there would be paid again in every episode. The code
    is the env's trusted test code (it never reaches a process that runs agent code), and the sandbox runs
    this same Python, so its code objects load there as they are.

    Raises:
        SyntaxError, ValueError, RecursionError, MemoryError: The code does not compile.
    """
    code = (compile(setup, "<setup>", "exec", dont_inherit=True), compile(tests, "<tests>", "exec", dont_inherit=True))
    return base64.b64encode(marshal.dumps(code)).decode("ascii")


class _Template:
    """The host's handle on a running template: its process, control channel, cgroups, scratch and stderr."""

    def __init__(self, process: subprocess.Popen, control: Channel, cgroups: Cgroups, launch: Launch, stderr: Any):
        self.process = process
        self.control = control
        self.cgroups = cgroups
        self.launch = launch
        self.stderr = stderr
        self.nproc: int | None = None
        self._finalizer: weakref.finalize | None = None

    @classmethod
    def start(cls, owner: Any, recipe: Recipe, limits: dict[str, int], nproc: int | None) -> "_Template":
        """Start a template for `owner` (released with it) and wait until it is ready."""
        cgroups = _make_cgroups(limits, needs_pids="pids" in limits)
        stderr = tempfile.TemporaryFile()
        host_end, template_end = socket.socketpair()
        try:
            launch = recipe.launch(template_end.fileno(), cgroups.enter_commands())
            process = _popen(launch, template_end.fileno(), stderr)
        except BaseException:
            host_end.close()
            cgroups.remove()
            stderr.close()
            raise
        finally:
            template_end.close()
        template = cls(process, Channel(host_end), cgroups, launch, stderr)
        template.nproc = nproc
        template._finalizer = weakref.finalize(owner, _release, process, template.control, cgroups, launch, stderr)
        try:
            template.control.receive(_READY, time.monotonic() + _START_TIMEOUT_S)
        except (ChannelTimeout, ChannelClosed) as e:
            detail = template.stderr_text() or "no error output"
            template.release()
            raise SandboxError(recipe.start_failure(detail)) from e
        return template

    def open(self, settings: dict) -> Channel:
        """Have the template hand a fresh process a new socket; return the host's end once it is ready."""
        channel = self.spawn(settings)
        try:
            if self.control in wait_for_any([channel, self.control], time.monotonic() + _CONTROL_TIMEOUT_S):
                raise ChannelClosed("the template exited")
            channel.receive(_READY, time.monotonic() + _CONTROL_TIMEOUT_S)
        except (ChannelClosed, ChannelTimeout) as e:
            channel.close()
            raise SandboxError(f"a fresh interpreter did not start: {self.stderr_text()}") from e
        return channel

    def spawn(self, settings: dict) -> Channel:
        """Have the template hand a fresh process a new socket; return the host's end at once (its first
        message will be "ready")."""
        host_end, inside_end = socket.socketpair()
        try:
            deadline = time.monotonic() + _CONTROL_TIMEOUT_S
            self.control.send(protocol.message("spawn", settings=settings), deadline, fds=(inside_end.fileno(),))
        except (ChannelClosed, ChannelTimeout) as e:
            host_end.close()
            raise SandboxError(f"the sandbox's template stopped answering: {self.stderr_text()}") from e
        finally:
            inside_end.close()
        return Channel(host_end)

    def alive(self) -> bool:
        return self.process.poll() is None

    def stderr_text(self) -> str:
        self.stderr.seek(0)
        return self.stderr.read().decode(errors="replace").strip()

    def release(self) -> None:
        if self._finalizer is not None:
            self._finalizer()


def _popen(launch: Launch, control_fd: int, stderr: Any) -> subprocess.Popen:
    try:
        return subprocess.Popen(
            launch.command,
            env=launch.environment,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            pass_fds=(control_fd, *launch.pass_fds),
            cwd=launch.cwd,
        )
    finally:
        for fd in launch.pass_fds:
            os.close(fd)


def _make_cgroups(limits: dict[str, int], *, needs_pids: bool) -> Cgroups:
    cgroups = Cgroups.create(limits)
    if needs_pids and "pids" not in cgroups.controllers and os.geteuid() == 0:
        cgroups.remove()
        raise SandboxError(
            "running as root, the sandbox needs a pids cgroup to cap its processes (RLIMIT_NPROC does not "
            "apply to root) but /sys/fs/cgroup accepts no new one: run as a non-root user, mount a writable "
            "pids cgroup, or pass max_processes=None to run without a process limit"
        )
    return cgroups


def _release(process: subprocess.Popen, control: Channel, cgroups: Cgroups, launch: Launch, stderr: Any) -> None:
    """Stop a template and everything under it: closing its control socket makes it kill all and exit."""
    control.close()
    try:
        process.wait(timeout=1.0)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
    cgroups.remove()
    if launch.scratch is not None:
        launch.scratch.cleanup()
    stderr.close()


class _ToolThread:
    """Runs host tools one at a time on a daemon thread, so that the caller can stop waiting at a deadline.

    A tool still running at the deadline keeps its thread; the next call gets a new one.
    """

    def __init__(self):
        self._jobs: queue.SimpleQueue | None = None

    def run(self, tool: Callable, args: list, kwargs: dict, deadline: float) -> tuple[Any, BaseException | None] | None:
        """`(value, None)` or `(None, exception)`; None when the tool was still running at `deadline`."""
        if self._jobs is None:
            self._jobs = queue.SimpleQueue()
            threading.Thread(target=_serve_jobs, args=(self._jobs,), name="codeact-tools", daemon=True).start()
        done: queue.SimpleQueue = queue.SimpleQueue()
        self._jobs.put((tool, args, kwargs, done))
        try:
            return done.get(timeout=max(deadline - time.monotonic(), 0.0))
        except queue.Empty:
            self.stop()
            return None

    def stop(self) -> None:
        """Let the thread end once its current tool returns."""
        if self._jobs is not None:
            self._jobs.put(None)
            self._jobs = None


def _serve_jobs(jobs: queue.SimpleQueue) -> None:
    while True:
        job = jobs.get()
        if job is None:
            return
        tool, args, kwargs, done = job
        try:
            done.put((tool(*args, **kwargs), None))
        except BaseException as e:
            done.put((None, e))


def _tool_arguments(msg: dict) -> tuple[list, dict]:
    args, kwargs = _decoded(msg["args"]), _decoded(msg["kwargs"])
    if type(args) is not list or type(kwargs) is not dict or not all(type(key) is str for key in kwargs):
        raise ChannelClosed("tool arguments that are not a list and a dict with str keys")
    return args, kwargs


def _decoded(text: str) -> Any:
    try:
        return protocol.decode_value(text)
    except protocol.ProtocolError as e:
        raise ChannelClosed(f"the sandbox sent a value that is not plain data: {e}") from None


def _tool_error(type_name: str, message: str) -> dict:
    return protocol.message("reply", ok=False, value=None, error_type=type_name, error=message)


def _grading_failure(error: Exception, timeout_s: float) -> str:
    if isinstance(error, ChannelTimeout):
        return f"the tests did not finish within {timeout_s:g} s"
    return f"the grading failed: {error}"


def _failed_call(msg: dict, reason: str) -> dict:
    return protocol.message("returned", id=msg["id"], ok=False, value=None, error_type=None, error=reason)


def _tool_refused(name: str) -> dict:
    return _tool_error("RuntimeError", f"tool {name!r} cannot be called while the agent's program is being graded")


def _describe(error: BaseException, limit: int) -> str:
    try:
        text = str(error)
    except Exception:
        text = f"<{type(error).__name__} that cannot be shown>"
    return _capped(protocol.valid_text(text), limit)


def _cut(text: str, limit: int) -> tuple[str, int]:
    """At most `limit` characters of `text`, and how many were cut."""
    if len(text) <= limit:
        return text, 0
    return text[:limit], len(text) - limit


def _capped(text: str | None, limit: int) -> str | None:
    """`text` cut to `limit` characters with a marker, unless it is within the marker the sandbox adds itself."""
    if text is None or len(text) <= limit + _MARKER_ALLOWANCE:
        return text
    return text[:limit] + f"... [{len(text) - limit} more characters]"


def _processes_of(uid: int) -> int:
    count = 0
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                count += entry.stat().st_uid == uid
    return count
