"""Value serialization: each row's value columns as one msgpack array, encoded column-wise in bulk.

Why msgpack rather than an Arrow IPC row:

- **compact**: a row of ``[views, hours, title]`` is its bytes plus one to five bytes of header per
  cell (small integers take one byte). An Arrow IPC message for a one-row batch carries a
  flatbuffer header and 8-byte-aligned buffers: 200+ bytes of framing around a 48-byte row, more
  than the row itself, and memcached memory is paid per byte;
- **cheap to read one key**: the serving side decodes a row with one ``msgpack.unpackb`` call (a C
  extension, ~1 µs); decoding an IPC message builds a schema, a batch and Arrow arrays per lookup;
- **any client**: msgpack libraries exist for every language a serving stack uses.

The schema (column names, Arrow types) is stored once per version in its metadata, so values carry
no field names. Encoding is done per column over a whole batch with numpy (see :mod:`ragged`),
producing exactly the bytes ``msgpack.packb(row, use_bin_type=True)`` would, except that floats
keep their width (a float32 stays 4 bytes). Types: integers, floats, booleans, strings, binary,
nulls, lists (any nesting), structs (maps by field name) and maps; dates, times, timestamps and
decimals become their ISO / decimal text.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from airflow_provider_mlp.precompute.errors import CacheInputError
from airflow_provider_mlp.precompute.keys import binary_parts
from airflow_provider_mlp.precompute.ragged import Pieces, Pool, concat_rows, row_where

if TYPE_CHECKING:
    import pyarrow as pa

NIL = b"\xc0"
# Signed classes by upper bound (searchsorted side="right"): (width, marker or -1 for fixint).
_SIGNED_BOUNDS = np.array([-(2**31), -32768, -128, -32, 0, 128, 256, 65536, 2**32], dtype=np.int64)
_SIGNED_WIDTH = np.array([8, 4, 2, 1, 1, 1, 1, 2, 4, 8], dtype=np.int64)
_SIGNED_MARKER = np.array([0xD3, 0xD2, 0xD1, 0xD0, -1, -1, 0xCC, 0xCD, 0xCE, 0xCF], dtype=np.int64)
_UNSIGNED_BOUNDS = np.array([128, 256, 65536, 2**32], dtype=np.uint64)
_UNSIGNED_WIDTH = np.array([1, 1, 2, 4, 8], dtype=np.int64)
_UNSIGNED_MARKER = np.array([-1, 0xCC, 0xCD, 0xCE, 0xCF], dtype=np.int64)


def array_header(count: int) -> bytes:
    if count < 16:
        return bytes([0x90 | count])
    if count < 2**16:
        return b"\xdc" + count.to_bytes(2, "big")
    return b"\xdd" + count.to_bytes(4, "big")


def check_value_type(column: str, arrow_type: pa.DataType) -> None:
    """Raise a clear error for a value column whose type cannot be stored."""
    import pyarrow as pa

    t = arrow_type
    if pa.types.is_dictionary(t):
        t = t.value_type
    if pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t) or pa.types.is_list_view(t):
        check_value_type(column, t.value_type)
        return
    if pa.types.is_large_list_view(t):
        check_value_type(column, t.value_type)
        return
    if pa.types.is_struct(t):
        for f in t:
            check_value_type(f"{column}.{f.name}", f.type)
        return
    if pa.types.is_map(t):
        check_value_type(f"{column}.key", t.key_type)
        check_value_type(f"{column}.value", t.item_type)
        return
    if _scalar_kind(t) is None:
        raise CacheInputError(
            f"value column {column!r} has type {arrow_type}, which cannot be stored; supported: integers, floats, "
            "booleans, strings, binary, dates, times, timestamps, decimals, lists, structs and maps of them"
        )


def _scalar_kind(t: pa.DataType) -> str | None:
    import pyarrow as pa

    if pa.types.is_null(t):
        return "null"
    if pa.types.is_boolean(t):
        return "bool"
    if pa.types.is_signed_integer(t):
        return "int"
    if pa.types.is_unsigned_integer(t):
        return "uint"
    if pa.types.is_floating(t):
        return "float"
    if pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t):
        return "str"
    if (
        pa.types.is_binary(t)
        or pa.types.is_large_binary(t)
        or pa.types.is_fixed_size_binary(t)
        or pa.types.is_binary_view(t)
    ):
        return "bin"
    if pa.types.is_temporal(t) and not pa.types.is_duration(t) and not pa.types.is_interval(t):
        return "text"
    if pa.types.is_decimal(t):
        return "text"
    return None


def encode_rows(pool: Pool, columns: Sequence[pa.Array]) -> Pieces:
    """The msgpack cells of every row's value columns, joined (the array header is added by the caller)."""
    return concat_rows([encode(pool, column) for column in columns])


def encode(pool: Pool, array: pa.Array) -> Pieces:
    """The msgpack encoding of each element of ``array``, as pieces of ``pool``."""
    import pyarrow as pa
    import pyarrow.compute as pc

    t = array.type
    if pa.types.is_dictionary(t):
        array = array.dictionary_decode()
        t = array.type
    n = len(array)
    if pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t):
        return _encode_list(pool, array)
    if pa.types.is_list_view(t):
        return _encode_list(pool, pc.cast(array, pa.list_(t.value_field)))
    if pa.types.is_large_list_view(t):
        return _encode_list(pool, pc.cast(array, pa.large_list(t.value_field)))
    if pa.types.is_struct(t):
        return _encode_struct(pool, array)
    if pa.types.is_map(t):
        return _encode_map(pool, array)
    kind = _scalar_kind(t)
    if kind == "null" or (n and array.null_count == n):
        return Pieces.constant(pool.const(NIL), 1, n)
    if kind == "text":
        array = pc.cast(array, pa.large_string())
        kind = "str"
    if kind in ("int", "uint"):
        pieces = _encode_ints(pool, array, unsigned=kind == "uint")
    elif kind == "float":
        pieces = _encode_floats(pool, array)
    elif kind == "bool":
        values = np.asarray(pc.fill_null(array, False).to_numpy(zero_copy_only=False), dtype=np.int64)
        pieces = Pieces.uniform(pool.const(b"\xc2\xc3") + values, np.ones(n, dtype=np.int64))
    elif kind in ("str", "bin"):
        if pa.types.is_string_view(t):
            array = pc.cast(array, pa.large_string())
        elif pa.types.is_binary_view(t) or pa.types.is_fixed_size_binary(t):
            array = pc.cast(array, pa.large_binary())
        pieces = _encode_bytes(pool, array, string=kind == "str")
    else:
        raise CacheInputError(f"cannot store values of type {t}")
    return _with_nulls(pool, array, pieces)


def _null_mask(array: pa.Array) -> np.ndarray | None:
    if not array.null_count:
        return None
    return np.asarray(array.is_null().to_numpy(zero_copy_only=False), dtype=bool)


def _with_nulls(pool: Pool, array: pa.Array, pieces: Pieces) -> Pieces:
    nulls = _null_mask(array)
    if nulls is None:
        return pieces
    nil = pool.const(NIL)
    c = pieces.per_row if pieces.row_offsets is None else 1
    if pieces.row_offsets is None:
        start = np.full(len(pieces.start), nil, dtype=np.int64)
        length = np.zeros(len(pieces.start), dtype=np.int64)
        length.reshape(-1, c)[:, 0] = 1
        return row_where(~nulls, pieces, Pieces(start, length, pieces.rows, c))
    return row_where(~nulls, pieces, Pieces.constant(nil, 1, pieces.rows))


def _big_endian(values: np.ndarray, dtype: str, width: int) -> np.ndarray:
    return np.ascontiguousarray(values.astype(dtype)).view(np.uint8).reshape(len(values), width)


def _encode_ints(pool: Pool, array: pa.Array, *, unsigned: bool) -> Pieces:
    import pyarrow.compute as pc

    n = len(array)
    raw = np.asarray(pc.fill_null(array, 0).to_numpy(zero_copy_only=False))
    if unsigned:
        values = raw.astype(np.uint64)
        cls = np.searchsorted(_UNSIGNED_BOUNDS, values, side="right")
        width, marker = _UNSIGNED_WIDTH[cls], _UNSIGNED_MARKER[cls]
        be = _big_endian(values, ">u8", 8)
    else:
        values = raw.astype(np.int64)
        cls = np.searchsorted(_SIGNED_BOUNDS, values, side="right")
        width, marker = _SIGNED_WIDTH[cls], _SIGNED_MARKER[cls]
        be = _big_endian(values, ">i8", 8)
    # Row layout: [spare][8 big-endian bytes]; the marker overwrites the byte just before the
    # value's last ``width`` bytes, so each cell is one contiguous piece.
    cells = np.empty((n, 9), dtype=np.uint8)
    cells[:, 1:] = be
    has_marker = marker >= 0
    rows = np.flatnonzero(has_marker)
    cells[rows, 8 - width[rows]] = marker[rows]
    base = pool.add(cells)
    first = np.where(has_marker, 8 - width, 8)
    return Pieces.uniform(base + np.arange(n, dtype=np.int64) * 9 + first, np.where(has_marker, width + 1, 1))


def _encode_floats(pool: Pool, array: pa.Array) -> Pieces:
    import pyarrow as pa
    import pyarrow.compute as pc

    n = len(array)
    if pa.types.is_float16(array.type):
        array = pc.cast(array, pa.float32())
    raw = np.asarray(pc.fill_null(array, 0).to_numpy(zero_copy_only=False))
    if raw.dtype == np.float32:
        cells = np.empty((n, 5), dtype=np.uint8)
        cells[:, 0] = 0xCA
        cells[:, 1:] = _big_endian(raw, ">f4", 4)
    else:
        cells = np.empty((n, 9), dtype=np.uint8)
        cells[:, 0] = 0xCB
        cells[:, 1:] = _big_endian(raw.astype(np.float64), ">f8", 8)
    width = cells.shape[1]
    base = pool.add(cells)
    return Pieces.uniform(base + np.arange(n, dtype=np.int64) * width, np.full(n, width, dtype=np.int64))


def _length_headers(pool: Pool, lengths: np.ndarray, kind: str) -> Pieces:
    """msgpack headers for strings (``str``), binaries (``bin``), arrays (``array``) or maps (``map``)."""
    n = len(lengths)
    small, x8, x16, x32 = {
        "str": (0xA0, 0xD9, 0xDA, 0xDB),
        "bin": (-1, 0xC4, 0xC5, 0xC6),
        "array": (0x90, -1, 0xDC, 0xDD),
        "map": (0x80, -1, 0xDE, 0xDF),
    }[kind]
    small_limit = 32 if kind == "str" else 16
    cells = np.empty((n, 5), dtype=np.uint8)
    cells[:, 1:] = _big_endian(lengths.astype(np.uint32), ">u4", 4)
    width = np.full(n, 5, dtype=np.int64)
    is16 = lengths < 2**16
    width[is16] = 3
    cells[is16, 2] = x16
    if x8 >= 0:
        is8 = lengths < 256
        width[is8] = 2
        cells[is8, 3] = x8
    else:
        is8 = np.zeros(n, dtype=bool)
    if small >= 0:
        fix = lengths < small_limit
        width[fix] = 1
        cells[fix, 4] = (small | lengths[fix]).astype(np.uint8)
    cells[~is16, 0] = x32
    base = pool.add(cells)
    return Pieces.uniform(base + np.arange(n, dtype=np.int64) * 5 + 5 - width, width)


def _encode_bytes(pool: Pool, array: pa.Array, *, string: bool) -> Pieces:
    data, offsets = binary_parts(array)
    lengths = np.diff(offsets)
    headers = _length_headers(pool, lengths, "str" if string else "bin")
    base = pool.add(data[offsets[0] : offsets[-1]])
    payload = Pieces.uniform(base + offsets[:-1] - offsets[0], lengths)
    return concat_rows([headers, payload])


def _children(pool: Pool, header: Pieces, children: Pieces, counts: np.ndarray) -> Pieces:
    """Rows made of one header piece followed by ``counts[i]`` consecutive elements of ``children``."""
    child_offsets = children.offsets()
    element_starts = np.concatenate(([0], np.cumsum(counts))).astype(np.int64)
    child_piece_counts = child_offsets[element_starts[1:]] - child_offsets[element_starts[:-1]]
    out_offsets = np.concatenate(([0], np.cumsum(child_piece_counts + 1))).astype(np.int64)
    total = int(out_offsets[-1])
    is_header = np.zeros(total, dtype=bool)
    is_header[out_offsets[:-1]] = True
    start = np.empty(total, dtype=np.int64)
    length = np.empty(total, dtype=np.int64)
    start[is_header] = header.start
    length[is_header] = header.length
    first = int(child_offsets[0])
    last = int(child_offsets[element_starts[-1]])
    start[~is_header] = children.start[first:last]
    length[~is_header] = children.length[first:last]
    return Pieces(start, length, header.rows, 0, out_offsets)


def _encode_list(pool: Pool, array: pa.Array) -> Pieces:
    import pyarrow.compute as pc

    counts = np.asarray(pc.fill_null(pc.list_value_length(array), 0).to_numpy(zero_copy_only=False), dtype=np.int64)
    # flatten() drops the elements behind null lists and honours slicing, so elements line up with counts.
    children = encode(pool, array.flatten())
    rows = _children(pool, _length_headers(pool, counts, "array"), children, counts)
    return _nulls_as_nil(pool, array, rows)


def _encode_map(pool: Pool, array: pa.Array) -> Pieces:
    import pyarrow as pa
    import pyarrow.compute as pc

    # A map is a list of key/value structs; view it as one (offsets index the map's whole key and item arrays).
    entries = pa.StructArray.from_arrays([array.keys, array.items], ["key", "value"])
    as_list = pa.ListArray.from_arrays(array.offsets, entries, mask=array.is_null() if array.null_count else None)
    counts = np.asarray(pc.fill_null(pc.list_value_length(as_list), 0).to_numpy(zero_copy_only=False), dtype=np.int64)
    keys, items = as_list.flatten().flatten()
    children = concat_rows([encode(pool, keys), encode(pool, items)])
    rows = _children(pool, _length_headers(pool, counts, "map"), children, counts)
    return _nulls_as_nil(pool, array, rows)


def _encode_struct(pool: Pool, array: pa.Array) -> Pieces:
    import msgpack

    n = len(array)
    fields = [array.type.field(i).name for i in range(array.type.num_fields)]
    parts = [Pieces.constant(pool.const(_map_header(len(fields))), len(_map_header(len(fields))), n)]
    for name, child in zip(fields, array.flatten(), strict=True):
        key = msgpack.packb(name)
        parts.append(Pieces.constant(pool.const(key), len(key), n))
        parts.append(encode(pool, child))
    return _nulls_as_nil(pool, array, concat_rows(parts))


def _map_header(count: int) -> bytes:
    if count < 16:
        return bytes([0x80 | count])
    return b"\xde" + count.to_bytes(2, "big")


def _nulls_as_nil(pool: Pool, array: pa.Array, pieces: Pieces) -> Pieces:
    nulls = _null_mask(array)
    if nulls is None:
        return pieces
    return row_where(~nulls, pieces, Pieces.constant(pool.const(NIL), 1, len(array)))


def decode_row(raw: bytes, columns: Sequence[str]) -> dict[str, Any]:
    """A stored row back as ``{column: value}``."""
    import msgpack

    values = msgpack.unpackb(raw, raw=False, strict_map_key=False)
    return dict(zip(columns, values, strict=True))
