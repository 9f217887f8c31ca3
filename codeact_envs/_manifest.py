"""`environment.yaml`: the Hub's RL-environment manifest, with our keys under `frameworks.codeact_envs`."""

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.version import Version

from ._errors import ManifestError, did_you_mean, short_repr
from ._version import __version__
from ._yaml import read_yaml

MANIFEST_FILE = "environment.yaml"
SPEC_VERSION = "hf-rl-env-0.1"
SPEC_VERSIONS = (SPEC_VERSION, "hf-env-0.1")
FRAMEWORK = "codeact_envs"
BUILTIN_TRANSFORMS = ("ExactMatch", "UnitTests", "StepPenalty", "ErrorPenalty")

_HUB_FIELDS = {
    "id": str,
    "title": str,
    "description": str,
    "config_name": str,
    "splits": list,
    "dataset": str,
    "runtime": dict,
    "frameworks": dict,
}
_OUR_FIELDS = {"min_version": str, "entry_point": str, "kwargs": dict, "transforms": list}
_OUR_REQUIRED = ("min_version", "entry_point")
_SET_ELSEWHERE = {
    "transform": "declare the rewards under `transforms:` instead",
    "origin": "load_env sets it",
}
_MINIMAL_EXAMPLE = (
    "spec_version: hf-rl-env-0.1, environments: [{id: my-env, splits: [test], "
    "frameworks: {codeact_envs: {min_version: '>=0.1.0', entry_point: 'env:MyEnv'}}}]"
)
_ENTRY_POINT = re.compile(r"^(?P<module>[A-Za-z_]\w*(\.[A-Za-z_]\w*)*):(?P<name>[A-Za-z_]\w*)$")
_TYPE_NAMES = {str: "a string", list: "a list", dict: "a mapping", int: "an integer", float: "a number"}


@dataclass(frozen=True)
class Manifest:
    """One environment declared in an `environment.yaml`, validated.

    Attributes:
        path: The manifest file.
        id: The environment's id.
        title: Display name.
        description: One-line description.
        config_name: The dataset config that holds the task rows.
        splits: The task splits.
        dataset: Another dataset repo holding the task rows, or None for the env's own repo.
        runtime: The Hub's runtime block (isolation, network, resources), as written.
        min_version: The codeact_envs versions the env supports, a PEP 440 specifier.
        entry_point: `module:Class` of the env class, in the env folder.
        kwargs: Default keyword arguments of the env class.
        transforms: `(name, kwargs)` of each reward transform, in order.
    """

    path: Path
    id: str
    entry_point: str
    min_version: str
    title: str = ""
    description: str = ""
    config_name: str = "default"
    splits: tuple[str, ...] = ()
    dataset: str | None = None
    runtime: dict[str, Any] = field(default_factory=dict)
    kwargs: dict[str, Any] = field(default_factory=dict)
    transforms: tuple[tuple[str, dict[str, Any]], ...] = ()

    @property
    def folder(self) -> Path:
        """The env folder (the content of its Hub dataset repo)."""
        return self.path.parent


def read_manifest(folder: str | Path, env_id: str | None = None, *, root: str | Path | None = None) -> Manifest:
    """Parse and validate `folder/environment.yaml`, and pick the declaration `env_id`.

    The file must resolve inside `root` (default: the folder). Every problem in the file is reported at once,
    in one `ManifestError`.
    """
    manifests = read_manifests(folder, root=root)
    ids = [manifest.id for manifest in manifests]
    path = manifests[0].path
    if env_id is not None and env_id not in ids:
        raise ManifestError(
            f"{path}: environments: no environment with id {env_id!r}{did_you_mean(env_id, ids)}; ids: {', '.join(ids)}"
        )
    if env_id is None and len(manifests) > 1:
        raise ManifestError(
            f"{path}: environments: {len(ids)} environments declare {FRAMEWORK}: pass env_id= one of {', '.join(ids)}"
        )
    return manifests[0] if env_id is None else manifests[ids.index(env_id)]


def read_manifests(folder: str | Path, *, root: str | Path | None = None) -> tuple[Manifest, ...]:
    """Every declaration of `folder/environment.yaml` with a `codeact_envs` block, validated (see `read_manifest`)."""
    folder = Path(folder)
    path = folder / MANIFEST_FILE
    if not os.path.lexists(path):
        raise ManifestError(
            f"{path}: no manifest; an env folder needs an {MANIFEST_FILE} at its root{_near_names(folder)}"
        )
    document = read_yaml(path, root=Path(root) if root is not None else folder)
    problems = _Problems(path)
    declarations = _validate_document(document, problems)
    ours = [d for d in declarations if isinstance(d.get("frameworks"), dict) and FRAMEWORK in d["frameworks"]]
    for declaration in ours:
        _validate_our_block(declaration, folder, problems)
    _validate_ids(ours, declarations, problems)
    problems.raise_if_any()
    return tuple(_to_manifest(path, declaration) for declaration in ours)


class _Problems:
    """Collects every problem of a manifest, then raises them together."""

    def __init__(self, path: Path):
        self.path = path
        self.messages: list[str] = []

    def add(self, key: str, message: str) -> None:
        self.messages.append(f"{key}: {message}")

    def raise_if_any(self) -> None:
        if len(self.messages) == 1:
            raise ManifestError(f"{self.path}: {self.messages[0]}")
        if self.messages:
            listed = "\n".join(f"  - {message}" for message in self.messages)
            raise ManifestError(f"{self.path}: {len(self.messages)} problems:\n{listed}")


def _validate_document(document: Any, problems: _Problems) -> list[dict]:
    if not isinstance(document, dict):
        problems.add("(top level)", f"expected a mapping like {{{_MINIMAL_EXAMPLE}}}, got {short_repr(document)}")
        problems.raise_if_any()
    spec_version = document.get("spec_version")
    if spec_version not in SPEC_VERSIONS:
        problems.add(
            "spec_version",
            f"expected {SPEC_VERSION!r}, got {short_repr(spec_version)}; set spec_version: {SPEC_VERSION}",
        )
    environments = document.get("environments")
    if not isinstance(environments, list) or not environments:
        problems.add(
            "environments",
            f"expected a non-empty list of environment declarations, got {short_repr(environments)}; "
            f"a minimal manifest: {{{_MINIMAL_EXAMPLE}}}",
        )
        problems.raise_if_any()
    declarations = []
    for index, declaration in enumerate(environments):
        key = f"environments[{index}]"
        if not isinstance(declaration, dict):
            problems.add(key, f"expected a mapping with at least id and frameworks, got {short_repr(declaration)}")
            continue
        _validate_hub_fields(declaration, key, problems)
        declarations.append(declaration)
    return declarations


def _validate_hub_fields(declaration: dict, key: str, problems: _Problems) -> None:
    if "id" not in declaration:
        problems.add(f"{key}.id", "missing; every environment declaration needs an id, e.g. id: my-env")
    if "frameworks" not in declaration:
        problems.add(
            f"{key}.frameworks",
            "missing; add frameworks: {codeact_envs: {min_version: '>=0.1.0', entry_point: 'env:MyEnv'}}",
        )
    for name, value in declaration.items():
        expected = _HUB_FIELDS.get(name)
        if expected is not None and not isinstance(value, expected):
            problems.add(f"{key}.{name}", f"expected {_TYPE_NAMES[expected]}, got {short_repr(value)}")
    splits = declaration.get("splits")
    if isinstance(splits, list) and not all(isinstance(split, str) for split in splits):
        problems.add(f"{key}.splits", f"expected a list of split names, got {short_repr(splits)}")


def _validate_our_block(declaration: dict, folder: Path, problems: _Problems) -> None:
    declaration_key = f"environments[id={declaration.get('id')!r}]"
    key = f"{declaration_key}.frameworks.{FRAMEWORK}"
    if "splits" not in declaration:
        problems.add(f"{declaration_key}.splits", "missing; name the task splits of the env, e.g. splits: [test]")
    elif not declaration["splits"]:
        problems.add(f"{declaration_key}.splits", "empty; name the task splits of the env, e.g. splits: [test]")
    block = declaration["frameworks"][FRAMEWORK]
    if not isinstance(block, dict):
        problems.add(key, f"expected a mapping with {', '.join(_OUR_FIELDS)}, got {short_repr(block)}")
        return
    for name in block:
        if name not in _OUR_FIELDS:
            problems.add(
                f"{key}.{name}",
                f"unknown key{did_you_mean(name, _OUR_FIELDS)}; allowed: {', '.join(_OUR_FIELDS)}",
            )
    for name in _OUR_REQUIRED:
        if name not in block:
            problems.add(f"{key}.{name}", f"missing; add it, e.g. {_example(name)}")
    for name, expected in _OUR_FIELDS.items():
        if name in block and not isinstance(block[name], expected):
            problems.add(f"{key}.{name}", _wrong_type(block[name], expected, name))
    if isinstance(block.get("min_version"), str):
        _validate_min_version(block["min_version"], f"{key}.min_version", problems)
    if isinstance(block.get("entry_point"), str):
        _validate_entry_point(block["entry_point"], f"{key}.entry_point", folder, problems)
    if isinstance(block.get("kwargs"), dict):
        for name in block["kwargs"]:
            if not isinstance(name, str) or not name.isidentifier():
                problems.add(f"{key}.kwargs", f"keys must be argument names, got {short_repr(name)}")
            elif name in _SET_ELSEWHERE:
                problems.add(f"{key}.kwargs.{name}", f"not a manifest argument: {_SET_ELSEWHERE[name]}")
    if isinstance(block.get("transforms"), list):
        for index, entry in enumerate(block["transforms"]):
            _validate_transform(entry, f"{key}.transforms[{index}]", folder, problems)


def _example(name: str) -> str:
    return {"min_version": 'min_version: ">=0.1.0"', "entry_point": "entry_point: env:MyEnv"}[name]


def _wrong_type(value: Any, expected: type, name: str) -> str:
    message = f"expected {_TYPE_NAMES[expected]}, got {short_repr(value)} ({type(value).__name__})"
    if expected is str and isinstance(value, int | float):
        message += f'; YAML read it as a number: quote it, e.g. {name}: ">={value}"'
    return message


def _validate_min_version(value: str, key: str, problems: _Problems) -> None:
    try:
        specifier = SpecifierSet(value)
    except InvalidSpecifier:
        problems.add(key, f'expected a version specifier like ">=0.1.0", got {short_repr(value)}')
        return
    if Version(__version__) not in specifier:
        problems.add(
            key, f"the env needs codeact_envs {value}, this is {__version__}: pip install -U 'codeact-envs{value}'"
        )


def _validate_entry_point(value: str, key: str, folder: Path, problems: _Problems) -> None:
    match = _ENTRY_POINT.match(value)
    if match is None:
        problems.add(
            key, f"expected 'module:Class' (a .py file of the env folder and a class in it), got {short_repr(value)}"
        )
        return
    module_file = folder / (match["module"].replace(".", "/") + ".py")
    if not module_file.is_file():
        found = sorted(p.stem for p in folder.glob("*.py"))
        problems.add(key, f"{module_file.name} is not in {folder}{did_you_mean(match['module'], found)}")


def _validate_transform(entry: Any, key: str, folder: Path, problems: _Problems) -> None:
    if isinstance(entry, str):
        problems.add(
            key,
            f"expected a one-key mapping of the transform's name to its arguments, got {short_repr(entry)}: "
            f"write `- {entry}: {{}}` (or with arguments, e.g. `- StepPenalty: {{penalty: 0.01}}`)",
        )
        return
    if not isinstance(entry, dict) or len(entry) != 1:
        problems.add(
            key, f"expected a one-key mapping like `- StepPenalty: {{penalty: 0.01}}`, got {short_repr(entry)}"
        )
        return
    ((name, kwargs),) = entry.items()
    if kwargs is not None and not isinstance(kwargs, dict):
        problems.add(f"{key}.{name}", f"expected a mapping of keyword arguments (or nothing), got {short_repr(kwargs)}")
    if not isinstance(name, str):
        problems.add(key, f"expected a transform name, got {short_repr(name)}")
    elif ":" in name:
        _validate_entry_point(name, key, folder, problems)
    elif name not in BUILTIN_TRANSFORMS:
        problems.add(
            key,
            f"unknown transform {name!r}{did_you_mean(name, BUILTIN_TRANSFORMS)}; built-ins: "
            f"{', '.join(BUILTIN_TRANSFORMS)}, or 'module:Class' from the env folder",
        )


def _near_names(folder: Path) -> str:
    """` (did you mean 'environment.yml'?)` when the folder holds a file named almost like the manifest."""
    names = [path.name for path in folder.iterdir()] if folder.is_dir() else []
    return did_you_mean(MANIFEST_FILE, names)


def _framework_names(declaration: dict) -> list[Any]:
    frameworks = declaration.get("frameworks")
    return list(frameworks) if isinstance(frameworks, dict) else []


def _validate_ids(ours: list[dict], declarations: list[dict], problems: _Problems) -> None:
    if not ours:
        others = sorted({str(name) for d in declarations for name in _framework_names(d)})
        problems.add(
            "frameworks",
            f"no environment declares a {FRAMEWORK} block (frameworks found: {', '.join(others) or 'none'}); "
            f"add frameworks.{FRAMEWORK} with entry_point and min_version",
        )
    ids = [d.get("id") for d in ours]
    for env_id in sorted({i for i in ids if ids.count(i) > 1}, key=str):
        problems.add("environments", f"the id {env_id!r} is declared {ids.count(env_id)} times; give each its own id")


def _to_manifest(path: Path, declaration: dict) -> Manifest:
    block = declaration["frameworks"][FRAMEWORK]
    transforms = tuple(
        (name, dict(kwargs or {})) for entry in block.get("transforms", []) for name, kwargs in entry.items()
    )
    return Manifest(
        path=path,
        id=declaration["id"],
        entry_point=block["entry_point"],
        min_version=block["min_version"],
        title=declaration.get("title", ""),
        description=declaration.get("description", ""),
        config_name=declaration.get("config_name", "default"),
        splits=tuple(declaration.get("splits", ())),
        dataset=declaration.get("dataset"),
        runtime=dict(declaration.get("runtime", {})),
        kwargs=dict(block.get("kwargs", {})),
        transforms=transforms,
    )
