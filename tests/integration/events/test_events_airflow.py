"""Events through a real Airflow 3 (api-server, scheduler, dag-processor, triggerer; LocalExecutor on SQLite).

One Airflow for the module (started by the launcher ``mlp airflow up`` uses), on the DAGs in ./dags.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_mlp.airflow_local import listening_sockets
from tests.support.airflow_cluster import AirflowCluster

pytestmark = [pytest.mark.integration, pytest.mark.slow]

DAGS = Path(__file__).resolve().parent / "dags"
DAG_IDS = ["enrich_orders", "publish_ranker", "score_with_ranker", "conditional_consumer"]


def _orders_schema() -> Any:
    import pyarrow as pa

    return pa.schema([pa.field("order_id", pa.int64()), pa.field("amount", pa.float64())])


@pytest.fixture(scope="module")
def events_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    home = tmp_path_factory.mktemp("events-mlp-home")
    with pytest.MonkeyPatch.context() as patch:  # module-scoped: the function-scoped monkeypatch cannot
        patch.setenv("MLP_HOME", str(home))
        from airflow_provider_mlp.fastdata.catalog import default_catalog

        catalog = default_catalog()
        catalog.create_namespace("events")
        # No snapshot yet: the watcher's first event is the first commit, not a table that already existed.
        catalog.create_table("events.orders", schema=_orders_schema())
        yield home


@pytest.fixture(scope="module")
def airflow(start_airflow: Any, events_home: Path) -> AirflowCluster:
    cluster: AirflowCluster = start_airflow(DAGS, env={"MLP_HOME": str(events_home)})
    cluster.wait_for_dags(DAG_IDS)
    return cluster


def _mlp(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    mlp = str(Path(sys.executable).with_name("mlp"))
    return subprocess.run([mlp, *args], capture_output=True, text=True, timeout=120, env={**os.environ, **(env or {})})


def test_every_listener_is_on_localhost(airflow: AirflowCluster) -> None:
    sockets = listening_sockets(list(airflow.instance.pids.values()))
    addresses = sorted({address for address, _ in sockets})
    assert addresses == [f"127.0.0.1:{airflow.instance.port}"], sockets
    # LocalExecutor: as many workers as parallelism, not Airflow's default of 32.
    assert airflow.instance.environment()["AIRFLOW__CORE__PARALLELISM"] == "2"


def test_watcher_runs_downstream_with_snapshot_param_and_own_commit_does_not_retrigger(
    airflow: AirflowCluster, events_home: Path
) -> None:
    import pyarrow as pa

    from airflow_provider_mlp.fastdata import Table
    from airflow_provider_mlp.fastdata.catalog import default_catalog

    airflow.wait_for_asset("iceberg://mlp/events/orders")
    time.sleep(3)  # the triggerer picks the watcher up
    table = Table("events.orders")
    staged = table.stage(pa.table({"order_id": [1, 2], "amount": [1.0, 2.0]}), shard_id=0, run_id="etl-1")
    first = table.commit(staged, run_id="etl-1")
    runs = airflow.wait_for_runs("enrich_orders", 1)
    assert runs[0]["state"] == "success", runs
    result = airflow.xcom("enrich_orders", runs[0]["dag_run_id"], "enrich")
    assert result["params"] == {"snapshot_id": first, "writer": "etl-1"}
    # The run committed to the watched table itself (filtered out): no second run.
    assert result["written"] is not None
    time.sleep(4)
    assert len(airflow.runs("enrich_orders")) == 1

    # A commit made outside Airflow and outside mlp (plain pyiceberg) is seen by the watcher.
    iceberg = default_catalog().load_table("events.orders")
    iceberg.append(pa.table({"order_id": [3], "amount": [3.0]}, schema=_orders_schema()))
    external = iceberg.refresh().current_snapshot().snapshot_id
    runs = airflow.wait_for_runs("enrich_orders", 2)
    second = airflow.xcom("enrich_orders", runs[-1]["dag_run_id"], "enrich")
    assert second["params"] == {"snapshot_id": external, "writer": None}
    time.sleep(4)
    assert len(airflow.runs("enrich_orders")) == 2


def test_rest_trigger_with_conf_then_emitted_payload_fills_downstream_params(airflow: AirflowCluster) -> None:
    # What Airflow 3.3 wants: a token, and logical_date in the body (null is fine); an empty body is 422.
    status, body = airflow.api("POST", "/api/v2/dags/publish_ranker/dagRuns", {})
    assert status == 422, body
    status, body = airflow.api(
        "POST", "/api/v2/dags/publish_ranker/dagRuns", {"logical_date": None, "conf": {"version": "7"}}
    )
    assert status == 200, body
    runs = airflow.wait_for_runs("publish_ranker", 1)
    assert runs[0]["state"] == "success"
    downstream = airflow.wait_for_runs("score_with_ranker", 1)
    assert downstream[0]["state"] == "success", downstream
    run_id = downstream[0]["dag_run_id"]
    assert airflow.xcom("score_with_ranker", run_id, "score") == {"model_version": "7", "model_name": "ranker"}
    assert airflow.xcom("score_with_ranker", run_id, "templated") == "7"


def test_publish_from_a_shell_runs_the_dag_and_a_bad_payload_names_the_field(airflow: AirflowCluster) -> None:
    before = len(airflow.runs("score_with_ranker"))
    env = {"MLP_AIRFLOW_URL": airflow.url}
    done = _mlp("events", "publish", "mlp://model/ranker", "--event", "model.published",
                "--payload", json.dumps({"model": "ranker", "version": "8"}), env=env)  # fmt: skip
    assert done.returncode == 0, done.stderr
    runs = airflow.wait_for_runs("score_with_ranker", before + 1)
    assert airflow.xcom("score_with_ranker", runs[-1]["dag_run_id"], "score")["model_version"] == "8"

    # The CLI refuses a payload that does not fit the schema before sending it...
    done = _mlp("events", "publish", "mlp://model/ranker", "--event", "model.published",
                "--payload", json.dumps({"model": "ranker"}), env=env)  # fmt: skip
    assert done.returncode == 1 and "missing required field 'version'" in done.stderr, done.stderr
    # ... and the consumer checks what others send: the run fails naming the field.
    done = _mlp("events", "publish", "mlp://model/ranker", "--payload", json.dumps({"model": "ranker"}), env=env)
    assert done.returncode == 0, done.stderr
    runs = airflow.wait_for_runs("score_with_ranker", before + 2)
    assert runs[-1]["state"] == "failed"
    log = airflow.task_log("score_with_ranker", runs[-1]["dag_run_id"], "score")
    assert "missing required field 'version'" in log, log[-3000:]

    # A wrong token: non-zero exit and the server's message.
    done = _mlp("events", "publish", "mlp://model/ranker", "--token", "not-a-token", "--payload", "{}", env=env)
    assert done.returncode == 1
    assert "HTTP 401" in done.stderr or "HTTP 403" in done.stderr, done.stderr


def test_conditional_schedule_runs_only_when_its_condition_holds(airflow: AirflowCluster) -> None:
    def publish(uri: str) -> None:
        asset_id = airflow.wait_for_asset(uri)
        status, body = airflow.api("POST", "/api/v2/assets/events", {"asset_id": asset_id, "extra": {}})
        assert status == 200, body

    publish("mlp://model/cond_a")
    publish("mlp://model/cond_b".replace("b", "b"))  # a & b holds ...
    airflow.wait_for_runs("conditional_consumer", 1)
    publish("mlp://model/cond_a")  # ... a alone does not
    time.sleep(5)
    assert len(airflow.runs("conditional_consumer")) == 1
    publish("mlp://model/cond_c")  # a & c does
    runs = airflow.wait_for_runs("conditional_consumer", 2)
    assert all(r["state"] == "success" for r in runs)
