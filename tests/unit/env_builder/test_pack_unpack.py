from __future__ import annotations

import hashlib
import os
import re
import tarfile
from pathlib import Path

import pytest

from env_builder.errors import BuildError, UnsafeArchiveError
from env_builder.pack import pack_tree
from env_builder.unpack import extract_archive
from tests.unit.env_builder.helpers import make_venv_tree, member, tar_zst


def _tree_listing(root: Path) -> dict[str, tuple[str, int, str]]:
    listing = {}
    for path in sorted(root.rglob("*")):
        rel = str(path.relative_to(root))
        if path.is_symlink():
            listing[rel] = ("link", 0, os.readlink(path))
        elif path.is_dir():
            listing[rel] = ("dir", 0, "")
        else:
            listing[rel] = ("file", path.stat().st_mode & 0o777, hashlib.sha256(path.read_bytes()).hexdigest())
    return listing


def test_same_tree_packs_to_identical_bytes_whatever_owners_mtimes_and_order(tmp_path: Path) -> None:
    first = make_venv_tree(tmp_path / "a")
    second = make_venv_tree(tmp_path / "b")
    os.utime(second / "pyvenv.cfg", (1, 1))
    (second / "bin" / "greet").chmod(0o700)  # still "executable": normalized to 0o755
    (first / "lib" / "link").symlink_to("python3.11")
    (second / "lib" / "link").symlink_to("python3.11")
    a = pack_tree(first, tmp_path / "a.tar.zst")
    b = pack_tree(second, tmp_path / "b.tar.zst", threads=1)
    assert a == b
    assert (tmp_path / "a.tar.zst").read_bytes() == (tmp_path / "b.tar.zst").read_bytes()
    assert a.sha256 == hashlib.sha256((tmp_path / "a.tar.zst").read_bytes()).hexdigest()

    with _open_tar(tmp_path / "a.tar.zst") as tar:
        members = tar.getmembers()
    assert [m.name for m in members] == sorted([m.name for m in members], key=lambda n: n.split("/"))
    assert {(m.uid, m.gid, m.uname, m.gname, m.mtime) for m in members} == {(0, 0, "", "", 0)}
    assert {m.name: m.mode for m in members}["bin/greet"] == 0o755


def _open_tar(path: Path) -> tarfile.TarFile:
    import io

    import zstandard

    data = zstandard.ZstdDecompressor().decompressobj().decompress(path.read_bytes())
    return tarfile.open(fileobj=io.BytesIO(data))


def test_round_trip_keeps_files_modes_and_internal_symlinks(tmp_path: Path) -> None:
    tree = make_venv_tree(tmp_path / "src")
    (tree / "lib" / "alias").symlink_to("python3.11")
    (tree / "empty").mkdir()
    # Names past ustar's 100 bytes (split into its prefix field), past 255 (pax), and non-ASCII.
    deep = tree / ("d" * 60) / ("e" * 60) / ("f" * 60)
    deep.mkdir(parents=True)
    (deep / ("g" * 90)).write_text("split")
    (deep / ("h" * 200)).write_text("pax")
    (tree / "donn\u00e9es.txt").write_text("utf-8")
    pack_tree(tree, tmp_path / "env.tar.zst")
    out = tmp_path / "out"
    out.mkdir()
    extract_archive(tmp_path / "env.tar.zst", out)
    assert _tree_listing(out) == _tree_listing(tree)


def test_files_larger_than_a_chunk_are_streamed_in_bounded_pieces(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import env_builder.pack

    monkeypatch.setattr(env_builder.pack, "_FLUSH_AT", 64 << 10)
    tree = make_venv_tree(tmp_path / "src")
    big = tree / "lib" / "libbig.so"
    big.write_bytes(os.urandom(1 << 20) + b"tail")  # 16 chunks and a bit, not a multiple of the block size
    chunks = list(env_builder.pack._tar_chunks(str(tree), [0, 0]))
    assert max(len(chunk) for chunk in chunks) <= (64 << 10) + 4 * tarfile.BLOCKSIZE
    pack_tree(tree, tmp_path / "env.tar.zst")
    out = tmp_path / "out"
    out.mkdir()
    extract_archive(tmp_path / "env.tar.zst", out)
    assert _tree_listing(out) == _tree_listing(tree)


@pytest.mark.parametrize("change", ["shrinks", "grows"])
def test_file_changing_size_while_packed_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, change: str
) -> None:
    import env_builder.pack

    monkeypatch.setattr(env_builder.pack, "_FLUSH_AT", 64 << 10)
    tree = tmp_path / "src"
    tree.mkdir()
    big = tree / "big.bin"
    big.write_bytes(b"x" * (256 << 10))
    chunks = env_builder.pack._tar_chunks(str(tree), [0, 0])
    next(chunks)  # mid-file: the builder still writes into the tree
    with open(big, "r+b") as fh:
        if change == "shrinks":
            fh.truncate(100 << 10)
        else:
            fh.seek(0, os.SEEK_END)
            fh.write(b"more")
    with pytest.raises(BuildError, match="cannot pack big.bin: it changed size while being packed"):
        list(chunks)


def test_symlink_leaving_the_tree_cannot_be_packed(tmp_path: Path) -> None:
    tree = make_venv_tree(tmp_path / "src")
    (tree / "lib" / "escape").symlink_to("../../outside")
    with pytest.raises(BuildError, match="lib/escape.*outside the environment"):
        pack_tree(tree, tmp_path / "env.tar.zst")


FILE = b"payload\n"
ATTACKS: dict[str, list[tuple[tarfile.TarInfo, bytes | None]]] = {
    "dotdot": [(member("../escaped.txt"), FILE)],
    "nested_dotdot": [(member("lib/../../escaped.txt"), FILE)],
    "absolute": [(member("/tmp/escaped.txt"), FILE)],
    "symlink_absolute": [(member("lib", tarfile.SYMTYPE, linkname="/etc"), None)],
    "symlink_dotdot": [(member("up", tarfile.SYMTYPE, linkname="../outside"), None)],
    # each link is inside on its own; together "l" climbs out through "s" -> "."
    "symlink_chain": [
        (member("l", tarfile.SYMTYPE, linkname="s/.."), None),
        (member("s", tarfile.SYMTYPE, linkname="."), None),
    ],
    "write_through_symlink": [
        (member("d", tarfile.SYMTYPE, linkname="."), None),
        (member("d/escaped.txt"), FILE),
    ],
    "symlink_over_directory": [
        (member("d/inner.txt"), FILE),
        (member("d", tarfile.SYMTYPE, linkname=".."), None),
    ],
    "hardlink_outside": [(member("hard", tarfile.LNKTYPE, linkname="../../etc/passwd"), None)],
    "hardlink_absolute": [(member("hard", tarfile.LNKTYPE, linkname="/etc/passwd"), None)],
    "hardlink_to_symlink": [
        (member("s", tarfile.SYMTYPE, linkname="x"), None),
        (member("hard", tarfile.LNKTYPE, linkname="s"), None),
    ],
    "char_device": [(member("null", tarfile.CHRTYPE), None)],
    "block_device": [(member("disk", tarfile.BLKTYPE), None)],
    "fifo": [(member("pipe", tarfile.FIFOTYPE), None)],
    "setuid": [(member("bin/tool", mode=0o4755), FILE)],
    "setgid": [(member("bin/tool", mode=0o2755), FILE)],
    "duplicate": [(member("a.txt"), FILE), (member("a.txt"), b"second")],
    "ready_marker": [(member("bin/python3"), FILE), (member("./.mlp-ready"), b'{"env_id": "x"}')],
    "ready_marker_dir": [(member(".mlp-ready", tarfile.DIRTYPE, 0o755), None)],
}


REASONS = {
    "dotdot": "contains '..'",
    "nested_dotdot": "contains '..'",
    "absolute": "absolute or malformed name",
    "symlink_absolute": "is absolute or empty",
    "symlink_dotdot": "leaves the environment",
    "symlink_chain": "symlink 'l' -> 's/..' leaves the environment",
    "write_through_symlink": "would be written through 'd'",
    "symlink_over_directory": "'d' appears twice",
    "hardlink_outside": "contains '..'",
    "hardlink_absolute": "absolute or malformed name",
    "hardlink_to_symlink": "does not name a file extracted before it",
    "char_device": "is a character device",
    "block_device": "is a block device",
    "fifo": "is a FIFO",
    "setuid": "setuid or setgid bit",
    "setgid": "setuid or setgid bit",
    "duplicate": "appears twice",
    "ready_marker": "pose as the cache's ready marker",
    "ready_marker_dir": "pose as the cache's ready marker",
}


@pytest.mark.parametrize("attack", sorted(ATTACKS))
def test_malicious_archive_is_rejected_and_nothing_lands_outside(tmp_path: Path, attack: str) -> None:
    archive = tmp_path / "evil.tar.zst"
    archive.write_bytes(tar_zst(ATTACKS[attack]))
    target = tmp_path / "sandbox" / "target"
    target.mkdir(parents=True)
    before = _tree_listing(tmp_path)
    with pytest.raises(UnsafeArchiveError, match=re.escape(REASONS[attack])):
        extract_archive(archive, target)
    after = _tree_listing(tmp_path)
    outside = {k: v for k, v in after.items() if not k.startswith("sandbox/target/")}
    assert outside == {k: v for k, v in before.items() if not k.startswith("sandbox/target/")}


def test_archive_larger_than_announced_is_rejected(tmp_path: Path) -> None:
    archive = tmp_path / "big.tar.zst"
    archive.write_bytes(tar_zst([(member("a.bin"), b"x" * 1000)]))
    with pytest.raises(UnsafeArchiveError, match="more than the 10 bytes"):
        extract_archive(archive, tmp_path, max_unpacked_size=10)


def test_truncated_archive_is_rejected(tmp_path: Path) -> None:
    tree = make_venv_tree(tmp_path / "src")
    pack_tree(tree, tmp_path / "env.tar.zst")
    data = (tmp_path / "env.tar.zst").read_bytes()
    (tmp_path / "cut.tar.zst").write_bytes(data[: len(data) // 2])
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(UnsafeArchiveError):
        extract_archive(tmp_path / "cut.tar.zst", out)


def _raw_tar(format: int, pax_headers: dict[str, str] | None = None, name: str = "a.txt") -> bytes:
    import io

    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=format, pax_headers=pax_headers) as tar:
        info = member(name)
        info.size = len(FILE)
        tar.addfile(info, io.BytesIO(FILE))
    return buffer.getvalue()


def _corrupt_checksum(data: bytes) -> bytes:
    return data[:10] + bytes([data[10] ^ 0x01]) + data[11:]


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (_raw_tar(tarfile.GNU_FORMAT, name="long/" * 30 + "name.txt"), "not a POSIX ustar header"),
        (_raw_tar(tarfile.PAX_FORMAT, pax_headers={"comment": "global"}), "global"),
        (_corrupt_checksum(_raw_tar(tarfile.USTAR_FORMAT)), "checksum mismatch"),
        (_raw_tar(tarfile.USTAR_FORMAT)[:700], "ends early"),
    ],
    ids=["gnu_longname", "pax_global", "bad_checksum", "truncated_data"],
)
def test_only_strict_ustar_and_pax_streams_are_parsed(tmp_path: Path, raw: bytes, message: str) -> None:
    import zstandard

    archive = tmp_path / "odd.tar.zst"
    archive.write_bytes(zstandard.ZstdCompressor().compress(raw))
    target = tmp_path / "target"
    target.mkdir()
    with pytest.raises(UnsafeArchiveError, match=message):
        extract_archive(archive, target)


def test_prefetching_reader_closes_when_the_decompressor_fails_on_a_full_queue() -> None:
    import io
    import threading

    from env_builder.unpack import _PREFETCH_CHUNKS, _PrefetchingReader

    failed = threading.Event()

    class FillsThenFails(io.BytesIO):
        def __init__(self) -> None:
            super().__init__()
            self.reads = 0

        def read(self, size: int | None = -1) -> bytes:
            self.reads += 1
            if self.reads > _PREFETCH_CHUNKS:  # the queue is full and nobody reads it
                failed.set()
                raise OSError("stream broke")
            return b"x"

    reader = _PrefetchingReader(FillsThenFails(), "env.tar.zst")
    assert failed.wait(5)
    closer = threading.Thread(target=reader.close, daemon=True)
    closer.start()
    closer.join(5)
    assert not closer.is_alive(), "close() hung on the decompressing thread's exception hand-over"


def test_extracted_files_and_directories_are_never_group_or_world_writable(tmp_path: Path) -> None:
    archive = tmp_path / "open.tar.zst"
    archive.write_bytes(
        tar_zst(
            [
                (member("shared", tarfile.DIRTYPE, 0o777), None),
                (member("shared/tool", mode=0o777), b"#!/bin/sh\n"),
                (member("shared/data", mode=0o666), b"x"),
            ]
        )
    )
    target = tmp_path / "target"
    target.mkdir()
    extract_archive(archive, target)
    assert (target / "shared").stat().st_mode & 0o777 == 0o755
    assert (target / "shared" / "tool").stat().st_mode & 0o777 == 0o755
    assert (target / "shared" / "data").stat().st_mode & 0o777 == 0o644
