"""A real Airflow runs the fan-out: plan shards -> mapped read+stage -> one commit with an Asset event;
and a re-run of the same logical date, under a new run id, leaves the rows once."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from airflow_provider_mlp.demo.data import create_sample_table
from airflow_provider_mlp.fastdata import IDEMPOTENCY_KEY_PROPERTY, RUN_ID_PROPERTY, Table

pytestmark = [pytest.mark.integration, pytest.mark.slow]

COPY_DAG = textwrap.dedent(
    """
    from __future__ import annotations

    import pendulum
    from airflow.sdk import dag, task

    from airflow_provider_mlp.fastdata import Table
    from airflow_provider_mlp.operators.fastdata import IcebergCommitOperator, IcebergShardsOperator, stage_to_table


    @dag(schedule=None, start_date=pendulum.datetime(2024, 1, 1), catchup=False)
    def fastdata_copy():
        plan = IcebergShardsOperator(task_id="plan", table="demo.events", target_bytes=1, row_filter="amount > 10")

        @task
        def copy(shard: dict) -> dict:
            rows = Table("demo.events").read(shard).to_arrow()
            return stage_to_table("demo.copy", rows, shard=shard)

        IcebergCommitOperator(task_id="commit", table="demo.copy", staged=copy.expand(shard=plan.output))


    fastdata_copy()
    """
)

RERUN_DAG = textwrap.dedent(
    """
    from __future__ import annotations

    import pendulum
    import pyarrow.compute as pc
    from airflow.sdk import dag, task

    from airflow_provider_mlp.fastdata import Table
    from airflow_provider_mlp.operators.fastdata import IcebergCommitOperator, IcebergShardsOperator, stage_to_table


    @dag(schedule=None, start_date=pendulum.datetime(2026, 1, 1), catchup=False)
    def fastdata_daily_scores():
        plan = IcebergShardsOperator(task_id="plan", table="demo.events", target_bytes=1)

        @task
        def score(shard: dict) -> dict:
            rows = Table("demo.events").read(shard, columns=["event_id", "event_type", "amount"]).to_arrow()
            scored = rows.append_column("score", pc.multiply(rows["amount"], 2))
            return stage_to_table(
                "demo.scores", scored, shard=shard, create_if_missing=True, partition_by=["event_type"]
            )

        IcebergCommitOperator(
            task_id="commit",
            table="demo.scores",
            staged=score.expand(shard=plan.output),
            idempotency_key="{{ ds }}",
        )


    fastdata_daily_scores()
    """
)


@pytest.fixture(scope="module")
def airflow_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """One migrated Airflow home and DAG folder for the module's DAG runs (each test brings its MLP_HOME)."""
    root = tmp_path_factory.mktemp("airflow")
    dags = root / "dags"
    dags.mkdir()
    (dags / "fastdata_copy.py").write_text(COPY_DAG)
    (dags / "fastdata_daily_scores.py").write_text(RERUN_DAG)
    env = {
        **os.environ,
        "AIRFLOW_HOME": str(root / "airflow-home"),
        "AIRFLOW__CORE__DAGS_FOLDER": str(dags),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
    }
    migrate = subprocess.run([_airflow(), "db", "migrate"], env=env, capture_output=True, text=True, timeout=300)
    assert migrate.returncode == 0, migrate.stderr[-3000:]
    return env


def _airflow() -> str:
    return str(Path(sys.executable).with_name("airflow"))


def _dags_test(env: dict[str, str], mlp_home: Path, *args: str) -> str:
    """``airflow dags test ARGS`` (which runs ``dag.test()``); its output, task logs included."""
    run = subprocess.run(
        [_airflow(), "dags", "test", *args],
        env={**env, "MLP_HOME": str(mlp_home)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    output = run.stdout + run.stderr
    assert run.returncode == 0, output[-6000:]
    return output


def test_airflow_runs_the_sharded_copy(mlp_home: Path, airflow_env: dict[str, str]) -> None:
    source = create_sample_table("demo.events", rows=5_000)
    source.catalog.create_table("demo.copy", schema=source.schema, partition_spec=source.spec)
    _dags_test(airflow_env, mlp_home, "fastdata_copy")
    copy = Table("demo.copy")
    expected = source.read(row_filter="amount > 10").num_rows
    assert copy.read().num_rows == expected
    snapshots = copy.snapshots()
    assert len(snapshots) == 1 and snapshots[0]["summary"][RUN_ID_PROPERTY].startswith("manual__")


def test_rerunning_a_logical_date_commits_its_rows_once(mlp_home: Path, airflow_env: dict[str, str]) -> None:
    create_sample_table("demo.events", rows=5_000)
    first = _dags_test(airflow_env, mlp_home, "fastdata_daily_scores", "2026-02-01")
    second = _dags_test(airflow_env, mlp_home, "fastdata_daily_scores", "2026-02-01")
    scores = Table("demo.scores")  # created by the first mapped task that staged rows
    assert [f.name for f in scores.spec.fields] == ["event_type"]
    assert scores.read().num_rows == 5_000
    (snapshot,) = scores.snapshots()
    assert snapshot["summary"][IDEMPOTENCY_KEY_PROPERTY] == "2026-02-01"
    committed_by = snapshot["summary"][RUN_ID_PROPERTY]
    assert f"Committed 4 file(s), 5000 row(s), of run {committed_by} to iceberg://mlp/demo/scores" in first
    repeat = re.search(
        f"Idempotency key '2026-02-01' was already committed to iceberg://mlp/demo/scores as snapshot "
        f"{snapshot['snapshot_id']} by run {re.escape(committed_by)}; run (manual__\\S+) added nothing and "
        "removed the 4 file\\(s\\) it had staged",
        second,
    )
    assert repeat is not None, second[-6000:]
    assert repeat.group(1) != committed_by  # the same logical date, under another run id
    # The re-run's staged files are gone: the table's folder holds the committed files only.
    committed = {t.file.file_path.removeprefix("file://") for t in scores.iceberg.scan().plan_files()}
    on_disk = {str(p) for p in Path(scores.location.removeprefix("file://"), "data").rglob("*.parquet")}
    assert on_disk == committed
    # The commit reads the mapped task's results without asking for one past the last.
    assert "XCom not found" not in first + second
