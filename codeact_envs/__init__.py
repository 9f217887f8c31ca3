"""codeact_envs: Gymnasium envs whose actions are Python code, run in a sandboxed persistent interpreter."""

from ._env import CodeActEnv, tool
from ._errors import SandboxError
from ._sandbox import ExecutionResult
from ._spaces import UnicodeText

__version__ = "0.1.0"

__all__ = ["CodeActEnv", "ExecutionResult", "SandboxError", "UnicodeText", "tool"]
