import os
import signal
import threading
import time

import pytest
from conftest import still_running
from test_collector import TASKS, NumbersEnv, make_numbers_env, solver

from codeact_envs import Collector, tool

ray = pytest.importorskip("ray")


def _collect(**kwargs):
    options = {"env_fn": make_numbers_env, "policy": solver, "tasks": TASKS, "num_envs": 2, "seed": 5} | kwargs
    with Collector(**options) as collector:
        return [t for batch in collector for t in batch]


def _summary(trajectories):
    return sorted((t.row, t.sample, t.seed, tuple(t.actions), tuple(t.observations), t.reward) for t in trajectories)


def test_ray_gives_the_same_trajectories_as_threads_for_the_same_seed(local_ray):
    threads = _collect(group_size=2)
    actors = _collect(group_size=2, backend="ray", num_workers=2)
    assert _summary(actors) == _summary(threads)
    assert len(actors) == 12


def test_ray_actors_can_host_several_envs_each(local_ray):
    trajectories = _collect(backend="ray", num_envs=4, num_workers=2)
    assert sorted(t.row for t in trajectories) == list(range(6))


def test_no_task_runs_twice_without_group_size(local_ray):
    trajectories = _collect(backend="ray", num_workers=2, tasks=TASKS * 3)
    assert sorted(t.row for t in trajectories) == list(range(18))


def test_killing_an_actor_mid_run_loses_no_task(local_ray):
    started = threading.Event()

    def slow_solver(messages):
        started.set()
        time.sleep(0.05)
        return solver(messages)

    def kill_one_actor(collector):
        started.wait(timeout=30)
        time.sleep(0.2)
        worker = collector._pool.workers[0]
        os.kill(ray.get(worker.pid.remote()), signal.SIGKILL)

    tasks = TASKS * 4
    with Collector(make_numbers_env, slow_solver, tasks, num_envs=2, backend="ray", num_workers=2) as collector:
        killer = threading.Thread(target=kill_one_actor, args=(collector,))
        killer.start()
        trajectories = [t for batch in collector for t in batch]
        killer.join()
    assert sorted(t.row for t in trajectories) == list(range(len(tasks)))
    assert all(t.reward == 1.0 for t in trajectories)


def test_shutdown_leaves_no_actor_and_no_sandbox_process(local_ray):
    import psutil

    collector = Collector(make_numbers_env, solver, TASKS, num_envs=2, backend="ray", num_workers=2, batch_size=1)
    batches = iter(collector)
    next(batches)
    actors = [psutil.Process(ray.get(worker.pid.remote())) for worker in collector._pool.workers]
    started = {*actors, *(child for actor in actors for child in actor.children(recursive=True))}
    assert any(process.name() == "bwrap" for process in started)
    list(batches)
    assert still_running(started) == set()


def test_num_workers_needs_the_ray_backend():
    with pytest.raises(ValueError, match="needs backend='ray'"):
        Collector(make_numbers_env, solver, TASKS, num_workers=2)


def test_an_unknown_backend_is_refused():
    with pytest.raises(ValueError, match="backend must be"):
        Collector(make_numbers_env, solver, TASKS, backend="dask")


def test_without_ray_installed_the_backend_names_the_install_line(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(ImportError, match=r"pip install 'codeact-envs\[ray\]'"):
        list(Collector(make_numbers_env, solver, TASKS, backend="ray"))


def test_an_infrastructure_failure_inside_an_actor_is_delivered_as_such(local_ray):
    from test_failures import make_flaky_env

    def policy(messages):
        return "```python\nlookup('prices')\n```"

    trajectories = _collect(env_fn=make_flaky_env, policy=policy, backend="ray", num_workers=1, tasks=TASKS[:2])
    assert [t.infrastructure_error for t in trajectories] == ["InfrastructureError: the database is down"] * 2


def test_an_episode_whose_actor_dies_on_every_try_is_an_infrastructure_failure(local_ray):
    def crash(messages):
        return "```python\ncrash_host()\n```"

    trajectories = _collect(env_fn=make_crashing_env, policy=crash, backend="ray", num_workers=1, tasks=TASKS[:1])
    assert len(trajectories) == 1
    assert "actor" in trajectories[0].infrastructure_error.lower()
    assert trajectories[0].actions == []


class CrashingEnv(NumbersEnv):
    """Its tool takes the whole host process (here: the Ray actor) down."""

    @tool
    def crash_host(self) -> None:
        """Exit the host process."""
        os._exit(1)


def make_crashing_env() -> CrashingEnv:
    return CrashingEnv(max_steps=4, timeout_s=5.0)
