"""Safe extraction of packed environments (standard library and zstandard only).

Every member is checked here rather than trusting tarfile's ``data`` filter alone (it has had
bypasses): names must be relative without ``..``; only files, directories, symlinks and hardlinks
are accepted (no devices, FIFOs or contiguous files); setuid/setgid bits are refused; nothing is
written through a symlink (parents are real directories we created, and files are opened with
``O_EXCL | O_NOFOLLOW``); symlinks are created last, once every one of them has been resolved
against all the others and stays inside the tree; hardlinks must name a regular file extracted
before them; and the total size may not exceed what the manifest announced.

The tar stream is parsed here too, strictly and only as far as our packer writes it: POSIX ustar
headers with valid checksums and octal numbers, plus pax ``x`` headers for long or non-ASCII
names. GNU long-name and sparse headers, pax global headers and base-256 numbers are refused.
Parsing in a few lines of Python also costs a fraction of ``tarfile``'s per-member work.
"""

from __future__ import annotations

import os
import posixpath
import re
import stat
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future
from pathlib import Path
from typing import IO

from env_builder.cache_layout import READY_MARKER
from env_builder.concurrency import ReadAhead
from env_builder.errors import UnsafeArchiveError

_OPEN_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
_COPY_CHUNK = 4 << 20
_BLOCK = 512
_ZERO_BLOCK = bytes(_BLOCK)
_OCTAL = re.compile(rb"[0-7]*")
_DECIMAL = re.compile(rb"[0-9]+")
_USTAR_MAGIC = b"ustar\x0000"
_REGULAR = (b"0", b"\x00")
_KIND_NAMES = {b"3": "character device", b"4": "block device", b"6": "FIFO", b"7": "contiguous file"}
_LARGE_FILE = 32 << 20
_MAX_IN_FLIGHT = 128 << 20
_BATCH_FILES = 64
_BATCH_BYTES = 4 << 20
_WRITER_THREADS = 4
_DECOMPRESS_CHUNK = 1 << 20
_PREFETCH_CHUNKS = 32
_MAX_LINK_HOPS = 40


def _member_name(raw: str, archive: str) -> str:
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
    progress: Callable[[int], None] | None = None,
) -> int:
    """Extract a ``.tar.zst`` into the existing empty directory ``target``; returns bytes written."""
    import zstandard

    label = label or os.fspath(archive_path)
    target = os.fspath(target)
    with open(archive_path, "rb") as raw:
        reader = _PrefetchingReader(zstandard.ZstdDecompressor().stream_reader(raw, read_size=1 << 20), label)
        try:
            return _extract_stream(reader, target, max_unpacked_size, label, progress)  # type: ignore[arg-type]
        finally:
            reader.close()


class _Member:
    __slots__ = ("kind", "linkname", "mode", "name", "size")

    def __init__(self, name: str, kind: bytes, mode: int, size: int, linkname: str) -> None:
        self.name = name
        self.kind = kind
        self.mode = mode
        self.size = size
        self.linkname = linkname


class _TarStream:
    """Members of a ustar/pax stream, read from a ``read(n)`` source; data is read right after its member."""

    def __init__(self, source: IO[bytes], label: str) -> None:
        self.source = source
        self.label = label
        self.buffer = b""
        self.position = 0

    def read(self, size: int) -> bytes:
        available = len(self.buffer) - self.position
        if available < size:
            parts = [self.buffer[self.position :]]
            while available < size:
                chunk = self.source.read(max(_DECOMPRESS_CHUNK, size - available))
                if not chunk:
                    raise UnsafeArchiveError(f"{self.label}: archive ends early (truncated tar stream)")
                parts.append(chunk)
                available += len(chunk)
            self.buffer, self.position = b"".join(parts), 0
        data = self.buffer[self.position : self.position + size]
        self.position += size
        return data

    def skip_padding(self, size: int) -> None:
        remainder = size % _BLOCK
        if remainder:
            self.read(_BLOCK - remainder)

    def _octal(self, field: bytes, what: str) -> int:
        digits = field.rstrip(b"\x00 ").lstrip(b" ")
        if not _OCTAL.fullmatch(digits):
            raise UnsafeArchiveError(f"{self.label}: tar header field {what} {field!r} is not an octal number")
        return int(digits, 8) if digits else 0

    def _text(self, field: bytes, what: str) -> str:
        try:
            return field.split(b"\x00", 1)[0].decode("utf-8")
        except UnicodeDecodeError:
            raise UnsafeArchiveError(f"{self.label}: tar header {what} {field!r} is not UTF-8") from None

    def _pax(self, size: int) -> dict[str, str]:
        data = self.read(size)
        self.skip_padding(size)
        records: dict[str, str] = {}
        position = 0
        while position < len(data):
            space = data.find(b" ", position)
            length_text = data[position:space] if space > 0 else b""
            if not _DECIMAL.fullmatch(length_text):
                raise UnsafeArchiveError(f"{self.label}: malformed pax record at byte {position}")
            record = data[space + 1 : position + int(length_text)]
            position += int(length_text)
            if not record.endswith(b"\n") or b"=" not in record or position > len(data):
                raise UnsafeArchiveError(f"{self.label}: malformed pax record {record[:60]!r}")
            key, _, value = record[:-1].partition(b"=")
            records[self._text(key, "pax key")] = self._text(value, "pax value")
        for record_key in records:
            if record_key.startswith("GNU.sparse"):
                raise UnsafeArchiveError(f"{self.label}: sparse files (pax {record_key}) are not accepted")
        return records

    def members(self) -> Iterator[_Member]:
        overrides: dict[str, str] = {}
        while True:
            block = self.read(_BLOCK)
            if block == _ZERO_BLOCK:
                return  # end of archive (whatever follows is padding)
            stored = self._octal(block[148:156], "chksum")
            if stored != sum(block) - sum(block[148:156]) + 8 * 32:
                raise UnsafeArchiveError(f"{self.label}: tar header checksum mismatch (corrupt archive)")
            if block[257:265] != _USTAR_MAGIC:
                raise UnsafeArchiveError(f"{self.label}: not a POSIX ustar header (magic {block[257:265]!r})")
            kind = block[156:157]
            size = self._octal(block[124:136], "size")
            if kind == b"x":
                overrides = self._pax(size)
                continue
            if kind in (b"g", b"L", b"K", b"S", b"V", b"M", b"N"):
                raise UnsafeArchiveError(f"{self.label}: tar header type {kind!r} (global or GNU) is not accepted")
            name = self._text(block[0:100], "name")
            prefix = self._text(block[345:500], "prefix")
            if prefix:
                name = f"{prefix}/{name}"
            linkname = self._text(block[157:257], "linkname")
            if "path" in overrides:
                name = overrides["path"]
            if "linkpath" in overrides:
                linkname = overrides["linkpath"]
            if "size" in overrides:
                if not _DECIMAL.fullmatch(overrides["size"].encode()):
                    raise UnsafeArchiveError(f"{self.label}: pax size {overrides['size']!r} is not a number")
                size = int(overrides["size"])
            overrides = {}
            yield _Member(name, kind, self._octal(block[100:108], "mode"), size, linkname)


def _write_file(path: str, data: bytes | memoryview, mode: int) -> None:
    _write_pieces(path, (data,), mode)


def _write_large_file(path: str, source: _TarStream, size: int, mode: int) -> None:
    def pieces() -> Iterator[bytes]:
        remaining = size
        while remaining:
            chunk = source.read(min(remaining, _COPY_CHUNK))
            remaining -= len(chunk)
            yield chunk

    _write_pieces(path, pieces(), mode)


def _write_pieces(path: str, pieces: Iterable[bytes | memoryview], mode: int) -> None:
    # O_EXCL | O_NOFOLLOW: never follow or overwrite anything already at that name.
    fd = os.open(path, _OPEN_FLAGS, 0o600)
    try:
        for piece in pieces:
            view = memoryview(piece)
            while view:
                view = view[os.write(fd, view) :]
        os.fchmod(fd, mode)
    finally:
        os.close(fd)


# Nobody but the owner may write to an extracted environment (the cache may be a node-wide hostPath).
_MODE_MASK = 0o755


class _PrefetchingReader:
    """Decompresses on its own thread (zstandard releases the GIL) while the caller parses tar
    headers: the same pipelining ``zstd -d | tar -x`` gets from two processes."""

    def __init__(self, source: IO[bytes], label: str) -> None:
        self.label = label
        decompressed = iter(lambda: source.read(_DECOMPRESS_CHUNK), b"")
        self.chunks = ReadAhead(decompressed, _PREFETCH_CHUNKS, "mlp-unpack-decompress")
        self.current = memoryview(b"")
        self.done = False

    def read(self, size: int = -1) -> bytes:
        import zstandard

        while not self.current and not self.done:
            try:
                self.current = memoryview(next(self.chunks))
            except StopIteration:
                self.done = True
            except zstandard.ZstdError as exc:
                raise UnsafeArchiveError(f"{self.label}: corrupt zstd stream: {exc}") from exc
        if size < 0 or size >= len(self.current):
            data, self.current = bytes(self.current), memoryview(b"")
        else:
            data, self.current = bytes(self.current[:size]), self.current[size:]
        return data

    def close(self) -> None:
        self.chunks.close()


def _write_batch(batch: list[tuple[str, bytes | None, int]]) -> None:
    for path, data, mode in batch:
        if data is None:
            os.makedirs(path, 0o700, exist_ok=True)
            continue
        try:
            _write_file(path, data, mode)
        except FileNotFoundError:
            # Its directory is created by a batch still running on another thread. Every name was
            # checked before it was queued, and symlinks only appear once all batches are done,
            # so creating the directories here cannot lead outside the tree.
            os.makedirs(os.path.dirname(path), 0o700, exist_ok=True)
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
        self.batch: list[tuple[str, bytes | None, int]] = []
        self.batch_bytes = 0

    def submit(self, path: str, data: bytes | None, mode: int = 0) -> None:
        """Queue a file (or, with ``data`` None, a directory) to be created."""
        self.batch.append((path, data, mode))
        self.batch_bytes += len(data) if data is not None else 0
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


def _extract_stream(
    fileobj: IO[bytes],
    target: str,
    max_unpacked_size: int | None,
    label: str,
    progress: Callable[[int], None] | None = None,
) -> int:
    dirs: dict[str, int] = {}
    files: set[str] = set()
    links: dict[str, str] = {}
    written = 0
    stream = _TarStream(fileobj, label)

    def ensure_parents(name: str) -> None:
        parent = posixpath.dirname(name)
        missing = []
        while parent and parent not in dirs:
            if parent in files or parent in links:
                raise UnsafeArchiveError(f"{label}: member {name!r} would be written through {parent!r}")
            missing.append(parent)
            parent = posixpath.dirname(parent)
        for directory in reversed(missing):
            # Created by the writer threads (or just before a synchronous step), off this thread.
            dirs[directory] = 0o755

    writers = _Writers()
    try:
        for member in stream.members():
            name = _member_name(member.name, label)
            kind = member.kind
            if name == READY_MARKER:
                # Written by rehydrate once the environment is complete: an archive must not pre-empt it.
                raise UnsafeArchiveError(f"{label}: member {name!r} would pose as the cache's ready marker")
            if member.mode & (stat.S_ISUID | stat.S_ISGID):
                raise UnsafeArchiveError(f"{label}: member {name!r} has the setuid or setgid bit")
            if name in files or name in links or (name in dirs and kind != b"5"):
                raise UnsafeArchiveError(f"{label}: member {name!r} appears twice")
            if kind not in _REGULAR and member.size:
                raise UnsafeArchiveError(f"{label}: member {name!r} of type {kind!r} carries data")
            if kind in _REGULAR:
                written += member.size
                if max_unpacked_size is not None and written > max_unpacked_size:
                    raise UnsafeArchiveError(
                        f"{label}: unpacks to more than the {max_unpacked_size} bytes its manifest announces"
                    )
                ensure_parents(name)
                path = os.path.join(target, name)
                if member.size > _LARGE_FILE:
                    writers.drain()
                    os.makedirs(os.path.dirname(path), 0o700, exist_ok=True)
                    _write_large_file(path, stream, member.size, member.mode & _MODE_MASK)
                else:
                    writers.submit(path, stream.read(member.size), member.mode & _MODE_MASK)
                stream.skip_padding(member.size)
                files.add(name)
                if progress is not None:
                    progress(member.size)
            elif kind == b"5":
                ensure_parents(name)
                writers.submit(os.path.join(target, name), None)
                dirs[name] = member.mode & _MODE_MASK
            elif kind == b"2":
                link = member.linkname
                if not link or link.startswith("/") or "\x00" in link:
                    raise UnsafeArchiveError(f"{label}: symlink {name!r} -> {link!r} is absolute or empty")
                ensure_parents(name)
                links[name] = link
            elif kind == b"1":
                source_name = _member_name(member.linkname, label)
                if source_name not in files:
                    raise UnsafeArchiveError(
                        f"{label}: hardlink {name!r} -> {member.linkname!r} does not name a file extracted before it"
                    )
                ensure_parents(name)
                writers.drain()  # the source file must be complete before it gains a second name
                os.makedirs(os.path.dirname(os.path.join(target, name)), 0o700, exist_ok=True)
                os.link(os.path.join(target, source_name), os.path.join(target, name), follow_symlinks=False)
                files.add(name)
            else:
                what = _KIND_NAMES.get(kind, f"member of type {kind!r}")
                raise UnsafeArchiveError(f"{label}: member {name!r} is a {what}; only files and links are allowed")
        writers.drain()
    finally:
        writers.close()

    # Symlinks last: each must resolve inside the tree through all the others, and no extracted
    # member may live under a symlink's name.
    for name in links:
        if name in dirs:
            raise UnsafeArchiveError(f"{label}: symlink {name!r} shadows a directory of the archive")
        _resolve_inside(name, links, label)
    for name in sorted(links):
        path = os.path.join(target, name)
        os.makedirs(os.path.dirname(path), 0o700, exist_ok=True)
        os.symlink(links[name], path)
    for directory in sorted(dirs, reverse=True):
        os.chmod(os.path.join(target, directory), dirs[directory] | 0o700)
    return written
