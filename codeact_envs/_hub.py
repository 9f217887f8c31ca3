"""The Hugging Face Hub side: env repos are dataset repos with an `environment.yaml` at their root."""

from pathlib import Path

from huggingface_hub import snapshot_download

from ._loading import CODE_PATTERNS


def download_env(repo_id: str, *, revision: str | None, token: str | bool | None) -> tuple[Path, str]:
    """Fetch an env repo's code, manifest and card (not its task data); return the folder and its commit."""
    folder = snapshot_download(
        repo_id, repo_type="dataset", revision=revision, token=token, allow_patterns=CODE_PATTERNS
    )
    return Path(folder), Path(folder).name
