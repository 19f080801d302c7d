"""PublishModelOperator in a real Airflow run (`airflow dags test`): a task trains a tiny model on an Iceberg
table, the operator saves it to the BentoML model store (a temporary BENTOML_HOME) with its lineage, and
Airflow records the event of the Asset ``mlp://model/<name>`` with the same fields in its extra."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pyarrow as pa
import pytest

from airflow_provider_mlp.fastdata import Table
from airflow_provider_mlp.fastdata.catalog import default_catalog

pytestmark = [pytest.mark.integration, pytest.mark.slow]

DAG = textwrap.dedent(
    """
    from __future__ import annotations

    import os

    import pendulum
    from airflow.sdk import dag, task

    from airflow_provider_mlp.operators.serving import PublishModelOperator


    @dag(schedule=None, start_date=pendulum.datetime(2024, 1, 1), catchup=False)
    def train_and_publish():
        @task
        def train() -> dict:
            import cloudpickle
            import numpy as np

            from airflow_provider_mlp.fastdata import Table

            rows = Table("ml.training").read().to_arrow()
            x = np.column_stack([rows["a"].to_numpy(), rows["b"].to_numpy()])
            y = rows["y"].to_numpy()
            coef, residuals, *_ = np.linalg.lstsq(x, y, rcond=None)
            weights = {"a": float(coef[0]), "b": float(coef[1])}

            def model(features: dict) -> float:  # a local function: cloudpickle ships it by value
                return sum(w * float(features[name]) for name, w in weights.items())

            path = os.path.join(os.environ["MLP_TEST_WORK"], "model.pkl")
            with open(path, "wb") as fh:
                cloudpickle.dump(model, fh)
            rmse = float(np.sqrt(np.mean((x @ coef - y) ** 2)))
            return {"path": path, "rmse": round(rmse, 6)}

        trained = train()
        publish = PublishModelOperator(
            task_id="publish_model",
            model_name="ranker",
            model_path="{{ ti.xcom_pull(task_ids='train')['path'] }}",
            env_id="env-test-1",
            metrics={"rmse": "{{ ti.xcom_pull(task_ids='train')['rmse'] }}", "rows": 4},
            inputs=["ml.training"],
        )
        trained >> publish


    train_and_publish()
    """
)

# Reads the store in its own process: BentoML resolves BENTOML_HOME once per process.
INSPECT = textwrap.dedent(
    """
    import json, sys
    import bentoml
    from airflow_provider_mlp.serving.models import load_model

    stored = bentoml.models.get("ranker:latest")
    model = load_model("ranker")
    print(json.dumps({
        "tag": str(stored.tag), "labels": dict(stored.info.labels), "metadata": dict(stored.info.metadata),
        "prediction": model.predict({"a": 1.0, "b": 1.0}),
    }))
    """
)


def test_publish_model_operator_saves_lineage_and_emits_the_model_asset(mlp_home: Path, tmp_path: Path) -> None:
    # y = 2a + 3b exactly: the trained weights are known.
    rows = pa.table({"a": [1.0, 2.0, 0.0, 1.0], "b": [0.0, 1.0, 2.0, 3.0], "y": [2.0, 7.0, 6.0, 11.0]})
    catalog = default_catalog()
    catalog.create_namespace("ml")
    catalog.create_table("ml.training", schema=rows.schema)
    table = Table("ml.training")
    table.commit(table.stage(rows, shard_id=0, run_id="load"), run_id="load")
    snapshot_id = table.refresh().current_snapshot_id
    dags = tmp_path / "dags"
    dags.mkdir()
    (dags / "train_and_publish.py").write_text(DAG)
    airflow_home = tmp_path / "airflow-home"
    env = {
        **os.environ,
        "MLP_HOME": str(mlp_home),
        "BENTOML_HOME": str(tmp_path / "bentoml"),
        "BENTOML_DO_NOT_TRACK": "true",
        "MLP_TEST_WORK": str(tmp_path),
        "AIRFLOW_HOME": str(airflow_home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(dags),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
    }
    airflow = str(Path(sys.executable).with_name("airflow"))
    migrate = subprocess.run([airflow, "db", "migrate"], env=env, capture_output=True, text=True, timeout=300)
    assert migrate.returncode == 0, migrate.stderr[-3000:]
    run = subprocess.run(
        [airflow, "dags", "test", "train_and_publish"], env=env, capture_output=True, text=True, timeout=300
    )
    assert run.returncode == 0 and "state=failed" not in run.stdout + run.stderr, (
        run.stdout[-4000:] + run.stderr[-4000:]
    )

    inspected = subprocess.run([sys.executable, "-c", INSPECT], env=env, capture_output=True, text=True, timeout=120)
    assert inspected.returncode == 0, inspected.stderr[-3000:]
    stored = json.loads(inspected.stdout.strip().splitlines()[-1])

    with sqlite3.connect(airflow_home / "airflow.db") as db:
        (run_id,) = db.execute("SELECT run_id FROM dag_run WHERE dag_id = 'train_and_publish'").fetchone()
        events = db.execute(
            "SELECT asset.uri, asset_event.extra, asset_event.source_task_id, asset_event.source_run_id "
            "FROM asset_event JOIN asset ON asset.id = asset_event.asset_id"
        ).fetchall()

    assert stored["labels"] == {"dag_id": "train_and_publish", "run_id": run_id, "env_id": "env-test-1"}
    assert stored["metadata"]["inputs"] == {"ml.training": snapshot_id}
    assert stored["metadata"]["metrics"]["rows"] == 4.0 and stored["metadata"]["metrics"]["rmse"] < 1e-6
    assert stored["prediction"] == pytest.approx(5.0)  # 2 * 1 + 3 * 1: the trained model, loaded back

    assert len(events) == 1
    uri, extra, task_id, source_run = events[0]
    assert (uri, task_id, source_run) == ("mlp://model/ranker", "publish_model", run_id)
    assert json.loads(extra) == {
        "tag": stored["tag"],
        "dag_id": "train_and_publish",
        "run_id": run_id,
        "env_id": "env-test-1",
        "metrics": stored["metadata"]["metrics"],
        "inputs": {"ml.training": snapshot_id},
    }
