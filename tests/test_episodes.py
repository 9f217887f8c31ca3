"""Nothing of one episode reaches the next: files, IPC objects, keys, planted modules, pinned memory."""

import pytest
from conftest import run

from codeact_envs import AgentProgram

LEAVE_FILES = """
import os
for root in ('/work', '/tmp', '/dev/shm'):
    os.makedirs(f'{root}/locked/deeper', exist_ok=True)
    with open(f'{root}/locked/deeper/secret.txt', 'w') as f:
        f.write('left behind')
    with open(f'{root}/read-only.txt', 'w') as f:
        f.write('left behind')
    os.chmod(f'{root}/read-only.txt', 0o400)
    os.chmod(f'{root}/locked/deeper', 0o000)
    os.chmod(f'{root}/locked', 0o000)
os.chmod('/tmp', 0o000)
os.chmod('/work', 0o500)
"""
SYSV_IPC = """
import ctypes
libc = ctypes.CDLL(None, use_errno=True)
IPC_CREAT = 0o1000
segment = libc.shmget(0, 4096, IPC_CREAT | 0o600)
semaphores = libc.semget(0, 3, IPC_CREAT | 0o600)
queue = libc.msgget(0, IPC_CREAT | 0o600)
segment >= 0 and semaphores >= 0 and queue >= 0
"""
SYSV_LISTS = "[open(f'/proc/sysvipc/{kind}').read().count('\\n') for kind in ('shm', 'sem', 'msg')]"
PIN_SHARED_MEMORY = """
import ctypes
libc = ctypes.CDLL(None, use_errno=True)
libc.shmat.restype = ctypes.c_void_p
size = 600 * 1024 * 1024
segment = libc.shmget(0, size, 0o1000 | 0o600)
address = libc.shmat(segment, None, 0)
ctypes.memset(address, 1, size)
with open('/dev/shm/pinned', 'wb') as f:
    f.write(b'x' * (32 * 1024 * 1024))
segment >= 0
"""
PLANT_MODULES = """
import os, sys
for folder in ('/work', '/tmp', '/work/__pycache__'):
    os.makedirs(folder, exist_ok=True)
    with open(f'{folder}/colorsys.py', 'w') as f:
        f.write('PLANTED = True')
with open('/work/planted.pth', 'w') as f:
    f.write('import os; os.environ["PLANTED"] = "1"')
"""


@pytest.fixture
def env(make_env):
    env = make_env(timeout_s=5.0, max_steps=50, memory_mb=1024)
    env.reset()
    return env


def test_files_and_folders_left_with_any_permissions_are_gone_in_the_next_episode(env):
    assert "Error" not in run(env, LEAVE_FILES)
    env.reset()
    roots = "('/work', '/tmp', '/dev/shm')"
    listing = f"import os\n[(root, os.listdir(root), oct(os.stat(root).st_mode & 0o777)) for root in {roots}]"
    assert run(env, listing) == "[('/work', [], '0o755'), ('/tmp', [], '0o755'), ('/dev/shm', [], '0o755')]"
    assert run(env, "open('/work/new.txt', 'w').write('ok')") == "2"


def test_system_v_ipc_objects_are_gone_in_the_next_episode(env):
    assert run(env, SYSV_IPC) == "True"
    assert run(env, SYSV_LISTS) == "[2, 2, 2]"
    env.reset()
    assert run(env, SYSV_LISTS) == "[1, 1, 1]"


def test_memory_pinned_by_an_episode_is_free_for_the_next_one(env):
    assert run(env, PIN_SHARED_MEMORY) == "True"
    env.reset()
    assert run(env, "block = b'x' * (900 * 1024 * 1024)\nlen(block) // 2**20") == "900"


def test_kernel_keys_cannot_be_created_so_none_survive(env):
    add_key = "libc.syscall(248, b'user', b'k', b'v', 1, -2), ctypes.get_errno()"
    code = f"import ctypes\nlibc = ctypes.CDLL(None, use_errno=True)\n{add_key}"
    assert run(env, code) == "(-1, 1)"


def test_modules_planted_where_the_next_interpreter_looks_are_gone(env):
    assert "Error" not in run(env, PLANT_MODULES)
    assert run(env, "import colorsys\nhasattr(colorsys, 'PLANTED')") == "True"
    env.reset()
    assert run(env, "import colorsys, os\nhasattr(colorsys, 'PLANTED'), 'PLANTED' in os.environ") == "(False, False)"


def test_the_grader_never_imports_what_the_agent_planted(env):
    run(env, PLANT_MODULES + "\ndef planted():\n    return False")
    agent = AgentProgram(env._sandbox, timeout_s=2.0)
    verdict = agent.run_tests(
        "import colorsys\nassert not hasattr(colorsys, 'PLANTED')\nassert f() is False", functions={"f": "planted"}
    )
    assert verdict.passed, verdict.detail
