"""Request logs back into Iceberg: sampled predictions appended in batches through the Fast Data write path.

``RequestLog.record(row)`` is called on the request path and only samples and enqueues (bounded:
when the buffer is full the row is dropped and counted, never blocking a request). A background
thread writes batches with ``Table.stage`` + ``Table.commit`` (one snapshot per batch; a batch's
run id makes a retried commit a no-op) every ``flush_seconds`` or ``batch_rows``. ``close()``
(graceful shutdown) writes what is buffered before returning. Each row carries the model tag and
env id that answered, so the next training run can join answers to the model that gave them.
"""

from __future__ import annotations

import json
import logging
import queue
import random
import threading
import time
import uuid
from datetime import UTC, datetime
from typing import Any

log = logging.getLogger(__name__)

COLUMNS = (
    "ts",
    "model_tag",
    "model_name",
    "env_id",
    "endpoint",
    "source",
    "request_id",
    "input",
    "output",
    "latency_ms",
)


def arrow_schema() -> Any:
    import pyarrow as pa

    return pa.schema(
        [
            pa.field("ts", pa.timestamp("us", tz="UTC")),
            pa.field("model_tag", pa.string()),
            pa.field("model_name", pa.string()),
            pa.field("env_id", pa.string()),
            pa.field("endpoint", pa.string()),
            pa.field("source", pa.string()),
            pa.field("request_id", pa.string()),
            pa.field("input", pa.string()),
            pa.field("output", pa.string()),
            pa.field("latency_ms", pa.float64()),
        ]
    )


class RequestLog:
    """Sampled, batched, bounded request logging to Iceberg table ``table`` (created if missing)."""

    def __init__(
        self,
        table: str,
        *,
        sample_rate: float = 1.0,
        batch_rows: int = 1000,
        flush_seconds: float = 5.0,
        max_pending: int = 10_000,
        catalog: Any = None,
        metrics: Any = None,
    ) -> None:
        if not 0.0 <= sample_rate <= 1.0:
            from airflow_provider_mlp.errors import ConfigurationError

            raise ConfigurationError(f"request log sample rate must be within [0, 1], got {sample_rate!r}")
        self.table_name = table
        self.sample_rate = sample_rate
        self.batch_rows = batch_rows
        self.flush_seconds = flush_seconds
        self._pending: queue.Queue[dict[str, Any]] = queue.Queue(maxsize=max_pending)
        self._catalog = catalog
        self._metrics = metrics
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._table: Any = None
        self.written = 0
        self.dropped = 0

    def start(self) -> RequestLog:
        self._table = self._open_table()
        self._thread = threading.Thread(target=self._run, name="mlp-request-log", daemon=True)
        self._thread.start()
        return self

    def _open_table(self) -> Any:
        from airflow_provider_mlp.fastdata import Table
        from airflow_provider_mlp.fastdata.identifiers import split_table_identifier

        table = Table(self.table_name, catalog=self._catalog)
        namespace, _ = split_table_identifier(table.identifier)
        table.catalog.create_namespace_if_not_exists(namespace)
        table.catalog.create_table_if_not_exists(table.identifier, schema=arrow_schema())
        return table

    def record(self, **row: Any) -> None:
        """Sample and enqueue one row (never blocks; drops and counts when the buffer is full)."""
        if self.sample_rate < 1.0 and random.random() >= self.sample_rate:
            return
        row.setdefault("ts", datetime.now(UTC))
        try:
            self._pending.put_nowait(row)
        except queue.Full:
            self.dropped += 1
            if self._metrics is not None:
                self._metrics.request_log.labels("dropped").inc()

    def _take(self, wait: float) -> list[dict[str, Any]]:
        batch: list[dict[str, Any]] = []
        deadline = time.monotonic() + wait
        while len(batch) < self.batch_rows:
            timeout = deadline - time.monotonic()
            try:
                if timeout > 0:
                    # Short waits: a graceful shutdown is not held up by a long flush interval.
                    batch.append(self._pending.get(timeout=min(timeout, 0.1)))
                else:
                    batch.append(self._pending.get_nowait())
            except queue.Empty:
                if timeout <= 0 or self._stop.is_set():
                    break
        return batch

    def _run(self) -> None:
        while not self._stop.is_set():
            batch = self._take(self.flush_seconds)
            if batch:
                self._write(batch)

    def _write(self, batch: list[dict[str, Any]]) -> None:
        import pyarrow as pa

        schema = arrow_schema()
        columns = {name: [r.get(name) for r in batch] for name in COLUMNS}
        for name in ("input", "output"):
            columns[name] = [None if v is None else json.dumps(v, default=str) for v in columns[name]]
        data = pa.Table.from_pydict(columns, schema=schema)
        run_id = f"serving-log-{uuid.uuid4().hex}"
        for attempt in range(5):
            try:
                staged = self._table.stage(data, shard_id="0", run_id=run_id)
                self._table.commit(staged, run_id=run_id)
            except Exception:
                log.exception(
                    "request log: writing %d rows to %s failed (attempt %d)", len(batch), self.table_name, attempt + 1
                )
                time.sleep(min(5.0, 0.2 * 2**attempt))
                continue
            self.written += len(batch)
            if self._metrics is not None:
                self._metrics.request_log.labels("written").inc(len(batch))
            return
        if self._metrics is not None:
            self._metrics.request_log.labels("failed").inc(len(batch))

    def close(self, timeout: float = 30.0) -> None:
        """Stop the writer thread and write every buffered row (graceful shutdown)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        while True:
            batch = self._take(0)
            if not batch:
                break
            self._write(batch)
