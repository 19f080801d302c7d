"""Byte strings built in bulk: many short pieces of a few source arrays joined row by row in one gather.

A publish turns every row into one memcached command (``ms <key> <len> ...\\r\\n<value>\\r\\n``)
made of pieces: constant text, the row's key bytes, its msgpack cells. Joining them per row in
Python costs about a microsecond a row; here a row is a list of ``(start, length)`` pieces of one
byte pool, and the whole batch's bytes come out of a single numpy gather (one cumulative sum
builds the byte index), so the cost is a few nanoseconds per byte, not per Python object.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


class Pool:
    """Source bytes that pieces point into; :meth:`array` concatenates them once per batch."""

    def __init__(self) -> None:
        self._parts: list[np.ndarray] = []
        self._consts: dict[bytes, int] = {}
        self.size = 0

    def add(self, data: np.ndarray) -> int:
        """Add ``data`` (any shape of uint8) and return the pool offset of its first byte."""
        flat = np.ascontiguousarray(data, dtype=np.uint8).reshape(-1)
        base = self.size
        if len(flat):
            self._parts.append(flat)
            self.size += len(flat)
        return base

    def const(self, text: bytes) -> int:
        """The offset of ``text``, added once per pool however often it is asked for."""
        base = self._consts.get(text)
        if base is None:
            base = self._consts[text] = self.add(np.frombuffer(text, dtype=np.uint8))
        return base

    def array(self) -> np.ndarray:
        if not self._parts:
            return np.zeros(0, dtype=np.uint8)
        if len(self._parts) > 1:
            self._parts = [np.concatenate(self._parts)]
        return self._parts[0]


@dataclass
class Pieces:
    """For each of ``rows`` rows, a run of ``(start, length)`` pieces of a :class:`Pool`.

    ``per_row`` > 0 means every row has exactly that many pieces (rows are then blocks of the
    flat arrays); otherwise ``row_offsets`` (``rows + 1`` entries) says where each row's run starts.
    """

    start: np.ndarray
    length: np.ndarray
    rows: int
    per_row: int = 1
    row_offsets: np.ndarray | None = None

    @classmethod
    def uniform(cls, start: np.ndarray, length: np.ndarray) -> Pieces:
        """One piece per row."""
        return cls(np.asarray(start, dtype=np.int64), np.asarray(length, dtype=np.int64), len(start))

    @classmethod
    def constant(cls, offset: int, length: int, rows: int) -> Pieces:
        return cls(np.full(rows, offset, dtype=np.int64), np.full(rows, length, dtype=np.int64), rows)

    def offsets(self) -> np.ndarray:
        if self.row_offsets is not None:
            return self.row_offsets
        return np.arange(self.rows + 1, dtype=np.int64) * self.per_row

    def counts(self) -> np.ndarray:
        if self.row_offsets is not None:
            return np.diff(self.row_offsets)
        return np.full(self.rows, self.per_row, dtype=np.int64)

    def row_lengths(self) -> np.ndarray:
        """Total bytes of each row."""
        if self.row_offsets is None:
            return self.length.reshape(self.rows, self.per_row).sum(axis=1)
        sums = np.concatenate(([0], np.cumsum(self.length)))
        return sums[self.row_offsets[1:]] - sums[self.row_offsets[:-1]]


def concat_rows(parts: list[Pieces]) -> Pieces:
    """Row ``i`` of the result is row ``i`` of each part, joined in order."""
    rows = parts[0].rows
    if all(p.row_offsets is None for p in parts):
        per_row = sum(p.per_row for p in parts)
        start = np.concatenate([p.start.reshape(rows, p.per_row) for p in parts], axis=1).reshape(-1)
        length = np.concatenate([p.length.reshape(rows, p.per_row) for p in parts], axis=1).reshape(-1)
        return Pieces(start, length, rows, per_row)
    counts = [p.counts() for p in parts]
    total_counts = np.sum(counts, axis=0)
    out_offsets = np.concatenate(([0], np.cumsum(total_counts))).astype(np.int64)
    total = int(out_offsets[-1])
    start = np.empty(total, dtype=np.int64)
    length = np.empty(total, dtype=np.int64)
    before = np.zeros(rows, dtype=np.int64)
    for part, count in zip(parts, counts, strict=True):
        shift = out_offsets[:-1] + before - part.offsets()[:-1]
        dest = np.repeat(shift, count) + np.arange(len(part.start), dtype=np.int64)
        start[dest] = part.start
        length[dest] = part.length
        before += count
    return Pieces(start, length, rows, 0, out_offsets)


def take_rows(pieces: Pieces, rows: np.ndarray) -> Pieces:
    """The rows ``rows`` (indices, any order, repeats allowed) of ``pieces``."""
    rows = np.asarray(rows, dtype=np.int64)
    if pieces.row_offsets is None:
        c = pieces.per_row
        return Pieces(
            pieces.start.reshape(-1, c)[rows].reshape(-1), pieces.length.reshape(-1, c)[rows].reshape(-1), len(rows), c
        )
    offsets = pieces.row_offsets
    counts = offsets[rows + 1] - offsets[rows]
    out_offsets = np.concatenate(([0], np.cumsum(counts))).astype(np.int64)
    index = np.repeat(offsets[rows] - out_offsets[:-1], counts) + np.arange(int(out_offsets[-1]), dtype=np.int64)
    return Pieces(pieces.start[index], pieces.length[index], len(rows), 0, out_offsets)


def row_where(mask: np.ndarray, if_true: Pieces, if_false: Pieces) -> Pieces:
    """Row ``i`` from ``if_true`` where ``mask[i]``, else from ``if_false``."""
    n = len(mask)
    if if_true.row_offsets is None and if_false.row_offsets is None and if_true.per_row == if_false.per_row:
        c = if_true.per_row
        m = np.repeat(mask, c)
        return Pieces(np.where(m, if_true.start, if_false.start), np.where(m, if_true.length, if_false.length), n, c)
    both = Pieces(
        np.concatenate([if_true.start, if_false.start]),
        np.concatenate([if_true.length, if_false.length]),
        2 * n,
        0,
        np.concatenate([if_true.offsets(), if_false.offsets()[1:] + len(if_true.start)]),
    )
    return take_rows(both, np.where(mask, np.arange(n), np.arange(n) + n))


_ARANGE = np.zeros(0, dtype=np.int64)


def _arange(n: int) -> np.ndarray:
    """``np.arange(n)``, sliced from one array kept between batches."""
    global _ARANGE
    if len(_ARANGE) < n:
        _ARANGE = np.arange(max(n, 2 * len(_ARANGE)), dtype=np.int64)
    return _ARANGE[:n]


def gather(pool: np.ndarray, pieces: Pieces) -> tuple[np.ndarray, np.ndarray]:
    """The rows' bytes, joined: ``(data, row_byte_offsets)``."""
    row_offsets = np.concatenate(([0], np.cumsum(pieces.row_lengths()))).astype(np.int64)
    total = int(row_offsets[-1])
    if total == 0:
        return np.zeros(0, dtype=np.uint8), row_offsets
    keep = pieces.length > 0
    start = pieces.start[keep]
    length = pieces.length[keep]
    begins = np.cumsum(length) - length
    # Output byte p of a piece that begins at output byte b and source byte s comes from s + (p - b).
    index = np.repeat(start - begins, length)
    index += _arange(total)
    return pool[index], row_offsets


def split(data: np.ndarray, offsets: np.ndarray) -> list[bytes]:
    """The rows of a gathered ``(data, offsets)`` pair as Python bytes (for the few rows handled one by one)."""
    raw = data.tobytes()
    return [raw[offsets[i] : offsets[i + 1]] for i in range(len(offsets) - 1)]
