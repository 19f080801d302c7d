"""Publish an Iceberg table's rows to memcached as a new version of a namespace (the precompute layer).

::

    PublishToCacheOperator(task_id="publish", table="perf.daily_aggregates", key=["title_id", "country"],
                           values=["views", "hours"], namespace="content-perf", keep_versions=3)

Serving code then reads it with ``CacheReader("content-perf").get_many(keys)`` (no Airflow needed).
The version is written, verified and only then made current; a failed task leaves readers on the
previous version, and a retry publishes a fresh version. The version's metadata records the table,
its snapshot id, the DAG id and the run id.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator

if TYPE_CHECKING:
    from airflow.sdk import Context


def _int_or_none(value: Any) -> int | None:
    if value in (None, "", "None"):
        return None
    return int(value)


class PublishToCacheOperator(BaseOperator):
    """Publish ``table`` to memcached under ``namespace``, verified, with an atomic switch of readers.

    :param table: Iceberg table ``namespace.table`` (read with the Fast Data reader, in bounded memory).
    :param key: key column(s); readers look rows up by a scalar (one column) or a tuple.
    :param values: value columns (default: every non-key column).
    :param namespace: cache namespace readers ask for.
    :param keep_versions: versions retained for rollback, the new one included.
    :param snapshot_id: publish this snapshot (default: the table's current one).
    :param row_filter: publish only matching rows (pyiceberg filter text).
    :param mlp_memcached_conn_id: ``mlp_memcached`` connection (servers, timeouts, TLS); ``None``: the default.
    :param servers: ``"host:port,..."``, beating the connection's servers.
    :param iceberg_conn_id: ``iceberg`` connection; ``None``: the embedded catalog.
    :param batch_rows: rows per pipelined write batch.
    :param verify_sample: random rows read back before the switch.
    """

    template_fields: Sequence[str] = ("table", "key", "values", "namespace", "snapshot_id", "row_filter", "servers")
    ui_color = "#d9f0e3"

    def __init__(
        self,
        *,
        table: str,
        key: str | list[str],
        values: list[str] | None = None,
        namespace: str,
        keep_versions: int = 3,
        snapshot_id: int | None = None,
        row_filter: str | None = None,
        mlp_memcached_conn_id: str | None = None,
        servers: str | None = None,
        iceberg_conn_id: str | None = None,
        batch_rows: int = 32_768,
        verify_sample: int = 256,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.table = table
        self.key = key
        self.values = values
        self.namespace = namespace
        self.keep_versions = keep_versions
        self.snapshot_id = snapshot_id
        self.row_filter = row_filter
        self.mlp_memcached_conn_id = mlp_memcached_conn_id
        self.servers = servers
        self.iceberg_conn_id = iceberg_conn_id
        self.batch_rows = batch_rows
        self.verify_sample = verify_sample

    def execute(self, context: Context) -> dict[str, Any]:
        from airflow_provider_mlp.hooks.iceberg import MlpIcebergHook
        from airflow_provider_mlp.hooks.memcached import MemcachedHook
        from airflow_provider_mlp.precompute import publish

        hook = MemcachedHook(self.mlp_memcached_conn_id, servers=self.servers or None)
        options = hook.memcached_options()
        table = MlpIcebergHook(iceberg_conn_id=self.iceberg_conn_id).get_table(self.table)
        dag = context.get("dag")
        dag_id = getattr(dag, "dag_id", None) or self.dag_id
        run_id = str(context["run_id"]) if context.get("run_id") is not None else None
        self.log.info(
            "Publishing %s (key %s) to namespace %r on %s", self.table, self.key, self.namespace, options.server_names
        )
        result = publish(
            table,
            key=self.key,
            values=self.values,
            namespace=self.namespace,
            options=options,
            keep_versions=int(self.keep_versions),
            dag_id=dag_id,
            run_id=run_id,
            snapshot_id=_int_or_none(self.snapshot_id),
            row_filter=self.row_filter or None,
            batch_rows=int(self.batch_rows),
            verify_sample=int(self.verify_sample),
            on_batch=None,
        )
        self.log.info(
            "Version %s of %r: %d rows, %d items in %.2fs (%s)",
            result.tag,
            self.namespace,
            result.rows,
            result.items,
            result.seconds,
            "now current" if result.switched else f"not current: newer version {result.current} already is",
        )
        return result.to_dict()
