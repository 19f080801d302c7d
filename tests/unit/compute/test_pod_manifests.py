"""Pod manifests for a matrix of options validate against the Kubernetes OpenAPI schema and meet the
"restricted" Pod Security Standard (the check below follows the standard's rules)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from airflow_provider_mlp.compute.work import WorkLocation
from airflow_provider_mlp.operators.compute import MlpPodOperator
from tests.support.airflow_runs import TaskInstanceStub
from tests.support.k8s_api_server import K8sApiServer

KUBERNETES_VERSION = "1.33.0"
RESTRICTED_VOLUME_TYPES = {
    "configMap",
    "csi",
    "downwardAPI",
    "emptyDir",
    "ephemeral",
    "persistentVolumeClaim",
    "projected",
    "secret",
}


def restricted_violations(pod: dict[str, Any]) -> list[str]:
    """Violations of the restricted Pod Security Standard (Kubernetes docs, "Pod Security Standards")."""
    spec = pod["spec"]
    pod_security = spec.get("securityContext") or {}
    found = []
    for key in ("hostNetwork", "hostPID", "hostIPC"):
        if spec.get(key):
            found.append(f"spec.{key}")
    for volume in spec.get("volumes") or []:
        kinds = set(volume) - {"name"}
        if not kinds <= RESTRICTED_VOLUME_TYPES:
            found.append(f"volume {volume['name']}: {sorted(kinds - RESTRICTED_VOLUME_TYPES)}")
    for container in [*(spec.get("initContainers") or []), *spec["containers"]]:
        security = container.get("securityContext") or {}
        name = container["name"]
        if security.get("privileged"):
            found.append(f"{name}: privileged")
        if security.get("allowPrivilegeEscalation") is not False:
            found.append(f"{name}: allowPrivilegeEscalation is not false")
        capabilities = security.get("capabilities") or {}
        if "ALL" not in (capabilities.get("drop") or []):
            found.append(f"{name}: capabilities do not drop ALL")
        if set(capabilities.get("add") or []) - {"NET_BIND_SERVICE"}:
            found.append(f"{name}: adds capabilities {capabilities.get('add')}")
        if not (security.get("runAsNonRoot", pod_security.get("runAsNonRoot"))):
            found.append(f"{name}: runAsNonRoot is not true")
        if security.get("runAsUser", pod_security.get("runAsUser")) == 0:
            found.append(f"{name}: runs as uid 0")
        seccomp = (security.get("seccompProfile") or pod_security.get("seccompProfile") or {}).get("type")
        if seccomp not in ("RuntimeDefault", "Localhost"):
            found.append(f"{name}: seccomp profile {seccomp!r}")
        for port in container.get("ports") or []:
            if port.get("hostPort"):
                found.append(f"{name}: hostPort {port['hostPort']}")
    return found


def _noop() -> None:
    return None


OPTION_MATRIX: dict[str, dict[str, Any]] = {
    "defaults": {},
    "resources": {"cpu": 2, "memory": "8Gi", "ephemeral_storage": "20Gi"},
    "gpu": {"cpu": "500m", "memory": "16Gi", "gpu": 2, "node_selector": {"accelerator": "nvidia-a100"}},
    "scheduling": {
        "tolerations": [{"key": "gpu", "operator": "Exists", "effect": "NoSchedule"}],
        "affinity": {
            "nodeAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": {
                    "nodeSelectorTerms": [{"matchExpressions": [{"key": "pool", "operator": "In", "values": ["ml"]}]}]
                }
            }
        },
    },
    "identity": {
        "service_account_name": "mlp-runner",
        "image_pull_secrets": "registry-credentials",
        "labels": {"team": "ranking"},
        "annotations": {"owner": "ranking@example.org"},
    },
    "secrets": {"secrets_as_env": {"warehouse-credentials": ["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"]}},
    "pvc_cache": {"env_cache_volume": {"persistentVolumeClaim": "mlp-env-cache"}},
    "sized_cache": {"env_cache_volume": {"emptyDir": {"sizeLimit": "30Gi"}}},
    "host_path_cache": {"env_cache_volume": {"hostPath": "/var/cache/mlp"}},
}


@pytest.fixture(autouse=True)
def _cluster(k8s_api_server: K8sApiServer, monkeypatch: pytest.MonkeyPatch) -> None:
    # Building a request asks the connection whether it runs in a cluster: the test server answers.
    k8s_api_server.use_as_airflow_connection(monkeypatch)


def _manifest(options: dict[str, Any], mlp_home: Path) -> dict[str, Any]:
    from kubernetes.client import ApiClient

    op = MlpPodOperator(task_id="score", python_callable=_noop, backend="kubernetes", namespace="ml", **options)
    ti = TaskInstanceStub(
        "score", dag_id="ranking", run_id="manual__2026-12-01T00:00:00+00:00", map_index=3, try_number=2
    )
    context: dict[str, Any] = {"ti": ti, "run_id": ti.run_id, "dag": None, "dag_run": None}
    location = WorkLocation(mlp_home.as_uri(), ti.dag_id, ti.run_id, ti.task_id, ti.map_index, ti.try_number)
    op.prepare_pod(location, env="ranking/model-a:latest")
    pod = op.build_pod_request_obj(context)  # type: ignore[arg-type]
    return ApiClient().sanitize_for_serialization(pod)


@pytest.mark.parametrize("case", sorted(OPTION_MATRIX))
def test_pod_manifests_validate_against_the_kubernetes_schema(case: str, mlp_home: Path) -> None:
    import kubernetes_validate

    manifest = _manifest(OPTION_MATRIX[case], mlp_home)
    kubernetes_validate.validate(manifest, KUBERNETES_VERSION, strict=True)
    container = manifest["spec"]["containers"][0]
    assert container["command"] == ["python", "-m", "airflow_provider_mlp.compute"]
    assert container["args"][:1] == ["run"] and "--env" in container["args"]
    labels = manifest["metadata"]["labels"]
    assert labels["dag_id"] == "ranking" and labels["task_id"] == "score" and labels["try_number"] == "2"
    assert manifest["metadata"]["annotations"]["mlp.airflow.apache.org/env"] == "ranking/model-a:latest"


@pytest.mark.parametrize("case", sorted(set(OPTION_MATRIX) - {"host_path_cache"}))
def test_pod_manifests_meet_the_restricted_pod_security_standard(case: str, mlp_home: Path) -> None:
    assert restricted_violations(_manifest(OPTION_MATRIX[case], mlp_home)) == []


def test_a_host_path_cache_is_outside_the_restricted_profile_and_the_check_says_so(mlp_home: Path) -> None:
    # hostPath shares environments across a node's pods, at the price of the restricted profile:
    # the README says so, and the check must catch it.
    assert restricted_violations(_manifest(OPTION_MATRIX["host_path_cache"], mlp_home)) == [
        "volume mlp-env-cache: ['hostPath']"
    ]


def test_resources_and_gpus_land_on_the_container(mlp_home: Path) -> None:
    resources = _manifest(OPTION_MATRIX["gpu"], mlp_home)["spec"]["containers"][0]["resources"]
    assert resources == {
        "requests": {"cpu": "500m", "memory": "16Gi"},
        "limits": {"memory": "16Gi", "nvidia.com/gpu": "2"},
    }


def test_secrets_become_env_vars_from_secret_key_refs(mlp_home: Path) -> None:
    env = _manifest(OPTION_MATRIX["secrets"], mlp_home)["spec"]["containers"][0]["env"]
    refs = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in env if "valueFrom" in e}
    assert refs["AWS_ACCESS_KEY_ID"] == {"name": "warehouse-credentials", "key": "AWS_ACCESS_KEY_ID"}


def test_store_credentials_never_reach_the_pod_spec(mlp_home: Path) -> None:
    from kubernetes.client import ApiClient

    op = MlpPodOperator(task_id="score", python_callable=_noop, backend="kubernetes", namespace="ml")
    ti = TaskInstanceStub("score")
    options = {"key": "AKIA", "secret": "s3cr3t", "client_kwargs": {"endpoint_url": "http://127.0.0.1:9000"}}
    location = WorkLocation("s3://bucket/art", ti.dag_id, ti.run_id, ti.task_id, storage_options=options)
    op.prepare_pod(location, env=None)
    manifest = ApiClient().sanitize_for_serialization(
        op.build_pod_request_obj({"ti": ti, "run_id": ti.run_id, "dag": None})  # type: ignore[arg-type]
    )
    text = str(manifest)
    assert "s3cr3t" not in text and "AKIA" not in text
    assert "127.0.0.1:9000" in text  # the endpoint is not a secret and still reaches the pod


def test_a_retry_reattached_to_an_earlier_trys_pod_reads_that_trys_result(mlp_home: Path) -> None:
    from kubernetes.client import models as k8s

    op = MlpPodOperator(task_id="score", python_callable=_noop, backend="kubernetes")
    second = WorkLocation(mlp_home.as_uri(), "d", "r", "score", try_number=2)
    first = WorkLocation(mlp_home.as_uri(), "d", "r", "score", try_number=1)
    op.pod = k8s.V1Pod(metadata=k8s.V1ObjectMeta(annotations={"mlp.airflow.apache.org/work": first.try_prefix}))
    assert op._location_of_pod(second).result_uri == first.result_uri
    op.pod = k8s.V1Pod(metadata=k8s.V1ObjectMeta(annotations={"mlp.airflow.apache.org/work": "s3://elsewhere/try-1"}))
    assert op._location_of_pod(second) == second


def test_a_skip_from_skip_on_exit_code_stays_a_skip(mlp_home: Path) -> None:
    from airflow.sdk.exceptions import AirflowSkipException

    op = MlpPodOperator(task_id="score", python_callable=_noop, backend="kubernetes", skip_on_exit_code=99)
    location = WorkLocation(mlp_home.as_uri(), "d", "r", "score")
    with pytest.raises(AirflowSkipException):
        op._raise_legibly(location, AirflowSkipException("exit code 99"))
