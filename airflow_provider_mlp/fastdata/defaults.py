"""Fast Data's defaults, stated once (every signature and operator refers to these names)."""

from __future__ import annotations

# Object-store requests one reader or planner keeps in flight.
DEFAULT_IO_CONCURRENCY = 16
# About how many compressed bytes one shard of ``Table.shards`` holds.
DEFAULT_TARGET_BYTES = 256 << 20
# Rows per record batch of ``Table.read_batches``.
DEFAULT_BATCH_ROWS = 65_536
