"""The ``mlp`` command: ``mlp demo`` runs the project's main job on embedded defaults;
``mlp settings`` prints where everything lives."""

from __future__ import annotations

import argparse
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


def _repo_dags_folder() -> Path | None:
    candidate = Path(__file__).resolve().parents[1] / "dags"
    return candidate if (candidate / "mlp_quickstart.py").exists() else None


def _airflow(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    airflow = Path(sys.executable).with_name("airflow")
    return subprocess.run([str(airflow), *args], env=env, capture_output=True, text=True, check=False)


def _step(message: str) -> None:
    print(f"[mlp demo] {message}", flush=True)


def demo(dags_folder: Path | None, rows: int) -> int:
    """Create the sample Iceberg table, run the quickstart DAG with `airflow dags test`, report."""
    from airflow_provider_mlp.fastdata.sample import create_sample_table

    started = time.monotonic()
    s = settings()
    _step(f"MLP_HOME={s.home}")
    _step(f"catalog: {s.catalog_uri}  warehouse: {s.warehouse}")
    table = create_sample_table(SAMPLE_TABLE, rows=rows)
    _step(f"sample table {SAMPLE_TABLE}: snapshot {table.current_snapshot_id}, schema {table.schema}")

    folder = dags_folder or _repo_dags_folder()
    if folder is None:
        print("mlp demo: no dags folder found; pass --dags-folder pointing at the project's dags/", file=sys.stderr)
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

    run_id = f"mlp_demo__{time.strftime('%Y%m%dT%H%M%S')}"
    conf = json.dumps({"table": SAMPLE_TABLE, "report_name": run_id})
    _step(f"airflow dags test {QUICKSTART_DAG_ID} (run {run_id})")
    ran = _airflow(["dags", "test", QUICKSTART_DAG_ID, "--conf", conf], env)
    if ran.returncode != 0 or "state=failed" in ran.stdout + ran.stderr:
        print(ran.stdout[-6000:], ran.stderr[-6000:], sep="\n", file=sys.stderr)
        print(f"mlp demo: the {QUICKSTART_DAG_ID} run failed", file=sys.stderr)
        return ran.returncode or 1

    local_store = Path(urlparse(s.artifact_store).path) if s.artifact_store.startswith("file://") else None
    report_path = local_store / "quickstart" / f"{run_id}.json" if local_store is not None else None
    if report_path is not None and report_path.exists():
        report = json.loads(report_path.read_text())
        _step(f"report written by the DAG to {report_path}:")
        print(json.dumps(report, indent=2))
    else:
        _step(f"report stored under {s.artifact_store}/quickstart/{run_id}.json")
    _step(f"done in {time.monotonic() - started:.1f}s")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="mlp", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    demo_parser = sub.add_parser("demo", help="run the main job on embedded defaults")
    demo_parser.add_argument("--dags-folder", type=Path, default=None)
    demo_parser.add_argument("--rows", type=int, default=200_000, help="rows of the sample table")
    sub.add_parser("settings", help="print the resolved settings as JSON")
    args = parser.parse_args(argv)
    if args.command == "demo":
        return demo(args.dags_folder, args.rows)
    resolved = settings()
    print(json.dumps({k: str(v) if not isinstance(v, tuple) else list(v) for k, v in vars(resolved).items()}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
