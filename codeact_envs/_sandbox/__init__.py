"""The sandbox: a persistent CPython interpreter per episode, isolated, filtered, and trusted with nothing."""

from ._host import ExecutionResult, Sandbox
from ._launch import Isolation

__all__ = ["ExecutionResult", "Isolation", "Sandbox"]
