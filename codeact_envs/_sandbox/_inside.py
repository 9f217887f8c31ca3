"""The sandbox's inside, run with the standard library only: the template and the processes it starts.

The host starts this file as the template: a warm interpreter that joins a fresh session keyring, makes
itself undumpable, installs the syscall filter and imports what episodes commonly need. It starts a forker
(a process that only forks) and keeps one pre-forked spare process per role: on "spawn" a spare receives
its socket and its job and becomes an interpreter (the agent's persistent namespace, which runs actions,
serves tool calls to the host and answers calls into the agent's program) or a grader (which runs trusted
test code and calls the agent's functions). On "finish" (and before an interpreter that follows a used one)
the template kills every process of the episode, empties the scratch folders and the System V IPC objects,
and has the forker fork the spares that are missing. No process that ever ran agent code forks a spare.

Messages are those of `_protocol` (its source is loaded by the boot code as the module `_protocol`).
"""

import _signal
import _thread
import array
import ast
import base64
import builtins
import collections
import contextlib
import ctypes
import errno
import gc
import io
import json
import linecache
import marshal
import os
import resource
import select
import signal
import site
import socket
import stat
import struct
import sys
import time
import traceback
import types

import _protocol as protocol

_PR_SET_DUMPABLE = 4
_PR_SET_NO_NEW_PRIVS = 38
_PR_SET_SECCOMP = 22
_PR_SET_CHILD_SUBREAPER = 36
_SECCOMP_MODE_FILTER = 2
_KEYCTL_JOIN_SESSION_KEYRING = 1
_IPC_RMID = 0
_ENOSYS = 38
_ACTION_FILENAME = "<action {}>"
_SANDBOX_FILENAMES = ("<sandbox>", "<sandbox protocol>")
_FDS_SPACE = socket.CMSG_SPACE(4 * array.array("i").itemsize)
_RECEIVE_BYTES = 1 << 16
_REAP_INTERVAL_S = 1.0
_REWIND_BYTES = 1 << 20
_DEATH_TIMEOUT_S = 5.0
_DEATH_POLL_S = 0.002
_FORKER_TIMEOUT_S = 5.0
_MAX_TYPE_NAME_CHARS = protocol.MAX_NAME_CHARS
_SYSV_IPC = {"shm": "shmctl", "msg": "msgctl", "sem": "semctl"}
_IPC_COUNTS = {"shm": (14, 0), "msg": (12, 0), "sem": (19, 7)}
"""For each kind, the `*_INFO` command and the index of the int field that counts the objects in use:
SHM_INFO's `used_ids`, MSG_INFO's `msgpool`, SEM_INFO's `semusz`."""
_IPC_INFO_BYTES = 256
_WARM_UP_ROUNDS = 10
"""More rounds than the 8 calls after which Python specializes a function's code."""
_WARM_UP_CHARS = 100
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
    "random",
    "re",
    "string",
    "textwrap",
    "typing",
)
_LIBC = ctypes.CDLL(None, use_errno=True)


class _FinalAnswer(BaseException):
    """Raised by `final_answer` to stop the action; not an `Exception`, so `except Exception` lets it pass."""


class _HostLink:
    """Frames to and from the host over a blocking socket; the host is trusted, its frames are not validated."""

    def __init__(self, sock: socket.socket):
        self.sock = sock
        self.buffer = bytearray()
        self.fds: list[int] = []

    def send(self, msg: dict, fds: tuple[int, ...] = ()) -> None:
        data = protocol.frame(msg)
        if fds:
            data = data[socket.send_fds(self.sock, [data], list(fds)) :]
        if data:
            self.sock.sendall(data)

    def receive(self) -> dict | None:
        """The next message, or None when the host closed the socket.

        It waits in `select`, not in `recvmsg`: a process blocked in `recvmsg` on a Unix socket is also woken
        up each time the other side reads what this one sent, and goes back to sleep (two context switches
        for nothing); `select` only wakes up for data to read.
        """
        while True:
            msg = self._take_frame()
            if msg is not None:
                return msg
            select.select([self.sock], [], [])
            if not self._fill():
                return None

    def receive_while_idle(self, idle) -> dict | None:
        """`receive`, calling `idle()` every `_REAP_INTERVAL_S` seconds while nothing arrives."""
        while not self._has_frame():
            while not select.select([self.sock], [], [], _REAP_INTERVAL_S)[0]:
                idle()
            if not self._fill():
                return None
        return self._take_frame()

    def receive_bytes_within(self, size: int, timeout_s: float) -> bytes:
        """Exactly `size` raw bytes; `TimeoutError` when they did not come within `timeout_s`, EOFError at the end."""
        deadline = time.monotonic() + timeout_s
        while len(self.buffer) < size:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not select.select([self.sock], [], [], remaining)[0]:
                raise TimeoutError("no answer in time")
            if not self._fill():
                raise EOFError("the other end closed its socket")
        data = bytes(self.buffer[:size])
        del self.buffer[:size]
        return data

    def take_fd(self) -> int:
        return self.fds.pop(0)

    def _has_frame(self) -> bool:
        if len(self.buffer) < protocol.HEADER.size:
            return False
        return len(self.buffer) >= protocol.HEADER.size + protocol.frame_size(self.buffer[: protocol.HEADER.size])

    def _take_frame(self) -> dict | None:
        if not self._has_frame():
            return None
        end = protocol.HEADER.size + protocol.frame_size(self.buffer[: protocol.HEADER.size])
        body = self.buffer[protocol.HEADER.size : end].decode("ascii")
        del self.buffer[:end]
        return json.loads(body)

    def _fill(self) -> bool:
        """Read what is there (descriptors the template hands over come attached to frames)."""
        data, ancillary, _, _ = self.sock.recvmsg(_RECEIVE_BYTES, _FDS_SPACE)
        for level, kind, fds in ancillary:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                self.fds += array.array("i", fds[: len(fds) - len(fds) % 4])
        self.buffer += data
        return bool(data)


class _Turns:
    """A first-come, first-served lock on the host link: no thread of the agent can starve another.

    Built on `_thread` locks: importing `threading` in the template would make every fork pay for its
    after-fork handler.
    """

    def __init__(self):
        self.mutex = _thread.allocate_lock()
        self.waiting: collections.deque = collections.deque()
        self.busy = False

    def __enter__(self) -> None:
        with self.mutex:
            if not self.busy:
                self.busy = True
                return
            turn = _thread.allocate_lock()
            turn.acquire()
            self.waiting.append(turn)
        turn.acquire()

    def __exit__(self, *exc_info) -> None:
        with self.mutex:
            if self.waiting:
                self.waiting.popleft().release()
            else:
                self.busy = False


class _CappedText(io.TextIOBase):
    """A line-buffered text stream on a file descriptor that drops what exceeds `limit` characters.

    Lines go to the descriptor as they end (one write per line, like a terminal's stdout), so text
    written by Python and bytes written by subprocesses to the same descriptor keep their order.
    """

    def __init__(self, fd: int, limit: int):
        self.fd = fd
        self.limit = limit
        self.written = 0
        self.dropped = 0
        self.start = 0
        self.pending: list[str] = []
        self.buffer = _BytesView(self)

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        if not isinstance(text, str):
            raise TypeError(f"write() argument must be str, not {type(text).__name__}")
        room = max(self.limit - self.written, 0)
        kept = text[:room]
        if kept:
            self.pending.append(kept)
            if "\n" in kept:
                self.flush()
        self.written += len(kept)
        self.dropped += len(text) - len(kept)
        return len(text)

    def flush(self) -> None:
        if self.pending:
            data = "".join(self.pending).encode("utf-8", "backslashreplace")
            self.pending = []
            _write_all(self.fd, data)

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
        """Return what was written since the last call (at most `limit` characters) and how much was left out.

        The file is read from where the last call stopped and emptied only once it grew large: truncating it
        on every action would free and allocate its pages each time.
        """
        end = os.fstat(self.fd).st_size
        start = self.start if end >= self.start else 0
        if end == start and not self.dropped:
            return "", 0
        data = os.pread(self.fd, min(end - start, 4 * self.limit), start)
        text = data.decode("utf-8", "replace")
        omitted = self.dropped + max(len(text) - self.limit, 0) + max(end - start - len(data), 0)
        self.written = 0
        self.dropped = 0
        self.start = end
        if end > _REWIND_BYTES:
            os.ftruncate(self.fd, 0)
            os.lseek(self.fd, 0, os.SEEK_SET)
            self.start = 0
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


class _Interpreter:
    """The agent's persistent interpreter: a namespace, tool stubs, captured output, the link to the host.

    A spare prepares it before any job exists (a fresh session, captured streams, an empty `__main__`);
    `start` adds what the job brings (limits, seed, tools) and serves the host.
    """

    def __init__(self, work_dir: str):
        os.setsid()
        os.chdir(work_dir)
        sys.argv = [""]
        sys.path.insert(0, "")
        self.link: _HostLink | None = None
        self.turns = _Turns()
        self.pid = os.getpid()
        self.limit = 0
        self.answer: str | None = None
        self.actions = 0
        self.stdout = _captured_stream(1)
        self.stderr = _captured_stream(2)
        sys.stdout = sys.__stdout__ = self.stdout
        sys.stderr = sys.__stderr__ = self.stderr
        os.register_at_fork(before=self._flush_streams)
        self.namespace = _main_module_namespace()

    def start(self, link: _HostLink, settings: dict) -> None:
        """Take the job in `settings`, tell the host it is ready, then serve it until it hangs up."""
        _apply_limits(settings)
        _seed_random(settings["seed"])
        self.link = link
        self.limit = self.stdout.limit = self.stderr.limit = settings["max_output_chars"]
        for spec in settings["tools"]:
            self.namespace[spec["name"]] = self._tool_stub(spec["name"], spec["doc"])
        self.namespace["final_answer"] = self._final_answer
        link.send(protocol.message("ready"))
        self.serve()

    def serve(self) -> None:
        """Answer the host's requests; between two of them this thread keeps the link, so that no other
        thread's tool call can start while the host is not serving tools."""
        handlers = {"exec": self.execute, "call": self.call, "read": self.read, "serve": self.serve_grader}
        with self.turns:
            msg = self.link.receive()
        while msg is not None:
            reply = handlers[msg["op"]](msg)
            with self.turns:
                self.link.send(reply)
                msg = self.link.receive()

    def execute(self, msg: dict) -> dict:
        self.actions += 1
        self.answer = None
        sys.stdout, sys.stderr = self.stdout, self.stderr
        value, error, error_type = None, None, None
        try:
            value = self._run(msg["code"])
        except _FinalAnswer:
            pass
        except BaseException as exc:
            error, error_type = _format_error(exc), _type_name(exc)
        self._exit_if_forked()
        stdout, stdout_omitted = self._flush(self.stdout)
        stderr, stderr_omitted = self._flush(self.stderr)
        return protocol.message(
            "result",
            id=msg["id"],
            stdout=stdout,
            stdout_omitted=stdout_omitted,
            stderr=stderr,
            stderr_omitted=stderr_omitted,
            value=value,
            error=error,
            error_type=error_type,
            answer=self.answer,
        )

    def call(self, msg: dict) -> dict:
        """Call a function of the agent's program with plain-data arguments; answer with its plain-data result."""
        return self._returned(
            msg["id"], lambda: self._function(msg["name"])(*_decoded(msg["args"]), **_decoded(msg["kwargs"]))
        )

    def read(self, msg: dict) -> dict:
        """Answer with the value of a variable of the agent's program, as plain data."""
        return self._returned(msg["id"], lambda: self._variable(msg["name"]))

    def serve_grader(self, msg: dict) -> dict:
        """Answer the calls and reads of a grader on the socket that came with `msg`, until it closes."""
        grader = _HostLink(socket.socket(fileno=self.link.take_fd()))
        handlers = {"call": self.call, "read": self.read}
        request = grader.receive()
        with contextlib.suppress(OSError):
            while request is not None:
                grader.send(handlers[request["op"]](request))
                request = grader.receive()
        grader.sock.close()
        return protocol.message("served", id=msg["id"])

    def _returned(self, request_id: int, produce) -> dict:
        """The "returned" answer: the plain-data value; an `Exception` by its type; anything else (an exit, a
        `BaseException`, a value that is not plain data) as a failure without a type."""
        error_type, error, value = None, None, None
        try:
            result = produce()
        except Exception as exc:
            error_type, error = _type_name(exc), _capped_error(exc, self.limit)
        except BaseException as exc:
            error = f"it raised {_type_name(exc)}, which is not an Exception"
        else:
            try:
                value = protocol.encode_value(result)
            except BaseException as exc:
                error = f"it returned a value that is not plain data: {_type_name(exc)}: {_described(exc)}"
        self._exit_if_forked()
        self._discard_output()
        return protocol.message(
            "returned", id=request_id, ok=error is None, value=value, error_type=error_type, error=error
        )

    def _variable(self, name: str):
        if name not in self.namespace:
            raise NameError(f"name {name!r} is not defined")
        return self.namespace[name]

    def _function(self, name: str):
        function = self._variable(name)
        if not callable(function):
            raise TypeError(f"{name!r} is a {type(function).__name__}, not a function")
        return function

    def _flush_streams(self) -> None:
        """Write out unfinished lines before a fork, so that the child does not write them a second time."""
        for stream in (self.stdout, self.stderr):
            with contextlib.suppress(Exception):
                stream.flush()

    def _discard_output(self) -> None:
        self._flush(self.stdout)
        self._flush(self.stderr)

    def _run(self, code: str) -> str | None:
        """Execute `code`; return the repr of its last expression, as the Python prompt shows it."""
        filename = _ACTION_FILENAME.format(self.actions)
        linecache.cache[filename] = (len(code), None, code.splitlines(True), filename)
        return _run_code(code, filename, self.namespace, self.limit)

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
        try:
            self.answer = _encoded_answer(value)
        except ValueError as e:
            raise ValueError(f"final_answer got {e}; answer with less") from None
        raise _FinalAnswer

    def _tool_stub(self, name: str, doc: str):
        link, turns, owner = self.link, self.turns, self.pid

        def stub(*args, **kwargs):
            if os.getpid() != owner:
                raise RuntimeError(f"{name}() can only be called from the episode's main process")
            try:
                request = protocol.message(
                    "tool", name=name, args=protocol.encode_value(list(args)), kwargs=protocol.encode_value(kwargs)
                )
            except (TypeError, ValueError) as e:
                raise type(e)(f"the arguments of {name}() cannot be sent to the host: {e}") from None
            with turns:
                link.send(request)
                reply = link.receive()
            if reply is None:
                raise RuntimeError(f"{name}(): the host closed the connection")
            if reply["ok"]:
                return protocol.decode_value(reply["value"], clean=False)
            raise _tool_exception(reply["error_type"], reply["error"])

        stub.__name__ = stub.__qualname__ = name
        stub.__doc__ = doc
        return stub


def _encoded_answer(value) -> str:
    """The answer as plain data; anything else becomes its `repr`, a str."""
    try:
        return protocol.encode_value(value, protocol.MAX_ANSWER_CHARS)
    except TypeError:
        return protocol.encode_value(repr(value), protocol.MAX_ANSWER_CHARS)


def _decoded(text: str):
    return protocol.decode_value(text, clean=False)


def _described(exc: BaseException) -> str:
    try:
        return _capped(str(exc), 500)
    except Exception:
        return "(its message cannot be shown)"


def _type_name(exc: BaseException) -> str:
    return str(type(exc).__name__)[:_MAX_TYPE_NAME_CHARS]


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


def _captured_stream(fd: int) -> _CappedText:
    memfd = os.memfd_create(f"fd{fd}", 0)
    os.dup2(memfd, fd)
    os.close(memfd)
    return _CappedText(fd, 0)


def _run_code(code: str, filename: str, namespace: dict, limit: int) -> str | None:
    """Execute `code` in `namespace`; the repr of its last expression (cut to `limit`), or None without one."""
    tree = ast.parse(code, filename)
    last = tree.body.pop() if tree.body and isinstance(tree.body[-1], ast.Expr) else None
    exec(compile(tree, filename, "exec", dont_inherit=True), namespace)
    if last is None:
        return None
    result = eval(compile(ast.Expression(last.value), filename, "eval", dont_inherit=True), namespace)
    return None if result is None else _capped_repr(result, limit)


def _warm_up() -> None:
    """Run the paths that every episode runs until Python has specialized their code.

    Python writes into a function's code object during its first calls (it counts them, then specializes the
    instructions). Done here, in the template, that is not done again in every process forked from it, where
    each page written is copied.
    """
    ours, theirs = socket.socketpair()
    stream = _CappedText(os.memfd_create("warm-up", 0), _WARM_UP_CHARS)
    try:
        for _ in range(_WARM_UP_ROUNDS):
            _warm_up_once(_HostLink(ours), _HostLink(theirs), _AgentLink(theirs, ours), stream)
    finally:
        ours.close()
        theirs.close()
        os.close(stream.fd)


def _warm_up_once(sender: "_HostLink", receiver: "_HostLink", agent: "_AgentLink", stream: _CappedText) -> None:
    """One round of the warm-up: framing with a descriptor attached, the value codec, validation, captured
    output, running code, formatting an error."""
    sender.send(protocol.message("spawn", settings={"role": "interpreter"}), (stream.fd,))
    receiver.receive()
    os.close(receiver.take_fd())
    value = protocol.encode_value([1, "x", (2.0,), {"k": None}, {3}])
    sender.send(protocol.message("returned", id=1, ok=True, value=value, error_type=None, error=None))
    protocol.decode_value(protocol.parse(agent.frame(), _ANSWER)["value"], clean=False)
    stream.write("warm\n")
    stream.take()
    try:
        _run_code("x = [1, 2]\nx[0] + len(x)\nx[5]", "<warm-up>", {}, _WARM_UP_CHARS)
    except IndexError as exc:
        _format_error(exc)


def _capped_repr(value, limit: int) -> str:
    return _capped(repr(value), limit)


def _capped(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit] + f"... [{len(text) - limit} more characters]"


def _tool_exception(type_name: str, message: str) -> BaseException:
    """Rebuild a tool's error as the same built-in exception type when there is one."""
    exc_type = getattr(builtins, type_name, None)
    if isinstance(exc_type, type) and issubclass(exc_type, Exception):
        try:
            return exc_type(message)
        except Exception:
            pass
    return RuntimeError(f"{type_name}: {message}")


def _capped_error(exc: BaseException, limit: int) -> str:
    return _capped(_format_error(exc), limit)


def _format_error(exc: BaseException) -> str:
    """The traceback a model needs: the agent's frames and the libraries it called, not the sandbox's."""
    try:
        report = traceback.TracebackException(type(exc), exc, exc.__traceback__)
        _hide_sandbox_frames(report)
        return "".join(report.format())
    except Exception:
        return f"{_type_name(exc)}: (the error could not be formatted)\n"


def _hide_sandbox_frames(report: traceback.TracebackException | None) -> None:
    seen = set()
    while report is not None and id(report) not in seen:
        seen.add(id(report))
        frames = [frame for frame in report.stack if frame.filename not in _SANDBOX_FILENAMES]
        report.stack = traceback.StackSummary.from_list(frames)
        _hide_sandbox_frames(report.__cause__)
        report = report.__context__


def _apply_limits(settings: dict) -> None:
    limits = {
        resource.RLIMIT_AS: settings["memory_bytes"],
        resource.RLIMIT_CPU: settings["cpu_time_s"],
        resource.RLIMIT_NPROC: settings["max_processes"],
        resource.RLIMIT_FSIZE: settings["max_file_bytes"],
        resource.RLIMIT_NOFILE: settings["max_open_files"],
        resource.RLIMIT_CORE: 0,
    }
    for kind, value in limits.items():
        if value is not None:
            resource.setrlimit(kind, (value, value))


def _seed_random(seed: int | None) -> None:
    """Seed the agent's `random`; without a seed it keeps the fresh state that Python drew at the fork.

    `random` is preloaded: importing it here would cost every seeded episode far more than its after-fork
    reseed costs every fork.
    """
    if seed is not None:
        sys.modules["random"].seed(seed)


class AgentCallFailed(BaseException):
    """A call into the agent's program ended without an answer (an exit, a crash, a timeout, data that is not
    plain) or with a `BaseException`. Not an `Exception`, so that `except Exception` in test code cannot
    swallow it; the verdict is a failure whatever the tests do afterwards."""


class AgentError(Exception):
    """The agent's function raised an exception that is not one of Python's built-in ones."""


class _Grader:
    """A process that never ran agent code: it runs trusted test code against the agent's program.

    The names given as stubs call the agent's functions: each call is a "call" message on a socket that the
    host connected to the agent's interpreter; the answer is validated like any frame from the sandbox and
    decoded as plain data. The verdict goes to the host on this process's own socket, which no agent process
    can reach.

    The test code comes compiled by the host (see `_host._compiled_tests`): a grader only runs it.
    """

    def __init__(self, work_dir: str):
        os.setsid()
        os.chdir("/")
        _discard_standard_streams()
        self.host: _HostLink | None = None
        self.agent: _AgentLink | None = None
        self.requests = 0
        self.fatal: str | None = None

    def start(self, link: _HostLink, settings: dict) -> None:
        """Take the job (limits), say ready, grade what the host sends, answer with the verdict."""
        _apply_limits(settings)
        self.host = link
        link.send(protocol.message("ready"))
        job = link.receive()
        if job is None:
            return
        self.agent = _AgentLink(socket.socket(fileno=link.take_fd()), link.sock)
        verdict = self.grade(job)
        self.agent.sock.close()
        link.send(verdict)
        link.receive()

    def grade(self, job: dict) -> dict:
        """Run the job's setup, bind its stubs, run its tests; the verdict message."""
        namespace = {"__name__": "__grader__", "__builtins__": builtins}
        try:
            setup, tests = marshal.loads(base64.b64decode(job["code"]))
            exec(setup, namespace)
            for name, target in protocol.decode_value(job["stubs"], clean=False).items():
                namespace[name] = self._stub(target)
            exec(tests, namespace)
        except BaseException as exc:
            return protocol.message("verdict", passed=False, detail=self.fatal or _capped(_format_error(exc), 4000))
        if self.fatal is not None:
            return protocol.message("verdict", passed=False, detail=self.fatal)
        return protocol.message("verdict", passed=True, detail="")

    def _stub(self, target: str):
        grader = self

        def agent_function(*args, **kwargs):
            return grader.ask(target, args, kwargs)

        agent_function.__name__ = agent_function.__qualname__ = target
        return agent_function

    def ask(self, target: str, args: tuple, kwargs: dict):
        """Call the agent's function `target`; its plain-data result, its exception, or a fatal failure."""
        self.requests += 1
        call = protocol.message(
            "call",
            id=self.requests,
            name=target,
            args=protocol.encode_value(list(args)),
            kwargs=protocol.encode_value(kwargs),
        )
        try:
            self.agent.sock.sendall(protocol.frame(call))
            answer = protocol.parse(self.agent.frame(), _ANSWER)
        except (OSError, EOFError, protocol.ProtocolError) as e:
            self._fail(f"the agent's interpreter did not answer the call of {target}(): {e!r}")
        if answer["id"] != self.requests:
            self._fail(f"the agent's interpreter answered another call than the one of {target}()")
        if answer["ok"]:
            try:
                return protocol.decode_value(answer["value"], clean=False)
            except protocol.ProtocolError as e:
                self._fail(f"{target}() returned something that is not plain data: {e}")
        if answer["error_type"] is None:
            self._fail(f"{target}() failed: {answer['error']}")
        raise _rebuilt_exception(target, answer["error_type"], answer["error"] or "")

    def _fail(self, reason: str):
        self.fatal = reason
        raise AgentCallFailed(reason)


class _AgentLink:
    """Frames from the agent's interpreter, read by a grader: their size is capped and they are validated."""

    def __init__(self, sock: socket.socket, host: socket.socket):
        self.sock = sock
        self.host = host
        self.buffer = bytearray()

    def frame(self) -> bytes:
        """The next frame's body; EOFError when the interpreter closed its socket or the host ended the grading."""
        while len(self.buffer) < protocol.HEADER.size:
            self._fill()
        end = protocol.HEADER.size + protocol.frame_size(bytes(self.buffer[: protocol.HEADER.size]))
        while len(self.buffer) < end:
            self._fill()
        body = bytes(self.buffer[protocol.HEADER.size : end])
        del self.buffer[:end]
        return body

    def _fill(self) -> None:
        ready, _, _ = select.select([self.sock, self.host], [], [])
        if self.host in ready:
            raise EOFError("the host ended the grading")
        chunk = self.sock.recv(_RECEIVE_BYTES)
        if not chunk:
            raise EOFError("the agent's interpreter closed the socket")
        self.buffer += chunk


_ANSWER = frozenset({"returned"})


def _rebuilt_exception(target: str, type_name: str, detail: str) -> Exception:
    """The agent's exception as the same built-in type (test code may expect a ValueError), else `AgentError`."""
    message = f"{target}() raised {type_name}: {detail}"
    exc_type = getattr(builtins, type_name, None)
    if isinstance(exc_type, type) and issubclass(exc_type, Exception):
        with contextlib.suppress(Exception):
            return exc_type(message)
    return AgentError(message)


def _discard_standard_streams() -> None:
    """Point stdin, stdout and stderr at /dev/null: what test code prints goes nowhere."""
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    os.close(null)


_ROLES = {"interpreter": _Interpreter, "grader": _Grader}


class _Template:
    """The warm interpreter: it keeps a spare process per role ready, hands each new socket to one, and cleans up.

    Spares are forked from this template, which never runs agent code, so a spare never ran any either,
    even when it was forked while an episode was running. It holds on to its own standard output and error:
    an interpreter replaces them with its captured streams, and freeing them there would write to pages it
    shares with the template (each such page is then copied).
    """

    def __init__(self, control: socket.socket, settings: dict):
        self.standard_streams = (sys.stdout, sys.stderr)
        self.link = _HostLink(control)
        self.settings = settings
        self.spares: dict[str, tuple[int, socket.socket]] = {}
        self.forker: tuple[int, _HostLink] | None = None
        self.roles = ["interpreter"]
        self.used = False
        self.scratch_modes = {path: stat.S_IMODE(os.stat(path).st_mode) for path in settings["scratch_dirs"]}

    def serve(self) -> None:
        self.link.send(protocol.message("ready"))
        self.prepare_spares()
        while True:
            msg = self.link.receive_while_idle(_reap_zombies)
            if msg is None:
                self.drop_spares()
                self.drop_forker()
                self.kill_all_but(set())
                return
            if msg["op"] == "spawn":
                self.spawn(self.link.take_fd(), msg["settings"])
            elif msg["op"] == "finish":
                self.renew()

    def spawn(self, fd: int, settings: dict) -> None:
        """Hand `fd` to a spare of the job's role; a new interpreter first ends the last episode."""
        role = settings["role"]
        if role not in self.roles:
            self.roles.append(role)
        if role == "interpreter" and self.used:
            self.renew()
        try:
            self.start_job(role, fd, settings)
        finally:
            os.close(fd)
        if role == "interpreter":
            self.used = True

    def start_job(self, role: str, fd: int, settings: dict) -> None:
        """Give the job to a spare of `role`, with a second try; a job no process can be forked for (episode code
        may hold every process the sandbox may have) is dropped, and the host sees its socket close."""
        for _ in range(2):
            try:
                self.activate(role, fd, settings)
                return
            except OSError:
                continue

    def activate(self, role: str, fd: int, settings: dict) -> None:
        """Give the job to the spare of `role` (forked now if it is missing or dead)."""
        if self.live_spare(role) is None:
            self.drop_spare(role)
            self.prepare([role])
        if role not in self.spares:
            raise OSError(errno.EAGAIN, f"no {role} process could be forked")
        pid, sock = self.spares.pop(role)
        try:
            os.kill(pid, signal.SIGCONT)
            _HostLink(sock).send(protocol.message("spawn", settings=settings), (fd,))
        finally:
            sock.close()

    def renew(self) -> None:
        """Kill every process but this one, the forker and the spares, then empty the scratch folders and IPC."""
        live = {pid for pid in map(self.live_spare, list(self.spares)) if pid is not None}
        if self.forker is not None and _alive(self.forker[0]):
            live.add(self.forker[0])
        self.kill_all_but(live)
        self.prepare_spares()
        self.used = False
        for path, mode in self.scratch_modes.items():
            _empty_folder(path, mode)
        if self.settings["private_ipc"]:
            _remove_sysv_ipc()

    def kill_all_but(self, keep: set[int]) -> None:
        if self.settings["kills"] == "namespace":
            _kill_namespace_but(keep)
        else:
            _kill_descendants_but(keep)

    def live_spare(self, role: str) -> int | None:
        """The PID of the spare of `role` if it is still alive (episode code may have killed it)."""
        if role not in self.spares or not _alive(self.spares[role][0]):
            return None
        return self.spares[role][0]

    def drop_spares(self) -> None:
        for role in list(self.spares):
            self.drop_spare(role)

    def drop_spare(self, role: str) -> None:
        if role in self.spares:
            pid, sock = self.spares.pop(role)
            sock.close()
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

    def prepare_spares(self) -> None:
        """Fork the spares that are missing, all in one request to the forker."""
        missing = [role for role in self.roles if self.live_spare(role) is None]
        for role in missing:
            self.drop_spare(role)
        if missing:
            self.prepare(missing)

    def prepare(self, roles: list[str]) -> None:
        """Have the forker fork a spare of each of `roles` (a forker that is gone or stuck is replaced once)."""
        pairs = [socket.socketpair() for _ in roles]
        fds = [theirs.fileno() for _, theirs in pairs]
        try:
            try:
                pids = self.fork_spares(roles, fds)
            except (OSError, TimeoutError, EOFError):
                self.drop_forker()
                pids = self.fork_spares(roles, fds)
        except (OSError, TimeoutError, EOFError):
            for ours, _ in pairs:
                ours.close()
            return
        finally:
            for _, theirs in pairs:
                theirs.close()
        for role, pid, (ours, _) in zip(roles, pids, pairs, strict=True):
            self.spares[role] = (pid, ours)

    def fork_spares(self, roles: list[str], fds: list[int]) -> list[int]:
        if self.forker is None:
            self.forker = _start_forker(self.settings)
        pid, link = self.forker
        os.kill(pid, signal.SIGCONT)
        socket.send_fds(link.sock, [bytes(list(_ROLES).index(role) for role in roles)], fds)
        answer = link.receive_bytes_within(4 * len(roles), _FORKER_TIMEOUT_S)
        return [int.from_bytes(answer[start : start + 4], "big") for start in range(0, len(answer), 4)]

    def drop_forker(self) -> None:
        if self.forker is not None:
            pid, link = self.forker
            link.sock.close()
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            self.forker = None


def _alive(pid: int) -> bool:
    """Whether `pid` still runs (the forker's children, spares included, are reaped by the kernel as they end)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _start_forker(settings: dict) -> tuple[int, "_HostLink"]:
    """Fork the forker: a process that never runs agent code and does nothing but fork spares.

    Forking from the template itself would make the template fault on every page it writes after each fork;
    the forker's own loop is small, so the pages it copies after a fork are few.
    """
    ours, theirs = socket.socketpair()
    pid = os.fork()
    if pid == 0:
        _forker(theirs, settings)
    theirs.close()
    return pid, _HostLink(ours)


def _forker(sock: socket.socket, settings: dict) -> None:
    """Body of the forker: fork the spares of each request, answer with their PIDs.

    Its loop is kept to a few objects (a byte per role in, four bytes per PID out), because every page it
    writes after a fork is copied; the spares of one request are forked one right after the other. It
    ignores SIGCHLD, so the kernel reaps its children as they end and it never wakes up for them.
    """
    try:
        _close_inherited_descriptors(keep=sock.fileno())
        signal.signal(signal.SIGCHLD, signal.SIG_IGN)
        roles = list(_ROLES)
        while True:
            request, ancillary, _, _ = sock.recvmsg(len(roles), _FDS_SPACE)
            if not request:
                break
            fds = array.array("i", ancillary[0][2][: 4 * len(request)])
            pids = [_fork_spare(fd, roles[index], settings) for index, fd in zip(request, fds, strict=True)]
            for fd in fds:
                os.close(fd)
            sock.sendall(b"".join(pid.to_bytes(4, "big") for pid in pids))
    except BaseException:
        pass
    os._exit(0)


def _fork_spare(fd: int, role: str, settings: dict) -> int:
    pid = os.fork()
    if pid == 0:
        _spare(socket.socket(fileno=fd), role, settings)
    return pid


def _spare(sock: socket.socket, role: str, settings: dict) -> None:
    """Body of a spare process: prepare its role, wait for a socket and a job, then do it; never returns."""
    try:
        _restore_default_sigchld()
        _close_inherited_descriptors(keep=sock.fileno())
        role = _ROLES[role](settings["work_dir"])
        link = _HostLink(sock)
        msg = link.receive()
        if msg is not None:
            fd = link.take_fd()
            sock.close()
            role.start(_HostLink(socket.socket(fileno=fd)), msg["settings"])
    except BaseException:
        pass
    os._exit(0)


def _restore_default_sigchld() -> None:
    """Undo the forker's ignored SIGCHLD (agent code waits for its children), through `_signal`: the `signal`
    module's conversions to enums would cost a fresh process some 60 copied pages."""
    _signal.signal(_signal.SIGCHLD, _signal.SIG_DFL)


def _close_inherited_descriptors(keep: int) -> None:
    """Close every descriptor but the standard streams and `keep`: the template's sockets stay with it."""
    os.closerange(3, keep)
    os.closerange(keep + 1, resource.getrlimit(resource.RLIMIT_NOFILE)[0])


def _kill_namespace_but(spares: set[int]) -> None:
    """Kill every process of the PID namespace but this one (PID 1) and the `spares`, and wait until they ended.

    `kill(-1, SIGSTOP)` stops all of them at once (a process with a stop pending cannot fork), the spares
    are continued, and the others, now a fixed set, are killed one by one. A process counts as ended once
    it is a zombie: it holds no memory, file or lock any more.
    """
    with contextlib.suppress(ProcessLookupError):
        os.kill(-1, signal.SIGSTOP)
    keep = {os.getpid(), *spares}
    for spare in spares:
        os.kill(spare, signal.SIGCONT)
    deadline = time.monotonic() + _DEATH_TIMEOUT_S
    while True:
        _reap_zombies()
        others = _running_processes() - keep
        if not others or time.monotonic() > deadline:
            return
        for pid in others:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        _wait_for_an_end(others)


def _running_processes() -> set[int]:
    """The processes of the PID namespace that are not zombies."""
    return {int(name) for name in os.listdir("/proc") if name.isdigit() and _is_running(int(name))}


def _is_running(pid: int) -> bool:
    try:
        return _read_small_file(f"/proc/{pid}/stat").rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _wait_for_an_end(pids: set[int]) -> None:
    """Sleep until one of `pids` ended (a pidfd becomes readable), at most a moment."""
    fds = []
    for pid in pids:
        with contextlib.suppress(OSError):
            fds.append(os.pidfd_open(pid))
    try:
        if fds:
            select.select(fds, [], [], _DEATH_POLL_S)
    finally:
        for fd in fds:
            os.close(fd)


def _kill_descendants_but(spares: set[int]) -> None:
    """Without a PID namespace: kill every descendant but the `spares` (orphans come back to this subreaper)."""
    deadline = time.monotonic() + _DEATH_TIMEOUT_S
    while True:
        _reap_zombies()
        found = {pid for pid in _descendants(os.getpid()) if pid not in spares and _is_running(pid)}
        if not found or time.monotonic() > deadline:
            return
        for pid in found:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        _wait_for_an_end(found)


def _descendants(pid: int) -> list[int]:
    found, pending = [], [pid]
    while pending:
        parent = pending.pop()
        children = _children(parent)
        found += children
        pending += children
    return found


def _children(pid: int) -> list[int]:
    children = []
    try:
        threads = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return children
    for thread in threads:
        with contextlib.suppress(OSError), open(f"/proc/{pid}/task/{thread}/children") as listing:
            children += [int(child) for child in listing.read().split()]
    return children


def _reap_zombies() -> None:
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def _empty_folder(folder: str, mode: int) -> None:
    """Delete everything in `folder`, whatever permissions the episode set, and give it back its `mode`."""
    try:
        if stat.S_IMODE(os.stat(folder).st_mode) != mode:
            os.chmod(folder, mode)
        names = os.listdir(folder)
    except OSError:
        return
    for name in names:
        _delete_tree(os.path.join(folder, name))


def _delete_tree(root: str) -> None:
    """Delete a file or a folder tree of any depth; folders are made accessible first (chmod 000 included)."""
    pending = [(root, False)]
    while pending:
        path, emptied = pending.pop()
        try:
            status = os.lstat(path)
        except OSError:
            continue
        if not stat.S_ISDIR(status.st_mode):
            with contextlib.suppress(OSError):
                os.unlink(path)
        elif emptied:
            with contextlib.suppress(OSError):
                os.rmdir(path)
        else:
            with contextlib.suppress(OSError):
                os.chmod(path, 0o700)
            pending.append((path, True))
            with contextlib.suppress(OSError), os.scandir(path) as entries:
                pending += [(entry.path, False) for entry in entries]


def _remove_sysv_ipc() -> None:
    """Remove every System V shared memory segment, message queue and semaphore set of the IPC namespace."""
    if not _sysv_ipc_in_use():
        return
    for kind, control in _SYSV_IPC.items():
        try:
            rows = _read_small_file(f"/proc/sysvipc/{kind}").splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            identifier = int(row.split()[1])
            if kind == "sem":
                _LIBC.semctl(identifier, 0, _IPC_RMID)
            else:
                getattr(_LIBC, control)(identifier, _IPC_RMID, None)


def _sysv_ipc_in_use() -> bool:
    """Whether any System V IPC object exists, asked with one cheap call per kind (no file to read)."""
    info = ctypes.create_string_buffer(_IPC_INFO_BYTES)
    counts = []
    for kind, (command, field) in _IPC_COUNTS.items():
        if kind == "sem":
            returned = _LIBC.semctl(0, 0, command, info)
        else:
            returned = getattr(_LIBC, _SYSV_IPC[kind])(0, command, info)
        counts.append(returned < 0 or struct.unpack_from("i", info, 4 * field)[0] > 0)
    return any(counts)


def _read_small_file(path: str) -> str:
    fd = os.open(path, os.O_RDONLY)
    try:
        return os.read(fd, 1 << 20).decode()
    finally:
        os.close(fd)


def _set_signals_for_episodes() -> None:
    """Dispositions set once here and inherited by every fork.

    SIGINT gets its default action: as PID 1 of the namespace the template then ignores it from episode
    code. SIGXFSZ is ignored so that a write past the file-size limit fails with an error, not a kill.
    """
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)


def _forget_template_only_variables(names: list[str]) -> None:
    """Remove the variables meant for the template's start only: episodes and their subprocesses never see them."""
    for name in names:
        os.environ.pop(name, None)


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


def _prctl(option: int, value: int, message: str) -> None:
    if _LIBC.prctl(option, value, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), message)


def _join_fresh_session_keyring(keyctl: int) -> None:
    """Leave the host's session keyring for a new anonymous one, so that no key of the host is possessed."""
    if _LIBC.syscall(keyctl, _KEYCTL_JOIN_SESSION_KEYRING, None) < 0 and ctypes.get_errno() != _ENOSYS:
        raise OSError(ctypes.get_errno(), "could not join a fresh session keyring")


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_char_p)]


def _install_syscall_filter(program: bytes) -> None:
    """Install the host's seccomp program on this process (and so on every process it forks)."""
    _prctl(_PR_SET_NO_NEW_PRIVS, 1, "could not set no_new_privs, which a syscall filter needs")
    fprog = _SockFprog(len(program) // 8, program)
    if _LIBC.prctl(_PR_SET_SECCOMP, _SECCOMP_MODE_FILTER, ctypes.byref(fprog), 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "the kernel refused the sandbox's syscall filter")


def main() -> None:
    settings = json.loads(sys.argv[3])
    _forget_template_only_variables(settings["template_only_variables"])
    control = socket.socket(fileno=settings["control_fd"])
    _join_fresh_session_keyring(settings["keyctl"])
    _prctl(_PR_SET_DUMPABLE, 0, "could not make the template undumpable")
    _prctl(_PR_SET_CHILD_SUBREAPER, 1, "could not make the template a subreaper")
    _install_syscall_filter(base64.b64decode(settings["syscall_filter"]))
    for path in settings["site_dirs"]:
        site.addsitedir(path)
    _add_interactive_builtins()
    _preload(_PRELOADED_MODULES)
    _set_signals_for_episodes()
    _warm_up()
    gc.collect()
    gc.freeze()
    _Template(control, settings).serve()


if __name__ == "__sandbox__":
    main()
