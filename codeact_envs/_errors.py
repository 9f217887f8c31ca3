class SandboxError(RuntimeError):
    """The sandbox could not be started or stopped as asked; the message names the fix."""
