class SandboxError(RuntimeError):
    """The sandbox could not be started or stopped as asked; the message names the fix."""


class ManifestError(ValueError):
    """An `environment.yaml` is invalid; the message names the file, each key, its value and the fix."""
