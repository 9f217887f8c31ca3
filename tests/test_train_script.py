import importlib.util
from pathlib import Path

import pytest

pytest.importorskip("trl")

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "train_grpo.py"


def _script():
    spec = importlib.util.spec_from_file_location("train_grpo", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("actions", ["tool", "text"])
def test_the_training_script_runs_on_a_shipped_env_and_prints_the_reward_of_each_step(
    actions, tiny_tool_model, tmp_path, capsys
):
    argv = [
        *(
            "--model",
            str(tiny_tool_model),
            "--env",
            str(ROOT / "envs" / "humaneval"),
            "--steps",
            "2",
            "--trust-remote-code",
        ),
        *("--actions", actions, "--num-tasks", "2", "--num-generations", "2", "--tasks-per-step", "1"),
        *("--max-completion-length", "24", "--max-turns", "2", "--output-dir", str(tmp_path)),
    ]
    steps = _script().main(argv)
    printed = [line for line in capsys.readouterr().out.splitlines() if line.startswith("step ")]
    assert len(steps) == len(printed) == 2
    assert printed[0].startswith("step 1: reward ")
    assert "UnitTests" in printed[0]
