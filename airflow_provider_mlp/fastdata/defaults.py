"""Fast Data's defaults, stated once (every signature and operator refers to these names)."""

from __future__ import annotations

# Object-store requests one reader or planner keeps in flight.
DEFAULT_IO_CONCURRENCY = 16
# About how many compressed bytes one shard of ``Table.shards`` holds.
DEFAULT_TARGET_BYTES = 256 << 20
# Rows per record batch of ``Table.read_batches``.
DEFAULT_BATCH_ROWS = 65_536
# Who decodes local Parquet files: "polars" (its native reader, about twice as fast as Arrow's),
# "pyarrow", or "auto": polars when it is installed (the ``polars`` extra), else pyarrow.
DEFAULT_DECODER = "auto"

# How ``Table.stage`` lays data out. A row group is the smallest piece ``Table.shards`` can hand
# to a task, so row groups are kept small enough for fan-out: a row group ends at whichever
# limit it reaches first, rows or (uncompressed, Arrow in-memory) bytes. The byte limit keeps wide
# rows from making huge groups; the row limit keeps narrow rows from making groups of millions.
# Table properties ``write.parquet.row-group-limit`` and ``write.target-file-size-bytes`` (pyiceberg's
# own keys) override the row limit and the file size, and ``stage(row_group_rows=...,
# row_group_bytes=..., target_file_bytes=...)`` overrides all three for one call.
DEFAULT_ROW_GROUP_ROWS = 131_072
DEFAULT_ROW_GROUP_BYTES = 2 << 20
# About how many uncompressed (Arrow in-memory) bytes one staged data file holds, as pyiceberg
# measures ``write.target-file-size-bytes``; on disk that is usually 3-10 times less.
DEFAULT_TARGET_FILE_BYTES = 128 << 20
