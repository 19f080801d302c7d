"""decode_parquet_column: native and reference against pyarrow's own reading of files pyarrow wrote."""

from __future__ import annotations

import datetime
import io
import random
import re
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from airflow_provider_mlp.kernels import ArrowKernelError, native, reference

LARGE = {
    "string": ("large_string", pa.large_string()),
    "binary": ("large_binary", pa.large_binary()),
    "int32": ("int32", pa.int32()),
    "int64": ("int64", pa.int64()),
    "float": ("float32", pa.float32()),
    "double": ("float64", pa.float64()),
    "date32[day]": ("date32", pa.date32()),
}
LONGS = st.integers(min_value=-(2**63), max_value=2**63 - 1)
# pyarrow's Parquet names (write_table compression=) to its Codec names and back.
PARQUET_CODECS = {
    "UNCOMPRESSED": None,
    "SNAPPY": "snappy",
    "GZIP": "gzip",
    "ZSTD": "zstd",
    "BROTLI": "brotli",
}


def write(table: pa.Table, **options: Any) -> bytes:
    sink = io.BytesIO()
    pq.write_table(table, sink, **options)
    return sink.getvalue()


def chunks(data: bytes, column: int = 0) -> list[tuple[bytes, int, Any, int]]:
    """Each row group's chunk of ``column``: its bytes, value count, decompressor and max definition level."""
    metadata = pq.ParquetFile(io.BytesIO(data)).metadata
    found = []
    for rg in range(metadata.num_row_groups):
        chunk = metadata.row_group(rg).column(column)
        start = chunk.dictionary_page_offset if chunk.has_dictionary_page else chunk.data_page_offset
        codec_name = PARQUET_CODECS[chunk.compression]
        decompress = None
        if codec_name is not None:
            codec = pa.Codec(codec_name)

            def decompress(page: memoryview, size: int, codec: pa.Codec = codec) -> pa.Buffer:
                return codec.decompress(page, size)

        level = metadata.schema.column(column).max_definition_level
        found.append((data[start : start + chunk.total_compressed_size], chunk.num_values, decompress, level))
    return found


def decoded(impl: Any, data: bytes, arrow_type: str, **kwargs: Any) -> pa.ChunkedArray:
    arrays = [
        pa.array(result)
        for chunk, count, dec, level in chunks(data)
        for result in impl.decode_parquet_column(
            chunk, count, arrow_type, max_definition_level=level, decompress=dec, **kwargs
        )
    ]
    for array in arrays:
        array.validate(full=True)
    return pa.chunked_array(arrays, type=arrays[0].type)


def expected(data: bytes) -> pa.ChunkedArray:
    column = pq.read_table(io.BytesIO(data)).column(0)
    arrow_type = LARGE[str(column.type)][1]
    return column.cast(arrow_type)


def same(ours: pa.ChunkedArray, theirs: pa.ChunkedArray) -> bool:
    """Equal, floats bit for bit (``equals`` takes -0.0 for 0.0, and NaN for no NaN)."""
    if pa.types.is_floating(theirs.type):
        bits = pa.int32() if theirs.type == pa.float32() else pa.int64()
        ours, theirs = (pa.chunked_array([c.view(bits) for c in x.chunks], bits) for x in (ours, theirs))
    return bool(ours.equals(theirs))


def column_of(type_name: str, values: list[Any], nullable: bool = True) -> pa.Table:
    arrow_type = pa.type_for_alias(type_name) if type_name != "date32[day]" else pa.date32()
    return pa.table({"c": pa.array(values, type=arrow_type)}, schema=pa.schema([pa.field("c", arrow_type, nullable)]))


SAMPLES: dict[str, list[Any]] = {
    "string": ["", "a", "héllo wörld", "日本語のテキスト", "x" * 40, None, "🙂 emoji", "a" * 17],
    "binary": [b"", b"\x00\xff", b"plain", None, bytes(range(256)), b"\x80\x80"],
    "int32": [0, -1, 2**31 - 1, -(2**31), None, 7],
    "int64": [0, -1, 2**63 - 1, -(2**63), None, 123456789012],
    "float": [0.0, -1.5, float("inf"), None, 3.25, -0.0, float("nan")],
    "double": [0.0, -1.5, float("inf"), None, 1e300, -0.0, float("nan")],
    "date32[day]": [datetime.date(1970, 1, 1), datetime.date(2026, 12, 2), None, datetime.date(1, 1, 1)],
}


def many(type_name: str, count: int, seed: int) -> list[Any]:
    rng = random.Random(seed)
    sample = SAMPLES[type_name]
    # A few distinct values repeated (dictionary-coded), runs of nulls (levels with both run kinds).
    return [sample[rng.randrange(len(sample))] if rng.random() > 0.05 else None for _ in range(count)]


@pytest.mark.parametrize("type_name", sorted(SAMPLES))
@pytest.mark.parametrize("dictionary", [True, False], ids=["dictionary", "plain"])
@pytest.mark.parametrize("page_version", ["1.0", "2.0"])
def test_every_type_and_page_kind_decodes_as_pyarrow_reads_it(
    impl: Any, type_name: str, dictionary: bool, page_version: str
) -> None:
    values = many(type_name, 3000, seed=len(type_name))
    data = write(
        column_of(type_name, values),
        use_dictionary=dictionary,
        data_page_version=page_version,
        data_page_size=512,  # many pages per chunk
        row_group_size=1100,  # several chunks, the last short
        compression="zstd",
    )
    arrow_type = LARGE[type_name][0]
    assert same(decoded(impl, data, arrow_type), expected(data))


@pytest.mark.parametrize("codec", ["none", "snappy", "gzip", "zstd", "brotli"])
def test_every_codec_pyarrow_writes(impl: Any, codec: str) -> None:
    data = write(column_of("string", many("string", 2000, seed=3)), compression=codec, data_page_size=1024)
    assert decoded(impl, data, "large_string").equals(expected(data))


def test_a_dictionary_outgrown_mid_chunk_falls_back_to_plain_pages(impl: Any) -> None:
    # Unique values: the dictionary reaches its size limit and later pages are PLAIN, in one chunk.
    values = [f"value-{i:06d}-{'x' * (i % 13)}" for i in range(20_000)]
    data = write(column_of("string", values), dictionary_pagesize_limit=4096, data_page_size=2048)
    encodings = pq.ParquetFile(io.BytesIO(data)).metadata.row_group(0).column(0).encodings
    assert "PLAIN" in encodings and "RLE_DICTIONARY" in encodings
    assert decoded(impl, data, "large_string").equals(expected(data))


@pytest.mark.parametrize("type_name", ["string", "int64"])
def test_required_columns_have_no_levels(impl: Any, type_name: str) -> None:
    values = [v for v in many(type_name, 1500, seed=5) if v is not None]
    data = write(column_of(type_name, values, nullable=False), data_page_size=256)
    assert pq.ParquetFile(io.BytesIO(data)).metadata.schema.column(0).max_definition_level == 0
    result = decoded(impl, data, LARGE[type_name][0])
    assert result.null_count == 0
    assert result.equals(expected(data))


@pytest.mark.parametrize("page_version", ["1.0", "2.0"])
def test_all_null_pages_and_empty_chunks(impl: Any, page_version: str) -> None:
    for values in ([None] * 700, [None] * 300 + ["x"] + [None] * 300, []):
        data = write(column_of("string", values), data_page_version=page_version, data_page_size=64)
        if not values:
            # pyarrow writes one row group of no rows: its chunk has no data page.
            assert [count for _, count, _, _ in chunks(data)] == [0]
        assert decoded(impl, data, "large_string").equals(expected(data))


def test_allocate_supplies_the_output_memory_and_gets_it_back(impl: Any) -> None:
    pool = pa.jemalloc_memory_pool() if hasattr(pa, "jemalloc_memory_pool") else pa.default_memory_pool()
    data = write(column_of("string", many("string", 5000, seed=9)), data_page_size=1024)
    sizes: list[int] = []

    def allocate(size: int) -> pa.Buffer:
        sizes.append(size)
        return pa.allocate_buffer(size, memory_pool=pool)

    before = pool.bytes_allocated()
    result = decoded(impl, data, "large_string", allocate=allocate)
    assert result.equals(expected(data))
    if impl is native:
        assert sizes and pool.bytes_allocated() - before >= sum(sizes) - 64
    del result
    assert pool.bytes_allocated() == before


@settings(max_examples=60, deadline=None)
@given(
    values=st.lists(st.one_of(st.none(), st.text(max_size=12)), max_size=300),
    dictionary=st.booleans(),
    page_version=st.sampled_from(["1.0", "2.0"]),
    page_size=st.sampled_from([16, 100, 1 << 20]),
    codec=st.sampled_from(["none", "snappy", "zstd"]),
)
def test_random_strings_decode_alike(
    values: list[str | None], dictionary: bool, page_version: str, page_size: int, codec: str
) -> None:
    data = write(
        column_of("string", values),
        use_dictionary=dictionary,
        data_page_version=page_version,
        data_page_size=page_size,
        compression=codec,
    )
    if not values:
        return
    want = expected(data)
    assert decoded(native, data, "large_string").equals(want)
    assert decoded(reference, data, "large_string").equals(want)


@settings(max_examples=40, deadline=None)
@given(
    values=st.lists(
        st.one_of(st.none(), st.integers(min_value=-(2**63), max_value=2**63 - 1)), min_size=1, max_size=300
    ),
    dictionary=st.booleans(),
    page_version=st.sampled_from(["1.0", "2.0"]),
    page_size=st.sampled_from([16, 100, 1 << 20]),
)
def test_random_longs_decode_alike(
    values: list[int | None], dictionary: bool, page_version: str, page_size: int
) -> None:
    data = write(
        column_of("int64", values), use_dictionary=dictionary, data_page_version=page_version, data_page_size=page_size
    )
    want = expected(data)
    assert decoded(native, data, "int64").equals(want)
    assert decoded(reference, data, "int64").equals(want)


def test_unsupported_encodings_are_refused_by_name(impl: Any) -> None:
    table = column_of("string", many("string", 500, seed=1))
    data = write(table, use_dictionary=False, column_encoding={"c": "DELTA_BYTE_ARRAY"})
    with pytest.raises(ArrowKernelError, match="unsupported value encoding 7"):
        decoded(impl, data, "large_string")


def test_invalid_utf8_is_refused_as_a_string_but_read_as_binary(impl: Any) -> None:
    for dictionary in (True, False):
        data = write(column_of("binary", [b"ok", b"\xff\xfe", b"\xe6\x97"] * 50), use_dictionary=dictionary)
        with pytest.raises(ArrowKernelError, match="not valid UTF-8"):
            decoded(impl, data, "large_string")
        assert decoded(impl, data, "large_binary").equals(expected(data))
    # Valid UTF-8 as a whole, but one value starts inside another's character.
    split = write(column_of("binary", [b"\xe6", b"\x97\xa5"]), use_dictionary=False)
    with pytest.raises(ArrowKernelError, match="not valid UTF-8"):
        decoded(impl, split, "large_string")


def test_bad_arguments_name_what_is_wrong(impl: Any) -> None:
    data = write(column_of("int64", [1, 2, 3]))
    chunk, count, dec, level = chunks(data)[0]
    with pytest.raises(ArrowKernelError, match="arrow_type must be one of"):
        impl.decode_parquet_column(chunk, count, "decimal128", decompress=dec)
    with pytest.raises(ArrowKernelError, match="max_definition_level 0 or 1"):
        impl.decode_parquet_column(chunk, count, "int64", max_definition_level=2, decompress=dec)
    with pytest.raises(ArrowKernelError, match="decompressed to 3 bytes"):
        impl.decode_parquet_column(chunk, count, "int64", decompress=lambda page, size: b"abc")
    with pytest.raises(ArrowKernelError, match="ends after 3 of its 4 values"):
        impl.decode_parquet_column(chunk, count + 1, "int64", decompress=dec)
    with pytest.raises(ValueError, match="no"):

        def refuse(page: memoryview, size: int) -> bytes:
            raise ValueError("no")

        impl.decode_parquet_column(chunk, count, "int64", decompress=refuse)


@pytest.mark.parametrize("type_name", ["string", "int32", "double"])
@pytest.mark.parametrize("dictionary", [True, False], ids=["dictionary", "plain"])
def test_corrupt_chunks_give_an_error_or_a_valid_array(impl: Any, type_name: str, dictionary: bool) -> None:
    """Bytes flipped or cut anywhere: never a read outside the buffers (the sanitizer run checks)."""
    data = write(
        column_of(type_name, many(type_name, 400, seed=2)),
        use_dictionary=dictionary,
        compression="none",
        data_page_size=256,
    )
    chunk, count, _, level = chunks(data)[0]
    rng = random.Random(type_name + str(dictionary))
    arrow_type = LARGE[type_name][0]
    for trial in range(150 if impl is native else 25):
        broken = bytearray(chunk)
        if trial % 3 == 0:
            broken = broken[: rng.randrange(len(broken))]
        for _ in range(rng.randrange(1, 4)):
            if broken:
                broken[rng.randrange(len(broken))] = rng.randrange(256)
        try:
            results = impl.decode_parquet_column(bytes(broken), count, arrow_type, max_definition_level=level)
        except ArrowKernelError as exc:
            assert "decode_parquet_column(): " in str(exc)
            continue
        arrays = [pa.array(result) for result in results]
        for array in arrays:
            array.validate(full=True)
        assert sum(len(array) for array in arrays) == count


@pytest.mark.parametrize("dictionary", [True, False], ids=["dictionary", "plain"])
def test_outputs_are_arrays_of_at_most_8_mib_a_buffer(dictionary: bool) -> None:
    """Split so that memory pools reuse their blocks; nulls either side of a split keep their place."""
    rows = 1_200_000
    longs = pa.array([None if i % 7 == 0 else i * 3 for i in range(rows)], pa.int64())
    texts = pa.array([None if i % 11 == 0 else f"text-{i % 5000:05d}" for i in range(rows)])
    huge = pa.array([b"x" * (9 << 20), None, b"y"], pa.binary())
    for column, arrow_type in ((longs, "int64"), (texts, "large_string"), (huge, "large_binary")):
        data = write(pa.table({"c": column}), use_dictionary=dictionary, row_group_size=rows)
        requested: list[int] = []

        def allocate(size: int, requested: list[int] = requested) -> pa.Buffer:
            requested.append(size)
            return pa.allocate_buffer(size)

        results = [
            pa.array(result)
            for chunk, count, dec, _ in chunks(data)
            for result in native.decode_parquet_column(chunk, count, arrow_type, decompress=dec, allocate=allocate)
        ]
        for array in results:
            array.validate(full=True)
        assert pa.chunked_array(results).equals(expected(data))
        if arrow_type == "large_binary":
            # One value of 9 MiB: its array's data buffer is as large as it needs.
            assert max(requested) >= 9 << 20
        else:
            assert len(results) > 1
            assert max(requested) <= (8 << 20) + 16


def test_small_chunks_allocate_what_they_hold() -> None:
    data = write(column_of("string", ["a", "bb", None] * 3))
    requested: list[int] = []

    def allocate(size: int) -> pa.Buffer:
        requested.append(size)
        return pa.allocate_buffer(size)

    chunk, count, dec, level = chunks(data)[0]
    native.decode_parquet_column(chunk, count, "large_string", decompress=dec, allocate=allocate)
    assert sum(requested) < 1024


def test_empty_value_sections_are_not_decompressed(impl: Any) -> None:
    """v2 pages of nulls only: no value bytes, and codecs refuse empty input (snappy, zstd, brotli)."""
    data = write(column_of("string", [None] * 700), data_page_version="2.0", compression="snappy", data_page_size=64)
    chunk, count, dec, level = chunks(data)[0]
    sizes: list[int] = []

    def decompress(page: memoryview, size: int) -> Any:
        sizes.append(size)
        if size == 0:
            raise AssertionError("asked to decompress an empty value section")
        return dec(page, size)

    results = impl.decode_parquet_column(
        chunk, count, "large_string", max_definition_level=level, decompress=decompress
    )
    assert pa.chunked_array([pa.array(r) for r in results]).equals(expected(data))
    assert 0 not in sizes


def zstd_into(page: memoryview, size: int, out: memoryview) -> int:
    """A ``decompress_into`` for zstd pages: the frame decompressed straight into ``out``."""
    import zstandard

    with zstandard.ZstdDecompressor().stream_reader(page) as reader:
        written = 0
        while written < size and (got := reader.readinto(out[written:])):
            written += got
        return written


def zstd_pages(impl: Any, how: str) -> dict[str, Any]:
    """The keywords that have zstd pages decompressed ``how``: by the callable above, or by the kernel
    itself (``zstd=True``: libzstd, which a machine without one lacks)."""
    if how == "decompress_into":
        return {"decompress_into": zstd_into}
    if impl.zstd_library_version() is None:
        pytest.skip("no libzstd to load here: zstd pages go to decompress_into")
    return {"zstd": True}


ZSTD_PAGES = pytest.mark.parametrize("how", ["decompress_into", "zstd"])


@pytest.mark.parametrize("type_name", ["int32", "int64", "float", "double", "date32[day]", "string"])
@pytest.mark.parametrize("nulls", [True, False], ids=["nulls", "required"])
@pytest.mark.parametrize("page_version", ["1.0", "2.0"])
@ZSTD_PAGES
def test_pages_decompressed_into_the_output_decode_as_pyarrow_reads_them(
    impl: Any, type_name: str, nulls: bool, page_version: str, how: str
) -> None:
    # Pages of about 8 KiB, most of them after an array's first page: decompressed in place when
    # they are PLAIN, fixed-width and without nulls; the others through the kernel's scratch buffer.
    values = many(type_name, 12_000, seed=11)
    if not nulls:
        values = [v for v in values if v is not None]
    data = write(
        column_of(type_name, values, nullable=nulls),
        use_dictionary=False,
        data_page_version=page_version,
        data_page_size=8192,
        compression="zstd",
    )
    arrays = [
        pa.array(result)
        for chunk, count, _, level in chunks(data)
        for result in impl.decode_parquet_column(
            chunk, count, LARGE[type_name][0], max_definition_level=level, **zstd_pages(impl, how)
        )
    ]
    assert same(pa.chunked_array(arrays, arrays[0].type), expected(data))


def _thrift_i32_fields(fields: list[tuple[int, int]]) -> bytes:
    """A Thrift compact struct of i32 fields (id, value), ascending ids."""
    out, last = bytearray(), 0
    for field_id, value in fields:
        out.append(((field_id - last) << 4) | 5)
        zigzag = (value << 1) ^ (value >> 31)
        while zigzag >= 0x80:
            out.append(zigzag & 0x7F | 0x80)
            zigzag >>= 7
        out.append(zigzag)
        last = field_id
    return bytes(out)


def _v1_page(values: list[int | None], bit_packed_levels: bool, frame: Any = None) -> bytes:
    """A zstd-compressed PLAIN int64 data page v1 of an optional column, its definition levels one
    RLE run or bit-packed groups of 8; ``frame(body)``, when given, is its compressed bytes instead."""
    import zstandard

    defined = [v is not None for v in values]
    if bit_packed_levels:
        assert len(values) % 8 == 0
        groups = len(values) // 8
        levels = bytes([groups << 1 | 1]) + bytes(
            sum(1 << bit for bit in range(8) if defined[g * 8 + bit]) for g in range(groups)
        )
    else:
        assert all(defined) and len(values) < 64
        levels = bytes([len(values) << 1, 1])
    body = (
        len(levels).to_bytes(4, "little")
        + levels
        + b"".join(v.to_bytes(8, "little", signed=True) for v in values if v is not None)
    )
    compressed = zstandard.ZstdCompressor().compress(body) if frame is None else frame(body)
    data_page_header = _thrift_i32_fields([(1, len(values)), (2, 0), (3, 3), (4, 3)]) + b"\x00"
    header = _thrift_i32_fields([(1, 0), (2, len(body)), (3, len(compressed))]) + b"\x2c" + data_page_header + b"\x00"
    return header + compressed


@ZSTD_PAGES
def test_pages_whose_levels_are_not_one_run_are_decoded_from_a_copy(impl: Any, how: str) -> None:
    # The second page's levels are bit-packed, and the third's hold a null, yet each page is as long
    # as a page without nulls whose levels are one run: its values cannot stay where they landed.
    first = list(range(40))
    second = list(range(100, 108))
    third: list[int | None] = [*range(200, 280)]
    third[37] = None
    chunk = _v1_page(first, False) + _v1_page(second, True) + _v1_page(third, True)
    results = impl.decode_parquet_column(chunk, 128, "int64", **zstd_pages(impl, how))
    assert pa.chunked_array([pa.array(r) for r in results]).to_pylist() == first + second + third


def test_zstd_in_the_kernel_names_the_page_it_cannot_decompress(impl: Any) -> None:
    zstd_pages(impl, "zstd")  # (skips where there is no libzstd)
    import zstandard

    assert impl.zstd_library_version() == native.zstd_library_version()
    assert re.fullmatch(r"\d+\.\d+\.\d+", impl.zstd_library_version())
    pages = [_v1_page(list(range(k * 40, k * 40 + 40)), False) for k in range(3)]

    def compress(body: bytes) -> bytes:
        return zstandard.ZstdCompressor().compress(body)

    # Bad frames on the first page (decoded from the scratch buffer) and on the third (in place).
    for page in (0, 2):
        for frame, message in (
            (lambda body: compress(body)[:-6], f"page {page}: zstd: Src size is incorrect"),
            (lambda body: b"\x00" * 8 + compress(body), f"page {page}: zstd: Unknown frame descriptor"),
            (lambda body: compress(body[:-8]), f"page {page} decompressed to 318 bytes, its header says 326"),
            (lambda body: compress(body + bytes(8)), f"page {page}: zstd: Destination buffer is too small"),
        ):
            bad = list(pages)
            bad[page] = _v1_page(list(range(page * 40, page * 40 + 40)), False, frame=frame)
            with pytest.raises(ArrowKernelError, match=f"^decode_parquet_column\\(\\): {message}$"):
                impl.decode_parquet_column(b"".join(bad), 120, "int64", zstd=True)
    results = impl.decode_parquet_column(b"".join(pages), 120, "int64", zstd=True)
    assert pa.chunked_array([pa.array(r) for r in results]).to_pylist() == list(range(120))
    # A dictionary page's frame, and a string page's, not zstd at all.
    for type_name, dictionary in (("string", True), ("string", False)):
        data = write(column_of(type_name, many(type_name, 3000, seed=5)), use_dictionary=dictionary, compression="zstd")
        ((chunk, count, _, level),) = chunks(data)
        magic = b"\x28\xb5\x2f\xfd"
        broken = chunk.replace(magic, b"\x00\x00\x00\x00", 1)
        unknown_frame = r"^decode_parquet_column\(\): page 0: zstd: Unknown frame descriptor$"
        with pytest.raises(ArrowKernelError, match=unknown_frame):
            impl.decode_parquet_column(broken, count, "large_string", max_definition_level=level, zstd=True)
    for wrong in ({"decompress_into": zstd_into}, {"decompress": lambda page, size: page}):
        with pytest.raises(ArrowKernelError, match="decompress and decompress_into must be None"):
            impl.decode_parquet_column(b"".join(pages), 120, "int64", zstd=True, **wrong)
    # Arguments are checked before zstd's: the same message from both.
    with pytest.raises(ArrowKernelError, match="arrow_type must be one of"):
        impl.decode_parquet_column(b"".join(pages), 120, "int8", zstd=True, decompress_into=zstd_into)


def test_zstd_true_without_a_libzstd_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    # (The reference's loader stands in for a machine without libzstd; the native message is the same.)
    monkeypatch.setattr(reference, "_zstd_library", lambda: None)
    assert reference.zstd_library_version() is None
    with pytest.raises(ArrowKernelError, match=r"zstd=True needs libzstd, and none could be loaded"):
        reference.decode_parquet_column(_v1_page([1, 2], False), 2, "int64", zstd=True)


def test_decompress_into_errors_name_the_page_or_come_through(impl: Any) -> None:
    data = write(column_of("int64", list(range(5000))), use_dictionary=False, compression="zstd")
    chunk, count, _, level = chunks(data)[0]
    with pytest.raises(ArrowKernelError, match="page 0 decompressed to 3 bytes"):
        impl.decode_parquet_column(chunk, count, "int64", decompress_into=lambda page, size, out: 3)
    with pytest.raises(TypeError):
        impl.decode_parquet_column(chunk, count, "int64", decompress_into=lambda page, size, out: None)
    with pytest.raises(ValueError, match="no"):

        def refuse(page: memoryview, size: int, out: memoryview) -> int:
            raise ValueError("no")

        impl.decode_parquet_column(chunk, count, "int64", decompress_into=refuse)
    # A callable that keeps the output's memory beyond the call is refused, not left writing into it.
    kept: list[Any] = []

    def keep(page: memoryview, size: int, out: memoryview) -> int:
        kept.append(pa.py_buffer(out))
        return zstd_into(page, size, out)

    with pytest.raises(BufferError):
        impl.decode_parquet_column(chunk, count, "int64", decompress_into=keep)
    # The memory kept stays the callable's: never freed (the sanitized run reports a use after free).
    assert len(bytes(kept[0])) == kept[0].size > 0
    with pytest.raises(ArrowKernelError, match="decompress_into None or callables"):
        impl.decode_parquet_column(chunk, count, "int64", decompress_into=3)


@pytest.mark.parametrize("bit_width", range(1, 21))
def test_dictionary_indices_of_every_bit_width_unpack_alike(impl: Any, bit_width: int) -> None:
    # A dictionary of 2**(w-1) + 1 values needs indices of w bits; values in a shuffled order, some
    # nulls, so that bit-packed runs start and end anywhere in a block of values.
    if impl is reference and bit_width > 14:
        pytest.skip("the pure-Python reference takes seconds for dictionaries this large")
    distinct = 2 ** (bit_width - 1) + 1
    rng = random.Random(bit_width)
    values: list[int | None] = [rng.randrange(distinct) for _ in range(distinct + 3000)]
    values[:distinct] = range(distinct)  # every entry used: the dictionary has them all
    rng.shuffle(values)
    for k in range(0, len(values), 97):
        values[k] = None
    data = write(column_of("int64", values), dictionary_pagesize_limit=64 << 20, data_page_size=4096)
    assert "RLE_DICTIONARY" in pq.ParquetFile(io.BytesIO(data)).metadata.row_group(0).column(0).encodings
    assert decoded(impl, data, "int64").equals(expected(data))


@ZSTD_PAGES
def test_pages_decompressed_in_place_fill_arrays_and_start_new_ones(impl: Any, how: str) -> None:
    # 1.3 million 8-byte values: more than one output array of 8 MiB, so a page in place may have
    # to close the open array and start the next.
    values = list(range(1_300_000))
    data = write(column_of("int64", values), use_dictionary=False, compression="zstd", row_group_size=len(values))
    ((chunk, count, _, level),) = chunks(data)
    results = impl.decode_parquet_column(chunk, count, "int64", max_definition_level=level, **zstd_pages(impl, how))
    arrays = [pa.array(r) for r in results]
    assert len(arrays) > 1 or impl is reference
    assert pa.chunked_array(arrays).equals(expected(data))


def test_a_failure_decompressing_in_place_comes_through_and_leaves_nothing_behind(impl: Any) -> None:
    data = write(column_of("int64", list(range(50_000))), use_dictionary=False, compression="zstd")
    ((chunk, count, _, level),) = chunks(data)
    calls = []

    def fail_third(page: memoryview, size: int, out: memoryview) -> int:
        calls.append(size)
        if len(calls) == 3:  # a page after the array's first: decompressed in place
            raise ValueError("third page")
        return zstd_into(page, size, out)

    with pytest.raises(ValueError, match="third page"):
        impl.decode_parquet_column(chunk, count, "int64", max_definition_level=level, decompress_into=fail_third)
    # A callable keeping the output's memory on that page: refused, the memory never freed.
    kept: list[Any] = []
    seen = []

    def keep_third(page: memoryview, size: int, out: memoryview) -> int:
        seen.append(size)
        if len(seen) == 3:
            kept.append(pa.py_buffer(out))
        return zstd_into(page, size, out)

    with pytest.raises(BufferError):
        impl.decode_parquet_column(chunk, count, "int64", max_definition_level=level, decompress_into=keep_third)
    assert len(bytes(kept[-1])) == kept[-1].size > 0
    # And the same chunk decodes whole afterwards.
    results = impl.decode_parquet_column(chunk, count, "int64", max_definition_level=level, decompress_into=zstd_into)
    assert pa.chunked_array([pa.array(r) for r in results]).equals(expected(data))


def _dictionary_page(entries: list[int]) -> bytes:
    body = b"".join(v.to_bytes(8, "little", signed=True) for v in entries)
    dictionary_header = _thrift_i32_fields([(1, len(entries)), (2, 0)]) + b"\x00"
    return _thrift_i32_fields([(1, 2), (2, len(body)), (3, len(body))]) + b"\x4c" + dictionary_header + b"\x00" + body


def _indices_page(indices: list[int], bit_width: int) -> bytes:
    """An uncompressed RLE_DICTIONARY data page v1 of a required column: one bit-packed run (its last
    group of eight padded with zeros when the page's values are not a multiple of eight)."""
    groups = (len(indices) + 7) // 8
    packed = sum(index << (k * bit_width) for k, index in enumerate(indices))
    header, varint = groups << 1 | 1, bytearray()  # the run's header, a ULEB128 varint
    while header >= 0x80:
        varint.append(header & 0x7F | 0x80)
        header >>= 7
    varint.append(header)
    run = bytes(varint) + packed.to_bytes(groups * bit_width, "little")
    body = bytes([bit_width]) + run
    data_page_header = _thrift_i32_fields([(1, len(indices)), (2, 8), (3, 3), (4, 3)]) + b"\x00"
    return _thrift_i32_fields([(1, 0), (2, len(body)), (3, len(body))]) + b"\x2c" + data_page_header + b"\x00" + body


@pytest.mark.parametrize("bit_width", range(21, 33))
def test_indices_of_the_widest_bit_widths_unpack_alike(impl: Any, bit_width: int) -> None:
    # Wider than any dictionary a test can write (2**20 entries and more): indices of few values,
    # declared that wide, in a page built by hand.
    entries = [7, -3, 2**40]
    rng = random.Random(bit_width)
    indices = [rng.randrange(len(entries)) for _ in range(96)]
    chunk = _dictionary_page(entries) + _indices_page(indices, bit_width)
    results = impl.decode_parquet_column(chunk, len(indices), "int64", max_definition_level=0)
    assert pa.chunked_array([pa.array(r) for r in results]).to_pylist() == [entries[i] for i in indices]


def selections(count: int, seed: int) -> dict[str, list[bool]]:
    """Row selections of a chunk: scattered, none, all, and runs (whole pages kept or skipped)."""
    rng = random.Random(seed)
    return {
        "scattered": [rng.random() < 0.1 for _ in range(count)],
        "none": [False] * count,
        "all": [True] * count,
        "runs": [(row // 300) % 3 == 1 or row == count - 1 for row in range(count)],
    }


def selection_bits(keep: list[bool] | list[int]) -> bytes:
    bits = bytearray((len(keep) + 7) // 8)
    for row, kept in enumerate(keep):
        if kept:
            bits[row >> 3] |= 1 << (row & 7)
    return bytes(bits)


@pytest.mark.parametrize("type_name", sorted(SAMPLES))
@pytest.mark.parametrize("dictionary", [True, False], ids=["dictionary", "plain"])
@pytest.mark.parametrize("page_version", ["1.0", "2.0"])
@pytest.mark.parametrize("how", ["decompress", "decompress_into", "zstd"])
def test_a_selection_keeps_only_its_rows(
    impl: Any, type_name: str, dictionary: bool, page_version: str, how: str
) -> None:
    values = many(type_name, 2500, seed=len(type_name) + 7)
    if type_name != "string" and type_name != "binary" and not dictionary:
        values[:1200] = [values[1] if values[1] is not None else values[2]] * 1200  # pages without nulls
    for nullable in (True, False):
        column = [v for v in values if v is not None] if not nullable else values
        data = write(
            column_of(type_name, column, nullable),
            use_dictionary=dictionary,
            data_page_version=page_version,
            data_page_size=512,
            compression="zstd",
        )
        ((chunk, count, dec, level),) = chunks(data)
        kwargs = zstd_pages(impl, how) if how != "decompress" else {"decompress": dec}
        whole = expected(data)
        for name, keep in selections(count, seed=count).items():
            results = impl.decode_parquet_column(
                chunk, count, LARGE[type_name][0], max_definition_level=level, selection=selection_bits(keep), **kwargs
            )
            arrays = [pa.array(result) for result in results]
            for array in arrays:
                array.validate(full=True)
            ours = pa.chunked_array(arrays, type=whole.type)
            assert same(ours, whole.filter(pa.array(keep))), (name, nullable)


def test_pages_without_a_kept_row_are_not_decompressed(impl: Any) -> None:
    data = write(column_of("int64", list(range(10_000)), nullable=False), data_page_size=4096, compression="zstd")
    ((chunk, count, dec, level),) = chunks(data)
    sizes: list[int] = []

    def counting(page: memoryview, size: int) -> Any:
        sizes.append(size)
        return dec(page, size)

    keep = [row == 7 for row in range(count)]
    result = impl.decode_parquet_column(
        chunk, count, "int64", max_definition_level=level, decompress=counting, selection=selection_bits(keep)
    )
    assert pa.chunked_array([pa.array(r) for r in result]).to_pylist() == [7]
    assert len(sizes) == 2  # the dictionary page and the first data page, of many


def _string_dictionary_page(entries: list[bytes]) -> bytes:
    body = b"".join(len(v).to_bytes(4, "little") + v for v in entries)
    dictionary_header = _thrift_i32_fields([(1, len(entries)), (2, 0)]) + b"\x00"
    return _thrift_i32_fields([(1, 2), (2, len(body)), (3, len(body))]) + b"\x4c" + dictionary_header + b"\x00" + body


@pytest.mark.parametrize("kept_rows", [[0, 9], [5], []], ids=["bad-index-not-kept", "bad-index-kept", "none-kept"])
def test_a_selection_still_checks_every_index_of_a_page_it_reads(impl: Any, kept_rows: list[int]) -> None:
    # Row 5's index is past the two-entry dictionary. A page with any row kept is read whole, so the
    # bad index is found whether its row is kept or not; a page with none kept is never read.
    indices = [0, 1, 1, 0, 1, 2, 0, 1, 1, 1, 0, 0, 1, 0, 1, 1]
    chunk = _string_dictionary_page([b"left", b"right"]) + _indices_page(indices, 2)
    keep = selection_bits([row in kept_rows for row in range(len(indices))])
    if not kept_rows:
        assert impl.decode_parquet_column(chunk, len(indices), "large_string", max_definition_level=0, selection=keep)
        return
    with pytest.raises(ArrowKernelError, match="page 1: index past the dictionary's end"):
        impl.decode_parquet_column(chunk, len(indices), "large_string", max_definition_level=0, selection=keep)


def test_a_bad_index_in_a_row_not_kept_is_found_after_earlier_pages_kept_rows(impl: Any) -> None:
    # The first page's kept rows open an output array with room for the second page's: the second
    # page's indices are then checked before its kept rows are copied, the unkept row's too.
    good = [0, 1, 1, 0, 1, 0, 0, 1, 1, 1, 0, 0, 1, 0, 1, 1]
    bad = [1, 0, 0, 1, 0, 3, 1, 0, 0, 1, 1, 0, 1, 0, 0, 1]
    chunk = _string_dictionary_page([b"left", b"right"]) + _indices_page(good, 2) + _indices_page(bad, 2)
    keep = selection_bits([row < 4 or row == 16 + 9 for row in range(32)])
    with pytest.raises(ArrowKernelError, match="page 2: index past the dictionary's end"):
        impl.decode_parquet_column(chunk, 32, "large_string", max_definition_level=0, selection=keep)
    fine = _string_dictionary_page([b"left", b"right"]) + _indices_page(good, 2) + _indices_page(good, 2)
    results = impl.decode_parquet_column(fine, 32, "large_string", max_definition_level=0, selection=keep)
    names = ["left", "right"]
    assert pa.chunked_array([pa.array(r) for r in results]).to_pylist() == [names[i] for i in good[:4] + [good[9]]]


@pytest.mark.parametrize("offset", [0, 3, 61])
def test_a_selection_of_dictionary_strings_keeps_its_rows_from_any_first_row(impl: Any, offset: int) -> None:
    # Pages of any number of rows: their blocks start at any bit of the selection, not only at a
    # byte's first.
    rng = random.Random(offset)
    entries = [f"entry-{k}".encode() * (1 + k % 3) for k in range(5)]
    pages = [[rng.randrange(len(entries)) for _ in range(count)] for count in (offset + 5, 1001, 700, 13)]
    chunk = _string_dictionary_page(entries) + b"".join(_indices_page(page, 3) for page in pages)
    indices = [index for page in pages for index in page]
    keep = [row >= offset and rng.random() < 0.3 for row in range(len(indices))]
    results = impl.decode_parquet_column(
        chunk, len(indices), "large_string", max_definition_level=0, selection=selection_bits(keep)
    )
    got = pa.chunked_array([pa.array(r) for r in results], type=pa.large_string()).to_pylist()
    assert got == [entries[i].decode() for i, kept in zip(indices, keep, strict=True) if kept]


def _plain_int64_page(values: list[int]) -> bytes:
    """An uncompressed PLAIN data page v1 of a required int64 column."""
    body = b"".join(v.to_bytes(8, "little", signed=True) for v in values)
    data_page_header = _thrift_i32_fields([(1, len(values)), (2, 0), (3, 3), (4, 3)]) + b"\x00"
    return _thrift_i32_fields([(1, 0), (2, len(body)), (3, len(body))]) + b"\x2c" + data_page_header + b"\x00" + body


@pytest.mark.parametrize("offset", [0, 5, 67])
def test_a_selection_of_plain_numbers_keeps_its_rows_from_any_first_row(impl: Any, offset: int) -> None:
    rng = random.Random(offset)
    pages = [[rng.randrange(-(2**62), 2**62) for _ in range(count)] for count in (offset + 3, 1500, 61, 1)]
    chunk = b"".join(_plain_int64_page(page) for page in pages)
    values = [value for page in pages for value in page]
    keep = [row >= offset and rng.random() < 0.2 for row in range(len(values))]
    results = impl.decode_parquet_column(
        chunk, len(values), "int64", max_definition_level=0, selection=selection_bits(keep)
    )
    got = pa.chunked_array([pa.array(r) for r in results], type=pa.int64()).to_pylist()
    assert got == [value for value, kept in zip(values, keep, strict=True) if kept]


@pytest.mark.parametrize("selected", [False, True], ids=["whole", "selected"])
def test_plain_strings_of_every_length_up_to_past_32_bytes_decode_whole(impl: Any, selected: bool) -> None:
    # Short values are moved 16 or 32 bytes at a time where the page has that many bytes left;
    # lengths on either side of 16 and 32, at pages' ends too, keep exactly their bytes.
    rng = random.Random(16)
    values = ["".join(rng.choice("abcdéf") for _ in range(rng.randrange(41))) for _ in range(3000)]
    data = write(column_of("string", values, nullable=False), use_dictionary=False, data_page_size=700)
    ((chunk, count, dec, level),) = chunks(data)
    keep = [rng.random() < 0.5 for _ in range(count)] if selected else [True] * count
    results = impl.decode_parquet_column(
        chunk, count, "large_string", max_definition_level=level, decompress=dec, selection=selection_bits(keep)
    )
    got = pa.chunked_array([pa.array(r) for r in results], type=pa.large_string()).to_pylist()
    assert got == [value for value, kept in zip(values, keep, strict=True) if kept]


def test_a_selection_too_short_is_refused(impl: Any) -> None:
    ((chunk, count, dec, level),) = chunks(write(column_of("int64", list(range(100)))))
    with pytest.raises(ArrowKernelError, match="selection must hold a bit for each of the 100 values"):
        impl.decode_parquet_column(chunk, count, "int64", decompress=dec, selection=b"\xff" * 12)


def test_strings_not_selected_are_not_checked_for_utf8(impl: Any) -> None:
    values = [b"ok", b"\xff\xfe", b"fine"]
    data = write(pa.table({"c": pa.array(values, pa.binary())}), use_dictionary=False)
    ((chunk, count, dec, level),) = chunks(data)
    result = impl.decode_parquet_column(
        chunk, count, "large_string", max_definition_level=level, decompress=dec, selection=selection_bits([1, 0, 1])
    )
    assert pa.chunked_array([pa.array(r) for r in result]).to_pylist() == ["ok", "fine"]
    with pytest.raises(ArrowKernelError, match="not valid UTF-8"):
        impl.decode_parquet_column(
            chunk, count, "large_string", max_definition_level=level, decompress=dec, selection=bytes([0b010])
        )
