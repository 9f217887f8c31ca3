from collections.abc import Iterator
from typing import Any

import pytest

from codeact_envs import CodeActEnv, tool


class CalculatorEnv(CodeActEnv):
    """A small env with a tool and a secret kept on the host."""

    def setup(self, task: dict[str, Any]) -> str:
        self.secret = task.get("secret", "")
        self.calls = 0
        return "Add numbers with add(a, b), then call final_answer."

    @tool
    def add(self, a: int, b: int) -> int:
        """Add two integers and return the sum."""
        self.calls += 1
        return a + b

    @tool
    def divide(self, a: float, b: float) -> float:
        """Divide a by b."""
        return a / b


@pytest.fixture
def make_env() -> Iterator:
    """Build `CalculatorEnv`s that are closed after the test."""
    envs = []

    def make(**kwargs: Any) -> CalculatorEnv:
        env = CalculatorEnv(**kwargs)
        envs.append(env)
        return env

    yield make
    for env in envs:
        env.close()


@pytest.fixture
def env(make_env) -> CalculatorEnv:
    """A reset `CalculatorEnv` with a one-second timeout."""
    env = make_env(timeout_s=1.0, max_steps=50)
    env.reset(seed=0, options={"task": {"secret": "hunter2-do-not-leak"}})
    return env


def run(env: CodeActEnv, code: str) -> str:
    """Step `env` with `code` and return the observation."""
    observation, *_ = env.step(code)
    return observation
