"""One clear line for each way a pod fails."""

from __future__ import annotations

from kubernetes.client import models as k8s

from airflow_provider_mlp.compute.failures import explain_pod_failure


def _pod(*, reason: str | None = None, message: str | None = None, state: k8s.V1ContainerState) -> k8s.V1Pod:
    status = k8s.V1ContainerStatus(
        name="base", image="runtime:1", image_id="", ready=False, restart_count=0, state=state
    )
    return k8s.V1Pod(
        metadata=k8s.V1ObjectMeta(name="mlp-score-x1", namespace="ml"),
        status=k8s.V1PodStatus(phase="Failed", reason=reason, message=message, container_statuses=[status]),
    )


def test_an_oom_kill_names_the_container_the_reason_the_exit_code_and_the_last_lines() -> None:
    pod = _pod(state=k8s.V1ContainerState(terminated=k8s.V1ContainerStateTerminated(exit_code=137, reason="OOMKilled")))
    assert explain_pod_failure(pod, "base", ["loading shard 7", "allocating 12 GiB", ""]) == (
        "pod ml/mlp-score-x1 failed: container 'base' OOMKilled (exit code 137); "
        "last log lines: loading shard 7 | allocating 12 GiB"
    )


def test_an_eviction_is_the_pods_reason() -> None:
    pod = _pod(
        reason="Evicted",
        message="The node was low on resource: ephemeral-storage.",
        state=k8s.V1ContainerState(terminated=k8s.V1ContainerStateTerminated(exit_code=137, reason="Error")),
    )
    line = explain_pod_failure(pod)
    assert line.startswith("pod ml/mlp-score-x1 failed: pod Evicted (The node was low on resource: ephemeral-storage.)")


def test_an_image_pull_failure_is_a_waiting_reason() -> None:
    waiting = k8s.V1ContainerStateWaiting(reason="ImagePullBackOff", message='Back-off pulling image "x:1"')
    line = explain_pod_failure(_pod(state=k8s.V1ContainerState(waiting=waiting)))
    expected = "container 'base' stuck waiting: ImagePullBackOff: Back-off pulling image \"x:1\""
    assert line == f"pod ml/mlp-score-x1 failed: {expected}"


def test_a_deadline_and_a_plain_non_zero_exit() -> None:
    terminated = k8s.V1ContainerState(terminated=k8s.V1ContainerStateTerminated(exit_code=2, reason="Error"))
    assert "pod DeadlineExceeded" in explain_pod_failure(_pod(reason="DeadlineExceeded", state=terminated))
    assert (
        explain_pod_failure(_pod(state=terminated))
        == "pod ml/mlp-score-x1 failed: container 'base' Error (exit code 2)"
    )
