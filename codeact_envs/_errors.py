"""The library's errors (each also a built-in exception) and the one "did you mean" helper."""

import difflib
from collections.abc import Iterable


class InfrastructureError(RuntimeError):
    """A failure that is not the agent's: the sandbox, a host tool or the env itself broke.

    `env.reset` and `env.step` raise it (or a subclass) only for such failures, never because of what the
    agent's code did. An env's tool or hook raises it to say "this step failed on my side": the episode then
    counts as an infrastructure failure, which a trainer leaves out of its rewards instead of learning 0.
    """


class SandboxError(InfrastructureError):
    """The sandbox could not be started or stopped as asked; the message names the fix."""


class ManifestError(ValueError):
    """An env's metadata is invalid: its `environment.yaml`, or the YAML front matter of its dataset card.

    The message names the file, each key, its value and the fix.
    """


class UntrustedCodeError(ValueError):
    """An env's Python code would run on this machine and the caller did not say it trusts it.

    Attributes:
        risk: What would run, e.g. "'org/name' runs its Python code (env.py) on this machine".
    """

    def __init__(self, risk: str):
        self.risk = risk
        super().__init__(f"{risk}; if you trust it, pass trust_remote_code=True")


def did_you_mean(name: object, choices: Iterable[object]) -> str:
    """` (did you mean 'x'?)` for the choice closest to `name`, or "" when none is close."""
    by_text = {str(choice): choice for choice in choices}
    close = difflib.get_close_matches(str(name), list(by_text), n=1)
    return f" (did you mean {by_text[close[0]]!r}?)" if close else ""


def short_repr(value: object, limit: int = 200) -> str:
    """`repr(value)` cut to `limit` characters: an error message quotes a value, never a whole document."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"
