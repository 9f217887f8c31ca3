import re
from pathlib import Path

import pytest

from codeact_envs import check, load_env, load_tasks
from codeact_envs._cli import main

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
HUB_MODEL = "Qwen/Qwen2.5-0.5B-Instruct"
EXAMPLE_ENV = "shop"
_EXAMPLE_FILE = re.compile(
    rf"^`{EXAMPLE_ENV}/(?P<path>[^`]+)`.*?\n\n```(?P<language>\w+)\n(?P<body>.*?)```", re.DOTALL | re.MULTILINE
)


def _code_blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", README, flags=re.DOTALL)


def _example_env_files() -> dict[str, tuple[str, str]]:
    """`path -> (language, text)` of each file of the README's example env, as the README shows it."""
    return {m["path"]: (m["language"], m["body"]) for m in _EXAMPLE_FILE.finditer(README)}


@pytest.fixture
def example_env(tmp_path, monkeypatch) -> Path:
    """The README's "Write your own env" folder, made from the README's own text, in the current folder.

    Files shown as text are written as shown; a file shown as the Python code that writes it is made by
    running that code.
    """
    monkeypatch.chdir(tmp_path)
    folder = tmp_path / EXAMPLE_ENV
    folder.mkdir()
    for path, (language, text) in _example_env_files().items():
        if Path(path).suffix in (".py", ".yaml", ".md"):
            (folder / path).write_text(text)
        else:
            assert language == "python"
            exec(compile(text, "README.md", "exec"), {"__name__": "readme"})
    return folder


def test_readme_has_exactly_two_setup_commands():
    assert len(_code_blocks("bash")) == 2


def test_ci_runs_the_readme_test_command_in_a_fresh_venv():
    test_command = _code_blocks("bash")[1].strip()
    install_and_test = test_command.split("&& ", 2)[2]
    ci = (ROOT / ".ci" / "run").read_text()
    assert install_and_test in ci
    assert "python3 -m venv" in ci


def test_the_readme_shows_every_file_of_its_example_env():
    assert sorted(_example_env_files()) == [
        "README.md",
        "data/test-00000-of-00001.parquet",
        "env.py",
        "environment.yaml",
    ]


def test_the_readme_example_env_passes_check(example_env):
    report = check(EXAMPLE_ENV, trust_remote_code=True)
    assert report.problems == []
    assert report.oracle_returns == [1.0, 1.0]


def test_the_readme_example_env_passes_the_check_command(example_env, capsys):
    assert main(["check", EXAMPLE_ENV, "--trust-remote-code"]) == 0
    assert "result        ok" in capsys.readouterr().out


def test_the_readme_example_env_pushes_and_loads_by_name(example_env, hub, capsys):
    assert main(["push", EXAMPLE_ENV, "readme-org/shop", "--trust-remote-code"]) == 0
    with load_env("readme-org/shop", trust_remote_code=True) as env:
        task = next(iter(load_tasks(env, split="test", streaming=True)))
        env.reset(options={"task": task})
        assert env.step(env.oracle(task))[1] == 1.0


def _fixtures_for(block: str) -> list[str]:
    """The test Hub for examples that publish, a loopback Ray for examples that scale out, the example env folder
    for examples that use it, the tiny model in place of the Hub model the README names."""
    needs = {
        "push_to_hub": "hub",
        'backend="ray"': "local_ray",
        f'"{EXAMPLE_ENV}': "example_env",
        HUB_MODEL: "tiny_tool_model",
    }
    return [fixture for text, fixture in needs.items() if text in block]


@pytest.mark.parametrize("block", _code_blocks("python"), ids=lambda block: block.splitlines()[0])
def test_readme_python_examples_run(block, monkeypatch, request):
    monkeypatch.chdir(ROOT)
    for fixture in _fixtures_for(block):
        value = request.getfixturevalue(fixture)
        if fixture == "tiny_tool_model":
            block = block.replace(HUB_MODEL, str(value))
    exec(compile(block, "README.md", "exec"), {"__name__": "readme"})
