import json
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import datasets
import huggingface_hub
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


def _humaneval_whose_service_is_down(folder: Path) -> Path:
    """A HumanEval whose oracle calls a tool that fails on the env's side (an `InfrastructureError`)."""
    folder = _humaneval_copy_with(folder, "env.py", "'\\nfinal_answer(\"done\")\\n'", "'\\nservice()\\n'")
    path = folder / "env.py"
    source = path.read_text().replace("import CodeActEnv", "import CodeActEnv, InfrastructureError, tool")
    path.write_text(source + SERVICE_TOOL)
    return folder


SERVICE_TOOL = """
    @tool
    def service(self) -> None:
        \"\"\"A service the env depends on; it is down.\"\"\"
        raise InfrastructureError("the grading service is down")
"""


def test_run_counts_infrastructure_failures_apart_from_the_mean_reward(tmp_path, capsys):
    folder = _humaneval_whose_service_is_down(tmp_path / "down")
    assert main(["run", str(folder), "--policy", "oracle", "--trust-remote-code", "--limit", "2"]) == 0
    out = capsys.readouterr().out
    assert "episodes        2" in out
    assert "infra failures  2 (not counted in the mean reward and pass rate; first: InfrastructureError: the" in out


def test_run_saves_json_lines(tmp_path, capsys):
    output = tmp_path / "trajectories.jsonl"
    arguments = ["run", HUMANEVAL, "--policy", "oracle", "--trust-remote-code", "--limit", "2", "--output"]
    assert main([*arguments, str(output)]) == 0
    rows = [json.loads(line) for line in output.read_text().splitlines()]
    assert [row["reward"] for row in rows] == [1.0, 1.0]


def test_run_saves_nothing_without_output(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["run", HUMANEVAL, "--policy", "oracle", "--trust-remote-code", "--limit", "1"]) == 0
    assert "saved" not in capsys.readouterr().out
    assert list(tmp_path.iterdir()) == []


def test_run_help_says_what_is_saved_and_where():
    result = subprocess.run(
        [sys.executable, "-m", "codeact_envs._cli", "run", "--help"], capture_output=True, text=True
    )
    text = " ".join(result.stdout.split())
    assert "Trajectories are saved only with --output: to a .parquet or .jsonl file, or to a folder" in text


def test_run_saves_a_datasets_folder(tmp_path, capsys):
    output = tmp_path / "trajectories"
    assert (
        main(["run", HUMANEVAL, "--policy", "oracle", "--trust-remote-code", "--limit", "2", "--output", str(output)])
        == 0
    )
    assert datasets.load_from_disk(str(output)).num_rows == 2


def test_run_shows_a_progress_bar_with_the_number_of_episodes(capsys):
    main(["run", HUMANEVAL, "--policy", "oracle", "--trust-remote-code", "--limit", "3", "--group-size", "2"])
    err = capsys.readouterr().err
    assert "mean_reward=1.000" in err
    assert "6/6" in err


def test_no_progress_silences_every_bar_also_those_of_datasets(tmp_path, capsys):
    folder = tmp_path / "fresh"
    shutil.copytree(HUMANEVAL, folder)
    arguments = ["run", str(folder), "--policy", "oracle", "--trust-remote-code", "--limit", "2"]
    assert main([*arguments, "--no-progress", "--output", str(tmp_path / "out")]) == 0
    assert capsys.readouterr().err == ""
    assert not datasets.are_progress_bars_disabled()


def test_group_size_runs_each_task_several_times(capsys):
    main(["run", HUMANEVAL, "--policy", "oracle", "--trust-remote-code", "--limit", "2", "--group-size", "3"])
    assert "episodes     6" in capsys.readouterr().out


def _one_error_line(arguments: list[str], capsys) -> str:
    """Run the command, expect exit status 2 and exactly one line on stderr; return it without `error: `."""
    status = main(arguments)
    err = capsys.readouterr().err
    assert status == 2
    assert err.startswith("error: ")
    assert err.count("\n") == 1, err
    return err.removeprefix("error: ").rstrip("\n")


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (
            ["run", HUMANEVAL, "--policy", "oracle"],
            f"{HUMANEVAL!r} runs its Python code (env.py) on this machine; if you trust it, pass --trust-remote-code",
        ),
        (
            ["check", HUMANEVAL],
            f"{HUMANEVAL!r} runs its Python code (env.py) on this machine; if you trust it, pass --trust-remote-code",
        ),
        (
            ["run", "./no/such/env", "--policy", "oracle", "--trust-remote-code"],
            "no env folder at './no/such/env'; it is a path, and no folder is there",
        ),
        (
            ["run", "a/b/c", "--policy", "oracle", "--trust-remote-code"],
            "no env folder at 'a/b/c'; nor is it a Hub repo id ('org/name': letters, digits, '-', '_', '.'; at most "
            "one '/')",
        ),
        (
            ["run", f"{HUMANEVAL}/environment.yaml", "--policy", "oracle", "--trust-remote-code"],
            f"'{HUMANEVAL}/environment.yaml' is a file, not an env folder: pass the folder that holds it, "
            f"{HUMANEVAL!r}",
        ),
        (["run", HUMANEVAL, "--trust-remote-code"], "pass exactly one of --policy oracle or --model MODEL_ID"),
        (
            ["run", HUMANEVAL, "--trust-remote-code", "--split", "tset", "--policy", "oracle"],
            "humaneval has no split 'tset' (did you mean 'test'?); its splits: test",
        ),
        (
            ["run", HUMANEVAL, "--trust-remote-code", "--model", "m", "--model-class", "OpenAIServerModle"],
            "--model-class 'OpenAIServerModle' is not a smolagents model class (did you mean 'OpenAIServerModel'?)",
        ),
        (
            ["run", HUMANEVAL, "--trust-remote-code", "--model", "m", "--model-kwarg", "oops"],
            "--model-kwarg expects KEY=VALUE, got 'oops'",
        ),
        (
            ["run", HUMANEVAL, "--policy", "oracle", "--limit", "0"],
            "codeact-envs run: argument --limit: must be at least 1, got 0 (see codeact-envs run --help)",
        ),
        (
            ["run", HUMANEVAL, "--policy", "oracle", "--output", "out.json"],
            "codeact-envs run: argument --output: cannot write '.json' files; use .parquet (a Parquet file), .jsonl "
            "(a JSON Lines file), no extension (a datasets folder) (see codeact-envs run --help)",
        ),
        (["fly"], "codeact-envs: argument COMMAND: invalid choice: 'fly' (choose from"),
    ],
    ids=[
        "run without trust",
        "check without trust",
        "missing folder",
        "neither folder nor repo id",
        "the manifest instead of its folder",
        "no policy",
        "unknown split",
        "unknown model class",
        "bad model kwarg",
        "limit 0",
        "unwritable output format",
        "unknown command",
    ],
)
def test_a_mistake_ends_in_one_line_and_exit_status_2(arguments, message, capsys):
    assert message in _one_error_line(arguments, capsys)


def test_push_without_trust_names_the_command_line_flag(hub, capsys):
    assert _one_error_line(["push", HUMANEVAL, "cli-org/untrusted"], capsys) == (
        f"{HUMANEVAL!r} runs its Python code (env.py) on this machine; if you trust it, pass --trust-remote-code"
    )


def test_a_name_that_is_neither_a_folder_nor_a_repo_on_the_hub_says_both(hub, capsys, monkeypatch):
    monkeypatch.chdir(ROOT)
    assert _one_error_line(["run", "envs/nonexistent", "--policy", "oracle", "--trust-remote-code"], capsys) == (
        "'envs/nonexistent' is neither an env folder here (env folders in 'envs': envs/battleship, envs/humaneval, "
        f"envs/toolchain) nor a dataset repo on the Hub at {hub.url}; check the path or the repo id (pass token= "
        "if the repo is private)"
    )


def test_a_misspelled_env_folder_is_suggested(hub, capsys, monkeypatch):
    monkeypatch.chdir(ROOT)
    message = _one_error_line(["check", "envs/humaneva", "--trust-remote-code"], capsys)
    assert message.startswith("'envs/humaneva' is neither an env folder here (did you mean 'envs/humaneval'?) nor")


def test_a_repo_the_hub_cannot_be_reached_for_says_so(capsys, monkeypatch):
    monkeypatch.setattr(huggingface_hub.constants, "ENDPOINT", _closed_port_url())
    message = _one_error_line(["run", "cli-org/somewhere", "--policy", "oracle", "--trust-remote-code"], capsys)
    assert message.startswith(
        f"'cli-org/somewhere' is not a folder here, and could not reach the Hub at {huggingface_hub.constants.ENDPOINT}"
    )


def test_list_without_a_reachable_hub_is_one_line(capsys, monkeypatch):
    endpoint = _closed_port_url()
    monkeypatch.setattr(huggingface_hub.constants, "ENDPOINT", endpoint)
    message = _one_error_line(["list"], capsys)
    assert message.startswith(f"could not reach the Hub at {endpoint} (ConnectError: ")
    assert message.endswith(") to list envs; check the network and HF_ENDPOINT")


def test_push_without_a_reachable_hub_is_one_line(capsys, monkeypatch):
    endpoint = _closed_port_url()
    monkeypatch.setattr(huggingface_hub.constants, "ENDPOINT", endpoint)
    message = _one_error_line(["push", HUMANEVAL, "cli-org/offline", "--trust-remote-code"], capsys)
    assert message.startswith(f"could not reach the Hub at {endpoint} (ConnectError: ")
    assert message.endswith(") to push to 'cli-org/offline'; check the network and HF_ENDPOINT")


def test_a_kwargs_typo_is_one_line_from_run_check_and_push(tmp_path, hub, capsys):
    folder = _humaneval_copy_with(tmp_path / "typo", "environment.yaml", "max_steps", "max_step")
    expected = (
        f"{folder / 'environment.yaml'}: environments[id='humaneval'].frameworks.codeact_envs.kwargs.max_step: "
        "HumanEvalEnv takes no argument 'max_step' (did you mean 'max_steps'?); it takes max_steps, timeout_s, "
        "memory_mb, max_output_chars, isolation, render_mode"
    )
    for arguments in (["run", str(folder), "--policy", "oracle"], ["check", str(folder)], ["push", str(folder), "o/x"]):
        assert _one_error_line([*arguments, "--trust-remote-code"], capsys) == expected


def _without_the_test_column(tmp_path: Path) -> Path:
    """A copy of envs/humaneval whose task rows lack the `test` column that UnitTests reads, already in the
    `datasets` cache (so that commands print no progress bar of the first load)."""
    folder = tmp_path / "no-tests"
    shutil.copytree(HUMANEVAL, folder)
    data = folder / "data" / "test-00000-of-00001.parquet"
    datasets.Dataset.from_parquet(str(data)).remove_columns("test").to_parquet(str(data))
    datasets.load_dataset(str(folder), split="test")
    return folder


def test_run_refuses_task_rows_without_a_column_the_transforms_read(tmp_path, capsys):
    folder = _without_the_test_column(tmp_path)
    capsys.readouterr()
    message = _one_error_line(["run", str(folder), "--policy", "oracle", "--trust-remote-code"], capsys)
    assert message == (
        f"{folder}: the task rows of split 'test' have no column 'test', which UnitTests(test_column='test', "
        "entry_point_column='entry_point', setup_column='prompt', timeout_s=10.0) needs (their columns: task_id, "
        "prompt, canonical_solution, entry_point); add it to the task files, or give the transform another column in "
        "environment.yaml"
    )


def test_check_reports_task_rows_without_a_column_the_transforms_read(tmp_path, capsys):
    folder = _without_the_test_column(tmp_path)
    assert main(["check", str(folder), "--trust-remote-code"]) == 1
    out = capsys.readouterr().out
    assert f"problem       {folder}: the task rows of split 'test' have no column 'test', which UnitTests(" in out
    assert "Traceback" not in out


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
        tmp_path / "broken", "environment.yaml", "- UnitTests: {setup_column: prompt}", "- StepPenalty: {penalty: -1.0}"
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
    assert main(["push", HUMANEVAL, "cli-org/humaneval", "--trust-remote-code"]) == 0
    assert "pushed" in capsys.readouterr().out
    arguments = ["run", "cli-org/humaneval", "--policy", "oracle", "--trust-remote-code", "--limit", "2"]
    assert main([*arguments, "--no-progress"]) == 0
    captured = capsys.readouterr()
    assert "mean reward  1.000" in captured.out
    assert captured.err == ""
    assert main(["list"]) == 0
    assert "cli-org/humaneval" in capsys.readouterr().out


def test_loading_an_unknown_repo_is_a_user_error(hub, capsys):
    message = _one_error_line(["run", "cli-org/nothing-here", "--policy", "oracle", "--trust-remote-code"], capsys)
    assert message == (
        f"'cli-org/nothing-here' is neither an env folder here nor a dataset repo on the Hub at {hub.url}; check the "
        "path or the repo id (pass token= if the repo is private)"
    )


def _closed_port_url() -> str:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{probe.getsockname()[1]}"


def test_the_oracle_policy_needs_an_env_with_an_oracle(tmp_path, capsys):
    folder = _humaneval_copy_with(tmp_path / "no-oracle", "env.py", "def oracle(", "def solution(")
    arguments = ["run", str(folder), "--policy", "oracle", "--trust-remote-code", "--no-progress"]
    message = _one_error_line(arguments, capsys)
    assert message == "HumanEvalEnv defines no oracle(task), so --policy oracle cannot play it; pass --model"


def test_push_without_trust_is_refused_before_reaching_the_hub(capsys, monkeypatch):
    monkeypatch.setattr(huggingface_hub.constants, "ENDPOINT", _closed_port_url())
    assert _one_error_line(["push", HUMANEVAL, "cli-org/untrusted"], capsys) == (
        f"{HUMANEVAL!r} runs its Python code (env.py) on this machine; if you trust it, pass --trust-remote-code"
    )
