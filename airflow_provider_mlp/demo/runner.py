"""The main job on embedded defaults: a sample Iceberg table, the quickstart DAG through a real
``airflow dags test``, and a short report."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlparse

from airflow_provider_mlp.config import settings

QUICKSTART_DAG_ID = "mlp_quickstart"
SAMPLE_TABLE = "demo.events"


def example_dags_folder() -> Path:
    """The example DAGs shipped inside the package (works from a wheel as from a checkout)."""
    import airflow_provider_mlp.example_dags

    return Path(airflow_provider_mlp.example_dags.__file__).resolve().parent


def _airflow(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    airflow = Path(sys.executable).with_name("airflow")
    return subprocess.run([str(airflow), *args], env=env, capture_output=True, text=True, check=False)


def _step(message: str) -> None:
    print(f"[mlp demo] {message}", flush=True)


def demo(dags_folder: Path | None, rows: int) -> int:
    """Create the sample Iceberg table, run the quickstart DAG with `airflow dags test`, report."""
    from airflow_provider_mlp.demo.data import create_sample_table

    started = time.monotonic()
    s = settings()
    _step(f"MLP_HOME={s.home}")
    _step(f"catalog: {s.catalog_uri}  warehouse: {s.warehouse}")
    table = create_sample_table(SAMPLE_TABLE, rows=rows)
    _step(f"sample table {SAMPLE_TABLE}: snapshot {table.current_snapshot_id}, schema {table.schema}")

    folder = dags_folder or example_dags_folder()
    if not (folder / f"{QUICKSTART_DAG_ID}.py").exists():
        print(f"mlp demo: {folder} has no {QUICKSTART_DAG_ID}.py (pass --dags-folder)", file=sys.stderr)
        return 2
    env = dict(os.environ)
    env.setdefault("AIRFLOW_HOME", str(s.home / "airflow"))
    env["AIRFLOW__CORE__DAGS_FOLDER"] = str(folder)
    env.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
    env["MLP_HOME"] = str(s.home)
    _step(f"AIRFLOW_HOME={env['AIRFLOW_HOME']}  dags folder: {folder}")

    migrated = _airflow(["db", "migrate"], env)
    if migrated.returncode != 0:
        print(migrated.stdout[-4000:], migrated.stderr[-4000:], sep="\n", file=sys.stderr)
        print("mlp demo: `airflow db migrate` failed", file=sys.stderr)
        return migrated.returncode
    _step("airflow metadata database ready (SQLite)")

    # `airflow dags test` picks the run id itself (manual__<time>); the report file is named by this
    # label and the report records the real run id, which is what we print.
    report_name = f"mlp_demo__{time.strftime('%Y%m%dT%H%M%S')}"
    conf = json.dumps({"table": SAMPLE_TABLE, "report_name": report_name})
    _step(f"airflow dags test {QUICKSTART_DAG_ID}")
    ran = _airflow(["dags", "test", QUICKSTART_DAG_ID, "--conf", conf], env)
    if ran.returncode != 0 or "state=failed" in ran.stdout + ran.stderr:
        print(ran.stdout[-6000:], ran.stderr[-6000:], sep="\n", file=sys.stderr)
        print(f"mlp demo: the {QUICKSTART_DAG_ID} run failed", file=sys.stderr)
        return ran.returncode or 1

    local_store = Path(urlparse(s.artifact_store).path) if s.artifact_store.startswith("file://") else None
    report_path = local_store / "quickstart" / f"{report_name}.json" if local_store is not None else None
    if report_path is not None and report_path.exists():
        report = json.loads(report_path.read_text())
        _step(f"run {report.get('run_id')}: report written by the DAG to {report_path}:")
        print(json.dumps(report, indent=2))
    else:
        _step(f"report stored under {s.artifact_store}/quickstart/{report_name}.json")
    _step(f"done in {time.monotonic() - started:.1f}s")
    return 0
