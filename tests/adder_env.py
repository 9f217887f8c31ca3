"""A small env folder for training tests (short prompts fit the tiny model), and scripted replies that solve it."""

import json
import textwrap
from pathlib import Path

ENV_PY = '''
from codeact_envs import CodeActEnv, tool


class AdderEnv(CodeActEnv):
    """Add two numbers with the add tool."""

    def setup(self, task):
        return f"What is {task['a']} + {task['b']}?"

    @tool
    def add(self, a: int, b: int) -> int:
        """Add two integers."""
        return a + b

    def oracle(self, task):
        return f"final_answer(add({task['a']}, {task['b']}))"
'''

MANIFEST = """\
spec_version: hf-rl-env-0.1
environments:
  - id: adder
    config_name: default
    splits: [train]
    frameworks:
      codeact_envs:
        min_version: ">=0.1.0"
        entry_point: env:AdderEnv
        kwargs: {max_steps: 3, timeout_s: 10}
        transforms:
          - ExactMatch: {column: answer}
          - StepPenalty: {penalty: 0.01}
"""

CARD = """\
---
tags: [rl-environment, codeact-env]
configs:
  - config_name: default
    data_files:
      - split: train
        path: data/train-*.parquet
---
Add two numbers.
"""

TASKS = [{"a": a, "b": b, "answer": a + b} for a, b in [(1, 2), (3, 4), (5, 6), (7, 8)]]


def write_adder_env(folder: Path) -> Path:
    """Write the env folder (code, manifest, card, four task rows) and return it."""
    import datasets

    (folder / "data").mkdir(parents=True, exist_ok=True)
    (folder / "env.py").write_text(textwrap.dedent(ENV_PY))
    (folder / "environment.yaml").write_text(MANIFEST)
    (folder / "README.md").write_text(CARD)
    datasets.Dataset.from_list(TASKS).to_parquet(folder / "data" / "train-00000-of-00001.parquet")
    return folder


def question_in(context: str) -> dict:
    """The task whose question the context holds."""
    return next(task for task in TASKS if f"What is {task['a']} + {task['b']}?" in context)


def tool_call(code: str) -> str:
    """A call of the `python` tool in the Qwen2.5 chat format."""
    return "<tool_call>\n" + json.dumps({"name": "python", "arguments": {"code": code}}) + "\n</tool_call>"


def first_then_answer(context: str, occurrence: int) -> tuple[int, str | None]:
    """The turn a context is at, and the code of that turn: the first prints which sample this is, the second answers
    (right for sample 0, wrong for the others), so each group has different rewards."""
    turn = context.count("<|im_start|>assistant") - 1
    if turn == 0:
        return turn, f"print('sample {occurrence}')"
    if turn == 1:
        task = question_in(context)
        return turn, f"final_answer(add({task['a']}, {task['b']}))" if "sample 0" in context else "final_answer(-1)"
    return turn, None


def tool_replies(context: str, occurrence: int) -> str:
    """Replies of a model acting with the `python` tool."""
    _, code = first_then_answer(context, occurrence)
    return "Done." if code is None else tool_call(code)


def text_replies(context: str, occurrence: int) -> str:
    """Replies of a model acting with fenced code blocks."""
    turn, code = first_then_answer(context, occurrence)
    return "Done." if code is None else f"Step {turn}.\n```python\n{code}\n```"
