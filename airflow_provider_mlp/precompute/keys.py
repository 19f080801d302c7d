"""Safe memcached keys for any user key, and the names of a namespace's own items.

A user key (one or more key columns: integers, strings, any bytes, dates) becomes memcached key
``mlp:<namespace>:<version tag>:k<escaped>``:

- **canonical bytes**: one key column gives its bytes (an integer its decimal text, a string its
  UTF-8, a date its ISO text); several columns are joined as ``<length>:<bytes>`` each, so
  ``("a:b", "c")`` and ``("a", "b:c")`` stay apart;
- **escaping**: printable ASCII other than ``%`` is kept, every other byte (space, CR, LF, ``\\x01``,
  non-UTF-8 bytes, ...) becomes ``%XX``. The result has no whitespace or control character, so no
  key can end a command line or inject one, and it is reversible, so two keys never collide;
- **long keys**: when the escaped key would make the memcached key longer than 250 bytes it is
  replaced by ``h<blake2b-160 hex>`` and the value carries the canonical key, which the reader
  compares, so even a hash collision cannot return another key's value.

The publisher escapes whole batches with numpy (:func:`escape_many`); the reader escapes one key
at a time (:func:`escape`); tests keep the two identical.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from datetime import date
from functools import cache
from typing import TYPE_CHECKING, Any

from airflow_provider_mlp.precompute.errors import CacheInputError

if TYPE_CHECKING:
    import numpy as np
    import pyarrow as pa

MAX_KEY_BYTES = 250
NAMESPACE_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
KEY_KINDS = ("int", "string", "binary", "date")
HASH_BYTES = 20
# Client flags of stored items: the value starts with the canonical key (a hashed long key), or
# the value is a chunk header (``[count, total bytes, crc32]``) and its bytes are in chunk items.
FLAG_KEYED = 1
FLAG_CHUNKED = 2

_SAFE = bytes(b for b in range(0x21, 0x7F) if b != 0x25)
_ESCAPED = [bytes([b]) if b in _SAFE else b"%%%02X" % b for b in range(256)]


@cache
def _tables() -> tuple[np.ndarray, np.ndarray]:
    import numpy as np

    unsafe = np.ones(256, dtype=bool)
    unsafe[list(_SAFE)] = False
    return unsafe, np.frombuffer(b"0123456789ABCDEF", dtype=np.uint8)


def check_namespace(namespace: Any) -> str:
    if not isinstance(namespace, str) or not NAMESPACE_PATTERN.fullmatch(namespace):
        raise CacheInputError(
            f"namespace {namespace!r} must be 1-64 characters of letters, digits, '_', '.' or '-', "
            "starting with a letter or digit"
        )
    return namespace


class KeySpace:
    """The memcached key names of one namespace (and, with ``tag``, of one version)."""

    def __init__(self, namespace: str, tag: str | None = None) -> None:
        self.namespace = check_namespace(namespace)
        self.tag = tag
        self.pointer = f"mlp:{namespace}:current"
        self.counter = f"mlp:{namespace}:seq"

    def meta(self, tag: str) -> str:
        return f"mlp:{self.namespace}:meta:{tag}"

    def version(self, tag: str) -> KeySpace:
        return KeySpace(self.namespace, tag)

    @property
    def prefix(self) -> str:
        if self.tag is None:
            raise ValueError("KeySpace without a version tag has no data prefix")
        return f"mlp:{self.namespace}:{self.tag}:"

    def marker(self, index: int) -> str:
        return f"{self.prefix}@{index}"

    def data_key(self, canonical: bytes) -> tuple[str, bool]:
        """``(memcached key, hashed)`` of a canonical user key."""
        escaped = escape(canonical)
        prefix = self.prefix
        if len(prefix) + 1 + len(escaped) <= MAX_KEY_BYTES:
            return prefix + "k" + escaped.decode("ascii"), False
        return prefix + "h" + hashlib.blake2b(canonical, digest_size=HASH_BYTES).hexdigest(), True

    def chunk_key(self, main_key: str, index: int) -> str:
        digest = hashlib.blake2b(main_key.encode("ascii"), digest_size=16).hexdigest()
        return f"{self.prefix}c{index}.{digest}"

    def max_escaped_length(self) -> int:
        return MAX_KEY_BYTES - len(self.prefix) - 1


def escape(raw: bytes) -> bytes:
    if not raw.translate(None, _SAFE):
        return raw
    return b"".join([_ESCAPED[b] for b in raw])


def unescape(escaped: bytes) -> bytes:
    out = bytearray()
    i = 0
    while i < len(escaped):
        if escaped[i] == 0x25:
            out.append(int(escaped[i + 1 : i + 3], 16))
            i += 3
        else:
            out.append(escaped[i])
            i += 1
    return bytes(out)


def escape_many(data: np.ndarray, offsets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """:func:`escape` of every row of a ``(data, offsets)`` batch of byte strings."""
    import numpy as np

    unsafe_table, hex_digits = _tables()
    first, last = int(offsets[0]), int(offsets[-1])
    used = data[first:last]
    unsafe = unsafe_table[used]
    if not unsafe.any():
        return used, offsets - first
    widths = np.where(unsafe, 3, 1)
    ends = np.cumsum(widths)
    begins = ends - widths
    out = np.empty(int(ends[-1]) if len(ends) else 0, dtype=np.uint8)
    out[begins[~unsafe]] = used[~unsafe]
    at = begins[unsafe]
    bad = used[unsafe]
    out[at] = 0x25
    out[at + 1] = hex_digits[bad >> 4]
    out[at + 2] = hex_digits[bad & 0x0F]
    positions = np.concatenate((begins, [len(out)]))
    return out, positions[offsets - first]


# -- canonical user keys ---------------------------------------------------------------------------


def key_kind(column: str, arrow_type: pa.DataType) -> str:
    """The key kind of a key column's Arrow type, or a clear error."""
    import pyarrow as pa

    t = arrow_type
    if pa.types.is_dictionary(t):
        t = t.value_type
    if pa.types.is_integer(t):
        return "int"
    if pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t):
        return "string"
    if (
        pa.types.is_binary(t)
        or pa.types.is_large_binary(t)
        or pa.types.is_fixed_size_binary(t)
        or pa.types.is_binary_view(t)
    ):
        return "binary"
    if pa.types.is_date(t):
        return "date"
    raise CacheInputError(
        f"key column {column!r} has type {arrow_type}; key columns must be integers, strings, binary or dates"
    )


def canonical_key(key: Any, kinds: Sequence[str], columns: Sequence[str]) -> bytes:
    """The canonical bytes of one user key: a scalar for one key column, a tuple for several."""
    if len(kinds) == 1:
        parts = key if isinstance(key, tuple) and len(key) == 1 else (key,)
    else:
        if not isinstance(key, tuple | list) or len(key) != len(kinds):
            raise CacheInputError(f"key {key!r}: expected a tuple of {len(kinds)} values ({', '.join(columns)})")
        parts = tuple(key)
    encoded = [_component(value, kind, column) for value, kind, column in zip(parts, kinds, columns, strict=True)]
    if len(encoded) == 1:
        return encoded[0]
    return b"".join(b"%d:%b" % (len(c), c) for c in encoded)


def _component(value: Any, kind: str, column: str) -> bytes:
    if kind == "int":
        if isinstance(value, bool) or not hasattr(value, "__index__"):
            raise CacheInputError(f"key column {column!r} holds integers; got {type(value).__name__} {value!r}")
        return str(value.__index__()).encode("ascii")
    if kind == "string":
        if not isinstance(value, str):
            raise CacheInputError(f"key column {column!r} holds strings; got {type(value).__name__} {value!r}")
        return value.encode("utf-8", "surrogatepass")
    if kind == "binary":
        if not isinstance(value, bytes | bytearray | memoryview):
            raise CacheInputError(f"key column {column!r} holds bytes; got {type(value).__name__} {value!r}")
        return bytes(value)
    if kind == "date":
        if not isinstance(value, date) or hasattr(value, "hour"):
            raise CacheInputError(f"key column {column!r} holds dates; got {type(value).__name__} {value!r}")
        return value.isoformat().encode("ascii")
    raise CacheInputError(f"key column {column!r}: unknown key kind {kind!r}")


def decode_key(canonical: bytes, kinds: Sequence[str]) -> Any:
    """The user key back from its canonical bytes (for messages and the CLI)."""
    if len(kinds) == 1:
        return _decode_component(canonical, kinds[0])
    parts: list[Any] = []
    rest = canonical
    for kind in kinds:
        length_text, _, rest = rest.partition(b":")
        length = int(length_text)
        parts.append(_decode_component(rest[:length], kind))
        rest = rest[length:]
    return tuple(parts)


def _decode_component(raw: bytes, kind: str) -> Any:
    if kind == "int":
        return int(raw)
    if kind == "string":
        return raw.decode("utf-8", "surrogatepass")
    if kind == "date":
        return date.fromisoformat(raw.decode("ascii"))
    return raw


def canonical_keys(columns: Sequence[pa.Array], kinds: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """Canonical bytes of every row's key, as ``(data, offsets)``."""
    import numpy as np

    from airflow_provider_mlp.precompute.ragged import Pieces, Pool, concat_rows, gather

    texts = [_component_text(column, kind) for column, kind in zip(columns, kinds, strict=True)]
    if len(texts) == 1:
        return texts[0]
    pool = Pool()
    colon = pool.const(b":")
    parts: list[Pieces] = []
    rows = len(columns[0])
    for data, offsets in texts:
        lengths = np.diff(offsets)
        length_data, length_offsets = _decimal_text(lengths)
        base = pool.add(length_data)
        parts.append(Pieces.uniform(base + length_offsets[:-1], np.diff(length_offsets)))
        parts.append(Pieces.constant(colon, 1, rows))
        base = pool.add(data[offsets[0] : offsets[-1]])
        parts.append(Pieces.uniform(base + offsets[:-1] - offsets[0], lengths))
    return gather(pool.array(), concat_rows(parts))


def _decimal_text(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    import pyarrow as pa
    import pyarrow.compute as pc

    return binary_parts(pc.cast(pa.array(values, type=pa.int64()), pa.string()))


def _component_text(column: pa.Array, kind: str) -> tuple[np.ndarray, np.ndarray]:
    import pyarrow as pa
    import pyarrow.compute as pc

    if pa.types.is_dictionary(column.type):
        column = column.dictionary_decode()
    if kind == "int" or kind == "date":
        if pa.types.is_date64(column.type):
            column = pc.cast(column, pa.date32())
        column = pc.cast(column, pa.large_string())
    elif pa.types.is_string_view(column.type):
        column = pc.cast(column, pa.large_string())
    elif pa.types.is_binary_view(column.type) or pa.types.is_fixed_size_binary(column.type):
        column = pc.cast(column, pa.large_binary())
    return binary_parts(column)


def binary_parts(array: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """``(data, offsets)`` of a string or binary Arrow array (offsets index ``data``; slices respected)."""
    import numpy as np
    import pyarrow as pa

    large = pa.types.is_large_string(array.type) or pa.types.is_large_binary(array.type)
    buffers = array.buffers()
    n = len(array)
    if buffers[1] is None:
        return np.zeros(0, dtype=np.uint8), np.zeros(n + 1, dtype=np.int64)
    offsets = np.frombuffer(buffers[1], dtype=np.int64 if large else np.int32)[array.offset : array.offset + n + 1]
    data = np.frombuffer(buffers[2], dtype=np.uint8) if buffers[2] is not None else np.zeros(0, dtype=np.uint8)
    return data, offsets.astype(np.int64)
