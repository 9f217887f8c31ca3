import threading
import time

import pytest
from conftest import run

from codeact_envs import CodeActEnv, InfrastructureError, tool
from codeact_envs._sandbox import _protocol as protocol

RESTARTED = "your variables are gone"
SOCKET = """
import os, stat, struct, sys
def is_socket(fd):
    try:
        return stat.S_ISSOCK(os.fstat(fd).st_mode)
    except OSError:
        return False
fd = next(fd for fd in range(3, 64) if is_socket(fd))
def send_frame(body):
    os.write(fd, struct.pack('>I', len(body)) + body)
def current_action_id():
    frame = sys._getframe()
    while 'msg' not in frame.f_locals:
        frame = frame.f_back
    return frame.f_locals['msg']['id']
"""


class HostileToolsEnv(CodeActEnv):
    """Tools that misbehave in every way a host tool can, and a few honest ones."""

    @tool
    def add(self, a: int, b: int) -> int:
        """Add two integers."""
        return a + b

    @tool
    def echo(self, value):
        """Return the value as the host received it."""
        return value

    @tool
    def sleepy(self, seconds: float) -> str:
        """Sleep on the host, then answer."""
        time.sleep(seconds)
        return "slept"

    @tool
    def forever(self) -> None:
        """Never return."""
        threading.Event().wait()

    @tool
    def deep(self) -> list:
        """A list nested 5,000 levels deep."""
        value: list = []
        for _ in range(5000):
            value = [value]
        return value

    @tool
    def unsendable(self) -> object:
        """Something that is not plain data."""
        return object()

    @tool
    def big(self) -> str:
        """Four million characters."""
        return "x" * 4_000_000

    @tool
    def broken(self) -> None:
        """Fail on the host's side."""
        raise InfrastructureError("the env's database is down")


@pytest.fixture
def make_hostile():
    envs = []

    def make(**kwargs) -> HostileToolsEnv:
        env = HostileToolsEnv(max_steps=100, **kwargs)
        envs.append(env)
        env.reset()
        return env

    yield make
    for env in envs:
        env.close()


@pytest.fixture
def hostile(make_hostile) -> HostileToolsEnv:
    return make_hostile(timeout_s=2.0)


def _timed(env, code: str) -> tuple[str, float]:
    start = time.monotonic()
    observation = run(env, code)
    return observation, time.monotonic() - start


def _forge(*bodies: bytes, then: str = "import time\ntime.sleep(0.5)") -> str:
    """Agent code that writes raw frames with `bodies` on its own socket, then runs `then`."""
    return SOCKET + "".join(f"send_frame({body!r})\n" for body in bodies) + then


def _result(**fields) -> dict:
    defaults = dict(
        stdout="", stdout_omitted=0, stderr="", stderr_omitted=0, value=None, error=None, error_type=None, answer=None
    )
    return {"op": "result", **defaults, **fields}


def _forged_result_code(then: str = "import os\nos._exit(0)", **fields) -> str:
    """Agent code that sends a well-formed result for the current action, with `fields`, then runs `then`."""
    message = _result(**fields)
    return (
        SOCKET
        + (
            "import json\n"
            f"message = json.loads({protocol.frame(message)[4:].decode()!r})\n"
            "message['id'] = current_action_id()\n"
            "send_frame(json.dumps(message).encode())\n"
        )
        + then
    )


@pytest.mark.parametrize(
    "body",
    [
        b'{"op": "result", "id": Infinity}',
        b'{"op": "result", "id": 1e999, "stdout": "", "stdout_omitted": 0, "stderr": "", "stderr_omitted": 0, '
        b'"value": null, "error": null, "error_type": null, "answer": null}',
        b'{"op": "result", "id": NaN}',
        b'{"op": "result", "id": 1, "stdout": 1, "stdout_omitted": "many", "stderr": "", "stderr_omitted": 0, '
        b'"value": null, "error": null, "error_type": null, "answer": null}',
        b'{"op": "result"}',
        b'{"op": "returned", "id": 1, "ok": true, "value": "1", "error_type": null, "error": null}',
        b'{"op": "tool", "name": ["not", "hashable"], "args": "[]", "kwargs": "{\\"dict\\":[]}"}',
        b'{"op": "tool", "name": "add", "args": "[[[[", "kwargs": "{\\"dict\\":[]}"}',
        b'{"op": "tool", "name": "add", "args": "{\\"dict\\":[]}", "kwargs": "[]"}',
        b"[" * 200_000,
        b"not json at all",
        b'{"op": "result", "id": 1, "stdout": "\xff\xfe", "stdout_omitted": 0}',
        b'["op", "result"]',
    ],
    ids=[
        "Infinity",
        "a number that overflows to infinity",
        "NaN",
        "wrong types",
        "missing fields",
        "a reply to a call never made",
        "an unhashable tool name",
        "tool arguments that are not JSON",
        "tool arguments of the wrong shape",
        "a line nested 200,000 deep",
        "not JSON",
        "invalid UTF-8",
        "not an object",
    ],
)
def test_a_malformed_frame_restarts_the_interpreter_and_never_breaks_the_host(hostile, body):
    run(hostile, "kept = 1")
    observation, elapsed = _timed(hostile, _forge(body))
    assert RESTARTED in observation
    assert elapsed < 1.5
    assert run(hostile, "print('ok')") == "ok"


def test_a_frame_announcing_gigabytes_is_refused_at_once(hostile):
    observation, elapsed = _timed(
        hostile, SOCKET + "os.write(fd, struct.pack('>I', 2**31))\nimport time\ntime.sleep(5)"
    )
    assert RESTARTED in observation
    assert elapsed < 1.0


def test_a_value_nested_thousands_deep_in_a_final_answer_restarts_the_interpreter(hostile):
    answer = '{"tuple":[' * 3000 + "]}" * 3000
    observation = run(hostile, _forged_result_code(answer=answer))
    assert RESTARTED in observation
    assert run(hostile, "1 + 1") == "2"


def test_the_host_applies_the_output_cap_to_a_forged_result(make_hostile):
    env = make_hostile(timeout_s=2.0, max_output_chars=1000)
    observation = run(env, _forged_result_code(stdout="x" * 200_000, value="y" * 50_000, error="z" * 50_000))
    assert len(observation) < 3_500
    assert "[output truncated: 199000 more characters not shown]" in observation
    assert "more characters]" in observation


def test_the_host_applies_the_final_answer_cap_to_a_forged_result(hostile):
    text = protocol.encode_value("a" * (protocol.MAX_ANSWER_CHARS + 10))
    observation, _, terminated, _, info = hostile.step(_forged_result_code(answer=text))
    assert not terminated
    assert "answer" not in info
    assert "answer with less" in observation


def test_a_forged_result_with_a_lone_surrogate_gives_valid_utf8_everywhere(hostile):
    code = _forged_result_code(stdout="\ud800 out", answer='"\\ud800 answer"', error="\udfff err")
    observation, _, terminated, _, info = hostile.step(code)
    assert terminated
    observation.encode("utf-8")
    info["answer"].encode("utf-8")
    info["execution"].error.encode("utf-8")
    assert info["answer"] == "\\ud800 answer"


def test_a_final_answer_with_a_lone_surrogate_is_valid_utf8(hostile):
    _, _, terminated, _, info = hostile.step("final_answer(['\\ud800', {'\\udfff': '\\ud83d'}])")
    assert terminated
    assert info["answer"] == ["\\ud800", {"\\udfff": "\\ud83d"}]


def test_a_tool_argument_with_a_lone_surrogate_reaches_the_tool_as_valid_text(hostile):
    assert run(hostile, "echo('\\ud800')") == repr("\\ud800")


def test_a_forged_result_then_a_late_real_one_is_caught_by_its_id(hostile):
    forged = _forged_result_code(stdout="forged", then="import time\ntime.sleep(0.3)\nprint('real')")
    assert run(hostile, forged) == "forged"
    time.sleep(0.5)
    assert RESTARTED in run(hostile, "print('next')")
    assert run(hostile, "print('after')") == "after"


def test_a_sandbox_that_never_reads_cannot_block_a_host_send(hostile):
    flood = _forge(
        *[b'{"op": "tool", "name": "big", "args": "[]", "kwargs": "{\\"dict\\":[]}"}'] * 20,
        then="import time\ntime.sleep(60)",
    )
    observation, elapsed = _timed(hostile, flood)
    assert "[timeout" in observation
    assert elapsed < 3.5
    assert run(hostile, "print('ok')") == "ok"


def test_a_huge_action_sent_to_an_interpreter_that_stopped_reading_times_out(hostile):
    assert run(hostile, _forged_result_code(stdout="forged", then="import time\ntime.sleep(60)")) == "forged"
    observation, elapsed = _timed(hostile, "x = 1\n" + "#" * 20_000_000)
    assert "[timeout" in observation
    assert elapsed < 3.5


def test_a_slow_tool_ends_the_step_on_time_with_a_marker_naming_it(hostile):
    observation, elapsed = _timed(hostile, "sleepy(15)")
    assert elapsed < 3.0
    assert "[timeout: the tool sleepy() was still running after 2 s" in observation
    assert RESTARTED in observation
    assert run(hostile, "add(2, 3)") == "5"


def test_a_tool_that_never_returns_leaves_the_env_usable(hostile):
    observation, elapsed = _timed(hostile, "forever()")
    assert elapsed < 3.0
    assert "the tool forever() was still running" in observation
    assert run(hostile, "add(2, 3)") == "5"
    hostile.reset()
    assert run(hostile, "add(4, 5)") == "9"


def test_a_tool_returning_a_list_nested_5000_deep_is_a_clear_error_for_the_agent(hostile):
    observation = run(hostile, "deep()")
    assert "TypeError: tool 'deep' returned a value that cannot be sent to the sandbox" in observation
    assert "nested deeper than 100 levels" in observation
    assert run(hostile, "add(1, 1)") == "2"


def test_a_tool_returning_something_that_is_not_plain_data_is_a_clear_error(hostile):
    observation = run(hostile, "unsendable()")
    assert "TypeError: tool 'unsendable' returned a value that cannot be sent" in observation
    assert "a object is not plain data" in observation


def test_plain_data_survives_a_tool_round_trip(hostile):
    value = "(1, 2.5, 'x', None, True, [3], {4: 'four', (5, 6): {7}}, frozenset({8}), float('inf'))"
    assert run(hostile, f"echo({value}) == {value}") == "True"


def test_an_infrastructure_error_of_a_tool_propagates_out_of_step_and_reset_works(hostile):
    with pytest.raises(InfrastructureError, match="database is down"):
        hostile.step("broken()")
    hostile.reset()
    assert run(hostile, "add(1, 2)") == "3"


def test_a_background_thread_calling_a_tool_does_not_starve_the_next_action(hostile):
    spinner = "import threading\ndef spin():\n    while True:\n        add(1, 1)\n"
    run(hostile, spinner + "threading.Thread(target=spin, daemon=True).start()")
    observation, elapsed = _timed(hostile, "sum(add(i, 1) for i in range(50))")
    assert observation == "1275"
    assert elapsed < 2.0


def test_tool_calls_from_a_forked_child_are_refused(hostile):
    code = (
        "import os\n"
        "r, w = os.pipe()\n"
        "pid = os.fork()\n"
        "if pid == 0:\n"
        "    try:\n"
        "        add(1, 2)\n"
        "    except RuntimeError as e:\n"
        "        os.write(w, str(e).encode())\n"
        "    os._exit(0)\n"
        "os.waitpid(pid, 0)\n"
        "os.read(r, 200).decode()"
    )
    assert "main process" in run(hostile, code)


def test_the_codec_round_trips_plain_data_and_refuses_the_rest():
    value = [None, True, 3, -0.5, "s", (1, (2,)), {1: "a", "b": [2]}, {3}, frozenset({(4, 5)}), float("-inf")]
    assert protocol.decode_value(protocol.encode_value(value)) == value
    with pytest.raises(TypeError, match="not plain data"):
        protocol.encode_value([object()])
    with pytest.raises(protocol.ProtocolError):
        protocol.decode_value('{"set": [[1]]}')
    with pytest.raises(protocol.ProtocolError):
        protocol.decode_value('{"eval": "os.system()"}')
