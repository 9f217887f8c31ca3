"""Publishing and finding envs on the Hugging Face Hub: env repos are dataset repos with an `environment.yaml`.

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
from typing import Any

from ._card import CARD_FILE, ENV_TAG, minimal_card
from ._check import NOT_UPLOADED, check, foreign_files
from ._loading import REPO_ID_FORM, check_trust, hub_failure
from ._manifest import Manifest, read_manifests

_MIRRORED = "*"
_NOT_UPLOADED_PATTERNS = [pattern for name in NOT_UPLOADED for pattern in (f"{name}/*", f"*/{name}/*")]
_PROBE_TIMEOUT_S = 10.0


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


def push_to_hub(
    env_dir: str | Path,
    repo_id: str,
    *,
    private: bool | None = None,
    token: str | bool | None = None,
    commit_message: str = "Upload codeact env",
    trust_remote_code: bool = False,
) -> str:
    """Check an env folder (`check`, the same verdict), then publish it as a Hub dataset repo in one commit.

    A manifest that declares several envs has each of them checked. The files to upload are looked at again
    after the check ran the folder's code: a link out of the folder made meanwhile is refused too. A folder
    without a `README.md` gets a minimal card (tags `rl-environment` and `codeact-env`, a `configs:` entry per
    split) in the upload, not on disk.

    Args:
        env_dir: The env folder: `environment.yaml`, code, card and `data/`.
        repo_id: The dataset repo to create or update (`"org/name"`).
        private: Visibility of a repo that does not exist yet (default: the Hub's).
        token: Hub token with write access (default: the logged-in one).
        commit_message: The message of the commit.
        trust_remote_code: Must be True: the check runs the folder's Python code on this machine.

    Returns:
        The id of the commit, for `load_env(repo_id, revision=...)`.

    Raises:
        ValueError: The folder does not pass `check`; the message lists every problem. Nothing was published.
    """
    from huggingface_hub import HfApi

    folder = _env_folder(env_dir)
    _check_repo_id(repo_id)
    manifests = read_manifests(folder)
    check_trust(str(env_dir), manifests[0], trust_remote_code)
    api = HfApi(token=token)
    _reach(api, f"push to {repo_id!r}")
    problems = _problems_of_every_env(folder, manifests, trust_remote_code) or foreign_files(folder)
    if problems:
        raise ValueError(_refusal(folder, problems))
    with _hub_errors(f"push to {repo_id!r}"), _with_card(folder, manifests) as upload_dir:
        api.create_repo(repo_id, repo_type="dataset", private=private, exist_ok=True)
        commit = api.upload_folder(
            repo_id=repo_id,
            folder_path=upload_dir,
            repo_type="dataset",
            commit_message=commit_message,
            ignore_patterns=_NOT_UPLOADED_PATTERNS,
            delete_patterns=_MIRRORED,
        )
    return commit.oid


def list_envs(*, token: str | bool | None = None) -> list[EnvInfo]:
    """The envs published on the Hub: its dataset repos tagged `codeact-env`.

    Args:
        token: Hub token, to also see private repos (default: the logged-in one).
    """
    from huggingface_hub import HfApi

    api = HfApi(token=token)
    _reach(api, "list envs")
    with _hub_errors("list envs"):
        repos = api.list_datasets(filter=ENV_TAG, expand=["description", "lastModified"])
        return [EnvInfo(repo.id, repo.description or "", repo.last_modified) for repo in repos]


def _env_folder(env_dir: str | Path) -> Path:
    folder = Path(env_dir).expanduser()
    if not folder.is_dir():
        what = "a file" if folder.exists() else "not there"
        raise NotADirectoryError(f"push_to_hub publishes an env folder; {str(env_dir)!r} is {what}")
    return folder


def _problems_of_every_env(folder: Path, manifests: tuple[Manifest, ...], trust_remote_code: bool) -> list[str]:
    """What `check` finds in each env of the folder; with several envs each problem names its env."""
    if len(manifests) == 1:
        return check(folder, trust_remote_code=trust_remote_code).problems
    return [
        f"env {manifest.id!r}: {problem}"
        for manifest in manifests
        for problem in check(folder, env_id=manifest.id, trust_remote_code=trust_remote_code).problems
    ]


def _check_repo_id(repo_id: str) -> None:
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    try:
        validate_repo_id(repo_id)
    except HFValidationError as e:
        raise ValueError(f"{repo_id!r} is not a Hub repo id ({REPO_ID_FORM})") from e


def _refusal(folder: Path, problems: list[str]) -> str:
    if len(problems) == 1:
        return f"{folder} fails check, so it was not pushed: {problems[0]}"
    listed = "\n".join(f"  - {problem}" for problem in problems)
    return f"{folder} fails check ({len(problems)} problems), so it was not pushed:\n{listed}"


def _reach(api: Any, doing: str) -> None:
    """One request with no retries, so that a Hub that cannot be reached fails at once, not after backoffs."""
    from huggingface_hub import constants
    from huggingface_hub.utils import get_session

    if constants.HF_HUB_OFFLINE:
        raise ConnectionError(f"HF_HUB_OFFLINE is set, and it takes the Hub to {doing}; unset HF_HUB_OFFLINE")
    try:
        get_session().get(f"{api.endpoint}/api/datasets", params={"limit": 1}, timeout=_PROBE_TIMEOUT_S)
    except Exception as e:
        raise hub_failure(doing, e) from e


@contextlib.contextmanager
def _hub_errors(doing: str) -> Iterator[None]:
    """Hub calls that fail for the network, offline mode or a refusal raise one clear error instead."""
    from huggingface_hub.errors import HfHubHTTPError, OfflineModeIsEnabled

    try:
        yield
    except (HfHubHTTPError, OfflineModeIsEnabled) as e:
        raise hub_failure(doing, e) from e
    except Exception as e:
        if not _is_transport_error(e):
            raise
        raise hub_failure(doing, e) from e


def _is_transport_error(error: Exception) -> bool:
    """A request that got no answer: a connect, read or protocol error of the HTTP client `huggingface_hub` uses."""
    from huggingface_hub.utils import httpx

    return isinstance(error, httpx.TransportError)


@contextlib.contextmanager
def _with_card(folder: Path, manifests: tuple[Manifest, ...]) -> Iterator[Path]:
    """`folder` itself when it has a card, else a temporary copy of it with a minimal card added."""
    if (folder / CARD_FILE).is_file():
        yield folder
        return
    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / folder.name
        shutil.copytree(folder, copy, symlinks=True, ignore=shutil.ignore_patterns(*NOT_UPLOADED))
        (copy / CARD_FILE).write_text(minimal_card(manifests), encoding="utf-8")
        yield copy
