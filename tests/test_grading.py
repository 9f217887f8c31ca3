import math
import time

import pytest
from conftest import run

from codeact_envs import AgentCallError, AgentProgram, CodeActEnv, Step, Transform, tool

PROGRAM = """
TOTAL = 10
def add(a, b):
    return a + b
def pair(x):
    return (x, {x}, {x: [x]})
def nan():
    return float('nan')
def fails(x):
    raise ValueError(f'bad {x}')
def exits():
    import sys
    sys.exit(0)
def dies():
    import os
    os._exit(3)
def interrupts():
    raise KeyboardInterrupt
def hangs():
    while True:
        pass
class AlwaysEqual:
    def __eq__(self, other):
        return True
def cheats():
    return AlwaysEqual()
def calls_a_tool():
    return secret()
"""


class ToolEnv(CodeActEnv):
    """An env with one tool, to see that grading refuses tool calls."""

    @tool
    def secret(self) -> str:
        """A value only the host knows."""
        return "host"


@pytest.fixture
def env():
    with ToolEnv(timeout_s=2.0, max_steps=20) as env:
        env.reset()
        run(env, PROGRAM)
        yield env


@pytest.fixture
def agent(env) -> AgentProgram:
    return AgentProgram(env._sandbox, timeout_s=1.0)


def test_a_call_returns_plain_data_of_the_same_types(agent):
    assert agent.call("add", 2, b=3) == 5
    assert agent.call("pair", (1, 2)) == ((1, 2), {(1, 2)}, {(1, 2): [(1, 2)]})
    assert math.isnan(agent.call("nan"))


def test_a_read_returns_a_variable(agent):
    assert agent.read("TOTAL") == 10


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("missing", "NameError"),
        ("fails", "raised ValueError"),
        ("exits", "SystemExit, which is not an Exception"),
        ("interrupts", "KeyboardInterrupt, which is not an Exception"),
        ("cheats", "not plain data"),
        ("TOTAL", "TypeError"),
    ],
)
def test_a_failing_call_is_an_agent_call_error(agent, name, message):
    with pytest.raises(AgentCallError, match=message):
        agent.call(name, 1) if name in ("fails", "TOTAL") else agent.call(name)


def test_a_hanging_function_is_an_agent_call_error_on_time_and_the_next_action_says_restarted(env, agent):
    start = time.monotonic()
    with pytest.raises(AgentCallError, match="did not return within 1 s"):
        agent.call("hangs")
    assert time.monotonic() - start < 2.0
    assert "your variables are gone" in run(env, "print(1)")


def test_an_exiting_function_is_an_agent_call_error(env, agent):
    with pytest.raises(AgentCallError, match="failed"):
        agent.call("dies")
    assert "your variables are gone" in run(env, "print(1)")


def test_a_tool_cannot_be_called_while_the_program_is_graded(agent):
    with pytest.raises(AgentCallError, match="cannot be called while the agent's program is being graded"):
        agent.call("calls_a_tool")


def test_tests_pass_against_a_right_function(agent):
    verdict = agent.run_tests("assert add(2, 3) == 5\nassert add('a', 'b') == 'ab'", functions={"add": "add"})
    assert verdict.passed
    assert verdict.detail == ""


def test_tests_fail_against_a_wrong_function_and_say_why(agent):
    verdict = agent.run_tests("assert f(2, 3) == 6, 'two and three'", functions={"f": "add"})
    assert not verdict.passed
    assert "AssertionError: two and three" in verdict.detail


def test_an_exception_of_the_agent_can_be_expected_by_the_tests(agent):
    tests = "try:\n    f(1)\nexcept ValueError as e:\n    assert 'bad 1' in str(e)\nelse:\n    raise AssertionError"
    assert agent.run_tests(tests, functions={"f": "fails"}).passed


@pytest.mark.parametrize("name", ["exits", "dies", "interrupts", "cheats", "hangs"])
def test_a_call_that_does_not_answer_fails_even_if_the_tests_swallow_every_error(agent, name):
    tests = "try:\n    f()\nexcept BaseException:\n    pass"
    verdict = agent.run_tests(tests, functions={"f": name}, timeout_s=1.5)
    assert not verdict.passed


def test_a_hanging_function_fails_the_tests_on_time(agent):
    start = time.monotonic()
    verdict = agent.run_tests("f()", functions={"f": "hangs"}, timeout_s=1.0)
    assert not verdict.passed
    assert "did not finish within 1 s" in verdict.detail
    assert time.monotonic() - start < 2.0


def test_an_always_equal_object_never_reaches_the_tests(agent):
    assert not agent.run_tests("assert f() == 42", functions={"f": "cheats"}).passed


def test_setup_code_runs_first_in_the_same_namespace(agent):
    verdict = agent.run_tests(
        "assert add(double(1), 1) == 3", functions={"add": "add"}, setup="double = lambda x: 2 * x"
    )
    assert verdict.passed


def test_the_tests_never_enter_the_agent_interpreter(env, agent):
    run(
        env,
        "import gc, sys\n"
        "seen = []\n"
        "def spy(x):\n"
        "    frames, frame = [], sys._getframe()\n"
        "    while frame:\n"
        "        frames.append(frame.f_code.co_filename)\n"
        "        frame = frame.f_back\n"
        "    needle = 'HIDDEN' + '-EXPECTED'\n"
        "    seen.append(any(needle in repr(o) for o in gc.get_objects() if isinstance(o, (str, dict))))\n"
        "    seen.append(frames)\n"
        "    return x",
    )
    assert agent.run_tests("assert spy(1) == 1\nEXPECTED = 'HIDDEN-EXPECTED'", functions={"spy": "spy"}).passed
    found, frames = agent.read("seen")
    assert found is False
    assert "<tests>" not in frames


def test_agent_code_cannot_stop_or_kill_the_grader_into_a_pass(env, agent):
    run(
        env,
        "import os, signal, threading, time\n"
        "def sabotage():\n"
        "    for _ in range(200):\n"
        "        for pid in [int(p) for p in os.listdir('/proc') if p.isdigit() and int(p) != os.getpid()]:\n"
        "            try:\n"
        "                os.kill(pid, signal.SIGKILL)\n"
        "            except OSError:\n"
        "                pass\n"
        "        time.sleep(0.005)\n"
        "def wrong(x):\n"
        "    threading.Thread(target=sabotage, daemon=True).start()\n"
        "    time.sleep(0.2)\n"
        "    return 0",
    )
    assert not agent.run_tests("assert f(1) == 1", functions={"f": "wrong"}, timeout_s=1.5).passed


class CallsTheAgent(Transform):
    """A custom grader: full reward when the agent's `add` adds and its `TOTAL` is 10."""

    def __call__(self, step: Step) -> Step:
        if not step.done:
            return step
        try:
            right = step.agent.call("add", 2, 3) == 5 and step.agent.read("TOTAL") == 10
        except AgentCallError:
            right = False
        return step.add_reward(self.name, 1.0 if right else 0.0)


def test_a_custom_transform_grades_through_step_agent():
    with ToolEnv(transform=CallsTheAgent(), max_steps=3) as env:
        env.reset()
        env.step(PROGRAM)
        _, reward, terminated, _, _ = env.step("final_answer('done')")
        assert (reward, terminated) == (1.0, True)
        env.reset()
        env.step("def add(a, b):\n    return 0\nTOTAL = 10")
        _, reward, _, _, _ = env.step("final_answer('done')")
        assert reward == 0.0
