"""`load_env` and `load_tasks`: an env folder (or Hub dataset repo) to a live env and its task rows."""

import difflib
import functools
import hashlib
import importlib
import importlib.metadata
import importlib.util
import sys
from pathlib import Path
from typing import Any

from gymnasium.envs.registration import EnvSpec
from packaging.requirements import InvalidRequirement, Requirement

from . import _transforms
from ._env import CodeActEnv
from ._errors import ManifestError
from ._manifest import BUILTIN_TRANSFORMS, MANIFEST_FILE, Manifest, read_manifest
from ._transforms import Compose, Transform

REQUIREMENTS_FILE = "requirements.txt"
CODE_PATTERNS = ["*.py", "**/*.py", MANIFEST_FILE, "README.md", REQUIREMENTS_FILE]
_PACKAGE_PREFIX = "codeact_envs_remote"


def load_env(
    repo_id_or_path: str | Path,
    *,
    revision: str | None = None,
    env_id: str | None = None,
    token: str | bool | None = None,
    trust_remote_code: bool = False,
    transform: Transform | None = None,
    **kwargs: Any,
) -> CodeActEnv:
    """Build the env that a folder or a Hub dataset repo declares in its `environment.yaml`.

    Args:
        repo_id_or_path: A local env folder, or the id of a Hub dataset repo (`"org/name"`).
        revision: Branch, tag or commit of the Hub repo (ignored for a folder).
        env_id: Which declaration to load when the manifest declares several.
        token: Hub token for private repos (default: the logged-in one).
        trust_remote_code: Must be True: loading an env runs its Python code on this machine.
        transform: Replaces the reward transforms that the manifest declares.
        **kwargs: Override the manifest's `kwargs` for the env class.

    Returns:
        The env, with `manifest`, `repo_id` and `commit` (None for a folder) recorded on it.
    """
    folder, repo_id, commit = _resolve(repo_id_or_path, revision=revision, token=token)
    manifest = read_manifest(folder, env_id, version=_our_version())
    _check_trust(repo_id, manifest, trust_remote_code)
    _check_requirements(folder)
    package = _import_folder(folder)
    env_class = _env_class(package, manifest)
    chosen = transform if transform is not None else _declared_transforms(package, manifest)
    env = env_class(**{**manifest.kwargs, **kwargs, "transform": chosen})
    env.manifest = manifest
    env.repo_id = repo_id
    env.commit = commit
    env.spec = _spec(repo_id_or_path, manifest, commit or revision, env_id, token, transform, kwargs)
    return env


def _spec(
    repo_id_or_path: str | Path,
    manifest: Manifest,
    revision: str | None,
    env_id: str | None,
    token: str | bool | None,
    transform: Transform | None,
    kwargs: dict[str, Any],
) -> EnvSpec:
    """A Gymnasium spec that rebuilds the same env (same commit), so `gymnasium.make(env.spec)` works."""
    rebuild = functools.partial(
        load_env,
        repo_id_or_path,
        revision=revision,
        env_id=env_id,
        token=token,
        trust_remote_code=True,
        transform=transform,
    )
    return EnvSpec(id=f"codeact_envs/{manifest.id}", entry_point=rebuild, kwargs=dict(kwargs))


def load_tasks(env: CodeActEnv, split: str, *, streaming: bool = False) -> Any:
    """The env's task rows for `split`, as a `datasets.Dataset` (an `IterableDataset` when streaming).

    The rows come from the env's own folder or repo (its dataset card's `configs:`), or from the
    dataset repo named by the manifest's `dataset` field.
    """
    import datasets

    manifest = _manifest_of(env)
    if manifest.splits and split not in manifest.splits:
        close = difflib.get_close_matches(split, manifest.splits, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ValueError(f"{manifest.id} has no split {split!r}{hint}; its splits: {', '.join(manifest.splits)}")
    source, revision = _task_source(env, manifest)
    return datasets.load_dataset(source, name=manifest.config_name, split=split, streaming=streaming, revision=revision)


def _task_source(env: CodeActEnv, manifest: Manifest) -> tuple[str, str | None]:
    """Where the rows live: the manifest's `dataset` repo, else the env's folder, else its repo at its commit."""
    if manifest.dataset is not None:
        return manifest.dataset, None
    if env.commit is None:
        return str(manifest.folder), None
    return env.repo_id, env.commit


def default_split(env: CodeActEnv) -> str:
    """The first split the env's manifest declares."""
    manifest = _manifest_of(env)
    if not manifest.splits:
        raise ValueError(f"{manifest.path} declares no splits: name the split to use (split= or --split)")
    return manifest.splits[0]


def _manifest_of(env: CodeActEnv) -> Manifest:
    if env.manifest is None:
        raise ValueError(f"{type(env).__name__} was not built by load_env, so it has no task set: use load_env(...)")
    return env.manifest


def _resolve(
    repo_id_or_path: str | Path, *, revision: str | None, token: str | bool | None
) -> tuple[Path, str, str | None]:
    """The local folder of the env, its name (path or repo id) and its resolved commit (None for a folder)."""
    path = Path(repo_id_or_path)
    if path.is_dir():
        return path.resolve(), str(path), None
    if isinstance(repo_id_or_path, Path) or str(repo_id_or_path).startswith((".", "/", "~")):
        raise FileNotFoundError(f"no env folder at {str(repo_id_or_path)!r}")
    from ._hub import download_env

    folder, commit = download_env(str(repo_id_or_path), revision=revision, token=token)
    return folder, str(repo_id_or_path), commit


def _our_version() -> str:
    from . import __version__

    return __version__


def _check_trust(name: str, manifest: Manifest, trust_remote_code: bool) -> None:
    if not trust_remote_code:
        module = manifest.entry_point.split(":")[0]
        raise ValueError(
            f"loading {name!r} runs its Python code ({module}.py) on this machine; if you trust it, "
            "pass trust_remote_code=True to load_env"
        )


def _check_requirements(folder: Path) -> None:
    """Fail with the `pip install` line when an env's requirements.txt is not satisfied; install nothing."""
    path = folder / REQUIREMENTS_FILE
    if not path.is_file():
        return
    missing = [line for line in _requirement_lines(path) if not _is_satisfied(line, path)]
    if missing:
        quoted = " ".join(f"'{line}'" for line in missing)
        raise ImportError(f"{path} needs packages that are not installed: pip install {quoted}")


def _requirement_lines(path: Path) -> list[str]:
    lines = (line.strip() for line in path.read_text().splitlines())
    return [line for line in lines if line and not line.startswith(("#", "-"))]


def _is_satisfied(line: str, path: Path) -> bool:
    try:
        requirement = Requirement(line)
    except InvalidRequirement as e:
        raise ManifestError(f"{path}: {line!r} is not a valid requirement: {e}") from e
    if requirement.marker is not None and not requirement.marker.evaluate():
        return True
    try:
        installed = importlib.metadata.version(requirement.name)
    except importlib.metadata.PackageNotFoundError:
        return False
    return requirement.specifier.contains(installed, prereleases=True)


def _import_folder(folder: Path) -> Any:
    """Import the env folder as a package of its own, so its modules can import each other relatively."""
    name = f"{_PACKAGE_PREFIX}_{_folder_digest(folder)}"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(
        name, folder / "__init__.py", submodule_search_locations=[str(folder)]
    )
    package = importlib.util.module_from_spec(spec)
    sys.modules[name] = package
    if (folder / "__init__.py").is_file():
        spec.loader.exec_module(package)
    return package


def _folder_digest(folder: Path) -> str:
    """Changes when the folder or any of its Python files changes, so edited code is imported again."""
    digest = hashlib.sha256(str(folder).encode())
    for path in sorted(folder.rglob("*.py")):
        digest.update(str(path.relative_to(folder)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]


def _import_attribute(package: Any, reference: str, manifest: Manifest, what: str) -> Any:
    module_name, _, attribute = reference.partition(":")
    try:
        module = importlib.import_module(f"{package.__name__}.{module_name}")
    except Exception as e:
        raise ImportError(f"{manifest.path}: importing {module_name}.py for {what} {reference!r} failed: {e}") from e
    if not hasattr(module, attribute):
        names = [n for n in vars(module) if not n.startswith("_")]
        close = difflib.get_close_matches(attribute, names, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ManifestError(f"{manifest.path}: {what} {reference!r}: {module_name}.py defines no {attribute!r}{hint}")
    return getattr(module, attribute)


def _env_class(package: Any, manifest: Manifest) -> type[CodeActEnv]:
    env_class = _import_attribute(package, manifest.entry_point, manifest, "entry_point")
    if not (isinstance(env_class, type) and issubclass(env_class, CodeActEnv)):
        raise ManifestError(
            f"{manifest.path}: entry_point {manifest.entry_point!r} is {env_class!r}, not a CodeActEnv subclass"
        )
    return env_class


def _declared_transforms(package: Any, manifest: Manifest) -> Compose:
    transforms = []
    for name, kwargs in manifest.transforms:
        transform_class = (
            _import_attribute(package, name, manifest, "transform")
            if name not in BUILTIN_TRANSFORMS
            else getattr(_transforms, name)
        )
        try:
            transforms.append(transform_class(**kwargs))
        except TypeError as e:
            raise ManifestError(f"{manifest.path}: transform {name!r} with arguments {kwargs!r}: {e}") from e
    return Compose(transforms)
