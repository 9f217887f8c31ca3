"""The Ray backend of the Collector: envs live in Ray actors; the driver holds the policy and the loop."""

import os
import threading
from collections.abc import Callable
from typing import Any

from ._env import CodeActEnv
from ._rollout import env_name

_INSTALL = "the Ray backend needs Ray: pip install 'codeact-envs[ray]'"
_ACTOR_STARTS = 3


def _ray() -> Any:
    try:
        import ray
    except ImportError as e:
        raise ImportError(_INSTALL) from e
    return ray


def ensure_ray() -> Any:
    """The `ray` module, connected: to the cluster the user initialized, else to a new local one."""
    ray = _ray()
    if not ray.is_initialized():
        ray.init()
    return ray


def actor_lost_errors() -> tuple[type[BaseException], ...]:
    """Exceptions meaning an actor (and the episodes it ran) is gone, not that an episode failed."""
    ray = _ray()
    return (ray.exceptions.RayActorError,)


class EnvWorker:
    """A Ray actor holding several envs (and their sandboxes), each stepped from its own driver thread."""

    def __init__(self, env_fn: Callable[[], CodeActEnv]):
        self.env_fn = env_fn
        self.envs: dict[int, CodeActEnv] = {}
        self.lock = threading.Lock()

    def make(self, index: int) -> dict[str, Any]:
        """Build env `index` and return what the driver needs to know about it."""
        env = self.env_fn()
        with self.lock:
            self.envs[index] = env
        return {"system_prompt": env.system_prompt, "name": env_name(env), "commit": env.commit}

    def reset(self, index: int, seed: int | None, options: dict[str, Any] | None) -> tuple[str, dict[str, Any]]:
        return self.envs[index].reset(seed=seed, options=options)

    def step(self, index: int, action: str) -> tuple[str, float, bool, bool, dict[str, Any]]:
        return self.envs[index].step(action)

    def close(self, index: int) -> None:
        with self.lock:
            env = self.envs.pop(index, None)
        if env is not None:
            env.close()

    def close_all(self) -> None:
        with self.lock:
            envs, self.envs = list(self.envs.values()), {}
        for env in envs:
            env.close()

    def pid(self) -> int:
        return os.getpid()


class RemoteEnv:
    """The driver's handle on one env inside an `EnvWorker` actor, with the env methods the Collector uses."""

    def __init__(self, worker: Any, index: int):
        self.worker = worker
        self.index = index
        self._ray = _ray()
        facts = self._get(worker.make.remote(index))
        self.system_prompt = facts["system_prompt"]
        self.repo_id = facts["name"]
        self.commit = facts["commit"]

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[str, dict[str, Any]]:
        return self._get(self.worker.reset.remote(self.index, seed, options))

    def step(self, action: str) -> tuple[str, float, bool, bool, dict[str, Any]]:
        return self._get(self.worker.step.remote(self.index, action))

    def close(self) -> None:
        try:
            self._get(self.worker.close.remote(self.index))
        except actor_lost_errors():
            return

    def _get(self, reference: Any) -> Any:
        """The call's result; an exception the env raised in the actor is raised here as itself."""
        try:
            return self._ray.get(reference)
        except self._ray.exceptions.RayTaskError as e:
            if e.cause is None:
                raise
            raise e.cause from e


class WorkerPool:
    """`num_workers` actors; env `i` lives on actor `i % num_workers`; a lost actor is replaced.

    `lost` holds the exceptions that mean an actor (and the episodes it ran) is gone, not that an episode failed.
    """

    def __init__(self, env_fn: Callable[[], CodeActEnv], num_workers: int, envs_per_worker: int):
        ray = ensure_ray()
        self.actor_class = ray.remote(max_concurrency=max(envs_per_worker, 1) + 1)(EnvWorker)
        self.env_fn = env_fn
        self.lost = actor_lost_errors()
        self.workers = [self._new_worker() for _ in range(num_workers)]
        self.lock = threading.Lock()

    def _new_worker(self) -> Any:
        return self.actor_class.remote(self.env_fn)

    def env(self, index: int) -> RemoteEnv:
        """A handle on env `index`, built on its actor (on a new actor when that one is gone)."""
        slot = index % len(self.workers)
        for _ in range(_ACTOR_STARTS - 1):
            worker = self._worker(slot)
            try:
                return RemoteEnv(worker, index)
            except self.lost:
                self._renew(slot, worker)
        return RemoteEnv(self._worker(slot), index)

    def replace(self, lost: RemoteEnv) -> RemoteEnv:
        """A new env in place of one whose actor died (a new actor if nobody replaced it yet)."""
        self._renew(lost.index % len(self.workers), lost.worker)
        return self.env(lost.index)

    def _worker(self, slot: int) -> Any:
        with self.lock:
            return self.workers[slot]

    def _renew(self, slot: int, dead: Any) -> None:
        with self.lock:
            if self.workers[slot] is dead:
                self.workers[slot] = self._new_worker()

    def shutdown(self) -> None:
        """Close every env (their sandboxes go with them), then end the actors."""
        ray = _ray()
        with self.lock:
            workers, self.workers = self.workers, []
        for worker in workers:
            try:
                ray.get(worker.close_all.remote())
            except actor_lost_errors():
                pass
            ray.kill(worker)
