"""The native kernel's decode of flat columns inside polars' reads: which reads use it, that they
equal pyiceberg's and the read without it, and that what it refuses is decoded by polars instead."""

from __future__ import annotations

import datetime as dt
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from pyiceberg.catalog import Catalog
from pyiceberg.schema import Schema
from pyiceberg.types import (
    BinaryType,
    BooleanType,
    DateType,
    DoubleType,
    FloatType,
    IntegerType,
    LongType,
    NestedField,
    StringType,
    TimestampType,
    TimestamptzType,
    TimeType,
)

import airflow_provider_mlp.fastdata.native_decode as native_decode
import airflow_provider_mlp.fastdata.polars_decode as polars_decode
import airflow_provider_mlp.kernels as kernels
from airflow_provider_mlp.fastdata import Table
from tests.unit.fastdata.helpers import add_position_deletes, assert_same

SCHEMA = Schema(
    NestedField(1, "id", LongType(), required=False),
    NestedField(2, "i", IntegerType(), required=False),
    NestedField(3, "x", DoubleType(), required=False),
    NestedField(4, "f", FloatType(), required=False),
    NestedField(5, "s", StringType(), required=False),
    NestedField(6, "b", BinaryType(), required=False),
    NestedField(7, "d", DateType(), required=False),
    NestedField(8, "flag", BooleanType(), required=False),
    NestedField(9, "ts", TimestamptzType(), required=False),
    NestedField(10, "local", TimestampType(), required=False),
)
# The columns the kernel decodes, by the Arrow type it decodes them to (timestamps and times as
# their integers, viewed as their types; booleans are left to polars).
NATIVE = {
    "id": "int64",
    "i": "int32",
    "x": "float64",
    "f": "float32",
    "s": "large_string",
    "b": "large_binary",
    "d": "date32",
    "ts": "int64",
    "local": "int64",
}


def chunks_of_each_type(per_column: int) -> Counter[str]:
    """The kernel's calls, by Arrow type, when each native column has ``per_column`` chunks."""
    return Counter({kind: per_column * count for kind, count in Counter(NATIVE.values()).items()})


def rows(start: int, n: int) -> pa.Table:
    base = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)
    ks = range(start, start + n)
    return pa.table(
        {
            "id": pa.array(ks, pa.int64()),
            "i": pa.array([None if k % 5 == 0 else k % 7 for k in ks], pa.int32()),
            "x": pa.array([None if k % 6 == 0 else k / 3 for k in ks], pa.float64()),
            "f": pa.array([k / 4 for k in ks], pa.float32()),
            "s": pa.array([None if k % 4 == 0 else ["a", "ünï", "", "longer text"][k % 4] + str(k % 3) for k in ks]),
            "b": pa.array([None if k % 9 == 0 else bytes([k % 256]) * (k % 5) for k in ks], pa.binary()),
            "d": pa.array([None if k % 8 == 0 else dt.date(2020, 1, 1 + k % 28) for k in ks], pa.date32()),
            "flag": pa.array([None if k % 3 == 0 else k % 2 == 0 for k in ks]),
            "ts": pa.array([base + dt.timedelta(hours=k) for k in ks], pa.timestamp("us", tz="UTC")),
            "local": pa.array(
                [None if k % 7 == 0 else dt.datetime(2023, 5, 1) + dt.timedelta(seconds=k) for k in ks],
                pa.timestamp("us"),
            ),
        }
    )


def write_file(iceberg: Any, name: str, table: pa.Table, **options: Any) -> str:
    path = f"{iceberg.location()}/data/{name}.parquet"
    local = Path(path.removeprefix("file://"))
    local.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, local, **options)
    return path


@pytest.fixture
def flat(catalog: Catalog) -> tuple[Table, Any]:
    """Three files: one by pyiceberg, one with several row groups and pages, one of v2 data pages."""
    catalog.create_namespace_if_not_exists("nd")
    iceberg = catalog.create_table("nd.flat", schema=SCHEMA)
    arrow_schema = iceberg.schema().as_arrow()
    iceberg.append(rows(0, 300).cast(arrow_schema))
    paths = [
        write_file(iceberg, "groups", rows(300, 2000).cast(arrow_schema), row_group_size=700, data_page_size=512),
        write_file(iceberg, "v2", rows(2300, 500).cast(arrow_schema), data_page_version="2.0", compression="snappy"),
    ]
    iceberg.add_files(paths)
    return Table("nd.flat", catalog=catalog), iceberg


@pytest.fixture
def kernel_calls(monkeypatch: pytest.MonkeyPatch) -> Counter[str]:
    """How many chunks the kernel decoded, by Arrow type."""
    calls: Counter[str] = Counter()
    real = kernels.decode_parquet_column

    def counting(chunk: Any, num_values: int, arrow_type: str, **kwargs: Any) -> Any:
        calls[arrow_type] += 1
        return real(chunk, num_values, arrow_type, **kwargs)

    monkeypatch.setattr(kernels, "decode_parquet_column", counting)
    return calls


@pytest.fixture
def polars_reads(monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    """The columns of each polars decode."""
    reads: list[list[str]] = []
    real = polars_decode.read_rows

    def recording(opened: Any, first: int, last: int, columns: Any = None) -> pa.Table:
        reads.append(list(opened.columns if columns is None else columns))
        return real(opened, first, last, columns)

    monkeypatch.setattr(polars_decode, "read_rows", recording)
    return reads


def without_kernel(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(native_decode, "usable", lambda opened, row_groups: False)
    monkeypatch.setattr(native_decode, "selectable", lambda opened, row_groups: False)


def test_flat_columns_are_decoded_by_the_kernel_and_the_rest_by_polars(
    flat: tuple[Table, Any], kernel_calls: Counter[str], polars_reads: list[list[str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    table, iceberg = flat
    ours = table.read().to_arrow()
    assert_same(ours, iceberg.scan().to_arrow(), "id")
    # Every native column of every row group: 1 + 3 + 1 of them.
    assert kernel_calls == chunks_of_each_type(5)
    assert polars_reads == [["flag"]] * 3
    without_kernel(monkeypatch)
    assert ours.equals(table.read().to_arrow())


def test_a_projection_of_native_columns_never_calls_polars(
    flat: tuple[Table, Any], kernel_calls: Counter[str], polars_reads: list[list[str]]
) -> None:
    table, iceberg = flat
    ours = table.read(columns=["s", "id"]).to_arrow()
    assert_same(ours, iceberg.scan(selected_fields=("s", "id")).to_arrow(), "id")
    assert kernel_calls == Counter({"large_string": 5, "int64": 5})
    assert polars_reads == []
    batches = list(table.read_batches(columns=["s", "id"], batch_rows=256))
    assert pa.Table.from_batches(batches).equals(ours.combine_chunks())


def test_filters_deletes_and_views_keep_polars(
    flat: tuple[Table, Any], kernel_calls: Counter[str], polars_reads: list[list[str]]
) -> None:
    table, iceberg = flat
    assert_same(table.read(row_filter="i > 3").to_arrow(), iceberg.scan(row_filter="i > 3").to_arrow(), "id")
    views = table.read(string_view=True).to_arrow()
    assert views.schema.field("s").type == pa.string_view()
    assert kernel_calls == Counter()
    # Deletes in one file: that file's row groups go to polars, the other files' to the kernel.
    data_file = next(task.file.file_path for task in iceberg.scan().plan_files() if "groups" in task.file.file_path)
    add_position_deletes(iceberg, data_file, [0, 5, 1000])
    iceberg = iceberg.refresh()
    assert_same(Table("nd.flat", catalog=iceberg.catalog).read().to_arrow(), iceberg.scan().to_arrow(), "id")
    assert kernel_calls == chunks_of_each_type(2)


def test_chunks_the_kernel_refuses_are_decoded_by_polars(
    catalog: Catalog, kernel_calls: Counter[str], polars_reads: list[list[str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    catalog.create_namespace_if_not_exists("nd")
    iceberg = catalog.create_table("nd.refused", schema=SCHEMA)
    arrow_schema = iceberg.schema().as_arrow()
    delta = write_file(
        iceberg,
        "delta",
        rows(0, 400).cast(arrow_schema),
        use_dictionary=False,
        column_encoding={"s": "DELTA_BYTE_ARRAY", "id": "DELTA_BINARY_PACKED"},
    )
    lz4 = write_file(iceberg, "lz4", rows(400, 100).cast(arrow_schema), compression="lz4")
    iceberg.add_files([delta, lz4])
    table = Table("nd.refused", catalog=catalog)
    ours = table.read().to_arrow()
    assert_same(ours, iceberg.scan().to_arrow(), "id")
    # The DELTA file: the kernel was tried (and refused a chunk), then polars decoded the whole run;
    # the LZ4 one (a framing pyarrow's metadata does not tell apart) was never given to the kernel.
    assert kernel_calls
    assert sorted(map(sorted, polars_reads)) == [sorted(SCHEMA.column_names)] * 2
    without_kernel(monkeypatch)
    assert ours.equals(table.read().to_arrow())


def test_files_polars_is_not_given_still_have_their_flat_columns_decoded_by_the_kernel(
    catalog: Catalog, kernel_calls: Counter[str], polars_reads: list[list[str]]
) -> None:
    import decimal

    from pyiceberg.types import DecimalType

    catalog.create_namespace_if_not_exists("nd")
    schema = Schema(
        NestedField(1, "id", LongType(), required=False),
        NestedField(2, "s", StringType(), required=False),
        NestedField(3, "amount", DecimalType(9, 2), required=False),
    )
    iceberg = catalog.create_table("nd.decimals", schema=schema)
    data = pa.table(
        {
            "id": pa.array(range(500), pa.int64()),
            "s": pa.array([None if k % 3 == 0 else f"s{k % 7}" for k in range(500)]),
            "amount": pa.array([decimal.Decimal(k) / 4 for k in range(500)], pa.decimal128(9, 2)),
        }
    )
    iceberg.append(data.cast(iceberg.schema().as_arrow()))
    table = Table("nd.decimals", catalog=catalog)
    assert_same(table.read().to_arrow(), iceberg.scan().to_arrow(), "id")
    # Decimals are Arrow's (polars is not given the file); id and s the kernel's.
    assert kernel_calls == Counter({"int64": 1, "large_string": 1})
    assert polars_reads == []
    # Dictionary columns stay Arrow's, as dictionaries.
    kernel_calls.clear()
    ours = table.read(dictionary_columns=["s"]).to_arrow()
    assert pa.types.is_dictionary(ours.schema.field("s").type)
    assert kernel_calls == Counter({"int64": 1})


def test_pages_of_every_codec_decode_in_parallel_threads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """pyarrow's gzip Codec keeps one zlib stream: each thread must have its own (as zstandard's
    decompressor has, one per thread; the kernel's libzstd context is one per call)."""
    from concurrent.futures import ThreadPoolExecutor

    zstd_ways = [False] + ([True] if kernels.zstd_library_version() is not None else [])
    for codec, zstd_in_kernel in [("gzip", False), ("snappy", False), ("brotli", False)] + [
        ("zstd", w) for w in zstd_ways
    ]:
        monkeypatch.setattr(native_decode, "zstd_in_kernel", lambda way=zstd_in_kernel: way)
        path = tmp_path / f"{codec}.parquet"
        pq.write_table(rows(0, 20_000), path, compression=codec, row_group_size=2_500, data_page_size=4096)
        metadata = pq.ParquetFile(path).metadata
        column = native_decode.native_columns(metadata, metadata.schema.to_arrow_schema(), ["s"])["s"]
        source = pa.memory_map(str(path)).read_buffer()

        def decode(rg: int, source: Any = source, metadata: Any = metadata, column: Any = column) -> pa.Array:
            arrays = native_decode.decode_chunk(source, metadata.row_group(rg).column(column.leaf), column)
            return pa.chunked_array(arrays)

        with ThreadPoolExecutor(8) as pool:
            for _ in range(3):
                got = list(pool.map(decode, range(metadata.num_row_groups)))
        want = pq.read_table(path, columns=["s"]).column(0).cast(pa.large_string())
        assert pa.chunked_array([c for g in got for c in g.chunks]).equals(want), codec


def test_chunks_of_the_wrong_length_and_failed_tasks_fall_back_cleanly(
    flat: tuple[Table, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    import threading
    import time

    table, iceberg = flat
    theirs = iceberg.scan().to_arrow()
    real = native_decode.decode_chunk

    # A chunk one value short (metadata disagreeing with the pages): the run falls back.
    def short(source: Any, chunk: Any, column: Any) -> list[pa.Array]:
        arrays = real(source, chunk, column)
        return [*arrays[:-1], arrays[-1].slice(1)]

    monkeypatch.setattr(native_decode, "decode_chunk", short)
    assert_same(table.read().to_arrow(), theirs, "id")

    # One task fails while another still reads the file: that one does not find it closed.
    errors: list[BaseException] = []
    lock = threading.Lock()
    calls = [0]
    reading = threading.Event()

    def failing(source: Any, chunk: Any, column: Any) -> list[pa.Array]:
        with lock:
            calls[0] += 1
            call = calls[0]
        if call == 1:
            reading.wait(5)  # until another task is under way
            raise native_decode.NativeDecodeError("refused")
        reading.set()
        time.sleep(0.1)
        try:
            return real(source, chunk, column)
        except BaseException as exc:
            errors.append(exc)
            raise

    monkeypatch.setattr(native_decode, "decode_chunk", failing)
    from airflow_provider_mlp.fastdata import reader

    plan, parts = table._read_plan(None, None, None, None, None, ())
    opened = next(o for o, _ in reader.open_parts(plan, parts) if "groups" in o.remote.path)
    with pytest.raises(native_decode.NativeDecodeError, match="refused"):
        native_decode.read_columns(opened, [0, 1, 2], spread=True)
    time.sleep(0.3)  # a task left running would read the closed file by now
    assert errors == []
    # And through the reader, the run falls back to polars with the same rows.
    calls[0] = 0
    assert_same(table.read().to_arrow(), theirs, "id")


def test_the_kernels_cached_output_goes_back_to_the_system_once_free_long_enough(
    catalog: Catalog, monkeypatch: pytest.MonkeyPatch
) -> None:
    catalog.create_namespace_if_not_exists("nd")
    iceberg = catalog.create_table("nd.long", schema=Schema(NestedField(1, "id", LongType(), required=False)))
    iceberg.append(pa.table({"id": pa.array(range(300_000), pa.int64())}))
    table = Table("nd.long", catalog=catalog)
    first = table.read().to_arrow()
    assert kernels.buffer_cache_info()["outstanding_bytes"] >= 8 * 300_000
    del first
    assert kernels.buffer_cache_info()["retained_bytes"] >= 8 * 300_000
    # A second read reuses those buffers.
    hits = kernels.buffer_cache_info()["hits"]
    assert table.read().to_arrow().column("id").to_pylist() == list(range(300_000))
    assert kernels.buffer_cache_info()["hits"] > hits
    # Once freed long enough ago, the trimming thread gives every block back; it ends when no
    # buffer is held any more (earlier tests of the process may still hold some).
    monkeypatch.setattr(native_decode, "BUFFER_CACHE_DECAY_S", 0.05)
    native_decode._WAKE.set()
    deadline = time.monotonic() + 10
    while kernels.buffer_cache_info()["retained_bytes"] and time.monotonic() < deadline:
        time.sleep(0.02)
    assert kernels.buffer_cache_info()["retained_bytes"] == 0
    if not kernels.buffer_cache_info()["outstanding_bytes"]:
        while native_decode._trimming and time.monotonic() < deadline:
            time.sleep(0.02)
        assert not native_decode._trimming


@pytest.mark.parametrize("in_kernel", [True, False], ids=["libzstd", "zstandard"])
def test_zstd_pages_are_decompressed_by_libzstd_in_the_kernel_or_else_by_zstandard(
    flat: tuple[Table, Any], monkeypatch: pytest.MonkeyPatch, in_kernel: bool
) -> None:
    if in_kernel and kernels.zstd_library_version() is None:
        pytest.skip("no libzstd to load here")
    monkeypatch.setattr(native_decode, "zstd_in_kernel", lambda: in_kernel)
    how: Counter[str] = Counter()
    real = kernels.decode_parquet_column

    def recording(chunk: Any, num_values: int, arrow_type: str, **kwargs: Any) -> Any:
        how[next(iter(set(kwargs) & {"zstd", "decompress_into", "decompress"}), "uncompressed")] += 1
        return real(chunk, num_values, arrow_type, **kwargs)

    monkeypatch.setattr(kernels, "decode_parquet_column", recording)
    table, iceberg = flat
    assert_same(table.read().to_arrow(), iceberg.scan().to_arrow(), "id")
    # pyiceberg's file is zstd (one chunk of each type); the two written here snappy (3 + 1).
    zstd = sum(chunks_of_each_type(1).values())
    assert how == {"zstd" if in_kernel else "decompress_into": zstd, "decompress": 4 * zstd}
    assert_same(table.read(row_filter="i > 3").to_arrow(), iceberg.scan(row_filter="i > 3").to_arrow(), "id")


def test_zstd_pages_are_decompressed_into_the_memory_given_and_bad_ones_named() -> None:
    import zstandard

    page = bytes(range(256)) * 40
    frame = zstandard.ZstdCompressor().compress(page)
    out = bytearray(len(page))
    with memoryview(out) as view:
        assert native_decode._zstd_decompress_into(memoryview(frame), len(page), view) == len(page)
    assert bytes(out) == page
    # A page longer than its header says reports one byte more, which the kernel refuses by page.
    short = bytearray(len(page) - 10)
    with memoryview(short) as view:
        assert native_decode._zstd_decompress_into(memoryview(frame), len(short), view) == len(short) + 1
    with pytest.raises(OSError, match="zstd: "), memoryview(out) as view:
        native_decode._zstd_decompress_into(memoryview(frame[:-5] + b"\xff" * 5), len(page), view)


def test_a_chunk_past_the_files_end_is_refused_before_decoding(tmp_path: Path) -> None:
    path = tmp_path / "f.parquet"
    pq.write_table(rows(0, 500), path)
    metadata = pq.ParquetFile(path).metadata
    column = native_decode.native_columns(metadata, metadata.schema.to_arrow_schema(), ["id"])["id"]
    cut = pa.py_buffer(path.read_bytes()[:100])
    with pytest.raises(
        native_decode.NativeDecodeError, match="the column chunk at bytes 4-[0-9]+ runs outside the 100-byte file"
    ):
        native_decode.decode_chunk(cut, metadata.row_group(0).column(column.leaf), column)


def test_filters_and_deletes_over_native_columns_are_decoded_by_the_kernel_with_a_selection(
    flat: tuple[Table, Any], kernel_calls: Counter[str], polars_reads: list[list[str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    table, iceberg = flat
    native = list(NATIVE)
    filters = (
        "i > 3",
        "s = 'a1' or x < 100",
        "id >= 1000 and id < 1010",
        "id < 0",
        "s is null",
        "ts >= '2024-02-01T00:00:00+00:00'",
        "local < '2023-05-01T00:10:00' or local is null",
    )
    for row_filter in filters:
        ours = table.read(columns=native, row_filter=row_filter).to_arrow()
        assert_same(ours, iceberg.scan(row_filter=row_filter, selected_fields=tuple(native)).to_arrow(), "id")
        # The filter's columns only, projected out: the projection is what remains.
        narrow = table.read(columns=["b"], row_filter=row_filter).to_arrow()
        assert narrow.schema.names == ["b"] and narrow.num_rows == ours.num_rows
    assert polars_reads == []
    assert kernel_calls["int64"] > 0 and kernel_calls["large_binary"] > 0
    # Numbers alone under a filter polars applies while decoding: polars' filtered decode (faster
    # there); under one it does not (on a timestamp), the kernel's selection. The same rows.
    for row_filter, by_polars in (("i > 3", True), ("ts >= '2024-01-20T00:00:00+00:00'", False)):
        kernel_calls.clear()
        polars_reads.clear()
        numbers = table.read(columns=["id", "x", "ts"], row_filter=row_filter).to_arrow()
        assert bool(polars_reads) == by_polars and (kernel_calls == Counter()) == by_polars
        scan = iceberg.scan(row_filter=row_filter, selected_fields=("id", "x", "ts")).to_arrow()
        assert 0 < numbers.num_rows < len(rows(0, 2800)) and scan.num_rows == numbers.num_rows
        assert_same(numbers, scan, "id")
    polars_reads.clear()
    streamed = pa.Table.from_batches(list(table.read_batches(columns=native, row_filter="i > 3", batch_rows=100)))
    assert_same(streamed, iceberg.scan(row_filter="i > 3", selected_fields=tuple(native)).to_arrow(), "id")
    # Deletes, with and without a filter.
    data_file = next(task.file.file_path for task in iceberg.scan().plan_files() if "groups" in task.file.file_path)
    add_position_deletes(iceberg, data_file, [0, 5, 1000, 1999])
    iceberg = iceberg.refresh()
    after = Table("nd.flat", catalog=iceberg.catalog)
    filters = (None, "i > 3")
    kernel_reads = [after.read(columns=native, row_filter=row_filter).to_arrow() for row_filter in filters]
    assert polars_reads == []
    without_kernel(monkeypatch)
    for row_filter, ours in zip(filters, kernel_reads, strict=True):
        scan = iceberg.scan(row_filter=row_filter or "true", selected_fields=tuple(native)).to_arrow()
        assert_same(ours, scan, "id")
        assert_same(after.read(columns=native, row_filter=row_filter).to_arrow(), ours, "id")
    assert polars_reads  # (the reads without the kernel)


def test_a_selected_decode_that_fails_falls_back(flat: tuple[Table, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    table, iceberg = flat

    def refusing(*args: Any, **kwargs: Any) -> Any:
        raise native_decode.NativeDecodeError("refused")

    monkeypatch.setattr(native_decode, "decode_chunk", refusing)
    assert_same(
        table.read(columns=list(NATIVE), row_filter="i > 3").to_arrow(),
        iceberg.scan(row_filter="i > 3", selected_fields=tuple(NATIVE)).to_arrow(),
        "id",
    )


def test_times_and_timestamps_are_the_kernels_integers_viewed_as_their_types(
    catalog: Catalog, kernel_calls: Counter[str], polars_reads: list[list[str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    catalog.create_namespace_if_not_exists("nd")
    schema = Schema(
        NestedField(1, "id", LongType(), required=False),
        NestedField(2, "t", TimeType(), required=False),
        NestedField(3, "ts", TimestamptzType(), required=False),
    )
    iceberg = catalog.create_table("nd.times", schema=schema)
    ks = range(600)
    stamps = [None if k % 9 == 0 else dt.datetime(2024, 3, 1, tzinfo=dt.UTC) + dt.timedelta(minutes=k) for k in ks]
    data = pa.table(
        {
            "id": pa.array(ks, pa.int64()),
            "t": pa.array([None if k % 10 == 0 else dt.time(k % 24, k % 60, 0, k) for k in ks], pa.time64("us")),
            "ts": pa.array(stamps, pa.timestamp("us", tz="UTC")),
        }
    )
    iceberg.append(data.cast(iceberg.schema().as_arrow()))
    # Files written by another writer, their timestamps in milliseconds (read as the table's
    # microseconds).
    other = pa.table(
        {
            "id": pa.array(range(600, 700), pa.int64()),
            "t": pa.array([dt.time(1, k % 60, 0, 1000 * k) for k in range(100)], pa.time64("us")),
            "ts": pa.array([dt.datetime(2024, 4, 1, tzinfo=dt.UTC) + dt.timedelta(seconds=k) for k in range(100)]),
        }
    )
    written = other.set_column(2, "ts", other.column("ts").cast(pa.timestamp("ms", tz="UTC")))
    for name in ("first", "second"):
        path = write_file(iceberg, f"ts_ms_{name}", written, row_group_size=40)
        assert pq.read_schema(path.removeprefix("file://")).field("ts").type.unit == "ms"
        iceberg.add_files([path])
    iceberg = iceberg.refresh()
    table = Table("nd.times", catalog=catalog)
    filters = (None, "ts >= '2024-03-01T05:00:00+00:00'", "t < '01:30:00' or ts is null")
    reads = []
    for row_filter in filters:
        kernel_calls.clear()
        reads.append(table.read(row_filter=row_filter).to_arrow())
        assert_same(reads[-1], iceberg.scan(row_filter=row_filter or "true").to_arrow(), "id")
        # Every column the kernel's, filtered or not (the filtered reads by read_selected): without a
        # filter, 3 columns of 1 + 2 * 3 row groups.
        assert set(kernel_calls) == {"int64"}
        assert kernel_calls["int64"] == 3 * (1 + 2 * 3) if row_filter is None else kernel_calls["int64"] > 0
    assert polars_reads == []
    without_kernel(monkeypatch)
    for row_filter, ours in zip(filters, reads, strict=True):
        assert_same(table.read(row_filter=row_filter).to_arrow(), ours, "id")


def test_times_in_milliseconds_and_nanosecond_timestamps_are_leaves_the_kernel_decodes(tmp_path: Path) -> None:
    ks = range(300)
    data = pa.table(
        {
            "t": pa.array(
                [None if k % 4 == 0 else dt.time(k % 24, k % 60, k % 60, 1000 * k) for k in ks], pa.time32("ms")
            ),
            "ns": pa.array([None if k % 5 == 0 else 1_700_000_000_123_456_789 + k for k in ks], pa.timestamp("ns")),
        }
    )
    keep = pa.array([k % 3 == 1 for k in ks])
    for use_dictionary in (True, False):  # dictionary-coded pages, and plain ones
        path = tmp_path / f"times-{use_dictionary}.parquet"
        pq.write_table(data, path, data_page_size=256, use_dictionary=use_dictionary)
        parquet = pq.ParquetFile(path)
        columns = native_decode.native_columns(parquet.metadata, parquet.schema_arrow, ["t", "ns"])
        assert columns == {
            "t": native_decode.NativeColumn(0, "int32", 1, pa.time32("ms")),
            "ns": native_decode.NativeColumn(1, "int64", 1, pa.timestamp("ns")),
        }
        file_bytes = pa.py_buffer(path.read_bytes())
        for name, column in columns.items():
            chunk = parquet.metadata.row_group(0).column(column.leaf)
            assert chunk.has_dictionary_page == use_dictionary
            expected = pq.read_table(path).column(name)
            assert pa.chunked_array(native_decode.decode_chunk(file_bytes, chunk, column)).equals(expected)
            selected = native_decode.decode_chunk(file_bytes, chunk, column, (keep.buffers()[1], keep.true_count))
            assert pa.chunked_array(selected).equals(expected.filter(keep))
