"""The pod a task runs in: resources, security, volumes and the bootstrap command.

Kubernetes objects (``kubernetes.client.models``) are built here, apart from the operator, so the
same builders serve the operator, the manifest tests and anyone rendering a pod spec. The security
defaults meet the "restricted" Pod Security Standard: non-root, no privilege escalation, every
capability dropped, seccomp ``RuntimeDefault``, a read-only root filesystem with writable mounts
only where the bootstrap writes (``/tmp`` and the environment cache).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from airflow_provider_mlp.errors import ConfigurationError

if TYPE_CHECKING:
    from kubernetes.client import models as k8s

ENV_CACHE_MOUNT = "/mlp/env-cache"
SCRATCH_MOUNT = "/tmp"
RUNTIME_UID = 1000
GPU_RESOURCE = "nvidia.com/gpu"
ENV_CACHE_VOLUME = "mlp-env-cache"
SCRATCH_VOLUME = "mlp-scratch"


@dataclass(frozen=True)
class Resources:
    """What a task asks for. ``cpu`` and ``memory`` are requests; memory is also the limit (the
    kernel kills past it, which is what OOMKilled reports); GPUs are whole devices."""

    cpu: str | float | None = None
    memory: str | None = None
    gpu: int = 0
    ephemeral_storage: str | None = None
    cpu_limit: str | float | None = None
    memory_limit: str | None = None

    def requirements(self) -> k8s.V1ResourceRequirements | None:
        from kubernetes.client import models as k8s

        requests: dict[str, str] = {}
        limits: dict[str, str] = {}
        if self.cpu not in (None, ""):
            requests["cpu"] = str(self.cpu)
        if self.cpu_limit not in (None, ""):
            limits["cpu"] = str(self.cpu_limit)
        if self.memory:
            requests["memory"] = str(self.memory)
        memory_limit = self.memory_limit or self.memory
        if memory_limit:
            limits["memory"] = str(memory_limit)
        if self.ephemeral_storage:
            requests["ephemeral-storage"] = limits["ephemeral-storage"] = str(self.ephemeral_storage)
        try:
            gpus = int(self.gpu or 0)
        except (TypeError, ValueError):
            raise ConfigurationError(f"gpu must be a whole number of devices, got {self.gpu!r}") from None
        if gpus < 0:
            raise ConfigurationError(f"gpu must be 0 or more, got {gpus}")
        if gpus:
            limits[GPU_RESOURCE] = str(gpus)  # extended resources: the limit is the request
        if not requests and not limits:
            return None
        return k8s.V1ResourceRequirements(requests=requests or None, limits=limits or None)


def restricted_pod_security_context() -> k8s.V1PodSecurityContext:
    from kubernetes.client import models as k8s

    return k8s.V1PodSecurityContext(
        run_as_non_root=True,
        run_as_user=RUNTIME_UID,
        run_as_group=RUNTIME_UID,
        fs_group=RUNTIME_UID,
        seccomp_profile=k8s.V1SeccompProfile(type="RuntimeDefault"),
    )


def restricted_container_security_context() -> k8s.V1SecurityContext:
    from kubernetes.client import models as k8s

    return k8s.V1SecurityContext(
        allow_privilege_escalation=False,
        capabilities=k8s.V1Capabilities(drop=["ALL"]),
        privileged=False,
        read_only_root_filesystem=True,
        run_as_non_root=True,
        seccomp_profile=k8s.V1SeccompProfile(type="RuntimeDefault"),
    )


def env_cache_volume(spec: Mapping[str, Any] | None = None) -> k8s.V1Volume:
    """The environment cache: ``emptyDir`` by default; ``{"hostPath": "/var/cache/mlp"}`` or
    ``{"persistentVolumeClaim": "claim"}`` share rehydrated environments across the pods of a node."""
    from kubernetes.client import models as k8s

    spec = dict(spec or {})
    if not spec or "emptyDir" in spec:
        size = (spec.get("emptyDir") or {}).get("sizeLimit") if isinstance(spec.get("emptyDir"), Mapping) else None
        return k8s.V1Volume(name=ENV_CACHE_VOLUME, empty_dir=k8s.V1EmptyDirVolumeSource(size_limit=size))
    if "hostPath" in spec:
        return k8s.V1Volume(
            name=ENV_CACHE_VOLUME,
            host_path=k8s.V1HostPathVolumeSource(path=str(spec["hostPath"]), type="DirectoryOrCreate"),
        )
    if "persistentVolumeClaim" in spec:
        return k8s.V1Volume(
            name=ENV_CACHE_VOLUME,
            persistent_volume_claim=k8s.V1PersistentVolumeClaimVolumeSource(
                claim_name=str(spec["persistentVolumeClaim"])
            ),
        )
    raise ConfigurationError(
        f"env_cache_volume {spec!r}: expected {{'emptyDir': {{}}}}, {{'hostPath': '/path'}} or "
        "{'persistentVolumeClaim': 'claim-name'}"
    )


def writable_volumes(cache: Mapping[str, Any] | None = None) -> tuple[list[k8s.V1Volume], list[k8s.V1VolumeMount]]:
    """The only writable places of a read-only root: scratch space and the environment cache."""
    from kubernetes.client import models as k8s

    volumes = [k8s.V1Volume(name=SCRATCH_VOLUME, empty_dir=k8s.V1EmptyDirVolumeSource()), env_cache_volume(cache)]
    mounts = [
        k8s.V1VolumeMount(name=SCRATCH_VOLUME, mount_path=SCRATCH_MOUNT),
        k8s.V1VolumeMount(name=ENV_CACHE_VOLUME, mount_path=ENV_CACHE_MOUNT),
    ]
    return volumes, mounts


def bootstrap_arguments(
    payload_uri: str,
    result_uri: str,
    *,
    env: str | None,
    env_store: str | None,
    cache_dir: str,
    runtime_packages: bool = False,
) -> list[str]:
    """The bootstrap's arguments (after ``python -m airflow_provider_mlp.compute``)."""
    args = ["run", "--payload", payload_uri, "--result", result_uri, "--cache-dir", cache_dir]
    if env:
        args += ["--env", env]
    if env_store:
        args += ["--env-store", env_store]
    if runtime_packages and env:
        args.append("--runtime-packages")
    return args


def secret_env_vars(secrets: Mapping[str, Sequence[str] | Mapping[str, str]] | None) -> list[k8s.V1EnvVar]:
    """Environment variables from Kubernetes Secrets: ``{"secret-name": ["KEY", ...]}`` (same name) or
    ``{"secret-name": {"ENV_NAME": "key"}}``."""
    from kubernetes.client import models as k8s

    out: list[k8s.V1EnvVar] = []
    for secret, keys in (secrets or {}).items():
        pairs = keys.items() if isinstance(keys, Mapping) else ((k, k) for k in keys)
        for env_name, key in pairs:
            ref = k8s.V1SecretKeySelector(name=secret, key=key)
            out.append(k8s.V1EnvVar(name=env_name, value_from=k8s.V1EnvVarSource(secret_key_ref=ref)))
    return out
