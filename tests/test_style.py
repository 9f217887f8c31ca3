import io
import tokenize
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CHECKED_FOLDERS = ("codeact_envs", "envs", "scripts", "tests")


def _python_files() -> list[Path]:
    return sorted(path for folder in CHECKED_FOLDERS for path in (ROOT / folder).rglob("*.py"))


def _comments(source: str) -> list[tuple[int, str]]:
    """Comment tokens of `source`, except a shebang on the first line."""
    tokens = tokenize.generate_tokens(io.StringIO(source).readline)
    return [
        (token.start[0], token.string)
        for token in tokens
        if token.type == tokenize.COMMENT and not (token.start[0] == 1 and token.string.startswith("#!"))
    ]


@pytest.mark.parametrize("path", _python_files(), ids=lambda path: str(path.relative_to(ROOT)))
def test_no_comments_in_code(path):
    assert _comments(path.read_text()) == []


def test_the_comment_check_sees_comments():
    assert _comments("#!/usr/bin/env python\nx = 1  # why\n") == [(2, "# why")]
