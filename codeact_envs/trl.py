"""Train on a codeact env with TRL's `GRPOTrainer` (needs the `[trl]` extra: `pip install 'codeact-envs[trl]'`).

```python
from trl import GRPOConfig, GRPOTrainer
from codeact_envs.trl import CodeActSpec

spec = CodeActSpec("org/humaneval", trust_remote_code=True)
trainer = GRPOTrainer(
    model="Qwen/Qwen2.5-0.5B-Instruct",
    args=GRPOConfig(max_tool_calling_iterations=8),
    train_dataset=spec.train_dataset,
    environment_factory=spec.environment_factory,
    reward_funcs=spec.reward_funcs,
)
```

Two ways for the model to act, chosen with `actions`:
- `"tool"` (default): the model calls a `python(code)` tool; TRL runs the turn loop (`environment_factory`).
- `"text"`: the model writes its code in a fenced block of its reply, as with the Collector; `spec.rollout_func`
  plays whole episodes and returns token-exact completions with an `env_mask` (`rollout_func=spec.rollout_func`).
"""

import copy
import functools
import importlib.util
import itertools
import weakref
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

from ._env import CodeActEnv, env_tools
from ._errors import InfrastructureError
from ._loading import default_split, load_env, load_tasks
from ._policies import sample
from ._prompt import Turn, context_ids, first_turns, prompt_ids, system_prompt
from ._rollout import Assignment, LiveEpisode, Trajectory, component_names, episode_seed, factory_name

if importlib.util.find_spec("trl") is None:
    raise ImportError("codeact_envs.trl needs TRL: pip install 'codeact-envs[trl]'")

TASK_ROW = "task_row"
_UNATTRIBUTED = "unattributed"
_EPISODE_OVER = "[the episode is over: no more code runs]"


class CodeActSpec:
    """One codeact env, ready for `GRPOTrainer`: `.train_dataset`, `.environment_factory` (or `.rollout_func`) and
    `.reward_funcs`, each passed to the trainer argument of that name.

    Args:
        repo_id_or_path: An env folder, or the id of a Hub dataset repo (`"org/name"`).
        split: The task split to train on (default: the first one the manifest declares).
        actions: "tool" (the model calls the `python` tool; use `.environment_factory`) or "text" (the model writes
            fenced code in its reply; use `.rollout_func`).
        revision: Branch, tag or commit of the Hub repo; resolved once to a commit that every env then loads.
        env_id: Which declaration to load when the manifest declares several.
        token: Hub token for private repos.
        trust_remote_code: Must be True: building the env runs its code.
        num_tasks: Keep only the first `num_tasks` rows of the split.
        seed: Seeds the episodes (with the task row and a count of episodes).
        **env_kwargs: Override the manifest's `kwargs` for the env class.
    """

    def __init__(
        self,
        repo_id_or_path: str | Path,
        *,
        split: str | None = None,
        actions: Literal["tool", "text"] = "tool",
        revision: str | None = None,
        env_id: str | None = None,
        token: str | bool | None = None,
        trust_remote_code: bool = False,
        num_tasks: int | None = None,
        seed: int = 0,
        **env_kwargs: Any,
    ):
        if actions not in ("tool", "text"):
            raise ValueError(f"actions must be 'tool' or 'text', got {actions!r}")
        probe = load_env(
            repo_id_or_path,
            revision=revision,
            env_id=env_id,
            token=token,
            trust_remote_code=trust_remote_code,
            **env_kwargs,
        )
        try:
            self.split = split or default_split(probe)
            tasks = load_tasks(probe, split=self.split)
            self.tasks = tasks.select(range(min(num_tasks, len(tasks)))) if num_tasks is not None else tasks
            self.system_prompt = system_prompt(env_tools(probe), actions)
            self.reward_names = component_names(probe)
        finally:
            probe.close()
        self.actions = actions
        self.seed = seed
        self.env_fn = functools.partial(
            load_env,
            repo_id_or_path,
            revision=probe.commit or revision,
            env_id=env_id,
            token=token,
            trust_remote_code=trust_remote_code,
            **env_kwargs,
        )

    @cached_property
    def train_dataset(self) -> Any:
        """One row per task: `prompt` (the system prompt and an empty user turn that the env's first observation
        fills at reset), `task` (the task row) and `row` (its index in the split)."""
        from datasets import Dataset, Features, List, Value

        message = {"role": Value("string"), "content": Value("string")}
        if self.actions == "text":
            message[TASK_ROW] = Value("int64")
        features = Features({"prompt": List(message), "task": self.tasks.features, "row": Value("int64")})
        rows = list(range(len(self.tasks)))
        columns = {"prompt": [self._prompt(row) for row in rows], "task": list(self.tasks), "row": rows}
        return Dataset.from_dict(columns, features=features)

    def _prompt(self, row: int) -> list[dict[str, Any]]:
        system, user = first_turns(self.system_prompt, "")
        return [system, {**user, TASK_ROW: row}] if self.actions == "text" else [system, user]

    @property
    def environment_factory(self) -> Callable[[], "CodeActToolEnv"]:
        """Builds the env adapter TRL pools (`environment_factory=`); picklable for `AsyncGRPOTrainer`."""
        if self.actions != "tool":
            raise ValueError("environment_factory needs CodeActSpec(..., actions='tool'); this spec has actions='text'")
        return functools.partial(CodeActToolEnv, self.env_fn, self.system_prompt, self.seed)

    @property
    def reward_funcs(self) -> list[Callable[..., list[float | None]]]:
        """One reward function per reward component of the env (TRL logs each as `rewards/<name>/mean`).

        With `actions="tool"` the adapter's `get_reward` (added by TRL) counts what no component reported, so the
        rewards sum to the env's reward exactly once; with `actions="text"` the `unattributed` function does. An
        episode the infrastructure ended gets None from every function: TRL leaves it out of its group's baseline.
        """
        components = [RewardComponent(name) for name in self.reward_names]
        return components if self.actions == "tool" else [*components, RewardComponent(_UNATTRIBUTED)]

    @cached_property
    def rollout_func(self) -> "TextRollout":
        """Plays whole episodes with fenced-code replies for `GRPOTrainer(rollout_func=...)`."""
        if self.actions != "text":
            raise ValueError("rollout_func needs CodeActSpec(..., actions='text'); this spec has actions='tool'")
        return TextRollout(self)


class CodeActToolEnv:
    """A codeact env as TRL's `environment_factory` wants it: `reset`, the `python` tool and `get_reward` only.

    Its sandbox is freed when the instance is garbage-collected and when the process exits (TRL never closes the
    instances it pools).

    Args:
        env_fn: Builds the codeact env (on the first reset).
        system_prompt: The system prompt of the tool format (recorded with the episode).
        seed: Seeds the episodes, with the task row and this instance's count of episodes.
    """

    def __init__(self, env_fn: Callable[[], CodeActEnv], system_prompt: str = "", seed: int = 0):
        self._env_fn = env_fn
        self._system_prompt = system_prompt
        self._seed = seed
        self._episodes = itertools.count()
        self._env: CodeActEnv | None = None
        self._finalizer: weakref.finalize | None = None
        self._episode: LiveEpisode | None = None
        self._reported: set[str] = set()

    def reset(self, task: dict[str, Any] | None = None, row: int = 0, **columns: Any) -> str:
        """Start the episode of a task row; TRL appends the returned first observation to the prompt."""
        if task is None:
            raise ValueError(
                "expected a dataset row with a `task` column (CodeActSpec.train_dataset), got the columns "
                f"{sorted(columns)}; pass the spec's train_dataset to the trainer"
            )
        if self._failure() is not None:
            self._close_env()
        self._reported = set()
        assignment = Assignment(dict(task), row, episode_seed(self._seed, row, next(self._episodes)))
        self._episode = _started(self._open, factory_name(self._env_fn), assignment, self._system_prompt)
        if self._episode.done:
            return f"[the environment failed to start: {self._episode.record.infrastructure_error}]"
        return self._episode.first_observation

    def python(self, code: str) -> str:
        """Run Python code in the task's persistent interpreter and return what it printed.

        Args:
            code: Python source code. Variables, functions and imports stay defined from one call to the next;
                call final_answer(value) to give the answer and end the task.

        Returns:
            What the code printed, the value of its last expression, or the traceback.
        """
        if self._episode is None:
            raise RuntimeError("python() before reset(): TRL resets every environment before its rollout")
        if not self._episode.done:
            self._episode.run(code)
            self._raise_failure()
            return self._episode.record.observations[-1]
        self._raise_failure()
        return _EPISODE_OVER

    def get_reward(self) -> float | None:
        """The episode's reward that no `CodeActSpec.reward_funcs` function reported (all of it when they are not
        used, e.g. by `AsyncGRPOTrainer`); None when the infrastructure ended the episode."""
        trajectory = self._trajectory()
        if trajectory is None or trajectory.infrastructure_error is not None:
            return None
        return trajectory.reward - sum(component_total(trajectory, name) for name in self._reported)

    def _report(self, name: str) -> float | None:
        """Reward component `name` of the episode, marked as reported (see `get_reward`)."""
        trajectory = self._trajectory()
        if trajectory is None or trajectory.infrastructure_error is not None:
            return None
        self._reported.add(name)
        return component_total(trajectory, name)

    def _trajectory(self) -> Trajectory | None:
        return None if self._episode is None else self._episode.trajectory()

    def _failure(self) -> str | None:
        trajectory = self._trajectory()
        return None if trajectory is None else trajectory.infrastructure_error

    def _raise_failure(self) -> None:
        if self._failure() is not None:
            raise InfrastructureError(self._failure())

    def _open(self) -> CodeActEnv:
        """The env, built on first use and again after an infrastructure failure."""
        if self._env is None:
            self._env = self._env_fn()
            self._finalizer = weakref.finalize(self, self._env.close)
        return self._env

    def _close_env(self) -> None:
        if self._finalizer is not None:
            self._finalizer()
        self._env = self._finalizer = None


class RewardComponent:
    """TRL reward function for one reward component of the env (`info["rewards"][name]`, summed over the episode).

    It reads the episodes from the `environments` TRL passes (`actions="tool"`) or from the `trajectory` column that
    `TextRollout` returns (`actions="text"`). Without either (`AsyncGRPOTrainer` passes no environments) it returns
    None for every sample, and the adapter's `get_reward` counts the whole reward.

    Args:
        name: The component's name, as transforms record it; `"unattributed"` is the reward no component recorded.
    """

    def __init__(self, name: str):
        self.__name__ = name

    def __call__(
        self,
        completions: list[Any],
        environments: list[CodeActToolEnv] | None = None,
        trajectory: list[Trajectory] | None = None,
        **columns: Any,
    ) -> list[float | None]:
        if trajectory is not None:
            return [self._of(episode) for episode in trajectory]
        if environments is not None:
            return [environment._report(self.__name__) for environment in environments]
        return [None] * len(completions)

    def _of(self, trajectory: Trajectory) -> float | None:
        if trajectory.infrastructure_error is not None:
            return None
        if self.__name__ == _UNATTRIBUTED:
            return trajectory.reward - sum(sum(step.values()) for step in trajectory.reward_components)
        return component_total(trajectory, self.__name__)


def component_total(trajectory: Trajectory, name: str) -> float:
    """Reward component `name` summed over the episode's steps."""
    return float(sum(step.get(name, 0.0) for step in trajectory.reward_components))


class TextRollout:
    """`GRPOTrainer(rollout_func=...)` for fenced-code replies: plays every prompt's episode to its end.

    All episodes of a call advance together: one batched generation per turn (the trainer's vLLM when it has one,
    else the model's `generate` with a copy of the trainer's generation config), then every env steps in parallel.
    With several training processes, every process generates for all its episodes in every turn until no process
    has an episode left (generation is collective there: vLLM's server mode gathers every process's prompts, ZeRO-3
    syncs every forward); the replies of episodes that are already over are thrown away.
    Each turn's prompt is the previous prompt, the sampled ids and the observation's ids (never re-tokenized).
    The completion is everything after the first prompt; `env_mask` is 1 on sampled ids only. An episode ends with
    the env, or when the next turn would not fit in `max_completion_length` (it then counts as truncated).

    Args:
        spec: The `CodeActSpec` (`actions="text"`) whose `train_dataset` the trainer iterates.
    """

    def __init__(self, spec: CodeActSpec):
        self.spec = spec
        self.envs: dict[int, CodeActEnv] = {}
        self._episodes = itertools.count()
        weakref.finalize(self, _close_all, self.envs)

    def __call__(self, prompts: list[list[dict[str, Any]]], trainer: Any) -> dict[str, list]:
        tokenizer = getattr(trainer.processing_class, "tokenizer", trainer.processing_class)
        assignments = [self._assignment(prompt, trainer) for prompt in prompts]
        with ThreadPoolExecutor(max_workers=len(prompts)) as pool:
            episodes = list(pool.map(self._start, range(len(prompts)), assignments))
            while turns := self._turns_in_step(trainer, tokenizer, episodes):
                playing, contexts = zip(*turns, strict=True)
                replies = self._generate(trainer, tokenizer, playing, contexts)
                list(pool.map(_act, playing, replies))
        trajectories = [episode.trajectory() for episode in episodes]
        self._drop_failed_envs(trajectories)
        return self._outputs(trajectories, tokenizer)

    def _assignment(self, prompt: list[dict[str, Any]], trainer: Any) -> Assignment:
        row = _row_of(prompt)
        seed = episode_seed(self.spec.seed, row, next(self._episodes))
        version = trainer.state.global_step
        return Assignment(dict(self.spec.tasks[row]), row, seed, split=self.spec.split, policy_version=version)

    def _start(self, index: int, assignment: Assignment) -> LiveEpisode:
        """Start episode `index` on env `index` (built when missing)."""
        return _started(lambda: self._env(index), factory_name(self.spec.env_fn), assignment, self.spec.system_prompt)

    def _env(self, index: int) -> CodeActEnv:
        if index not in self.envs:
            self.envs[index] = self.spec.env_fn()
        return self.envs[index]

    def _drop_failed_envs(self, trajectories: list[Trajectory]) -> None:
        """Close the envs whose episode the infrastructure ended; the next call builds new ones."""
        for index, trajectory in enumerate(trajectories):
            if trajectory.infrastructure_error is not None and index in self.envs:
                self.envs.pop(index).close()

    def _turns_in_step(
        self, trainer: Any, tokenizer: Any, episodes: list[LiveEpisode]
    ) -> list[tuple[LiveEpisode | None, list[int]]]:
        """What this process generates for in the next turn: the episodes that play on, or, with several training
        processes, one entry per episode (None with a placeholder prompt for those that are over) as long as any
        process has an episode playing."""
        turns = self._next_turns(episodes, tokenizer, trainer.max_completion_length)
        if trainer.accelerator.num_processes == 1:
            return turns
        if not _playing_anywhere(bool(turns)):
            return []
        continuing = {id(episode): context for episode, context in turns}
        placeholder = prompt_ids(tokenizer, first_turns(self.spec.system_prompt, ""))
        return [
            (episode, continuing[id(episode)]) if id(episode) in continuing else (None, placeholder)
            for episode in episodes
        ]

    def _next_turns(
        self, episodes: list[LiveEpisode], tokenizer: Any, budget: int
    ) -> list[tuple[LiveEpisode, list[int]]]:
        """The episodes that play another turn, with the ids each continues from; an episode whose completion
        budget is spent is cut (as truncated)."""
        turns = []
        for episode in (e for e in episodes if not e.done):
            context = context_ids(tokenizer, episode.chat)
            if _spent(episode, context) >= budget:
                episode.cut()
            else:
                turns.append((episode, context))
        return turns

    def _generate(self, trainer: Any, tokenizer: Any, episodes: tuple, contexts: tuple) -> list[Turn]:
        budget = trainer.max_completion_length
        budgets = [
            1 if episode is None else budget - _spent(episode, context)
            for episode, context in zip(episodes, contexts, strict=True)
        ]
        if trainer.use_vllm:
            _, outputs, log_probs, _ = trainer.vllm_generation.generate(
                prompts=list(contexts), images=None, num_generations=1
            )
            sampled = [(ids, [top[0] for top in lps]) for ids, lps in zip(outputs, log_probs, strict=True)]
        else:
            sampled = self._generate_with_model(trainer, contexts, max(budgets))
        return [
            Turn(tokenizer.decode(ids[:budget], skip_special_tokens=True), context, ids[:budget], lps[:budget])
            for (ids, lps), context, budget in zip(sampled, contexts, budgets, strict=True)
        ]

    def _generate_with_model(self, trainer: Any, contexts: tuple, max_new_tokens: int) -> list:
        from trl.models import unwrap_model_for_generation

        config = copy.deepcopy(trainer.generation_config)
        config.max_new_tokens = max_new_tokens
        with unwrap_model_for_generation(
            trainer.model_wrapped,
            trainer.accelerator,
            gather_deepspeed3_params=trainer.args.ds3_gather_for_generation,
        ) as model:
            return sample(model, list(contexts), config)

    def _outputs(self, trajectories: list[Trajectory], tokenizer: Any) -> dict[str, list]:
        outputs: dict[str, list] = {"prompt_ids": [], "completion_ids": [], "logprobs": [], "env_mask": []}
        for trajectory in trajectories:
            prompt, completion, log_probs, mask = _sequences(trajectory, tokenizer, self.spec.system_prompt)
            outputs["prompt_ids"].append(prompt)
            outputs["completion_ids"].append(completion)
            outputs["logprobs"].append(log_probs)
            outputs["env_mask"].append(mask)
        outputs["trajectory"] = trajectories
        return outputs


def _sequences(
    trajectory: Trajectory, tokenizer: Any, system: str
) -> tuple[list[int], list[int], list[float], list[int]]:
    """Prompt ids, completion ids, their log-probs and env mask; one masked end token for an episode without turns."""
    if trajectory.token_ids is None:
        return prompt_ids(tokenizer, first_turns(system, "")), [tokenizer.eos_token_id], [0.0], [0]
    start = len(trajectory.turns[0].prompt_ids)
    return (
        trajectory.token_ids[:start],
        trajectory.token_ids[start:],
        trajectory.token_log_probs[start:],
        trajectory.token_mask[start:],
    )


def _act(episode: LiveEpisode | None, reply: Turn) -> None:
    """Play `reply` in `episode`; a placeholder's reply (an episode already over) is thrown away."""
    if episode is not None:
        episode.act(reply)


def _playing_anywhere(playing_here: bool) -> bool:
    """Whether an episode of any training process plays another turn (a collective call: every process makes it)."""
    from accelerate.utils import gather_object

    return any(gather_object([playing_here]))


def _spent(episode: LiveEpisode, context: list[int]) -> int:
    return len(context) - len(episode.record.turns[0].prompt_ids) if episode.record.turns else 0


def _row_of(prompt: list[dict[str, Any]]) -> int:
    rows = [message.get(TASK_ROW) for message in prompt if message.get(TASK_ROW) is not None]
    if not rows:
        raise ValueError(
            f"expected prompts from CodeActSpec(..., actions='text').train_dataset (a message with {TASK_ROW!r}), "
            f"got {prompt!r}; pass that spec's train_dataset to the trainer"
        )
    return int(rows[0])


def _started(open_env: Callable[[], CodeActEnv], name: str, assignment: Assignment, system_prompt: str) -> LiveEpisode:
    """The episode of `assignment`, started on the env `open_env` gives (an infrastructure failure when it cannot
    build the env called `name`)."""
    try:
        env = open_env()
    except InfrastructureError as e:
        return LiveEpisode.unbuilt(e, name, assignment)
    episode = LiveEpisode(env, assignment)
    episode.start(system_prompt)
    return episode


def _close_all(envs: dict[int, CodeActEnv]) -> None:
    for env in envs.values():
        env.close()
