"""Fast Data: Iceberg tables read fast with bounded memory, written exactly once from sharded tasks.

Runs inside pods: nothing here imports Airflow (``conn_id=`` imports the hook only when used).
"""

from __future__ import annotations

from airflow_provider_mlp.fastdata.errors import (
    ColumnNotFoundError,
    CommitError,
    DataFileError,
    FastDataError,
    FilterError,
    PartitionSpecError,
    SchemaMismatchError,
    ShardError,
    SnapshotError,
    TableExistsError,
    TableNotFoundError,
    UnsupportedDeletesError,
)
from airflow_provider_mlp.fastdata.frame import DataFrame
from airflow_provider_mlp.fastdata.table import Table
from airflow_provider_mlp.fastdata.writer import IDEMPOTENCY_KEY_PROPERTY, RUN_ID_PROPERTY

__all__ = [
    "IDEMPOTENCY_KEY_PROPERTY",
    "RUN_ID_PROPERTY",
    "ColumnNotFoundError",
    "CommitError",
    "DataFileError",
    "DataFrame",
    "FastDataError",
    "FilterError",
    "PartitionSpecError",
    "SchemaMismatchError",
    "ShardError",
    "SnapshotError",
    "Table",
    "TableExistsError",
    "TableNotFoundError",
    "UnsupportedDeletesError",
]
