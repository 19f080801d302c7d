"""Safe extraction of packed environments (standard library and zstandard only).

Every member is checked here rather than trusting tarfile's ``data`` filter alone (it has had
bypasses): names must be relative without ``..``; only files, directories, symlinks and hardlinks
are accepted (no devices, FIFOs or contiguous files); setuid/setgid bits are refused; nothing is
written through a symlink (parents are real directories we created, and files are opened with
``O_EXCL | O_NOFOLLOW``); symlinks are created last, once every one of them has been resolved
against all the others and stays inside the tree; hardlinks must name a regular file extracted
before them; and the total size may not exceed what the manifest announced.
"""

from __future__ import annotations

import os
import posixpath
import stat
import tarfile
from pathlib import Path
from typing import IO, BinaryIO

from env_builder.errors import UnsafeArchiveError

_OPEN_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
_COPY_CHUNK = 4 << 20
_MAX_LINK_HOPS = 40


def _member_name(member: tarfile.TarInfo, archive: str) -> str:
    raw = member.name
    if not raw or "\x00" in raw or raw.startswith("/") or "\\" in raw:
        raise UnsafeArchiveError(f"{archive}: member {raw!r} has an absolute or malformed name")
    parts = [part for part in raw.split("/") if part not in ("", ".")]
    if not parts:
        raise UnsafeArchiveError(f"{archive}: member {raw!r} names the root itself")
    if ".." in parts:
        raise UnsafeArchiveError(f"{archive}: member {raw!r} contains '..'")
    return "/".join(parts)


def _resolve_inside(name: str, links: dict[str, str], archive: str) -> None:
    """Follow symlink ``name`` through every other symlink of the archive; it must stay in the tree."""
    hops = 0
    pending = links[name].split("/")
    current: list[str] = name.split("/")[:-1]
    while pending:
        part = pending.pop(0)
        if part in ("", "."):
            continue
        if part == "..":
            if not current:
                raise UnsafeArchiveError(f"{archive}: symlink {name!r} -> {links[name]!r} leaves the environment")
            current.pop()
            continue
        current.append(part)
        joined = "/".join(current)
        if joined in links:
            hops += 1
            if hops > _MAX_LINK_HOPS:
                raise UnsafeArchiveError(f"{archive}: symlink {name!r} loops through other symlinks")
            target = links[joined]
            if target.startswith("/"):
                raise UnsafeArchiveError(f"{archive}: symlink {joined!r} -> {target!r} is absolute")
            current.pop()
            pending = target.split("/") + pending


def extract_archive(
    archive_path: str | Path,
    target: str | Path,
    *,
    max_unpacked_size: int | None = None,
    label: str | None = None,
) -> int:
    """Extract a ``.tar.zst`` into the existing empty directory ``target``; returns bytes written."""
    import zstandard

    label = label or os.fspath(archive_path)
    target = os.fspath(target)
    with open(archive_path, "rb") as raw:
        reader = zstandard.ZstdDecompressor().stream_reader(raw, read_size=1 << 20)
        return _extract_stream(reader, target, max_unpacked_size, label)


def _write_file(path: str, source: IO[bytes], size: int, mode: int, label: str) -> None:
    # O_EXCL | O_NOFOLLOW: never follow or overwrite anything already at that name.
    fd = os.open(path, _OPEN_FLAGS, 0o600)
    try:
        remaining = size
        while remaining:
            chunk = source.read(min(remaining, _COPY_CHUNK))
            if not chunk:
                raise UnsafeArchiveError(f"{label}: member {path!r} is truncated")
            view = memoryview(chunk)
            while view:
                view = view[os.write(fd, view) :]
            remaining -= len(chunk)
        os.fchmod(fd, mode)
    finally:
        os.close(fd)


def _extract_stream(fileobj: BinaryIO, target: str, max_unpacked_size: int | None, label: str) -> int:
    dirs: dict[str, int] = {}
    files: set[str] = set()
    links: dict[str, str] = {}
    written = 0
    try:
        tar = tarfile.open(fileobj=fileobj, mode="r|", bufsize=1 << 20)  # noqa: SIM115 - closed below
    except tarfile.TarError as exc:
        raise UnsafeArchiveError(f"{label}: not a readable tar stream: {exc}") from None

    def ensure_parents(name: str) -> None:
        parent = posixpath.dirname(name)
        missing = []
        while parent and parent not in dirs:
            if parent in files or parent in links:
                raise UnsafeArchiveError(f"{label}: member {name!r} would be written through {parent!r}")
            missing.append(parent)
            parent = posixpath.dirname(parent)
        for directory in reversed(missing):
            os.mkdir(os.path.join(target, directory), 0o700)
            dirs[directory] = 0o755

    try:
        with tar:
            for member in tar:
                name = _member_name(member, label)
                if member.mode & (stat.S_ISUID | stat.S_ISGID):
                    raise UnsafeArchiveError(f"{label}: member {name!r} has the setuid or setgid bit")
                if name in files or name in links or (name in dirs and not member.isdir()):
                    raise UnsafeArchiveError(f"{label}: member {name!r} appears twice")
                if member.isreg():
                    if member.type not in (tarfile.REGTYPE, tarfile.AREGTYPE):
                        raise UnsafeArchiveError(f"{label}: member {name!r} is a contiguous file, not supported")
                    written += member.size
                    if max_unpacked_size is not None and written > max_unpacked_size:
                        raise UnsafeArchiveError(
                            f"{label}: unpacks to more than the {max_unpacked_size} bytes its manifest announces"
                        )
                    ensure_parents(name)
                    source = tar.extractfile(member)
                    assert source is not None
                    _write_file(os.path.join(target, name), source, member.size, member.mode & 0o777, label)
                    files.add(name)
                elif member.isdir():
                    ensure_parents(name)
                    if name not in dirs:
                        os.mkdir(os.path.join(target, name), 0o700)
                    dirs[name] = member.mode & 0o777
                elif member.issym():
                    link = member.linkname
                    if not link or link.startswith("/") or "\x00" in link:
                        raise UnsafeArchiveError(f"{label}: symlink {name!r} -> {link!r} is absolute or empty")
                    ensure_parents(name)
                    links[name] = link
                elif member.islnk():
                    source_name = _member_name(tarfile.TarInfo(member.linkname), label)
                    if source_name not in files:
                        raise UnsafeArchiveError(
                            f"{label}: hardlink {name!r} -> {member.linkname!r} does not name a file "
                            "extracted before it"
                        )
                    ensure_parents(name)
                    os.link(os.path.join(target, source_name), os.path.join(target, name), follow_symlinks=False)
                    files.add(name)
                else:
                    kind = "FIFO" if member.isfifo() else "device" if member.isdev() else f"type {member.type!r}"
                    raise UnsafeArchiveError(f"{label}: member {name!r} is a {kind}; only files and links are allowed")
    except tarfile.TarError as exc:
        raise UnsafeArchiveError(f"{label}: corrupt tar stream: {exc}") from None
    except EOFError as exc:
        raise UnsafeArchiveError(f"{label}: archive ends early: {exc}") from None

    # Symlinks last: each must resolve inside the tree through all the others, and no extracted
    # member may live under a symlink's name.
    for name in links:
        if name in dirs:
            raise UnsafeArchiveError(f"{label}: symlink {name!r} shadows a directory of the archive")
        _resolve_inside(name, links, label)
    for name in sorted(links):
        os.symlink(links[name], os.path.join(target, name))
    for directory in sorted(dirs, reverse=True):
        os.chmod(os.path.join(target, directory), dirs[directory] | 0o700)
    return written
