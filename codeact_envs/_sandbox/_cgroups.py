"""Per-sandbox cgroups: a process cap that also holds for a root host user, and a memory cap for the episode."""

import contextlib
import os
import shlex
import signal
import time
import uuid
from pathlib import Path

from .._errors import SandboxError

_CGROUP_FS = Path("/sys/fs/cgroup")
_REMOVE_TIMEOUT_S = 10.0
_STALE_AFTER_S = 60.0
_PREFIX = "codeact-"
_V1_LIMIT_FILES = {"pids": "pids.max", "memory": "memory.limit_in_bytes"}
_V2_LIMIT_FILES = {"pids": "pids.max", "memory": "memory.max"}


class Cgroups:
    """The cgroups holding every process of one sandbox; `enter_commands` put a shell in them."""

    def __init__(self, paths: list[Path], controllers: set[str]):
        self.paths = paths
        self.controllers = controllers

    @classmethod
    def create(cls, limits: dict[str, int]) -> "Cgroups":
        """Make one cgroup per controller in `limits` ("pids", "memory") where the host allows it."""
        paths, controllers = [], set()
        for controller, value in limits.items():
            path = _v2_cgroup(controller, value) if _is_v2_only() else _v1_cgroup(controller, value)
            if path is not None:
                paths.append(path)
                controllers.add(controller)
        return cls(paths, controllers)

    def enter_commands(self) -> list[str]:
        """Shell commands that move the running shell into every cgroup (its children follow)."""
        return [f"echo $$ > {shlex.quote(str(path / 'cgroup.procs'))}" for path in self.paths]

    def remove(self) -> None:
        """Kill whatever is left inside, then delete the cgroups."""
        for path in self.paths:
            _remove(path)
        self.paths = []


def _is_v2_only() -> bool:
    return (_CGROUP_FS / "cgroup.controllers").exists()


def _own_cgroup(controller: str | None) -> str:
    """This process's cgroup path in the hierarchy of `controller` (None: the v2 hierarchy)."""
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _, names, path = line.split(":", 2)
        if (controller is None and names == "") or (controller is not None and controller in names.split(",")):
            return path.lstrip("/")
    return ""


def _v1_cgroup(controller: str, value: int) -> Path | None:
    root = _CGROUP_FS / controller
    parents = [root / _own_cgroup(controller), root]
    return _make_child(parents, _V1_LIMIT_FILES[controller], value)


def _v2_cgroup(controller: str, value: int) -> Path | None:
    return _make_child([_CGROUP_FS / _own_cgroup(None)], _V2_LIMIT_FILES[controller], value)


def _make_child(parents: list[Path], limit_file: str, value: int) -> Path | None:
    for parent in dict.fromkeys(parents):
        _remove_stale(parent)
        path = parent / f"{_PREFIX}{uuid.uuid4().hex[:12]}"
        try:
            path.mkdir()
        except OSError:
            continue
        try:
            (path / limit_file).write_text(str(value))
            return path
        except OSError:
            path.rmdir()
    return None


def _remove_stale(parent: Path) -> None:
    """Delete cgroups left by sandboxes whose process was killed before it could clean up.

    Only old ones, and `rmdir` refuses a cgroup that still holds a process, so live sandboxes are safe.
    """
    with contextlib.suppress(OSError):
        for path in parent.glob(f"{_PREFIX}*"):
            with contextlib.suppress(OSError):
                if time.time() - path.stat().st_mtime > _STALE_AFTER_S:
                    path.rmdir()


def _pids_in(path: Path) -> list[int]:
    try:
        return [int(line) for line in (path / "cgroup.procs").read_text().split()]
    except OSError:
        return []


def _remove(path: Path) -> None:
    deadline = time.monotonic() + _REMOVE_TIMEOUT_S
    while time.monotonic() < deadline:
        for pid in _pids_in(path):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        try:
            path.rmdir()
            return
        except FileNotFoundError:
            return
        except OSError:
            time.sleep(0.001)
    raise SandboxError(f"could not remove the sandbox's cgroup {str(path)!r}: processes {_pids_in(path)} survive")
