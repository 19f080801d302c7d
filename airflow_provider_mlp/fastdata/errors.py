"""Errors raised by fastdata; each names the table, file, column or argument that is wrong."""

from __future__ import annotations

from airflow_provider_mlp.errors import MlpError


class FastDataError(MlpError, ValueError):
    """Base class of every fastdata error (a ``ValueError``: the input is wrong, not the code)."""


class TableNotFoundError(FastDataError, LookupError):
    """The table, or its namespace, does not exist in the catalog."""


class TableExistsError(FastDataError):
    """``Table.create`` found the table already there (``exist_ok=True`` returns it instead)."""


class PartitionSpecError(FastDataError):
    """A ``partition_by`` entry is malformed, names an unknown transform, or does not fit its column."""


class ColumnNotFoundError(FastDataError, LookupError):
    """A requested column is not in the table's schema."""


class FilterError(FastDataError):
    """A row filter does not parse, or names a column the table does not have."""


class SnapshotError(FastDataError, LookupError):
    """A snapshot id or timestamp does not resolve to a snapshot of the table."""


class ShardError(FastDataError):
    """A shard descriptor is malformed, for another table, or does not match its snapshot."""


class DataFileError(FastDataError, OSError):
    """A data or delete file is missing, unreadable or corrupt."""


class UnsupportedDeletesError(FastDataError, NotImplementedError):
    """The scan would need equality deletes, which this reader refuses rather than mis-read."""


class SchemaMismatchError(FastDataError, TypeError):
    """Data to write does not fit the table's schema."""


class CommitError(FastDataError, RuntimeError):
    """A commit could not be made (e.g. retries exhausted against concurrent writers)."""
