"""A generated, partitioned sample table for `mlp demo` and the tests (embedded catalog by default)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from airflow_provider_mlp.fastdata.table import Table

if TYPE_CHECKING:
    import pyarrow as pa
    from pyiceberg.catalog import Catalog

EVENT_TYPES = ("click", "view", "purchase", "share")


def sample_events(rows: int, seed: int = 7) -> pa.Table:
    """``rows`` events: ids, a user, a low-cardinality type, an amount, a timestamp, a text note."""
    import numpy as np
    import pyarrow as pa

    rng = np.random.default_rng(seed)
    event_type = np.array(EVENT_TYPES)[rng.integers(0, len(EVENT_TYPES), rows)]
    start = np.datetime64("2024-01-01T00:00:00", "us")
    offsets = rng.integers(0, 90 * 24 * 3600 * 1_000_000, rows)
    return pa.table(
        {
            "event_id": pa.array(np.arange(rows, dtype=np.int64)),
            "user_id": pa.array(rng.integers(0, max(1, rows // 10), rows, dtype=np.int64)),
            "event_type": pa.array(event_type.tolist(), pa.string()),
            "amount": pa.array(np.round(rng.gamma(2.0, 20.0, rows), 2)),
            "ts": pa.array(start + offsets.astype("timedelta64[us]")),
            "note": pa.array([f"note-{i % 1000:04d}" for i in range(rows)], pa.string()),
        }
    )


def create_sample_table(
    identifier: str = "demo.events", rows: int = 100_000, catalog: Catalog | Mapping[str, Any] | None = None
) -> Table:
    """Create namespace and table partitioned by ``event_type`` and filled with ``rows`` events; idempotent.

    A second call finds the table and its data committed (the load is one exactly-once run) and
    returns it unchanged; another ``rows`` replaces what it held.
    """
    from pyiceberg.partitioning import PartitionField, PartitionSpec
    from pyiceberg.transforms import IdentityTransform

    from airflow_provider_mlp.fastdata.catalog import resolve_catalog

    resolved = resolve_catalog(catalog)
    namespace = identifier.rsplit(".", 1)[0]
    resolved.create_namespace_if_not_exists(namespace)
    data = sample_events(rows)
    if not resolved.table_exists(identifier):
        from pyiceberg.exceptions import TableAlreadyExistsError
        from pyiceberg.schema import Schema
        from pyiceberg.types import DoubleType, LongType, NestedField, StringType, TimestampType

        schema = Schema(
            NestedField(1, "event_id", LongType(), required=False),
            NestedField(2, "user_id", LongType(), required=False),
            NestedField(3, "event_type", StringType(), required=False),
            NestedField(4, "amount", DoubleType(), required=False),
            NestedField(5, "ts", TimestampType(), required=False),
            NestedField(6, "note", StringType(), required=False),
        )
        spec = PartitionSpec(
            PartitionField(source_id=3, field_id=1000, transform=IdentityTransform(), name="event_type")
        )
        try:
            resolved.create_table(identifier, schema=schema, partition_spec=spec)
        except TableAlreadyExistsError:
            pass  # another process created it first: fine, the load below is exactly-once
    table = Table(identifier, catalog=resolved)
    run_id = f"sample-{rows}"
    staged = table.stage(data, shard_id=0, run_id=run_id)
    from pyiceberg.expressions import AlwaysTrue

    table.overwrite([staged], AlwaysTrue(), run_id=run_id, idempotency_key=run_id)
    return table.refresh()


def load_generated(
    identifier: str,
    rows: pa.Table,
    load_id: str,
    *,
    catalog: Catalog | Mapping[str, Any] | None = None,
    partition_by: Sequence[str] | None = None,
    row_group_rows: int | None = None,
    file_rows: int = 500_000,
) -> Table:
    """Fill ``identifier`` (created if missing) with generated ``rows``, replacing what it held, in one
    snapshot committed once per ``load_id``: a repeated load commits nothing, another one replaces it.
    Files of at most ``file_rows`` rows keep the writes bounded."""
    from pyiceberg.expressions import AlwaysTrue

    table = Table.create(identifier, rows.schema, catalog=catalog, partition_by=partition_by, exist_ok=True)
    staged = [
        table.stage(rows.slice(start, file_rows), shard_id=index, run_id=load_id, row_group_rows=row_group_rows)
        for index, start in enumerate(range(0, max(1, rows.num_rows), file_rows))
    ]
    table.overwrite(staged, AlwaysTrue(), run_id=load_id, idempotency_key=load_id)
    return table.refresh()
