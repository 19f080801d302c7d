"""The reader against pyiceberg's own scan on real tables: same rows, same schema."""

from __future__ import annotations

import datetime as dt
import time

import pyarrow as pa
import pytest
from pyiceberg.catalog import Catalog
from pyiceberg.partitioning import PartitionField, PartitionSpec
from pyiceberg.schema import Schema
from pyiceberg.transforms import BucketTransform, IdentityTransform
from pyiceberg.types import DoubleType, FloatType, IntegerType, LongType, NestedField, StringType

from airflow_provider_mlp.fastdata import Table
from tests.unit.fastdata.helpers import add_file_without_partition_column, add_position_deletes, assert_same

# Both Parquet decoders (polars' and Arrow's) must give the same rows and schemas.
pytestmark = pytest.mark.usefixtures("each_decoder")


def test_read_equals_pyiceberg(events: Table) -> None:
    ours = events.read().to_arrow()
    assert ours.num_rows == 20_000
    assert_same(ours, events.iceberg.scan().to_arrow(), "event_id")


@pytest.mark.parametrize(
    "row_filter",
    [
        "amount > 50",
        "event_type = 'view' and amount < 10",
        "event_type in ('click', 'share') or user_id < 100",
        "note like 'note-00%'",
        "event_id > 100000",
    ],
)
def test_filtered_read_equals_pyiceberg(events: Table, row_filter: str) -> None:
    ours = events.read(row_filter=row_filter, columns=["event_id", "note"]).to_arrow()
    theirs = events.iceberg.scan(row_filter=row_filter, selected_fields=("event_id", "note")).to_arrow()
    assert_same(ours, theirs, "event_id")


def test_conversions_and_dictionary_columns(events: Table) -> None:
    frame = events.read(columns=["event_id", "event_type"], dictionary_columns=["event_type"])
    table = frame.to_arrow()
    assert pa.types.is_dictionary(table.schema.field("event_type").type)
    assert len(frame.to_pandas()) == 20_000
    assert frame.to_polars().shape == (20_000, 2)
    assert frame.to_pandas(arrow_dtypes=True)["event_id"].dtype.pyarrow_dtype == pa.int64()


def test_read_batches_is_bounded_and_complete(events: Table) -> None:
    batches = list(events.read_batches(batch_rows=999, columns=["event_id"]))
    assert max(b.num_rows for b in batches) <= 999
    assert sorted(pa.Table.from_batches(batches).column("event_id").to_pylist()) == list(range(20_000))
    filtered = list(events.read_batches(batch_rows=500, row_filter="amount > 80"))
    assert sum(b.num_rows for b in filtered) == events.iceberg.scan(row_filter="amount > 80").count()


def test_positional_deletes(events: Table) -> None:
    files = sorted(t.file.file_path for t in events.iceberg.scan().plan_files())
    add_position_deletes(events.iceberg, files[0], range(0, 3000, 7))
    add_position_deletes(events.iceberg, files[0], [1, 2, 3])
    add_position_deletes(events.iceberg, files[1], range(5000))  # more than the file: whole file deleted
    events.refresh()
    theirs = events.iceberg.scan().to_arrow()
    assert theirs.num_rows < 20_000
    assert_same(events.read().to_arrow(), theirs, "event_id")
    f = "amount > 20"
    assert_same(events.read(row_filter=f).to_arrow(), events.iceberg.scan(row_filter=f).to_arrow(), "event_id")
    assert sum(b.num_rows for b in events.read_batches(batch_rows=1000)) == theirs.num_rows


def _evolving_table(catalog: Catalog) -> Table:
    catalog.create_namespace_if_not_exists("evo")
    schema = Schema(
        NestedField(1, "id", LongType(), required=False),
        NestedField(2, "small", IntegerType(), required=False),
        NestedField(3, "name", StringType(), required=False),
        NestedField(4, "ratio", FloatType(), required=False),
        NestedField(5, "cat", StringType(), required=False),
    )
    spec = PartitionSpec(PartitionField(source_id=5, field_id=1000, transform=IdentityTransform(), name="cat"))
    iceberg = catalog.create_table("evo.t", schema=schema, partition_spec=spec)
    first = pa.table(
        {
            "id": pa.array(range(100), pa.int64()),
            "small": pa.array(range(100), pa.int32()),
            "name": [f"n{i}" for i in range(100)],
            "ratio": pa.array([i / 3 for i in range(100)], pa.float32()),
            "cat": ["a", "b"] * 50,
        }
    )
    iceberg.append(first)
    with iceberg.update_schema() as update:
        update.rename_column("name", "label")
        update.update_column("small", field_type=LongType())
        update.update_column("ratio", field_type=DoubleType())
        update.add_column("extra", StringType())
    iceberg = catalog.load_table("evo.t")
    with iceberg.update_spec() as spec_update:
        spec_update.remove_field("cat")
        spec_update.add_field("id", BucketTransform(4), "id_bucket")
    iceberg = catalog.load_table("evo.t")
    second = pa.table(
        {
            "id": pa.array(range(100, 160), pa.int64()),
            "small": pa.array(range(60), pa.int64()),
            "label": [f"l{i}" for i in range(60)],
            "ratio": pa.array([i / 7 for i in range(60)], pa.float64()),
            "cat": ["c"] * 60,
            "extra": [f"e{i}" for i in range(60)],
        }
    )
    iceberg.append(second)
    return Table("evo.t", catalog=catalog)


@pytest.mark.parametrize(
    "row_filter", [None, "cat = 'a'", "small >= 50", "label like 'l1%' or id < 3", "extra is null"]
)
def test_schema_and_partition_evolution(catalog: Catalog, row_filter: str | None) -> None:
    table = _evolving_table(catalog)
    ours = table.read(row_filter=row_filter).to_arrow()
    theirs = table.iceberg.scan(row_filter=row_filter or "true").to_arrow()
    assert_same(ours, theirs, "id")
    assert set(ours.column_names) == {"id", "small", "label", "ratio", "cat", "extra"}


def test_time_travel(events: Table) -> None:
    first = events.current_snapshot_id
    assert first is not None
    before = int(time.time() * 1000)
    time.sleep(0.01)
    run = "second-load"
    extra = events.read(row_filter="event_id < 10").to_arrow()
    events.commit([events.stage(extra, shard_id=0, run_id=run)], run_id=run)
    assert events.read().num_rows == 20_010
    assert events.read(snapshot_id=first).num_rows == 20_000
    assert events.read(as_of=before).num_rows == 20_000
    assert events.read(as_of=dt.datetime.now(dt.UTC)).num_rows == 20_010
    assert_same(
        events.read(snapshot_id=first).to_arrow(), events.iceberg.scan(snapshot_id=first).to_arrow(), "event_id"
    )


def _region_table(catalog: Catalog, identifier: str, files: dict[str, list[int]]) -> Table:
    """A table partitioned by identity(region) whose files (ids by region) do not store region."""
    catalog.create_namespace_if_not_exists(identifier.split(".")[0])
    schema = Schema(
        NestedField(1, "id", LongType(), required=False), NestedField(2, "region", StringType(), required=False)
    )
    spec = PartitionSpec(PartitionField(source_id=2, field_id=1000, transform=IdentityTransform(), name="region"))
    iceberg = catalog.create_table(identifier, schema=schema, partition_spec=spec)
    for region, ids in files.items():
        add_file_without_partition_column(iceberg, pa.table({"id": pa.array(ids, pa.int64())}), region)
    return Table(identifier, catalog=catalog)


def test_identity_partition_value_missing_from_file(catalog: Catalog) -> None:
    table = _region_table(catalog, "hive.t", {"eu": [1, 2, 3]})
    ours = table.read().to_arrow()
    assert ours.column("region").to_pylist() == ["eu"] * 3
    assert_same(ours, table.iceberg.scan().to_arrow(), "id")
    assert_same(
        table.read(row_filter="region = 'eu'").to_arrow(),
        table.iceberg.scan(row_filter="region = 'eu'").to_arrow(),
        "id",
    )
    assert table.read(row_filter="region = 'us'").num_rows == 0


def test_files_alike_with_other_partition_values_filter_by_their_own(catalog: Catalog) -> None:
    # Both files have one Parquet schema, so one layout; the filter on the partition column they
    # lack must still be translated with each file's own value, not the first file's.
    from airflow_provider_mlp.fastdata import reader

    table = _region_table(catalog, "hive.two", {"eu": [1, 2, 3], "us": [4, 5]})

    plan, parts = table._read_plan(None, None, "region = 'eu' or id = 5", None, None, ())
    reader.open_parts(plan, parts)
    # The case under test: one layout, and one filter translation for each partition value.
    assert (len(plan._layouts), len(plan._file_filters)) == (1, 2)
    # An ``or`` on a stored column keeps both files in the plan (partition pruning would drop one).
    for row_filter, ids in (("region = 'eu' or id = 5", [1, 2, 3, 5]), ("region = 'us' or id = 1", [1, 4, 5])):
        ours = table.read(row_filter=row_filter).to_arrow()
        assert sorted(ours.column("id").to_pylist()) == ids
        assert_same(ours, table.iceberg.scan(row_filter=row_filter).to_arrow(), "id")


def test_files_written_alike_share_one_layout_and_renames_skip_the_projection_visitor(
    catalog: Catalog, monkeypatch: pytest.MonkeyPatch
) -> None:
    import pyiceberg.io.pyarrow

    from airflow_provider_mlp.fastdata import reader

    projections = []
    to_requested_schema = pyiceberg.io.pyarrow._to_requested_schema

    def counted(*args: object, **kwargs: object) -> object:
        projections.append(1)
        return to_requested_schema(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(pyiceberg.io.pyarrow, "_to_requested_schema", counted)

    data = pa.table({"id": pa.array(range(100), pa.int64()), "title": pa.array([f"t{i}" for i in range(100)])})
    table = Table.create("r.alike", data.schema)
    for run in ("a", "b", "c"):
        table.commit([table.stage(data, shard_id=0, run_id=run)], run_id=run)
    with table.iceberg.update_schema() as update:
        update.rename_column("title", "headline")
        update.add_column("score", DoubleType())
    table = Table("r.alike", catalog=catalog)
    newer = pa.table({"id": pa.array([7], pa.int64()), "headline": ["x"], "score": [0.5]})
    table.commit([table.stage(newer, shard_id=0, run_id="d")], run_id="d")
    plan, parts = table._read_plan(None, ["id", "headline"], None, None, None, ())
    opened = [o for o, _ in reader.open_parts(plan, parts)]
    # Three files written before the rename share one layout; the fourth, with the new column, has its own.
    assert len(plan._layouts) == 2
    # Projecting id and headline from either only renames (title to headline in the old files).
    assert all(o.renames_only for o in opened)
    projections.clear()  # writing the files projected them too
    ours = table.read(columns=["id", "headline"]).to_arrow()
    assert ours.schema.names == ["id", "headline"]
    assert projections == []
    assert_same(ours, table.iceberg.scan(selected_fields=("id", "headline")).to_arrow(), "id")
    # With score, the old files lack a projected column: pyiceberg's projection fills it with nulls.
    plan, parts = table._read_plan(None, None, None, None, None, ())
    assert [o.renames_only for o, _ in reader.open_parts(plan, parts)].count(False) == 3
    projections.clear()
    ours = table.read().to_arrow()
    assert projections  # pyiceberg's projection, for the files lacking score
    assert_same(ours, table.iceberg.scan().to_arrow(), "id")


def test_reading_no_columns_gives_no_rows_as_pyiceberg_does(catalog: Catalog) -> None:
    data = pa.table({"id": pa.array(range(100), pa.int64())})
    table = Table.create("r.none", data.schema)
    table.commit([table.stage(data, shard_id=0, run_id="r")], run_id="r")
    theirs = table.iceberg.scan(selected_fields=()).to_arrow()
    ours = table.read(columns=[]).to_arrow()
    assert (ours.num_rows, ours.num_columns) == (theirs.num_rows, theirs.num_columns) == (0, 0)
    assert sum(batch.num_rows for batch in table.read_batches(columns=[])) == 0


def test_empty_table_reads_empty(catalog: Catalog) -> None:
    catalog.create_namespace_if_not_exists("e")
    catalog.create_table("e.t", schema=Schema(NestedField(1, "id", LongType(), required=False)))
    table = Table("e.t", catalog=catalog)
    assert table.read().num_rows == 0
    assert table.shards() == []
    assert list(table.read_batches()) == []


def test_list_of_strings_columns_read_back(catalog: Catalog) -> None:
    # Few distinct names: Parquet dictionary-codes the list's leaf, which must not be read as a dictionary column.
    names = [["Ana Ito", "Ben Sato"][: 1 + i % 2] for i in range(5_000)]
    data = pa.table({"id": pa.array(range(5_000), pa.int64()), "cast": pa.array(names, pa.list_(pa.string()))})
    table = Table.create("r.lists", data.schema)
    table.commit([table.stage(data, shard_id=0, run_id="r")], run_id="r")
    for shard in table.shards(target_bytes=1):
        # Every read has the projection's Arrow schema (large types), whichever files a shard holds.
        assert table.read(shard).to_arrow().column("cast").type == pa.large_list(pa.large_string())
    assert table.read().to_arrow().sort_by("id").column("cast").to_pylist() == names


def test_string_view_reads_give_the_same_values_as_views(catalog: Catalog) -> None:
    from airflow_provider_mlp.fastdata.reader import view_type

    data = pa.table(
        {
            "id": pa.array(range(3_000), pa.int64()),
            "title": pa.array([f"title {i:05d} of the catalogue" if i % 7 else None for i in range(3_000)]),
            "short": pa.array([f"s{i % 5}" for i in range(3_000)]),  # inline in a view (<= 12 bytes)
            "blob": pa.array([bytes([i % 256]) * (i % 20) for i in range(3_000)], pa.binary()),
            "cast": pa.array([["Ana Ito", "Ben Sato"][: i % 3] for i in range(3_000)], pa.list_(pa.string())),
            "meta": pa.array([{"lang": "en" if i % 2 else None, "n": i} for i in range(3_000)]),
        }
    )
    table = Table.create("r.views", data.schema, properties={"write.parquet.row-group-limit": 1_000})
    table.commit([table.stage(data, shard_id=0, run_id="r")], run_id="r")
    large = table.read().to_arrow()
    views = table.read(string_view=True).to_arrow()
    assert views.schema == pa.schema([f.with_type(view_type(f.type)) for f in large.schema])
    assert views.schema.field("cast").type == pa.large_list(pa.string_view())
    assert views.schema.field("meta").type.field("lang").type == pa.string_view()
    assert views.cast(large.schema).sort_by("id").equals(large.sort_by("id"))
    # A filter, a projection, a dictionary column (its values keep the large type) and streaming.
    picked = table.read(columns=["id", "title"], row_filter="id >= 2500", string_view=True).to_arrow()
    assert picked.schema.field("title").type == pa.string_view()
    assert sorted(picked.column("id").to_pylist()) == list(range(2_500, 3_000))
    coded = table.read(columns=["short"], dictionary_columns=["short"], string_view=True).to_arrow()
    assert coded.schema.field("short").type == pa.dictionary(pa.int32(), pa.large_string())
    batches = list(table.read_batches(batch_rows=700, string_view=True))
    assert all(batch.schema == views.schema for batch in batches)
    assert sum(batch.num_rows for batch in batches) == 3_000
    frame = table.read(string_view=True)
    assert frame.to_polars().shape == (3_000, 6)
    titles = frame.to_pandas().sort_values("id")["title"]
    expected_titles = table.read().to_pandas().sort_values("id")["title"]
    assert titles.fillna("<null>").tolist() == expected_titles.fillna("<null>").tolist()
