"""The chat a model sees, built in this one place: the system prompt (rules, tools, answer format), the first
turn, the observation turns, and the same chat as token ids for policies that sample tokens.

Token rule: the first model call sees the chat template applied to the system prompt and the first observation.
Every later call sees the previous call's prompt ids, then the ids it sampled (plus the tokenizer's end-of-turn id
when it stopped without one), then the ids the chat template renders for the observation turn and the next
assistant header. Those last ids are the template's delta: the template applied to a small fixed chat with and
without the observation turn, cut after the fixed chat's last end-of-turn id. Nothing is ever decoded and encoded
again, so the ids a model sampled stay exactly the ids it is trained on; for replies that tokenize canonically the
result equals the template applied to the whole chat.
"""

import inspect
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

Actions = Literal["text", "tool"]

PYTHON_TOOL = "python"
CODE_BLOCK_TAGS = ("```python", "```")

_PREAMBLE = """\
You solve tasks by writing Python code. Each action you send is run in a persistent Python \
interpreter: variables, functions and imports stay defined from one action to the next. You see \
what your code prints, the value of its last expression and any traceback. The standard library \
is available; there is no network.

Besides Python itself you can call these functions:"""

_FINAL_ANSWER_SIGNATURE = '''\
def final_answer(value) -> None:
    """Give your final answer and end the episode."""'''

_ANSWER_FORMATS = {
    "text": """\
Answer with a short thought, then the code of your next action in one Python code block:

```python
# your code
```""",
    "tool": f"""\
Send the code of each action with the `{PYTHON_TOOL}` tool (its `code` argument is the Python source); \
the tool returns what the code printed. Call final_answer(value) in your code to finish.""",
}

_FIXED_CHAT = ({"role": "user", "content": "."}, {"role": "assistant", "content": "."})


@dataclass(frozen=True)
class Turn:
    """One model call, token-exact (the shape of TRL's `TurnRecord`), with the reply it decodes to.

    Attributes:
        text: The reply, as the model's text.
        prompt_ids: Every token the model was conditioned on for this call.
        output_ids: The tokens it sampled.
        output_log_probs: The log-probability of each sampled token under the sampling distribution.
    """

    text: str
    prompt_ids: list[int]
    output_ids: list[int]
    output_log_probs: list[float] = field(default_factory=list)


class Chat(list):
    """The chat so far: a list of `{"role", "content"}` messages, as every policy receives it.

    Attributes:
        turns: The episode's earlier model calls with their tokens, oldest first; empty when there were none or
            when the policy returned text only. A policy that samples tokens continues from the last one.
    """

    def __init__(self, messages: Iterable[dict[str, str]] = (), turns: Iterable[Turn] = ()):
        super().__init__(messages)
        self.turns: tuple[Turn, ...] = tuple(turns)


def system_prompt(tools: Mapping[str, Callable], actions: Actions = "text") -> str:
    """The system prompt: how actions run, every tool of the env with its signature and docstring, the answer format.

    Args:
        tools: The env's tools by name (`@tool` methods).
        actions: "text" when the model writes its code in a fenced block of its reply, "tool" when it sends the code
            as the argument of the `python` tool.
    """
    if actions not in _ANSWER_FORMATS:
        raise ValueError(f"actions must be one of {sorted(_ANSWER_FORMATS)}, got {actions!r}")
    signatures = [describe_tool(name, method) for name, method in tools.items()]
    return "\n\n".join([_PREAMBLE, *signatures, _FINAL_ANSWER_SIGNATURE, _ANSWER_FORMATS[actions]])


def describe_tool(name: str, method: Callable) -> str:
    """A tool as the model reads it: a Python signature with the docstring as its body."""
    doc = inspect.getdoc(method) or "No description."
    body = "\n".join(f"    {line}" if line else "" for line in f'"""{doc}"""'.splitlines())
    return f"def {name}{inspect.signature(method)}:\n{body}"


def first_turns(system: str, observation: str) -> list[dict[str, str]]:
    """The chat before the first model call: the system prompt, then the first observation as the user's turn."""
    return [{"role": "system", "content": system}, observation_turn(observation)]


def observation_turn(observation: str) -> dict[str, str]:
    """What the env said after an action, as a user turn."""
    return {"role": "user", "content": observation}


def reply_turn(reply: str) -> dict[str, str]:
    """The model's reply, as an assistant turn."""
    return {"role": "assistant", "content": reply}


def context_ids(tokenizer: Any, chat: Chat) -> list[int]:
    """The token ids a model continues from for the next reply of `chat` (see the module's token rule)."""
    if not chat.turns:
        return prompt_ids(tokenizer, chat)
    last = chat.turns[-1]
    ended = [*last.output_ids, *closed(tokenizer, last.output_ids)]
    return [*last.prompt_ids, *ended, *continuation_ids(tokenizer, _after_reply(chat))]


def prompt_ids(tokenizer: Any, messages: Iterable[dict[str, str]]) -> list[int]:
    """The chat template applied to `messages`, ending with the assistant header."""
    return _render(tokenizer, list(messages), add_generation_prompt=True)


def closed(tokenizer: Any, output_ids: list[int]) -> list[int]:
    """The ids that end a sampled turn: none when the model stopped with its end-of-turn id, else that id."""
    end = tokenizer.eos_token_id
    return [] if output_ids and output_ids[-1] == end else [end]


def continuation_ids(tokenizer: Any, messages: list[dict[str, str]]) -> list[int]:
    """The template's delta: the ids of `messages` after an ended assistant turn, and the next assistant header."""
    end = tokenizer.eos_token_id
    turns_ended = _render(tokenizer, list(_FIXED_CHAT), add_generation_prompt=False).count(end)
    if not turns_ended:
        raise ValueError(
            f"expected a chat template that ends each turn with the eos token {tokenizer.eos_token!r}, got one that "
            f"does not ({tokenizer.name_or_path!r}); set tokenizer.eos_token to the template's end-of-turn token"
        )
    after = _render(tokenizer, [*_FIXED_CHAT, *messages], add_generation_prompt=True)
    ends = [index for index, value in enumerate(after) if value == end]
    return after[ends[turns_ended - 1] + 1 :]


def _after_reply(chat: Chat) -> list[dict[str, str]]:
    last_reply = max(index for index, message in enumerate(chat) if message["role"] == "assistant")
    return list(chat[last_reply + 1 :])


def _render(tokenizer: Any, messages: list[dict[str, str]], *, add_generation_prompt: bool) -> list[int]:
    ids = tokenizer.apply_chat_template(
        messages, add_generation_prompt=add_generation_prompt, tokenize=True, return_dict=False
    )
    return list(ids)
