"""The Hugging Face Hub side: env repos are dataset repos with an `environment.yaml` at their root.

`huggingface_hub` is imported where it is used: it reads `HF_ENDPOINT` and `HF_HUB_OFFLINE` once, when first
imported, and importing this module should not be what fixes them.
"""

import contextlib
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import yaml

from ._env import CodeActEnv, defines_oracle
from ._loading import CODE_PATTERNS, load_env, load_tasks
from ._manifest import Manifest

ENV_TAG = "codeact-env"
HUB_TAGS = ("rl-environment", ENV_TAG)
CARD_FILE = "README.md"
_MIRRORED = "*"
_NOT_UPLOADED = ["__pycache__/*", "*/__pycache__/*"]


@dataclass(frozen=True)
class EnvInfo:
    """An env published on the Hub.

    Attributes:
        repo_id: The dataset repo, for `load_env(repo_id)`.
        description: What the Hub shows of the repo's card.
        last_modified: The time of the repo's last commit.
    """

    repo_id: str
    description: str
    last_modified: datetime | None


def download_env(repo_id: str, *, revision: str | None, token: str | bool | None) -> tuple[Path, str]:
    """Fetch an env repo's code, manifest and card (not its task data); return the folder and its commit."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError, RepositoryNotFoundError, RevisionNotFoundError

    try:
        folder = snapshot_download(
            repo_id, repo_type="dataset", revision=revision, token=token, allow_patterns=CODE_PATTERNS
        )
    except RevisionNotFoundError as e:
        raise ValueError(
            f"the env repo {repo_id!r} has no revision {revision!r}; pass a branch, tag or commit id of it"
        ) from e
    except RepositoryNotFoundError as e:
        raise FileNotFoundError(
            f"no dataset repo {repo_id!r} at {_endpoint()}; check the repo id, or pass token= if the repo is private"
        ) from e
    except LocalEntryNotFoundError as e:
        raise _unavailable(repo_id, revision, e) from e
    return Path(folder), Path(folder).name


def push_to_hub(
    env_dir: str | Path,
    repo_id: str,
    *,
    private: bool | None = None,
    token: str | bool | None = None,
    commit_message: str = "Upload codeact env",
) -> str:
    """Check an env folder, then publish it as a Hub dataset repo in one commit.

    The check loads the folder as `load_env` would and plays one episode: the first task of the first split,
    one action (the env's oracle, or `final_answer(None)`). A folder without a `README.md` gets a minimal card
    (tags `rl-environment` and `codeact-env`, a `configs:` entry per split) in the upload, not on disk.

    Args:
        env_dir: The env folder: `environment.yaml`, code, card and `data/`.
        repo_id: The dataset repo to create or update (`"org/name"`).
        private: Visibility of a repo that does not exist yet (default: the Hub's).
        token: Hub token with write access (default: the logged-in one).
        commit_message: The message of the commit.

    Returns:
        The id of the commit, for `load_env(repo_id, revision=...)`.
    """
    from huggingface_hub import HfApi

    folder = Path(env_dir)
    manifest = _checked(folder)
    api = HfApi(token=token)
    api.create_repo(repo_id, repo_type="dataset", private=private, exist_ok=True)
    with _with_card(folder, manifest) as upload_dir:
        commit = api.upload_folder(
            repo_id=repo_id,
            folder_path=upload_dir,
            repo_type="dataset",
            commit_message=commit_message,
            ignore_patterns=_NOT_UPLOADED,
            delete_patterns=_MIRRORED,
        )
    return commit.oid


def list_envs(*, token: str | bool | None = None) -> list[EnvInfo]:
    """The envs published on the Hub: its dataset repos tagged `codeact-env`.

    Args:
        token: Hub token, to also see private repos (default: the logged-in one).
    """
    from huggingface_hub import HfApi

    repos = HfApi(token=token).list_datasets(filter=ENV_TAG, expand=["description", "lastModified"])
    return [EnvInfo(repo.id, repo.description or "", repo.last_modified) for repo in repos]


def _endpoint() -> str:
    from huggingface_hub import constants

    return constants.ENDPOINT


def _unavailable(repo_id: str, revision: str | None, error: Exception) -> ConnectionError:
    """The error for an env that the Hub cannot serve now and that the cache does not hold (in full)."""
    from huggingface_hub import constants

    wanted = f"{repo_id!r}" if revision is None else f"{repo_id!r} at revision {revision!r}"
    if constants.HF_HUB_OFFLINE:
        return ConnectionError(
            f"HF_HUB_OFFLINE is set and the cache has no complete copy of {wanted}; unset HF_HUB_OFFLINE to download it"
        )
    return ConnectionError(
        f"could not reach the Hub at {_endpoint()} ({_summary(error.__cause__ or error)}) to download {wanted}, "
        "and the cache has no complete copy; check the network and HF_ENDPOINT "
        "(set HF_HUB_OFFLINE=1 to load envs from the cache only)"
    )


def _summary(error: BaseException) -> str:
    """`Type: first line of the message`, to quote an error inside another."""
    lines = str(error).splitlines()
    return f"{type(error).__name__}: {lines[0]}" if lines else type(error).__name__


def _checked(folder: Path) -> Manifest:
    """Check the card, then load the env and play one scripted episode, as a user of the repo would."""
    _check_card_tags(folder)
    with load_env(folder, trust_remote_code=True) as env:
        task = _first_task(env)
        env.reset(seed=0, options={"task": task})
        env.step(_scripted_action(env, task))
        manifest = env.manifest
    _check_data_for_a_new_card(folder, manifest)
    return manifest


def _check_card_tags(folder: Path) -> None:
    from huggingface_hub.repocard import metadata_load

    path = folder / CARD_FILE
    if not path.is_file():
        return
    tags = (metadata_load(path) or {}).get("tags") or []
    missing = [tag for tag in HUB_TAGS if tag not in tags]
    if missing:
        raise ValueError(
            f"{path}: the card's tags are {tags!r}, without {', '.join(map(repr, missing))}; "
            f"add them to the `tags:` list of its YAML front matter (tags: [{', '.join(HUB_TAGS)}])"
        )


def _check_data_for_a_new_card(folder: Path, manifest: Manifest) -> None:
    """A card written by push_to_hub points each split at `data/<split>-*.parquet`: those files must exist."""
    if (folder / CARD_FILE).is_file() or manifest.dataset is not None:
        return
    patterns = [f"data/{split}-*.parquet" for split in manifest.splits]
    missing = [pattern for pattern in patterns if not any(folder.glob(pattern))]
    if missing:
        raise FileNotFoundError(
            f"{folder} has no {CARD_FILE} and no files matching {', '.join(missing)}; name the task files so, "
            f"or write a {CARD_FILE} whose `configs:` point at them"
        )


def _first_task(env: CodeActEnv) -> dict:
    manifest = env.manifest
    if not manifest.splits:
        raise ValueError(
            f"{manifest.path}: {manifest.id!r} declares no splits; add one, e.g. `splits: [test]`, so that "
            "push_to_hub can check a task and describe the data in the card"
        )
    return next(iter(load_tasks(env, manifest.splits[0], streaming=True)))


def _scripted_action(env: CodeActEnv, task: dict) -> str:
    """The env's oracle when it defines one, else the shortest valid episode."""
    return env.oracle(task) if defines_oracle(env) else "final_answer(None)"


@contextlib.contextmanager
def _with_card(folder: Path, manifest: Manifest) -> Iterator[Path]:
    """`folder` itself when it has a card, else a temporary copy of it with a minimal card added."""
    if (folder / CARD_FILE).is_file():
        yield folder
        return
    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / folder.name
        shutil.copytree(folder, copy, ignore=shutil.ignore_patterns("__pycache__"))
        (copy / CARD_FILE).write_text(_minimal_card(manifest), encoding="utf-8")
        yield copy


def _minimal_card(manifest: Manifest) -> str:
    """A dataset card with our tags and, when the tasks live in this repo, one `data/<split>-*` config."""
    metadata: dict = {"tags": list(HUB_TAGS)}
    if manifest.dataset is None:
        data_files = [{"split": split, "path": f"data/{split}-*.parquet"} for split in manifest.splits]
        metadata["configs"] = [{"config_name": manifest.config_name, "data_files": data_files}]
    front_matter = yaml.safe_dump(metadata, sort_keys=False)
    return f"---\n{front_matter}---\n\n# {manifest.title or manifest.id}\n\n{manifest.description}\n"
