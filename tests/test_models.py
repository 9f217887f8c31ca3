import os
import socket
import subprocess
import sys
import time
import urllib.request

import pytest
from test_collector import TASKS, make_numbers_env

from codeact_envs import Collector, ModelPolicy

pytest.importorskip("torch")
pytest.importorskip("transformers")

SERVER_START_TIMEOUT_S = 60.0


def _collect_with(policy, **kwargs):
    with Collector(make_numbers_env, policy, TASKS[:2], num_envs=2, **kwargs) as collector:
        return [t for batch in collector for t in batch]


def _assert_well_formed(trajectories):
    assert len(trajectories) == 2
    for trajectory in trajectories:
        assert trajectory.terminated or trajectory.truncated
        roles = [m["role"] for m in trajectory.messages]
        assert roles[:2] == ["system", "user"]
        assert roles[2:] == ["assistant", "user"] * len(trajectory.actions)
        assert all(isinstance(m["content"], str) for m in trajectory.messages)
        assert len(trajectory.observations) == len(trajectory.rewards) == len(trajectory.actions)


def test_model_policy_drives_a_tiny_transformers_model(tiny_model):
    from smolagents import TransformersModel

    model = TransformersModel(model_id=str(tiny_model), device_map="cpu", max_new_tokens=16)
    _assert_well_formed(_collect_with(ModelPolicy(model)))


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _wait_until_healthy(url: str, process: subprocess.Popen) -> None:
    deadline = time.monotonic() + SERVER_START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"transformers serve exited: {process.stdout.read().decode(errors='replace')[-2000:]}")
        try:
            with urllib.request.urlopen(url, timeout=1):
                return
        except OSError:
            time.sleep(0.2)
    raise TimeoutError(f"transformers serve did not answer at {url} within {SERVER_START_TIMEOUT_S} s")


@pytest.fixture(scope="module")
def openai_server(tiny_model):
    port = _free_port()
    serve = [sys.executable, "-m", "transformers.cli.transformers", "serve"]
    command = [*serve, str(tiny_model), "--host", "127.0.0.1", "--port", str(port), "--device", "cpu"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        _wait_until_healthy(f"http://127.0.0.1:{port}/health", process)
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_model_policy_drives_an_openai_compatible_server(tiny_model, openai_server):
    from smolagents import OpenAIServerModel

    model = OpenAIServerModel(model_id=str(tiny_model), api_base=openai_server, api_key="x", max_tokens=16)
    _assert_well_formed(_collect_with(ModelPolicy(model)))
