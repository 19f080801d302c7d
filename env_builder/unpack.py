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
from collections import deque
from concurrent.futures import Future
from pathlib import Path
from typing import IO, BinaryIO

from env_builder.errors import UnsafeArchiveError

_OPEN_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
_COPY_CHUNK = 4 << 20
# tarfile's stream mode re-slices its buffer on every read: a small buffer keeps that cheap.
_TAR_BUFSIZE = 64 << 10
_LARGE_FILE = 32 << 20
_MAX_IN_FLIGHT = 128 << 20
_BATCH_FILES = 64
_BATCH_BYTES = 4 << 20
_WRITER_THREADS = 4
_DECOMPRESS_CHUNK = 1 << 20
_PREFETCH_CHUNKS = 32
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
        reader = _PrefetchingReader(zstandard.ZstdDecompressor().stream_reader(raw, read_size=1 << 20), label)
        try:
            return _extract_stream(reader, target, max_unpacked_size, label)  # type: ignore[arg-type]
        finally:
            reader.close()


def _write_file(path: str, data: bytes | memoryview, mode: int) -> None:
    # O_EXCL | O_NOFOLLOW: never follow or overwrite anything already at that name.
    fd = os.open(path, _OPEN_FLAGS, 0o600)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fchmod(fd, mode)
    finally:
        os.close(fd)


def _write_large_file(path: str, source: IO[bytes], size: int, mode: int, label: str) -> None:
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


class _PrefetchingReader:
    """Decompresses on its own thread (zstandard releases the GIL) while the caller parses tar
    headers: the same pipelining ``zstd -d | tar -x`` gets from two processes."""

    def __init__(self, source: IO[bytes], label: str) -> None:
        import queue
        import threading

        self.source = source
        self.label = label
        self.chunks: queue.Queue[bytes | BaseException | None] = queue.Queue(maxsize=_PREFETCH_CHUNKS)
        self.current = memoryview(b"")
        self.done = False
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._fill, name="mlp-unpack-decompress", daemon=True)
        self.thread.start()

    def _fill(self) -> None:
        import queue

        try:
            while not self.stopped.is_set():
                chunk = self.source.read(_DECOMPRESS_CHUNK)
                item: bytes | BaseException | None = chunk or None
                while not self.stopped.is_set():
                    try:
                        self.chunks.put(item, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if not chunk:
                    return
        except BaseException as exc:  # handed to the reading thread, which raises it
            self.chunks.put(exc)

    def read(self, size: int = -1) -> bytes:
        import zstandard

        while not self.current and not self.done:
            item = self.chunks.get()
            if item is None:
                self.done = True
            elif isinstance(item, zstandard.ZstdError):
                raise UnsafeArchiveError(f"{self.label}: corrupt zstd stream: {item}") from item
            elif isinstance(item, BaseException):
                raise item
            else:
                self.current = memoryview(item)
        if size < 0 or size >= len(self.current):
            data, self.current = bytes(self.current), memoryview(b"")
        else:
            data, self.current = bytes(self.current[:size]), self.current[size:]
        return data

    def close(self) -> None:
        self.stopped.set()
        self.thread.join()


def _write_batch(batch: list[tuple[str, bytes, int]]) -> None:
    for path, data, mode in batch:
        _write_file(path, data, mode)


class _Writers:
    """Writes small files on a few threads, in batches: creating many files is bound by syscall
    latency, and open/write/close release the GIL, so overlapping them keeps up with
    decompression; batching keeps the thread hand-offs (futex calls) few."""

    def __init__(self) -> None:
        from concurrent.futures import ThreadPoolExecutor

        self.pool = ThreadPoolExecutor(max_workers=_WRITER_THREADS, thread_name_prefix="mlp-unpack")
        self.pending: deque[tuple[Future[None], int]] = deque()
        self.in_flight = 0
        self.batch: list[tuple[str, bytes, int]] = []
        self.batch_bytes = 0

    def submit(self, path: str, data: bytes, mode: int) -> None:
        self.batch.append((path, data, mode))
        self.batch_bytes += len(data)
        if len(self.batch) >= _BATCH_FILES or self.batch_bytes >= _BATCH_BYTES:
            self._flush()

    def _flush(self) -> None:
        if not self.batch:
            return
        self.pending.append((self.pool.submit(_write_batch, self.batch), self.batch_bytes))
        self.in_flight += self.batch_bytes
        self.batch, self.batch_bytes = [], 0
        while self.in_flight > _MAX_IN_FLIGHT:
            self._wait_oldest()

    def _wait_oldest(self) -> None:
        future, size = self.pending.popleft()
        self.in_flight -= size
        future.result()

    def drain(self) -> None:
        self._flush()
        while self.pending:
            self._wait_oldest()

    def close(self) -> None:
        # Wait for every write (even after an error) so nothing writes into a tree being removed.
        self.pool.shutdown(wait=True, cancel_futures=True)


def _extract_stream(fileobj: BinaryIO, target: str, max_unpacked_size: int | None, label: str) -> int:
    dirs: dict[str, int] = {}
    files: set[str] = set()
    links: dict[str, str] = {}
    written = 0
    try:
        tar = tarfile.open(fileobj=fileobj, mode="r|", bufsize=_TAR_BUFSIZE)  # noqa: SIM115 - closed below
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

    writers = _Writers()
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
                    path = os.path.join(target, name)
                    if member.size > _LARGE_FILE:
                        writers.drain()
                        _write_large_file(path, source, member.size, member.mode & 0o777, label)
                    else:
                        data = source.read()
                        if len(data) != member.size:
                            raise UnsafeArchiveError(f"{label}: member {name!r} is truncated")
                        writers.submit(path, data, member.mode & 0o777)
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
                    writers.drain()  # the source file must be complete before it gains a second name
                    os.link(os.path.join(target, source_name), os.path.join(target, name), follow_symlinks=False)
                    files.add(name)
                else:
                    kind = "FIFO" if member.isfifo() else "device" if member.isdev() else f"type {member.type!r}"
                    raise UnsafeArchiveError(f"{label}: member {name!r} is a {kind}; only files and links are allowed")
            writers.drain()
    except tarfile.TarError as exc:
        raise UnsafeArchiveError(f"{label}: corrupt tar stream: {exc}") from None
    except EOFError as exc:
        raise UnsafeArchiveError(f"{label}: archive ends early: {exc}") from None
    finally:
        writers.close()

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
