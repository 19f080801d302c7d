"""Fast Data over the S3 protocol: a real moto S3 server, a SQL catalog whose warehouse is s3://."""

from __future__ import annotations

import uuid
from pathlib import Path

import pyarrow as pa
import pytest

from airflow_provider_mlp.demo.data import create_sample_table
from airflow_provider_mlp.fastdata import DataFileError
from airflow_provider_mlp.fastdata.fetch import RemoteFile, WholeFileBuffers
from tests.support.s3_server import S3Server
from tests.unit.fastdata.helpers import add_position_deletes, assert_same

pytestmark = pytest.mark.integration


@pytest.fixture
def s3_catalog(s3_server: S3Server, tmp_path: Path) -> dict[str, str]:
    bucket = f"fastdata-{uuid.uuid4().hex[:8]}"
    s3_server.create_bucket(bucket)
    return {
        "name": "s3test",
        "type": "sql",
        "uri": f"sqlite:///{tmp_path / 'catalog.db'}",
        "warehouse": f"s3://{bucket}/warehouse",
        **s3_server.pyiceberg_properties(),
    }


def test_read_shards_and_deletes_over_s3(s3_catalog: dict[str, str]) -> None:
    table = create_sample_table("s3demo.events", rows=20_000, catalog=s3_catalog)
    assert table.location.startswith("s3://")
    assert_same(table.read().to_arrow(), table.iceberg.scan().to_arrow(), "event_id")
    f = "event_type in ('view', 'click') and amount > 30"
    assert_same(table.read(row_filter=f).to_arrow(), table.iceberg.scan(row_filter=f).to_arrow(), "event_id")
    first = sorted(t.file.file_path for t in table.iceberg.scan().plan_files())[0]
    add_position_deletes(table.iceberg, first, range(0, 4000, 5))
    table.refresh()
    theirs = table.iceberg.scan().to_arrow()
    shards = table.shards(target_bytes=1)
    assert len(shards) == 4
    ours = pa.concat_tables(table.read(s).to_arrow() for s in shards)
    assert_same(ours, theirs, "event_id")
    assert sum(b.num_rows for s in shards for b in table.read_batches(s, batch_rows=2048)) == theirs.num_rows


def test_filtered_reads_of_remote_files_never_translate_the_filter_for_polars(
    s3_catalog: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Arrow decodes remote files: a polars translation would only import polars (seconds in a fresh task).
    from airflow_provider_mlp.fastdata import polars_decode

    def refuse(*args: object) -> None:
        raise AssertionError("filter_to_polars called for a remote file")

    monkeypatch.setattr(polars_decode, "filter_to_polars", refuse)
    table = create_sample_table("s3demo.filtered", rows=2_000, catalog=s3_catalog)
    f = "amount > 30"
    assert_same(table.read(row_filter=f).to_arrow(), table.iceberg.scan(row_filter=f).to_arrow(), "event_id")


def test_remote_files_fetched_whole_have_their_flat_columns_decoded_by_the_kernel(
    s3_catalog: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import airflow_provider_mlp.kernels as kernels

    calls: list[str] = []
    real = kernels.decode_parquet_column

    def counting(chunk: object, num_values: int, arrow_type: str, **kwargs: object) -> object:
        calls.append(arrow_type)
        return real(chunk, num_values, arrow_type, **kwargs)

    monkeypatch.setattr(kernels, "decode_parquet_column", counting)
    table = create_sample_table("s3demo.kernel", rows=3_000, catalog=s3_catalog)
    assert_same(table.read().to_arrow(), table.iceberg.scan().to_arrow(), "event_id")
    assert "large_string" in calls and "int64" in calls
    # Streaming reads fetch row groups range by range, for Arrow to decode as they come.
    calls.clear()
    assert sum(batch.num_rows for batch in table.read_batches(batch_rows=500)) == 3_000
    assert calls == []


def test_stage_commit_exactly_once_over_s3(s3_catalog: dict[str, str], s3_server: S3Server) -> None:
    import s3fs

    table = create_sample_table("s3demo.out", rows=10, catalog=s3_catalog)
    rows = table.read().to_arrow()
    staged = [table.stage(rows, shard_id=i, run_id="s3-run") for i in range(3)]
    again = table.stage(rows, shard_id=0, run_id="s3-run")
    assert [f["file_path"] for f in again["files"]] == [f["file_path"] for f in staged[0]["files"]]
    snapshot = table.commit(staged, run_id="s3-run")
    assert table.commit(staged, run_id="s3-run") == snapshot
    assert table.refresh().read().num_rows == 40
    fs = s3fs.S3FileSystem(**s3_server.storage_options())
    victim = sorted(t.file.file_path for t in table.iceberg.scan().plan_files())[0]
    fs.rm(victim)
    with pytest.raises(DataFileError, match=victim.removeprefix("s3://")):
        table.read()


def test_read_batches_does_not_fetch_whole_files_up_front(
    s3_catalog: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    table = create_sample_table("s3demo.stream", rows=20_000, catalog=s3_catalog)
    whole: list[RemoteFile] = []
    fetch_whole = RemoteFile.fetch_whole

    def counting_fetch_whole(self: RemoteFile, buffers: WholeFileBuffers) -> None:
        whole.append(self)
        fetch_whole(self, buffers)

    monkeypatch.setattr(RemoteFile, "fetch_whole", counting_fetch_whole)
    assert table.read().num_rows == 20_000 and len(whole) == 4  # a full read takes each file whole
    whole.clear()
    # A stream is bounded by its prefetch window of row groups, never by the table's size.
    batches = table.read_batches(batch_rows=1000, prefetch=1)
    first = next(batches)
    assert first.num_rows == 1000 and whole == []
    assert first.num_rows + sum(b.num_rows for b in batches) == 20_000


def test_a_failed_full_read_lets_go_of_the_files_it_fetched_whole(
    s3_catalog: dict[str, str], s3_server: S3Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    import time

    import s3fs

    table = create_sample_table("s3demo.failing", rows=20_000, catalog=s3_catalog)
    fs = s3fs.S3FileSystem(**s3_server.storage_options())
    files = sorted(t.file.file_path for t in table.iceberg.scan().plan_files())
    fs.rm(files[1])  # the second file: the first is open (and fetched whole) when the read fails
    held: set[int] = set()
    fetch_whole, release_whole = RemoteFile.fetch_whole, RemoteFile.release_whole

    def fetching(self: RemoteFile, buffers: WholeFileBuffers) -> None:
        fetch_whole(self, buffers)
        held.add(id(self))

    def releasing(self: RemoteFile) -> None:
        held.discard(id(self))
        release_whole(self)

    monkeypatch.setattr(RemoteFile, "fetch_whole", fetching)
    monkeypatch.setattr(RemoteFile, "release_whole", releasing)
    with pytest.raises(DataFileError, match=files[1].removeprefix("s3://")):
        table.read()
    deadline = time.monotonic() + 10  # opens still running when the error surfaced release when they end
    while held and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not held


def test_commit_checks_staged_files_through_the_tables_file_io(
    s3_catalog: dict[str, str], s3_server: S3Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    import s3fs

    from airflow_provider_mlp.fastdata import fetch

    table = create_sample_table("s3demo.io", rows=10, catalog=s3_catalog)
    rows = table.read().to_arrow()

    def no_fsspec_filesystem(path: str, properties: object) -> None:
        # As on gs:// (gcsfs is no dependency) or s3:// without the s3fs extra.
        raise ModuleNotFoundError(f"no fsspec filesystem for {path}")

    monkeypatch.setattr(fetch, "filesystem_for", no_fsspec_filesystem)
    staged = table.stage(rows, shard_id=0, run_id="io-run")
    assert table.commit([staged], run_id="io-run") is not None
    assert table.refresh().read().num_rows == 20
    broken = table.stage(rows, shard_id=0, run_id="io-broken")
    victim = broken["files"][0]["file_path"]
    s3fs.S3FileSystem(**s3_server.storage_options()).rm(victim)
    with pytest.raises(DataFileError, match=victim):
        table.commit([broken], run_id="io-broken")


def test_a_full_read_reuses_and_then_lets_go_of_the_memory_it_fetched_files_into(
    s3_catalog: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    table = create_sample_table("s3demo.buffers", rows=20_000, catalog=s3_catalog)
    expected = table.iceberg.scan().to_arrow()
    made: list[WholeFileBuffers] = []
    init = WholeFileBuffers.__init__

    def recording_init(self: WholeFileBuffers) -> None:
        init(self)
        made.append(self)

    monkeypatch.setattr(WholeFileBuffers, "__init__", recording_init)
    for _ in range(2):  # the second read gets memory of its own, not the first's
        assert_same(table.read().to_arrow(), expected, "event_id")
    assert len(made) == 2 and all(buffers.closed and not buffers._free for buffers in made)
