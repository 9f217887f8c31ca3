"""`load_env` and `load_tasks`: an env folder (or Hub dataset repo) to a live env and its task rows.

`huggingface_hub` is imported where it is used: it reads `HF_ENDPOINT` and `HF_HUB_OFFLINE` once, when first
imported, and importing this module should not be what fixes them.
"""

import hashlib
import importlib
import importlib.util
import inspect
import os
import re
import sys
import typing
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from gymnasium.envs.registration import EnvSpec
from packaging.requirements import InvalidRequirement, Requirement

from . import _transforms
from ._card import CARD_FILE
from ._env import CodeActEnv
from ._errors import ManifestError, UntrustedCodeError, did_you_mean, short_repr
from ._manifest import BUILTIN_TRANSFORMS, FRAMEWORK, MANIFEST_FILE, Manifest, read_manifest
from ._origin import EnvOrigin, files_root, task_rows
from ._transforms import Compose, Transform
from ._yaml import read_metadata_text

REQUIREMENTS_FILE = "requirements.txt"
CODE_PATTERNS = ["*.py", "**/*.py", MANIFEST_FILE, CARD_FILE, REQUIREMENTS_FILE]
_PACKAGE_PREFIX = "codeact_envs_remote"
_SET_BY_LOAD_ENV = ("transform", "origin")
_SPEC_ID_UNSAFE = re.compile(r"[^\w.-]")
REPO_ID_FORM = "'org/name': letters, digits, '-', '_', '.'; at most one '/'"


@dataclass(frozen=True)
class _Located:
    """Where an env's files are: its folder, the folder they must resolve inside, its name and commit."""

    folder: Path
    root: Path
    repo_id: str
    commit: str | None


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
        The env, built with an `EnvOrigin`: its `repo_id`, `commit` (None for a folder), `manifest`, and a
        Gymnasium `spec` that builds it again (with the logged-in token, for a private repo).
    """
    located = _locate(repo_id_or_path, revision=revision, token=token)
    manifest = read_manifest(located.folder, env_id, root=located.root)
    check_trust(located.repo_id, manifest, trust_remote_code)
    _check_requirements(located.folder, located.root)
    package = _import_folder(located.folder)
    env_class = _env_class(package, manifest)
    transform_classes = [(_transform_class(package, manifest, name), kwargs) for name, kwargs in manifest.transforms]
    _check_declared_arguments(manifest, env_class, transform_classes)
    _check_overrides(env_class, kwargs)
    chosen = transform if transform is not None else Compose([cls(**arguments) for cls, arguments in transform_classes])
    spec = _spec(located, manifest, env_id, transform, kwargs)
    origin = EnvOrigin(repo_id=located.repo_id, commit=located.commit, manifest=manifest, spec=spec)
    return _build(env_class, manifest, {**manifest.kwargs, **kwargs}, chosen, origin)


def load_tasks(env: CodeActEnv, split: str, *, streaming: bool = False) -> Any:
    """The env's task rows for `split`, as a `datasets.Dataset` (an `IterableDataset` when streaming).

    The rows come from the env's own folder or repo (its dataset card's `configs:`), or from the dataset repo
    named by the manifest's `dataset` field. Rows that lack a column the env's transforms need are refused.
    """
    rows = task_rows(_manifest_of(env), env.repo_id, env.commit, split, streaming=streaming)
    if rows.column_names is not None:
        problems = column_problems(env.transform, rows.column_names, f"{_place(env)}: the task rows of split {split!r}")
        if problems:
            raise ValueError("; ".join(problems))
    return rows


def default_split(env: CodeActEnv) -> str:
    """The first split the env's manifest declares."""
    return _manifest_of(env).splits[0]


def column_problems(transform: Transform | None, columns: Collection[str], rows: str) -> list[str]:
    """One problem per transform that needs a column missing from `columns`; `rows` says whose rows they are."""
    problems = []
    for part in _parts(transform):
        missing = [column for column in part.task_columns if column not in columns]
        if missing:
            problems.append(
                f"{rows} have no column {', '.join(map(repr, missing))}, which {part!r} needs (their columns: "
                f"{', '.join(columns)}); add it to the task files, or give the transform another column in "
                f"{MANIFEST_FILE}"
            )
    return problems


def _download(text: str, near: str, *, revision: str | None, token: str | bool | None) -> tuple[Path, str]:
    """Fetch an env repo's code, manifest and card (not its task data); return the folder and its commit.

    `near` is what `text` would be as a folder here (" (did you mean ...?)"), for errors that rule out both.
    """
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import (
        HfHubHTTPError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    try:
        folder = Path(
            snapshot_download(text, repo_type="dataset", revision=revision, token=token, allow_patterns=CODE_PATTERNS)
        )
    except RevisionNotFoundError as e:
        raise ValueError(
            f"the env repo {text!r} has no revision {revision!r}; pass a branch, tag or commit id of it"
        ) from e
    except RepositoryNotFoundError as e:
        raise FileNotFoundError(
            f"{text!r} is neither an env folder here{near} nor a dataset repo on the Hub at {hub_endpoint()}; check "
            "the path or the repo id (pass token= if the repo is private)"
        ) from e
    except LocalEntryNotFoundError as e:
        raise ConnectionError(f"{text!r} is not a folder here{near}, and {_unavailable(text, revision, e)}") from e
    except HfHubHTTPError as e:
        raise hub_failure(f"download {text!r}", e) from e
    if not (folder / MANIFEST_FILE).is_file():
        raise FileNotFoundError(
            f"the dataset repo {text!r} has no {MANIFEST_FILE} at its root: it is not an env "
            "(an env repo holds its manifest, code, card and task data)"
        )
    return folder, folder.name


def hub_endpoint() -> str:
    """The Hub that `huggingface_hub` talks to (`HF_ENDPOINT`)."""
    from huggingface_hub import constants

    return constants.ENDPOINT


def hub_failure(doing: str, error: Exception) -> Exception:
    """One clear error for a Hub call that failed: offline mode, an unreachable Hub, a refusal, or an answer."""
    from huggingface_hub import constants
    from huggingface_hub.errors import HfHubHTTPError

    if constants.HF_HUB_OFFLINE:
        return ConnectionError(f"HF_HUB_OFFLINE is set, and it takes the Hub to {doing}; unset HF_HUB_OFFLINE")
    if isinstance(error, HfHubHTTPError) and error.response is not None:
        status = error.response.status_code
        if status in (401, 403):
            return PermissionError(
                f"the Hub at {hub_endpoint()} refused to {doing} (HTTP {status}); log in with `hf auth login`, or "
                "pass a token with write access (token= or --token)"
            )
        return ConnectionError(f"the Hub at {hub_endpoint()} failed to {doing}: HTTP {status}: {_summary(error)}")
    return ConnectionError(
        f"could not reach the Hub at {hub_endpoint()} ({_summary(error)}) to {doing}; check the network and HF_ENDPOINT"
    )


def _unavailable(repo_id: str, revision: str | None, error: Exception) -> str:
    """Why an env repo cannot be loaded now: the Hub cannot serve it and the cache does not hold it (in full)."""
    from huggingface_hub import constants

    wanted = f"{repo_id!r}" if revision is None else f"{repo_id!r} at revision {revision!r}"
    if constants.HF_HUB_OFFLINE:
        return (
            f"HF_HUB_OFFLINE is set and the cache has no complete copy of {wanted}; unset HF_HUB_OFFLINE to download it"
        )
    return (
        f"could not reach the Hub at {hub_endpoint()} ({_summary(error.__cause__ or error)}) to download {wanted}, "
        "and the cache has no complete copy; check the network and HF_ENDPOINT "
        "(set HF_HUB_OFFLINE=1 to load envs from the cache only)"
    )


def _summary(error: BaseException) -> str:
    """`Type: first line of the message`, to quote an error inside another."""
    lines = str(error).splitlines()
    return f"{type(error).__name__}: {lines[0]}" if lines else type(error).__name__


def _manifest_of(env: CodeActEnv) -> Manifest:
    if env.manifest is None:
        raise ValueError(f"{type(env).__name__} was not built by load_env, so it has no task set: use load_env(...)")
    return env.manifest


def _place(env: CodeActEnv) -> str:
    """How messages name an env: its folder, or its repo at its commit."""
    return env.repo_id if env.commit is None else f"{env.repo_id}@{env.commit[:12]}"


def _parts(transform: Transform | None) -> list[Transform]:
    if transform is None:
        return []
    if isinstance(transform, Compose):
        return [part for inner in transform.transforms for part in _parts(inner)]
    return [transform]


def _locate(repo_id_or_path: str | Path, *, revision: str | None, token: str | bool | None) -> _Located:
    """An existing folder is the env; a repo id is downloaded; anything else says which of the two it is not."""
    text = str(repo_id_or_path)
    path = Path(repo_id_or_path).expanduser()
    if path.is_dir():
        resolved = path.resolve()
        return _Located(folder=resolved, root=resolved, repo_id=text, commit=None)
    if path.exists():
        parent = f": pass the folder that holds it, {str(path.parent)!r}" if path.name == MANIFEST_FILE else ""
        raise NotADirectoryError(f"{text!r} is a file, not an env folder{parent}")
    near = _env_folders_near(path)
    not_a_repo_id = _why_not_a_repo_id(repo_id_or_path)
    if not_a_repo_id is not None:
        raise FileNotFoundError(f"no env folder at {text!r}{near}; {not_a_repo_id}")
    folder, commit = _download(text, near, revision=revision, token=token)
    return _Located(folder=folder, root=files_root(folder, commit), repo_id=text, commit=commit)


def _why_not_a_repo_id(repo_id_or_path: str | Path) -> str | None:
    """Why this cannot name a Hub repo (a Path, a path-like string, or a malformed id); None when it can."""
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    text = str(repo_id_or_path)
    if isinstance(repo_id_or_path, Path) or text.startswith((".", "/", "~")):
        return "it is a path, and no folder is there"
    try:
        validate_repo_id(text)
    except HFValidationError:
        return f"nor is it a Hub repo id ({REPO_ID_FORM})"
    return None


def _env_folders_near(path: Path) -> str:
    """` (did you mean 'envs/humaneval'?)`, or the env folders next to `path`, when its parent has some."""
    parent = path.parent
    if not parent.is_dir():
        return ""
    folders = sorted(str(parent / child.name) for child in parent.iterdir() if (child / MANIFEST_FILE).is_file())
    if not folders:
        return ""
    return did_you_mean(str(path), folders) or f" (env folders in {str(parent)!r}: {', '.join(folders)})"


def check_trust(name: str, manifest: Manifest, trust_remote_code: bool) -> None:
    """Refuse to run the code of the env `name` unless the caller said it trusts it."""
    if not trust_remote_code:
        module = manifest.entry_point.split(":")[0]
        raise UntrustedCodeError(f"{name!r} runs its Python code ({module}.py) on this machine")


def _check_requirements(folder: Path, root: Path) -> None:
    """Fail with the `pip install` line when an env's requirements.txt is not satisfied; install nothing."""
    path = folder / REQUIREMENTS_FILE
    if not os.path.lexists(path):
        return
    missing = [line for line in _requirement_lines(path, root) if not _is_satisfied(line, path)]
    if missing:
        quoted = " ".join(f"'{line}'" for line in missing)
        raise ImportError(f"{path} needs packages that are not installed: pip install {quoted}")


def _requirement_lines(path: Path, root: Path) -> list[str]:
    lines = (line.strip() for line in read_metadata_text(path, root=root).splitlines())
    return [line for line in lines if line and not line.startswith(("#", "-"))]


def _is_satisfied(line: str, path: Path) -> bool:
    import importlib.metadata

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
        hint = did_you_mean(attribute, names)
        raise ManifestError(f"{manifest.path}: {what} {reference!r}: {module_name}.py defines no {attribute!r}{hint}")
    return getattr(module, attribute)


def _env_class(package: Any, manifest: Manifest) -> type[CodeActEnv]:
    env_class = _import_attribute(package, manifest.entry_point, manifest, "entry_point")
    if not (isinstance(env_class, type) and issubclass(env_class, CodeActEnv)):
        raise ManifestError(
            f"{manifest.path}: entry_point {manifest.entry_point!r} is {env_class!r}, not a CodeActEnv subclass"
        )
    return env_class


def _transform_class(package: Any, manifest: Manifest, name: str) -> type[Transform]:
    if name in BUILTIN_TRANSFORMS:
        return getattr(_transforms, name)
    return _import_attribute(package, name, manifest, "transform")


def _check_declared_arguments(
    manifest: Manifest, env_class: type[CodeActEnv], transforms: list[tuple[type[Transform], dict[str, Any]]]
) -> None:
    """Refuse manifest `kwargs` and transform arguments that their class does not take, or of the wrong type."""
    key = f"environments[id={manifest.id!r}].frameworks.{FRAMEWORK}"
    problems = [f"{key}.kwargs.{name}: {problem}" for name, problem in _argument_problems(env_class, manifest.kwargs)]
    for index, ((name, _), (transform_class, arguments)) in enumerate(
        zip(manifest.transforms, transforms, strict=True)
    ):
        problems += [
            f"{key}.transforms[{index}].{name}.{argument}: {problem}"
            for argument, problem in _argument_problems(transform_class, arguments)
        ]
    if len(problems) == 1:
        raise ManifestError(f"{manifest.path}: {problems[0]}")
    if problems:
        listed = "\n".join(f"  - {problem}" for problem in problems)
        raise ManifestError(f"{manifest.path}: {len(problems)} problems:\n{listed}")


def _check_overrides(env_class: type[CodeActEnv], overrides: dict[str, Any]) -> None:
    """Refuse `load_env` keyword arguments that the env class does not take, or of the wrong type."""
    for name in overrides:
        if name in _SET_BY_LOAD_ENV:
            raise TypeError(f"load_env(..., {name}=...): load_env sets {name} itself; pass transform= for rewards")
    for name, problem in _argument_problems(env_class, overrides):
        raise TypeError(f"load_env(..., {name}=...): {problem}")


def _argument_problems(cls: type, arguments: dict[str, Any]) -> list[tuple[str, str]]:
    parameters = _keyword_parameters(cls)
    return [
        (name, problem)
        for name, value in arguments.items()
        if (problem := _argument_problem(cls, parameters, name, value)) is not None
    ]


def _argument_problem(cls: type, parameters: dict[str, inspect.Parameter], name: str, value: Any) -> str | None:
    if name not in parameters or name in _SET_BY_LOAD_ENV:
        choices = [n for n in parameters if n not in _SET_BY_LOAD_ENV]
        takes = f"it takes {', '.join(choices)}" if choices else "it takes none"
        return f"{cls.__name__} takes no argument {name!r}{did_you_mean(name, choices)}; {takes}"
    expected = _accepted_values(parameters[name].annotation)
    if expected is not None and not _accepts(expected, value):
        return f"{cls.__name__} expects {_describe(expected)} for {name}, got {short_repr(value)}"
    return None


def _keyword_parameters(cls: type) -> dict[str, inspect.Parameter]:
    """The keyword arguments the class takes: those of each `__init__` up the MRO while they pass on `**kwargs`.

    Annotations are resolved where they can be (a string annotation that does not resolve is left as is).
    """
    parameters: dict[str, inspect.Parameter] = {}
    for klass in cls.__mro__:
        init = klass.__dict__.get("__init__")
        if init is None:
            continue
        signature = inspect.signature(init, eval_str=False)
        hints = _type_hints(init)
        for parameter in list(signature.parameters.values())[1:]:
            if parameter.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY):
                annotation = hints.get(parameter.name, inspect.Parameter.empty)
                parameters.setdefault(parameter.name, parameter.replace(annotation=annotation))
        if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in signature.parameters.values()):
            break
    return parameters


def _type_hints(function: Any) -> dict[str, Any]:
    try:
        return typing.get_type_hints(function)
    except Exception:
        return {}


_SIMPLE_TYPES = (bool, int, float, str)


def _accepted_values(annotation: Any) -> tuple[Any, ...] | None:
    """What an annotation allows, as plain types and literal values; None when it is not that simple."""
    if annotation in _SIMPLE_TYPES or annotation is type(None):
        return (annotation,)
    origin = typing.get_origin(annotation)
    if origin is Literal:
        return tuple(("literal", value) for value in typing.get_args(annotation))
    if origin in (typing.Union, type(int | None)):
        allowed: tuple[Any, ...] = ()
        for argument in typing.get_args(annotation):
            inner = _accepted_values(argument)
            if inner is None:
                return None
            allowed += inner
        return allowed
    return None


def _accepts(allowed: tuple[Any, ...], value: Any) -> bool:
    for option in allowed:
        if isinstance(option, tuple) and value == option[1] and type(value) is type(option[1]):
            return True
        if option is type(None) and value is None:
            return True
        if option is float and isinstance(value, int | float) and not isinstance(value, bool):
            return True
        if option is int and isinstance(value, int) and not isinstance(value, bool):
            return True
        if option in (bool, str) and isinstance(value, option):
            return True
    return False


def _describe(allowed: tuple[Any, ...]) -> str:
    names = {bool: "a bool", int: "an int", float: "a number", str: "a string", type(None): "None"}
    return " or ".join(repr(option[1]) if isinstance(option, tuple) else names[option] for option in allowed)


def _spec(
    located: _Located, manifest: Manifest, env_id: str | None, transform: Transform | None, overrides: dict[str, Any]
) -> EnvSpec:
    """A Gymnasium spec that builds the same env again (same commit); it holds no token."""
    kwargs: dict[str, Any] = {
        "repo_id_or_path": located.repo_id if located.commit is not None else str(located.folder),
        "revision": located.commit,
        "env_id": env_id,
        "trust_remote_code": True,
        **overrides,
    }
    if transform is not None:
        kwargs["transform"] = transform
    spec_id = f"codeact_envs/{_SPEC_ID_UNSAFE.sub('_', manifest.id)}"
    return EnvSpec(id=spec_id, entry_point="codeact_envs:load_env", kwargs=kwargs)


def _build(
    env_class: type[CodeActEnv],
    manifest: Manifest,
    arguments: dict[str, Any],
    transform: Transform,
    origin: EnvOrigin,
) -> CodeActEnv:
    """The env; a constructor refusing the declared arguments names the manifest."""
    try:
        return env_class(**arguments, transform=transform, origin=origin)
    except (TypeError, ValueError) as e:
        shown = ", ".join(f"{name}={short_repr(value)}" for name, value in arguments.items())
        raise ManifestError(f"{manifest.path}: {env_class.__name__}({shown}) failed: {type(e).__name__}: {e}") from e
