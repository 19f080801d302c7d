"""Names of environments: content ids and ``team/project/name:tag`` aliases (standard library only)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from env_builder.errors import AliasError

ENV_ID_RE = re.compile(r"[0-9a-f]{64}")  # used with fullmatch: "$" would let a trailing newline through
# Like git, an env may be named by a unique prefix of its id. Six digits, not git's four: four-digit
# hex words (cafe, beef, 2024) are common alias names, and a hex text is tried as an id prefix first.
MIN_ID_PREFIX = 6
_ID_PREFIX_RE = re.compile(rf"[0-9a-f]{{{MIN_ID_PREFIX},}}")
_COMPONENT_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
DEFAULT_TEAM = "default"
DEFAULT_PROJECT = "default"
DEFAULT_TAG = "latest"
# Only these tags may be re-pointed; every other tag names one environment forever.
MUTABLE_TAGS = frozenset({"latest", "candidate", "stable"})


@dataclass(frozen=True, order=True)
class AliasRef:
    """``team/project/name:tag``; a shorter ``name:tag`` or ``team/name@tag`` fills in ``default``."""

    team: str
    project: str
    name: str
    tag: str

    @property
    def mutable(self) -> bool:
        return self.tag in MUTABLE_TAGS

    @property
    def record_name(self) -> str:
        """``team/project/name/tag.json``: where the alias is recorded, under an ``aliases/`` folder."""
        return f"{self.team}/{self.project}/{self.name}/{self.tag}.json"

    @property
    def store_path(self) -> str:
        """Path of the alias record, relative to the store root."""
        return f"aliases/{self.record_name}"

    def __str__(self) -> str:
        return f"{self.team}/{self.project}/{self.name}:{self.tag}"


def is_env_id(text: str) -> bool:
    return bool(ENV_ID_RE.fullmatch(text))


def looks_like_id(text: str) -> bool:
    """At least ``MIN_ID_PREFIX`` lowercase hex digits and nothing else: an env id or a prefix of one."""
    return bool(_ID_PREFIX_RE.fullmatch(text))


def is_sha256(text: str) -> bool:
    """A sha256 hex digest, as archives are named by (an env id has the same shape)."""
    return bool(ENV_ID_RE.fullmatch(text))


def parse_alias(text: str, default_tag: str = DEFAULT_TAG) -> AliasRef:
    """Parse ``[team/[project/]]name[:tag|@tag]``; raise AliasError naming the bad part."""
    if not isinstance(text, str) or not text.strip():
        raise AliasError(f"alias {text!r} is empty; expected 'team/project/name:tag'")
    raw = text.strip()
    path, tag = raw, default_tag
    for separator in (":", "@"):
        if separator in raw:
            path, _, tag = raw.rpartition(separator)
            break
    parts = path.split("/")
    if len(parts) > 3:
        raise AliasError(f"alias {text!r} has {len(parts)} path parts; expected at most 'team/project/name'")
    if len(parts) == 1:
        parts = [DEFAULT_TEAM, DEFAULT_PROJECT, parts[0]]
    elif len(parts) == 2:
        parts = [parts[0], DEFAULT_PROJECT, parts[1]]
    team, project, name = parts
    for label, value in (("team", team), ("project", project), ("name", name), ("tag", tag)):
        if not _COMPONENT_RE.match(value):
            raise AliasError(
                f"alias {text!r} has an invalid {label} {value!r}; expected letters, digits, '.', '_' or '-' "
                "(starting with a letter or digit, at most 128 characters)"
            )
    return AliasRef(team=team, project=project, name=name, tag=tag)


def sanitize_component(text: str) -> str:
    """Turn rendered text (a run id, say) into a valid alias component by replacing other characters with '-'."""
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-._")
    if not cleaned:
        raise AliasError(f"{text!r} has no letters or digits to name an alias with")
    return cleaned[:128]
