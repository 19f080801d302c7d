"""The Kubernetes API test server and its simulated kubelet, driven through the real clients: the
``kubernetes`` client, ``kubernetes_asyncio`` (the provider's async hook and trigger) and a real
``KubernetesPodOperator`` run by ``airflow dags test``, sync and deferrable."""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import subprocess
import sys
import textwrap
import urllib.error
import urllib.request
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psutil
import pytest
from kubernetes.client import ApiException, CoreV1Api, VersionApi
from kubernetes.watch import Watch

from tests.support.k8s_api_server import K8sApiServer, running_k8s_api_server

pytestmark = pytest.mark.integration

PY = sys.executable
NS = "default"


def _pod(name: str, code: str, **container: Any) -> dict[str, Any]:
    spec = container.pop("spec", {})
    labels = container.pop("labels", {"app": "sim-test"})
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": labels},
        "spec": {
            "restartPolicy": "Never",
            "containers": [{"name": "base", "image": "python:3.11-slim", "command": [PY, "-c", code], **container}],
            **spec,
        },
    }


def _base_status(v1: CoreV1Api, name: str) -> Any:
    return v1.read_namespaced_pod(name, NS).status.container_statuses[0]


def test_pods_through_the_kubernetes_client(k8s_api_server: K8sApiServer) -> None:
    v1 = k8s_api_server.client()
    assert VersionApi(v1.api_client).get_code().git_version.startswith("v1.")
    assert "pods" in {r.name for r in v1.get_api_resources().resources}

    created = v1.create_namespaced_pod(
        NS, _pod("crud", "import time; time.sleep(30)", labels={"app": "a", "tier": "x"})
    )
    assert created.metadata.uid and created.metadata.resource_version and created.metadata.creation_timestamp
    v1.create_namespaced_pod(NS, _pod("other", "pass", labels={"app": "b"}))

    def names(selector: str) -> list[str]:
        return [p.metadata.name for p in v1.list_namespaced_pod(NS, label_selector=selector).items]

    # The selector KubernetesPodOperator reattaches with: equality, inequality (true when absent), !key.
    assert names("app=a,tier=x,already_checked!=True,!airflow-worker") == ["crud"]
    assert names("app in (a,b)") == ["crud", "other"]
    assert names("app notin (a),!tier") == ["other"]
    assert [p.metadata.name for p in v1.list_namespaced_pod(NS, field_selector="metadata.name=other").items] == [
        "other"
    ]

    v1.patch_namespaced_pod("crud", NS, {"metadata": {"labels": {"already_checked": "True"}}})  # strategic merge
    assert names("app=a,already_checked!=True") == []
    v1.patch_namespaced_pod(
        "crud", NS, {"metadata": {"annotations": {"note": "merged"}}}, _content_type="application/merge-patch+json"
    )
    v1.patch_namespaced_pod("crud", NS, [{"op": "remove", "path": "/metadata/labels/tier"}])  # JSON patch
    pod = v1.read_namespaced_pod("crud", NS)
    assert pod.metadata.labels == {"app": "a", "already_checked": "True"}
    assert pod.metadata.annotations == {"note": "merged"}
    assert pod.status.phase == "Running"
    with pytest.raises(ApiException) as forbidden:
        v1.patch_namespaced_pod("crud", NS, {"spec": {"restartPolicy": "Always"}})
    assert forbidden.value.status == 422

    pid = k8s_api_server.kubelet.running_processes()[0]
    before_delete = v1.list_namespaced_pod(NS).metadata.resource_version
    deleted = v1.delete_namespaced_pod("crud", NS)
    assert deleted.metadata.deletion_timestamp is not None  # graceful: the kubelet stops it first
    final = None
    for event in Watch().stream(
        v1.list_namespaced_pod, NS, label_selector="app=a", resource_version=before_delete, timeout_seconds=10
    ):
        if event["type"] == "DELETED":
            final = event["object"]
            break
    assert final is not None, "no DELETED event"
    terminated = final.status.container_statuses[0].state.terminated
    assert (terminated.exit_code, terminated.reason) == (143, "Error")  # SIGTERM, as a kubelet stops it
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    with pytest.raises(ApiException) as missing:
        v1.read_namespaced_pod("crud", NS)
    body = json.loads(missing.value.body)
    assert (missing.value.status, body["kind"], body["reason"]) == (404, "Status", "NotFound")
    with pytest.raises(ApiException) as exists:
        v1.create_namespaced_pod(NS, _pod("other", "pass"))
    assert exists.value.status == 409


def test_a_pod_runs_its_command_and_its_log_is_plain_text(k8s_api_server: K8sApiServer) -> None:
    v1 = k8s_api_server.client()
    v1.create_namespaced_pod(NS, _pod("hello", "print('hi')"))
    response = v1.read_namespaced_pod_log("hello", NS, follow=True, timestamps=True, _preload_content=False)
    assert response.headers["Content-Type"].startswith("text/plain")
    lines = response.data.decode().splitlines()
    timestamp, _, message = lines[0].partition(" ")
    assert message == "hi" and timestamp.endswith("Z") and len(timestamp.split(".")[1]) == 10
    pod = k8s_api_server.wait_for_phase("hello", "Succeeded")
    status = v1.read_namespaced_pod("hello", NS).status
    base = status.container_statuses[0]
    assert base.state.terminated.exit_code == 0 and base.state.terminated.reason == "Completed"
    assert base.image_id and base.container_id.startswith("containerd://") and base.restart_count == 0
    assert pod["status"]["conditions"] and status.pod_ip and status.start_time
    reasons = [e.reason for e in v1.list_namespaced_event(NS, field_selector="involvedObject.name=hello").items]
    assert reasons[:1] == ["Scheduled"] and {"Pulled", "Created", "Started"} <= set(reasons)


def test_log_query_parameters(k8s_api_server: K8sApiServer) -> None:
    v1 = k8s_api_server.client()
    code = "import time\nprint('early', flush=True)\ntime.sleep(1.5)\nprint('late one')\nprint('late two')"
    v1.create_namespaced_pod(NS, _pod("params", code, spec={"restartPolicy": "OnFailure"}))
    k8s_api_server.wait_for_phase("params", "Succeeded")

    def log(**query: Any) -> bytes:
        query.setdefault("container", "base")
        return v1.read_namespaced_pod_log("params", NS, _preload_content=False, **query).data

    assert log() == b"early\nlate one\nlate two\n"
    assert log(tail_lines=1) == b"late two\n"
    assert log(since_seconds=1) == b"late one\nlate two\n"
    assert log(limit_bytes=3) == b"ear"
    with pytest.raises(ApiException) as no_previous:
        log(previous=True)
    assert no_previous.value.status == 400
    with pytest.raises(ApiException) as no_container:
        log(container="sidecar")
    assert no_container.value.status == 400


def test_a_restarted_container_keeps_its_previous_log(k8s_api_server: K8sApiServer) -> None:
    v1 = k8s_api_server.client()
    marker = k8s_api_server.host_path("/state/ran-once")
    code = (
        "import os, sys\nif os.path.exists('/state/ran-once'):\n    print('second run')\n    sys.exit(0)\n"
        "open('/state/ran-once', 'w').close()\nprint('first run')\nsys.exit(1)"
    )
    pod = _pod(
        "restarts",
        code,
        volumeMounts=[{"name": "state", "mountPath": "/state"}],
        spec={"restartPolicy": "OnFailure", "volumes": [{"name": "state", "hostPath": {"path": "/state"}}]},
    )
    v1.create_namespaced_pod(NS, pod)
    k8s_api_server.wait_for_phase("restarts", "Succeeded")
    assert marker.exists()
    base = _base_status(v1, "restarts")
    assert base.restart_count == 1 and base.last_state.terminated.exit_code == 1
    assert v1.read_namespaced_pod_log("restarts", NS, _preload_content=False).data == b"second run\n"
    previous = v1.read_namespaced_pod_log("restarts", NS, previous=True, _preload_content=False).data
    assert previous == b"first run\n"


def test_a_followed_log_streams_and_ends_after_the_container_terminated(k8s_api_server: K8sApiServer) -> None:
    v1 = k8s_api_server.client()
    code = "import time\nfor i in range(3):\n    print('line', i)\n    time.sleep(0.3)"
    v1.create_namespaced_pod(NS, _pod("stream", code, env=[{"name": "PYTHONUNBUFFERED", "value": "1"}]))
    response = v1.read_namespaced_pod_log("stream", NS, follow=True, _preload_content=False)
    seen = []
    for chunk in response.stream(amt=None):
        seen.append((chunk, _base_status(v1, "stream").state.running is not None))
    assert b"".join(c for c, _ in seen) == b"line 0\nline 1\nline 2\n"
    assert seen[0][1], "the first line arrived while the container was still running"
    assert _base_status(v1, "stream").state.terminated is not None


def test_a_failing_command_ends_failed_with_its_exit_code(k8s_api_server: K8sApiServer) -> None:
    v1 = k8s_api_server.client()
    code = "import sys; print('something broke', file=sys.stderr); sys.exit(3)"
    v1.create_namespaced_pod(NS, _pod("fails", code, terminationMessagePolicy="FallbackToLogsOnError"))
    k8s_api_server.wait_for_phase("fails", "Failed")
    terminated = _base_status(v1, "fails").state.terminated
    assert (terminated.exit_code, terminated.reason) == (3, "Error")
    assert terminated.message == "something broke\n"


def test_a_memory_hog_is_oom_killed(k8s_api_server: K8sApiServer) -> None:
    v1 = k8s_api_server.client()
    # Capped at 800 MiB, so that a broken watchdog fails the test instead of exhausting the machine.
    code = textwrap.dedent(
        """
        import time
        held = []
        for _ in range(200):
            held.append(b"x" * (4 << 20))
            time.sleep(0.002)
        time.sleep(60)
        """
    )
    limits = {"limits": {"memory": "100Mi"}}
    v1.create_namespaced_pod(NS, _pod("hog", code, resources=limits))
    pod = k8s_api_server.wait_for_phase("hog", "Failed")
    terminated = _base_status(v1, "hog").state.terminated
    assert (terminated.exit_code, terminated.reason) == (137, "OOMKilled")
    assert pod["status"]["qosClass"] == "Burstable"  # requests defaulted from the memory limit, no cpu
    assert "OOMKilling" in {e["reason"] for e in k8s_api_server.events("hog")}


def test_deadline_image_pull_failure_and_eviction(k8s_api_server: K8sApiServer) -> None:
    v1 = k8s_api_server.client()
    v1.create_namespaced_pod(NS, _pod("late", "import time; time.sleep(60)", spec={"activeDeadlineSeconds": 1}))
    pull = _pod("pull", "pass", image="registry.example.com/does-not-exist:1")
    v1.create_namespaced_pod(NS, pull)
    v1.create_namespaced_pod(NS, _pod("evicted", "import time; time.sleep(60)"))

    waiting = _base_status(v1, "pull").state.waiting
    assert waiting.reason == "ErrImagePull" and "not found" in waiting.message
    k8s_api_server.wait_for_pod(
        "pull",
        lambda p: (
            p is not None and p["status"]["containerStatuses"][0]["state"]["waiting"]["reason"] == "ImagePullBackOff"
        ),
    )
    assert v1.read_namespaced_pod("pull", NS).status.phase == "Pending"
    with pytest.raises(ApiException) as no_log:
        v1.read_namespaced_pod_log("pull", NS)
    assert no_log.value.status == 400 and "waiting to start" in json.loads(no_log.value.body)["message"]

    k8s_api_server.evict("evicted")
    evicted = k8s_api_server.wait_for_phase("evicted", "Failed")
    assert evicted["status"]["reason"] == "Evicted"

    late = k8s_api_server.wait_for_phase("late", "Failed", timeout=10)
    assert late["status"]["reason"] == "DeadlineExceeded"
    assert "DeadlineExceeded" in {e["reason"] for e in k8s_api_server.events("late")}
    assert "Killing" in {e["reason"] for e in k8s_api_server.events("late")}


def test_env_secrets_volumes_and_init_containers(k8s_api_server: K8sApiServer) -> None:
    v1 = k8s_api_server.client()
    k8s_api_server.create_secret("creds", {"token": "s3cr3t"})
    v1.create_namespaced_config_map(NS, {"metadata": {"name": "app"}, "data": {"mode": "fast"}})
    (k8s_api_server.host_path("/srv/shared") / "input.txt").parent.mkdir(parents=True)
    (k8s_api_server.host_path("/srv/shared") / "input.txt").write_text("from the node")
    code = textwrap.dedent(
        """
        import json, os
        result = {
            "token": os.environ["TOKEN"],
            "pod": os.environ["POD_NAME"],
            "greeting": os.environ["GREETING"],
            "init": open("/work/from-init.txt").read(),
            "node": open("/shared/input.txt").read(),
            "secret_file": open("/etc/creds/token").read(),
            "config": open("/etc/app/mode").read(),
            "mode": os.environ["MODE"],
            "cwd": os.path.samefile(os.getcwd(), os.path.join(os.environ["K8S_SIM_ROOT"], "work")),
        }
        open("/shared/result.json", "w").write(json.dumps(result))
        open("/claim/kept.txt", "w").write("on the claim")
        """
    )
    pod = _pod(
        "configured",
        code,
        env=[
            {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "token"}}},
            {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
            {"name": "WHO", "value": "world"},
            {"name": "GREETING", "value": "hello $(WHO)"},
            {"name": "MODE", "valueFrom": {"configMapKeyRef": {"name": "app", "key": "mode"}}},
        ],
        workingDir="/work",
        volumeMounts=[
            {"name": "scratch", "mountPath": "/work"},
            {"name": "node", "mountPath": "/shared"},
            {"name": "creds", "mountPath": "/etc/creds"},
            {"name": "app", "mountPath": "/etc/app"},
            {"name": "claim", "mountPath": "/claim"},
        ],
        spec={
            "volumes": [
                {"name": "scratch", "emptyDir": {}},
                {"name": "node", "hostPath": {"path": "/srv/shared"}},
                {"name": "creds", "secret": {"secretName": "creds"}},
                {"name": "app", "configMap": {"name": "app"}},
                {"name": "claim", "persistentVolumeClaim": {"claimName": "data"}},
            ],
            "initContainers": [
                {
                    "name": "prepare",
                    "image": "busybox",
                    "command": [PY, "-c", "open('/work/from-init.txt', 'w').write('prepared')"],
                    "volumeMounts": [{"name": "scratch", "mountPath": "/work"}],
                }
            ],
        },
    )
    v1.create_namespaced_pod(NS, pod)
    final = k8s_api_server.wait_for_phase("configured", "Succeeded", "Failed")
    assert final["status"]["phase"] == "Succeeded", k8s_api_server.pod_log("configured")
    assert final["status"]["initContainerStatuses"][0]["state"]["terminated"]["reason"] == "Completed"
    result = json.loads((k8s_api_server.host_path("/srv/shared") / "result.json").read_text())
    assert result == {
        "token": "s3cr3t",
        "pod": "configured",
        "greeting": "hello world",
        "init": "prepared",
        "node": "from the node",
        "secret_file": "s3cr3t",
        "config": "fast",
        "mode": "fast",
        "cwd": True,
    }
    assert (k8s_api_server.pvc_path("data") / "kept.txt").read_text() == "on the claim"


def test_watches_through_the_sync_and_async_clients(k8s_api_server: K8sApiServer) -> None:
    from airflow.providers.cncf.kubernetes.hooks.kubernetes import AsyncKubernetesHook

    v1 = k8s_api_server.client()
    start_rv = v1.list_namespaced_pod(NS).metadata.resource_version
    v1.create_namespaced_pod(NS, _pod("watched", "print('watched')"))
    phases = []
    for event in Watch().stream(
        v1.list_namespaced_pod,
        NS,
        field_selector="metadata.name=watched",
        resource_version=start_rv,
        timeout_seconds=10,
    ):
        phases.append((event["type"], event["object"].status.phase))
        if event["object"].status.phase == "Succeeded":
            break
    assert phases[0] == ("ADDED", "Pending") and phases[-1] == ("MODIFIED", "Succeeded")
    assert ("MODIFIED", "Running") in phases

    hook = AsyncKubernetesHook(
        conn_id=None, connection_extras={"kube_config_path": str(k8s_api_server.kubeconfig_path)}
    )

    async def through_the_async_hook() -> tuple[list[str], list[str], list[str], str]:
        events = [e.reason async for e in hook.watch_pod_events("watched", NS, timeout_seconds=1)]
        listed = [e.reason for e in (await hook.get_pod_events("watched", NS)).items]
        logs = await hook.read_logs("watched", NS, container_name="base")
        return events, listed, logs, (await hook.get_pod("watched", NS)).status.phase

    # The pod is Succeeded, so the hook's event watch stops at once; listing still sees every event.
    watched, listed, logs, phase = asyncio.run(through_the_async_hook())
    assert watched == [] and phase == "Succeeded"
    assert [line.partition(" ")[2] for line in logs] == ["watched"]
    assert {"Scheduled", "Started"} <= set(listed)


def test_kubernetes_pod_trigger_watches_a_starting_pod_to_success(tmp_path: Path) -> None:
    from airflow.providers.cncf.kubernetes.triggers.pod import KubernetesPodTrigger

    # A slow kubelet: the trigger finds the pod Pending and streams its events while it starts.
    with running_k8s_api_server(tmp_path / "k8s", start_delay=0.5) as server:
        server.client().create_namespaced_pod(NS, _pod("triggered", "import time; time.sleep(0.5); print('done')"))
        trigger = KubernetesPodTrigger(
            pod_name="triggered",
            pod_namespace=NS,
            trigger_start_time=datetime.now(UTC),
            base_container_name="base",
            kubernetes_conn_id=None,
            connection_extras={"kube_config_path": str(server.kubeconfig_path)},
            poll_interval=0.2,
            startup_check_interval=1,
        )

        async def first_event() -> Any:
            async for event in trigger.run():
                return event.payload

        payload = asyncio.run(first_event())
        assert payload["status"] == "success", payload
        watch_calls = [r for r in server.requests if r.path.endswith("/events") and r.query.get("watch") == "True"]
        assert watch_calls and watch_calls[0].query["fieldSelector"] == "involvedObject.name=triggered"
        assert server.pod_log("triggered") == "done\n"


def test_token_auth_and_status_errors(tmp_path: Path) -> None:
    with running_k8s_api_server(tmp_path / "k8s", token="sim-token") as server:
        v1 = server.client()  # the kubeconfig carries the token
        assert v1.list_namespaced_pod(NS).items == []
        with pytest.raises(urllib.error.HTTPError) as unauthorized:
            urllib.request.urlopen(f"{server.url}/api/v1/namespaces/default/pods", timeout=5)
        assert unauthorized.value.code == 401
        assert json.loads(unauthorized.value.read())["reason"] == "Unauthorized"
        request = urllib.request.Request(
            f"{server.url}/api/v1/namespaces/default/widgets", headers={"Authorization": "Bearer sim-token"}
        )
        with pytest.raises(urllib.error.HTTPError) as unknown:
            urllib.request.urlopen(request, timeout=5)
        assert unknown.value.code == 404 and json.loads(unknown.value.read())["kind"] == "Status"


KPO_DAG = textwrap.dedent(
    """
    from __future__ import annotations

    import pendulum
    from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator
    from airflow.sdk import DAG

    CODE = "import os\\nprint('hello from the pod', os.environ['MODE'])\\nprint('second line')"
    COMMON = dict(
        image="python:3.11-slim", get_logs=True, on_finish_action="delete_pod", startup_check_interval_seconds=1
    )

    with DAG("kpo_against_sim", schedule=None, start_date=pendulum.datetime(2024, 1, 1), catchup=False):
        KubernetesPodOperator(
            task_id="sync_ok", cmds=[{python!r}, "-c", CODE], env_vars={{"MODE": "sync"}}, deferrable=False, **COMMON
        )
        KubernetesPodOperator(
            task_id="deferred_ok",
            cmds=[{python!r}, "-c", CODE],
            env_vars={{"MODE": "deferred"}},
            deferrable=True,
            poll_interval=0.5,
            **COMMON,
        )
        KubernetesPodOperator(
            task_id="sync_fails",
            cmds=[{python!r}, "-c", "import sys; print('about to fail'); sys.exit(3)"],
            deferrable=False,
            log_events_on_failure=True,
            **COMMON,
        )
    """
)


@pytest.mark.slow
def test_kubernetes_pod_operator_runs_against_the_server_in_airflow(
    k8s_api_server: K8sApiServer, tmp_path: Path
) -> None:
    dags = tmp_path / "dags"
    dags.mkdir()
    (dags / "kpo_against_sim.py").write_text(KPO_DAG.format(python=PY))
    home = tmp_path / "airflow-home"
    env = {
        **os.environ,
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(dags),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        **k8s_api_server.airflow_connection_env(),
    }
    env.pop("KUBECONFIG", None)
    airflow = str(Path(PY).with_name("airflow"))
    migrate = subprocess.run([airflow, "db", "migrate"], env=env, capture_output=True, text=True, timeout=300)
    assert migrate.returncode == 0, migrate.stderr[-3000:]
    run = subprocess.run(
        [airflow, "dags", "test", "kpo_against_sim"], env=env, capture_output=True, text=True, timeout=300
    )
    output = run.stdout + run.stderr

    with sqlite3.connect(home / "airflow.db") as db:
        states = dict(db.execute("select task_id, state from task_instance").fetchall())
    assert states == {"sync_ok": "success", "deferred_ok": "success", "sync_fails": "failed"}, output[-5000:]
    # get_logs=True: the pod's output is in the task log, sync (followed with timestamps) and deferred.
    assert "[base] hello from the pod sync" in output
    assert "[base] logs: hello from the pod deferred" in output
    assert "about to fail" in output and "returned a failure" in output
    # on_finish_action="delete_pod": every pod is gone, the failed one after being marked checked.
    assert k8s_api_server.pods == []
    assert len(k8s_api_server.deleted_pods) == 3

    calls = [(r.method, r.path.rsplit("/", 1)[-1], r.query) for r in k8s_api_server.requests]
    lists = [q["labelSelector"] for m, last, q in calls if m == "GET" and last == "pods" and "labelSelector" in q]
    assert lists and all("already_checked!=True" in s and "!airflow-worker" in s for s in lists)
    assert ("GET", "log", {"container": "base", "follow": "True", "timestamps": "True"}) in calls
    patches = [r for r in k8s_api_server.requests if r.method == "PATCH"]
    assert [p.content_type for p in patches] == ["application/strategic-merge-patch+json"]
    assert any(last == "events" and "fieldSelector" in q for _, last, q in calls)
