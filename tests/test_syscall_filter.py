import os
import platform
import subprocess
import sys
from pathlib import Path

import pytest

from codeact_envs import SandboxError
from codeact_envs._sandbox import Sandbox

pytestmark = pytest.mark.skipif(platform.machine() != "x86_64", reason="the syscall numbers below are x86_64's")

CLONE_NEWUSER = 0x10000000
DENIED_ON_X86_64 = {
    "io_uring_setup": (425, 1, 0),
    "io_uring_enter": (426, 0, 0, 0, 0, 0),
    "io_uring_register": (427, 0, 0, 0, 0),
    "userfaultfd": (323, 0),
    "perf_event_open": (298, 0, 0, -1, -1, 0),
    "add_key": (248, 0, 0, 0, 0, 0),
    "request_key": (249, 0, 0, 0, 0),
    "keyctl": (250, 0, 0),
    "bpf": (321, 0, 0, 0),
    "ptrace": (101, 0, 1, 0, 0),
    "process_vm_readv": (310, 1, 0, 0, 0, 0, 0),
    "process_vm_writev": (311, 1, 0, 0, 0, 0, 0),
    "init_module": (175, 0, 0, 0),
    "finit_module": (313, 0, 0, 0),
    "delete_module": (176, 0, 0),
    "kexec_load": (246, 0, 0, 0, 0),
    "kexec_file_load": (320, 0, 0, 0, 0, 0),
    "mount": (165, 0, 0, 0, 0, 0),
    "umount2": (166, 0, 0),
    "pivot_root": (155, 0, 0),
    "open_tree": (428, 0, 0, 0),
    "move_mount": (429, 0, 0, 0, 0, 0),
    "fsopen": (430, 0, 0),
    "fsconfig": (431, 0, 0, 0, 0, 0),
    "fsmount": (432, 0, 0, 0),
    "fspick": (433, 0, 0, 0),
    "mount_setattr": (442, 0, 0, 0, 0, 0),
    "unshare": (272, CLONE_NEWUSER),
    "setns": (308, 0, 0),
    "clone with a namespace flag": (56, CLONE_NEWUSER, 0, 0, 0, 0),
    "personality without address randomization": (135, 0x0040000),
    "kcmp": (312, 1, 1, 0, 0, 0),
    "name_to_handle_at": (303, 0, 0, 0, 0, 0),
    "open_by_handle_at": (304, 0, 0, 0),
    "lookup_dcookie": (212, 0, 0, 0),
    "quotactl": (179, 0, 0, 0, 0),
    "swapon": (167, 0, 0),
    "swapoff": (168, 0),
    "reboot": (169, 0, 0, 0, 0),
    "acct": (163, 0),
    "settimeofday": (164, 0, 0),
    "clock_settime": (227, 0, 0),
    "adjtimex": (159, 0),
    "syslog": (103, 0, 0, 0),
    "vhangup": (153,),
    "nfsservctl": (180, 0, 0, 0),
    "iopl": (172, 3),
    "ioperm": (173, 0, 1, 1),
    "uselib": (134, 0),
    "modify_ldt": (154, 0, 0, 0),
    "mq_open": (240, 0, 0, 0, 0),
    "pidfd_getfd": (438, 0, 0, 0),
    "statmount": (457, 0, 0, 0, 0),
    "a call of the x32 ABI (getpid)": (0x40000000 + 39,),
    "setpriority of another process": (141, 0, 1, 19),
    "setpriority of every process of the user": (141, 2, 0, 19),
    "sched_setaffinity of another process": (203, 1, 0, 0),
    "prlimit64 of another process": (302, 1, 7, 0, 0),
}
SYSCALLS = """
import ctypes, errno
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
outcomes = {}
for name, (number, *args) in CALLS.items():
    ctypes.set_errno(0)
    returned = libc.syscall(ctypes.c_long(number), *[ctypes.c_long(arg) for arg in args])
    outcomes[name] = (returned, errno.errorcode.get(ctypes.get_errno()))
outcomes
"""


def _outcomes(sandbox: Sandbox, calls: dict) -> dict:
    result = sandbox.run(f"CALLS = {calls!r}\n" + SYSCALLS)
    assert result.error is None, result.error
    return eval(result.value)


@pytest.mark.parametrize("isolation", ["bubblewrap", "none"])
def test_every_denied_system_call_fails_with_eperm(isolation):
    with Sandbox(isolation=isolation) as sandbox:
        sandbox.reset()
        outcomes = _outcomes(sandbox, DENIED_ON_X86_64)
    assert outcomes == dict.fromkeys(DENIED_ON_X86_64, (-1, "EPERM"))


def test_clone3_fails_with_enosys_so_that_libc_falls_back_to_clone(sandbox):
    assert _outcomes(sandbox, {"clone3": (435, 0, 0)}) == {"clone3": (-1, "ENOSYS")}


def test_denied_calls_surface_as_a_clean_permission_error_in_python(sandbox):
    code = (
        "import os, resource\n"
        "errors = []\n"
        "for attempt in (lambda: os.sched_setaffinity(1, {0}), lambda: resource.prlimit(1, resource.RLIMIT_NOFILE, "
        "(8, 8)), lambda: os.setpriority(os.PRIO_USER, 0, 19)):\n"
        "    try:\n"
        "        attempt()\n"
        "    except PermissionError as e:\n"
        "        errors.append(e.errno)\n"
        "errors"
    )
    assert sandbox.run(code).value == "[1, 1, 1]"


def test_a_process_may_still_change_its_own_priority_affinity_and_limits(sandbox):
    code = (
        "import os, resource\n"
        "os.nice(1)\n"
        "os.sched_setaffinity(0, os.sched_getaffinity(0))\n"
        "resource.setrlimit(resource.RLIMIT_NOFILE, (100, 100))\n"
        "resource.prlimit(0, resource.RLIMIT_NOFILE)"
    )
    assert sandbox.run(code).value == "(100, 100)"


def test_ordinary_python_still_works_under_the_filter(sandbox):
    code = (
        "import multiprocessing, socket, subprocess, threading\n"
        "results = []\n"
        "thread = threading.Thread(target=lambda: results.append('thread'))\n"
        "thread.start(); thread.join()\n"
        "results.append(subprocess.run(['echo', 'subprocess'], capture_output=True, text=True).stdout.strip())\n"
        "with multiprocessing.Pool(2) as pool:\n"
        "    results.append(sum(pool.map(abs, [-1, -2])))\n"
        "left, right = socket.socketpair()\n"
        "left.sendall(b'socketpair')\n"
        "results.append(right.recv(20).decode())\n"
        "results"
    )
    assert sandbox.run(code).value == "['thread', 'subprocess', 3, 'socketpair']"


def test_numpy_works_under_the_filter(sandbox):
    pytest.importorskip("numpy")
    assert sandbox.run("import numpy\nint(numpy.arange(10).sum())").value == "45"


def test_an_unsupported_architecture_is_an_error_that_names_it(monkeypatch):
    monkeypatch.setattr(platform, "machine", lambda: "s390x")
    with (
        Sandbox() as sandbox,
        pytest.raises(SandboxError, match=r"syscall filter .* not 's390x'.*never runs unfiltered"),
    ):
        sandbox.reset()


KEYRING_PROBE = """
import ctypes, sys
from codeact_envs._sandbox import Sandbox
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
assert libc.syscall(250, 1, b"host-session") > 0
key = libc.syscall(248, b"user", b"host-key", b"TOP-SECRET-PAYLOAD", 18, -3)
assert key > 0
code = (
    "import ctypes\\nlibc = ctypes.CDLL(None, use_errno=True)\\nbuffer = ctypes.create_string_buffer(64)\\n"
    f"read = libc.syscall(250, 11, {key}, buffer, 64)\\n"
    "listed = open('/proc/keys').read()\\n"
    "print(read, ctypes.get_errno(), buffer.raw, listed)"
)
with Sandbox(isolation=sys.argv[1]) as sandbox:
    sandbox.reset()
    print(sandbox.run(code).stdout)
"""


@pytest.mark.parametrize("isolation", ["bubblewrap", "none"])
def test_the_sandbox_never_reads_a_key_of_the_host_session_keyring(isolation):
    probe = subprocess.run(
        [sys.executable, "-c", KEYRING_PROBE, isolation],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=Path(__file__).parent,
        check=False,
    )
    assert probe.returncode == 0, probe.stderr
    read, errno_value, *_ = probe.stdout.split()
    assert (read, errno_value) == ("-1", "1")
    assert "TOP-SECRET-PAYLOAD" not in probe.stdout


def test_the_sandbox_lists_no_key_of_the_host(sandbox):
    assert sandbox.run("open('/proc/keys').read(), open('/proc/key-users').read()").value == "('', '')"


def test_no_host_path_appears_in_the_sandbox_mount_tables(sandbox):
    code = "[open(path).read() for path in ('/proc/self/mountinfo', '/proc/self/mounts', '/proc/1/mountinfo')]"
    tables = "".join(eval(sandbox.run(code).value))
    assert "/opt/python" in tables or sys.base_prefix.startswith("/usr")
    for host_path in _host_specific_paths():
        assert host_path not in tables, host_path


def _host_specific_paths() -> list[str]:
    paths = [str(Path.home()), sys.prefix, str(Path(__file__).resolve().parents[1]), str(Path.home() / ".cache")]
    if not sys.base_prefix.startswith("/usr"):
        paths.append(sys.base_prefix)
    return [path for path in paths if path not in ("/", "")]


@pytest.fixture
def sandbox():
    with Sandbox() as sandbox:
        sandbox.reset()
        yield sandbox


def test_the_filter_is_installed_before_any_code_of_the_episode_runs(sandbox):
    assert sandbox.run("open('/proc/self/status').read().split('Seccomp:')[1].split()[0]").value == "'2'"


def test_episode_code_cannot_renice_the_template_for_later_episodes(sandbox):
    sandbox.run("import os\ntry:\n    os.setpriority(os.PRIO_PROCESS, 1, 19)\nexcept OSError:\n    pass")
    sandbox.reset()
    assert sandbox.run("import os\nos.getpriority(os.PRIO_PROCESS, 0)").value == "0"


def test_the_host_process_is_not_filtered():
    assert Path(f"/proc/{os.getpid()}/status").read_text().split("Seccomp:")[1].split()[0] == "0"


@pytest.mark.parametrize("isolation", ["bubblewrap", "none"])
def test_no_process_of_the_sandbox_can_gain_privileges_through_exec(isolation):
    with Sandbox(isolation=isolation) as sandbox:
        sandbox.reset()
        status = sandbox.run("open('/proc/self/status').read()").value
    assert "NoNewPrivs:\\t1" in status
