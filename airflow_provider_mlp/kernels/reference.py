"""Pure-Python reference implementations of the native kernels.

Each function here defines what its counterpart in ``_native`` must return; tests run every
case against both. They favour obviousness over speed.
"""

from __future__ import annotations

import functools
import operator
from typing import Any

from airflow_provider_mlp.kernels.errors import ArrowKernelError


def _to_pyarrow_chunks(values: Any, func: str, argname: str) -> list[Any]:
    import pyarrow as pa

    if hasattr(values, "__arrow_c_array__"):
        return [pa.array(values)]
    if hasattr(values, "__arrow_c_stream__"):
        return list(pa.chunked_array(values).chunks)
    raise ArrowKernelError(
        f"{func}() argument '{argname}': expected an Arrow array or stream (an object with "
        "__arrow_c_array__ or __arrow_c_stream__, such as a pyarrow Array or ChunkedArray, "
        f"a polars Series or a nanoarrow array), got {type(values).__name__}"
    )


def array_stats(values: Any) -> tuple[int, int]:
    """Return ``(length, null_count)`` of an Arrow array or stream."""
    chunks = _to_pyarrow_chunks(values, "array_stats", "values")
    length = sum(len(chunk) for chunk in chunks)
    null_count = sum(1 for chunk in chunks for item in chunk.to_pylist() if item is None)
    return length, null_count


# --------------------------------------------------------------------------------------------
# Input checks shared by the references below


_TEXT_EXPECTED = (
    "a string column (string 'u', large_string 'U' or string_view 'vu') or a list of strings "
    "(list '+l' or large_list '+L' of those)"
)
_BUCKET_EXPECTED = (
    "an int8/16/32/64, uint8/16/32, date32/date64, time32/time64, timestamp, string, large_string, "
    "string_view, binary, large_binary, binary_view or fixed_size_binary column"
)


def _arrow_format(data_type: Any) -> str:
    """The Arrow C data interface format string of a pyarrow type (as the native kernels see it)."""
    import nanoarrow

    return str(nanoarrow.c_schema(data_type).format)


def _column(values: Any, func: str, argname: str, accepted: Any, expected: str) -> Any:
    """The input as one pyarrow Array, checked against `accepted(type) -> bool`."""
    import pyarrow as pa

    chunks = _to_pyarrow_chunks(values, func, argname)
    data_type = chunks[0].type if chunks else pa.chunked_array(values).type
    if not accepted(data_type):
        encoded = " (dictionary-encoded)" if pa.types.is_dictionary(data_type) else ""
        raise ArrowKernelError(
            f"{func}() argument '{argname}': unsupported Arrow type with format "
            f"'{_arrow_format(data_type)}'{encoded}; expected {expected}"
        )
    return pa.chunked_array(chunks, type=data_type).combine_chunks()


def _is_string(data_type: Any) -> bool:
    import pyarrow as pa

    return bool(data_type in (pa.string(), pa.large_string(), pa.string_view()))


def _is_string_list(data_type: Any) -> bool:
    import pyarrow as pa

    is_list = pa.types.is_list(data_type) or pa.types.is_large_list(data_type)
    return is_list and _is_string(data_type.value_type)


def _text_column(values: Any, func: str, argname: str) -> Any:
    """A string column, or a list-of-strings column whose items are checked too."""
    import pyarrow as pa

    def accepted(data_type: Any) -> bool:
        return _is_string(data_type) or pa.types.is_list(data_type) or pa.types.is_large_list(data_type)

    array = _column(values, func, argname, accepted, _TEXT_EXPECTED)
    if (pa.types.is_list(array.type) or pa.types.is_large_list(array.type)) and not _is_string_list(array.type):
        raise ArrowKernelError(
            f"{func}() argument '{argname}': unsupported Arrow type with format '{_arrow_format(array.type)}' "
            f"(items of format '{_arrow_format(array.type.value_type)}'); expected {_TEXT_EXPECTED}"
        )
    return array


def _texts(array: Any) -> list[str | None]:
    """Row texts: strings as they are, lists as their non-null items joined by one space."""
    if _is_string(array.type):
        return list(array.to_pylist())
    return [
        None if items is None else " ".join(item for item in items if item is not None) for items in array.to_pylist()
    ]


def _string_pair(left: Any, right: Any, func: str, left_name: str, right_name: str) -> tuple[list[Any], list[Any]]:
    left_array = _text_column(left, func, left_name)
    right_array = _text_column(right, func, right_name)
    if len(left_array) != len(right_array):
        raise ArrowKernelError(
            f"{func}() argument '{right_name}': length {len(right_array)} (format "
            f"'{_arrow_format(right_array.type)}') does not match argument '{left_name}' of length "
            f"{len(left_array)} (format '{_arrow_format(left_array.type)}'); expected two aligned "
            "columns of equal length"
        )
    return _texts(left_array), _texts(right_array)


def _check_threads(threads: Any, func: str) -> None:
    if threads is None:
        return
    if not isinstance(threads, int) or isinstance(threads, bool):
        raise ArrowKernelError(
            f"{func}() argument 'threads': expected an int >= 1 or None, got {type(threads).__name__}"
        )
    if threads < 1:
        raise ArrowKernelError(f"{func}() argument 'threads': expected an int >= 1 or None, got {threads}")


def _unit_float(value: Any, func: str, argname: str, low: float, high: float) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ArrowKernelError(
            f"{func}() argument '{argname}': expected a float in [{low:g}, {high:g}], got {type(value).__name__}"
        ) from None
    if not low <= number <= high:
        raise ArrowKernelError(
            f"{func}() argument '{argname}': expected a float in [{low:g}, {high:g}], got {number:g}"
        )
    return number


# --------------------------------------------------------------------------------------------
# String similarity

# Non-ASCII code points that separate tokens: those Python's str.isspace() accepts.
_UNICODE_SPACES = frozenset([0x85, 0xA0, 0x1680, *range(0x2000, 0x200B), 0x2028, 0x2029, 0x202F, 0x205F, 0x3000])


def _is_separator(code_point: int) -> bool:
    if code_point < 128:
        return not chr(code_point).isalnum()
    return code_point in _UNICODE_SPACES


def _fold_case(code_point: int) -> int:
    # ASCII and Latin-1 upper case letters, not the multiplication sign U+00D7.
    if 0x41 <= code_point <= 0x5A or (0xC0 <= code_point <= 0xDE and code_point != 0xD7):
        return code_point + 32
    return code_point


def token_sort_normalize(text: str) -> str:
    """The token-sort form of `text`: tokens split on separators, case-folded, sorted, one space apart.

    Separators are ASCII characters other than letters and digits, and the non-ASCII code points
    ``str.isspace()`` accepts. Case folding maps ASCII and Latin-1 upper case letters to lower
    case; every other code point is kept as it is. Tokens sort by code point.
    """
    tokens: list[str] = []
    current: list[str] = []
    for char in text:
        code_point = ord(char)
        if _is_separator(code_point):
            if current:
                tokens.append("".join(current))
                current = []
        else:
            current.append(chr(_fold_case(code_point)))
    if current:
        tokens.append("".join(current))
    return " ".join(sorted(tokens))


def jaro(s1: str, s2: str) -> float:
    """Jaro similarity as rapidfuzz defines it (window max(len)/2 - 1, greedy matching)."""
    len1, len2 = len(s1), len(s2)
    if not len1 and not len2:
        return 1.0
    if not len1 or not len2:
        return 0.0
    if len1 == 1 and len2 == 1:
        return 1.0 if s1 == s2 else 0.0
    if len2 > len1:
        bound = len2 // 2 - 1
        if len2 > len1 + bound:
            s2 = s2[: len1 + bound]
    else:
        bound = len1 // 2 - 1
        if len1 > len2 + bound:
            s1 = s1[: len2 + bound]
    flags1 = [False] * len(s1)
    flags2 = [False] * len(s2)
    common = 0
    for i, char in enumerate(s1):
        for j in range(max(0, i - bound), min(i + bound, len(s2) - 1) + 1):
            if not flags2[j] and s2[j] == char:
                flags1[i] = flags2[j] = True
                common += 1
                break
    if not common:
        return 0.0
    matched1 = [char for char, flag in zip(s1, flags1, strict=True) if flag]
    matched2 = [char for char, flag in zip(s2, flags2, strict=True) if flag]
    transpositions = sum(a != b for a, b in zip(matched1, matched2, strict=True)) // 2
    sim = 0.0
    sim += common / len1
    sim += common / len2
    sim += (common - transpositions) / common
    return sim / 3.0


def jaro_winkler(s1: str, s2: str, prefix_weight: float = 0.1, boost_threshold: float = 0.7) -> float:
    """Jaro-Winkler: Jaro plus prefix * prefix_weight * (1 - Jaro) above boost_threshold (prefix <= 4)."""
    prefix = 0
    for a, b in zip(s1[:4], s2[:4], strict=False):
        if a != b:
            break
        prefix += 1
    sim = jaro(s1, s2)
    if sim > boost_threshold:
        sim += prefix * prefix_weight * (1.0 - sim)
    return sim


def levenshtein_distance(s1: str, s2: str) -> int:
    """Unit-cost edit distance over code points (Wagner-Fischer)."""
    previous = list(range(len(s2) + 1))
    for i, a in enumerate(s1, start=1):
        current = [i]
        for j, b in enumerate(s2, start=1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (a != b)))
        previous = current
    return previous[-1]


def normalized_levenshtein(s1: str, s2: str) -> float:
    """1 - distance / max(len); 1.0 for two empty strings."""
    longest = max(len(s1), len(s2))
    if not longest:
        return 1.0
    return 1.0 - levenshtein_distance(s1, s2) / longest


def _pair_scores(left: list[Any], right: list[Any], score: Any, token_sort: bool) -> list[float | None]:
    scores: list[float | None] = []
    for a, b in zip(left, right, strict=True):
        if a is None or b is None:
            scores.append(None)
        elif token_sort:
            scores.append(score(token_sort_normalize(a), token_sort_normalize(b)))
        else:
            scores.append(score(a, b))
    return scores


def jaro_winkler_similarity(
    left: Any,
    right: Any,
    *,
    prefix_weight: float = 0.1,
    boost_threshold: float = 0.7,
    token_sort: bool = False,
    threads: int | None = None,
) -> Any:
    """Jaro-Winkler similarity of each aligned pair of two text columns, as a float64 pyarrow Array.

    Text columns are strings, or lists of strings whose non-null items are joined by one space.
    """
    import pyarrow as pa

    func = "jaro_winkler_similarity"
    weight = _unit_float(prefix_weight, func, "prefix_weight", 0.0, 0.25)
    threshold = _unit_float(boost_threshold, func, "boost_threshold", 0.0, 1.0)
    _check_threads(threads, func)
    lefts, rights = _string_pair(left, right, func, "left", "right")

    def score(a: str, b: str) -> float:
        return jaro_winkler(a, b, weight, threshold)

    return pa.array(_pair_scores(lefts, rights, score, token_sort), type=pa.float64())


def levenshtein_similarity(left: Any, right: Any, *, token_sort: bool = False, threads: int | None = None) -> Any:
    """Normalized Levenshtein similarity of each aligned pair, as a float64 pyarrow Array."""
    import pyarrow as pa

    func = "levenshtein_similarity"
    _check_threads(threads, func)
    lefts, rights = _string_pair(left, right, func, "left", "right")
    return pa.array(_pair_scores(lefts, rights, normalized_levenshtein, token_sort), type=pa.float64())


_METRICS = ("jaro_winkler", "levenshtein", "token_sort_jaro_winkler", "token_sort_levenshtein")


def match_pairs(fields: Any, *, threshold: float | None = None, threads: int | None = None) -> Any:
    """Weighted mean of per-field similarities for each row; with a threshold also the matching rows.

    `fields` is a sequence of ``(left, right, weight, metric)`` with metric one of
    ``jaro_winkler``, ``levenshtein``, ``token_sort_jaro_winkler``, ``token_sort_levenshtein``.
    A field with a null on either side drops out of that row's mean; a row with no field left is
    null. With `threshold`, returns ``(scores, indices)`` where indices are the rows (int64,
    ascending) whose score is at least the threshold.
    """
    import pyarrow as pa

    func = "match_pairs"
    _check_threads(threads, func)
    cutoff = None if threshold is None else _unit_float(threshold, func, "threshold", 0.0, 1.0)
    if isinstance(fields, str | bytes) or not hasattr(fields, "__len__"):
        raise ArrowKernelError(
            f"{func}() argument 'fields': expected a sequence of (left, right, weight, metric) tuples, "
            f"got {type(fields).__name__}"
        )
    if not len(fields):
        raise ArrowKernelError(
            f"{func}() argument 'fields': expected at least one (left, right, weight, metric) tuple, "
            "got an empty sequence"
        )
    columns: list[tuple[list[Any], list[Any], float, Any, bool]] = []
    length = -1
    for index, field in enumerate(fields):
        if not isinstance(field, tuple) or len(field) != 4:
            raise ArrowKernelError(
                f"{func}() argument 'fields[{index}]': expected a (left, right, weight, metric) tuple, "
                f"got {type(field).__name__}"
            )
        left, right, weight, metric = field
        try:
            weight = float(weight)
        except (TypeError, ValueError):
            raise ArrowKernelError(
                f"{func}() argument 'fields[{index}].weight': expected a float > 0, got {type(weight).__name__}"
            ) from None
        if not 0.0 < weight < 1e300:
            raise ArrowKernelError(
                f"{func}() argument 'fields[{index}].weight': expected a finite float > 0, got {weight:g}"
            )
        if metric not in _METRICS:
            raise ArrowKernelError(
                f"{func}() argument 'fields[{index}].metric': expected one of 'jaro_winkler', 'levenshtein', "
                f"'token_sort_jaro_winkler', 'token_sort_levenshtein', got {metric!r}"
            )
        lefts, rights = _string_pair(left, right, func, f"fields[{index}].left", f"fields[{index}].right")
        if length >= 0 and len(lefts) != length:
            raise ArrowKernelError(
                f"{func}() argument 'fields[{index}].left': length {len(lefts)} does not match the {length} "
                "rows of fields[0]; expected every field to have the same number of rows"
            )
        length = len(lefts)
        score = jaro_winkler if metric.endswith("jaro_winkler") else normalized_levenshtein
        columns.append((lefts, rights, weight, score, metric.startswith("token_sort")))
    per_field = [_pair_scores(lefts, rights, score, sort) for lefts, rights, _, score, sort in columns]
    weights = [weight for _, _, weight, _, _ in columns]
    scores: list[float | None] = []
    for row in range(length):
        total = 0.0
        weight_sum = 0.0
        for field_scores, weight in zip(per_field, weights, strict=True):
            value = field_scores[row]
            if value is not None:
                total += weight * value
                weight_sum += weight
        scores.append(total / weight_sum if weight_sum > 0.0 else None)
    score_array = pa.array(scores, type=pa.float64())
    if cutoff is None:
        return score_array
    indices = [row for row, value in enumerate(scores) if value is not None and value >= cutoff]
    return score_array, pa.array(indices, type=pa.int64())


# --------------------------------------------------------------------------------------------
# Iceberg bucket transform

_MASK32 = 0xFFFFFFFF


def _rotl32(value: int, shift: int) -> int:
    return ((value << shift) | (value >> (32 - shift))) & _MASK32


def _murmur3_mix_k1(k1: int) -> int:
    k1 = (k1 * 0xCC9E2D51) & _MASK32
    k1 = _rotl32(k1, 15)
    return (k1 * 0x1B873593) & _MASK32


def murmur3_32(data: bytes) -> int:
    """Murmur3 x86_32 with seed 0, as an unsigned 32-bit int."""
    h1 = 0
    length = len(data)
    body = length - length % 4
    for offset in range(0, body, 4):
        h1 ^= _murmur3_mix_k1(int.from_bytes(data[offset : offset + 4], "little"))
        h1 = _rotl32(h1, 13)
        h1 = (h1 * 5 + 0xE6546B64) & _MASK32
    tail = data[body:]
    if tail:
        h1 ^= _murmur3_mix_k1(int.from_bytes(tail, "little"))
    h1 ^= length
    h1 ^= h1 >> 16
    h1 = (h1 * 0x85EBCA6B) & _MASK32
    h1 ^= h1 >> 13
    h1 = (h1 * 0xC2B2AE35) & _MASK32
    h1 ^= h1 >> 16
    return h1


def _wrap_long(value: int) -> int:
    value &= 0xFFFFFFFFFFFFFFFF
    return value - (1 << 64) if value >= 1 << 63 else value


def _bucket_long_scale(data_type: Any) -> tuple[int, int]:
    """(multiply, floor-divide) taking the stored integer to Iceberg's long (days or micros)."""
    import pyarrow as pa

    if pa.types.is_date64(data_type):
        return 1, 86_400_000
    if pa.types.is_timestamp(data_type) or pa.types.is_time(data_type):
        return {"s": (1_000_000, 1), "ms": (1_000, 1), "us": (1, 1), "ns": (1, 1_000)}[data_type.unit]
    return 1, 1


def _is_bucketable(data_type: Any) -> bool:
    import pyarrow as pa

    types = pa.types
    if types.is_dictionary(data_type):
        return False
    integer = types.is_integer(data_type) and data_type != pa.uint64()
    temporal = types.is_date(data_type) or types.is_time(data_type) or types.is_timestamp(data_type)
    strings = _is_string(data_type) or types.is_binary(data_type) or types.is_large_binary(data_type)
    return bool(
        integer or temporal or strings or types.is_binary_view(data_type) or types.is_fixed_size_binary(data_type)
    )


def iceberg_bucket(values: Any, num_buckets: int, *, threads: int | None = None) -> Any:
    """Iceberg's bucket[num_buckets] of each value, as an int32 pyarrow Array (null stays null).

    Integers, dates (days), times and timestamps (microseconds; nanoseconds floor-divided, seconds
    and milliseconds scaled) hash as 8-byte little-endian longs; strings as UTF-8; binary as is.
    """
    import pyarrow as pa

    func = "iceberg_bucket"
    if not isinstance(num_buckets, int) or isinstance(num_buckets, bool):
        raise ArrowKernelError(
            f"{func}() argument 'num_buckets': expected an int in [1, 2147483647], got {type(num_buckets).__name__}"
        )
    if not 1 <= num_buckets <= 2147483647:
        raise ArrowKernelError(
            f"{func}() argument 'num_buckets': expected an int in [1, 2147483647], got {num_buckets}"
        )
    _check_threads(threads, func)
    array = _column(values, func, "values", _is_bucketable, _BUCKET_EXPECTED)
    data_type = array.type
    buckets: list[int | None] = []
    if _is_string(data_type) or not (pa.types.is_integer(data_type) or pa.types.is_temporal(data_type)):
        for item in array.to_pylist():
            if item is None:
                buckets.append(None)
                continue
            data = item.encode() if isinstance(item, str) else bytes(item)
            buckets.append((murmur3_32(data) & 0x7FFFFFFF) % num_buckets)
        return pa.array(buckets, type=pa.int32())
    multiply, divide = _bucket_long_scale(data_type)
    storage = pa.int32() if data_type.bit_width == 32 and not pa.types.is_unsigned_integer(data_type) else pa.int64()
    raw = array.cast(storage) if pa.types.is_temporal(data_type) else array
    for item in raw.to_pylist():
        if item is None:
            buckets.append(None)
            continue
        value = _wrap_long(item * multiply) // divide
        buckets.append((murmur3_32(value.to_bytes(8, "little", signed=True)) & 0x7FFFFFFF) % num_buckets)
    return pa.array(buckets, type=pa.int32())


# --------------------------------------------------------------------------------------------
# decode_parquet_column

_PARQUET_KINDS = {
    # arrow_type: (struct format of one value, or None for BYTE_ARRAY)
    "large_string": None,
    "large_binary": None,
    "int32": "<i",
    "int64": "<q",
    "float32": "<f",
    "float64": "<d",
    "date32": "<i",
}
_PAGE_DATA, _PAGE_DICTIONARY, _PAGE_DATA_V2 = 0, 2, 3
_PLAIN, _PLAIN_DICTIONARY, _RLE, _RLE_DICTIONARY = 0, 2, 3, 8


class _ParquetError(Exception):
    """A corrupt or unsupported page: the message, without the page number."""


class _Thrift:
    """The Thrift compact protocol, as far as Parquet's PageHeader needs it."""

    def __init__(self, data: bytes, pos: int = 0) -> None:
        self.data = data
        self.pos = pos

    def byte(self) -> int:
        if self.pos >= len(self.data):
            raise _ParquetError("unreadable page header")
        self.pos += 1
        return self.data[self.pos - 1]

    def varint(self) -> int:
        value = shift = 0
        while shift < 64:
            byte = self.byte()
            value |= (byte & 0x7F) << shift
            if not byte & 0x80:
                return value
            shift += 7
        raise _ParquetError("unreadable page header")

    def zigzag(self) -> int:
        value = self.varint()
        return (value >> 1) ^ -(value & 1)

    def skip_bytes(self, n: int) -> None:
        if n > len(self.data) - self.pos:
            raise _ParquetError("unreadable page header")
        self.pos += n

    def fields(self) -> Any:
        """(field id, type) of each field of a struct, up to its stop byte."""
        field_id = 0
        while True:
            header = self.byte()
            if header == 0:
                return
            delta = header >> 4
            field_id = field_id + delta if delta else self.zigzag()
            yield field_id, header & 0x0F

    def skip(self, field_type: int, depth: int = 0) -> None:
        if depth > 32:
            raise _ParquetError("unreadable page header")
        if field_type in (1, 2):
            return
        if field_type == 3:
            self.skip_bytes(1)
        elif field_type in (4, 5, 6):
            self.varint()
        elif field_type == 7:
            self.skip_bytes(8)
        elif field_type == 8:
            self.skip_bytes(self.varint())
        elif field_type in (9, 10):
            header = self.byte()
            count, element = header >> 4, header & 0x0F
            if count == 15:
                count = self.varint()
            for _ in range(count):
                if element in (1, 2):
                    self.skip_bytes(1)
                else:
                    self.skip(element, depth + 1)
        elif field_type == 11:
            count = self.varint()
            if count:
                types = self.byte()
                for _ in range(count):
                    for element in (types >> 4, types & 0x0F):
                        if element in (1, 2):
                            self.skip_bytes(1)
                        else:
                            self.skip(element, depth + 1)
        elif field_type == 12:
            for _, inner in self.fields():
                self.skip(inner, depth + 1)
        else:
            raise _ParquetError("unreadable page header")


def _page_header(reader: _Thrift) -> dict[str, Any]:
    header: dict[str, Any] = {
        "type": -1,
        "uncompressed": 0,
        "compressed": 0,
        "num_values": 0,
        "encoding": 0,
        "definition_level_encoding": _RLE,
        "definition_levels_bytes": 0,
        "repetition_levels_bytes": 0,
        "is_compressed": True,
    }
    plain = {1: "type", 2: "uncompressed", 3: "compressed"}
    for field_id, field_type in reader.fields():
        if field_type == 5 and field_id in plain:
            header[plain[field_id]] = reader.zigzag()
        elif field_type == 12 and field_id in (5, 7, 8):
            names = (
                {1: "num_values", 4: "encoding", 5: "definition_levels_bytes", 6: "repetition_levels_bytes"}
                if field_id == 8
                else {1: "num_values", 2: "encoding", 3: "definition_level_encoding" if field_id == 5 else ""}
            )
            for inner_id, inner_type in reader.fields():
                if inner_type == 5 and names.get(inner_id):
                    header[names[inner_id]] = reader.zigzag()
                elif field_id == 8 and inner_id == 7 and inner_type in (1, 2):
                    header["is_compressed"] = inner_type == 1
                else:
                    reader.skip(inner_type, 1)
        else:
            reader.skip(field_type)
    if (
        min(header["compressed"], header["uncompressed"], header["num_values"]) < 0
        or min(header["definition_levels_bytes"], header["repetition_levels_bytes"]) < 0
        or header["compressed"] > len(reader.data) - reader.pos
    ):
        raise _ParquetError("unreadable page header")
    return header


def _hybrid(data: bytes, bit_width: int, count: int) -> list[int]:
    """``count`` values of the RLE / bit-packed hybrid encoding."""
    reader = _Thrift(data)
    values: list[int] = []
    mask = (1 << bit_width) - 1
    while len(values) < count:
        try:
            header = reader.varint()
        except _ParquetError:
            raise _ParquetError("levels or indices cut short or corrupt") from None
        if header & 1:
            groups = header >> 1
            run = data[reader.pos : reader.pos + groups * bit_width]
            reader.pos += len(run)
            bits = int.from_bytes(run, "little")
            for index in range(min(groups * 8, count - len(values))):
                if (index + 1) * bit_width > len(run) * 8:
                    raise _ParquetError("levels or indices cut short or corrupt")
                values.append((bits >> (index * bit_width)) & mask)
        else:
            width = (bit_width + 7) // 8
            if width > len(data) - reader.pos:
                raise _ParquetError("levels or indices cut short or corrupt")
            value = int.from_bytes(data[reader.pos : reader.pos + width], "little")
            reader.pos += width
            if value > mask:
                raise _ParquetError("levels or indices cut short or corrupt")
            values.extend([value] * min(header >> 1, count - len(values)))
    return values


def _plain_byte_arrays(data: bytes, count: int) -> tuple[list[bytes], int]:
    """``count`` length-prefixed values and where they end."""
    values, pos = [], 0
    for _ in range(count):
        if len(data) - pos < 4:
            raise _ParquetError("value past the page's end")
        length = int.from_bytes(data[pos : pos + 4], "little")
        if length > len(data) - pos - 4:
            raise _ParquetError("value past the page's end")
        values.append(data[pos + 4 : pos + 4 + length])
        pos += 4 + length
    return values, pos


def _plain_fixed(data: bytes, value_format: str, count: int) -> list[Any]:
    import struct

    size = struct.calcsize(value_format)
    if count * size > len(data):
        raise _ParquetError("values past the page's end")
    return [struct.unpack_from(value_format, data, index * size)[0] for index in range(count)]


def _check_text(values: list[bytes], what: str) -> None:
    for value in values:
        try:
            value.decode("utf-8")
        except UnicodeDecodeError:
            raise _ParquetError(f"{what} that is not valid UTF-8") from None


# The shared library names the native kernel tries, in its order (native/zstd_library.c).
_ZSTD_NAMES = ("libzstd.so.1", "libzstd.1.dylib", "libzstd.so", "libzstd.dylib")


@functools.cache
def _zstd_library() -> Any:
    """The system's libzstd through ctypes, or None: the library the native kernel loads, so that both
    decompress (and fail) alike, word for word."""
    import ctypes

    for name in _ZSTD_NAMES:
        try:
            library = ctypes.CDLL(name)
        except OSError:
            continue
        library.ZSTD_createDCtx.restype = ctypes.c_void_p
        library.ZSTD_freeDCtx.argtypes = [ctypes.c_void_p]
        library.ZSTD_decompressDCtx.restype = ctypes.c_size_t
        library.ZSTD_decompressDCtx.argtypes = [
            ctypes.c_void_p,
            ctypes.c_char_p,
            ctypes.c_size_t,
            ctypes.c_char_p,
            ctypes.c_size_t,
        ]
        library.ZSTD_isError.argtypes = [ctypes.c_size_t]
        library.ZSTD_getErrorName.argtypes = [ctypes.c_size_t]
        library.ZSTD_getErrorName.restype = ctypes.c_char_p
        return library
    return None


def zstd_library_version() -> str | None:
    """The version of the libzstd that ``decode_parquet_column(zstd=True)`` decompresses with, or None."""
    library = _zstd_library()
    if library is None:
        return None
    version = library.ZSTD_versionNumber()
    return f"{version // 10000}.{version // 100 % 100}.{version % 100}"


def _zstd_page(stored: bytes, expected: int, func: str, page_index: int) -> bytes:
    """A zstd page decompressed by libzstd's one-shot call into exactly ``expected`` bytes of room."""
    import ctypes

    library = _zstd_library()
    out = ctypes.create_string_buffer(max(expected, 1))
    context = library.ZSTD_createDCtx()
    try:
        written = library.ZSTD_decompressDCtx(context, out, expected, stored, len(stored))
    finally:
        library.ZSTD_freeDCtx(context)
    if library.ZSTD_isError(written):
        raise _ParquetError(f"zstd: {library.ZSTD_getErrorName(written).decode()}")
    if written != expected:
        raise ArrowKernelError(
            f"{func}(): page {page_index} decompressed to {written} bytes, its header says {expected}"
        )
    return out.raw[:expected]


def decode_parquet_column(
    chunk: Any,
    num_values: int,
    arrow_type: str,
    *,
    max_definition_level: int = 1,
    decompress: Any = None,
    allocate: Any = None,
    decompress_into: Any = None,
    selection: Any = None,
    zstd: bool = False,
) -> list[Any]:
    """One Parquet column chunk of a flat column (its pages' bytes from the first) as arrays of the
    Arrow type ``arrow_type`` names (see the native kernel's documentation)."""
    import pyarrow as pa

    func = "decode_parquet_column"
    if arrow_type not in _PARQUET_KINDS:
        raise ArrowKernelError(
            f"{func}(): arrow_type must be one of large_string, large_binary, int32, int64, "
            f"float32, float64, date32; got '{arrow_type}'"
        )
    if (
        num_values < 0
        or max_definition_level not in (0, 1)
        or (decompress is not None and not callable(decompress))
        or (allocate is not None and not callable(allocate))
        or (decompress_into is not None and not callable(decompress_into))
    ):
        raise ArrowKernelError(
            f"{func}(): num_values must be >= 0, max_definition_level 0 or 1, and decompress, allocate "
            f"and decompress_into None or callables; got {num_values}, {max_definition_level}, "
            f"{type(decompress).__name__}, {type(allocate).__name__}, {type(decompress_into).__name__}"
        )
    keep: list[bool] | None = None
    if selection is not None:
        bits = bytes(memoryview(selection))
        if len(bits) < (num_values + 7) // 8:
            raise ArrowKernelError(
                f"{func}(): selection must hold a bit for each of the {num_values} values "
                f"({(num_values + 7) // 8} bytes); got {len(bits)} bytes"
            )
        keep = [bool(bits[row >> 3] >> (row & 7) & 1) for row in range(num_values)]
    if zstd and zstd_library_version() is None:
        raise ArrowKernelError(
            f"{func}(): zstd=True needs libzstd, and none could be loaded (zstd_library_version() is None): "
            "pass decompress_into instead"
        )
    if zstd and (decompress is not None or decompress_into is not None):
        raise ArrowKernelError(
            f"{func}(): zstd=True decompresses the pages itself: decompress and decompress_into must be None"
        )
    value_format = _PARQUET_KINDS[arrow_type]
    data = bytes(memoryview(chunk))
    consumed = 0  # rows of the chunk read; values holds those kept
    reader = _Thrift(data)
    dictionary: list[Any] | None = None
    values: list[Any] = []
    page_index = 0
    try:
        while consumed < num_values:
            if reader.pos >= len(data):
                raise ArrowKernelError(f"{func}(): the chunk ends after {consumed} of its {num_values} values")
            header = _page_header(reader)
            payload = data[reader.pos : reader.pos + header["compressed"]]
            reader.pos += header["compressed"]
            levels_size = 0
            if header["type"] == _PAGE_DATA_V2:
                if header["repetition_levels_bytes"]:
                    raise _ParquetError("repetition levels (a repeated column)")
                levels_size = header["definition_levels_bytes"]
                if levels_size > header["compressed"] or levels_size > header["uncompressed"]:
                    raise _ParquetError("levels larger than the page")
            if header["type"] not in (_PAGE_DATA, _PAGE_DICTIONARY, _PAGE_DATA_V2):
                page_index += 1
                continue
            count = header["num_values"]
            if (
                keep is not None
                and header["type"] != _PAGE_DICTIONARY
                and count <= num_values - consumed
                and not any(keep[consumed : consumed + count])
            ):
                consumed += count  # none of its rows kept: not even decompressed
                page_index += 1
                continue
            stored = payload[levels_size:]
            expected = header["uncompressed"] - levels_size
            compressed = header["is_compressed"] if header["type"] == _PAGE_DATA_V2 else True
            decompressing = compressed and (zstd or decompress is not None or decompress_into is not None)
            if expected == 0 and decompressing:
                body = b""  # nothing to decompress (a v2 page's empty values): codecs refuse empty input
            elif decompressing and zstd:
                body = _zstd_page(stored, expected, func, page_index)
            elif decompressing and decompress_into is not None:
                out = bytearray(expected)
                with memoryview(stored) as source, memoryview(out) as target:
                    written = operator.index(decompress_into(source, expected, target))
                if written != expected:
                    raise ArrowKernelError(
                        f"{func}(): page {page_index} decompressed to {written} bytes, its header says {expected}"
                    )
                body = bytes(out)
            elif not decompressing:
                if len(stored) != expected:
                    raise ArrowKernelError(
                        f"{func}(): page {page_index}: {len(stored)} bytes stored but {expected} expected uncompressed"
                    )
                body = stored
            else:
                body = bytes(memoryview(decompress(memoryview(stored), expected)))
                if len(body) != expected:
                    raise ArrowKernelError(
                        f"{func}(): page {page_index} decompressed to {len(body)} bytes, its header says {expected}"
                    )
            if header["type"] == _PAGE_DICTIONARY:
                if dictionary is not None:
                    raise _ParquetError("a second dictionary page")
                if consumed:
                    raise _ParquetError("a dictionary page after data pages")
                if header["encoding"] not in (_PLAIN, _PLAIN_DICTIONARY):
                    raise _ParquetError("dictionary page not PLAIN-encoded")
                if value_format is None:
                    dictionary, _ = _plain_byte_arrays(body, header["num_values"])
                    if arrow_type == "large_string":
                        _check_text(dictionary, "dictionary holds a string")
                else:
                    dictionary = _plain_fixed(body, value_format, header["num_values"])
                page_index += 1
                continue
            if count > num_values - consumed:
                raise _ParquetError("more values than the chunk has")
            rest = body
            defined = [1] * count
            if max_definition_level:
                if header["type"] == _PAGE_DATA:
                    if header["definition_level_encoding"] != _RLE:
                        raise _ParquetError("definition levels not RLE-encoded")
                    if len(body) < 4 or int.from_bytes(body[:4], "little") > len(body) - 4:
                        raise _ParquetError("definition levels past the page's end")
                    length = int.from_bytes(body[:4], "little")
                    levels, rest = body[4 : 4 + length], body[4 + length :]
                else:
                    levels = payload[:levels_size]
                defined = _hybrid(levels, 1, count)
            present = sum(defined)
            page_keep = [True] * count if keep is None else keep[consumed : consumed + count]
            encoding = header["encoding"]
            if encoding == _PLAIN:
                if value_format is None:
                    decoded, _ = _plain_byte_arrays(rest, present)
                    if arrow_type == "large_string":
                        # Only the strings kept are checked (as the kernel does).
                        kept_present = [kept for flag, kept in zip(defined, page_keep, strict=True) if flag]
                        kept_values = [value for value, kept in zip(decoded, kept_present, strict=True) if kept]
                        _check_text(kept_values, "a string")
                else:
                    decoded = _plain_fixed(rest, value_format, present)
            elif encoding in (_RLE_DICTIONARY, _PLAIN_DICTIONARY):
                if dictionary is None:
                    raise _ParquetError("dictionary-coded page without a dictionary")
                decoded = []
                if present:
                    if not rest:
                        raise _ParquetError("indices past the page's end")
                    if rest[0] > 32:
                        raise _ParquetError("index bit width over 32")
                    for index in _hybrid(rest[1:], rest[0], present):
                        if index >= len(dictionary):
                            raise _ParquetError("index past the dictionary's end")
                        decoded.append(dictionary[index])
            else:
                raise _ParquetError(f"unsupported value encoding {encoding}")
            present_values = iter(decoded)
            page_values = [next(present_values) if flag else None for flag in defined]
            values.extend(value for value, kept in zip(page_values, page_keep, strict=True) if kept)
            consumed += count
            page_index += 1
    except _ParquetError as exc:
        raise ArrowKernelError(f"{func}(): page {page_index}: {exc}") from None
    types = {
        "large_string": pa.large_string(),
        "large_binary": pa.large_binary(),
        "int32": pa.int32(),
        "int64": pa.int64(),
        "float32": pa.float32(),
        "float64": pa.float64(),
        "date32": pa.date32(),
    }
    if arrow_type == "large_string":
        values = [None if value is None else value.decode("utf-8") for value in values]
    # One array: how the native kernel splits its output into arrays is not part of the result.
    return [pa.array(values, type=types[arrow_type])]
