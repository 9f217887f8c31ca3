import _thread
import threading
import time

import psutil
import pytest
from conftest import descendants, still_running
from test_collector import TASKS, make_numbers_env

from codeact_envs import Collector

STEP_S = 2.0
STEPS = 10


def slow_policy(messages):
    """Every action takes STEP_S seconds in the sandbox: an episode lasts STEPS * STEP_S seconds."""
    return f"```python\nimport time\ntime.sleep({STEP_S})\n```"


def make_slow_env():
    env = make_numbers_env()
    env.max_steps = STEPS
    return env


def _after(delay_s: float, action) -> threading.Timer:
    timer = threading.Timer(delay_s, action)
    timer.start()
    return timer


def sandboxes_since(before: set) -> set:
    """The bubblewrap sandboxes, and the processes in them, that this test process started since `before`."""
    return {process for process in descendants() - before if _in_sandbox(process)}


def _in_sandbox(process: psutil.Process) -> bool:
    try:
        return any(p.name() == "bwrap" for p in [process, *process.parents()])
    except psutil.Error:
        return False


def _leftovers(before: set, seen: set) -> set:
    """The sandbox processes seen while collecting, or started since, still running half a second later (a killed
    process waiting to be reaped is not running)."""
    return {process for process in still_running(seen | sandboxes_since(before), timeout_s=0.5) if _running(process)}


def _running(process: psutil.Process) -> bool:
    try:
        return process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def test_ctrl_c_returns_within_about_one_step_and_leaves_no_process():
    before = descendants()
    collector = Collector(make_slow_env, slow_policy, TASKS[:2], num_envs=2)
    interrupted = {}

    def ctrl_c():
        interrupted["sandboxes"] = sandboxes_since(before)
        interrupted["at"] = time.monotonic()
        _thread.interrupt_main()

    _after(1.5, ctrl_c)
    with pytest.raises(KeyboardInterrupt):
        next(iter(collector))
    assert time.monotonic() - interrupted["at"] < 2 * STEP_S + 1.5
    assert interrupted["sandboxes"]
    assert _leftovers(before, interrupted["sandboxes"]) == set()


def test_shutdown_from_another_thread_ends_the_iteration_without_half_played_episodes():
    before = descendants()
    collector = Collector(make_slow_env, slow_policy, TASKS[:2], num_envs=2)
    seen = set()
    started = time.monotonic()
    _after(1.5, lambda: (seen.update(sandboxes_since(before)), collector.shutdown()))
    assert list(collector) == []
    assert time.monotonic() - started < 1.5 + 2 * STEP_S + 1.5
    assert seen
    assert _leftovers(before, seen) == set()


def test_shutdown_does_not_wait_for_a_slow_policy_to_answer():
    answering = threading.Event()

    def stuck_policy(messages):
        answering.set()
        time.sleep(3 * STEP_S)
        return slow_policy(messages)

    before = descendants()
    collector = Collector(make_slow_env, stuck_policy, TASKS[:1])
    iterator = iter(collector)
    seen = set()
    _after(0.0, lambda: (answering.wait(30), seen.update(sandboxes_since(before)), collector.shutdown()))
    started = time.monotonic()
    assert list(iterator) == []
    assert time.monotonic() - started < 2 * STEP_S
    assert seen
    assert _leftovers(before, seen) == set()
