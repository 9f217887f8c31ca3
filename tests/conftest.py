from collections.abc import Iterator
from pathlib import Path
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


def descendants(marker: str = "") -> set:
    """The processes this test process started, directly or not (sandboxes included), whose command line
    mentions `marker`: a test only ever looks at processes it started (the machine is shared)."""
    import psutil

    found = set()
    for process in psutil.Process().children(recursive=True):
        try:
            if marker in " ".join(process.cmdline()):
                found.add(process)
        except psutil.Error:
            continue
    return found


def still_running(processes: set, timeout_s: float = 10.0) -> set:
    """Those of `processes` still running once they all ended or `timeout_s` passed (a reused PID does not count)."""
    import psutil

    _, alive = psutil.wait_procs(list(processes), timeout=timeout_s)
    return set(alive)


def play(env: CodeActEnv, task: dict, *actions: str, seed: int = 0) -> tuple[float, list[str], dict]:
    """Total reward, observations and last info of an episode that plays `actions` until it ends."""
    env.reset(seed=seed, options={"task": task})
    total, observations = 0.0, []
    for action in actions:
        observation, reward, terminated, truncated, info = env.step(action)
        total += reward
        observations.append(observation)
        if terminated or truncated:
            return total, observations, info
    raise AssertionError("the episode did not end")


_HUB_SETTINGS_THAT_WOULD_WIN = (
    "HF_TOKEN",
    "HF_TOKEN_PATH",
    "HF_HUB_CACHE",
    "HUGGINGFACE_HUB_CACHE",
    "HF_ASSETS_CACHE",
    "HF_DATASETS_CACHE",
    "HF_MODULES_CACHE",
    "HF_XET_CACHE",
    "HF_HUB_OFFLINE",
    "HF_DATASETS_OFFLINE",
    "TRANSFORMERS_OFFLINE",
    "HUGGINGFACE_CO_STAGING",
)
_TEST_HUB = pytest.StashKey()


def pytest_configure(config):
    """Bind a test Hub on 127.0.0.1 and point `huggingface_hub` and `datasets` at it, with a throwaway HF_HOME.

    Both libraries read these variables when first imported. This runs in the pytest process before any test
    module is imported, and makes a library that `import codeact_envs` already imported read them again (its
    constants module only). Processes that merely import this file (Ray workers) inherit the variables.
    """
    import importlib
    import os
    import sys
    import tempfile
    from pathlib import Path

    from hub_server import HubServer

    server = HubServer(Path(tempfile.mkdtemp(prefix="hub-test-home-")) / "storage")
    for name in _HUB_SETTINGS_THAT_WOULD_WIN:
        os.environ.pop(name, None)
    os.environ.update(
        HF_ENDPOINT=server.url,
        HF_HOME=str(server.storage.parent / "hf-home"),
        HF_HUB_DISABLE_TELEMETRY="1",
        HF_HUB_DISABLE_XET="1",
    )
    for constants in ("huggingface_hub.constants", "datasets.config"):
        if constants in sys.modules:
            importlib.reload(sys.modules[constants])
    config.stash[_TEST_HUB] = server


def pytest_unconfigure(config):
    """Stop the test Hub and delete its storage and the HF_HOME of the session."""
    import shutil

    server = config.stash.get(_TEST_HUB, None)
    if server is not None:
        server.stop()
        shutil.rmtree(server.storage.parent, ignore_errors=True)


@pytest.fixture(scope="session")
def hub(pytestconfig):
    """The test Hub, serving on 127.0.0.1; `huggingface_hub` and `datasets` send every request to it."""
    import datasets
    import huggingface_hub

    server = pytestconfig.stash[_TEST_HUB]
    endpoints = {"huggingface_hub": huggingface_hub.constants.ENDPOINT, "datasets": datasets.config.HF_ENDPOINT}
    stale = {name: url for name, url in endpoints.items() if url != server.url}
    if stale:
        pytest.fail(f"expected every Hub client to use the test Hub {server.url}, got {stale}")
    server.start()
    return server


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    """The folder of a tiny random chat model (tests/tiny_model.py), built once per session."""
    pytest.importorskip("transformers")
    from tiny_model import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny-model"))


@pytest.fixture(scope="session")
def tiny_tool_model(tiny_model, tmp_path_factory) -> Path:
    """The tiny model with the Qwen2.5 chat template that TRL ships, which TRL can parse tool calls in."""
    import shutil

    from transformers import AutoTokenizer

    folder = tmp_path_factory.mktemp("tiny-tool-model")
    shutil.copytree(tiny_model, folder, dirs_exist_ok=True)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    tokenizer.chat_template = pytest.importorskip("trl.chat_template_utils").qwen2_5_chat_template
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def local_ray():
    """One local Ray for the whole session, bound to 127.0.0.1; its workers can import the test modules."""
    ray = pytest.importorskip("ray")
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        _node_ip_address="127.0.0.1",
        object_store_memory=80 * 1024**2,
        log_to_driver=False,
        runtime_env={"env_vars": {"PYTHONPATH": str(Path(__file__).parent)}},
    )
    yield ray
    ray.shutdown()
