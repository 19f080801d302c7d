"""``Lock``: an environment's exact pins for one platform and Python ABI; its hash is the env id.

Apart from the resolvers (``resolve`` for pip with uv, ``conda`` for conda with py-rattler) so that
both produce it without importing each other.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from typing import Any

_PIN_RE = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(?:\[[^\]]*\])?\s*(?:==\s*([^\s;\\]+)|@\s*(\S+))")


def python_abi(python: str) -> str:
    major, minor = python.split(".")[:2]
    return f"cp{major}{minor}"


@dataclass(frozen=True)
class Lock:
    """Exact pins (with hashes) for one platform and Python ABI; ``env_id`` is its hash."""

    kind: str
    python: str
    platform: str
    requirements: str
    packages: tuple[tuple[str, str], ...]
    # conda builds: one "channel-url#sha256" line per package, in install order.
    conda: tuple[str, ...] = ()
    conda_packages: tuple[tuple[str, str], ...] = field(default=())

    @property
    def abi(self) -> str:
        return python_abi(self.python)

    @property
    def env_id(self) -> str:
        identity = {
            "kind": self.kind,
            "abi": self.abi,
            "platform": self.platform,
            "requirements": self.requirements,
            "conda": list(self.conda),
        }
        return hashlib.sha256(json.dumps(identity, sort_keys=True, separators=(",", ":")).encode()).hexdigest()

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "python": self.python,
            "abi": self.abi,
            "platform": self.platform,
            "requirements": self.requirements,
            "packages": [list(p) for p in self.packages],
            "conda": list(self.conda),
            "conda_packages": [list(p) for p in self.conda_packages],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Lock:
        return cls(
            kind=data["kind"],
            python=data["python"],
            platform=data["platform"],
            requirements=data["requirements"],
            packages=tuple((str(n), str(v)) for n, v in data["packages"]),
            conda=tuple(data.get("conda") or ()),
            conda_packages=tuple((str(n), str(v)) for n, v in data.get("conda_packages") or ()),
        )

    def lock_text(self) -> str:
        """The text stored beside the archive (``envs/<id>.lock``): the pins, then the conda URLs."""
        text = self.requirements
        if self.conda:
            text += "".join(f"# conda: {line}\n" for line in self.conda)
        return text


def parse_pins(requirements: str) -> tuple[tuple[str, str], ...]:
    pins = []
    for line in requirements.splitlines():
        match = _PIN_RE.match(line)
        if match:
            pins.append((match.group(1).lower(), match.group(2) or match.group(3)))
    return tuple(pins)
