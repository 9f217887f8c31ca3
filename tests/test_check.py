import shutil
import tracemalloc
from pathlib import Path

import gymnasium
import pyarrow.parquet as pq
import pytest
from gymnasium.utils.env_checker import check_env

from codeact_envs import CodeActEnv, EnvOrigin, ManifestError, check, load_env, load_tasks, tool

ROOT = Path(__file__).resolve().parents[1]
HUMANEVAL = ROOT / "envs" / "humaneval"
BATTLESHIP = ROOT / "envs" / "battleship"


class Shop(CodeActEnv):
    """The README's example env, built directly (no folder, no task set)."""

    def setup(self, task):
        return f"How much do {task['count']} {task['fruit']}s cost?"

    @tool
    def price(self, name: str) -> int:
        """The price of one fruit, in cents."""
        return 50


@pytest.fixture
def copy(tmp_path) -> Path:
    folder = tmp_path / "humaneval"
    shutil.copytree(HUMANEVAL, folder)
    return folder


def test_reset_without_a_task_plays_the_first_task_of_the_first_split():
    with load_env(HUMANEVAL, trust_remote_code=True) as env:
        observation, _ = env.reset()
        first = load_tasks(env, split="test")[0]
        assert env.task == first
        assert observation == env.setup(first)


def test_reset_with_empty_options_is_a_reset_without_a_task():
    with load_env(HUMANEVAL, trust_remote_code=True) as env:
        assert env.reset(options={})[0] == env.reset()[0]


def test_an_env_built_directly_asks_for_a_task_when_its_setup_needs_one():
    with Shop() as env, pytest.raises(ValueError) as caught:
        env.reset()
    assert str(caught.value) == (
        "Shop.setup raised KeyError('count') on the empty task {}: reset() got no task, and Shop has no task set "
        "since it was not built by load_env; pass one: env.reset(options={'task': row})"
    )


def test_an_env_built_directly_plays_the_task_it_is_given():
    with Shop() as env:
        assert env.reset(options={"task": {"fruit": "pear", "count": 2}})[0] == "How much do 2 pears cost?"


def test_gymnasium_check_env_passes_on_every_shipped_env_without_a_task():
    for name in ("humaneval", "toolchain", "battleship"):
        with load_env(ROOT / "envs" / name, trust_remote_code=True) as env:
            check_env(env)


def test_load_env_hands_the_env_where_it_came_from():
    with load_env(HUMANEVAL, trust_remote_code=True, max_steps=3) as env:
        assert (env.repo_id, env.commit, env.manifest.id) == (str(HUMANEVAL), None, "humaneval")
        assert env.spec.entry_point == "codeact_envs:load_env"
        assert env.spec.kwargs["max_steps"] == 3
        made = gymnasium.make(env.spec)
        assert made.unwrapped.max_steps == 3
        assert made.unwrapped.repo_id == str(HUMANEVAL)
        made.close()


def test_an_env_built_directly_came_from_nowhere():
    with Shop() as env:
        assert (env.repo_id, env.commit, env.manifest, env.spec) == (None, None, None, None)


def test_an_origin_is_an_argument_of_the_env_class():
    with load_env(HUMANEVAL, trust_remote_code=True) as loaded:
        origin = EnvOrigin(repo_id="org/shop", commit="a" * 40, manifest=loaded.manifest)
    with Shop(origin=origin) as env:
        assert (env.repo_id, env.commit, env.manifest) == ("org/shop", "a" * 40, loaded.manifest)


def test_check_names_the_line_of_env_code_that_raised(copy):
    env_py = copy / "env.py"
    env_py.write_text(env_py.read_text().replace('return task["prompt"] +', 'return task["solution"] +'))
    problems = check(copy, trust_remote_code=True, max_tasks=2).problems
    assert len(problems) == 1
    assert problems[0].startswith("task row 0: the oracle's episode raised KeyError: 'solution' (at env.py, line ")
    assert problems[0].endswith(", in oracle)")


def test_a_custom_transform_declares_the_columns_it_reads(tmp_path):
    folder = tmp_path / "battleship-without-ships"
    shutil.copytree(BATTLESHIP, folder)
    data = folder / "data" / "test-00000-of-00001.parquet"
    table = pq.read_table(data).replace_schema_metadata(None)
    pq.write_table(table.rename_columns(["fleet" if name == "ships" else name for name in table.column_names]), data)
    problems = check(folder, trust_remote_code=True).problems
    assert len(problems) == 1
    assert "the task rows of split 'test' have no column 'ships', which FleetFound() needs" in problems[0]


def _card_bomb() -> str:
    levels = ["a: &a [" + ",".join(['"lol"'] * 9) + "]"]
    for name, previous in zip("bcdefghi", "abcdefgh", strict=True):
        levels.append(f"{name}: &{name} [" + ",".join([f"*{previous}"] * 9) + "]")
    return "---\n" + "\n".join(levels) + "\ntags: *i\n---\n# A card\n"


def test_a_card_front_matter_bomb_is_refused_before_datasets_reads_the_card(copy):
    (copy / "README.md").write_text(_card_bomb())
    with load_env(copy, trust_remote_code=True) as env:
        tracemalloc.start()
        try:
            with pytest.raises(
                ManifestError, match=r"README\.md \(front matter\): line 2: the alias \*a is not allowed"
            ):
                load_tasks(env, split="test")
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert peak < 2 * 1024**2


def test_check_reports_a_card_front_matter_bomb(copy):
    (copy / "README.md").write_text(_card_bomb())
    problems = check(copy, trust_remote_code=True).problems
    assert problems
    assert all("the alias *a is not allowed" in problem for problem in problems)


def test_a_card_linking_outside_the_folder_is_not_read(copy, tmp_path):
    secret = tmp_path / "secret.md"
    secret.write_text("---\ntags: [hf_secret_value]\n---\n")
    (copy / "README.md").unlink()
    (copy / "README.md").symlink_to(secret)
    with load_env(copy, trust_remote_code=True) as env, pytest.raises(ManifestError) as caught:
        load_tasks(env, split="test")
    assert "outside" in str(caught.value)
    assert "hf_secret_value" not in str(caught.value)


def test_a_card_config_without_a_declared_split_fails_check(copy):
    card = copy / "README.md"
    card.write_text(card.read_text().replace("split: test", "split: train"))
    problems = check(copy, trust_remote_code=True).problems
    assert problems[0] == (
        f"{card}: config 'default' has no data files for split(s) 'test' of the manifest; list them under its "
        "data_files, e.g. configs: [{config_name: default, data_files: [{split: test, path: 'data/test-*.parquet'}]}]"
    )


def test_requirements_linking_outside_the_folder_are_not_read(copy):
    (copy / "requirements.txt").symlink_to("/dev/zero")
    with pytest.raises(ManifestError, match=r"requirements\.txt: links to '/dev/zero', outside"):
        load_env(copy, trust_remote_code=True)
