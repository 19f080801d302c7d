"""Helpers for env_builder unit tests: venv-shaped trees and hand-crafted archives."""

from __future__ import annotations

import io
import platform
import sys
import tarfile
from collections.abc import Callable
from pathlib import Path

import zstandard


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


# publish(store, tree=None, archive_bytes=None, manifest_sha256=None, unpacked_size=None) -> env id
Publish = Callable[..., str]
