from pathlib import Path

import numpy as np
import pytest
from conftest import play, run
from gymnasium.utils.env_checker import check_env

from codeact_envs import load_env, load_tasks

BATTLESHIP = Path(__file__).resolve().parents[1] / "envs" / "battleship"


@pytest.fixture(scope="module")
def env():
    env = load_env(BATTLESHIP, trust_remote_code=True)
    yield env
    env.close()


@pytest.fixture(scope="module")
def tasks(env):
    return load_tasks(env, split="test")


@pytest.fixture(scope="module")
def game(tasks):
    """A 6x6 game: ships A1-C1, B3-C3 and B5-B6, 25 shots."""
    task = tasks[0]
    assert task["ships"] == [["A1", "B1", "C1"], ["B3", "C3"], ["B5", "B6"]]
    return task


def _built_at_run_time(texts: list[str]) -> str:
    """Source of a list of `texts` joined from single characters, so the source does not contain them."""
    return "[" + ", ".join(f"''.join({list(text)!r})" for text in texts) + "]"


def test_the_task_set_has_24_games_on_three_board_sizes(tasks):
    assert tasks.num_rows == 24
    assert tasks.column_names == ["task_id", "size", "max_shots", "ships"]
    assert sorted(set(tasks["size"])) == [6, 8, 10]
    assert tasks[0]["task_id"] == "battleship/00"


def test_gymnasium_check_env_passes_in_both_render_modes():
    for render_mode in ("ansi", "rgb_array"):
        with load_env(BATTLESHIP, trust_remote_code=True, render_mode=render_mode) as env:
            check_env(env)


def test_the_oracle_finds_the_fleet_on_every_game(env, tasks):
    failed = [task["task_id"] for task in tasks if play(env, task, env.oracle(task))[0] != 1.0]
    assert failed == []


def test_the_oracle_needs_fewer_shots_than_the_budget_allows(env, tasks):
    for task in tasks:
        _, _, info = play(env, task, env.oracle(task))
        shots = info["execution"].tool_calls - 1
        assert shots <= task["max_shots"] < task["size"] ** 2


def test_a_final_answer_of_none_gets_zero(env, tasks):
    assert [play(env, task, "final_answer(None)")[0] for task in tasks] == [0.0] * 24


def test_doing_nothing_until_max_steps_gets_zero(env, game):
    reward, observations, info = play(env, game, *["pass"] * 20)
    assert reward == 0.0
    assert len(observations) == env.max_steps == 20
    assert info["rewards"] == {"FleetFound": 0.0}


def test_naming_the_fleet_in_any_order_and_case_wins(env, game):
    answer = "final_answer(['b6', 'B5', 'c3', 'B3', 'C1', 'B1', 'A1'])"
    assert play(env, game, answer)[0] == 1.0


def test_a_fleet_with_a_cell_missing_or_added_gets_zero(env, game):
    assert play(env, game, "final_answer(['A1', 'B1', 'C1', 'B3', 'C3', 'B5'])")[0] == 0.0
    assert play(env, game, "final_answer(['A1', 'B1', 'C1', 'B3', 'C3', 'B5', 'B6', 'D1'])")[0] == 0.0


def test_fire_tells_miss_hit_or_sunk(env, game):
    env.reset(options={"task": game})
    assert run(env, "[fire(cell) for cell in ['A2', 'B5', 'b6']]") == "['miss', 'hit', 'sunk']"


def test_the_board_shows_only_what_the_player_has_seen(env, game):
    env.reset(options={"task": game})
    before = run(env, "print(board())")
    assert set(before.split("shots left")[0]) <= set(" .\nABCDEF123456")
    run(env, "fire('A2'), fire('A1'), fire('B5'), fire('B6')")
    assert run(env, "print(board())") == (
        "   1  2  3  4  5  6\n"
        "A  x  o  .  .  .  .\n"
        "B  .  .  .  .  #  #\n"
        "C  .  .  .  .  .  .\n"
        "D  .  .  .  .  .  .\n"
        "E  .  .  .  .  .  .\n"
        "F  .  .  .  .  .  .\n"
        "shots left: 21"
    )


def test_status_counts_shots_and_sunk_ships_only(env, game):
    env.reset(options={"task": game})
    run(env, "fire('B5'), fire('B6'), fire('F6')")
    status = "{'size': 6, 'fleet': [3, 2, 2], 'sunk': [2], 'shots_fired': 3, 'shots_left': 22}"
    assert run(env, "status()") == status


def test_firing_twice_at_a_cell_is_refused_and_costs_no_shot(env, game):
    env.reset(options={"task": game})
    run(env, "fire('D4')")
    assert "ValueError: 'D4' was already fired at (miss); fire at another cell" in run(env, "fire('D4')")
    assert run(env, "status()['shots_left']") == "24"


def test_a_cell_off_the_board_is_refused_with_what_a_cell_looks_like(env, game):
    env.reset(options={"task": game})
    assert "use a row A-F and a column 1-6, e.g. 'B7'" in run(env, "fire('G1')")


def test_no_shot_is_allowed_past_the_budget(env, game):
    env.reset(options={"task": game})
    cells = "[row + str(col) for row in 'DEF' for col in range(1, 7)] + ['A4', 'A5', 'A6', 'C5', 'C6', 'A3', 'A2']"
    run(env, f"for cell in {cells}:\n    fire(cell)")
    assert run(env, "status()['shots_left']") == "0"
    assert "no shots left: all 25 are fired; call final_answer(cells)" in run(env, "fire('C2')")


def test_the_prompt_gives_the_rules_but_not_the_fleet(env, game):
    observation, info = env.reset(options={"task": game})
    assert "6x6 board: rows A-F, columns 1-6" in observation
    assert "lengths 3, 2, 2" in observation
    assert "at most 25 shots" in observation
    assert not any(cell in observation for cell in ["B1", "C1", "B3", "C3", "B5", "B6"])
    assert sorted(info["tools"]) == ["board", "fire", "status"]


def test_the_same_seed_gives_the_sameplay(env, tasks):
    actions = [
        "import random\ncells = [r + str(c) for r in 'ABCDEFGH' for c in range(1, 9)]\nrandom.shuffle(cells)",
        "[fire(cell) for cell in cells[:20]]",
        "print(board())",
        "final_answer(cells[:20])",
    ]
    assert play(env, tasks[9], *actions, seed=3)[1] == play(env, tasks[9], *actions, seed=3)[1]


def test_the_agent_code_cannot_read_the_fleet(env, tasks):
    task = tasks[20]
    env.reset(options={"task": task})
    assert run(env, _scan_for([repr(ship) for ship in task["ships"]])) == "False"


def test_the_scan_finds_a_fleet_that_is_in_the_sandbox(env, tasks):
    task = tasks[20]
    env.reset(options={"task": task})
    run(env, f"open('/tmp/notes.txt', 'w').write({_built_at_run_time([repr(task['ships'][1])])}[0])")
    assert run(env, _scan_for([repr(task["ships"][1])])) == "True"


def _scan_for(texts: list[str]) -> str:
    """Code that says whether any of `texts` is in the interpreter's objects, its environment or its files."""
    return (
        "import gc, os\n"
        "def scan():\n"
        f"    needles = {_built_at_run_time(texts)}\n"
        "    found = any(n in repr(o) for o in gc.get_objects() if o is not needles for n in needles)\n"
        "    found |= any(n in str(dict(os.environ)) for n in needles)\n"
        "    for root, dirs, files in os.walk('/'):\n"
        "        if root == '/':\n"
        "            dirs[:] = [d for d in dirs if d not in ('proc', 'sys', 'dev', 'usr', 'opt')]\n"
        "        for name in files:\n"
        "            try:\n"
        "                text = open(os.path.join(root, name), errors='ignore').read()\n"
        "            except OSError:\n"
        "                continue\n"
        "            found |= any(n in text for n in needles)\n"
        "    return found\n"
        "scan()"
    )


def test_the_picture_is_an_rgb_image_that_changes_after_a_hit(game):
    with load_env(BATTLESHIP, trust_remote_code=True, render_mode="rgb_array") as env:
        env.reset(options={"task": game})
        before = env.render()
        env.step("fire('A2')")
        after_miss = env.render()
        env.step("fire('A1')")
        after_hit = env.render()
    assert before.dtype == np.uint8
    assert before.ndim == 3
    assert before.shape[2] == 3
    assert not np.array_equal(before, after_miss)
    assert not np.array_equal(after_miss, after_hit)


def test_the_picture_reveals_the_ships_left_afloat_only_after_theplay(game):
    with load_env(BATTLESHIP, trust_remote_code=True, render_mode="rgb_array") as env:
        env.reset(options={"task": game})
        during = env.render()
        env.step("final_answer(None)")
        after = env.render()
    grey = np.array([150, 150, 150], dtype=np.uint8)
    assert not (during == grey).all(axis=-1).any()
    assert (after == grey).all(axis=-1).any()


def test_the_ansi_render_is_the_transcript_and_the_visible_board(env, game):
    env.reset(options={"task": game})
    env.step("fire('A1')")
    text = env.render()
    assert "--- action 1 ---\nfire('A1')\n--- observation 1 ---\n'hit'" in text
    assert text.endswith(
        "--- board ---\n"
        "   1  2  3  4  5  6\n"
        "A  x  .  .  .  .  .\n"
        "B  .  .  .  .  .  .\n"
        "C  .  .  .  .  .  .\n"
        "D  .  .  .  .  .  .\n"
        "E  .  .  .  .  .  .\n"
        "F  .  .  .  .  .  .\n"
        "shots left: 24\n"
    )
