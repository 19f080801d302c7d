"""Cache-hit lookup throughput and p99: this service's dispatcher vs a stock ``@bentoml.api`` endpoint.

Both run under ``bentoml serve`` (2 workers each, metrics enabled, BentoML defaults otherwise) on
127.0.0.1 against one real memcached; wrk (Debian package ``wrk``) drives each at 1 and 32
connections, samples interleaved (the order rotates), medians with min-max spread.

    .venv/bin/python benchmarks/serving.py [--quick] [--samples N] [--seconds S]

Last line: ``bench: serving_vs_bentoml=X p99_ms=N`` (X = our req/s / stock req/s at 32 connections,
N = our p99 at 32 connections).
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.support.memcached import MemcachedProcess
from tests.support.serving import ServingProcess, http

BODY = {"keys": [5, 7], "weights": {"views": 1.0, "hours": 2.0}}
LUA = """wrk.method = "POST"
wrk.body = '{body}'
wrk.headers["Content-Type"] = "application/json"
"""


def _seconds(text: str) -> float:
    value, unit = re.match(r"([\d.]+)(us|ms|s)", text).groups()  # type: ignore[union-attr]
    return float(value) * {"us": 1e-6, "ms": 1e-3, "s": 1.0}[unit]


def run_wrk(url: str, script: Path, connections: int, seconds: float) -> tuple[float, float, int]:
    out = subprocess.run(
        [
            "wrk",
            f"-t{min(2, connections)}",
            f"-c{connections}",
            f"-d{max(1, round(seconds))}s",
            "--latency",
            "-s",
            str(script),
            url,
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=seconds + 30,
    ).stdout
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    p99 = _seconds(re.search(r"\s99%\s+(\S+)", out).group(1))  # type: ignore[union-attr]
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return rate, p99 * 1000.0, int(errors.group(1)) if errors else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2 samples of 2 s (under a minute)")
    parser.add_argument("--samples", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=8.0)
    args = parser.parse_args()
    samples, seconds = (2, 2.0) if args.quick else (args.samples, args.seconds)
    if shutil.which("wrk") is None:
        print("wrk is not installed (apt-get install -y wrk)", file=sys.stderr)
        return 2
    import cloudpickle
    import pyarrow as pa

    work = Path(tempfile.mkdtemp(prefix="mlp-bench-serving-"))
    import os

    os.environ.update(
        {"BENTOML_HOME": str(work / "bentoml"), "MLP_HOME": str(work / "home"), "BENTOML_DO_NOT_TRACK": "true"}
    )
    import tests.support.serving_models as models
    from airflow_provider_mlp.precompute import publish
    from airflow_provider_mlp.serving.models import ModelRecord, save_model

    cloudpickle.register_pickle_by_value(models)
    save_model(models.LinearScorer({"a": 1.0}), ModelRecord(name="bench", env_id="bench-env"))
    script = work / "lookup.lua"
    script.write_text(LUA.format(body=json.dumps(BODY)))
    with MemcachedProcess(memory_mb=64) as memcached:
        ids = list(range(1, 10_001))
        publish(
            pa.table({"title_id": ids, "views": [i * 100 for i in ids], "hours": [i * 1.5 for i in ids]}),
            key="title_id",
            values=["views", "hours"],
            namespace="bench-aggregates",
            servers=memcached.address,
        )
        env = {
            "MLP_HOME": str(work / "home"),
            "BENTOML_HOME": str(work / "bentoml"),
            "MLP_SERVING_MODEL": "bench",
            "MLP_SERVING_LOOKUP_NAMESPACE": "bench-aggregates",
            "MLP_MEMCACHED_SERVERS": memcached.address,
            "MLP_SERVING_WORKERS": "2",
            "MLP_SERVING_JOB_WORKERS": "0",
        }
        ours = ServingProcess(env, work / "ours.log")
        stock = ServingProcess(env, work / "stock.log", service="airflow_provider_mlp.serving.stock:StockLookupService")
        with ours, stock:
            targets = {"ours": ours.url + "/v1/lookup", "bentoml": stock.url + "/lookup"}
            for name, url in targets.items():  # same answer from both, and warm
                status, _, body = http("POST", url, BODY)
                assert status == 200 and [r["key"] for r in body["results"]] == [7, 5], (name, body)
                run_wrk(url, script, 32, 1.0)
            results: dict[tuple[str, int], list[tuple[float, float, int]]] = {}
            names = list(targets)
            for sample in range(samples):
                for connections in (1, 32):
                    order = names[sample % 2 :] + names[: sample % 2]
                    for name in order:
                        got = run_wrk(targets[name], script, connections, seconds)
                        results.setdefault((name, connections), []).append(got)
                        print(
                            f"sample {sample + 1}/{samples} c={connections:<2} {name:<8} {got[0]:>9,.0f} req/s  "
                            f"p99 {got[1]:7.2f} ms  non-2xx {got[2]}",
                            flush=True,
                        )
    print(
        f"{'contender':<10}{'conns':>6}{'median req/s':>14}{'spread req/s':>22}{'median p99 ms':>15}{'spread p99':>18}"
    )
    medians: dict[tuple[str, int], tuple[float, float]] = {}
    for (name, connections), runs in sorted(results.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        rates = sorted(r[0] for r in runs)
        p99s = sorted(r[1] for r in runs)
        medians[(name, connections)] = (statistics.median(rates), statistics.median(p99s))
        print(
            f"{name:<10}{connections:>6}{medians[(name, connections)][0]:>14,.0f}"
            f"{f'{rates[0]:,.0f} - {rates[-1]:,.0f}':>22}{medians[(name, connections)][1]:>15.2f}"
            f"{f'{p99s[0]:.2f} - {p99s[-1]:.2f}':>18}"
        )
        if any(r[2] for r in runs):
            print(f"  warning: {name} answered non-2xx during the run", flush=True)
    shutil.rmtree(work, ignore_errors=True)
    ratio = medians[("ours", 32)][0] / medians[("bentoml", 32)][0]
    single = medians[("ours", 1)][0] / medians[("bentoml", 1)][0]
    print(f"ours vs stock @bentoml.api: {ratio:.1f}x at 32 connections, {single:.1f}x at 1 connection")
    print(f"bench: serving_vs_bentoml={ratio:.1f} p99_ms={medians[('ours', 32)][1]:.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
