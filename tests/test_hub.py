import shutil
import socket
from datetime import datetime
from pathlib import Path

import datasets
import huggingface_hub
import pytest
from huggingface_hub import HfApi, hf_hub_download
from huggingface_hub.repocard import metadata_load

from codeact_envs import EnvInfo, list_envs, load_env, load_tasks, push_to_hub

HUMANEVAL = Path(__file__).resolve().parents[1] / "envs" / "humaneval"


@pytest.fixture(autouse=True)
def _every_request_had_a_route(hub):
    yield
    assert hub.unhandled == []


@pytest.fixture(scope="module")
def pushed(hub) -> str:
    """envs/humaneval, pushed to the test Hub as org/humaneval; the commit id."""
    return push_to_hub(HUMANEVAL, "org/humaneval")


@pytest.fixture
def copy(tmp_path) -> Path:
    """A copy of envs/humaneval to edit."""
    folder = tmp_path / "humaneval"
    shutil.copytree(HUMANEVAL, folder, ignore=shutil.ignore_patterns("__pycache__"))
    return folder


def _oracle_reward(env, task) -> float:
    env.reset(seed=0, options={"task": task})
    _, reward, terminated, _, _ = env.step(env.oracle(task))
    assert terminated
    return reward


def _closed_port_url() -> str:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{probe.getsockname()[1]}"


def test_a_pushed_env_loads_by_name_and_its_oracle_scores_1(pushed):
    with load_env("org/humaneval", trust_remote_code=True) as env:
        task = next(iter(load_tasks(env, split="test", streaming=True)))
        assert _oracle_reward(env, task) == 1.0
        assert env.repo_id == "org/humaneval"
        assert env.commit == pushed


def test_each_push_is_one_commit(hub, copy):
    push_to_hub(copy, "org/one-commit-each")
    assert hub.commit_messages("org/one-commit-each") == ["initial commit", "Upload codeact env"]
    (copy / "env.py").write_text((copy / "env.py").read_text() + "\nVERSION = 2\n")
    push_to_hub(copy, "org/one-commit-each", commit_message="Second version")
    assert hub.commit_messages("org/one-commit-each") == ["initial commit", "Upload codeact env", "Second version"]


def test_the_repo_mirrors_the_folder(copy):
    (copy / "helpers.py").write_text("ANSWER = 42\n")
    push_to_hub(copy, "org/mirrored")
    (copy / "helpers.py").unlink()
    push_to_hub(copy, "org/mirrored")
    files = HfApi().list_repo_files("org/mirrored", repo_type="dataset")
    assert sorted(files) == [
        ".gitattributes",
        "README.md",
        "data/test-00000-of-00001.parquet",
        "env.py",
        "environment.yaml",
    ]


def test_revision_loads_an_earlier_version(copy):
    first = push_to_hub(copy, "org/versioned")
    manifest = copy / "environment.yaml"
    manifest.write_text(manifest.read_text().replace("max_steps: 8", "max_steps: 5"))
    second = push_to_hub(copy, "org/versioned")
    with load_env("org/versioned", revision=first, trust_remote_code=True) as env:
        assert (env.commit, env.max_steps) == (first, 8)
    with load_env("org/versioned", trust_remote_code=True) as env:
        assert (env.commit, env.max_steps) == (second, 5)


def test_task_rows_stream_from_the_env_repo(pushed):
    with load_env("org/humaneval", trust_remote_code=True) as env:
        rows = load_tasks(env, split="test", streaming=True)
        assert isinstance(rows, datasets.IterableDataset)
        task_ids = [row["task_id"] for row, _ in zip(rows, range(3), strict=False)]
    assert task_ids == ["HumanEval/0", "HumanEval/1", "HumanEval/2"]


def test_task_rows_stream_from_the_dataset_the_manifest_names(copy):
    tasks = datasets.load_dataset(str(HUMANEVAL), split="test").select(range(3))
    tasks.push_to_hub("org/humaneval-tasks", split="test")
    shutil.rmtree(copy / "data")
    (copy / "README.md").unlink()
    manifest = copy / "environment.yaml"
    manifest.write_text(
        manifest.read_text().replace("splits: [test]", "splits: [test]\n    dataset: org/humaneval-tasks")
    )
    push_to_hub(copy, "org/humaneval-remote-tasks")
    with load_env("org/humaneval-remote-tasks", trust_remote_code=True) as env:
        rewards = [_oracle_reward(env, task) for task in load_tasks(env, split="test", streaming=True)]
    assert rewards == [1.0, 1.0, 1.0]


def test_load_env_works_offline_from_the_cache(hub, pushed, monkeypatch):
    load_env("org/humaneval", trust_remote_code=True).close()
    requests_before = len(hub.requests)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with load_env("org/humaneval", trust_remote_code=True) as env:
        assert env.commit == pushed
    assert len(hub.requests) == requests_before


def test_offline_without_a_cached_copy_says_to_unset_offline_mode(copy, monkeypatch):
    push_to_hub(copy, "org/never-downloaded")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(ConnectionError, match=r"HF_HUB_OFFLINE is set .* 'org/never-downloaded'; unset HF_HUB_OFFLINE"):
        load_env("org/never-downloaded", trust_remote_code=True)


def test_an_unknown_repo_names_it_and_the_fix():
    with pytest.raises(
        FileNotFoundError, match=r"no dataset repo 'org/missing' at .*check the repo id, or pass token="
    ):
        load_env("org/missing", trust_remote_code=True)


def test_an_unknown_revision_names_it(pushed):
    with pytest.raises(ValueError, match=r"'org/humaneval' has no revision 'v9'; pass a branch, tag or commit id"):
        load_env("org/humaneval", revision="v9", trust_remote_code=True)


def test_loading_from_the_hub_without_trust_says_what_to_pass(pushed):
    with pytest.raises(ValueError, match=r"loading 'org/humaneval' runs its Python code .*trust_remote_code=True"):
        load_env("org/humaneval")


def test_a_missing_requirement_fails_with_the_pip_line(copy):
    (copy / "requirements.txt").write_text("surely-not-installed-package>=1.0\n")
    HfApi().create_repo("org/needs-a-package", repo_type="dataset")
    HfApi().upload_folder(repo_id="org/needs-a-package", folder_path=copy, repo_type="dataset")
    with pytest.raises(ImportError, match=r"pip install 'surely-not-installed-package>=1.0'$"):
        load_env("org/needs-a-package", trust_remote_code=True)


def test_an_unreachable_hub_names_the_endpoint_and_leaves_no_files(pushed, monkeypatch, tmp_path):
    closed = _closed_port_url()
    monkeypatch.setattr(huggingface_hub.constants, "ENDPOINT", closed)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path))
    with pytest.raises(ConnectionError, match=rf"could not reach the Hub at {closed} .*HF_HUB_OFFLINE=1"):
        load_env("org/humaneval", trust_remote_code=True)
    assert list(tmp_path.iterdir()) == []


def test_push_refuses_a_card_without_the_tags(hub, copy):
    card = copy / "README.md"
    card.write_text(card.read_text().replace("  - rl-environment\n  - codeact-env\n", ""))
    with pytest.raises(ValueError, match=r"without 'rl-environment', 'codeact-env'; add them to the `tags:` list"):
        push_to_hub(copy, "org/untagged")
    assert ("dataset", "org/untagged") not in hub.repos


def test_push_without_a_card_writes_one_with_the_tags(copy):
    (copy / "README.md").unlink()
    commit = push_to_hub(copy, "org/no-card")
    card = metadata_load(hf_hub_download("org/no-card", "README.md", repo_type="dataset", revision=commit))
    assert card["tags"] == ["rl-environment", "codeact-env"]
    assert card["configs"] == [
        {"config_name": "default", "data_files": [{"split": "test", "path": "data/test-*.parquet"}]}
    ]
    assert not (copy / "README.md").exists()
    with load_env("org/no-card", trust_remote_code=True) as env:
        assert next(iter(load_tasks(env, split="test", streaming=True)))["task_id"] == "HumanEval/0"


def test_list_envs_finds_pushed_envs_with_their_description(pushed):
    datasets.Dataset.from_list([{"x": 1}]).push_to_hub("org/not-an-env")
    found = {env.repo_id: env for env in list_envs()}
    assert "org/not-an-env" not in found
    humaneval = found["org/humaneval"]
    assert isinstance(humaneval, EnvInfo)
    assert humaneval.description.startswith("The 164 hand-written Python problems of HumanEval")
    assert isinstance(humaneval.last_modified, datetime)
