import os
import shutil
import textwrap
import tracemalloc
from pathlib import Path

import pytest

from codeact_envs import ManifestError, load_env

HUMANEVAL = Path(__file__).resolve().parents[1] / "envs" / "humaneval"

VALID = """\
spec_version: hf-rl-env-0.1
environments:
  - id: humaneval
    config_name: default
    splits: [test]
    frameworks:
      codeact_envs:
        min_version: ">=0.1.0"
        entry_point: env:HumanEvalEnv
        kwargs: {max_steps: 8}
        transforms:
          - UnitTests: {}
"""


@pytest.fixture
def env_folder(tmp_path) -> Path:
    """A copy of envs/humaneval whose manifest each test rewrites."""
    folder = tmp_path / "humaneval"
    shutil.copytree(HUMANEVAL, folder)
    return folder


def _load_with(folder: Path, manifest: str, **kwargs):
    (folder / "environment.yaml").write_text(textwrap.dedent(manifest))
    return load_env(folder, trust_remote_code=True, **kwargs)


def _error_for(folder: Path, manifest: str, **kwargs) -> str:
    with pytest.raises(ManifestError) as caught:
        env = _load_with(folder, manifest, **kwargs)
        env.close()
    return str(caught.value)


def test_a_valid_manifest_loads(env_folder):
    env = _load_with(env_folder, VALID)
    assert env.manifest.id == "humaneval"
    assert env.manifest.transforms == (("UnitTests", {}),)
    assert env.max_steps == 8
    env.close()


def test_missing_entry_point(env_folder):
    message = _error_for(env_folder, VALID.replace("        entry_point: env:HumanEvalEnv\n", ""))
    assert "environment.yaml" in message
    assert "frameworks.codeact_envs.entry_point: missing" in message
    assert "entry_point: env:MyEnv" in message


def test_unknown_key_in_our_block_suggests_the_right_one(env_folder):
    message = _error_for(env_folder, VALID.replace("        kwargs:", "        kwarg:"))
    assert "kwarg: unknown key (did you mean 'kwargs'?)" in message


def test_wrong_type_names_the_expected_type_and_the_value(env_folder):
    message = _error_for(env_folder, VALID.replace("kwargs: {max_steps: 8}", "kwargs: [8]"))
    assert "kwargs: expected a mapping, got [8]" in message


def test_entry_point_without_a_colon(env_folder):
    message = _error_for(env_folder, VALID.replace("env:HumanEvalEnv", "env.HumanEvalEnv"))
    assert "expected 'module:Class'" in message
    assert "'env.HumanEvalEnv'" in message


def test_entry_point_naming_a_missing_file_suggests_the_module(env_folder):
    message = _error_for(env_folder, VALID.replace("env:HumanEvalEnv", "envs:HumanEvalEnv"))
    assert "envs.py is not in" in message
    assert "did you mean 'env'?" in message


def test_entry_point_naming_a_missing_class_suggests_the_class(env_folder):
    message = _error_for(env_folder, VALID.replace("env:HumanEvalEnv", "env:HumanEvalEnvv"))
    assert "env.py defines no 'HumanEvalEnvv'" in message
    assert "did you mean 'HumanEvalEnv'?" in message


def test_entry_point_that_is_not_an_env_class(env_folder):
    message = _error_for(env_folder, VALID.replace("env:HumanEvalEnv", "env:INSTRUCTIONS"))
    assert "not a CodeActEnv subclass" in message


def test_unknown_transform_suggests_the_built_in(env_folder):
    message = _error_for(env_folder, VALID.replace("- UnitTests: {}", "- UnitTest: {}"))
    assert "unknown transform 'UnitTest' (did you mean 'UnitTests'?)" in message
    assert "ExactMatch, UnitTests, StepPenalty, ErrorPenalty" in message


def test_transform_with_wrong_arguments(env_folder):
    message = _error_for(env_folder, VALID.replace("- UnitTests: {}", "- StepPenalty: {penalti: 0.1}"))
    assert (
        "transforms[0].StepPenalty.penalti: StepPenalty takes no argument 'penalti' (did you mean 'penalty'?)"
        in message
    )


def test_transform_entry_that_is_a_bare_name_shows_the_mapping_to_write(env_folder):
    message = _error_for(env_folder, VALID.replace("- UnitTests: {}", "- UnitTests"))
    assert "got 'UnitTests': write `- UnitTests: {}`" in message


def test_transform_entry_that_is_not_a_one_key_mapping(env_folder):
    message = _error_for(env_folder, VALID.replace("- UnitTests: {}", "- {UnitTests: {}, StepPenalty: {}}"))
    assert "expected a one-key mapping like `- StepPenalty: {penalty: 0.01}`" in message


def test_wrong_spec_version(env_folder):
    message = _error_for(env_folder, VALID.replace("hf-rl-env-0.1", "hf-rl-env-9"))
    assert "spec_version: expected 'hf-rl-env-0.1', got 'hf-rl-env-9'" in message


def test_an_unquoted_version_that_yaml_reads_as_a_float(env_folder):
    message = _error_for(env_folder, VALID.replace('min_version: ">=0.1.0"', "min_version: 0.1"))
    assert "got 0.1 (float)" in message
    assert "quote it" in message


def test_a_version_specifier_this_library_does_not_satisfy(env_folder):
    message = _error_for(env_folder, VALID.replace('">=0.1.0"', '">=99.0"'))
    assert "pip install -U 'codeact-envs>=99.0'" in message


def test_duplicate_key_is_refused(env_folder):
    message = _error_for(env_folder, VALID.replace("    splits: [test]\n", "    splits: [test]\n    splits: [train]\n"))
    assert "key 'splits' appears twice" in message
    assert "line 6" in message


def test_no_codeact_envs_block(env_folder):
    manifest = """\
    spec_version: hf-rl-env-0.1
    environments:
      - id: other
        frameworks:
          harbor: {min_version: "1.0"}
    """
    message = _error_for(env_folder, manifest)
    assert "no environment declares a codeact_envs block (frameworks found: harbor)" in message


def test_several_declarations_need_an_env_id(env_folder):
    second = VALID.split("environments:\n", 1)[1].replace("id: humaneval", "id: humaneval-hard")
    message = _error_for(env_folder, VALID + second)
    assert "pass env_id= one of humaneval, humaneval-hard" in message


def test_env_id_picks_a_declaration(env_folder):
    second = VALID.split("environments:\n", 1)[1].replace("id: humaneval", "id: humaneval-hard")
    second = second.replace("kwargs: {max_steps: 8}", "kwargs: {max_steps: 3}")
    env = _load_with(env_folder, VALID + second, env_id="humaneval-hard")
    assert env.max_steps == 3
    env.close()


def test_an_unknown_env_id_suggests_one(env_folder):
    message = _error_for(env_folder, VALID, env_id="humaneva")
    assert "no environment with id 'humaneva' (did you mean 'humaneval'?)" in message


def test_empty_environments(env_folder):
    message = _error_for(env_folder, "spec_version: hf-rl-env-0.1\nenvironments: []\n")
    assert "environments: expected a non-empty list" in message


def test_not_yaml(env_folder):
    assert "not valid YAML" in _error_for(env_folder, "environments: [unclosed\n")


def test_hub_field_with_the_wrong_type(env_folder):
    message = _error_for(env_folder, VALID.replace("splits: [test]", "splits: test"))
    assert "splits: expected a list, got 'test'" in message


def test_every_problem_is_reported_at_once(env_folder):
    manifest = VALID.replace("hf-rl-env-0.1", "v2").replace("kwargs:", "kwarg:").replace("- UnitTests", "- Unit")
    message = _error_for(env_folder, manifest)
    assert "3 problems" in message
    assert "spec_version" in message and "kwarg" in message and "'Unit'" in message


def test_other_frameworks_blocks_are_left_alone(env_folder):
    manifest = VALID.replace("    frameworks:\n", "    frameworks:\n      harbor: {anything: [1, 2], goes: here}\n")
    env = _load_with(env_folder, manifest)
    assert env.manifest.entry_point == "env:HumanEvalEnv"
    env.close()


def test_a_missing_manifest_says_what_is_needed(tmp_path):
    with pytest.raises(ManifestError, match=r"needs an environment.yaml at its root"):
        load_env(tmp_path, trust_remote_code=True)


def test_manifest_errors_are_value_errors(env_folder):
    with pytest.raises(ValueError):
        _load_with(env_folder, "spec_version: nope\nenvironments: []\n")


def test_the_other_spelling_of_the_spec_version_is_read(env_folder):
    env = _load_with(env_folder, VALID.replace("hf-rl-env-0.1", "hf-env-0.1"))
    assert env.manifest.id == "humaneval"
    env.close()


def test_a_manifest_without_anything_shows_a_complete_minimal_one(env_folder):
    message = _error_for(env_folder, "frameworks:\n  codeact_envs:\n    entry_point: env:HumanEvalEnv\n")
    assert "spec_version: expected 'hf-rl-env-0.1', got None" in message
    assert (
        "a minimal manifest: {spec_version: hf-rl-env-0.1, environments: [{id: my-env, splits: [test], "
        "frameworks: {codeact_envs: {min_version: '>=0.1.0', entry_point: 'env:MyEnv'}}}]}" in message
    )


def test_missing_splits_are_reported_with_the_other_missing_keys(env_folder):
    message = _error_for(
        env_folder, VALID.replace("    splits: [test]\n", "").replace('        min_version: ">=0.1.0"\n', "")
    )
    assert "2 problems" in message
    assert (
        "environments[id='humaneval'].splits: missing; name the task splits of the env, e.g. splits: [test]" in message
    )
    assert "min_version: missing" in message


def test_a_kwargs_typo_names_the_file_the_key_and_the_argument_meant(env_folder):
    message = _error_for(env_folder, VALID.replace("max_steps: 8", "max_step: 8"))
    assert message == (
        f"{env_folder / 'environment.yaml'}: environments[id='humaneval'].frameworks.codeact_envs.kwargs.max_step: "
        "HumanEvalEnv takes no argument 'max_step' (did you mean 'max_steps'?); it takes max_steps, timeout_s, "
        "memory_mb, max_output_chars, isolation, render_mode"
    )


def test_a_kwargs_value_of_the_wrong_type_is_refused_at_load(env_folder):
    message = _error_for(env_folder, VALID.replace("max_steps: 8", "max_steps: eight"))
    assert "kwargs.max_steps: HumanEvalEnv expects an int for max_steps, got 'eight'" in message


def test_a_kwargs_value_outside_a_literal_names_the_choices(env_folder):
    message = _error_for(env_folder, VALID.replace("max_steps: 8", "isolation: bwrap"))
    assert "kwargs.isolation: HumanEvalEnv expects 'bubblewrap' or 'none' for isolation, got 'bwrap'" in message


def test_transform_is_not_a_manifest_kwarg(env_folder):
    message = _error_for(env_folder, VALID.replace("max_steps: 8", "transform: UnitTests"))
    assert "kwargs.transform: not a manifest argument: declare the rewards under `transforms:` instead" in message


def test_a_load_env_override_typo_is_a_type_error_that_suggests_the_argument(env_folder):
    (env_folder / "environment.yaml").write_text(VALID)
    with pytest.raises(TypeError) as caught:
        load_env(env_folder, trust_remote_code=True, max_step=3)
    assert str(caught.value).startswith(
        "load_env(..., max_step=...): HumanEvalEnv takes no argument 'max_step' (did you mean 'max_steps'?)"
    )


def test_arguments_of_a_subclass_init_that_passes_kwargs_on_are_accepted(env_folder):
    env_py = env_folder / "env.py"
    env_py.write_text(
        env_py.read_text()
        + "\n\nclass Harder(HumanEvalEnv):\n    def __init__(self, level: int = 1, **kwargs):\n"
        + "        super().__init__(**kwargs)\n        self.level = level\n"
    )
    env = _load_with(
        env_folder, VALID.replace("env:HumanEvalEnv", "env:Harder").replace("max_steps: 8", "max_steps: 8, level: 3")
    )
    assert (env.level, env.max_steps) == (3, 8)
    env.close()


def _alias_bomb() -> str:
    """The billion laughs: 9 levels of 9 aliases each, about 700 bytes that expand to 9**9 strings."""
    levels = ["a: &a [" + ",".join(['"lol"'] * 9) + "]"]
    for name, previous in zip("bcdefghi", "abcdefgh", strict=True):
        levels.append(f"{name}: &{name} [" + ",".join([f"*{previous}"] * 9) + "]")
    return "spec_version: hf-rl-env-0.1\n" + "\n".join(levels) + "\nenvironments: *i\n"


def test_a_yaml_alias_bomb_is_refused_at_once_with_little_memory(env_folder):
    bomb = _alias_bomb()
    assert len(bomb) < 800
    tracemalloc.start()
    try:
        message = _error_for(env_folder, bomb)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert "line 3: the alias *a is not allowed (aliases can expand a small file into a huge document)" in message
    assert peak < 2 * 1024**2


def test_any_alias_is_refused(env_folder):
    manifest = VALID.replace("kwargs: {max_steps: 8}", "kwargs: &defaults {max_steps: 8}") + "x: *defaults\n"
    assert "the alias *defaults is not allowed" in _error_for(env_folder, manifest)


def test_an_oversized_manifest_is_refused_by_its_size(env_folder):
    message = _error_for(env_folder, VALID + "description_of_everything: " + "x" * 3_000_000 + "\n")
    assert "environment.yaml: more than 262144 bytes; an env's metadata is small" in message


def test_deep_nesting_is_refused(env_folder):
    message = _error_for(env_folder, VALID + "deep: " + "[" * 5000 + "]" * 5000 + "\n")
    assert "nested deeper than 32 levels" in message


def test_a_huge_integer_is_a_manifest_error(env_folder):
    message = _error_for(env_folder, VALID.replace("max_steps: 8", "max_steps: " + "9" * 5000))
    assert "not valid YAML" in message


def test_a_manifest_that_is_not_utf8_names_the_byte(env_folder):
    (env_folder / "environment.yaml").write_bytes(VALID.replace("humaneval", "humaneval\xe9").encode("latin-1"))
    with pytest.raises(
        ManifestError, match=r"environment.yaml: not UTF-8 text \(byte \d+ is b'\\xe9'\); save it as UTF-8"
    ):
        load_env(env_folder, trust_remote_code=True)


def test_a_manifest_linking_outside_the_folder_is_not_read(env_folder, tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("hf_secret_token_value\n")
    (env_folder / "environment.yaml").unlink()
    (env_folder / "environment.yaml").symlink_to(secret)
    with pytest.raises(ManifestError) as caught:
        load_env(env_folder, trust_remote_code=True)
    assert f"links to {str(secret)!r}, outside" in str(caught.value)
    assert "hf_secret_token_value" not in str(caught.value)


def test_a_manifest_that_is_a_fifo_is_refused_without_blocking(env_folder):
    (env_folder / "environment.yaml").unlink()
    os.mkfifo(env_folder / "environment.yaml")
    with pytest.raises(ManifestError, match=r"environment\.yaml: not a regular file"):
        load_env(env_folder, trust_remote_code=True)


def test_the_manifest_is_read_before_the_trust_decision(env_folder):
    (env_folder / "environment.yaml").write_text(_alias_bomb())
    with pytest.raises(ManifestError, match="alias"):
        load_env(env_folder)


def test_two_declarations_with_one_id_are_refused(env_folder):
    second = VALID.split("environments:\n", 1)[1]
    message = _error_for(env_folder, VALID + second)
    assert "environments: the id 'humaneval' is declared 2 times; give each its own id" in message


def test_a_manifest_with_a_near_name_is_suggested(env_folder):
    (env_folder / "environment.yaml").rename(env_folder / "environment.yml")
    with pytest.raises(ManifestError, match=r"at its root \(did you mean 'environment\.yml'\?\)$"):
        load_env(env_folder, trust_remote_code=True)
