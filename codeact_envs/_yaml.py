"""YAML from an env folder that cannot blow up: read from a regular file inside the folder, size-capped, UTF-8,
no aliases, nesting capped, no duplicate keys.

The manifest and the card's front matter are read before anything else (before the trust decision, before
`datasets` parses the card), so a hostile file must fail here, quickly and with little memory.
"""

import os
import re
import stat
from collections.abc import Hashable
from pathlib import Path
from typing import Any

import yaml

from ._errors import ManifestError

MAX_YAML_BYTES = 256 * 1024
MAX_YAML_DEPTH = 32
_FRONT_MATTER = re.compile(rb"\A\s*---[ \t]*\r?\n(?P<yaml>.*?)\r?\n---[ \t]*(?:\r?\n|\Z)", re.DOTALL)


def read_yaml(path: Path, *, root: Path) -> Any:
    """The YAML document in `path`, a file that must resolve inside `root`."""
    return parse_yaml(read_metadata_text(path, root=root), str(path))


def read_metadata_text(path: Path, *, root: Path) -> str:
    """The UTF-8 text of a small metadata file (at most `MAX_YAML_BYTES`) that must resolve inside `root`."""
    data = _read_bytes(path, root=root, size=MAX_YAML_BYTES + 1)
    if len(data) > MAX_YAML_BYTES:
        raise ManifestError(
            f"{path}: more than {MAX_YAML_BYTES} bytes; an env's metadata is small, keep it under {MAX_YAML_BYTES} "
            "bytes"
        )
    return _utf8(data, path)


def read_front_matter(path: Path, *, root: Path) -> dict[str, Any]:
    """The YAML front matter of a Markdown file (a dataset card) as a mapping; {} when it has none."""
    head = _read_bytes(path, root=root, size=MAX_YAML_BYTES + 64)
    if not head.lstrip().startswith(b"---"):
        return {}
    match = _FRONT_MATTER.match(head)
    if match is None:
        raise ManifestError(
            f"{path}: the YAML front matter opened by '---' is not closed by a '---' line within its first "
            f"{MAX_YAML_BYTES} bytes; close it (the card's metadata must stay small)"
        )
    metadata = parse_yaml(_utf8(match["yaml"], path), f"{path} (front matter)")
    if metadata is None:
        return {}
    if not isinstance(metadata, dict):
        raise ManifestError(f"{path}: the YAML front matter must be a mapping (tags:, configs:, ...), got {metadata!r}")
    return metadata


def parse_yaml(text: str, name: str) -> Any:
    """Safe YAML with no aliases, nesting capped at `MAX_YAML_DEPTH` and unique keys; errors name `name`."""
    try:
        return yaml.load(text, Loader=_loader_named(name))
    except ManifestError:
        raise
    except (yaml.YAMLError, ValueError, RecursionError) as e:
        raise ManifestError(f"{name}: not valid YAML: {e}") from e


def _utf8(data: bytes, path: Path) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        byte = data[e.start : e.start + 1]
        raise ManifestError(f"{path}: not UTF-8 text (byte {e.start} is {byte!r}); save it as UTF-8") from e


def _read_bytes(path: Path, *, root: Path, size: int) -> bytes:
    """The first `size` bytes of `path`, a regular file that must resolve inside `root`.

    The file is opened without following a last link and without blocking, so a FIFO or a device swapped in
    after the check is refused rather than read.
    """
    resolved = path.resolve()
    if not resolved.is_relative_to(root.resolve()):
        raise ManifestError(
            f"{path}: links to {str(resolved)!r}, outside {str(root)!r}; an env's files must live in its folder: "
            "put the file itself there"
        )
    try:
        fd = os.open(resolved, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as e:
        raise ManifestError(f"{path}: cannot be read: {e.strerror}") from e
    with os.fdopen(fd, "rb") as file:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise ManifestError(f"{path}: not a regular file; an env's metadata is a plain text file")
        return file.read(size)


def _loader_named(name: str) -> type:
    class Loader(_StrictLoader):
        def __init__(self, stream: str):
            super().__init__(stream)
            self.name = name

    return Loader


class _StrictLoader(yaml.SafeLoader):
    """Safe YAML that refuses aliases, nesting deeper than `MAX_YAML_DEPTH` and a mapping with a key twice."""

    depth = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise ManifestError(
                f"{self.name}: line {event.start_mark.line + 1}: the alias *{event.anchor} is not allowed "
                "(aliases can expand a small file into a huge document); write the value out in full"
            )
        if self.depth >= MAX_YAML_DEPTH:
            mark = self.peek_event().start_mark
            raise ManifestError(
                f"{self.name}: line {mark.line + 1}: nested deeper than {MAX_YAML_DEPTH} levels; flatten the structure"
            )
        self.depth += 1
        try:
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if not isinstance(key, Hashable):
                raise ManifestError(
                    f"{self.name}: line {key_node.start_mark.line + 1}: a key must be a name or a number"
                )
            if key in seen:
                raise ManifestError(
                    f"{self.name}: line {key_node.start_mark.line + 1}: key {key!r} appears twice; keep one of them"
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)
