"""The main job on embedded defaults: generated data, the quickstart and entity-resolution DAGs
through a real ``airflow dags test`` each, and a short report naming the runs by their run ids."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlparse

from airflow_provider_mlp.config import settings

QUICKSTART_DAG_ID = "mlp_quickstart"
ENTITY_RESOLUTION_DAG_ID = "mlp_entity_resolution"
SAMPLE_TABLE = "demo.events"
PAIRS_TABLE = "content.title_pairs"
# At --scale 1: the default --rows events and this many candidate title pairs.
DEFAULT_PAIRS = 200_000
# Matcher tasks read about this much each: a few tasks at the default scale, more as it grows.
PAIRS_SHARD_BYTES = 2 << 20


def example_dags_folder() -> Path:
    """The example DAGs shipped inside the package (works from a wheel as from a checkout)."""
    import airflow_provider_mlp.example_dags

    return Path(airflow_provider_mlp.example_dags.__file__).resolve().parent


def _airflow(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    airflow = Path(sys.executable).with_name("airflow")
    return subprocess.run([str(airflow), *args], env=env, capture_output=True, text=True, check=False)


_started = time.monotonic()


def _step(message: str) -> None:
    print(f"[mlp demo {time.monotonic() - _started:6.1f}s] {message}", flush=True)


def _dags_test(dag_id: str, conf: dict[str, object], env: dict[str, str]) -> tuple[bool, str]:
    """``airflow dags test`` with progress: one line per task as Airflow starts and ends it."""
    from airflow_provider_mlp.compute.local import stream_process

    airflow = Path(sys.executable).with_name("airflow")
    lines: list[str] = []

    def on_line(line: str) -> None:
        lines.append(line + "\n")
        match = _TASK_LINE.search(line)
        if match:
            verb, task_id, map_index = match.groups()
            shard = f"[{map_index}]" if map_index != "-1" else ""
            if verb == "end task":
                _step(f"  {task_id}{shard} done")
        elif "pairs scored in" in line:  # the audit task's own print
            _step("  " + line.split("] ")[-1].strip()[:160])
        else:
            for marker in _PROGRESS_MARKERS:
                if marker in line:
                    # Airflow's log line: "<time> [info] <message> [<logger>] loc=...": the message.
                    _step("  " + line[line.index(marker) :].split(" [")[0].strip()[:160])
                    break

    code = stream_process([str(airflow), "dags", "test", dag_id, "--conf", json.dumps(conf)], env=env, on_line=on_line)
    output = "".join(lines)
    ok = code == 0 and "state=failed" not in output and "DagRun failed" not in output
    return ok, output


# Log lines of the DAGs' tasks worth showing as progress (a line starting with one of these).
_PROGRESS_MARKERS = ("Committed ", "Idempotency key ")
_TASK_LINE = re.compile(r"\[DAG TEST\] (starting|end task) task_id=(\S+) map_index=(-?\d+)")


def _report(store: Path | None, folder: str, name: str) -> dict[str, object] | None:
    path = store / folder / f"{name}.json" if store is not None else None
    if path is None or not path.exists():
        return None
    report: dict[str, object] = json.loads(path.read_text())
    return report


def demo(dags_folder: Path | None, rows: int, scale: float = 1.0) -> int:
    """Generate the data, run the quickstart and entity-resolution DAGs with `airflow dags test`, report.

    ``scale`` multiplies the data: ``rows`` events for the quickstart and 200,000 candidate title
    pairs for entity resolution at 1.
    """
    from airflow_provider_mlp.demo.data import create_sample_table
    from airflow_provider_mlp.demo.entity_resolution import create_title_pairs

    if scale <= 0:
        print(f"mlp demo: --scale must be > 0, got {scale}", file=sys.stderr)
        return 2
    started = time.monotonic()
    s = settings()
    events = max(1, int(rows * scale))
    pairs = max(1_000, int(DEFAULT_PAIRS * scale))
    _step(f"MLP_HOME={s.home}")
    _step(f"catalog: {s.catalog_uri}  warehouse: {s.warehouse}")
    folder = dags_folder or example_dags_folder()
    for dag_id in (QUICKSTART_DAG_ID, ENTITY_RESOLUTION_DAG_ID):
        if not (folder / f"{dag_id}.py").exists():
            print(f"mlp demo: {folder} has no {dag_id}.py (pass --dags-folder)", file=sys.stderr)
            return 2

    _step(f"[1/4] generating data (scale {scale:g}): {events:,} events, {pairs:,} candidate title pairs")
    table = create_sample_table(SAMPLE_TABLE, rows=events)
    _step(f"  {SAMPLE_TABLE}: snapshot {table.current_snapshot_id}")
    pair_table, truth = create_title_pairs(PAIRS_TABLE, pairs)
    _step(f"  {PAIRS_TABLE}: snapshot {pair_table.current_snapshot_id}; ground truth in {truth.identifier}")

    env = dict(os.environ)
    env.setdefault("AIRFLOW_HOME", str(s.home / "airflow"))
    env["AIRFLOW__CORE__DAGS_FOLDER"] = str(folder)
    env.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
    env["MLP_HOME"] = str(s.home)
    _step(f"[2/4] airflow metadata database (SQLite) in AIRFLOW_HOME={env['AIRFLOW_HOME']}")
    migrated = _airflow(["db", "migrate"], env)
    if migrated.returncode != 0:
        print(migrated.stdout[-4000:], migrated.stderr[-4000:], sep="\n", file=sys.stderr)
        print("mlp demo: `airflow db migrate` failed", file=sys.stderr)
        return migrated.returncode

    # `airflow dags test` picks the run id itself (manual__<time>); the DAGs store their reports
    # under this label and record the real run id in them, which is what the report names.
    label = f"mlp_demo__{time.strftime('%Y%m%dT%H%M%S')}"
    local_store = Path(urlparse(s.artifact_store).path) if s.artifact_store.startswith("file://") else None
    runs: list[tuple[str, str, dict[str, object] | None, float]] = []
    dag_runs: tuple[tuple[int, str, dict[str, object], str], ...] = (
        (3, QUICKSTART_DAG_ID, {"table": SAMPLE_TABLE, "report_name": label}, "quickstart"),
        (
            4,
            ENTITY_RESOLUTION_DAG_ID,
            {"pairs_table": PAIRS_TABLE, "shard_bytes": PAIRS_SHARD_BYTES, "report_name": label},
            "entity_resolution",
        ),
    )
    for number, dag_id, conf, folder_name in dag_runs:
        _step(f"[{number}/4] airflow dags test {dag_id}")
        dag_started = time.monotonic()
        ok, output = _dags_test(dag_id, conf, env)
        if not ok:
            print(output[-8000:], file=sys.stderr)
            print(f"mlp demo: the {dag_id} run failed", file=sys.stderr)
            return 1
        runs.append((dag_id, folder_name, _report(local_store, folder_name, label), time.monotonic() - dag_started))

    print()
    print("mlp demo report")
    for dag_id, folder_name, report, seconds in runs:
        if report is None:
            print(f"  {dag_id}: report stored under {s.artifact_store}/{folder_name}/{label}.json ({seconds:.0f}s)")
            continue
        print(f"  {dag_id}  run {report.get('run_id')}  ({seconds:.0f}s)")
        if dag_id == QUICKSTART_DAG_ID:
            print(f"    {report.get('rows'):,} events of {report.get('table')} read in {report.get('shards')} shards")
        else:
            print(
                f"    {report.get('scored'):,} pairs scored in {report.get('shards')} shards, "
                f"{report.get('matched'):,} matched: precision {report.get('precision')}, recall "
                f"{report.get('recall')} (F1 {report.get('f1')})"
            )
            print(
                f"    matches committed to {report.get('matches_table')} as snapshot {report.get('snapshot_id')} "
                "(precision and recall are in its summary)"
            )
        if local_store is not None:
            print(f"    report: {local_store / folder_name / f'{label}.json'}")
    print(
        f"  Airflow UI: `mlp airflow up` (AIRFLOW_HOME={env['AIRFLOW_HOME']}), then DAGs -> "
        f"{ENTITY_RESOLUTION_DAG_ID} -> the run above"
    )
    _step(f"done in {time.monotonic() - started:.1f}s")
    return 0
