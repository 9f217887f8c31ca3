import shutil
import subprocess
import sys
from pathlib import Path

import datasets
import pytest

from codeact_envs import check
from codeact_envs._cli import main

ROOT = Path(__file__).resolve().parents[1]
HUMANEVAL = str(ROOT / "envs" / "humaneval")


def test_run_with_the_oracle_prints_a_summary_and_saves_parquet(tmp_path, capsys):
    output = tmp_path / "trajectories.parquet"
    status = main(
        ["run", HUMANEVAL, "--policy", "oracle", "--trust-remote-code", "--limit", "6", "--output", str(output)]
    )
    out = capsys.readouterr().out
    assert status == 0
    assert "episodes     6" in out
    assert "mean reward  1.000" in out
    assert "pass rate    100.0%" in out
    rows = datasets.Dataset.from_parquet(str(output))
    assert rows.num_rows == 6
    assert rows[0]["split"] == "test"


def test_run_saves_a_datasets_folder(tmp_path, capsys):
    output = tmp_path / "trajectories"
    assert (
        main(["run", HUMANEVAL, "--policy", "oracle", "--trust-remote-code", "--limit", "2", "--output", str(output)])
        == 0
    )
    assert datasets.load_from_disk(str(output)).num_rows == 2


def test_run_shows_a_progress_bar(capsys):
    main(["run", HUMANEVAL, "--policy", "oracle", "--trust-remote-code", "--limit", "3"])
    assert "mean_reward=1.000" in capsys.readouterr().err


def test_group_size_runs_each_task_several_times(capsys):
    main(["run", HUMANEVAL, "--policy", "oracle", "--trust-remote-code", "--limit", "2", "--group-size", "3"])
    assert "episodes     6" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["run", HUMANEVAL, "--policy", "oracle"], "pass trust_remote_code=True"),
        (["run", "./no/such/env", "--policy", "oracle", "--trust-remote-code"], "no env folder at './no/such/env'"),
        (["run", HUMANEVAL, "--trust-remote-code"], "pass exactly one of --policy oracle or --model"),
        (["run", HUMANEVAL, "--trust-remote-code", "--split", "train", "--policy", "oracle"], "no split 'train'"),
        (["run", HUMANEVAL, "--trust-remote-code", "--model", "m", "--model-class", "Nope"], "not a smolagents model"),
        (["run", HUMANEVAL, "--trust-remote-code", "--model", "m", "--model-kwarg", "oops"], "expects KEY=VALUE"),
    ],
    ids=["no trust", "missing folder", "no policy", "unknown split", "unknown model class", "bad model kwarg"],
)
def test_user_mistakes_exit_2_with_one_line_and_no_traceback(arguments, message, capsys):
    assert main(arguments) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ")
    assert message in err
    assert "Traceback" not in err


def test_help_lists_the_commands_and_examples():
    result = subprocess.run([sys.executable, "-m", "codeact_envs._cli", "--help"], capture_output=True, text=True)
    for text in ["run", "check", "push", "list", "codeact-envs run envs/humaneval --policy oracle"]:
        assert text in result.stdout


def test_run_with_a_smolagents_model_class(tmp_path, capsys):
    pytest.importorskip("torch")
    from tiny_model import build_tiny_model

    model = build_tiny_model(tmp_path / "model")
    arguments = ["run", HUMANEVAL, "--trust-remote-code", "--limit", "1", "--model-class", "TransformersModel"]
    arguments += ["--model", str(model), "--model-kwarg", "device_map=cpu", "--model-kwarg", "max_new_tokens=8"]
    assert main(arguments) == 0
    assert "episodes     1" in capsys.readouterr().out


def test_check_passes_on_humaneval(capsys):
    assert main(["check", HUMANEVAL, "--trust-remote-code", "--max-tasks", "5"]) == 0
    out = capsys.readouterr().out
    assert "tasks tried   5" in out
    assert "result        ok" in out


def _humaneval_copy_with(folder: Path, file: str, old: str, new: str) -> Path:
    """A copy of envs/humaneval at `folder` where `old` is replaced by `new` in `file`."""
    shutil.copytree(HUMANEVAL, folder)
    path = folder / file
    path.write_text(path.read_text().replace(old, new))
    return folder


def _scoring_for_nothing(tmp_path: Path) -> Path:
    """A HumanEval whose reward pays every step, so doing nothing scores as well as the oracle."""
    return _humaneval_copy_with(
        tmp_path / "broken", "environment.yaml", "- UnitTests: {}", "- StepPenalty: {penalty: -1.0}"
    )


def test_check_finds_an_env_where_doing_nothing_scores(tmp_path):
    folder = _scoring_for_nothing(tmp_path)
    report = check(folder, trust_remote_code=True, max_tasks=3)
    assert not report.ok
    assert any("scores as well as the oracle" in problem for problem in report.problems)


def test_check_finds_an_oracle_that_misses(tmp_path):
    folder = _humaneval_copy_with(
        tmp_path / "wrong-oracle", "env.py", '+ task["canonical_solution"]', '+ "    return None\\n"'
    )
    report = check(folder, trust_remote_code=True, max_tasks=3)
    assert not report.ok


def test_check_command_exits_1_on_problems(tmp_path, capsys):
    folder = _scoring_for_nothing(tmp_path)
    assert main(["check", str(folder), "--trust-remote-code", "--max-tasks", "2"]) == 1
    assert "problem" in capsys.readouterr().out


@pytest.mark.parametrize("env", sorted(path.name for path in (ROOT / "envs").iterdir() if path.is_dir()))
def test_every_shipped_env_passes_check(env):
    report = check(ROOT / "envs" / env, trust_remote_code=True, max_tasks=None)
    assert report.problems == []
    assert report.tasks_tried > 0


def test_push_then_run_by_name_then_list(hub, capsys):
    assert main(["push", HUMANEVAL, "cli-org/humaneval"]) == 0
    assert "pushed" in capsys.readouterr().out
    arguments = ["run", "cli-org/humaneval", "--policy", "oracle", "--trust-remote-code", "--limit", "2"]
    assert main([*arguments, "--no-progress"]) == 0
    assert "mean reward  1.000" in capsys.readouterr().out
    assert main(["list"]) == 0
    assert "cli-org/humaneval" in capsys.readouterr().out


def test_loading_an_unknown_repo_is_a_user_error(hub, capsys):
    assert main(["run", "cli-org/nothing-here", "--policy", "oracle", "--trust-remote-code"]) == 2
    err = capsys.readouterr().err
    assert "no dataset repo 'cli-org/nothing-here'" in err
    assert "Traceback" not in err
