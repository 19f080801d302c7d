"""Deterministic packing: sorted tar entries, owners 0, one fixed mtime, normalized modes, zstd.

The same tree always gives a byte-identical archive: zstd's multi-threaded mode produces the same
frames whatever the number of workers, and nothing host- or time-dependent enters the tar headers.
"""

from __future__ import annotations

import hashlib
import os
import posixpath
import stat
import tarfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from env_builder.errors import BuildError

FIXED_MTIME = 0
ZSTD_LEVEL = 3
_BLOCK = tarfile.BLOCKSIZE
_FLUSH_AT = 4 << 20


@dataclass(frozen=True)
class PackResult:
    sha256: str
    size: int
    unpacked_size: int
    files: int


class _HashingWriter:
    """A write-only file that hashes and counts what passes through it."""

    def __init__(self, raw: BinaryIO) -> None:
        self.raw = raw
        self.digest = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> int:
        self.digest.update(data)
        self.size += len(data)
        self.raw.write(data)
        return len(data)

    def flush(self) -> None:
        self.raw.flush()


def _walk(root: str, relative: str = "") -> Iterator[tuple[str, os.DirEntry[str]]]:
    entries = sorted(os.scandir(os.path.join(root, relative) if relative else root), key=lambda e: e.name)
    for entry in entries:
        name = f"{relative}/{entry.name}" if relative else entry.name
        yield name, entry
        if entry.is_dir(follow_symlinks=False):
            yield from _walk(root, name)


def _header(name: str, kind: bytes, mode: int, size: int = 0, linkname: str = "") -> bytes:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.mode = mode
    info.size = size
    info.linkname = linkname
    info.mtime = FIXED_MTIME
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")


def _check_link(name: str, target: str) -> None:
    resolved = posixpath.normpath(posixpath.join(posixpath.dirname(name), target))
    if target.startswith("/") or resolved == ".." or resolved.startswith("../"):
        raise BuildError(
            f"cannot pack {name}: it is a symlink to {target!r}, outside the environment; "
            "an environment must be self-contained"
        )


def pack_tree(
    root: str | Path,
    output: str | Path,
    *,
    level: int = ZSTD_LEVEL,
    threads: int = -1,
    progress: Callable[[int], None] | None = None,
) -> PackResult:
    """Pack ``root`` into a zstd-compressed tar at ``output``; ``progress`` gets uncompressed byte counts."""
    import zstandard

    root = os.fspath(root)
    compressor = zstandard.ZstdCompressor(level=level, threads=threads)
    unpacked = files = 0
    with open(output, "wb") as raw:
        hashing = _HashingWriter(raw)
        with compressor.stream_writer(hashing, closefd=False) as writer:  # type: ignore[arg-type]
            pending = bytearray()

            def emit(data: bytes | bytearray | memoryview) -> None:
                nonlocal pending
                pending += data
                if len(pending) >= _FLUSH_AT:
                    writer.write(pending)
                    if progress is not None:
                        progress(len(pending))
                    pending = bytearray()

            for name, entry in _walk(root):
                st = entry.stat(follow_symlinks=False)
                if stat.S_ISDIR(st.st_mode):
                    emit(_header(name, tarfile.DIRTYPE, 0o755))
                elif stat.S_ISLNK(st.st_mode):
                    target = os.readlink(entry.path)
                    _check_link(name, target)
                    emit(_header(name, tarfile.SYMTYPE, 0o777, linkname=target))
                elif stat.S_ISREG(st.st_mode):
                    mode = 0o755 if st.st_mode & 0o111 else 0o644
                    with open(entry.path, "rb") as fh:
                        data = fh.read()
                    if len(data) != st.st_size:
                        raise BuildError(f"cannot pack {name}: it changed size while being packed")
                    emit(_header(name, tarfile.REGTYPE, mode, size=len(data)))
                    emit(data)
                    remainder = len(data) % _BLOCK
                    if remainder:
                        emit(bytes(_BLOCK - remainder))
                    unpacked += len(data)
                    files += 1
                else:
                    raise BuildError(f"cannot pack {name}: it is a socket, FIFO or device, not a file")
            emit(bytes(2 * _BLOCK))
            writer.write(pending)
            if progress is not None:
                progress(len(pending))
    return PackResult(sha256=hashing.digest.hexdigest(), size=hashing.size, unpacked_size=unpacked, files=files)
