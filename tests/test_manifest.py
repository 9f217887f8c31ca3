import shutil
import textwrap
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
    message = _error_for(env_folder, VALID.replace("env:HumanEvalEnv", "env:first_task"))
    assert "not a CodeActEnv subclass" in message


def test_unknown_transform_suggests_the_built_in(env_folder):
    message = _error_for(env_folder, VALID.replace("- UnitTests: {}", "- UnitTest: {}"))
    assert "unknown transform 'UnitTest' (did you mean 'UnitTests'?)" in message
    assert "ExactMatch, UnitTests, StepPenalty, ErrorPenalty" in message


def test_transform_with_wrong_arguments(env_folder):
    message = _error_for(env_folder, VALID.replace("- UnitTests: {}", "- StepPenalty: {penalty: 0.1, size: 2}"))
    assert "transform 'StepPenalty'" in message
    assert "size" in message


def test_transform_entry_that_is_not_a_one_key_mapping(env_folder):
    message = _error_for(env_folder, VALID.replace("- UnitTests: {}", "- UnitTests"))
    assert "expected a one-key mapping like `- StepPenalty: {penalty: 0.01}`, got 'UnitTests'" in message


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
    assert "3 problem(s)" in message
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
