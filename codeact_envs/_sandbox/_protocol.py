"""Every message between the host and the sandbox: its fields, their caps, the framing and the plain-data codec.

Both sides use this one file. The host imports it; the sandbox, which runs the standard library only and
sees none of the host's files, receives its source at start. So it imports nothing but the standard library.

A frame is a 4-byte big-endian length and that many bytes of ASCII JSON: an object whose "op" names the
message. Values that cross (tool arguments and results, final answers, the results of calls into the
agent's program) are plain data: None, bool, int, float, str, and lists, tuples, dicts, sets and frozensets
of them, encoded by `encode_value` as JSON text in which every JSON object is a one-key type tag, so that
tuples, sets, dicts with non-str keys and non-finite floats survive the round trip.
"""

import json
import math
import struct

HEADER = struct.Struct(">I")
MAX_FRAME_BYTES = 24 << 20
MAX_VALUE_CHARS = 8 << 20
MAX_ANSWER_CHARS = 1_000_000
MAX_DEPTH = 100
MAX_NAME_CHARS = 200
MAX_COUNT = 1 << 53
PLAIN_TYPES = "None, bool, int, float, str, and lists, tuples, dicts, sets and frozensets of them"
_NON_FINITE = {"nan": math.nan, "inf": math.inf, "-inf": -math.inf}


class ProtocolError(ValueError):
    """A frame or a value that does not follow this protocol."""


class Text:
    """A str field; on the host, lone surrogates become backslash escapes so that it is valid UTF-8."""

    def __init__(self, max_chars: int = MAX_FRAME_BYTES):
        self.max_chars = max_chars

    def check(self, value):
        if type(value) is not str or len(value) > self.max_chars:
            raise ProtocolError(f"expected a str of at most {self.max_chars} characters")
        return valid_text(value)


class Count:
    """A non-negative int below 2**53 (a bool is not one)."""

    def check(self, value):
        if type(value) is not int or not 0 <= value < MAX_COUNT:
            raise ProtocolError(f"expected an int in [0, {MAX_COUNT})")
        return value


class Flag:
    """A bool."""

    def check(self, value):
        if type(value) is not bool:
            raise ProtocolError("expected a bool")
        return value


class Optional:
    """`kind`, or None."""

    def __init__(self, kind):
        self.kind = kind

    def check(self, value):
        return None if value is None else self.kind.check(value)


class Settings:
    """The settings of a process the template starts: a dict, sent by the host only."""

    def check(self, value):
        if type(value) is not dict:
            raise ProtocolError("expected a dict")
        return value


NAME = Text(MAX_NAME_CHARS)
VALUE = Text(MAX_VALUE_CHARS)
MAYBE_VALUE = Optional(VALUE)
MAYBE_NAME = Optional(NAME)
MAYBE_TEXT = Optional(Text())

MESSAGES = {
    "ready": {},
    "spawn": {"settings": Settings()},
    "finish": {},
    "exec": {"id": Count(), "code": Text()},
    "result": {
        "id": Count(),
        "stdout": Text(),
        "stdout_omitted": Count(),
        "stderr": Text(),
        "stderr_omitted": Count(),
        "value": MAYBE_TEXT,
        "error": MAYBE_TEXT,
        "error_type": MAYBE_NAME,
        "answer": MAYBE_VALUE,
    },
    "tool": {"name": NAME, "args": VALUE, "kwargs": VALUE},
    "reply": {"ok": Flag(), "value": MAYBE_VALUE, "error_type": MAYBE_NAME, "error": MAYBE_TEXT},
    "call": {"id": Count(), "name": NAME, "args": VALUE, "kwargs": VALUE},
    "read": {"id": Count(), "name": NAME},
    "returned": {"id": Count(), "ok": Flag(), "value": MAYBE_VALUE, "error_type": MAYBE_NAME, "error": MAYBE_TEXT},
    "serve": {"id": Count()},
    "served": {"id": Count()},
    "grade": {"code": Text(), "stubs": VALUE},
    "verdict": {"passed": Flag(), "detail": Text()},
}
"""Each message and its fields. Who sends what:

- template -> host: ready (after start). host -> template: spawn (with the new process's socket attached),
  finish (the episode is over: kill its processes, clean up, prepare the next process).
- inside the sandbox, between the template and its forker (both trusted): one byte, the index of a role in
  `_inside._ROLES`, with the new spare's socket attached; the answer is the spare's PID in 4 bytes.
- interpreter -> host: ready, tool (a call of a host tool), result (of an exec), returned (of a call or read),
  served. host -> interpreter: exec (run an action), reply (to a tool), call (a function of the agent's
  program), read (a variable of the agent's program), serve (answer the calls and reads that come on the
  attached socket, from a grader, until it closes; then say served).
- grader -> host: ready, verdict. host -> grader: grade (the setup and test code compiled by the host, and the
  stubs, with the grader's end of that socket attached).
- grader -> interpreter, on that socket: call, read. interpreter -> grader: returned. The grader validates
  every frame of the interpreter as the host does.
"""


def message(op: str, **fields) -> dict:
    """The message `op` with `fields`, which must be exactly the fields that `MESSAGES` lists for it."""
    if fields.keys() != MESSAGES[op].keys():
        raise ProtocolError(f"message {op!r} takes the fields {sorted(MESSAGES[op])}, got {sorted(fields)}")
    fields["op"] = op
    return fields


def frame(msg: dict) -> bytes:
    """The bytes of one frame holding `msg`."""
    body = _FRAME_ENCODER.encode(msg).encode("ascii")
    return HEADER.pack(len(body)) + body


def frame_size(header: bytes) -> int:
    """The body length announced by a frame header; a frame larger than the cap is refused."""
    (size,) = HEADER.unpack(header)
    if size > MAX_FRAME_BYTES:
        raise ProtocolError(f"a frame of {size} bytes is larger than the cap of {MAX_FRAME_BYTES}")
    return size


def parse(body: bytes, expected: frozenset | set | tuple) -> dict:
    """Validate a frame body that should hold one of the `expected` messages; return the message.

    Every field is checked against `MESSAGES` (type, size, finite numbers, valid UTF-8); a field missing or
    extra, an unknown or unexpected op, or invalid JSON raise `ProtocolError`.
    """
    try:
        msg = _DECODER.decode(body.decode("ascii"))
    except (ValueError, RecursionError) as e:
        raise ProtocolError(f"a frame that is not JSON: {e}") from None
    if type(msg) is not dict:
        raise ProtocolError("a frame that is not a JSON object")
    op = msg.pop("op", None)
    if op not in expected:
        raise ProtocolError(f"expected one of {sorted(expected)}, got the message {op!r}")
    spec = MESSAGES[op]
    if msg.keys() != spec.keys():
        raise ProtocolError(f"message {op!r} takes the fields {sorted(spec)}, got {sorted(map(str, msg))}")
    for name, kind in spec.items():
        try:
            msg[name] = kind.check(msg[name])
        except ProtocolError as e:
            raise ProtocolError(f"field {name!r} of message {op!r}: {e}") from None
    msg["op"] = op
    return msg


def _refuse_constant(name: str):
    raise ProtocolError(f"{name} is not a JSON number")


_FRAME_ENCODER = json.JSONEncoder(ensure_ascii=True, allow_nan=False, separators=(",", ":"))
_VALUE_ENCODER = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":"))
_DECODER = json.JSONDecoder(parse_constant=_refuse_constant)


def valid_text(text: str) -> str:
    """`text` as valid UTF-8: lone surrogates become backslash escapes."""
    if text.isascii():
        return text
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text


def encode_value(value, max_chars: int = MAX_VALUE_CHARS) -> str:
    """Plain data as JSON text; `TypeError` for anything else, `ValueError` past the depth or size cap."""
    text = _VALUE_ENCODER.encode(_tagged(value, 0))
    if len(text) > max_chars:
        raise ValueError(f"{len(text)} characters of data, more than the cap of {max_chars}")
    return text


def decode_value(text: str, *, clean: bool = True):
    """The plain data that `encode_value` gave `text`; `ProtocolError` for anything that is not such data.

    With `clean`, lone surrogates in strings become backslash escapes (the host's choice: valid UTF-8).
    """
    if type(text) is not str or len(text) > MAX_VALUE_CHARS:
        raise ProtocolError(f"a value must be JSON text of at most {MAX_VALUE_CHARS} characters")
    try:
        return _untagged(_DECODER.decode(text), 0, clean)
    except (ValueError, RecursionError, TypeError) as e:
        raise ProtocolError(f"not plain data: {e}") from None


def _tagged(value, depth: int):
    if depth > MAX_DEPTH:
        raise ValueError(f"data nested deeper than {MAX_DEPTH} levels")
    kind = type(value)
    if value is None or kind is bool or kind is str or kind is int:
        return value
    if kind is float:
        return value if math.isfinite(value) else {"float": repr(value)}
    if kind is list:
        return [_tagged(item, depth + 1) for item in value]
    if kind is tuple:
        return {"tuple": [_tagged(item, depth + 1) for item in value]}
    if kind is dict:
        return {"dict": [[_tagged(key, depth + 1), _tagged(item, depth + 1)] for key, item in value.items()]}
    if kind is set or kind is frozenset:
        return {kind.__name__: [_tagged(item, depth + 1) for item in value]}
    return _tagged(_as_plain(value), depth)


def _as_plain(value):
    """A value of a subclass of a plain type (or a numeric scalar like numpy's) as the plain type itself."""
    for plain in (bool, int, float, str, list, tuple, dict, set, frozenset):
        if isinstance(value, plain):
            return plain(value)
    if hasattr(type(value), "__index__"):
        return int(value.__index__())
    if hasattr(type(value), "__float__") and not hasattr(type(value), "__len__"):
        number = float(value)
        if type(number) is float:
            return number
    raise TypeError(f"a {type(value).__name__} is not plain data ({PLAIN_TYPES})")


def _untagged(obj, depth: int, clean: bool):
    if depth > MAX_DEPTH:
        raise ValueError(f"data nested deeper than {MAX_DEPTH} levels")
    kind = type(obj)
    if kind is str:
        return valid_text(obj) if clean else obj
    if obj is None or kind is bool or kind is int:
        return obj
    if kind is float:
        if not math.isfinite(obj):
            raise ValueError("a non-finite float must be tagged")
        return obj
    if kind is list:
        return [_untagged(item, depth + 1, clean) for item in obj]
    if kind is not dict or len(obj) != 1:
        raise ValueError("a JSON object must be a one-key type tag")
    ((tag, content),) = obj.items()
    if tag == "float" and content in _NON_FINITE:
        return _NON_FINITE[content]
    if type(content) is not list:
        raise ValueError(f"the content of tag {tag!r} must be a list")
    items = [_untagged(item, depth + 1, clean) for item in content]
    if tag == "tuple":
        return tuple(items)
    if tag == "set":
        return set(items)
    if tag == "frozenset":
        return frozenset(items)
    if tag == "dict" and all(type(pair) is list and len(pair) == 2 for pair in items):
        return {_hashable(key): item for key, item in items}
    raise ValueError(f"unknown type tag {tag!r}")


def _hashable(key):
    hash(key)
    return key
