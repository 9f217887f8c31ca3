"""codeact_envs: Gymnasium envs whose actions are Python code, run in a sandboxed persistent interpreter."""

from ._check import CheckReport, check
from ._collector import Collector
from ._env import CodeActEnv, tool
from ._errors import InfrastructureError, ManifestError, SandboxError, UntrustedCodeError
from ._hub import EnvInfo, list_envs, push_to_hub
from ._loading import load_env, load_tasks
from ._manifest import Manifest
from ._origin import EnvOrigin
from ._policies import ModelPolicy, OraclePolicy, TransformersPolicy
from ._prompt import Chat, Turn
from ._rollout import Trajectory
from ._sandbox import ExecutionResult
from ._spaces import UnicodeText
from ._transforms import Compose, ErrorPenalty, ExactMatch, Step, StepPenalty, Transform, UnitTests
from ._version import __version__ as __version__

__all__ = [
    "Chat",
    "CheckReport",
    "CodeActEnv",
    "Collector",
    "Compose",
    "EnvInfo",
    "EnvOrigin",
    "ErrorPenalty",
    "ExactMatch",
    "ExecutionResult",
    "InfrastructureError",
    "Manifest",
    "ManifestError",
    "ModelPolicy",
    "OraclePolicy",
    "SandboxError",
    "Step",
    "StepPenalty",
    "Trajectory",
    "Transform",
    "TransformersPolicy",
    "Turn",
    "UnicodeText",
    "UnitTests",
    "UntrustedCodeError",
    "check",
    "list_envs",
    "load_env",
    "load_tasks",
    "push_to_hub",
    "tool",
]
