"""The Collector: policies and envs looped over a task loader, yielding batches of complete trajectories."""

import contextlib
import dataclasses
import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from ._env import CodeActEnv

Policy = Callable[[list[dict[str, str]]], str]

CODE_BLOCK_TAGS = ("```python", "```")
_ANSWER_FORMAT = """\

Answer with a short thought, then the code of your next action in one Python code block:

```python
# your code
```"""
_RESULT_QUEUE_BATCHES = 2
_ACTOR_RETRIES = 2


@dataclass(frozen=True)
class Trajectory:
    """One complete episode: the chat, the actions, the observations, rewards and where it came from.

    Attributes:
        env: The env's repo id or folder (its class name when it was not built by `load_env`).
        commit: The resolved commit of the env's Hub repo, None for a folder.
        split: The task split, when the task loader knows it.
        row: Index of the task row in the task loader.
        sample: Index of this episode within its group (0 .. group_size - 1).
        seed: The episode's seed (derived from the collector's seed, the row and the sample).
        task: The task row.
        messages: The chat: system prompt, prompt, then assistant and observation turns.
        actions: The code run at each step ("" when the reply held no code).
        observations: What the env returned at each step.
        rewards: Reward of each step.
        reward_components: `info["rewards"]` of each step.
        terminated: Whether the episode ended with a final answer (or a transform ended it).
        truncated: Whether it ran out of steps.
        answer: The final answer, if any.
        policy_s: Seconds spent in the policy at each step.
        env_s: Seconds spent in `env.step` at each step.
        reset_s: Seconds spent in `env.reset`.
    """

    env: str
    commit: str | None
    split: str | None
    row: int
    sample: int
    seed: int
    task: dict[str, Any]
    messages: list[dict[str, str]] = field(default_factory=list)
    actions: list[str] = field(default_factory=list)
    observations: list[str] = field(default_factory=list)
    rewards: list[float] = field(default_factory=list)
    reward_components: list[dict[str, float]] = field(default_factory=list)
    terminated: bool = False
    truncated: bool = False
    answer: Any = None
    policy_s: list[float] = field(default_factory=list)
    env_s: list[float] = field(default_factory=list)
    reset_s: float = 0.0

    @property
    def reward(self) -> float:
        """The episode's return: the sum of its step rewards."""
        return float(sum(self.rewards))

    def to_dict(self) -> dict[str, Any]:
        """A plain dict (one row of a `datasets.Dataset`: `Dataset.from_list([t.to_dict() for t in batch])`)."""
        row = dataclasses.asdict(self)
        row["reward"] = self.reward
        row["answer"] = None if self.answer is None else repr(self.answer)
        return row


class ModelPolicy:
    """A policy from any smolagents `Model` (TransformersModel, OpenAIServerModel, InferenceClientModel, ...).

    Args:
        model: The smolagents model.
        **generate_kwargs: Passed to `model.generate` on every call (e.g. `stop_sequences`).
    """

    def __init__(self, model: Any, **generate_kwargs: Any):
        self.model = model
        self.generate_kwargs = generate_kwargs

    def __call__(self, messages: list[dict[str, str]]) -> str:
        from smolagents.models import ChatMessage, MessageRole

        chat = [
            ChatMessage(role=MessageRole(m["role"]), content=[{"type": "text", "text": m["content"]}]) for m in messages
        ]
        reply = self.model.generate(chat, **self.generate_kwargs)
        return _text_of(reply.content)


class OraclePolicy:
    """Answers every prompt with the env's `oracle(task)` code: the offline policy for demos and checks.

    Args:
        env: An env of the kind being collected (only its `setup` and `oracle` hooks are called).
        tasks: The task rows the collector will run.
    """

    def __init__(self, env: CodeActEnv, tasks: Iterable[dict[str, Any]]):
        self._solutions: dict[str, str] = {}
        for task in tasks:
            self._solutions[env.setup(dict(task))] = env.oracle(dict(task))

    def __call__(self, messages: list[dict[str, str]]) -> str:
        prompt = next(m["content"] for m in messages if m["role"] == "user")
        if prompt not in self._solutions:
            raise KeyError(f"the oracle knows no task with the prompt {prompt[:80]!r}...")
        return f"```python\n{self._solutions[prompt]}\n```"


def _text_of(content: Any) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    return "".join(part.get("text", "") for part in content if isinstance(part, dict))


@dataclass(frozen=True)
class _Episode:
    row: int
    sample: int
    seed: int
    task: dict[str, Any]


@dataclass(frozen=True)
class _Failure:
    """An exception raised in a worker, carried to the iterating thread."""

    error: BaseException
    episode: _Episode | None


_WORKER_DONE = object()


def episode_seed(seed: int, row: int, sample: int) -> int:
    """The seed of one episode: a function of the collector's seed, the task row and the sample only."""
    return int(np.random.SeedSequence([seed, row, sample]).generate_state(1)[0])


def run_episode(env: CodeActEnv, policy: Policy, episode: _Episode, split: str | None) -> Trajectory:
    """Play one episode: the policy writes code, the env runs it, until the env ends the episode."""
    start = time.perf_counter()
    observation, _ = env.reset(seed=episode.seed, options={"task": episode.task})
    log = _EpisodeLog(
        messages=[
            {"role": "system", "content": env.system_prompt + _ANSWER_FORMAT},
            {"role": "user", "content": observation},
        ]
    )
    reset_s = time.perf_counter() - start
    while not (log.terminated or log.truncated):
        _play_turn(env, policy, log)
    return Trajectory(
        env=_env_name(env),
        commit=getattr(env, "commit", None),
        split=split,
        row=episode.row,
        sample=episode.sample,
        seed=episode.seed,
        task=dict(episode.task),
        reset_s=reset_s,
        **dataclasses.asdict(log),
    )


@dataclass
class _EpisodeLog:
    """What a running episode has recorded so far; frozen into a `Trajectory` when it ends."""

    messages: list[dict[str, str]]
    actions: list[str] = field(default_factory=list)
    observations: list[str] = field(default_factory=list)
    rewards: list[float] = field(default_factory=list)
    reward_components: list[dict[str, float]] = field(default_factory=list)
    policy_s: list[float] = field(default_factory=list)
    env_s: list[float] = field(default_factory=list)
    terminated: bool = False
    truncated: bool = False
    answer: Any = None


def _play_turn(env: CodeActEnv, policy: Policy, log: _EpisodeLog) -> None:
    """One policy call and one env step, recorded in `log`."""
    start = time.perf_counter()
    reply = policy([dict(m) for m in log.messages])
    log.policy_s.append(time.perf_counter() - start)
    code, parse_error = _code_in(reply)
    start = time.perf_counter()
    observation, reward, log.terminated, log.truncated, info = env.step(code)
    log.env_s.append(time.perf_counter() - start)
    observation = parse_error or observation
    log.messages += [{"role": "assistant", "content": reply}, {"role": "user", "content": observation}]
    log.actions.append(code)
    log.observations.append(observation)
    log.rewards.append(float(reward))
    log.reward_components.append(dict(info.get("rewards", {})))
    log.answer = info.get("answer")


def _code_in(reply: str) -> tuple[str, str | None]:
    """The code of a reply (smolagents' own parser), or "" and the parse error to show the model."""
    from smolagents.utils import parse_code_blobs

    try:
        return parse_code_blobs(reply, CODE_BLOCK_TAGS), None
    except ValueError as e:
        return "", str(e)


def _env_name(env: CodeActEnv) -> str:
    return getattr(env, "repo_id", None) or type(env).__name__


def _split_of(tasks: Iterable) -> str | None:
    split = getattr(tasks, "split", None)
    return None if split is None else str(split)


class Collector:
    """Loop a policy and envs over a task loader; iterate to get batches of complete `Trajectory` records.

    Each env runs its episodes on its own, without a barrier: a slow episode never stalls the others.
    A task's `group_size` episodes (a GRPO group) always land in the same batch.

    Args:
        env_fn: Builds one env; called once per worker.
        policy: Any callable from chat messages (a list of `{"role", "content"}` dicts) to reply text.
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
        self._pool: Any = None
        self._lost: tuple[type[BaseException], ...] = ()
        self._stop = threading.Event()
        self._results: queue.Queue = queue.Queue(maxsize=_RESULT_QUEUE_BATCHES * batch_size + num_envs)
        self._threads: list[threading.Thread] = []
        self._started = False

    def __iter__(self) -> Iterator[list[Trajectory]]:
        if self._started:
            raise RuntimeError("a Collector iterates once; build a new one to collect again")
        self._started = True
        self._start_workers()
        try:
            yield from self._batches()
        finally:
            self.shutdown()

    def shutdown(self) -> None:
        """Stop the workers and close their envs (and Ray actors); safe to call more than once."""
        self._stop.set()
        while any(thread.is_alive() for thread in self._threads):
            self._drain()
            for thread in self._threads:
                thread.join(timeout=0.05)
        self._drain()
        if self._pool is not None:
            self._pool.shutdown()
            self._pool = None

    def __enter__(self) -> "Collector":
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.shutdown()

    def _start_workers(self) -> None:
        episodes = self._episodes()
        lock = threading.Lock()
        split = _split_of(self.tasks)
        if self.backend == "ray":
            from ._ray import WorkerPool, actor_lost_errors

            self._pool = WorkerPool(self.env_fn, self.num_workers, -(-self.num_envs // self.num_workers))
            self._lost = actor_lost_errors()
        for index in range(self.num_envs):
            thread = threading.Thread(
                target=self._work, args=(index, episodes, lock, split), name=f"codeact-collector-{index}", daemon=True
            )
            thread.start()
            self._threads.append(thread)

    def _episodes(self) -> Iterator[_Episode]:
        for row, task in enumerate(self.tasks):
            for sample in range(self.group_size):
                yield _Episode(row, sample, episode_seed(self.seed, row, sample), task)

    def _work(self, index: int, episodes: Iterator[_Episode], lock: threading.Lock, split: str | None) -> None:
        """Worker thread: own one env, take the next episode, play it, hand the trajectory over."""
        env, episode = None, None
        try:
            env = self._pool.env(index) if self._pool is not None else self.env_fn()
            while not self._stop.is_set():
                with lock:
                    episode = next(episodes, None)
                if episode is None:
                    break
                env, trajectory = self._play(env, episode, split)
                self._put(trajectory)
                episode = None
        except BaseException as e:
            self._put(_Failure(e, episode))
        finally:
            if env is not None:
                env.close()
            self._put(_WORKER_DONE)

    def _play(self, env: Any, episode: _Episode, split: str | None) -> tuple[Any, Trajectory]:
        """Run one episode; when its Ray actor died, run it again on a new actor (a few times at most)."""
        attempts = 0
        while True:
            try:
                return env, run_episode(env, self.policy, episode, split)
            except self._lost:
                attempts += 1
                if attempts > _ACTOR_RETRIES:
                    raise
                env = self._pool.replace(env)

    def _put(self, item: Any) -> None:
        while not self._stop.is_set():
            try:
                self._results.put(item, timeout=0.05)
                return
            except queue.Full:
                continue

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
            item = self._results.get()
            if item is _WORKER_DONE:
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


def _collector_error(failure: _Failure) -> RuntimeError:
    where = "building an env" if failure.episode is None else f"the episode of task row {failure.episode.row}"
    error = RuntimeError(f"the Collector stopped: {where} raised {failure.error!r}")
    error.__cause__ = failure.error
    return error


def _episode_count(tasks: Iterable, group_size: int) -> int | None:
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
