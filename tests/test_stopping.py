import _thread
import threading
import time

import pytest
from test_collector import TASKS, make_numbers_env, sandbox_processes

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


def test_ctrl_c_returns_within_about_one_step_and_leaves_no_process():
    collector = Collector(make_slow_env, slow_policy, TASKS[:2], num_envs=2)
    interrupted = {}

    def ctrl_c():
        interrupted["at"] = time.monotonic()
        _thread.interrupt_main()

    _after(1.5, ctrl_c)
    with pytest.raises(KeyboardInterrupt):
        next(iter(collector))
    assert time.monotonic() - interrupted["at"] < 2 * STEP_S + 1.5
    assert sandbox_processes(wait_s=0.5) == []


def test_shutdown_from_another_thread_ends_the_iteration_without_half_played_episodes():
    collector = Collector(make_slow_env, slow_policy, TASKS[:2], num_envs=2)
    started = time.monotonic()
    _after(1.5, collector.shutdown)
    assert list(collector) == []
    assert time.monotonic() - started < 1.5 + 2 * STEP_S + 1.5
    assert sandbox_processes(wait_s=0.5) == []


def test_shutdown_does_not_wait_for_a_slow_policy_to_answer():
    answering = threading.Event()

    def stuck_policy(messages):
        answering.set()
        time.sleep(3 * STEP_S)
        return slow_policy(messages)

    collector = Collector(make_slow_env, stuck_policy, TASKS[:1])
    iterator = iter(collector)
    _after(0.0, lambda: (answering.wait(30), collector.shutdown()))
    started = time.monotonic()
    assert list(iterator) == []
    assert time.monotonic() - started < 2 * STEP_S
    assert sandbox_processes(wait_s=0.5) == []
