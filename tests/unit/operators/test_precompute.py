"""PublishToCacheOperator at DAG-parse time: template fields, and no I/O or validation in __init__."""

from __future__ import annotations

from airflow_provider_mlp.operators.precompute import PublishToCacheOperator


def test_template_fields_and_no_io_at_parse_time() -> None:
    assert isinstance(PublishToCacheOperator.template_fields, tuple)
    assert {"table", "key", "values", "namespace", "snapshot_id", "row_filter"} <= set(
        PublishToCacheOperator.template_fields
    )
    # Nothing is looked up or checked here: a missing connection, a bad namespace and servers that do
    # not exist only fail when the task runs.
    op = PublishToCacheOperator(
        task_id="publish",
        table="{{ params.table }}",
        key=["title_id", "country"],
        values=["views"],
        namespace="bad namespace",
        mlp_memcached_conn_id="does_not_exist",
        servers="192.0.2.1:1",
    )
    assert op.keep_versions == 3 and op.namespace == "bad namespace"
