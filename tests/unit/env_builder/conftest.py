"""Fixtures for env_builder unit tests: hand-made venv-shaped trees published to a local store."""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

import pytest

from env_builder.pack import pack_tree
from env_builder.store import EnvStore, utcnow
from tests.unit.env_builder.helpers import Publish, base_interpreter, make_venv_tree


@pytest.fixture
def publish(tmp_path: Path) -> Publish:
    """publish(store, tree=None, archive_bytes=None, **overrides) -> env_id of a stored environment (``env_id=``
    chooses it; by default it is made up from the archive)."""
    counter = iter(range(10**6))

    def _publish(
        store: EnvStore,
        tree: Path | None = None,
        archive_bytes: bytes | None = None,
        manifest_sha256: str | None = None,
        unpacked_size: int | None = None,
        env_id: str | None = None,
    ) -> str:
        n = next(counter)
        archive = tmp_path / f"published-{n}.tar.zst"
        if archive_bytes is None:
            tree = tree or make_venv_tree(tmp_path / f"tree-{n}", marker=f"tree-{n}")
            result = pack_tree(tree, archive)
            archive_bytes = archive.read_bytes()
            unpacked_size = unpacked_size or result.unpacked_size
        else:
            archive.write_bytes(archive_bytes)
        sha256 = hashlib.sha256(archive_bytes).hexdigest()
        env_id = env_id or hashlib.sha256(f"test-env-{sha256}-{n}".encode()).hexdigest()
        manifest = {
            "format": 1,
            "env_id": env_id,
            "kind": "pip",
            "spec": {"python": f"{sys.version_info.major}.{sys.version_info.minor}", "pip": ["greeting"]},
            "lock": {"packages": [["greeting", "1.0"]]},
            "archive": {
                "sha256": manifest_sha256 or sha256,
                "size": len(archive_bytes),
                "unpacked_size": unpacked_size,
                "files": 2,
            },
            "base_interpreter": base_interpreter(),
            "created_at": utcnow().isoformat(),
        }
        store.put_env(env_id, str(archive), manifest, "greeting==1.0\n")
        return env_id

    return _publish
