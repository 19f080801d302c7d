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

from env_builder.concurrency import ReadAhead
from env_builder.errors import BuildError

FIXED_MTIME = 0
ZSTD_LEVEL = 3
_BLOCK = tarfile.BLOCKSIZE
_FLUSH_AT = 4 << 20
_READ_AHEAD = 8


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


def _pax_header(name: str, kind: bytes, mode: int, size: int, linkname: str) -> bytes:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.mode = mode
    info.size = size
    info.linkname = linkname
    info.mtime = FIXED_MTIME
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")


# A ustar header with every constant field filled in (owners 0, no names, mtime FIXED_MTIME,
# magic, device numbers); _header fills in name, mode, size, type, link name and checksum.
_TEMPLATE = bytearray(_BLOCK)
_TEMPLATE[108:116] = b"0000000\0"  # uid
_TEMPLATE[116:124] = b"0000000\0"  # gid
_TEMPLATE[136:148] = b"%011o\0" % FIXED_MTIME
_TEMPLATE[257:265] = b"ustar\x0000"
_TEMPLATE[329:337] = b"0000000\0"  # devmajor
_TEMPLATE[337:345] = b"0000000\0"  # devminor
_MAX_USTAR_SIZE = 8**11 - 1


def _split_ustar(name: bytes) -> tuple[bytes, bytes] | None:
    """(prefix, name) fitting ustar's 155 + 100 bytes, or None where a pax header is needed."""
    if len(name) <= 100:
        return b"", name
    cut = name.find(b"/", len(name) - 101)
    while cut != -1 and cut <= 155:
        if cut > 0 and len(name) - cut - 1 <= 100:
            return name[:cut], name[cut + 1 :]
        cut = name.find(b"/", cut + 1)
    return None


def _header(name: str, kind: bytes, mode: int, size: int = 0, linkname: str = "") -> bytes:
    """The tar header of one member: plain ustar when it fits (the common case, built without
    tarfile's per-field Python code), tarfile's pax form for long or non-ASCII names."""
    if not name.isascii() or not linkname.isascii() or len(linkname) > 100 or size > _MAX_USTAR_SIZE:
        return _pax_header(name, kind, mode, size, linkname)
    split = _split_ustar(name.encode())
    if split is None:
        return _pax_header(name, kind, mode, size, linkname)
    prefix, short = split
    header = _TEMPLATE[:]
    header[0 : len(short)] = short
    header[100:108] = b"%07o\0" % mode
    header[124:136] = b"%011o\0" % size
    header[148:156] = b"        "
    header[156:157] = kind
    if linkname:
        header[157 : 157 + len(linkname)] = linkname.encode()
    if prefix:
        header[345 : 345 + len(prefix)] = prefix
    header[148:156] = b"%06o\0 " % sum(header)
    return bytes(header)


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
    counts = [0, 0]  # unpacked bytes, files
    with open(output, "wb") as raw:
        hashing = _HashingWriter(raw)
        # Reading files runs on its own thread, overlapping zstd's compression.
        with (
            compressor.stream_writer(hashing, closefd=False) as writer,  # type: ignore[arg-type]
            ReadAhead(_tar_chunks(root, counts), _READ_AHEAD, "mlp-pack-read") as chunks,
        ):
            for chunk in chunks:
                writer.write(chunk)
                if progress is not None:
                    progress(len(chunk))
    return PackResult(sha256=hashing.digest.hexdigest(), size=hashing.size, unpacked_size=counts[0], files=counts[1])


def _tar_chunks(root: str, counts: list[int]) -> Iterator[bytearray]:
    pending = bytearray()
    for name, entry in _walk(root):
        st = entry.stat(follow_symlinks=False)
        if stat.S_ISDIR(st.st_mode):
            pending += _header(name, tarfile.DIRTYPE, 0o755)
        elif stat.S_ISLNK(st.st_mode):
            target = os.readlink(entry.path)
            _check_link(name, target)
            pending += _header(name, tarfile.SYMTYPE, 0o777, linkname=target)
        elif stat.S_ISREG(st.st_mode):
            mode = 0o755 if st.st_mode & 0o111 else 0o644
            size = st.st_size
            pending += _header(name, tarfile.REGTYPE, mode, size=size)
            # Read in pieces that top the chunk up to _FLUSH_AT: a GB-sized shared library never sits
            # in memory whole, and every chunk stays near _FLUSH_AT.
            with open(entry.path, "rb") as fh:
                remaining = size
                while remaining:
                    piece = fh.read(min(remaining, max(_FLUSH_AT - len(pending), _BLOCK)))
                    if not piece:
                        break
                    pending += piece
                    remaining -= len(piece)
                    if len(pending) >= _FLUSH_AT:
                        yield pending
                        pending = bytearray()
                if remaining or fh.read(1):
                    raise BuildError(f"cannot pack {name}: it changed size while being packed")
            remainder = size % _BLOCK
            if remainder:
                pending += bytes(_BLOCK - remainder)
            counts[0] += size
            counts[1] += 1
        else:
            raise BuildError(f"cannot pack {name}: it is a socket, FIFO or device, not a file")
        if len(pending) >= _FLUSH_AT:
            yield pending
            pending = bytearray()
    pending += bytes(2 * _BLOCK)
    yield pending
