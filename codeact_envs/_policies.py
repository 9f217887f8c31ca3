"""Policies: the chat so far in, the reply out (text, or a `Turn` with the tokens the model sampled)."""

from collections.abc import Callable, Iterable, Sequence
from typing import Any

from ._env import CodeActEnv
from ._prompt import CODE_BLOCK_TAGS, Chat, Turn, context_ids

Policy = Callable[[Chat], str | Turn]


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


class TransformersPolicy:
    """Samples replies from an in-process transformers model and says exactly what it sampled.

    Each reply is a `Turn`: the prompt ids, the sampled ids and their log-probabilities under the sampling
    distribution (the model's logits divided by `temperature`). The prompt of a later call continues the earlier
    call's ids (see `codeact_envs._prompt`), so trajectories are token-exact.

    Args:
        model: A causal LM (`AutoModelForCausalLM`).
        tokenizer: Its tokenizer, with a chat template whose turns end with `tokenizer.eos_token`.
        temperature: Sampling temperature, > 0.
        max_new_tokens: Longest reply, in tokens.
        **generate_kwargs: More `GenerationConfig` fields (e.g. `top_k`, `top_p`).
    """

    def __init__(
        self, model: Any, tokenizer: Any, *, temperature: float = 1.0, max_new_tokens: int = 512, **generate_kwargs: Any
    ):
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0 (this policy samples), got {temperature!r}")
        from transformers import GenerationConfig

        self.model = model
        self.tokenizer = tokenizer
        self.generation_config = GenerationConfig(
            do_sample=True,
            temperature=temperature,
            max_new_tokens=max_new_tokens,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id,
            **generate_kwargs,
        )

    def __call__(self, messages: Chat) -> Turn:
        context = context_ids(self.tokenizer, messages if isinstance(messages, Chat) else Chat(messages))
        ((output_ids, log_probs),) = sample(self.model, [context], self.generation_config)
        return Turn(self.tokenizer.decode(output_ids, skip_special_tokens=True), context, output_ids, log_probs)


def sample(model: Any, contexts: Sequence[list[int]], generation_config: Any) -> list[tuple[list[int], list[float]]]:
    """Sample one continuation of each context in one batch: the ids up to the first stop id, and their log-probs.

    Log-probs are those of the sampling distribution: `log_softmax(logits / temperature)`.
    """
    import torch

    stops = _stop_ids(generation_config)
    width = max(len(context) for context in contexts)
    pad = generation_config.pad_token_id
    input_ids = torch.tensor([[pad] * (width - len(c)) + list(c) for c in contexts], device=model.device)
    attention_mask = torch.tensor([[0] * (width - len(c)) + [1] * len(c) for c in contexts], device=model.device)
    with torch.no_grad():
        out = model.generate(
            input_ids=input_ids,
            attention_mask=attention_mask,
            generation_config=generation_config,
            return_dict_in_generate=True,
            output_logits=True,
        )
    new = out.sequences[:, width:].tolist()
    temperature = generation_config.temperature or 1.0
    log_probs = torch.stack(out.logits, dim=1).float().div(temperature).log_softmax(-1)
    picked = log_probs.gather(-1, out.sequences[:, width:, None]).squeeze(-1).tolist()
    return [_until_stop(ids, lps, stops) for ids, lps in zip(new, picked, strict=True)]


def _stop_ids(generation_config: Any) -> set[int]:
    eos = generation_config.eos_token_id
    return set(eos) if isinstance(eos, list) else {eos}


def _until_stop(ids: list[int], log_probs: list[float], stops: set[int]) -> tuple[list[int], list[float]]:
    end = next((index + 1 for index, token in enumerate(ids) if token in stops), len(ids))
    return ids[:end], log_probs[:end]


def code_in(reply: str) -> tuple[str, str | None]:
    """The code of a reply (smolagents' own parser), or "" and the parse error to show the model."""
    from smolagents.utils import parse_code_blobs

    try:
        return parse_code_blobs(reply, CODE_BLOCK_TAGS), None
    except ValueError as e:
        return "", str(e)


def _text_of(content: Any) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    return "".join(part.get("text", "") for part in content if isinstance(part, dict))
