"""The interpreter side of the sandbox, run with the standard library only.

The host starts this file as a template interpreter. The template forks one episode interpreter per
episode; the episode interpreter executes the agent's code in a persistent namespace and talks to
the host in JSON lines over a socket that the host hands over for that episode only.
"""

import ast
import builtins
import contextlib
import ctypes
import gc
import io
import json
import linecache
import os
import random
import resource
import select
import shutil
import signal
import site
import socket
import sys
import threading
import time
import traceback
import types

_PR_SET_DUMPABLE = 4
_ACTION_FILENAME = "<action {}>"
_WORKER_FILENAME = "<sandbox>"
_MAX_FDS_PER_MESSAGE = 1
_CONTROL_BUFFER = 1 << 20
_MAX_ANSWER_CHARS = 1_000_000
_REAP_INTERVAL_S = 1.0
_PRELOADED_MODULES = (
    "bisect",
    "collections",
    "copy",
    "dataclasses",
    "datetime",
    "decimal",
    "fractions",
    "functools",
    "hashlib",
    "heapq",
    "itertools",
    "math",
    "operator",
    "re",
    "statistics",
    "string",
    "textwrap",
    "typing",
)


class _FinalAnswer(BaseException):
    """Raised by `final_answer` to stop the action; not an `Exception`, so `except Exception` lets it pass."""


class _Channel:
    """JSON lines over a stream socket."""

    def __init__(self, sock: socket.socket):
        self.sock = sock
        self.reader = sock.makefile("rb")

    def send(self, message: dict) -> None:
        _send_line(self.sock, message)

    def receive(self) -> dict:
        line = self.reader.readline()
        if not line:
            raise EOFError
        return json.loads(line)


class _CappedText(io.TextIOBase):
    """A text stream that writes through to a file descriptor and drops what exceeds `limit` characters."""

    def __init__(self, fd: int, limit: int):
        self.fd = fd
        self.limit = limit
        self.written = 0
        self.dropped = 0
        self.buffer = _BytesView(self)

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        if not isinstance(text, str):
            raise TypeError(f"write() argument must be str, not {type(text).__name__}")
        room = max(self.limit - self.written, 0)
        kept = text[:room]
        if kept:
            _write_all(self.fd, kept.encode("utf-8", "backslashreplace"))
        self.written += len(kept)
        self.dropped += len(text) - len(kept)
        return len(text)

    def fileno(self) -> int:
        return self.fd

    def isatty(self) -> bool:
        return False

    @property
    def encoding(self) -> str:
        return "utf-8"

    @property
    def errors(self) -> str:
        return "backslashreplace"

    def take(self) -> tuple[str, int]:
        """Return what was written since the last call (at most `limit` characters) and how much was left out."""
        size = os.fstat(self.fd).st_size
        data = os.pread(self.fd, 4 * self.limit, 0)
        os.ftruncate(self.fd, 0)
        os.lseek(self.fd, 0, os.SEEK_SET)
        text = data.decode("utf-8", "replace")
        omitted = self.dropped + max(len(text) - self.limit, 0) + max(size - len(data), 0)
        self.written = 0
        self.dropped = 0
        return text[: self.limit], omitted


class _BytesView(io.RawIOBase):
    """`sys.stdout.buffer`: bytes written here go through the same cap as text."""

    def __init__(self, text: _CappedText):
        self.text = text

    def writable(self) -> bool:
        return True

    def write(self, data: bytes) -> int:
        self.text.write(bytes(data).decode("utf-8", "backslashreplace"))
        return len(data)

    def fileno(self) -> int:
        return self.text.fd


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


class _Episode:
    """One persistent interpreter: a namespace, tool stubs, captured output, the host channel."""

    def __init__(self, channel: _Channel, config: dict):
        self.channel = channel
        self.pid = os.getpid()
        self.limit = config["max_output_chars"]
        self.answer = None
        self.stdout = _captured_stream(1, self.limit)
        self.stderr = _captured_stream(2, self.limit)
        sys.stdout = sys.__stdout__ = self.stdout
        sys.stderr = sys.__stderr__ = self.stderr
        sys.stdin = sys.__stdin__ = open(os.devnull, encoding="utf-8")
        self.namespace = _main_module_namespace()
        for spec in config["tools"]:
            self.namespace[spec["name"]] = self._tool_stub(spec["name"], spec["doc"])
        self.namespace["final_answer"] = self._final_answer
        self.actions = 0

    def serve(self) -> None:
        while True:
            message = self.channel.receive()
            if message.get("op") == "exec":
                self.channel.send(self.execute(message["code"]))

    def execute(self, code: str) -> dict:
        self.actions += 1
        self.answer = None
        sys.stdout, sys.stderr = self.stdout, self.stderr
        value, error, error_type = None, None, None
        try:
            value = self._run(code)
        except _FinalAnswer:
            pass
        except BaseException as exc:
            error, error_type = _format_error(exc), type(exc).__name__
        self._exit_if_forked()
        stdout, stdout_omitted = self._flush(self.stdout)
        stderr, stderr_omitted = self._flush(self.stderr)
        return {
            "op": "result",
            "stdout": stdout,
            "stdout_omitted": stdout_omitted,
            "stderr": stderr,
            "stderr_omitted": stderr_omitted,
            "value": value,
            "error": error,
            "error_type": error_type,
            "answer": self.answer,
        }

    def _run(self, code: str) -> str | None:
        """Execute `code`; return the repr of its last expression, as the Python prompt shows it."""
        filename = _ACTION_FILENAME.format(self.actions)
        linecache.cache[filename] = (len(code), None, code.splitlines(True), filename)
        tree = ast.parse(code, filename)
        last = tree.body.pop() if tree.body and isinstance(tree.body[-1], ast.Expr) else None
        exec(compile(tree, filename, "exec", dont_inherit=True), self.namespace)
        if last is None:
            return None
        result = eval(compile(ast.Expression(last.value), filename, "eval", dont_inherit=True), self.namespace)
        return None if result is None else _capped_repr(result, self.limit)

    def _exit_if_forked(self) -> None:
        """A process forked by the agent's code that finishes the action must not answer the host."""
        if os.getpid() != self.pid:
            os._exit(0)

    def _flush(self, stream: _CappedText) -> tuple[str, int]:
        with contextlib.suppress(Exception):
            stream.flush()
        return stream.take()

    def _final_answer(self, value):
        """Give the final answer and end the episode."""
        answer = _json_safe(value)
        size = len(json.dumps(answer))
        if size > _MAX_ANSWER_CHARS:
            raise ValueError(
                f"final_answer got {size} characters of data, more than {_MAX_ANSWER_CHARS}; answer with less"
            )
        self.answer = {"value": answer}
        raise _FinalAnswer

    def _tool_stub(self, name: str, doc: str):
        channel = self.channel
        owner = self.pid
        one_call_at_a_time = threading.Lock()

        def stub(*args, **kwargs):
            if os.getpid() != owner:
                raise RuntimeError(f"{name}() can only be called from the episode's main process")
            with one_call_at_a_time:
                channel.send({"op": "tool", "name": name, "args": list(args), "kwargs": kwargs})
                reply = channel.receive()
            if reply.get("ok"):
                return reply["value"]
            raise _tool_exception(reply["type"], reply["message"])

        stub.__name__ = stub.__qualname__ = name
        stub.__doc__ = doc
        return stub


def _main_module_namespace() -> dict:
    """The namespace of a fresh `__main__` module, installed as `sys.modules["__main__"]` like in `python`.

    `import __main__`, pickling functions by reference (multiprocessing) and dataclasses all find the
    agent's names there.
    """
    main = types.ModuleType("__main__")
    main.__builtins__ = builtins
    main.__annotations__ = {}
    sys.modules["__main__"] = main
    return vars(main)


def _captured_stream(fd: int, limit: int) -> _CappedText:
    memfd = os.memfd_create(f"fd{fd}", 0)
    os.dup2(memfd, fd)
    os.close(memfd)
    return _CappedText(fd, limit)


def _capped_repr(value, limit: int) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + f"... [{len(text) - limit} more characters]"


def _json_safe(value):
    try:
        return json.loads(json.dumps(value))
    except (TypeError, ValueError, RecursionError):
        return repr(value)


def _tool_exception(type_name: str, message: str) -> BaseException:
    """Rebuild a tool's error as the same built-in exception type when there is one."""
    exc_type = getattr(builtins, type_name, None)
    if isinstance(exc_type, type) and issubclass(exc_type, Exception):
        try:
            return exc_type(message)
        except Exception:
            pass
    return RuntimeError(f"{type_name}: {message}")


def _format_error(exc: BaseException) -> str:
    """The traceback a model needs: the agent's frames and the libraries it called, not the worker's."""
    report = traceback.TracebackException(type(exc), exc, exc.__traceback__)
    _hide_worker_frames(report)
    return "".join(report.format())


def _hide_worker_frames(report: traceback.TracebackException | None) -> None:
    while report is not None:
        frames = [frame for frame in report.stack if frame.filename != _WORKER_FILENAME]
        report.stack = traceback.StackSummary.from_list(frames)
        _hide_worker_frames(report.__cause__)
        report = report.__context__


def _apply_limits(config: dict) -> None:
    limits = {
        resource.RLIMIT_AS: config["memory_bytes"],
        resource.RLIMIT_CPU: config["cpu_time_s"],
        resource.RLIMIT_NPROC: config["max_processes"],
        resource.RLIMIT_FSIZE: config["max_file_bytes"],
        resource.RLIMIT_NOFILE: config["max_open_files"],
        resource.RLIMIT_CORE: 0,
    }
    for kind, value in limits.items():
        if value is not None:
            resource.setrlimit(kind, (value, value))


def _seed_random(seed: int | None) -> None:
    if seed is not None:
        random.seed(seed)


def _run_episode(control: socket.socket, episode_fd: int, config: dict) -> None:
    """Body of a freshly forked episode interpreter; never returns."""
    try:
        control.close()
        os.setsid()
        os.chdir(config["work_dir"])
        _apply_limits(config)
        _seed_random(config["seed"])
        sys.argv = [""]
        channel = _Channel(socket.socket(fileno=episode_fd))
        episode = _Episode(channel, config)
        channel.send({"op": "ready", "pid": os.getpid()})
        episode.serve()
    except BaseException:
        pass
    os._exit(0)


class _Template:
    """The warm interpreter that forks episodes and kills every process of the previous one."""

    def __init__(self, control: socket.socket):
        self.control = control
        self.episode = None

    def serve(self) -> None:
        _send_line(self.control, {"op": "ready"})
        reader = _ControlReader(self.control)
        while True:
            message = reader.receive()
            self.kill_episode()
            if message is None:
                return
            if message["op"] == "spawn":
                _empty_folders(message["config"]["scratch_dirs"])
                pid = self.fork(reader.take_fd(), message["config"])
                _send_line(self.control, {"op": "spawned", "pid": pid})

    def fork(self, episode_fd: int, config: dict) -> int:
        pid = os.fork()
        if pid == 0:
            _run_episode(self.control, episode_fd, config)
        os.close(episode_fd)
        self.episode = pid
        return pid

    def kill_episode(self) -> None:
        """Kill every other process: all of the namespace when this is its PID 1, else the episode's session."""
        if os.getpid() == 1:
            _kill_namespace()
        elif self.episode is not None:
            _kill_session(self.episode)
        self.episode = None


def _kill_namespace() -> None:
    """Signal every process of the PID namespace until none is left (`kill(-1)` spares only PID 1)."""
    while True:
        _reap_zombies()
        try:
            os.kill(-1, signal.SIGKILL)
        except ProcessLookupError:
            return
        try:
            os.waitpid(-1, 0)
        except ChildProcessError:
            time.sleep(0.0005)


def _reap_zombies() -> None:
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def _kill_session(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, 0)


def _empty_folders(folders: list[str]) -> None:
    for folder in folders:
        if os.path.isdir(folder):
            for entry in os.scandir(folder):
                _remove(entry)


def _remove(entry: os.DirEntry) -> None:
    if entry.is_dir(follow_symlinks=False):
        shutil.rmtree(entry.path, ignore_errors=True)
        return
    with contextlib.suppress(OSError):
        os.unlink(entry.path)


def _send_line(sock: socket.socket, message: dict) -> None:
    sock.sendall(json.dumps(message).encode() + b"\n")


class _ControlReader:
    """Control messages from the host, one JSON line each; a spawn's socket arrives as an attached descriptor.

    Several messages may arrive in one read (a kill is not answered), so lines and descriptors are queued.
    Orphans of the episode are reaped while waiting, since this process is their init.
    """

    def __init__(self, sock: socket.socket):
        self.sock = sock
        self.buffer = b""
        self.fds: list[int] = []

    def receive(self) -> dict | None:
        while b"\n" not in self.buffer:
            while not select.select([self.sock], [], [], _REAP_INTERVAL_S)[0]:
                _reap_zombies()
            data, fds, _, _ = socket.recv_fds(self.sock, _CONTROL_BUFFER, _MAX_FDS_PER_MESSAGE)
            if not data:
                return None
            self.buffer += data
            self.fds += fds
        line, _, self.buffer = self.buffer.partition(b"\n")
        return json.loads(line)

    def take_fd(self) -> int:
        return self.fds.pop(0)


def _set_signals_for_episodes() -> None:
    """Dispositions set once here and inherited by every fork.

    SIGINT gets its default action: as PID 1 of the namespace the template then ignores it from episode
    code. SIGXFSZ is ignored so that a write past the file-size limit fails with an error, not a kill.
    """
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)


def _add_interactive_builtins() -> None:
    """`exit`, `quit`, `help`, `copyright`, `credits` and `license`, as the `site` module gives every `python`."""
    site.setquit()
    site.setcopyright()
    site.sethelper()


def _preload(modules: tuple[str, ...]) -> None:
    """Import common modules once in the template, so that episodes do not pay for them on every fork."""
    for name in modules:
        with contextlib.suppress(ImportError):
            __import__(name)


def _make_undumpable() -> None:
    """Stop episode code from ptracing the template or opening its descriptors through /proc."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_DUMPABLE, 0, 0, 0, 0)


def main() -> None:
    control = socket.socket(fileno=int(sys.argv[2]))
    for path in sys.argv[3:]:
        site.addsitedir(path)
    _make_undumpable()
    _add_interactive_builtins()
    _preload(_PRELOADED_MODULES)
    _set_signals_for_episodes()
    gc.collect()
    gc.freeze()
    _Template(control).serve()


if __name__ == "__main__":
    main()
