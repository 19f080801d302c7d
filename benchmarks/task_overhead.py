"""Task overhead: MlpPodOperator's local backend against a plain @task and @task.virtualenv (uv).

For two tasks, a no-op and one importing numpy + pandas + scikit-learn (``--quick``: numpy only),
it measures, side by side in one run and interleaved (A B C D, A B C D, ...):

- ``plain``: ``PythonOperator`` in this process (what a plain ``@task`` costs once its worker runs);
- ``virtualenv``: ``PythonVirtualenvOperator`` with the same pinned packages, installed by uv from a
  warm uv cache into a fresh virtualenv, as ``@task.virtualenv`` does on every run;
- ``mlp warm``: ``MlpPodOperator(backend="local")`` with the environment already in the node cache;
- ``mlp cold``: the same with the node cache emptied first (download from the local store, verify,
  unpack, relink).

Each sample records when the user function's first line ran and when its last line ran; the
overhead is everything else (start latency + collecting the result). The import of the packages is
the function's own work and is the same for every contender. For cold starts it also times GNU
``zstd -d | tar -x`` of the same archive (goal: cold <= 1.3 x that + 0.5 s), as one more contender
of the heavy round. Both start from the same state, untimed: their previous tree deleted and the
disk synced. The order of the contenders rotates from round to round.

Last line: ``bench: warm_overhead_s=S cold_overhead_s=S vs_virtualenv=X`` (warm/cold = our overhead
minus the plain @task's, heavy task; X = virtualenv's overhead / ours warm).
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DATA = Path(__file__).resolve().parent / ".data" / "task_overhead"
FULL = ["numpy", "pandas", "scikit-learn"]
QUICK = ["numpy"]


def noop_task() -> dict[str, float]:
    import time

    first = time.time()
    return {"first": first, "last": time.time()}


def heavy_task() -> dict[str, float]:
    import time

    first = time.time()
    import importlib

    for name in ("numpy", "pandas", "sklearn"):
        try:
            importlib.import_module(name)
        except ImportError:
            if name == "numpy":
                raise
    return {"first": first, "last": time.time()}


@dataclass
class _TI:
    task_id: str
    dag_id: str = "bench"
    map_index: int = -1
    try_number: int = 1


def _context(task_id: str, run: int) -> dict[str, Any]:
    return {"ti": _TI(task_id, try_number=run + 1), "run_id": f"bench__{run}", "dag": None, "params": {}}


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _measure(
    execute: Callable[[], Any], setup: Callable[[], Any] | None = None, cpu: list[float] | None = None
) -> float:
    if setup is not None:
        setup()  # untimed: emptying the node cache is not part of a cold start
    cpu_before = _children_cpu()
    started = time.time()
    marks = execute()
    ended = time.time()
    if cpu is not None:
        cpu.append(_children_cpu() - cpu_before)
    if not isinstance(marks, dict) or "first" not in marks:
        raise SystemExit(f"the task returned {marks!r}, not its time marks")
    return (marks["first"] - started) + (ended - marks["last"])


def _median_spread(values: list[float]) -> str:
    return f"{statistics.median(values):.3f}s (min {min(values):.3f}, max {max(values):.3f}, n={len(values)})"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="numpy only, fewer samples (under a minute)")
    parser.add_argument("--repeat", type=int, default=None, help="samples per contender (default 5, quick 3)")
    args = parser.parse_args()
    packages = QUICK if args.quick else FULL
    repeat = args.repeat or (3 if args.quick else 5)

    # @task.virtualenv uses uv when it is on PATH, as it is in an Airflow image that ships it.
    os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    home = Path(tempfile.mkdtemp(prefix="mlp-bench-home-", dir=DATA.parent if DATA.parent.exists() else None))
    os.environ["MLP_HOME"] = str(home)
    for var in ("MLP_ENV_STORE", "MLP_ENV_CACHE_DIR", "MLP_ARTIFACT_STORE"):
        os.environ.pop(var, None)

    from airflow.providers.standard.operators.python import PythonOperator, PythonVirtualenvOperator
    from airflow.sdk import DAG

    from airflow_provider_mlp.config import settings
    from airflow_provider_mlp.operators.compute import MlpPodOperator
    from env_builder.builder import build
    from env_builder.spec import EnvSpec, running_python
    from env_builder.store import EnvStore

    try:
        started = time.perf_counter()
        ref = build(EnvSpec(python=running_python(), pip=packages))
        print(
            f"environment {ref.id[:12]} ({', '.join(packages)}): {ref.size / 1e6:.1f} MB packed, "
            f"built in {time.perf_counter() - started:.1f}s",
            flush=True,
        )
        store = EnvStore.open()
        pins = [f"{name}=={version}" for name, version in store.manifest(ref.id)["lock"]["packages"]]
        cache = settings().env_cache_dir
        archive = Path(store.root) / store.archive_key_of(ref.id, store.manifest(ref.id))

        def drop_cache() -> None:
            shutil.rmtree(cache, ignore_errors=True)
            # Deleting 250 MB leaves the disk journal (and, on a disk mounted with discard, its TRIMs)
            # to be committed later: without a sync that cost lands in whatever is timed next.
            os.sync()

        gnu_target = home / "untar"

        def gnu_unpack() -> float:
            # The same starting state as a cold sample: its previous tree deleted, the disk synced.
            shutil.rmtree(gnu_target, ignore_errors=True)
            gnu_target.mkdir()
            os.sync()
            cpu_before = _children_cpu()
            began = time.perf_counter()
            subprocess.run(f"zstd -d -q -c {archive} | tar -x -C {gnu_target}", shell=True, check=True)
            elapsed = time.perf_counter() - began
            cpu["gnu"].append(_children_cpu() - cpu_before)
            return elapsed

        results: dict[tuple[str, str], list[float]] = {}
        gnu: list[float] = []
        # CPU seconds (user + system) of the processes each cold contender ran: unlike wall time,
        # barely moved by other work sharing the cores.
        cpu: dict[str, list[float]] = {"mlp cold": [], "gnu": []}
        cold_vs_gnu: list[float] = []
        tasks = {"noop": noop_task, "heavy": heavy_task}
        for run in range(repeat):
            for task_name, fn in tasks.items():
                dag = DAG(f"bench_{task_name}_{run}", schedule=None)
                contenders: dict[str, Callable[[], Any]] = {
                    "plain": lambda fn=fn, run=run, dag=dag: PythonOperator(
                        task_id="plain", python_callable=fn, dag=dag
                    ).execute(
                        _context("plain", run)  # type: ignore[arg-type]
                    ),
                    "virtualenv": lambda fn=fn, run=run, dag=dag: PythonVirtualenvOperator(
                        task_id="venv", python_callable=fn, requirements=pins, serializer="cloudpickle", dag=dag
                    ).execute(_context("venv", run)),  # type: ignore[arg-type]
                    "mlp warm": lambda fn=fn, run=run, dag=dag: MlpPodOperator(
                        task_id="warm", python_callable=fn, env=ref.id, backend="local", dag=dag
                    ).execute(_context("warm", run)),  # type: ignore[arg-type]
                    "mlp cold": lambda fn=fn, run=run, dag=dag: MlpPodOperator(
                        task_id="cold", python_callable=fn, env=ref.id, backend="local", dag=dag
                    ).execute(_context("cold", run)),  # type: ignore[arg-type]
                }
                # Warm the node cache once before the first warm sample (a fresh DAG: task ids are unique).
                if run == 0 and task_name == "noop":
                    MlpPodOperator(
                        task_id="prime", python_callable=fn, env=ref.id, backend="local", dag=DAG("bench_prime")
                    ).execute(_context("prime", run))  # type: ignore[arg-type]
                names = [*contenders, "gnu"]  # GNU unpacks in the same places of the order as a cold start
                # The order rotates each round: what ran just before (a heavy import, a 250 MB delete
                # whose memory the VM hands back) weighs on whatever runs next.
                shift = run % len(names)
                for name in names[shift:] + names[:shift]:
                    if name == "gnu":
                        gnu.append(gnu_unpack())
                        continue
                    setup = drop_cache if name == "mlp cold" else None
                    # The noop task's cold start: its processes' CPU is the cold start's alone.
                    cold_cpu = cpu["mlp cold"] if name == "mlp cold" and task_name == "noop" else None
                    results.setdefault((task_name, name), []).append(_measure(contenders[name], setup, cold_cpu))
                if task_name == "heavy":
                    cold_vs_gnu.append(results[("heavy", "mlp cold")][-1] / gnu[-1])
            print(f"sample {run + 1}/{repeat} done", flush=True)

        print(f"\n{'task':<6} {'contender':<11} overhead: median (min, max)")
        for (task_name, name), values in results.items():
            print(f"{task_name:<6} {name:<11} {_median_spread(values)}")
        print(f"GNU zstd -d | tar -x of the same archive: {_median_spread(gnu)}")
        print(
            f"heavy cold / GNU within each round: {statistics.median(cold_vs_gnu):.2f}x "
            f"(min {min(cold_vs_gnu):.2f}, max {max(cold_vs_gnu):.2f})"
        )
        for name, values in cpu.items():
            print(f"CPU (user + system) of {name}: {_median_spread(values)}")

        med = {key: statistics.median(values) for key, values in results.items()}
        warm = med[("heavy", "mlp warm")] - med[("heavy", "plain")]
        cold = med[("heavy", "mlp cold")] - med[("heavy", "plain")]
        vs_virtualenv = med[("heavy", "virtualenv")] / med[("heavy", "mlp warm")]
        cold_goal = 1.3 * statistics.median(gnu) + 0.5
        print(
            f"\nwarm overhead beyond a plain @task: {warm:.3f}s (goal <= 0.5s); cold: {cold:.3f}s "
            f"(goal <= 1.3 x GNU + 0.5 = {cold_goal:.3f}s); @task.virtualenv / ours: {vs_virtualenv:.1f}x (goal >= 10)"
        )
        print(
            f"bench: warm_overhead_s={warm:.3f} cold_overhead_s={cold:.3f} vs_virtualenv={vs_virtualenv:.1f} "
            f"cold_vs_gnu={statistics.median(cold_vs_gnu):.2f} "
            f"cold_cpu_vs_gnu={statistics.median(cpu['mlp cold']) / statistics.median(cpu['gnu']):.2f}"
        )
        return 0
    finally:
        shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
