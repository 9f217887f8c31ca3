import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "codeact_envs"
HEAVY = ("smolagents", "datasets", "huggingface_hub", "torch", "transformers", "ray", "trl", "torchrl", "tqdm")


def _heavy_modules_after(code: str) -> list[str]:
    """The heavy libraries that a fresh interpreter has imported after running `code`."""
    probe = f"{code}\nimport sys\nprint(sorted(m for m in {HEAVY!r} if m in sys.modules))"
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    return ast.literal_eval(result.stdout.strip().splitlines()[-1])


def test_importing_the_package_imports_no_heavy_library():
    assert _heavy_modules_after("import codeact_envs") == []


@pytest.mark.parametrize("arguments", [["--help"], ["run", "--help"], ["check", "--help"], ["push", "--help"]])
def test_command_line_help_imports_no_heavy_library(arguments):
    code = f"from codeact_envs._cli import main\ntry:\n    main({arguments!r})\nexcept SystemExit:\n    pass"
    assert _heavy_modules_after(code) == []


def _imported_modules(name: str) -> set[str]:
    """The package modules that `codeact_envs/<name>.py` imports, at any depth of its code."""
    tree = ast.parse((PACKAGE / f"{name}.py").read_text())
    return {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.level == 1}


def test_loading_never_imports_the_hub_module():
    assert "_hub" not in _imported_modules("_loading")
    assert "_check" not in _imported_modules("_loading")


def test_did_you_mean_is_written_once():
    users = sorted(path.name for path in PACKAGE.rglob("*.py") if "get_close_matches" in path.read_text())
    assert users == ["_errors.py"]
