"""The serving image is hadolint-clean and non-root; the Kubernetes manifests validate against the schema."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[3]
DOCKERFILE = ROOT / "docker" / "serving.Dockerfile"
MANIFESTS = ROOT / "docker" / "k8s" / "serving.yaml"
KUBERNETES_VERSION = "1.33.0"


def _documents() -> list[dict]:
    return [d for d in yaml.safe_load_all(MANIFESTS.read_text()) if d]


def test_hadolint_finds_nothing() -> None:
    hadolint = Path(sys.executable).with_name("hadolint")
    proc = subprocess.run([str(hadolint), str(DOCKERFILE)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_the_image_runs_as_non_root_and_serves_the_service() -> None:
    text = DOCKERFILE.read_text()
    assert "USER 1000:1000" in text and "--no-deps" in text
    assert "airflow_provider_mlp.serving.service:MlpModelService" in text


def test_serving_requirements_match_the_project_constraints() -> None:
    pins = dict(
        line.split("==")
        for line in (ROOT / "docker" / "serving-requirements.txt").read_text().splitlines()
        if line and not line.startswith("#")
    )
    constraints = dict(line.split("==") for line in (ROOT / "constraints.txt").read_text().splitlines() if "==" in line)
    assert pins and {n: v for n, v in pins.items() if constraints.get(n) != v} == {}


def test_manifests_hold_the_core_objects() -> None:
    kinds = sorted(d["kind"] for d in _documents())
    assert kinds == ["Deployment", "HorizontalPodAutoscaler", "Service", "Service", "StatefulSet"]


@pytest.mark.parametrize("index", range(5))
def test_each_object_validates_against_the_kubernetes_schema(index: int) -> None:
    import kubernetes_validate

    kubernetes_validate.validate(_documents()[index], KUBERNETES_VERSION, strict=True)


def test_pods_meet_the_restricted_pod_security_profile() -> None:
    for doc in _documents():
        if doc["kind"] not in ("Deployment", "StatefulSet"):
            continue
        pod = doc["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
        for container in pod["containers"]:
            context = container["securityContext"]
            assert context["allowPrivilegeEscalation"] is False
            assert context["capabilities"]["drop"] == ["ALL"]


def test_keda_scaled_object_targets_the_deployment() -> None:
    (scaled,) = list(yaml.safe_load_all((ROOT / "docker" / "k8s" / "keda-scaledobject.yaml").read_text()))
    assert scaled["kind"] == "ScaledObject" and scaled["spec"]["minReplicaCount"] == 0
    assert scaled["spec"]["scaleTargetRef"]["name"] == "mlp-model"
