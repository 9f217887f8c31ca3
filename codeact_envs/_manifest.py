"""`environment.yaml`: the Hub's RL-environment manifest, with our keys under `frameworks.codeact_envs`."""

import difflib
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.version import Version

from ._errors import ManifestError

MANIFEST_FILE = "environment.yaml"
SPEC_VERSION = "hf-rl-env-0.1"
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


class _UniqueKeyLoader(yaml.SafeLoader):
    """Safe YAML that refuses a mapping with the same key twice."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise ManifestError(
                    f"{self.name}: line {key_node.start_mark.line + 1}: key {key!r} appears twice; keep one of them"
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def read_manifest(folder: str | Path, env_id: str | None = None, *, version: str) -> Manifest:
    """Parse and validate `folder/environment.yaml`, and pick the declaration `env_id`.

    Every problem in the file is reported at once, in one `ManifestError`.
    """
    path = Path(folder) / MANIFEST_FILE
    if not path.is_file():
        raise ManifestError(f"{path}: no manifest; an env folder needs an {MANIFEST_FILE} at its root")
    document = _load_yaml(path)
    problems = _Problems(path)
    declarations = _validate_document(document, problems)
    ours = [d for d in declarations if isinstance(d.get("frameworks"), dict) and FRAMEWORK in d["frameworks"]]
    for declaration in ours:
        _validate_our_block(declaration, Path(folder), version, problems)
    problems.raise_if_any()
    return _to_manifest(path, _pick(ours, declarations, env_id, problems))


def _load_yaml(path: Path) -> Any:
    try:
        return yaml.load(path.read_text(encoding="utf-8"), Loader=_loader_for(path))
    except yaml.YAMLError as e:
        raise ManifestError(f"{path}: not valid YAML: {e}") from e


def _loader_for(path: Path) -> type:
    class Loader(_UniqueKeyLoader):
        def __init__(self, stream: str):
            super().__init__(stream)
            self.name = str(path)

    return Loader


class _Problems:
    """Collects every problem of a manifest, then raises them together."""

    def __init__(self, path: Path):
        self.path = path
        self.messages: list[str] = []

    def add(self, key: str, message: str) -> None:
        self.messages.append(f"{key}: {message}")

    def raise_if_any(self) -> None:
        if self.messages:
            listed = "\n".join(f"  - {message}" for message in self.messages)
            raise ManifestError(f"{self.path}: {len(self.messages)} problem(s):\n{listed}")


def _validate_document(document: Any, problems: _Problems) -> list[dict]:
    if not isinstance(document, dict):
        problems.add("(top level)", f"expected a mapping with spec_version and environments, got {document!r}")
        problems.raise_if_any()
    spec_version = document.get("spec_version")
    if spec_version != SPEC_VERSION:
        problems.add(
            "spec_version", f"expected {SPEC_VERSION!r}, got {spec_version!r}; set spec_version: {SPEC_VERSION}"
        )
    environments = document.get("environments")
    if not isinstance(environments, list) or not environments:
        problems.add("environments", f"expected a non-empty list of environment declarations, got {environments!r}")
        problems.raise_if_any()
    declarations = []
    for index, declaration in enumerate(environments):
        key = f"environments[{index}]"
        if not isinstance(declaration, dict):
            problems.add(key, f"expected a mapping with at least id and frameworks, got {declaration!r}")
            continue
        _validate_hub_fields(declaration, key, problems)
        declarations.append(declaration)
    return declarations


def _validate_hub_fields(declaration: dict, key: str, problems: _Problems) -> None:
    for required in ("id", "frameworks"):
        if required not in declaration:
            problems.add(f"{key}.{required}", "missing; every environment declaration needs id and frameworks")
    for name, value in declaration.items():
        expected = _HUB_FIELDS.get(name)
        if expected is not None and not isinstance(value, expected):
            problems.add(f"{key}.{name}", f"expected {_TYPE_NAMES[expected]}, got {value!r}")
    splits = declaration.get("splits")
    if isinstance(splits, list) and not all(isinstance(split, str) for split in splits):
        problems.add(f"{key}.splits", f"expected a list of split names, got {splits!r}")


def _validate_our_block(declaration: dict, folder: Path, version: str, problems: _Problems) -> None:
    key = f"environments[id={declaration.get('id')!r}].frameworks.{FRAMEWORK}"
    block = declaration["frameworks"][FRAMEWORK]
    if not isinstance(block, dict):
        problems.add(key, f"expected a mapping with {', '.join(_OUR_FIELDS)}, got {block!r}")
        return
    for name in block:
        if name not in _OUR_FIELDS:
            problems.add(
                f"{key}.{name}",
                f"unknown key{_did_you_mean(str(name), _OUR_FIELDS)}; allowed: {', '.join(_OUR_FIELDS)}",
            )
    for name in _OUR_REQUIRED:
        if name not in block:
            problems.add(f"{key}.{name}", f"missing; add it, e.g. {_example(name)}")
    for name, expected in _OUR_FIELDS.items():
        if name in block and not isinstance(block[name], expected):
            problems.add(f"{key}.{name}", _wrong_type(block[name], expected, name))
    if isinstance(block.get("min_version"), str):
        _validate_min_version(block["min_version"], f"{key}.min_version", version, problems)
    if isinstance(block.get("entry_point"), str):
        _validate_entry_point(block["entry_point"], f"{key}.entry_point", folder, problems)
    if isinstance(block.get("kwargs"), dict):
        for name in block["kwargs"]:
            if not isinstance(name, str) or not name.isidentifier():
                problems.add(f"{key}.kwargs", f"keys must be argument names, got {name!r}")
    if isinstance(block.get("transforms"), list):
        for index, entry in enumerate(block["transforms"]):
            _validate_transform(entry, f"{key}.transforms[{index}]", folder, problems)


def _example(name: str) -> str:
    return {"min_version": 'min_version: ">=0.1.0"', "entry_point": "entry_point: env:MyEnv"}[name]


def _wrong_type(value: Any, expected: type, name: str) -> str:
    message = f"expected {_TYPE_NAMES[expected]}, got {value!r} ({type(value).__name__})"
    if expected is str and isinstance(value, int | float):
        message += f'; YAML read it as a number: quote it, e.g. {name}: ">={value}"'
    return message


def _validate_min_version(value: str, key: str, version: str, problems: _Problems) -> None:
    try:
        specifier = SpecifierSet(value)
    except InvalidSpecifier:
        problems.add(key, f'expected a version specifier like ">=0.1.0", got {value!r}')
        return
    if Version(version) not in specifier:
        problems.add(
            key, f"the env needs codeact_envs {value}, this is {version}: pip install -U 'codeact-envs{value}'"
        )


def _validate_entry_point(value: str, key: str, folder: Path, problems: _Problems) -> None:
    match = _ENTRY_POINT.match(value)
    if match is None:
        problems.add(key, f"expected 'module:Class' (a .py file of the env folder and a class in it), got {value!r}")
        return
    module_file = folder / (match["module"].replace(".", "/") + ".py")
    if not module_file.is_file():
        found = sorted(p.stem for p in folder.glob("*.py"))
        problems.add(key, f"{module_file.name} is not in {folder}{_did_you_mean(match['module'], found)}")


def _validate_transform(entry: Any, key: str, folder: Path, problems: _Problems) -> None:
    if not isinstance(entry, dict) or len(entry) != 1:
        problems.add(key, f"expected a one-key mapping like `- StepPenalty: {{penalty: 0.01}}`, got {entry!r}")
        return
    ((name, kwargs),) = entry.items()
    if kwargs is not None and not isinstance(kwargs, dict):
        problems.add(f"{key}.{name}", f"expected a mapping of keyword arguments (or nothing), got {kwargs!r}")
    if not isinstance(name, str):
        problems.add(key, f"expected a transform name, got {name!r}")
    elif ":" in name:
        _validate_entry_point(name, key, folder, problems)
    elif name not in BUILTIN_TRANSFORMS:
        problems.add(
            key,
            f"unknown transform {name!r}{_did_you_mean(name, BUILTIN_TRANSFORMS)}; built-ins: "
            f"{', '.join(BUILTIN_TRANSFORMS)}, or 'module:Class' from the env folder",
        )


def _did_you_mean(name: str, choices: Any) -> str:
    close = difflib.get_close_matches(name, list(choices), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _pick(ours: list[dict], declarations: list[dict], env_id: str | None, problems: _Problems) -> dict:
    ids = [d["id"] for d in ours]
    if not ours:
        others = sorted({name for d in declarations for name in d.get("frameworks", {})})
        problems.add(
            "frameworks",
            f"no environment declares a {FRAMEWORK} block (frameworks found: {', '.join(others) or 'none'}); "
            f"add frameworks.{FRAMEWORK} with entry_point and min_version",
        )
    elif env_id is not None and env_id not in ids:
        problems.add(
            "environments", f"no environment with id {env_id!r}{_did_you_mean(env_id, ids)}; ids: {', '.join(ids)}"
        )
    elif env_id is None and len(ours) > 1:
        problems.add(
            "environments", f"{len(ours)} environments declare {FRAMEWORK}: pass env_id= one of {', '.join(ids)}"
        )
    problems.raise_if_any()
    return ours[0] if env_id is None else ours[ids.index(env_id)]


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
