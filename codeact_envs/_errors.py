class InfrastructureError(RuntimeError):
    """A failure that is not the agent's: the sandbox, a host tool or the env itself broke.

    `env.reset` and `env.step` raise it (or a subclass) only for such failures, never because of what the
    agent's code did. An env's tool or hook raises it to say "this step failed on my side": the episode then
    counts as an infrastructure failure, which a trainer leaves out of its rewards instead of learning 0.
    """


class SandboxError(InfrastructureError):
    """The sandbox could not be started or stopped as asked; the message names the fix."""


class ManifestError(ValueError):
    """An `environment.yaml` is invalid; the message names the file, each key, its value and the fix."""
