"""HumanEval as a CodeAct env: write the function, test it as you like, submit; the task's tests grade it."""

from typing import Any

from codeact_envs import CodeActEnv

INSTRUCTIONS = """\
Implement the Python function below so that it does what its docstring says.

```python
{prompt}
```

Define the complete function (imports, signature and body) in your code; you may run and test it as \
often as you like. Your solution is the code you ran since the interpreter last started. When the \
function is ready, call final_answer("done")."""


class HumanEvalEnv(CodeActEnv):
    """One HumanEval problem per episode; the task row carries the hidden tests and canonical solution."""

    def setup(self, task: dict[str, Any]) -> str:
        return INSTRUCTIONS.format(prompt=task["prompt"].strip("\n"))

    def oracle(self, task: dict[str, Any]) -> str:
        return task["prompt"] + task["canonical_solution"] + '\nfinal_answer("done")\n'
