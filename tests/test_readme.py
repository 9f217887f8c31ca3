import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def _code_blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", README, flags=re.DOTALL)


def test_readme_has_exactly_two_setup_commands():
    assert len(_code_blocks("bash")) == 2


def test_ci_runs_the_readme_test_command_in_a_fresh_venv():
    test_command = _code_blocks("bash")[1].strip()
    install_and_test = test_command.split("&& ", 2)[2]
    ci = (ROOT / ".ci" / "run").read_text()
    assert install_and_test in ci
    assert "python3 -m venv" in ci


def _fixtures_for(block: str) -> list[str]:
    """The test Hub for examples that publish, a loopback Ray for examples that scale out."""
    needs = {"push_to_hub": "hub", 'backend="ray"': "local_ray"}
    return [fixture for text, fixture in needs.items() if text in block]


@pytest.mark.parametrize("block", _code_blocks("python"), ids=lambda block: block.splitlines()[0])
def test_readme_python_examples_run(block, monkeypatch, request):
    for fixture in _fixtures_for(block):
        request.getfixturevalue(fixture)
    monkeypatch.chdir(ROOT)
    exec(compile(block, "README.md", "exec"), {"__name__": "readme"})
