import pytest
from conftest import CalculatorEnv

from codeact_envs import Compose, ErrorPenalty, ExactMatch, ExecutionResult, Step, StepPenalty, Transform


def _step(**fields) -> Step:
    defaults = {"task": {}, "action": "x", "observation": "", "execution": ExecutionResult(), "info": {"rewards": {}}}
    return Step(**{**defaults, **fields})


def _answer(value) -> ExecutionResult:
    return ExecutionResult(final_answer=value, has_final_answer=True)


def test_add_reward_records_the_component_and_returns_a_new_step():
    step = _step()
    rewarded = step.add_reward("Bonus", 0.5)
    assert rewarded.reward == 0.5
    assert rewarded.info["rewards"] == {"Bonus": 0.5}
    assert step.reward == 0.0


def test_a_transform_can_end_the_episode():
    assert _step().add_reward("Stop", 0.0, terminate=True).terminated


def test_compose_applies_transforms_in_order():
    step = Compose([StepPenalty(0.25), StepPenalty(0.25)])(_step())
    assert step.reward == -0.5
    assert step.info["rewards"] == {"StepPenalty": -0.5}


def test_step_penalty_applies_on_every_step():
    assert StepPenalty(0.01)(_step()).reward == -0.01


def test_error_penalty_applies_only_to_failing_steps():
    failing = _step(execution=ExecutionResult(error="Traceback", error_type="ValueError"))
    crashed = _step(execution=ExecutionResult(restarted=True, timed_out=True))
    assert ErrorPenalty(0.1)(failing).reward == -0.1
    assert ErrorPenalty(0.1)(crashed).reward == -0.1
    assert ErrorPenalty(0.1)(_step()).reward == 0.0


@pytest.mark.parametrize(
    ("answer", "reference"),
    [(42, "42"), ("42.0", 42), (" Paris\n", "paris"), ("New   York", "new york"), (0.1 + 0.2, 0.3)],
)
def test_exact_match_normalizes_before_comparing(answer, reference):
    step = ExactMatch("answer")(_step(task={"answer": reference}, execution=_answer(answer)))
    assert step.reward == 1.0


@pytest.mark.parametrize(("answer", "reference"), [(41, 42), ("Lyon", "Paris"), ("42 apples", "42")])
def test_exact_match_gives_zero_for_a_wrong_answer(answer, reference):
    step = ExactMatch("answer")(_step(task={"answer": reference}, execution=_answer(answer)))
    assert step.reward == 0.0
    assert step.info["rewards"] == {"ExactMatch": 0.0}


def test_exact_match_waits_for_a_final_answer():
    step = ExactMatch("answer")(_step(task={"answer": 1}))
    assert step.info["rewards"] == {}


def test_exact_match_names_a_missing_column():
    with pytest.raises(KeyError, match="'solution'"):
        ExactMatch("solution")(_step(task={"answer": 1}, execution=_answer(1)))


def test_reward_components_sum_to_the_reward_in_an_env(make_env):
    env = make_env(transform=Compose([StepPenalty(0.01), ErrorPenalty(0.1), ExactMatch("answer")]))
    env.reset(options={"task": {"answer": 5}})
    _, reward, _, _, info = env.step("1 / 0")
    assert info["rewards"] == {"StepPenalty": -0.01, "ErrorPenalty": -0.1}
    assert reward == pytest.approx(sum(info["rewards"].values()))
    _, reward, terminated, _, info = env.step("final_answer(add(2, 3))")
    assert terminated
    assert info["rewards"] == {"StepPenalty": -0.01, "ErrorPenalty": 0.0, "ExactMatch": 1.0}
    assert reward == pytest.approx(sum(info["rewards"].values()))


def test_a_custom_transform_is_a_step_to_step_callable(make_env):
    class LengthBonus(Transform):
        def __call__(self, step: Step) -> Step:
            return step.add_reward(self.name, len(step.observation) / 100)

    env = make_env(transform=LengthBonus())
    env.reset()
    _, reward, _, _, info = env.step("print('x' * 9)")
    assert reward == pytest.approx(0.09)
    assert info["rewards"] == {"LengthBonus": pytest.approx(0.09)}


def test_a_transform_that_returns_something_else_is_an_error(make_env):
    class Broken(Transform):
        def __call__(self, step: Step) -> Step:
            return 1.0

    env = make_env(transform=Broken())
    env.reset()
    with pytest.raises(TypeError, match="returned float, not a Step"):
        env.step("1")


def test_without_a_transform_the_reward_is_zero():
    with CalculatorEnv() as env:
        env.reset()
        assert env.step("1")[1] == 0.0
