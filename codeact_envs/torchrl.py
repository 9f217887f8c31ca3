"""Use codeact envs from TorchRL (needs the `[torchrl]` extra: `pip install 'codeact-envs[torchrl]'`).

- `GymWrapper(load_env(...))` works as is (`UnicodeText` is a Gymnasium `Text` space); `RewardComponents` reads
  each reward component from `info` into the tensordict.
- TorchRL's LLM route: a `ChatEnv` with `task_primer` (tasks through TorchRL's `DataLoadingPrimer`) and
  `CodeActTransform`, which owns one codeact env per batch item, runs the fenced code of the last assistant turn and
  appends the observation as a user turn (so `GRPOLoss(masking_strategy="rlhf")` leaves it out of the loss):

```python
from tensordict import set_list_to_stack
from torchrl.envs import TransformedEnv
from torchrl.envs.llm import ChatEnv
from codeact_envs.torchrl import CodeActTransform, task_primer

set_list_to_stack(True).set()
env = TransformedEnv(ChatEnv(batch_size=(4,), tokenizer=tokenizer), task_primer(tasks, num_envs=4, group_size=2))
env.append_transform(CodeActTransform(make_env))
```
"""

import importlib.util
import json
import weakref
from collections.abc import Callable, Iterable
from typing import Any

if importlib.util.find_spec("torchrl") is None:
    raise ImportError("codeact_envs.torchrl needs TorchRL: pip install 'codeact-envs[torchrl]'")

import torch
from tensordict import TensorDictBase
from torch.utils.data import DataLoader
from torchrl.data import Categorical, Composite, Unbounded
from torchrl.data.llm import History
from torchrl.envs.gym_like import BaseInfoDictReader
from torchrl.envs.llm.transforms import DataLoadingPrimer
from torchrl.envs.llm.transforms.tools import ToolTransformBase

from ._env import CodeActEnv
from ._errors import InfrastructureError
from ._rollout import Assignment, LiveEpisode, Trajectory, component_names, episode_seed, factory_name

TASK_KEY = "codeact_task"
INFRASTRUCTURE_KEY = "infrastructure_failure"


class RewardComponents(BaseInfoDictReader):
    """Writes each reward component of a step (`info["rewards"][name]`) as `("rewards", name)`, 0.0 when absent.

    `GymWrapper(env).set_info_dict_reader(RewardComponents(env))`.

    Args:
        env: The codeact env; its reward transforms name the components.
    """

    def __init__(self, env: CodeActEnv):
        self.names = component_names(env)
        self._spec = Composite(rewards=Composite({name: Unbounded((1,)) for name in self.names}, shape=()), shape=())

    def __call__(self, info_dict: dict[str, Any], tensordict: TensorDictBase) -> TensorDictBase:
        rewards = info_dict.get("rewards", {})
        for name in self.names:
            tensordict.set(("rewards", name), torch.tensor([float(rewards.get(name, 0.0))]))
        return tensordict

    @property
    def info_spec(self) -> Composite:
        return self._spec


def task_primer(
    tasks: Iterable[dict[str, Any]], *, num_envs: int, group_size: int = 1, shuffle: bool = True, seed: int = 0
) -> DataLoadingPrimer:
    """TorchRL's `DataLoadingPrimer` over task rows, for a `ChatEnv(batch_size=(num_envs,))` with `CodeActTransform`.

    Each reset draws `num_envs // group_size` rows and repeats each `group_size` times (GRPO groups, side by side).

    Args:
        tasks: Task rows (a `datasets` split, a list of dicts); every value must be JSON-serializable.
        num_envs: The ChatEnv's batch size, a multiple of `group_size`.
        group_size: Episodes per task row.
        shuffle: Draw rows in a random order (seeded by `seed`), else in order; both cycle forever.
        seed: Seeds the order.
    """
    if num_envs < 1 or group_size < 1 or num_envs % group_size:
        raise ValueError(f"num_envs must be a positive multiple of group_size={group_size}, got {num_envs}")
    rows = [json.dumps({"row": row, "task": dict(task)}) for row, task in enumerate(tasks)]
    loader = DataLoader(
        rows,
        batch_size=num_envs // group_size,
        shuffle=shuffle,
        generator=torch.Generator().manual_seed(seed),
        collate_fn=_collate,
    )
    return DataLoadingPrimer(
        dataloader=loader, batch_size=num_envs // group_size, repeats=group_size, group_repeats=True
    )


def _collate(rows: list[str]) -> dict[str, list[str]]:
    return {"query": [""] * len(rows), TASK_KEY: rows}


class CodeActTransform(ToolTransformBase):
    """A `ChatEnv` tool transform that plays one codeact episode per batch item.

    At reset it starts each item's episode with the task row `task_primer` delivered and replaces the item's chat
    with the system prompt and the env's first observation. At each step it runs the fenced code of the item's last
    assistant turn, appends the observation as a user turn, and writes `reward`, `done`, `terminated`, `truncated`
    and `infrastructure_failure` (an episode the infrastructure ended: leave it out of training). An item whose
    episode is over gets no new turn and reward 0.

    Its sandboxes are closed by `close()`, when it is garbage-collected, or when the process exits.

    Args:
        env_fn: Builds one codeact env (once per batch item).
        seed: Seeds the episodes, with the task row and a count of episodes.
    """

    tool_role = "user"

    def __init__(self, env_fn: Callable[[], CodeActEnv], *, seed: int = 0):
        super().__init__()
        self.env_fn = env_fn
        self.seed = seed
        self.envs: dict[int, CodeActEnv] = {}
        self.episodes: list[LiveEpisode] = []
        self._played = 0
        self._rewards: list[float] = []
        weakref.finalize(self, _close_all, self.envs)

    def trajectories(self) -> list[Trajectory]:
        """The current episode of each batch item, with per-step rewards and reward components."""
        return [episode.trajectory() for episode in self.episodes]

    def close(self) -> None:
        """Close every env and its sandbox (`env.close()` of the ChatEnv calls it)."""
        _close_all(self.envs)
        self.envs.clear()

    def _reset(self, tensordict: TensorDictBase, tensordict_reset: TensorDictBase) -> TensorDictBase:
        reset = tensordict.get("_reset", None)
        if reset is not None and not bool(reset.all()):
            raise ValueError("CodeActTransform resets every batch item at once; reset the whole ChatEnv")
        rows = _as_list(tensordict.get(TASK_KEY))
        self.episodes = [self._start(index, json.loads(row)) for index, row in enumerate(rows)]
        tensordict_reset["history"].prompt = History.from_chats([_chat_of(e) for e in self.episodes])
        tensordict_reset.exclude(TASK_KEY, inplace=True)
        return self._write_ends(tensordict_reset, ended=[False] * len(self.episodes))

    def _start(self, index: int, row: dict[str, Any]) -> LiveEpisode:
        """Start item `index`'s episode on its env, built when missing or when its last episode's infrastructure
        failed (an env that cannot be built gives an episode over before it started)."""
        if index < len(self.episodes) and self.episodes[index].trajectory().infrastructure_error is not None:
            self._drop_env(index)
        assignment = Assignment(row["task"], row["row"], episode_seed(self.seed, row["row"], self._played))
        self._played += 1
        try:
            env = self._env(index)
        except InfrastructureError as e:
            return LiveEpisode.unbuilt(e, factory_name(self.env_fn), assignment)
        episode = LiveEpisode(env, assignment)
        episode.start()
        return episode

    def _env(self, index: int) -> CodeActEnv:
        if index not in self.envs:
            self.envs[index] = self.env_fn()
        return self.envs[index]

    def _drop_env(self, index: int) -> None:
        if index in self.envs:
            self.envs.pop(index).close()

    def _step(self, tensordict: TensorDictBase, next_tensordict: TensorDictBase) -> TensorDictBase:
        self._rewards = [0.0] * len(self.episodes)
        next_tensordict = super()._step(tensordict, next_tensordict)
        next_tensordict.set("reward", torch.tensor(self._rewards).view(len(self.episodes), 1))
        return self._write_ends(next_tensordict, ended=[e.done for e in self.episodes])

    def _write_ends(self, tensordict: TensorDictBase, ended: list[bool]) -> TensorDictBase:
        """`done`, `terminated`, `truncated` and `infrastructure_failure` of every batch item."""
        records = self.trajectories()
        columns = {
            "done": ended,
            "terminated": [done and r.terminated for done, r in zip(ended, records, strict=True)],
            "truncated": [done and r.truncated for done, r in zip(ended, records, strict=True)],
            INFRASTRUCTURE_KEY: [r.infrastructure_error is not None for r in records],
        }
        for key, values in columns.items():
            tensordict.set(key, torch.tensor(values).view(len(records), 1))
        return tensordict

    def _process_batch_item(self, content: str, index: int) -> list[str] | None:
        episode = self.episodes[index]
        if episode.done:
            return None
        steps = len(episode.record.rewards)
        episode.act(content)
        record = episode.trajectory()
        if record.infrastructure_error is not None:
            return [f"[the environment failed: {record.infrastructure_error}]"]
        self._rewards[index] = record.rewards[steps]
        return [record.observations[-1]]

    def transform_reward_spec(self, reward_spec: Composite) -> Composite:
        reward_spec["reward"] = Unbounded(shape=(*self.parent.batch_size, 1))
        return reward_spec

    def transform_done_spec(self, done_spec: Composite) -> Composite:
        for key in ("done", "terminated", "truncated"):
            done_spec[key] = Categorical(2, shape=(*self.parent.batch_size, 1), dtype=torch.bool)
        return done_spec

    def transform_observation_spec(self, observation_spec: Composite) -> Composite:
        observation_spec[INFRASTRUCTURE_KEY] = Categorical(2, shape=(*self.parent.batch_size, 1), dtype=torch.bool)
        return observation_spec


def _chat_of(episode: LiveEpisode) -> list[dict[str, str]]:
    """The episode's chat; a placeholder turn for one whose env failed to start (its first step ends it)."""
    failure = episode.trajectory().infrastructure_error
    return (
        list(episode.chat) if failure is None else [{"role": "user", "content": f"[the environment failed: {failure}]"}]
    )


def _as_list(value: Any) -> list[Any]:
    return value.tolist() if hasattr(value, "tolist") else list(value)


def _close_all(envs: dict[int, CodeActEnv]) -> None:
    for env in envs.values():
        env.close()
