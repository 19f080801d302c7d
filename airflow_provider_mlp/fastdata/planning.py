"""Shards: a scan's files (pruned by pyiceberg's planner) cut and balanced by bytes.

A file larger than the target is cut between row groups, using the byte offsets of its Parquet
footer. Shards are plain JSON so they travel through XCom to ``.expand()``; the same snapshot and
arguments always give the same shards.
"""

from __future__ import annotations

import hashlib
import heapq
import json
import logging
import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from airflow_provider_mlp.fastdata.defaults import DEFAULT_IO_CONCURRENCY
from airflow_provider_mlp.fastdata.errors import ShardError
from airflow_provider_mlp.fastdata.fetch import RemoteFile, chunk_span, io_pool

if TYPE_CHECKING:
    import pyarrow.parquet as pq
    from pyiceberg.table import FileScanTask

SHARD_KIND = "mlp.fastdata.shard"
SHARD_VERSION = 1

log = logging.getLogger(__name__)


def _size(num_bytes: int) -> str:
    if num_bytes >= 1_000_000:
        return f"{num_bytes / 1e6:.1f} MB"
    return f"{num_bytes / 1e3:.1f} kB"


def _explain_oversized(table: str, units: Sequence[dict[str, Any]], target_bytes: int, count: int) -> None:
    """Log why shards come out larger (and fewer) than ``target_bytes`` asks: a shard cannot be
    smaller than one row group, and a file with a single row group cannot be cut at all."""
    oversized = [u for u in units if u["bytes"] > target_bytes]
    if not oversized:
        return
    total = sum(u["bytes"] for u in units)
    wanted = math.ceil(total / target_bytes)
    largest = max(oversized, key=lambda u: (u["bytes"], u["path"]))
    if largest["row_groups"] is None:
        piece = f"file {largest['path']} has 1 row group of {_size(largest['bytes'])}"
    else:
        piece = f"row group {largest['row_groups'][0]} of file {largest['path']} holds {_size(largest['bytes'])}"
    log.warning(
        "Table %s: planned %d shard(s) where target_bytes=%d asks for about %d: %s; shards cannot be smaller "
        "than a row group (%d of the %d pieces exceed the target). Write smaller row groups: "
        "Table.stage(..., row_group_rows=...) or the table property write.parquet.row-group-limit.",
        table,
        count,
        target_bytes,
        wanted,
        piece,
        len(oversized),
        len(units),
    )


def _row_group_span(parquet: pq.FileMetaData, rg: int) -> tuple[int, int, int]:
    """(start offset, end offset, compressed bytes) of one row group's column chunks."""
    group = parquet.row_group(rg)
    start, end, size = None, 0, 0
    for index in range(group.num_columns):
        chunk = group.column(index)
        first, last = chunk_span(chunk)
        start = first if start is None else min(start, first)
        end = max(end, last)
        size += chunk.total_compressed_size
    return (start or 0, end, size)


def _file_units(task: FileScanTask, parquet: pq.FileMetaData | None, target_bytes: int) -> list[dict[str, Any]]:
    deletes = sorted(d.file_path for d in task.delete_files)
    whole = {
        "path": task.file.file_path,
        "file_size": task.file.file_size_in_bytes,
        "records": task.file.record_count,
        "bytes": task.file.file_size_in_bytes,
        "row_groups": None,
        "byte_range": [0, task.file.file_size_in_bytes],
        "deletes": deletes,
    }
    if parquet is None or parquet.num_row_groups <= 1:
        return [whole]
    units: list[dict[str, Any]] = []
    groups: list[int] = []
    acc_bytes = acc_rows = 0
    span_start = span_end = 0

    def flush() -> None:
        units.append({**whole, "records": acc_rows, "bytes": acc_bytes, "row_groups": list(groups)})
        units[-1]["byte_range"] = [span_start, span_end]

    for rg in range(parquet.num_row_groups):
        start, end, size = _row_group_span(parquet, rg)
        if groups and acc_bytes + size > target_bytes:
            flush()
            groups, acc_bytes, acc_rows = [], 0, 0
        if not groups:
            span_start = start
        groups.append(rg)
        acc_bytes += size
        acc_rows += parquet.row_group(rg).num_rows
        span_end = end
    flush()
    return units if len(units) > 1 else [whole]


def plan_shards(
    *,
    table: str,
    catalog: str,
    snapshot_id: int | None,
    schema_id: int,
    row_filter: str,
    columns: Sequence[str] | None,
    tasks: Sequence[FileScanTask],
    target_bytes: int,
    io_properties: Mapping[str, str],
    io_concurrency: int = DEFAULT_IO_CONCURRENCY,
    io: Any = None,
) -> list[dict[str, Any]]:
    if target_bytes <= 0:
        raise ValueError(f"target_bytes must be positive, got {target_bytes}")
    ordered = sorted(tasks, key=lambda t: t.file.file_path)
    big = [t for t in ordered if t.file.file_size_in_bytes > target_bytes]

    def footer(task: FileScanTask) -> pq.FileMetaData:
        size = task.file.file_size_in_bytes
        return RemoteFile(task.file.file_path, size, io_properties, io_concurrency, io=io).footer()

    footers = dict(zip((t.file.file_path for t in big), io_pool(io_concurrency).map(footer, big), strict=True))
    units = [u for t in ordered for u in _file_units(t, footers.get(t.file.file_path), target_bytes)]
    if not units:
        return []
    total = sum(u["bytes"] for u in units)
    count = max(1, min(len(units), math.ceil(total / target_bytes)))
    _explain_oversized(table, units, target_bytes, count)
    # Largest first onto the lightest shard (ties: lowest index): balanced and deterministic.
    units.sort(key=lambda u: (-u["bytes"], u["path"], (u["row_groups"] or [0])[0]))
    heap = [(0, index) for index in range(count)]
    members: list[list[dict[str, Any]]] = [[] for _ in range(count)]
    for unit in units:
        load, index = heapq.heappop(heap)
        members[index].append(unit)
        heapq.heappush(heap, (load + unit["bytes"], index))
    shards = []
    for index, files in enumerate(members):
        files.sort(key=lambda u: (u["path"], (u["row_groups"] or [0])[0]))
        shard: dict[str, Any] = {
            "kind": SHARD_KIND,
            "version": SHARD_VERSION,
            "table": table,
            "catalog": catalog,
            "snapshot_id": snapshot_id,
            "schema_id": schema_id,
            "row_filter": row_filter,
            "columns": list(columns) if columns is not None else None,
            "index": index,
            "count": count,
            "bytes": sum(u["bytes"] for u in files),
            "records": sum(u["records"] for u in files),
            "files": files,
        }
        digest = hashlib.sha256(json.dumps(shard, sort_keys=True).encode()).hexdigest()[:12]
        shard["shard_id"] = f"{index:05d}-{digest}"
        shards.append(shard)
    return shards


def validate_shard(shard: Any, table: str) -> dict[str, Any]:
    if isinstance(shard, str):
        try:
            shard = json.loads(shard)
        except json.JSONDecodeError as exc:
            raise ShardError(f"shard descriptor for table {table!r} is not valid JSON: {exc}") from None
    if not isinstance(shard, Mapping) or shard.get("kind") != SHARD_KIND:
        raise ShardError(f"not a shard descriptor (expected a dict with kind={SHARD_KIND!r}): {str(shard)[:200]}")
    if shard.get("version") != SHARD_VERSION:
        raise ShardError(
            f"shard descriptor version {shard.get('version')!r} is not supported (expected {SHARD_VERSION})"
        )
    if shard.get("table") != table:
        raise ShardError(f"shard descriptor is for table {shard.get('table')!r}, not {table!r}")
    for key in ("snapshot_id", "row_filter", "files"):
        if key not in shard:
            raise ShardError(f"shard descriptor for table {table!r} lacks {key!r}")
    return dict(shard)
