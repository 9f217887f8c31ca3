"""The dataset card (`README.md`) of an env repo: the Hub's tags, and `configs:` that tell `datasets` where the
task rows of each split are."""

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from ._errors import short_repr
from ._manifest import Manifest
from ._yaml import read_front_matter

CARD_FILE = "README.md"
ENV_TAG = "codeact-env"
HUB_TAGS = ("rl-environment", ENV_TAG)
_TAGS_EXAMPLE = f"tags: [{', '.join(HUB_TAGS)}]"


def read_card(folder: Path, *, root: Path) -> dict[str, Any] | None:
    """The metadata (YAML front matter) of the folder's card, read safely; None when the folder has no card."""
    path = folder / CARD_FILE
    if not os.path.lexists(path):
        return None
    return read_front_matter(path, root=root)


def card_problems(folder: Path, manifest: Manifest, *, root: Path, local: bool) -> list[str]:
    """What the card lacks: the Hub's tags, and `configs:` with the manifest's config and each of its splits.

    A local folder may have no card (`push_to_hub` writes one): its task files must then be where that card
    will point, `data/<split>-*.parquet`.
    """
    metadata = read_card(folder, root=root)
    if metadata is None:
        return _problems_of_a_folder_without_card(folder, manifest) if local else [f"{CARD_FILE}: the repo has no card"]
    path = folder / CARD_FILE
    problems = _tag_problems(path, metadata.get("tags"))
    if manifest.dataset is None:
        problems += _config_problems(path, metadata.get("configs"), manifest)
    return problems


def minimal_card(manifests: Sequence[Manifest]) -> str:
    """A dataset card with our tags and, for the envs whose tasks live in this repo, a config per `config_name`
    that points each split at `data/<split>-*.parquet`."""
    splits_of_config: dict[str, list[str]] = {}
    for manifest in manifests:
        if manifest.dataset is None:
            splits = splits_of_config.setdefault(manifest.config_name, [])
            splits += [split for split in manifest.splits if split not in splits]
    metadata: dict = {"tags": list(HUB_TAGS)}
    if splits_of_config:
        metadata["configs"] = [
            {
                "config_name": name,
                "data_files": [{"split": split, "path": f"data/{split}-*.parquet"} for split in splits],
            }
            for name, splits in splits_of_config.items()
        ]
    front_matter = yaml.safe_dump(metadata, sort_keys=False)
    first = manifests[0]
    return f"---\n{front_matter}---\n\n# {first.title or first.id}\n\n{first.description}\n"


def _tag_problems(path: Path, tags: Any) -> list[str]:
    if tags is None:
        return [f"{path}: the card's front matter has no `tags:`; add {_TAGS_EXAMPLE}"]
    if not isinstance(tags, list):
        return [f"{path}: the card's front matter has tags {short_repr(tags)}, not a list; add {_TAGS_EXAMPLE}"]
    missing = [tag for tag in HUB_TAGS if tag not in tags]
    if not missing:
        return []
    return [
        f"{path}: the card's tags are {short_repr(tags)}, without {', '.join(map(repr, missing))}; "
        f"add them to the `tags:` list of its YAML front matter ({_TAGS_EXAMPLE})"
    ]


def _config_problems(path: Path, configs: Any, manifest: Manifest) -> list[str]:
    example = _configs_example(manifest)
    if configs is None:
        return [
            f"{path}: the card's front matter has no `configs:`, so `datasets` cannot tell which files hold the "
            f"tasks of each split; add {example}"
        ]
    if not isinstance(configs, list) or not all(isinstance(config, dict) for config in configs):
        return [f"{path}: `configs:` must be a list of mappings, got {short_repr(configs)}; e.g. {example}"]
    config = next((c for c in configs if c.get("config_name", "default") == manifest.config_name), None)
    if config is None:
        names = [c.get("config_name", "default") for c in configs]
        return [
            f"{path}: `configs:` has no config_name {manifest.config_name!r} (the manifest's config_name), "
            f"only {short_repr(names)}; add it, e.g. {example}"
        ]
    splits = _splits_of(config.get("data_files"))
    missing = [split for split in manifest.splits if split not in splits]
    if missing:
        return [
            f"{path}: config {manifest.config_name!r} has no data files for split(s) {', '.join(map(repr, missing))} "
            f"of the manifest; list them under its data_files, e.g. {example}"
        ]
    return []


def _splits_of(data_files: Any) -> set[str]:
    """The splits a config's `data_files` names: a pattern or a list of patterns is the "train" split."""
    if isinstance(data_files, str) or (
        isinstance(data_files, list) and all(isinstance(entry, str) for entry in data_files)
    ):
        return {"train"}
    if isinstance(data_files, list):
        return {str(entry.get("split")) for entry in data_files if isinstance(entry, dict)}
    return set()


def _configs_example(manifest: Manifest) -> str:
    files = ", ".join(f"{{split: {split}, path: 'data/{split}-*.parquet'}}" for split in manifest.splits)
    return f"configs: [{{config_name: {manifest.config_name}, data_files: [{files}]}}]"


def _problems_of_a_folder_without_card(folder: Path, manifest: Manifest) -> list[str]:
    if manifest.dataset is not None:
        return []
    patterns = [f"data/{split}-*.parquet" for split in manifest.splits]
    missing = [pattern for pattern in patterns if not any(folder.glob(pattern))]
    if not missing:
        return []
    return [
        f"{folder} has no {CARD_FILE} and no files matching {', '.join(missing)}; name the task files so, "
        f"or write a {CARD_FILE} whose `configs:` point at them"
    ]
