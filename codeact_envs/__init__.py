"""codeact_envs: Gymnasium envs whose actions are Python code, run in a sandboxed persistent interpreter."""

from ._env import CodeActEnv, tool
from ._errors import ManifestError, SandboxError
from ._loading import load_env, load_tasks
from ._manifest import Manifest
from ._sandbox import ExecutionResult
from ._spaces import UnicodeText
from ._transforms import Compose, ErrorPenalty, ExactMatch, Step, StepPenalty, Transform, UnitTests

__version__ = "0.1.0"

__all__ = [
    "CodeActEnv",
    "Compose",
    "ErrorPenalty",
    "ExactMatch",
    "ExecutionResult",
    "Manifest",
    "ManifestError",
    "SandboxError",
    "Step",
    "StepPenalty",
    "Transform",
    "UnicodeText",
    "UnitTests",
    "load_env",
    "load_tasks",
    "tool",
]
