import importlib
import re
import subprocess
import sys

import pytest

INTEGRATIONS = {
    "codeact_envs.trl": ("trl", "codeact-envs[trl]"),
    "codeact_envs.torchrl": ("torchrl", "codeact-envs[torchrl]"),
}


def test_importing_the_library_imports_no_trainer():
    check = "import sys, codeact_envs; print(sorted(m for m in ('trl', 'torchrl', 'tensordict') if m in sys.modules))"
    done = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True, check=True, timeout=120)
    assert done.stdout.strip() == "[]"


@pytest.mark.parametrize("module", INTEGRATIONS)
def test_an_integration_without_its_extra_names_the_install_line(module, monkeypatch):
    trainer, extra = INTEGRATIONS[module]
    monkeypatch.setitem(sys.modules, trainer, None)
    monkeypatch.delitem(sys.modules, module, raising=False)
    with pytest.raises(ImportError, match=re.escape(f"pip install '{extra}'")):
        importlib.import_module(module)
