import math

import pytest
from conftest import CalculatorEnv, run
from gymnasium.utils.env_checker import check_env

from codeact_envs import CodeActEnv


def test_variables_persist_across_steps(env):
    run(env, "x = 41")
    run(env, "x += 1")
    assert run(env, "print(x)") == "42"


def test_functions_and_imports_persist_across_steps(env):
    run(env, "import math\ndef area(r):\n    return math.pi * r * r")
    assert run(env, "round(area(2), 3)") == "12.566"


def test_last_expression_value_is_shown_like_the_python_prompt(env):
    assert run(env, "a = [1, 2]\na + [3]") == "[1, 2, 3]"


def test_a_last_expression_of_none_shows_nothing(env):
    assert run(env, "None") == "[no output]"


def test_stdout_and_stderr_are_shown(env):
    observation = run(env, "import sys\nprint('to stdout')\nprint('to stderr', file=sys.stderr)")
    assert "to stdout" in observation
    assert "to stderr" in observation


def test_output_of_a_subprocess_is_shown(env):
    assert "from the shell" in run(env, "import os\nos.system('echo from the shell')")


def test_an_action_without_output_says_so(env):
    assert run(env, "y = 1") == "[no output]"


def test_syntax_error_is_an_observation(env):
    observation, _reward, terminated, truncated, info = env.step("def broken(:\n    pass")
    assert "SyntaxError" in observation
    assert info["execution"].error_type == "SyntaxError"
    assert not terminated and not truncated


def test_runtime_error_shows_the_traceback_of_the_agent_code_only(env):
    observation = run(env, "def f():\n    return 1 / 0\nf()")
    assert "ZeroDivisionError: division by zero" in observation
    assert 'File "<action 1>", line 2, in f' in observation
    assert "<sandbox>" not in observation


def test_output_before_an_error_is_kept(env):
    observation = run(env, "print('before')\nraise ValueError('boom')")
    assert observation.startswith("before")
    assert "ValueError: boom" in observation


def test_one_action_calls_a_tool_many_times_in_a_loop(env):
    observation, _, _, _, info = env.step("total = 0\nfor i in range(10):\n    total = add(total, i)\ntotal")
    assert observation == "45"
    assert info["execution"].tool_calls == 10
    assert env.calls == 10


def test_a_tool_error_is_raised_in_the_agent_code_with_its_type(env):
    observation = run(env, "try:\n    divide(1, 0)\nexcept ZeroDivisionError as e:\n    print('caught', e)")
    assert observation == "caught division by zero"


def test_calling_a_tool_with_wrong_arguments_is_a_type_error(env):
    assert "TypeError" in run(env, "add(1)")


def test_tools_are_described_in_the_system_prompt(make_env):
    prompt = make_env().system_prompt
    assert "def add(a: int, b: int) -> int:" in prompt
    assert "Add two integers and return the sum." in prompt
    assert "def final_answer(value)" in prompt


def test_final_answer_ends_the_episode_with_the_value_in_info(env):
    observation, _, terminated, truncated, info = env.step("x = add(40, 2)\nfinal_answer(x)\nprint('not reached')")
    assert terminated and not truncated
    assert info["answer"] == 42
    assert "not reached" not in observation


def test_final_answer_is_not_swallowed_by_except_exception(env):
    _, _, terminated, _, info = env.step("try:\n    final_answer('done')\nexcept Exception:\n    pass")
    assert terminated
    assert info["answer"] == "done"


def test_max_steps_truncates_the_episode(make_env):
    env = make_env(max_steps=2)
    env.reset()
    assert env.step("1")[3] is False
    _, _, terminated, truncated, _ = env.step("2")
    assert truncated and not terminated


def test_stepping_a_finished_episode_asks_for_reset(env):
    env.step("final_answer(1)")
    with pytest.raises(RuntimeError, match=r"call reset\(\)"):
        env.step("1")


def test_reset_starts_a_fresh_interpreter(env):
    run(env, "leftover = 1")
    env.reset()
    assert "NameError" in run(env, "leftover")


def test_reset_returns_the_prompt_from_setup(make_env):
    observation, info = make_env().reset(options={"task": {}})
    assert observation.startswith("Add numbers")
    assert info["tools"] == ["add", "divide"]


def test_the_same_seed_gives_the_same_random_draws(make_env):
    env = make_env()
    env.reset(seed=7)
    first = run(env, "import random\nrandom.random()")
    env.reset(seed=7)
    assert run(env, "import random\nrandom.random()") == first


def test_episodes_without_a_seed_draw_different_random_numbers(make_env):
    env = make_env()
    draws = set()
    for _ in range(3):
        env.reset()
        draws.add(run(env, "import random\nrandom.random()"))
    assert len(draws) == 3


def test_render_ansi_is_the_episode_transcript(env):
    run(env, "print('hello')")
    transcript = env.render()
    assert "Add numbers" in transcript
    assert "print('hello')" in transcript
    assert "hello" in transcript.split("observation 1")[1]


def test_gymnasium_check_env_passes(make_env):
    check_env(make_env(timeout_s=2.0), skip_render_check=False)


def test_the_base_class_passes_check_env():
    with CodeActEnv() as env:
        check_env(env)


def test_unicode_actions_and_observations(env):
    assert run(env, "print('héllo λ 中文 🙂')") == "héllo λ 中文 🙂"
    assert env.observation_space.contains("中文")


def test_a_final_answer_that_is_not_plain_data_arrives_as_its_repr(env):
    _, _, _, _, info = env.step("final_answer(len)")
    assert info["answer"] == "<built-in function len>"


def test_plain_data_final_answers_keep_their_types(env):
    _, _, _, _, info = env.step("final_answer([(1, 'a'), {2, 3}, {(4, 5): None}, float('nan'), -float('inf')])")
    pair, numbers, mapping, nan, minus_infinity = info["answer"]
    assert (pair, numbers, mapping, minus_infinity) == ((1, "a"), {2, 3}, {(4, 5): None}, -math.inf)
    assert math.isnan(nan)


def test_a_tool_named_final_answer_is_refused():
    from codeact_envs import tool

    class Clashing(CodeActEnv):
        @tool
        def final_answer(self, value):
            """Clash."""

    with pytest.raises(ValueError, match="final_answer"):
        Clashing()


def test_unknown_render_mode_is_refused():
    with pytest.raises(ValueError, match="render_mode"):
        CalculatorEnv(render_mode="human")


def test_interactive_builtins_exist_like_in_python(env):
    assert "SystemExit: 3" in run(env, "exit(3)")
    assert run(env, "callable(help), callable(quit)") == "(True, True)"


def test_the_process_looks_like_a_normal_python(env):
    code = "import getpass, sys, socket\ngetpass.getuser(), sys.argv, socket.gethostname()"
    assert run(env, code) == "('sandbox', [''], 'sandbox')"


def test_input_without_a_user_raises_eof(env):
    observation = run(env, "input('name? ')")
    assert observation.startswith("name? ")
    assert "EOFError: EOF when reading a line" in observation


def test_binary_and_original_streams_are_captured(env):
    code = "import sys\nsys.stdout.buffer.write(b'raw\\n')\nprint('orig', file=sys.__stdout__)"
    assert run(env, code) == "raw\norig"


def test_names_live_in_a_real_main_module(env):
    assert run(env, "x = 5\nimport __main__\n__main__.x") == "5"


def test_multiprocessing_can_pickle_functions_defined_by_the_agent(env):
    code = (
        "def square(v):\n"
        "    return v * v\n"
        "import multiprocessing\n"
        "with multiprocessing.Pool(2) as pool:\n"
        "    print(pool.map(square, [1, 2, 3]))"
    )
    assert run(env, code) == "[1, 4, 9]"


def test_dataclasses_defined_by_the_agent_work(env):
    assert (
        run(env, "from dataclasses import dataclass\n@dataclass\nclass P:\n    x: int\n    y: int = 0\nP(1)")
        == "P(x=1, y=0)"
    )


def test_threads_may_call_tools_at_the_same_time(env):
    code = (
        "import threading\n"
        "results = []\n"
        "def work(i):\n"
        "    for j in range(20):\n"
        "        results.append(add(i, j) == i + j)\n"
        "threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]\n"
        "[t.start() for t in threads]\n"
        "[t.join() for t in threads]\n"
        "len(results), all(results)"
    )
    assert run(env, code) == "(80, True)"


def test_lone_surrogates_never_reach_the_observation_raw(env):
    observation = run(env, "s = '\\ud800'\nprint(s)\nraise ValueError(s)")
    observation.encode("utf-8")
    assert "\\ud800" in observation


def test_a_huge_final_answer_is_refused_with_a_clear_error(env):
    observation, _, terminated, _, _ = env.step("final_answer('x' * 2_000_000)")
    assert not terminated
    assert "answer with less" in observation
