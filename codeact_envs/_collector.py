"""The Collector: a policy and a pool of envs looped over a task loader, yielding batches of complete trajectories."""

import contextlib
import dataclasses
import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from ._env import CodeActEnv
from ._errors import InfrastructureError
from ._policies import Policy
from ._rollout import Assignment, LiveEpisode, Trajectory, env_name, episode_seed, factory_name, run_episode

_RESULT_QUEUE_BATCHES = 2
_ACTOR_RETRIES = 2
_POLL_S = 0.05
_JOIN_GRACE_S = 1.0


class Collector:
    """Loop a policy and envs over a task loader; iterate to get batches of complete `Trajectory` records.

    Each env runs its episodes on its own, without a barrier: a slow episode never stalls the others.
    A task's `group_size` episodes (a GRPO group) always land in the same batch. An episode that the
    infrastructure ended (an `InfrastructureError` from the env, an env that could not be built, a Ray actor lost
    again and again) is still delivered, with `infrastructure_error` set; any other exception stops the Collector.

    Args:
        env_fn: Builds one env; called once per env slot (again after an infrastructure failure).
        policy: Any callable from the chat so far (a list of `{"role", "content"}` dicts) to the reply text, or
            to a `Turn` when it can say which tokens it sampled (see `TransformersPolicy`).
        tasks: Any iterable of task rows: a `datasets` split (streaming too), a `DataLoader` with
            `batch_size=None`, a list.
        num_envs: Envs stepping in parallel.
        group_size: Episodes per task (GRPO groups).
        batch_size: Trajectories per batch, a multiple of `group_size` (default: `num_envs` rounded up to
            whole groups). The last batch may be smaller.
        seed: Seeds every episode (as a function of this seed, the task row and the sample), so a rerun
            reproduces the same episodes.
        progress: Show a progress bar (episodes, mean reward, steps/s).
        backend: "thread" (envs in this process) or "ray" (envs in Ray actors; the policy stays here).
            Ray connects to the cluster you `ray.init(address=...)`-ed, or starts a local one.
        num_workers: Ray actors sharing the `num_envs` envs (default: one per env); backend "ray" only.
            Episodes of an actor that dies are run again on a new one.
        policy_version: Recorded on each trajectory as the version of the policy when its episode started; set the
            attribute while iterating, when the policy's weights change, to filter stale episodes later.
    """

    def __init__(
        self,
        env_fn: Callable[[], CodeActEnv],
        policy: Policy,
        tasks: Iterable[dict[str, Any]],
        *,
        num_envs: int = 1,
        group_size: int = 1,
        batch_size: int | None = None,
        seed: int = 0,
        progress: bool = False,
        backend: Literal["thread", "ray"] = "thread",
        num_workers: int | None = None,
        policy_version: int | None = None,
    ):
        if num_envs < 1 or group_size < 1:
            raise ValueError(f"num_envs and group_size must be >= 1, got {num_envs} and {group_size}")
        batch_size = batch_size or -(-num_envs // group_size) * group_size
        if batch_size % group_size:
            raise ValueError(f"batch_size must be a multiple of group_size={group_size}, got {batch_size}")
        if backend not in ("thread", "ray"):
            raise ValueError(f"backend must be 'thread' or 'ray', got {backend!r}")
        if num_workers is not None and (backend != "ray" or num_workers < 1):
            raise ValueError(f"num_workers={num_workers!r} needs backend='ray' and a value >= 1")
        self.env_fn = env_fn
        self.policy = policy
        self.tasks = tasks
        self.num_envs = num_envs
        self.group_size = group_size
        self.batch_size = batch_size
        self.seed = seed
        self.progress = progress
        self.backend = backend
        self.num_workers = num_workers or num_envs
        self.policy_version = policy_version
        self._pool: Any = None
        self._stop = threading.Event()
        self._results: queue.Queue = queue.Queue(maxsize=_RESULT_QUEUE_BATCHES * batch_size + num_envs)
        self._runners: list[threading.Thread] = []
        self._slots: list[_EnvSlot] = []
        self._assignments_lock = threading.Lock()
        self._started = False

    def __iter__(self) -> Iterator[list[Trajectory]]:
        if self._started:
            raise RuntimeError("a Collector iterates once; build a new one to collect again")
        self._started = True
        self._start_runners()
        try:
            yield from self._batches()
        finally:
            self.shutdown()

    def shutdown(self) -> None:
        """Stop collecting, close every env (and Ray actor), drop unfinished episodes; safe to call more than once.

        Returns once every env is closed: after at most the env step in progress, even while the policy is still
        answering (that reply is dropped).
        """
        self._stop.set()
        for slot in self._slots:
            slot.close()
        deadline = time.monotonic() + _JOIN_GRACE_S
        for runner in self._runners:
            runner.join(timeout=max(0.0, deadline - time.monotonic()))
        self._drain()
        if self._pool is not None:
            self._pool.shutdown()
            self._pool = None

    def __enter__(self) -> "Collector":
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.shutdown()

    def _start_runners(self) -> None:
        self._pool = self._make_pool()
        assignments = self._assignments()
        self._slots = [_EnvSlot(self._stop) for _ in range(self.num_envs)]
        for index, slot in enumerate(self._slots):
            runner = threading.Thread(
                target=self._run,
                args=(index, slot, self._pool, assignments),
                name=f"codeact-runner-{index}",
                daemon=True,
            )
            runner.start()
            self._runners.append(runner)

    def _make_pool(self) -> Any:
        if self.backend == "ray":
            from ._ray import WorkerPool

            return WorkerPool(self.env_fn, self.num_workers, -(-self.num_envs // self.num_workers))
        return _LocalPool(self.env_fn)

    def _assignments(self) -> Iterator[Assignment]:
        split = _split_of(self.tasks)
        for row, task in enumerate(self.tasks):
            for sample in range(self.group_size):
                yield Assignment(task, row, episode_seed(self.seed, row, sample), sample, split)

    def _run(self, index: int, slot: "_EnvSlot", pool: Any, assignments: Iterator[Assignment]) -> None:
        """A runner thread: take the next episode, play it on this slot's env, hand the trajectory over."""
        try:
            self._serve(index, slot, pool, assignments)
        except _Stopped:
            return
        finally:
            slot.close()

    def _serve(self, index: int, slot: "_EnvSlot", pool: Any, assignments: Iterator[Assignment]) -> None:
        assignment = None
        try:
            while (assignment := self._next(assignments)) is not None:
                self._put(self._play(index, slot, pool, assignment))
        except _Stopped:
            raise
        except BaseException as e:
            where = "building an env" if slot.env is None else f"the episode of task row {assignment.row}"
            self._put(_Failure(e, where))
        self._put(_RUNNER_DONE)

    def _next(self, assignments: Iterator[Assignment]) -> Assignment | None:
        with self._assignments_lock:
            assignment = None if self._stop.is_set() else next(assignments, None)
        return None if assignment is None else dataclasses.replace(assignment, policy_version=self.policy_version)

    def _play(self, index: int, slot: "_EnvSlot", pool: Any, assignment: Assignment) -> Trajectory:
        """Run one episode. An env that fails is closed (the next episode builds another); the episodes of a lost
        Ray actor run again on a new actor, a few times at most."""
        lost: BaseException | None = None
        for _ in range(_ACTOR_RETRIES + 1):
            try:
                slot.open(lambda: pool.env(index))
            except (InfrastructureError, *pool.lost) as e:
                return LiveEpisode.unbuilt(e, slot.name or factory_name(self.env_fn), assignment).trajectory()
            try:
                trajectory = run_episode(slot, self.policy, assignment)
            except pool.lost as e:
                lost = e
                slot.replace(pool.replace)
                continue
            if trajectory.infrastructure_error is not None:
                slot.close()
            return trajectory
        return LiveEpisode.unbuilt(lost, slot.name or factory_name(self.env_fn), assignment).trajectory()

    def _put(self, item: Any) -> None:
        while not self._stop.is_set():
            try:
                self._results.put(item, timeout=_POLL_S)
                return
            except queue.Full:
                continue
        raise _Stopped

    def _drain(self) -> None:
        with contextlib.suppress(queue.Empty):
            while True:
                self._results.get_nowait()

    def _batches(self) -> Iterator[list[Trajectory]]:
        groups: dict[int, list[Trajectory]] = {}
        batch: list[Trajectory] = []
        running = self.num_envs
        bar = _ProgressBar(_episode_count(self.tasks, self.group_size)) if self.progress else None
        while running:
            item = self._receive()
            if item is None:
                return
            if item is _RUNNER_DONE:
                running -= 1
                continue
            if isinstance(item, _Failure):
                raise _collector_error(item)
            if bar is not None:
                bar.update(item)
            groups.setdefault(item.row, []).append(item)
            if len(groups[item.row]) == self.group_size:
                batch += sorted(groups.pop(item.row), key=lambda t: t.sample)
            while len(batch) >= self.batch_size:
                yield batch[: self.batch_size]
                batch = batch[self.batch_size :]
        if bar is not None:
            bar.close()
        if batch:
            yield batch

    def _receive(self) -> Any:
        """The next result of a runner, or None once `shutdown()` was called (from another thread)."""
        while not self._stop.is_set():
            with contextlib.suppress(queue.Empty):
                return self._results.get(timeout=_POLL_S)
        return None


class _Stopped(Exception):
    """The Collector was shut down: the unfinished episode is dropped."""


class _EnvSlot:
    """A runner's env, shared with `shutdown()`: it closes the env while the runner waits on the policy, and never
    in the middle of an env call; after that, the runner's next env call raises `_Stopped`.

    It is the env that `run_episode` sees (reset, step, system prompt and where the env came from).
    """

    def __init__(self, stop: threading.Event):
        self.stop = stop
        self.lock = threading.Lock()
        self.env: Any = None
        self.name: str | None = None

    def open(self, build: Callable[[], Any]) -> None:
        """Build the env unless there is one (`shutdown()` waits for a build in progress, then closes the env)."""
        with self.lock:
            if self.env is not None:
                return
            self._check_running()
            self.env = build()
            self.name = env_name(self.env)

    def replace(self, rebuild: Callable[[Any], Any]) -> None:
        """Put a new env in place of one whose host was lost."""
        with self.lock:
            self._check()
            self.env = rebuild(self.env)

    @property
    def system_prompt(self) -> str:
        return self.env.system_prompt

    @property
    def repo_id(self) -> str | None:
        return self.name

    @property
    def commit(self) -> str | None:
        return getattr(self.env, "commit", None)

    def reset(self, **kwargs: Any) -> tuple[str, dict[str, Any]]:
        with self.lock:
            self._check()
            return self.env.reset(**kwargs)

    def step(self, action: str) -> tuple[str, float, bool, bool, dict[str, Any]]:
        with self.lock:
            self._check()
            return self.env.step(action)

    def close(self) -> None:
        with self.lock:
            env, self.env = self.env, None
        if env is not None:
            env.close()

    def _check(self) -> None:
        self._check_running()
        if self.env is None:
            raise _Stopped

    def _check_running(self) -> None:
        if self.stop.is_set():
            raise _Stopped


class _LocalPool:
    """Envs in this process, one per runner."""

    lost: tuple[type[BaseException], ...] = ()

    def __init__(self, env_fn: Callable[[], CodeActEnv]):
        self.env_fn = env_fn

    def env(self, index: int) -> CodeActEnv:
        return self.env_fn()

    def replace(self, env: CodeActEnv) -> CodeActEnv:
        env.close()
        return self.env_fn()

    def shutdown(self) -> None:
        return None


@dataclass(frozen=True)
class _Failure:
    """An exception raised in a runner, carried to the iterating thread."""

    error: BaseException
    where: str


_RUNNER_DONE = object()


def _collector_error(failure: _Failure) -> RuntimeError:
    error = RuntimeError(f"the Collector stopped: {failure.where} raised {failure.error!r}")
    error.__cause__ = failure.error
    return error


def _split_of(tasks: Iterable) -> str | None:
    split = getattr(tasks, "split", None)
    return None if split is None else str(split)


def _episode_count(tasks: Any, group_size: int) -> int | None:
    """How many episodes the tasks make, when the task loader knows its length."""
    try:
        return len(tasks) * group_size
    except TypeError:
        return None


class _ProgressBar:
    """tqdm bar: episodes done (of `total`, when known), mean reward, env steps per second."""

    def __init__(self, total: int | None):
        from tqdm.auto import tqdm

        self.bar = tqdm(total=total, unit="episode", desc="collecting")
        self.rewards: list[float] = []
        self.steps = 0
        self.start = time.perf_counter()

    def update(self, trajectory: Trajectory) -> None:
        self.rewards.append(trajectory.reward)
        self.steps += len(trajectory.actions)
        elapsed = max(time.perf_counter() - self.start, 1e-9)
        self.bar.set_postfix(
            mean_reward=f"{np.mean(self.rewards):.3f}", steps_per_s=f"{self.steps / elapsed:.1f}", refresh=False
        )
        self.bar.update(1)

    def close(self) -> None:
        self.bar.close()
