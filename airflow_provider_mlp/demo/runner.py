"""The main job on embedded defaults: generated data, the quickstart and use-case DAGs through a real
``airflow dags test`` each, the content-performance lookup service (``bentoml serve``) queried, and a
short report naming the runs by their run ids."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from airflow_provider_mlp.config import parse_servers, settings
from airflow_provider_mlp.demo import services

QUICKSTART_DAG_ID = "mlp_quickstart"
ENTITY_RESOLUTION_DAG_ID = "mlp_entity_resolution"
CONTENT_PERFORMANCE_DAG_ID = "mlp_content_performance"
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


def _report(store: Path | None, folder: str, name: str) -> dict[str, Any] | None:
    path = store / folder / f"{name}.json" if store is not None else None
    if path is None or not path.exists():
        return None
    report: dict[str, Any] = json.loads(path.read_text())
    return report


def _print_quickstart(report: dict[str, Any]) -> None:
    print(f"    {report.get('rows'):,} events of {report.get('table')} read in {report.get('shards')} shards")


def _print_entity_resolution(report: dict[str, Any]) -> None:
    print(
        f"    {report.get('scored'):,} pairs scored in {report.get('shards')} shards, "
        f"{report.get('matched'):,} matched: precision {report.get('precision')}, recall "
        f"{report.get('recall')} (F1 {report.get('f1')})"
    )
    print(
        f"    matches committed to {report.get('matches_table')} as snapshot {report.get('snapshot_id')} "
        "(precision and recall are in its summary)"
    )


def _print_content_performance(report: dict[str, Any]) -> None:
    print(
        f"    {report.get('events_table')} aggregated in {report.get('shards')} shards into "
        f"{report.get('cube_rows'):,} cube rows; published to memcached namespace {report.get('namespace')!r} "
        f"as version {report.get('version')} (seq {report.get('seq')})"
    )


@dataclass
class _DagStep:
    dag_id: str
    conf: dict[str, Any]
    # Where the DAG's report task stores its JSON in the artifact store, and how the report shows it;
    # None: the DAG writes no report (the model explainers are reported from the model store).
    folder: str | None = None
    show: Callable[[dict[str, Any]], None] | None = None


_RUN_ID = re.compile(r"\b(manual__\d{4}-\d{2}-\d{2}T[0-9:.+-]+)")


def _query_lookup(url: str, params: dict[str, Any]) -> dict[str, Any]:
    import urllib.error
    import urllib.request

    headers = {"Content-Type": "application/json"}
    token = os.environ.get("MLP_SERVING_TOKEN", "")
    if token:  # the service inherits this environment, so it asks for the same token
        headers["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(
        f"{url}/v1/lookup", data=json.dumps({"params": params}).encode(), headers=headers, method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            answer: dict[str, Any] = json.loads(response.read())
    except urllib.error.HTTPError as exc:
        raise services.ServiceStartError(
            f"POST {url}/v1/lookup answered {exc.code}: {exc.read()[:500].decode(errors='replace')}"
        ) from None
    except (urllib.error.URLError, OSError) as exc:
        raise services.ServiceStartError(f"POST {url}/v1/lookup failed: {exc}") from None
    return answer


def _sample_answer_line(answer: dict[str, Any], params: dict[str, Any]) -> str:
    result = answer.get("result") or {}
    series = result.get("views") if isinstance(result, dict) else None
    total = sum(series) if isinstance(series, list) else None
    slices = ", ".join(f"{k}={'/'.join(v)}" for k, v in params.get("filters", {}).items())
    version = (answer.get("version") or {}).get("tag")
    shown = f"{total:,} views" if total is not None else json.dumps(result)[:200]
    return f"{slices}, {params.get('start')}..{params.get('end')}: {shown} (cache version {version})"


def _unreachable_memcached(servers: Sequence[str]) -> list[str]:
    """``host:port (reason)`` of each configured memcached server a TCP connection cannot reach."""
    import socket

    unreachable = []
    # Already checked by settings(): parsed again only to split hosts from ports.
    for host, port in parse_servers(servers, source="memcached_servers"):
        try:
            socket.create_connection((host, port), timeout=2).close()
        except OSError as exc:
            unreachable.append(f"{host}:{port} ({exc.strerror or exc})")
    return unreachable


def demo(dags_folder: Path | None, rows: int, scale: float = 1.0, serve: bool = False) -> int:
    """Generate the data, run the quickstart and use-case DAGs with `airflow dags test`, query the
    content-performance lookup service, report.

    ``scale`` multiplies the data: ``rows`` events for the quickstart, 200,000 candidate title
    pairs for entity resolution and 400,000 plays for content performance at 1. ``serve`` keeps
    the lookup service and the Streamlit app running at the end, until Ctrl-C.
    """
    from airflow_provider_mlp.demo import content_performance, explainers
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
    _step(f"catalog: {s.catalog_uri}  warehouse: {s.warehouse}  memcached: {','.join(s.memcached_servers)}")
    unreachable = _unreachable_memcached(s.memcached_servers)
    if unreachable:
        # Before minutes of work, not at the publish step that needs it.
        print(
            f"mlp demo: memcached is not reachable at {'; '.join(unreachable)}. Start it (bash scripts/setup.sh "
            "starts one on 127.0.0.1:11211) or point MLP_MEMCACHED_SERVERS ([mlp] memcached_servers) at a running one.",
            file=sys.stderr,
        )
        return 2
    folder = dags_folder or example_dags_folder()
    # `airflow dags test` picks the run id itself (manual__<time>); the DAGs store their reports
    # under this label and record the real run id in them, which is what the report names.
    label = f"mlp_demo__{time.strftime('%Y%m%dT%H%M%S')}"
    steps = [
        _DagStep(QUICKSTART_DAG_ID, {"table": SAMPLE_TABLE, "report_name": label}, "quickstart", _print_quickstart),
        _DagStep(
            ENTITY_RESOLUTION_DAG_ID,
            {"pairs_table": PAIRS_TABLE, "shard_bytes": PAIRS_SHARD_BYTES, "report_name": label},
            "entity_resolution",
            _print_entity_resolution,
        ),
        _DagStep(
            CONTENT_PERFORMANCE_DAG_ID,
            {"report_name": label},
            "content_performance",
            _print_content_performance,
        ),
    ]
    explainer_runs = [_DagStep(run["dag_id"], run["conf"]) for run in explainers.demo_runs()]
    # The explainer DAGs live in one file; the others in a file named after the DAG.
    for dag_file in [*(step.dag_id for step in steps), explainers.DAGS_FILE]:
        if not (folder / f"{dag_file}.py").exists():
            print(f"mlp demo: {folder} has no {dag_file}.py (pass --dags-folder)", file=sys.stderr)
            return 2
    steps[2:2] = explainer_runs
    total_steps = 3 + len(steps)

    _step(f"[1/{total_steps}] generating data (scale {scale:g})")
    table = create_sample_table(SAMPLE_TABLE, rows=events)
    _step(f"  {SAMPLE_TABLE}: {events:,} events, snapshot {table.current_snapshot_id}")
    pair_table, truth = create_title_pairs(PAIRS_TABLE, pairs)
    _step(
        f"  {PAIRS_TABLE}: {pairs:,} candidate title pairs, snapshot {pair_table.current_snapshot_id}; "
        f"ground truth in {truth.identifier}"
    )
    features = explainers.prepare(scale=scale)
    _step(f"  {features['table']}: {features['rows']:,} titles' features, snapshot {features['snapshot_id']}")
    viewing = content_performance.prepare(scale=scale)
    _step(
        f"  {viewing['events_table']}: {viewing['events']:,} plays of {viewing['titles']} titles over "
        f"{viewing['days']} days, snapshot {viewing['snapshot_id']}"
    )

    env = dict(os.environ)
    env.setdefault("AIRFLOW_HOME", str(s.home / "airflow"))
    env["AIRFLOW__CORE__DAGS_FOLDER"] = str(folder)
    env.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
    env["MLP_HOME"] = str(s.home)
    # The model store the explainer DAGs publish to, and this process reads the report from.
    bentoml_home = os.environ.setdefault("BENTOML_HOME", str(s.home / "bentoml"))
    env["BENTOML_HOME"] = bentoml_home
    _step(f"[2/{total_steps}] airflow metadata database (SQLite) in AIRFLOW_HOME={env['AIRFLOW_HOME']}")
    migrated = _airflow(["db", "migrate"], env)
    if migrated.returncode != 0:
        print(migrated.stdout[-4000:], migrated.stderr[-4000:], sep="\n", file=sys.stderr)
        print("mlp demo: `airflow db migrate` failed", file=sys.stderr)
        return migrated.returncode

    local_store = Path(urlparse(s.artifact_store).path) if s.artifact_store.startswith("file://") else None
    runs: list[tuple[_DagStep, dict[str, Any] | None, str | None, float]] = []
    for number, step in enumerate(steps, start=3):
        _step(f"[{number}/{total_steps}] airflow dags test {step.dag_id}")
        dag_started = time.monotonic()
        ok, output = _dags_test(step.dag_id, step.conf, env)
        if not ok:
            print(output[-8000:], file=sys.stderr)
            print(f"mlp demo: the {step.dag_id} run failed", file=sys.stderr)
            return 1
        report = _report(local_store, step.folder, label) if step.folder else None
        found = _RUN_ID.search(output)
        runs.append((step, report, found.group(1) if found else None, time.monotonic() - dag_started))

    _step(f"[{total_steps}/{total_steps}] the content-performance lookup service (bentoml serve)")
    logs = s.home / "logs"
    service = services.lookup_service(
        {**content_performance.service_env(",".join(s.memcached_servers)), "MLP_HOME": str(s.home)},
        logs / "lookup-service.log",
    )
    app: services.BackgroundService | None = None
    try:
        service.start()
        service_url = service.health_url.removesuffix("/readyz")
        sample = content_performance.sample_params(days=int(viewing["days"]))
        answer = _query_lookup(service_url, sample)
        _step(f"  {service_url} ready; sample answer: {_sample_answer_line(answer, sample)}")
        if serve:
            app = services.streamlit_app(
                content_performance.app_path(), logs / "streamlit.log", args=["--url", service_url]
            )
            app.start()

        print()
        print("mlp demo report")
        for step, report, run_id, seconds in runs:
            if report is None or step.show is None or step.folder is None:
                print(f"  {step.dag_id}  run {run_id or '(see the Airflow UI)'}  ({seconds:.0f}s)")
                if step.dag_id == explainers.EXPLAINER_DAG_ID:
                    print(f"    models in the BentoML store (BENTOML_HOME={bentoml_home}), with their environments:")
                    for line in explainers.format_summary(explainers.summary()):
                        print(f"      {line}")
                continue
            print(f"  {step.dag_id}  run {report.get('run_id')}  ({seconds:.0f}s)")
            step.show(report)
            if local_store is not None:
                print(f"    report: {local_store / step.folder / f'{label}.json'}")
        print(f"  lookup service: POST {service_url}/v1/lookup {json.dumps({'params': sample})}")
        print(f"    -> {_sample_answer_line(answer, sample)}")
        print(
            f"  Airflow UI: `mlp airflow up` (AIRFLOW_HOME={env['AIRFLOW_HOME']}), then DAGs -> "
            f"{ENTITY_RESOLUTION_DAG_ID} or {CONTENT_PERFORMANCE_DAG_ID} -> the runs above"
        )
        if app is not None:
            app_url = app.health_url.removesuffix("/_stcore/health")
            print(f"  Streamlit app: {app_url} (content performance; the lookup service at {service_url})")
        else:
            print("  Streamlit app: `mlp demo --serve` keeps the lookup service and the app running at the end")
        _step(f"done in {time.monotonic() - started:.1f}s")
        if app is not None:
            print("serving until Ctrl-C", flush=True)
            try:
                while True:
                    time.sleep(3600)
            except KeyboardInterrupt:
                pass
        return 0
    except services.ServiceStartError as exc:
        print(f"mlp demo: {exc}\nservice log: {service.log_path}", file=sys.stderr)
        return 1
    finally:
        if app is not None:
            app.stop()
        service.stop()
