"""One episode: a policy writes code, an env runs it, until the env (or the infrastructure) ends it; `Trajectory`."""

import dataclasses
import functools
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ._errors import InfrastructureError
from ._policies import Policy, code_in
from ._prompt import Chat, Turn, first_turns, observation_turn, reply_turn
from ._transforms import Compose


@dataclass(frozen=True)
class Trajectory:
    """One complete episode: the chat, the actions, the observations, rewards, tokens and where it came from.

    Attributes:
        env: The env's repo id or folder (its class name when it was not built by `load_env`).
        commit: The resolved commit of the env's Hub repo, None for a folder.
        split: The task split, when the task loader knows it.
        row: Index of the task row in the task loader.
        sample: Index of this episode within its group (0 .. group_size - 1).
        seed: The episode's seed.
        task: The task row.
        messages: The chat: system prompt, prompt, then assistant and observation turns.
        actions: The code run at each step ("" when the reply held no code).
        observations: What the env returned at each step.
        rewards: Reward of each step.
        reward_components: `info["rewards"]` of each step.
        terminated: Whether the episode ended with a final answer (or a transform ended it).
        truncated: Whether it ran out of steps (or out of the trainer's token budget).
        answer: The final answer, if any.
        turns: Each model call with its tokens (TRL's `TurnRecord` shape); empty when the policy returned text.
        infrastructure_error: Why the infrastructure ended the episode (the sandbox, a host tool, building the env,
            a lost Ray actor), None when the policy did. Such an episode says nothing about the policy: leave it
            out of training instead of learning its reward.
        policy_version: The version of the policy when the episode started, as set by the caller (off-policy
            filtering), or None.
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
    turns: list[Turn] = field(default_factory=list)
    infrastructure_error: str | None = None
    policy_version: int | None = None
    policy_s: list[float] = field(default_factory=list)
    env_s: list[float] = field(default_factory=list)
    reset_s: float = 0.0

    @property
    def reward(self) -> float:
        """The episode's return: the sum of its step rewards."""
        return float(sum(self.rewards))

    @property
    def token_ids(self) -> list[int] | None:
        """The whole episode as one id sequence (first prompt, then replies and observations), built by
        concatenating the ids of every model call; None when the policy did not give its tokens."""
        if not self._has_tokens:
            return None
        return [*self.turns[-1].prompt_ids, *self.turns[-1].output_ids]

    @property
    def token_mask(self) -> list[int] | None:
        """1 on each token the model sampled, 0 on the prompt and observation tokens (aligned with `token_ids`)."""
        return None if not self._has_tokens else [int(sampled) for sampled, _ in self._token_positions()]

    @property
    def token_log_probs(self) -> list[float] | None:
        """The sampling log-prob of each model token, 0.0 elsewhere (aligned with `token_ids`)."""
        return None if not self._has_tokens else [log_prob for _, log_prob in self._token_positions()]

    @property
    def _has_tokens(self) -> bool:
        return bool(self.turns) and len(self.turns) == len(self.actions)

    def _token_positions(self) -> list[tuple[bool, float]]:
        positions = [(False, 0.0)] * len(self.turns[0].prompt_ids)
        for turn, following in zip(self.turns, [*self.turns[1:], None], strict=True):
            log_probs = turn.output_log_probs or [0.0] * len(turn.output_ids)
            positions += [(True, log_prob) for log_prob in log_probs]
            if following is not None:
                positions += [(False, 0.0)] * (len(following.prompt_ids) - len(turn.prompt_ids) - len(turn.output_ids))
        return positions

    def to_dict(self) -> dict[str, Any]:
        """A plain dict (one row of a `datasets.Dataset`: `Dataset.from_list([t.to_dict() for t in batch])`)."""
        row = dataclasses.asdict(self)
        row["reward"] = self.reward
        row["answer"] = None if self.answer is None else repr(self.answer)
        row["token_ids"] = self.token_ids
        row["token_mask"] = self.token_mask
        return row


@dataclass(frozen=True)
class Assignment:
    """What one episode is asked to play: a task row, where it comes from, its seed.

    Attributes:
        task: The task row.
        row: Index of the row in the task loader.
        seed: The episode's seed.
        sample: Index of the episode within its group.
        split: The task split, when known.
        policy_version: The caller's policy version when the episode starts.
    """

    task: dict[str, Any]
    row: int
    seed: int
    sample: int = 0
    split: str | None = None
    policy_version: int | None = None


def episode_seed(seed: int, row: int, sample: int) -> int:
    """The seed of one episode: a function of a run's seed, the task row and the sample only."""
    return int(np.random.SeedSequence([seed, row, sample]).generate_state(1)[0])


class LiveEpisode:
    """An episode being played: the env's side of every turn, recorded into the `Trajectory` it becomes.

    Drive it with `start()`, then `act(reply)` with the policy's reply to `chat` until `done`; `trajectory()` is
    the record. An `InfrastructureError` from the env ends the episode as an infrastructure failure.
    """

    def __init__(self, env: Any, assignment: Assignment):
        self.env = env
        self.record = _empty_trajectory(env_name(env), getattr(env, "commit", None), assignment)
        self.done = False

    @classmethod
    def unbuilt(cls, error: BaseException, env: str, assignment: Assignment) -> "LiveEpisode":
        """The episode of an env that could not be built (named `env`): over, as an infrastructure failure."""
        episode = cls(None, assignment)
        episode.record = dataclasses.replace(episode.record, env=env)
        episode.fail(error)
        return episode

    def start(self, system_prompt: str | None = None) -> None:
        """Reset the env with the task; the chat then holds the system prompt (the env's by default) and the first
        observation."""
        start = time.perf_counter()
        try:
            observation, _ = self.env.reset(seed=self.record.seed, options={"task": self.record.task})
        except InfrastructureError as e:
            self.fail(e)
            return
        self.record.messages.extend(first_turns(system_prompt or self.env.system_prompt, observation))
        self._update(reset_s=time.perf_counter() - start)

    @property
    def chat(self) -> Chat:
        """The chat so far, with the earlier model calls' tokens: what the policy answers next."""
        return Chat([dict(message) for message in self.record.messages], self.record.turns)

    @property
    def first_observation(self) -> str | None:
        """What the env said at reset (None when the infrastructure failed before)."""
        return self.record.messages[1]["content"] if self.record.messages else None

    def act(self, reply: str | Turn, policy_s: float = 0.0) -> None:
        """Run the code of `reply` in the env and record the step (a reply without code runs nothing and is
        answered with the parse error)."""
        if isinstance(reply, Turn):
            self._check_continues(reply)
            self.record.turns.append(reply)
        text = reply.text if isinstance(reply, Turn) else reply
        code, parse_error = code_in(text)
        self._step(text, code, parse_error, policy_s)

    def run(self, code: str) -> None:
        """Run `code` as the next action, as it arrived (a tool call's argument), and record the step."""
        self._step(code, code, None, 0.0)

    def _step(self, reply: str, code: str, parse_error: str | None, policy_s: float) -> None:
        start = time.perf_counter()
        try:
            observation, reward, terminated, truncated, info = self.env.step(code)
        except InfrastructureError as e:
            self.record.messages.append(reply_turn(reply))
            self.fail(e)
            return
        observation = parse_error or observation
        self.record.policy_s.append(policy_s)
        self.record.env_s.append(time.perf_counter() - start)
        self.record.messages.extend([reply_turn(reply), observation_turn(observation)])
        self.record.actions.append(code)
        self.record.observations.append(observation)
        self.record.rewards.append(float(reward))
        self.record.reward_components.append(dict(info.get("rewards", {})))
        self._update(terminated=bool(terminated), truncated=bool(truncated), answer=info.get("answer"))
        self.done = bool(terminated or truncated)

    def cut(self) -> None:
        """End the episode before the env did (the trainer's token budget is spent): it counts as truncated."""
        self._update(truncated=True)
        self.done = True

    def fail(self, error: BaseException) -> None:
        """End the episode as an infrastructure failure."""
        self._update(infrastructure_error=_describe(error))
        self.done = True

    def trajectory(self) -> Trajectory:
        """The record of the episode."""
        return self.record

    def _update(self, **changes: Any) -> None:
        self.record = dataclasses.replace(self.record, **changes)

    def _check_continues(self, turn: Turn) -> None:
        if not self.record.turns:
            return
        last = self.record.turns[-1]
        before = [*last.prompt_ids, *last.output_ids]
        if turn.prompt_ids[: len(before)] != before:
            raise ValueError(
                "expected each model call's prompt ids to start with the previous call's prompt and output ids, got "
                f"a prompt that does not (turn {len(self.record.turns)}); build it with codeact_envs' context rule"
            )


def run_episode(env: Any, policy: Policy, assignment: Assignment) -> Trajectory:
    """Play one episode: the policy writes code, the env runs it, until the env or the infrastructure ends it."""
    episode = LiveEpisode(env, assignment)
    episode.start()
    while not episode.done:
        start = time.perf_counter()
        reply = policy(episode.chat)
        episode.act(reply, policy_s=time.perf_counter() - start)
    return episode.trajectory()


def component_names(env: Any) -> list[str]:
    """The names under which the env's reward transforms record their components in `info["rewards"]`."""
    pending, names = [env.transform], []
    while pending:
        transform = pending.pop(0)
        if transform is None:
            continue
        if isinstance(transform, Compose):
            pending[:0] = transform.transforms
        elif transform.name not in names:
            names.append(transform.name)
    return names


def factory_name(env_fn: Any) -> str:
    """What an env factory builds, for the record of an env it could not build: the source a `load_env` partial
    loads, else the factory's name."""
    if isinstance(env_fn, functools.partial) and env_fn.args:
        return str(env_fn.args[0])
    return getattr(env_fn, "__qualname__", type(env_fn).__name__)


def env_name(env: Any) -> str:
    """Where the env came from: its repo id or folder, else its class name."""
    return getattr(env, "repo_id", None) or type(env).__name__


def _empty_trajectory(env: str, commit: str | None, assignment: Assignment) -> Trajectory:
    return Trajectory(
        env=env,
        commit=commit,
        split=assignment.split,
        row=assignment.row,
        sample=assignment.sample,
        seed=assignment.seed,
        task=dict(assignment.task),
        policy_version=assignment.policy_version,
    )


def _describe(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}"
