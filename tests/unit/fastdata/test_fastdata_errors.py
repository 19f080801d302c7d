"""Bad input: each error names the table, namespace, column, filter or file that is wrong."""

from __future__ import annotations

from pathlib import Path

import pytest
from pyiceberg.catalog import Catalog

from airflow_provider_mlp.fastdata import (
    ColumnNotFoundError,
    DataFileError,
    FilterError,
    SnapshotError,
    Table,
    TableNotFoundError,
    UnsupportedDeletesError,
)
from airflow_provider_mlp.fastdata.filters import filter_text, parse_filter
from tests.unit.fastdata.helpers import add_equality_deletes

# Both Parquet decoders (polars' and Arrow's) must give the same rows and schemas.
pytestmark = pytest.mark.usefixtures("each_decoder")


def test_unknown_table_and_namespace(events: Table, catalog: Catalog) -> None:
    with pytest.raises(TableNotFoundError, match=r"'demo\.missing'.*tables in namespace 'demo': demo\.events"):
        _ = Table("demo.missing", catalog=catalog).schema
    with pytest.raises(TableNotFoundError, match=r"namespace 'nowhere'.*namespaces: demo"):
        Table("nowhere.t", catalog=catalog).read()
    with pytest.raises(TableNotFoundError, match="namespace.table"):
        Table("justaname")


def test_unknown_column_and_bad_filters(events: Table) -> None:
    with pytest.raises(ColumnNotFoundError, match="'nope'.*demo.events"):
        events.read(columns=["event_id", "nope"])
    with pytest.raises(ColumnNotFoundError, match="'nope'"):
        events.shards(columns=["nope"])
    with pytest.raises(FilterError, match="does not parse"):
        events.read(row_filter="amount >>> 3")
    with pytest.raises(FilterError, match="missing_col"):
        events.shards(row_filter="missing_col = 1")
    with pytest.raises(ColumnNotFoundError, match="'note'"):
        events.read(columns=["event_id"], dictionary_columns=["note"])


def test_unknown_snapshot(events: Table) -> None:
    with pytest.raises(SnapshotError, match="snapshot 42"):
        events.read(snapshot_id=42)
    with pytest.raises(SnapshotError, match="no snapshot at or before"):
        events.read(as_of=1)


def test_missing_and_corrupt_data_files(events: Table) -> None:
    paths = sorted(t.file.file_path for t in events.iceberg.scan().plan_files())
    missing = Path(paths[0].removeprefix("file://"))
    kept = missing.read_bytes()
    missing.unlink()
    with pytest.raises(DataFileError, match=f"{paths[0]} is missing"):
        events.read()
    missing.write_bytes(kept)
    local = Path(paths[1].removeprefix("file://"))
    data = local.read_bytes()
    local.write_bytes(data[: len(data) // 2])
    with pytest.raises(DataFileError, match=str(local)):
        events.read()
    local.write_bytes(data[:-8] + b"\x00" * 8)
    with pytest.raises(DataFileError, match=f"{paths[1]} is not Parquet"):
        events.read()
    local.write_bytes(data[:1000] + b"\xff" * 50_000 + data[51_000:])
    with pytest.raises(DataFileError, match=f"{paths[1]} is corrupt"):
        events.read()


def test_equality_deletes_are_refused_naming_the_file(events: Table) -> None:
    path = add_equality_deletes(events.iceberg, "event_id", [1, 2])
    with pytest.raises(UnsupportedDeletesError, match=path):
        events.refresh().read()


@pytest.mark.parametrize(
    "text",
    [
        "a = 1",
        "a != 'it''s'",
        "(a < 1.5 and b >= -2) or not c is null",
        "a in (1, 2, 3)",
        "s like 'pre%'",
        "s not like 'x\\%y%'",
        "x is nan",
        "x not in ('a', 'b')",
        "true",
    ],
)
def test_filters_round_trip_through_text(text: str) -> None:
    expr = parse_filter(text)
    assert parse_filter(filter_text(expr)) == expr


def test_missing_delete_file_is_named(events: Table) -> None:
    from tests.unit.fastdata.helpers import add_position_deletes

    first = sorted(t.file.file_path for t in events.iceberg.scan().plan_files())[0]
    path = add_position_deletes(events.iceberg, first, [0, 1])
    Path(path.removeprefix("file://")).unlink()
    with pytest.raises(DataFileError, match=f"delete file {path}"):
        events.refresh().read()


def test_a_filter_that_does_not_parse_points_at_the_failure(events: Table) -> None:
    with pytest.raises(FilterError) as raised:
        events.read(row_filter="event_id >>> 1")
    message = str(raised.value)
    lines = message.splitlines()
    assert lines[0] == (
        "row_filter 'event_id >>> 1' on table 'demo.events' does not parse at column 11: expected a value "
        "(a number, 'quoted text', true or false) after '>', found '>'"
    )
    assert lines[1:3] == ["    event_id >>> 1", "              ^"]
    assert "columns of table 'demo.events': event_id, user_id, event_type, amount, ts, note" in message
    assert "W:(" not in message and "Expected {" not in message
    with pytest.raises(FilterError, match=r"at column 21: expected 'and', 'or' or the end of the filter, found 'andd'"):
        events.shards(row_filter="event_type = 'view' andd amount > 1")
    with pytest.raises(FilterError, match=r"expected 'null' or 'nan' after 'is', found 'nul'"):
        events.read(row_filter="note is nul")


@pytest.mark.parametrize(
    ("text", "column", "expected"),
    [
        ("a = 1 and", 10, "a column name, 'not', '(' or true/false, found the end of the filter"),
        ("(a = 1", 7, "'and', 'or' or the ')' closing the '(' at column 1"),
        ("a in (1, 'x')", 10, "an integer like the list's first value"),
        ('a = "x"', 5, "text takes single quotes, double quotes name a column"),
        ("a = 'x", 5, "found text whose quote ' is never closed"),
        ("a ~ 1", 3, "an operator: =, !=, <, <=, >, >=, in (...)"),
    ],
)
def test_filter_errors_say_what_was_expected(text: str, column: int, expected: str) -> None:
    with pytest.raises(FilterError) as raised:
        parse_filter(text, "t.t", columns=["a"])
    assert f"does not parse at column {column}: expected " in str(raised.value)
    assert expected in str(raised.value)


@pytest.mark.parametrize(
    "text",
    [
        "a = 1",
        "a != 'it''s'",
        "(a < 1.5 and b >= -2) or not c is null",
        "a in (1, 2, 3)",
        "s not like 'x\\%y%'",
        "x is not nan",
        "1 = a",
        "a between 1 and 2",
        "a.b.c = 1",
        "a == 1 or a <> 2",
        "a in (true, false)",
    ],
)
def test_the_diagnosis_accepts_what_pyiceberg_parses(text: str) -> None:
    from airflow_provider_mlp.fastdata.filters import diagnose_filter

    parse_filter(text)
    assert diagnose_filter(text) is None
