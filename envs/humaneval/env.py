"""HumanEval as a CodeAct env: write the function, test it as you like, submit; the task's tests grade it."""

from functools import cache
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from codeact_envs import CodeActEnv

TASKS = Path(__file__).parent / "data" / "test-00000-of-00001.parquet"

INSTRUCTIONS = """\
Implement the Python function below so that it does what its docstring says.

```python
{prompt}
```

Define the complete function (imports, signature and body) in your code; you may run and test it as \
often as you like. Your solution is the code you ran since the interpreter last started. When the \
function is ready, call final_answer("done")."""


@cache
def first_task() -> dict[str, Any]:
    """The first HumanEval problem, used when `reset` is called without a task."""
    return pq.read_table(TASKS).slice(0, 1).to_pylist()[0]


class HumanEvalEnv(CodeActEnv):
    """One HumanEval problem per episode; the task row carries the hidden tests and canonical solution."""

    def setup(self, task: dict[str, Any]) -> str:
        if not task:
            self.task = task = first_task()
        return INSTRUCTIONS.format(prompt=task["prompt"].strip("\n"))

    def oracle(self, task: dict[str, Any]) -> str:
        return task["prompt"] + task["canonical_solution"] + '\nfinal_answer("done")\n'
