"""Where an env came from (`EnvOrigin`), and where its task rows live."""

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gymnasium.envs.registration import EnvSpec

from ._card import read_card
from ._errors import did_you_mean
from ._manifest import Manifest


@dataclass(frozen=True)
class EnvOrigin:
    """Where an env came from; `load_env` builds it and hands it to the env class with the other arguments.

    Attributes:
        repo_id: The Hub dataset repo id, or the env folder's path for an env loaded from a folder.
        commit: The resolved commit of the Hub repo; None for a folder.
        manifest: The env's declaration in its `environment.yaml`.
        spec: A Gymnasium spec that builds the same env again: `gymnasium.make(spec)`.
    """

    repo_id: str
    commit: str | None
    manifest: Manifest
    spec: EnvSpec | None = None


def files_root(folder: Path, commit: str | None) -> Path:
    """The folder an env's files must resolve inside: the env folder itself, or for a Hub download the repo's
    cache folder (the files of a snapshot are links into the repo's blob store)."""
    return folder if commit is None else folder.parents[1]


def check_split(manifest: Manifest, split: str) -> None:
    """Refuse a split the manifest does not declare, naming the ones it does."""
    if split not in manifest.splits:
        raise ValueError(
            f"{manifest.id} has no split {split!r}{did_you_mean(split, manifest.splits)}; "
            f"its splits: {', '.join(manifest.splits)}"
        )


def task_rows(manifest: Manifest, repo_id: str, commit: str | None, split: str, *, streaming: bool) -> Any:
    """The rows of `split`: `datasets.load_dataset` on the manifest's `dataset` repo, or on the env's own folder
    or repo (at its commit), after its card was read safely."""
    import datasets

    check_split(manifest, split)
    if manifest.dataset is not None:
        source, revision = manifest.dataset, None
    else:
        read_card(manifest.folder, root=files_root(manifest.folder, commit))
        source, revision = (str(manifest.folder), None) if commit is None else (repo_id, commit)
    return datasets.load_dataset(source, name=manifest.config_name, split=split, streaming=streaming, revision=revision)
