"""What an environment contains: ``EnvSpec`` and its canonical form, whose hash is the ``req_id``."""

from __future__ import annotations

import hashlib
import json
import re
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from env_builder.errors import SpecError

_PYTHON_RE = re.compile(r"^3\.\d{1,2}(\.\d{1,3})?$")
_CONDA_SPEC_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]*([ =<>!~*,.0-9A-Za-z_|]*)$")


def running_python() -> str:
    return f"{sys.version_info.major}.{sys.version_info.minor}"


def _as_tuple(value: Iterable[str] | str | None, field_name: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        value = [value]
    items = []
    for item in value:
        if not isinstance(item, str):
            raise SpecError(f"EnvSpec.{field_name} entries must be strings, got {item!r}")
        item = item.strip()
        if item:
            items.append(item)
    return tuple(items)


def _python_not_a_string(value: object) -> str:
    """Why a non-string Python version is refused: YAML and JSON read an unquoted 3.10 as the number 3.1."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return (
            f'EnvSpec.python is the number {value!r}, not a string; quote the version (python: "3.10" in YAML, '
            f'"python": "3.10" in JSON): unquoted, 3.10 is read as the number 3.1'
        )
    return f'EnvSpec.python must be a string such as "3.11", got {type(value).__name__} {value!r}'


def _normalize_pip(requirement: str, origin: str) -> str:
    from packaging.requirements import InvalidRequirement, Requirement
    from packaging.utils import canonicalize_name

    if requirement.startswith(("-e", "--editable")):
        raise SpecError(
            f"{origin}: editable requirement {requirement!r} is refused: an editable install points at a source "
            "tree outside the environment and cannot be packed; publish a wheel or use 'name @ https://...'"
        )
    if requirement.startswith("-"):
        raise SpecError(f"{origin}: pip option {requirement!r} is not supported in an environment spec")
    try:
        parsed = Requirement(requirement)
    except InvalidRequirement as exc:
        raise SpecError(f"{origin}: {requirement!r} is not a valid requirement: {exc}") from None
    if parsed.url and (parsed.url.startswith("file:") or "://" not in parsed.url):
        raise SpecError(
            f"{origin}: requirement {requirement!r} points at a local path; a portable environment needs "
            "packages from an index or an https URL"
        )
    parsed.name = canonicalize_name(parsed.name)
    return str(parsed)


@dataclass(frozen=True)
class EnvSpec:
    """The packages an environment needs; the same spec (and index state) always gives the same env id.

    ``base`` is the id of the environment this one extends (see ``extending``); its locked packages are
    already pinned in ``pip`` and ``conda``. ``platform`` is a uv ``--python-platform`` target, the
    building host's by default.
    """

    python: str = field(default_factory=running_python)
    # Any sequence is accepted; __post_init__ stores sorted, de-duplicated tuples.
    pip: Sequence[str] = ()
    conda: Sequence[str] = ()
    channels: Sequence[str] = ()
    base: str | None = None
    platform: str | None = None
    # Where ``base`` came from ("ranking/default/model-a:latest"): shown to people, not part of the identity.
    base_ref: str | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.python, str):
            raise SpecError(_python_not_a_string(self.python))
        python = self.python.strip()
        if not _PYTHON_RE.match(python):
            raise SpecError(f"EnvSpec.python {self.python!r} is not a Python version; expected '3.X' or '3.X.Y'")
        object.__setattr__(self, "python", python)
        pip = tuple(sorted({_normalize_pip(r, "EnvSpec.pip") for r in _as_tuple(self.pip, "pip")}))
        object.__setattr__(self, "pip", pip)
        conda = _as_tuple(self.conda, "conda")
        for item in conda:
            if not _CONDA_SPEC_RE.match(item):
                raise SpecError(f"EnvSpec.conda entry {item!r} is not a conda match spec ('name', 'name=1.2', ...)")
        object.__setattr__(self, "conda", tuple(sorted(set(conda))))
        # Channel order is priority order, so it is kept as given.
        object.__setattr__(self, "channels", tuple(dict.fromkeys(_as_tuple(self.channels, "channels"))))
        if self.channels and not self.conda:
            raise SpecError("EnvSpec.channels is set but EnvSpec.conda is empty; channels only apply to conda packages")
        if not pip and not conda:
            raise SpecError("EnvSpec has no packages: give pip=[...] and/or conda=[...]")

    @property
    def kind(self) -> str:
        """Which builder makes it: 'conda' when any conda package is asked for, else 'pip'."""
        return "conda" if self.conda else "pip"

    def to_dict(self) -> dict[str, Any]:
        return {
            "python": self.python,
            "pip": list(self.pip),
            "conda": list(self.conda),
            "channels": list(self.channels),
            "base": self.base,
            "platform": self.platform,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> EnvSpec:
        unknown = set(data) - {"python", "pip", "conda", "channels", "base", "platform", "base_ref"}
        if unknown:
            raise SpecError(f"EnvSpec has unknown fields {sorted(unknown)}; expected python, pip, conda, channels")
        return cls(**dict(data))

    def canonical_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))

    @property
    def req_id(self) -> str:
        """sha256 of the canonical spec: what was asked for (the env id is what was resolved)."""
        return hashlib.sha256(self.canonical_json().encode()).hexdigest()

    # -- readers ---------------------------------------------------------------------------------

    @classmethod
    def from_requirements(cls, path: str | Path, python: str | None = None) -> EnvSpec:
        """A pip ``requirements.txt`` (``-r`` includes followed; editable and option lines refused)."""
        return cls(python=python or running_python(), pip=_read_requirements(Path(path), seen=set()))

    @classmethod
    def from_environment_yml(cls, path: str | Path) -> EnvSpec:
        """A conda ``environment.yml``: channels, conda dependencies (``python=3.X`` sets the version), pip list."""
        import yaml

        path = Path(path)
        try:
            data = yaml.safe_load(path.read_text())
        except (OSError, yaml.YAMLError) as exc:
            raise SpecError(f"{path}: cannot read environment file: {exc}") from None
        if not isinstance(data, dict) or not isinstance(data.get("dependencies"), list):
            raise SpecError(f"{path}: expected a mapping with a 'dependencies' list")
        python: str | None = None
        conda: list[str] = []
        pip: list[str] = []
        for dep in data["dependencies"]:
            if isinstance(dep, dict) and set(dep) == {"pip"} and isinstance(dep["pip"], list):
                pip.extend(str(item) for item in dep["pip"])
            elif isinstance(dep, str):
                name = re.split(r"[ =<>!~]", dep.strip(), maxsplit=1)[0]
                if name == "python":
                    python = re.sub(r"^python\s*=*\s*", "", dep.strip()).rstrip(".*") or None
                elif name != "pip":
                    conda.append(dep)
            else:
                raise SpecError(f"{path}: dependency {dep!r} is neither a string nor a 'pip:' list")
        channels = [str(c) for c in data.get("channels") or [] if str(c) != "nodefaults"]
        return cls(python=python or running_python(), conda=conda, pip=pip, channels=channels if conda else ())

    @classmethod
    def from_pyproject(cls, path: str | Path, python: str | None = None, extras: Iterable[str] = ()) -> EnvSpec:
        """``[project].dependencies`` (plus the named optional-dependency groups) of a pyproject.toml."""
        import tomllib

        path = Path(path)
        try:
            data = tomllib.loads(path.read_text())
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise SpecError(f"{path}: cannot read pyproject: {exc}") from None
        project = data.get("project")
        if not isinstance(project, dict):
            raise SpecError(f"{path}: has no [project] table")
        pip = list(project.get("dependencies") or [])
        optional = project.get("optional-dependencies") or {}
        for extra in extras:
            if extra not in optional:
                raise SpecError(f"{path}: has no optional-dependencies group {extra!r}; it has {sorted(optional)}")
            pip.extend(optional[extra])
        if python is None:
            python = running_python()
            requires = project.get("requires-python")
            if requires:
                from packaging.specifiers import SpecifierSet

                if not SpecifierSet(requires).contains(f"{python}.0", prereleases=True):
                    raise SpecError(
                        f"{path}: requires-python {requires!r} excludes this interpreter's {python}; pass python="
                    )
        return cls(python=python, pip=pip)

    @classmethod
    def extending(
        cls,
        base: str,
        pip: Iterable[str] = (),
        conda: Iterable[str] = (),
        store: str | None = None,
        storage_options: Mapping[str, Any] | None = None,
    ) -> EnvSpec:
        """Another environment's locked packages plus more: ``extending("ranking/model-a@latest", pip=["shap"])``.

        ``base`` is an alias or an env id; it is resolved now, so the new spec names one exact environment.
        """
        from env_builder.store import EnvStore

        env_store = EnvStore.open(store, storage_options)
        env_id = env_store.resolve(base)
        manifest = env_store.manifest(env_id)
        base_spec = manifest["spec"]
        # A direct-URL requirement is locked as (name, url): it is pinned back as ``name @ url``.
        pinned = [
            f"{name} @ {version}" if "://" in version else f"{name}=={version}"
            for name, version in manifest["lock"]["packages"]
        ]
        conda_pinned = [f"{name}=={version}" for name, version in manifest["lock"].get("conda_packages", [])]
        return cls(
            python=base_spec["python"],
            pip=[*pinned, *_as_tuple(pip, "pip")],
            conda=[*conda_pinned, *_as_tuple(conda, "conda")],
            channels=base_spec.get("channels") or (),
            base=env_id,
            platform=base_spec.get("platform"),
            base_ref=base,
        )


def _read_requirements(path: Path, seen: set[Path]) -> list[str]:
    resolved = path.resolve()
    if resolved in seen:
        raise SpecError(f"{path}: included twice (a '-r' loop)")
    seen.add(resolved)
    try:
        lines = path.read_text().splitlines()
    except OSError as exc:
        raise SpecError(f"cannot read requirements file {path}: {exc}") from None
    requirements: list[str] = []
    for number, raw in enumerate(lines, start=1):
        line = raw.split(" #", 1)[0].strip()
        if not line or line.startswith("#"):
            continue
        origin = f"{path}:{number}"
        if line.startswith(("-r ", "--requirement ")):
            requirements.extend(_read_requirements(path.parent / line.split(None, 1)[1], seen))
            continue
        requirements.append(_normalize_pip(line, origin))
    return requirements
