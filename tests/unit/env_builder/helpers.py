"""Helpers for env_builder unit tests: venv-shaped trees and hand-crafted archives."""

from __future__ import annotations

import io
import platform
import sys
import tarfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import zstandard

from env_builder.pack import pack_tree
from env_builder.store import utcnow


def make_venv_tree(root: Path, marker: str = "hello") -> Path:
    """A tree shaped like an unpacked relocatable venv (no interpreter links: rehydration adds them)."""
    site = root / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}" / "site-packages"
    site.mkdir(parents=True)
    (site / "greeting.py").write_text(f"MESSAGE = {marker!r}\n")
    (root / "bin").mkdir()
    tool = root / "bin" / "greet"
    tool.write_text("#!/bin/sh\necho hi\n")
    tool.chmod(0o755)
    (root / "pyvenv.cfg").write_text("home = /nonexistent/bin\nrelocatable = true\n")
    return root


def base_interpreter() -> dict[str, str]:
    return {
        "path": getattr(sys, "_base_executable", sys.executable),
        "version": platform.python_version(),
        "implementation": "cpython",
    }


def tar_zst(members: list[tuple[tarfile.TarInfo, bytes | None]]) -> bytes:
    """A zstd-compressed tar holding exactly these members (for hand-crafted malicious archives)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for info, data in members:
            if data is not None:
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
            else:
                tar.addfile(info)
    return zstandard.ZstdCompressor().compress(buffer.getvalue())


def member(name: str, kind: bytes = tarfile.REGTYPE, mode: int = 0o644, linkname: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.mode = mode
    info.linkname = linkname
    return info


def host_build_output(tmp_path: Path, env_id: str, host: str) -> tuple[Path, dict[str, object]]:
    """What one host's builder of ``env_id`` publishes: an archive (bytes of its own) and its manifest."""
    tree = make_venv_tree(tmp_path / f"tree-{host}", marker=f"built on {host}")
    archive = tmp_path / f"{host}.tar.zst"
    packed = pack_tree(tree, archive)
    manifest = {
        "format": 1,
        "env_id": env_id,
        "kind": "pip",
        "archive": {"sha256": packed.sha256, "size": packed.size, "unpacked_size": packed.unpacked_size},
        "base_interpreter": base_interpreter(),
        "created_at": utcnow().isoformat(),
        "builder": {"host": host},
    }
    return archive, manifest


class RecordingProgress:
    """A ByteProgress that keeps every message and the last count of each step."""

    def __init__(self) -> None:
        self.messages: list[str] = []
        self.steps: dict[str, tuple[int, int | None]] = {}

    def __call__(self, message: str) -> None:
        self.messages.append(message)

    def advance(self, step: str, done: int, total: int | None) -> None:
        self.steps[step] = (done, total)


T = TypeVar("T")


def run_at_once(call: Callable[..., T], arguments: list[tuple[Any, ...]]) -> tuple[list[T], list[BaseException]]:
    """``call`` on its own thread for each tuple of ``arguments``: (results, exceptions), each in finishing order."""
    results: list[T] = []
    errors: list[BaseException] = []

    def run(*args: Any) -> None:
        try:
            results.append(call(*args))
        except BaseException as exc:  # reported by the caller's assertion
            errors.append(exc)

    threads = [threading.Thread(target=run, args=args) for args in arguments]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results, errors


def stored_names(env_id: str, sha256: str) -> list[str]:
    """The files a store holds for one published environment, sorted."""
    return sorted([f"{env_id}.{sha256}.tar.zst", f"{env_id}.lock", f"{env_id}.manifest.json"])


# publish(store, tree=None, archive_bytes=None, manifest_sha256=None, unpacked_size=None) -> env id
Publish = Callable[..., str]
