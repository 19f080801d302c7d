"""MlpPodOperator and @task.mlp on the kubernetes backend, through a real Airflow (`airflow dags test`),
the real Kubernetes client and KubernetesPodOperator's code paths, against the Kubernetes API test
server whose simulated kubelet runs each pod's real bootstrap command as a local process."""

from __future__ import annotations

import json
import os
import sys
import textwrap
from pathlib import Path

import pytest

from env_builder.builder import alias, build
from env_builder.spec import EnvSpec, running_python
from tests.support.airflow_runs import airflow_env, dags_test, task_states, write_dag
from tests.support.k8s_api_server import K8sApiServer

pytestmark = [pytest.mark.integration, pytest.mark.slow]

PY = sys.executable

DAG = textwrap.dedent(
    """
    from __future__ import annotations

    import os

    import pendulum
    from airflow.sdk import DAG, task

    from airflow_provider_mlp.operators.compute import MlpPodOperator

    COMMON = dict(
        backend="kubernetes",
        image="airflow-provider-mlp-runtime:test",
        get_logs=True,
        startup_check_interval_seconds=1,
        env_vars={{"PATH": {path!r}}},
    )


    def tokens(text: str) -> dict:
        import toolz

        return {{"words": dict(toolz.frequencies(text.split()))}}


    def fails() -> None:
        raise ValueError("bad shard 7: column 'title' is null")


    def hog() -> None:
        import time

        block = bytearray(400 << 20)
        for i in range(0, len(block), 4096):
            block[i] = 1
        time.sleep(10)  # holds the memory while the kubelet's watchdog looks


    def slow() -> None:
        import time

        time.sleep(30)


    with DAG("compute_k8s", schedule=None, start_date=pendulum.datetime(2024, 1, 1), catchup=False):
        counted = MlpPodOperator(
            task_id="in_env_sync",
            python_callable=tokens,
            op_args=["a b a"],
            env="demo/compute/toolz:latest",
            cpu=1,
            memory="1Gi",
            deferrable=False,
            **COMMON,
        )

        @task.mlp(deferrable=True, poll_interval=0.5, **COMMON)
        def deferred(n: int) -> int:
            return n * 2

        @task
        def report(words: dict, doubled: int) -> None:
            import json

            with open(os.environ["COMPUTE_REPORT"], "w") as fh:
                json.dump({{"words": words, "doubled": doubled}}, fh)

        report(counted.output, deferred(21))
        MlpPodOperator(task_id="remote_fails", python_callable=fails, deferrable=False, **COMMON)
        MlpPodOperator(task_id="oom", python_callable=hog, memory="128Mi", deferrable=False, **COMMON)
        MlpPodOperator(
            task_id="deadline", python_callable=slow, active_deadline_seconds=2, deferrable=False, **COMMON
        )
        MlpPodOperator(
            task_id="no_image",
            python_callable=slow,
            deferrable=False,
            startup_timeout_seconds=3,
            **{{**COMMON, "image": "registry.invalid/does-not-exist:1"}},
        )
    """
)


def test_pods_run_the_bootstrap_and_report_results_and_failures(
    k8s_api_server: K8sApiServer, mlp_home: Path, tmp_path: Path
) -> None:
    ref = build(EnvSpec(python=running_python(), pip=["toolz==1.0.0"]))
    alias(ref, "demo/compute/toolz:latest")
    path = f"{Path(PY).parent}{os.pathsep}{os.environ.get('PATH', '/usr/bin:/bin')}"
    dags = write_dag(tmp_path, "compute_k8s", DAG.format(path=path))
    report = tmp_path / "report.json"
    env = airflow_env(
        tmp_path, dags, MLP_HOME=str(mlp_home), COMPUTE_REPORT=str(report), **k8s_api_server.airflow_connection_env()
    )
    run = dags_test("compute_k8s", env)
    output = run.stdout + run.stderr
    states = task_states(env)
    assert states == {
        "in_env_sync": "success",
        "deferred": "success",
        "report": "success",
        "remote_fails": "failed",
        "oom": "failed",
        "deadline": "failed",
        "no_image": "failed",
    }, output[-6000:]
    assert json.loads(report.read_text()) == {"words": {"words": {"a": 2, "b": 1}}, "doubled": 42}
    # The function's exception comes back with its remote traceback; the OOM kill is one clear line.
    assert "ValueError: bad shard 7: column 'title' is null" in output and "Remote traceback" in output
    assert "OOMKilled (exit code 137)" in output
    assert "failed: pod DeadlineExceeded" in output
    assert "stuck waiting: ErrImagePull" in output or "stuck waiting: ImagePullBackOff" in output
    # The env was rehydrated inside the pod, into its env-cache volume.
    assert f"environment {ref.id} ready" in output
    # Succeeded pods are deleted, failed ones kept for inspection (delete_succeeded_pod).
    assert len(k8s_api_server.deleted_pods) == 2
    kept = k8s_api_server.pods
    assert len(kept) == 4
    for pod in kept:  # no XCom sidecar, and the restricted security context
        spec = pod["spec"]
        assert [c["name"] for c in spec["containers"]] == ["base"]
        security = spec["containers"][0]["securityContext"]
        assert security["readOnlyRootFilesystem"] and security["capabilities"]["drop"] == ["ALL"]
        assert spec["securityContext"]["runAsNonRoot"] is True
        assert {v["name"] for v in spec["volumes"]} >= {"mlp-scratch", "mlp-env-cache"}
