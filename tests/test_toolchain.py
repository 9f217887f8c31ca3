from pathlib import Path

import pytest
from conftest import play, run
from gymnasium.utils.env_checker import check_env

from codeact_envs import load_env, load_tasks

TOOLCHAIN = Path(__file__).resolve().parents[1] / "envs" / "toolchain"
TOOLS = [
    "add_business_days",
    "convert_units",
    "distance_km",
    "exchange_rate",
    "get_product",
    "search_products",
    "shipping_quote",
]


@pytest.fixture(scope="module")
def env():
    env = load_env(TOOLCHAIN, trust_remote_code=True)
    yield env
    env.close()


@pytest.fixture(scope="module")
def tasks(env):
    return load_tasks(env, split="test")


def test_the_task_set_has_40_questions_with_their_columns(tasks):
    assert tasks.num_rows == 40
    assert tasks.column_names == ["task_id", "family", "question", "answer", "solution"]
    assert tasks[0]["task_id"] == "toolchain/00"
    assert len(set(tasks["question"])) == 40


def test_gymnasium_check_env_passes_on_toolchain():
    with load_env(TOOLCHAIN, trust_remote_code=True) as env:
        check_env(env)


def test_the_oracle_answers_every_question_in_one_action(env, tasks):
    failed = [task["task_id"] for task in tasks if play(env, task, env.oracle(task))[0] != 1.0]
    assert failed == []


def test_every_oracle_action_chains_several_tool_calls(env, tasks):
    calls = {task["task_id"]: play(env, task, env.oracle(task))[2]["execution"].tool_calls for task in tasks}
    assert min(calls.values()) >= 2


def test_a_final_answer_of_none_gets_zero(env, tasks):
    assert [play(env, task, "final_answer(None)")[0] for task in tasks] == [0.0] * 40


def test_doing_nothing_until_max_steps_gets_zero(env, tasks):
    reward, observations, _ = play(env, tasks[0], *["pass"] * 10)
    assert reward == 0.0
    assert len(observations) == env.max_steps == 10


def test_a_wrong_answer_gets_zero_and_the_right_one_in_any_case_gets_one(env, tasks):
    name_task = next(task for task in tasks if task["family"] == "lightest_affordable")
    assert play(env, name_task, "final_answer('Nomad 12')")[0] == 0.0
    assert play(env, name_task, f"final_answer({name_task['answer'].upper()!r})")[0] == 1.0


def test_the_reward_is_recorded_as_the_exact_match_component(env, tasks):
    _, _, info = play(env, tasks[0], env.oracle(tasks[0]))
    assert info["rewards"] == {"ExactMatch": 1.0}


def test_the_prompt_asks_the_question_and_says_to_use_the_tools(env, tasks):
    observation, info = env.reset(options={"task": tasks[5]})
    assert tasks[5]["question"] in observation
    assert "only through the tools" in observation
    assert "final_answer(answer)" in observation
    assert sorted(info["tools"]) == TOOLS


def test_the_prompt_shows_neither_the_answer_nor_the_solution(env, tasks):
    observation, _ = env.reset(options={"task": tasks[0]})
    assert tasks[0]["answer"] not in observation
    assert "exchange_rate(" not in observation


def test_the_system_prompt_describes_every_tool_with_its_docstring(env):
    prompt = env.system_prompt
    for name in TOOLS:
        assert f"def {name}(" in prompt
    assert "Categories: laptop, phone, monitor, headset, tablet." in prompt
    assert 'exchange_rate("EUR", "USD") is the amount in USD' in prompt


def test_tools_answer_from_the_tables(env, tasks):
    env.reset(options={"task": tasks[0]})
    assert run(env, "get_product('L-100')['name'], distance_km('Paris', 'London')") == "('Aero 13', 460)"
    assert run(env, "shipping_quote('Paris', 'London', 2.0)") == "{'cost_eur': 6.0, 'days': 2}"
    assert run(env, "add_business_days('2025-04-17', 1)") == "'2025-04-22'"
    assert run(env, "round(convert_units(1, 'mi', 'km'), 6), exchange_rate('USD', 'USD')") == "(1.609344, 1.0)"
    assert run(env, "[p['sku'] for p in search_products('tablet', in_stock_only=True)]") == "['T-100', 'T-300']"


def test_a_bad_tool_argument_raises_an_error_that_names_the_fix(env, tasks):
    env.reset(options={"task": tasks[0]})
    assert "ValueError: unknown currency 'BTC'; use one of EUR, USD" in run(env, "exchange_rate('EUR', 'BTC')")
    assert "call search_products() to see names and SKUs" in run(env, "get_product('Aero 14')")
    assert "cannot convert mass ('kg') to length ('km')" in run(env, "convert_units(1, 'kg', 'km')")


def test_the_same_seed_gives_the_sameplay(env, tasks):
    actions = ["import random\nrandom.choice(search_products())['name']", "final_answer(None)"]
    assert play(env, tasks[3], *actions, seed=7)[1] == play(env, tasks[3], *actions, seed=7)[1]


def test_the_reference_answer_and_solution_never_enter_the_agent_sandbox(env, tasks):
    task = tasks[1]
    env.reset(options={"task": task})
    code = (
        "import gc\n"
        "def scan():\n"
        f"    needles = {_built_at_run_time([task['solution'], repr(task['answer'])])}\n"
        "    return any(n in repr(o) for o in gc.get_objects() if o is not needles for n in needles)\n"
        "scan()"
    )
    assert run(env, code) == "False"


def _built_at_run_time(texts: list[str]) -> str:
    """Source of a list of `texts` joined from single characters, so the source does not contain them."""
    return "[" + ", ".join(f"''.join({list(text)!r})" for text in texts) + "]"
