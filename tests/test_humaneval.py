from pathlib import Path

import pytest
from conftest import play
from gymnasium.utils.env_checker import check_env

from codeact_envs import StepPenalty, load_env, load_tasks

HUMANEVAL = Path(__file__).resolve().parents[1] / "envs" / "humaneval"


@pytest.fixture(scope="module")
def env():
    env = load_env(HUMANEVAL, trust_remote_code=True)
    yield env
    env.close()


@pytest.fixture(scope="module")
def tasks(env):
    return load_tasks(env, split="test")


def _episode_reward(env, task, *actions: str) -> float:
    return play(env, task, *actions)[0]


def test_the_task_set_has_164_problems_with_their_columns(tasks):
    assert tasks.num_rows == 164
    assert tasks.column_names == ["task_id", "prompt", "canonical_solution", "test", "entry_point"]
    assert tasks[0]["task_id"] == "HumanEval/0"


def test_the_oracle_gets_full_reward_on_all_164_tasks(env, tasks):
    failed = [task["task_id"] for task in tasks if _episode_reward(env, task, env.oracle(task)) != 1.0]
    assert failed == []


def test_doing_nothing_gets_zero(env, tasks):
    assert [_episode_reward(env, task, 'final_answer("done")') for task in tasks] == [0.0] * 164


def test_pass_bodies_get_zero(env, tasks):
    rewards = [_episode_reward(env, task, task["prompt"] + "    pass\n", 'final_answer("done")') for task in tasks]
    assert rewards == [0.0] * 164


def test_running_out_of_steps_still_grades_the_program(env, tasks):
    task = tasks[0]
    solution = task["prompt"] + task["canonical_solution"]
    assert _episode_reward(env, task, *["x = 1"] * 7, solution) == 1.0


def test_a_solution_built_over_several_actions_passes(env, tasks):
    task = tasks[2]
    assert task["entry_point"] == "truncate_number"
    actions = ["def helper(x):\n    return x % 1.0", "def truncate_number(number):\n    return helper(number)"]
    assert _episode_reward(env, task, *actions, 'final_answer("done")') == 1.0


def test_a_solution_lost_in_a_restart_does_not_count(env, tasks):
    task = tasks[0]
    actions = [task["prompt"] + task["canonical_solution"], "import os\nos._exit(0)", 'final_answer("done")']
    assert _episode_reward(env, task, *actions) == 0.0


def test_the_prompt_shows_the_signature_and_not_the_tests(env, tasks):
    task = tasks[0]
    observation, _ = env.reset(options={"task": task})
    assert "def has_close_elements(numbers: List[float], threshold: float) -> bool:" in observation
    assert 'final_answer("done")' in observation
    assert "def check" not in observation
    assert task["canonical_solution"].strip() not in observation


def test_the_tests_never_enter_the_agent_sandbox(env, tasks):
    env.reset(options={"task": tasks[0]})
    code = (
        "import gc\n"
        "def scan():\n"
        "    needles = [''.join(['META', 'DATA']), ''.join(['def ', 'check'])]\n"
        "    return any(n in repr(o) for o in gc.get_objects() if o is not needles for n in needles)\n"
        "scan()"
    )
    assert env.step(code)[0] == "False"


WRONG = "def truncate_number(number):\n    return 0.0\n"
ALWAYS_EQUAL = """
class Anything(float):
    def __eq__(self, other):
        return True
    def __ne__(self, other):
        return False
    def __lt__(self, other):
        return True
    def __sub__(self, other):
        return self
    def __abs__(self):
        return self
    def __bool__(self):
        return True
    __hash__ = float.__hash__
"""
EQUAL_STR = "class Same(str):\n    def __eq__(self, other):\n        return True\n"
EQUAL_OBJECT = "class Weird:\n    def __eq__(self, other):\n        return True\n"
FRAME = """
import os, stat, struct, sys, json
def is_socket(fd):
    try:
        return stat.S_ISSOCK(os.fstat(fd).st_mode)
    except OSError:
        return False
fd = next(fd for fd in range(3, 64) if is_socket(fd))
frame = sys._getframe()
while 'msg' not in frame.f_locals:
    frame = frame.f_back
result = {"op": "result", "id": frame.f_locals['msg']['id'], "stdout": "", "stdout_omitted": 0, "stderr": "",
          "stderr_omitted": 0, "value": None, "error": None, "error_type": None, "answer": '"done"'}
body = json.dumps(result).encode()
os.write(fd, struct.pack('>I', len(body)) + body)
os._exit(0)
"""
SNOOP = """
import gc, linecache, os, sys
def truncate_number(number):
    found = [text for text in linecache.cache if 'check' in str(text)]
    frame = sys._getframe()
    while frame is not None:
        found += [name for name in frame.f_globals if name in ('check', 'METADATA')]
        frame = frame.f_back
    found += [o for o in gc.get_objects() if isinstance(o, str) and 'def check' in o]
    for pid in os.listdir('/proc'):
        try:
            found += os.listdir(f'/proc/{pid}/fd')
        except OSError:
            pass
    return 0.5 if found else 0.0
"""

HOLD_EVERY_PROCESS = """
import os, time
while True:
    try:
        child = os.fork()
    except OSError:
        break
    if child == 0:
        time.sleep(60)
        os._exit(0)
"""
STOP_EVERY_OTHER_PROCESS = """
import os, signal
for pid in [int(name) for name in os.listdir('/proc') if name.isdigit()]:
    if pid not in (1, os.getpid()):
        for sent in (signal.SIGSTOP, signal.SIGKILL):
            try:
                os.kill(pid, sent)
            except OSError:
                pass
"""


@pytest.mark.parametrize(
    "hack",
    [
        WRONG + "import sys\nsys.exit(0)",
        "def truncate_number(number):\n    raise SystemExit(0)",
        "def truncate_number(number):\n    import os\n    os._exit(0)",
        WRONG + "raise SystemExit(0)",
        "def truncate_number(number):\n    raise KeyboardInterrupt",
        "class Escape(BaseException):\n    pass\ndef truncate_number(number):\n    raise Escape",
        WRONG + "def check(candidate):\n    return True",
        WRONG + "candidate = check = METADATA = None",
        WRONG + "import builtins\nbuiltins.abs = lambda value: 0",
        WRONG + "abs = lambda value: 0",
        WRONG + "import builtins\nbuiltins.AssertionError = None",
        "def truncate_number(number):\n    import builtins\n    builtins.abs = lambda value: 0\n    return 0.0",
        "def truncate_number(number):\n    while True:\n        pass",
        WRONG + "import math\nmath.isclose = lambda *args, **kwargs: True",
        WRONG + "import sys, threading\nsys.settrace(lambda *a: None)\nthreading.settrace(lambda *a: None)",
        WRONG + "import sys\ndef skip(frame, event, arg):\n    return skip\nsys.settrace(skip)",
        ALWAYS_EQUAL + "def truncate_number(number):\n    return Anything(0.0)",
        EQUAL_STR + "def truncate_number(number):\n    return Same('0')",
        "def truncate_number(number):\n    return float('nan')",
        "def truncate_number(number):\n    return float('inf')",
        EQUAL_OBJECT + "def truncate_number(number):\n    return Weird()",
        SNOOP,
        WRONG + "print('PASS')\nprint('All tests passed')\nprint('ok ' * 100)",
        WRONG + FRAME,
        WRONG + HOLD_EVERY_PROCESS,
        WRONG + STOP_EVERY_OTHER_PROCESS,
    ],
    ids=[
        "sys.exit at top level",
        "SystemExit inside the function",
        "os._exit inside the function",
        "SystemExit after defining",
        "KeyboardInterrupt inside the function",
        "a BaseException subclass",
        "own check",
        "grader names replaced",
        "patched builtins.abs",
        "shadowing abs",
        "patched AssertionError",
        "patching builtins when called",
        "hanging function",
        "patched math.isclose",
        "trace hooks",
        "a trace hook that tries to skip lines",
        "__eq__ always True on a float subclass",
        "str subclass equal to everything",
        "NaN",
        "infinity",
        "an object equal to everything",
        "reading the grader's source, frames and descriptors",
        "fake pass markers",
        "a forged result message, then exit",
        "holding every process the sandbox may have, so no grader can start",
        "stopping and killing every other process of the sandbox",
    ],
)
def test_reward_hacks_do_not_pass_a_wrong_solution(tasks, hack):
    with load_env(HUMANEVAL, trust_remote_code=True) as env:
        env.transform.transforms[0].timeout_s = 2.0
        assert _episode_reward(env, tasks[2], hack, 'final_answer("done")') == 0.0


def test_a_right_solution_that_printed_a_lot_first_passes(env, tasks):
    task = tasks[2]
    solution = "print('x' * 200_000)\n" + task["prompt"] + task["canonical_solution"]
    assert _episode_reward(env, task, solution, 'final_answer("done")') == 1.0


def test_a_right_solution_is_graded_even_after_the_agent_forged_a_result(env, tasks):
    task = tasks[2]
    forged = task["prompt"] + task["canonical_solution"] + "\nprint('PASS')"
    assert _episode_reward(env, task, forged, 'final_answer("done")') == 1.0


def test_gymnasium_check_env_passes_on_humaneval():
    with load_env(HUMANEVAL, trust_remote_code=True) as env:
        check_env(env)


def test_manifest_kwargs_are_defaults_that_keyword_arguments_override():
    with load_env(HUMANEVAL, trust_remote_code=True, max_steps=3) as env:
        assert env.max_steps == 3
        assert env.timeout_s == 10


def test_transform_replaces_the_declared_transforms(tasks):
    with load_env(HUMANEVAL, trust_remote_code=True, transform=StepPenalty(0.5)) as env:
        env.reset(options={"task": tasks[0]})
        _, reward, _, _, info = env.step(env.oracle(tasks[0]))
    assert reward == -0.5
    assert info["rewards"] == {"StepPenalty": -0.5}


def test_loading_without_trust_says_exactly_what_to_pass():
    with pytest.raises(
        ValueError, match=r"runs its Python code \(env\.py\).*if you trust it, pass trust_remote_code=True"
    ):
        load_env(HUMANEVAL)


def test_an_unknown_split_suggests_one(env):
    with pytest.raises(ValueError, match=r"no split 'tests' \(did you mean 'test'\?\)"):
        load_tasks(env, split="tests")


def test_tasks_stream_from_the_folder(env):
    rows = load_tasks(env, split="test", streaming=True)
    assert next(iter(rows))["task_id"] == "HumanEval/0"


def test_a_missing_requirement_fails_with_the_pip_line(tmp_path):
    import shutil

    folder = tmp_path / "humaneval"
    shutil.copytree(HUMANEVAL, folder)
    (folder / "requirements.txt").write_text("numpy\nsurely-not-installed-package>=1.0\n")
    with pytest.raises(ImportError, match=r"pip install 'surely-not-installed-package>=1.0'$"):
        load_env(folder, trust_remote_code=True)


def test_a_folder_that_does_not_exist_is_reported(tmp_path):
    with pytest.raises(FileNotFoundError, match="no env folder"):
        load_env(tmp_path / "missing", trust_remote_code=True)


def test_the_env_spec_rebuilds_the_env_with_gymnasium_make():
    import gymnasium

    with load_env(HUMANEVAL, trust_remote_code=True, max_steps=3) as env:
        made = gymnasium.make(env.spec)
        assert type(made.unwrapped) is type(env)
        assert made.unwrapped.max_steps == 3
        made.close()


def test_check_env_has_nothing_to_warn_about():
    import warnings

    with load_env(HUMANEVAL, trust_remote_code=True) as env, warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        check_env(env)
    assert [str(warning.message) for warning in caught] == []
