import os
import shutil
import socket
import threading
from datetime import datetime
from pathlib import Path

import datasets
import huggingface_hub
import pytest
from huggingface_hub import HfApi, hf_hub_download
from huggingface_hub.repocard import metadata_load

from codeact_envs import EnvInfo, UntrustedCodeError, check, list_envs, load_env, load_tasks, push_to_hub

HUMANEVAL = Path(__file__).resolve().parents[1] / "envs" / "humaneval"


@pytest.fixture(autouse=True)
def _every_request_had_a_route(hub):
    yield
    assert hub.unhandled == []


@pytest.fixture(scope="module")
def pushed(hub) -> str:
    """envs/humaneval, pushed to the test Hub as org/humaneval; the commit id."""
    return push_to_hub(HUMANEVAL, "org/humaneval", trust_remote_code=True)


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
    push_to_hub(copy, "org/one-commit-each", trust_remote_code=True)
    assert hub.commit_messages("org/one-commit-each") == ["initial commit", "Upload codeact env"]
    (copy / "env.py").write_text((copy / "env.py").read_text() + "\nVERSION = 2\n")
    push_to_hub(copy, "org/one-commit-each", commit_message="Second version", trust_remote_code=True)
    assert hub.commit_messages("org/one-commit-each") == ["initial commit", "Upload codeact env", "Second version"]


def test_the_repo_mirrors_the_folder(copy):
    (copy / "helpers.py").write_text("ANSWER = 42\n")
    push_to_hub(copy, "org/mirrored", trust_remote_code=True)
    (copy / "helpers.py").unlink()
    push_to_hub(copy, "org/mirrored", trust_remote_code=True)
    files = HfApi().list_repo_files("org/mirrored", repo_type="dataset")
    assert sorted(files) == [
        ".gitattributes",
        "README.md",
        "data/test-00000-of-00001.parquet",
        "env.py",
        "environment.yaml",
    ]


def test_revision_loads_an_earlier_version(copy):
    first = push_to_hub(copy, "org/versioned", trust_remote_code=True)
    manifest = copy / "environment.yaml"
    manifest.write_text(manifest.read_text().replace("max_steps: 8", "max_steps: 5"))
    second = push_to_hub(copy, "org/versioned", trust_remote_code=True)
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
    push_to_hub(copy, "org/humaneval-remote-tasks", trust_remote_code=True)
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
    push_to_hub(copy, "org/never-downloaded", trust_remote_code=True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(ConnectionError, match=r"HF_HUB_OFFLINE is set .* 'org/never-downloaded'; unset HF_HUB_OFFLINE"):
        load_env("org/never-downloaded", trust_remote_code=True)


def test_an_unknown_repo_names_it_and_the_fix(hub):
    with pytest.raises(FileNotFoundError) as caught:
        load_env("org/missing", trust_remote_code=True)
    assert str(caught.value) == (
        f"'org/missing' is neither an env folder here nor a dataset repo on the Hub at {hub.url}; check the path "
        "or the repo id (pass token= if the repo is private)"
    )


def test_an_unknown_revision_names_it(pushed):
    with pytest.raises(ValueError, match=r"'org/humaneval' has no revision 'v9'; pass a branch, tag or commit id"):
        load_env("org/humaneval", revision="v9", trust_remote_code=True)


def test_loading_from_the_hub_without_trust_says_what_to_pass(pushed):
    with pytest.raises(UntrustedCodeError) as caught:
        load_env("org/humaneval")
    assert str(caught.value) == (
        "'org/humaneval' runs its Python code (env.py) on this machine; if you trust it, pass trust_remote_code=True"
    )


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
    with pytest.raises(ConnectionError) as caught:
        load_env("org/humaneval", trust_remote_code=True)
    assert str(caught.value).startswith(
        f"'org/humaneval' is not a folder here, and could not reach the Hub at {closed} (ConnectError: "
    )
    assert str(caught.value).endswith("(set HF_HUB_OFFLINE=1 to load envs from the cache only)")
    assert list(tmp_path.iterdir()) == []


def test_push_refuses_a_card_without_the_tags(hub, copy):
    card = copy / "README.md"
    card.write_text(card.read_text().replace("  - rl-environment\n  - codeact-env\n", ""))
    with pytest.raises(ValueError) as caught:
        push_to_hub(copy, "org/untagged", trust_remote_code=True)
    assert str(caught.value) == (
        f"{copy} fails check, so it was not pushed: {copy / 'README.md'}: the card's tags are ['code'], without "
        "'rl-environment', 'codeact-env'; add them to the `tags:` list of its YAML front matter "
        "(tags: [rl-environment, codeact-env])"
    )
    assert ("dataset", "org/untagged") not in hub.repos


def test_push_without_a_card_writes_one_with_the_tags(copy):
    (copy / "README.md").unlink()
    commit = push_to_hub(copy, "org/no-card", trust_remote_code=True)
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


def test_push_without_trust_runs_none_of_the_folders_code(hub, copy):
    marker = copy.parent / "env-code-ran"
    env_py = copy / "env.py"
    env_py.write_text(f"import pathlib\npathlib.Path({str(marker)!r}).touch()\n" + env_py.read_text())
    with pytest.raises(UntrustedCodeError, match=r"runs its Python code \(env\.py\) on this machine"):
        push_to_hub(copy, "org/untrusted")
    assert not marker.exists()
    assert ("dataset", "org/untrusted") not in hub.repos


def test_push_refuses_a_link_to_a_file_outside_the_folder_and_names_it(hub, copy, tmp_path):
    token = tmp_path / "token"
    token.write_text("hf_not_for_the_hub\n")
    (copy / "notes.txt").symlink_to(token)
    with pytest.raises(ValueError) as caught:
        push_to_hub(copy, "org/leaky", trust_remote_code=True)
    assert f"{copy / 'notes.txt'}: links to {str(token)!r}, outside the env folder" in str(caught.value)
    assert ("dataset", "org/leaky") not in hub.repos


def test_push_refuses_a_linked_folder_outside_the_env_folder(hub, copy, tmp_path):
    outside = tmp_path / "home"
    outside.mkdir()
    (outside / "credentials").write_text("secret\n")
    (copy / "extra").symlink_to(outside, target_is_directory=True)
    with pytest.raises(ValueError, match=r"extra: links to .*outside the env folder"):
        push_to_hub(copy, "org/leaky-folder", trust_remote_code=True)
    assert ("dataset", "org/leaky-folder") not in hub.repos


def test_push_refuses_a_hard_link(hub, copy, tmp_path):
    outside = tmp_path / "token"
    outside.write_text("secret\n")
    os.link(outside, copy / "token.txt")
    with pytest.raises(ValueError, match=r"token\.txt: a hard link \(2 names for one file\)"):
        push_to_hub(copy, "org/hard-linked", trust_remote_code=True)


def test_push_refuses_a_fifo(hub, copy):
    os.mkfifo(copy / "pipe")
    with pytest.raises(ValueError, match=r"pipe: not a regular file \(a FIFO, socket or device\)"):
        push_to_hub(copy, "org/with-a-pipe", trust_remote_code=True)


def test_links_inside_the_folder_are_published(copy):
    (copy / "solution_notes.md").write_text("notes\n")
    (copy / "notes_link.md").symlink_to("solution_notes.md")
    commit = push_to_hub(copy, "org/linked-inside", trust_remote_code=True)
    path = hf_hub_download("org/linked-inside", "notes_link.md", repo_type="dataset", revision=commit)
    assert Path(path).read_text() == "notes\n"


def test_push_gives_the_verdict_of_check(hub, copy):
    card = copy / "README.md"
    card.write_text(card.read_text().replace("configs:\n", "old_configs:\n"))
    problems = check(copy, trust_remote_code=True).problems
    assert problems == [
        f"{card}: the card's front matter has no `configs:`, so `datasets` cannot tell which files hold the tasks "
        "of each split; add configs: [{config_name: default, data_files: [{split: test, path: "
        "'data/test-*.parquet'}]}]"
    ]
    with pytest.raises(ValueError) as caught:
        push_to_hub(copy, "org/no-configs", trust_remote_code=True)
    assert str(caught.value) == f"{copy} fails check, so it was not pushed: {problems[0]}"


class _RefusingServer:
    """A TCP port on 127.0.0.1 that accepts each connection and closes it at once, counting them."""

    def __init__(self):
        self.socket = socket.create_server(("127.0.0.1", 0))
        self.socket.settimeout(0.05)
        self.url = f"http://127.0.0.1:{self.socket.getsockname()[1]}"
        self.connections = 0
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        while not self.stopped.is_set():
            try:
                connection, _ = self.socket.accept()
            except TimeoutError:
                continue
            self.connections += 1
            connection.close()

    def close(self):
        self.stopped.set()
        self.thread.join()
        self.socket.close()


@pytest.fixture
def refusing_hub(monkeypatch):
    """The Hub clients pointed at a server that drops every connection."""
    server = _RefusingServer()
    monkeypatch.setattr(huggingface_hub.constants, "ENDPOINT", server.url)
    yield server
    server.close()


def test_listing_without_a_reachable_hub_fails_at_the_first_try(refusing_hub):
    with pytest.raises(ConnectionError) as caught:
        list_envs()
    assert str(caught.value).startswith(f"could not reach the Hub at {refusing_hub.url} (")
    assert str(caught.value).endswith("to list envs; check the network and HF_ENDPOINT")
    assert refusing_hub.connections == 1


def test_listing_offline_says_to_unset_offline_mode(monkeypatch):
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(ConnectionError, match=r"^HF_HUB_OFFLINE is set, and it takes the Hub to list envs; unset"):
        list_envs()


def test_pushing_without_a_reachable_hub_fails_before_running_the_check(refusing_hub, copy):
    marker = copy.parent / "env-code-ran"
    env_py = copy / "env.py"
    env_py.write_text(f"import pathlib\npathlib.Path({str(marker)!r}).touch()\n" + env_py.read_text())
    with pytest.raises(ConnectionError, match=rf"^could not reach the Hub at {refusing_hub.url} .* to push to 'org/x'"):
        push_to_hub(copy, "org/x", trust_remote_code=True)
    assert not marker.exists()
    assert refusing_hub.connections == 1


def test_an_env_from_the_hub_resets_without_a_task_to_its_first_task(pushed):
    with load_env("org/humaneval", trust_remote_code=True) as env:
        observation, _ = env.reset()
        assert env.task["task_id"] == "HumanEval/0"
        assert observation == env.setup(env.task)


def test_check_on_a_hub_repo_passes(pushed):
    report = check("org/humaneval", trust_remote_code=True, max_tasks=3)
    assert report.problems == []
    assert report.tasks_tried == 3


def test_push_checks_every_env_the_manifest_declares(hub, copy):
    manifest = copy / "environment.yaml"
    text = manifest.read_text()
    second = text.split("environments:\n", 1)[1].replace("id: humaneval", "id: humaneval-broken")
    manifest.write_text(text + second.replace("- UnitTests: {setup_column: prompt}", "- StepPenalty: {penalty: -1.0}"))
    with pytest.raises(ValueError) as caught:
        push_to_hub(copy, "org/two-envs", trust_remote_code=True)
    assert str(caught.value).startswith(f"{copy} fails check")
    assert "env 'humaneval-broken': " in str(caught.value)
    assert "scores as well as the oracle" in str(caught.value)
    manifest.write_text(text + second)
    commit = push_to_hub(copy, "org/two-envs", trust_remote_code=True)
    with load_env("org/two-envs", env_id="humaneval-broken", trust_remote_code=True) as env:
        assert env.commit == commit


def test_a_push_the_hub_refuses_names_the_fix(hub, copy):
    hub.writes_refused = True
    try:
        with pytest.raises(PermissionError) as caught:
            push_to_hub(copy, "org/refused", trust_remote_code=True)
    finally:
        hub.writes_refused = False
    assert str(caught.value) == (
        f"the Hub at {hub.url} refused to push to 'org/refused' (HTTP 401); log in with `hf auth login`, or pass a "
        "token with write access (token= or --token)"
    )


def test_push_to_a_malformed_repo_id_fails_before_the_check(copy):
    with pytest.raises(ValueError, match=r"^'org/a/b' is not a Hub repo id \('org/name': "):
        push_to_hub(copy, "org/a/b", trust_remote_code=True)


def test_a_link_the_folders_code_makes_while_checked_is_refused(hub, copy, tmp_path):
    token = tmp_path / "token"
    token.write_text("secret\n")
    link = copy / "made_while_checked.txt"
    env_py = copy / "env.py"
    env_py.write_text(
        env_py.read_text().replace(
            "    def setup(self, task: dict[str, Any]) -> str:\n",
            "    def setup(self, task: dict[str, Any]) -> str:\n"
            f"        import pathlib\n        link = pathlib.Path({str(link)!r})\n"
            f"        link.exists() or link.symlink_to({str(token)!r})\n",
        )
    )
    with pytest.raises(ValueError, match=r"made_while_checked\.txt: links to .*outside the env folder"):
        push_to_hub(copy, "org/late-link", trust_remote_code=True)
    assert ("dataset", "org/late-link") not in hub.repos
