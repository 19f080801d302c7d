"""Run a Python callable inside a portable environment: in a Kubernetes pod, or as a local process.

``MlpPodOperator`` is a ``KubernetesPodOperator``: deferrable mode, log streaming,
``on_finish_action``, reattaching after a worker restart, pod templates, callbacks and the
``kubernetes_default`` connection all work as they do there. What it adds:

- the work (callable and arguments, cloudpickled) goes to the artifact store and the pod runs the
  runtime image's bootstrap (``python -m airflow_provider_mlp.compute run ...``), so nobody builds
  an image per task;
- ``env`` names the environment the call runs in (an alias, an env id, ``BuildEnvironmentOperator``'s
  XCom, an ``EnvSpec`` or a mapping of one, or nothing for the image's own Python);
- ``cpu``/``memory``/``gpu``/``ephemeral_storage`` and restricted-profile security defaults;
- the result comes back through XCom (large values and tables as a reference into the store), and
  the function's exception is re-raised here with its remote traceback;
- ``backend="local"`` (the embedded default, ``[mlp] compute_backend``) runs the same bootstrap as
  a subprocess of the worker.

Pod building lives in ``airflow_provider_mlp.compute.pod``, failure explanations in
``compute.failures``, the artifact layout in ``compute.work``; the one seam for subclasses is
:meth:`MlpPodOperator.prepare_pod`.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator

if TYPE_CHECKING:
    from airflow.sdk import Context

    from airflow_provider_mlp.compute.work import WorkLocation

DEFAULT_MAX_XCOM_BYTES = 64 << 10
# Names the artifact-store prefix of the try a pod runs (read back when a retry reattaches to it).
WORK_ANNOTATION = "mlp.airflow.apache.org/work"
# fsspec options never written into a pod spec: anyone who can read pods would see them.
SECRET_OPTION_KEYS = frozenset({"key", "secret", "token", "password", "aws_secret_access_key", "aws_session_token"})


def env_reference(env: Any) -> str | None:
    """The environment to hand the bootstrap: an env id or alias text, or None for the image's Python.

    An ``EnvSpec`` or a mapping of one is resolved and built on first use (a rebuild of the same
    spec finds its env id in the store and costs nothing).
    """
    if env is None or env == "":
        return None
    if isinstance(env, str):
        text = env.strip()
        if text.startswith("{"):
            try:
                env = json.loads(text)
            except ValueError:
                return text
        else:
            return text
    if isinstance(env, Mapping) and isinstance(env.get("id"), str) and "sha256" in env:
        return str(env["id"])  # BuildEnvironmentOperator's "env" XCom: an EnvRef's dict
    from airflow_provider_mlp.operators.environment import _spec_from
    from env_builder.builder import build

    spec = _spec_from(env, None, None)
    return build(spec).id


class MlpPodOperator(KubernetesPodOperator):
    """Run ``python_callable(*op_args, **op_kwargs)`` in environment ``env`` in a pod (or locally).

    :param python_callable: the function to run; its module is shipped by value when the
        environment cannot import it (a DAG file).
    :param op_args: positional arguments (templated).
    :param op_kwargs: keyword arguments (templated).
    :param env: alias (``team/project/name:tag``), env id, ``BuildEnvironmentOperator`` XCom,
        ``EnvSpec`` or mapping of one, or None.
    :param backend: ``local`` or ``kubernetes`` (default: ``[mlp] compute_backend``).
    :param cpu: CPU request, e.g. ``2`` or ``"500m"``.
    :param memory: memory request and limit, e.g. ``"8Gi"``.
    :param gpu: whole GPUs (``nvidia.com/gpu``).
    :param ephemeral_storage: ephemeral-storage request and limit.
    :param env_cache_volume: where pods keep rehydrated environments: ``{"emptyDir": {}}`` (default),
        ``{"hostPath": "/var/cache/mlp"}`` or ``{"persistentVolumeClaim": "name"}``.
    :param secrets_as_env: ``{"secret": ["KEY", ...]}`` or ``{"secret": {"ENV": "key"}}``.
    :param artifact_store: where payloads and results go (default: ``[mlp] artifact_store``).
    :param env_store: where environments are stored (default: ``[mlp] env_store``).
    :param mlp_object_store_conn_id: an ``mlp_object_store`` connection for the artifact store.
    :param max_xcom_bytes: results whose JSON is larger stay in the store; XCom carries a reference.
    :param restricted: apply the restricted Pod Security Standard defaults (default True).
    :param runtime_packages: with ``env``, also put the runtime image's packages (this provider's
        runtime side with pyarrow and pyiceberg) on the environment's path, after its own, as
        ``@task.virtualenv``'s ``system_site_packages`` does: a task reads Fast Data with the
        provider's reader while importing what its environment adds. The environment's Python
        must be the runtime's (same minor version).
    """

    template_fields: Sequence[str] = tuple(
        dict.fromkeys(
            [
                *(f for f in KubernetesPodOperator.template_fields if f not in ("cmds", "arguments")),
                "op_args",
                "op_kwargs",
                "env",
                "backend",
                "cpu",
                "memory",
                "gpu",
                "ephemeral_storage",
                "artifact_store",
                "env_store",
            ]
        )
    )
    shallow_copy_attrs: Sequence[str] = ("python_callable",)
    ui_color = "#e4ecf7"

    def __init__(
        self,
        *,
        python_callable: Callable[..., Any],
        op_args: Sequence[Any] | None = None,
        op_kwargs: Mapping[str, Any] | None = None,
        env: Any = None,
        backend: str | None = None,
        cpu: str | float | None = None,
        memory: str | None = None,
        gpu: int | str = 0,
        ephemeral_storage: str | None = None,
        env_cache_volume: Mapping[str, Any] | None = None,
        secrets_as_env: Mapping[str, Any] | None = None,
        artifact_store: str | None = None,
        env_store: str | None = None,
        mlp_object_store_conn_id: str | None = None,
        max_xcom_bytes: int = DEFAULT_MAX_XCOM_BYTES,
        restricted: bool = True,
        runtime_packages: bool = False,
        do_xcom_push: bool = True,
        name: str | None = None,
        **kwargs: Any,
    ) -> None:
        # KubernetesPodOperator's own do_xcom_push adds its sidecar; the result travels through the
        # artifact store instead, so the pod never gets one (see _without_sidecar). Failed pods are
        # kept by default so that their status and logs can explain the failure.
        kwargs.setdefault("on_finish_action", "delete_succeeded_pod")
        super().__init__(name=name or f"mlp-{kwargs.get('task_id', 'task')}", do_xcom_push=False, **kwargs)
        self.do_xcom_push = do_xcom_push
        self.python_callable = python_callable
        self.op_args: Collection[Any] = list(op_args or ())
        self.op_kwargs: Mapping[str, Any] = dict(op_kwargs or {})
        self.env = env
        self.backend = backend
        self.cpu = cpu
        self.memory = memory
        self.gpu = gpu
        self.ephemeral_storage = ephemeral_storage
        self.env_cache_volume = env_cache_volume
        self.secrets_as_env = secrets_as_env
        self.artifact_store = artifact_store
        self.env_store = env_store
        self.mlp_object_store_conn_id = mlp_object_store_conn_id
        self.max_xcom_bytes = max_xcom_bytes
        self.restricted = restricted
        self.runtime_packages = runtime_packages

    # -- where things are ---------------------------------------------------------------------------

    def resolved_backend(self) -> str:
        from airflow_provider_mlp.config import compute_backend, settings

        if self.backend:
            return compute_backend(str(self.backend), f"task {self.task_id!r} backend")
        return settings().compute_backend

    def _artifact_store(self) -> tuple[str, dict[str, Any]]:
        from airflow_provider_mlp.hooks.object_store import ObjectStoreHook

        hook = ObjectStoreHook(self.mlp_object_store_conn_id, url=self.artifact_store)
        return hook.url, hook.storage_options

    def work_location(self, context: Context) -> WorkLocation:
        """This try's payload and result paths, from the task instance alone (stable across deferral)."""
        from airflow_provider_mlp.compute.work import WorkLocation

        ti = context["ti"]
        url, options = self._artifact_store()
        map_index = getattr(ti, "map_index", -1)
        return WorkLocation(
            store_url=url,
            dag_id=str(ti.dag_id),
            run_id=str(context["run_id"]),
            task_id=str(ti.task_id),
            map_index=-1 if map_index is None else int(map_index),
            try_number=int(getattr(ti, "try_number", 1) or 1),
            storage_options=options,
        )

    def context_arguments(self, context: Context) -> dict[str, Any]:
        """Context values for the callable's parameters of the same names (``run_id``, ``ds``,
        ``params``, ...) that the call does not already give, as the TaskFlow API passes them. Only
        plain values travel: the task instance and the DAG stay here."""
        import inspect

        try:
            parameters = inspect.signature(self.python_callable).parameters
        except (TypeError, ValueError):
            return {}
        ti = context["ti"]
        available: dict[str, Any] = {
            key: context[key]
            for key in (
                "run_id",
                "ds",
                "ds_nodash",
                "logical_date",
                "params",
                "data_interval_start",
                "data_interval_end",
            )
            if key in context
        }
        available.update(dag_id=ti.dag_id, task_id=ti.task_id, map_index=getattr(ti, "map_index", -1))
        available["try_number"] = getattr(ti, "try_number", 1)
        positional = list(parameters)[: len(list(self.op_args))]
        return {
            name: available[name]
            for name, parameter in parameters.items()
            if name in available
            and name not in positional
            and parameter.kind in (parameter.POSITIONAL_OR_KEYWORD, parameter.KEYWORD_ONLY)
        }

    def _bootstrap_environment(self, location: WorkLocation, *, for_pod: bool = False) -> dict[str, str]:
        """The bootstrap's environment: the artifact store's fsspec options. A pod never gets credentials
        in its spec (anyone who can read pods would see them): give pods theirs through
        ``secrets_as_env`` (e.g. ``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``) or their service account."""
        from airflow_provider_mlp.compute.bootstrap import ARTIFACT_OPTIONS_ENV

        options = dict(location.storage_options)
        if for_pod:
            dropped = sorted(k for k in options if k in SECRET_OPTION_KEYS)
            for key in dropped:
                options.pop(key)
            if dropped:
                self.log.warning(
                    "Not writing the artifact store's %s into the pod spec; give the pod its credentials "
                    "through secrets_as_env or its service account",
                    ", ".join(dropped),
                )
        return {ARTIFACT_OPTIONS_ENV: json.dumps(options)} if options else {}

    # -- running ---------------------------------------------------------------------------------------

    def execute(self, context: Context) -> Any:
        from airflow_provider_mlp.compute.work import encode_payload, put_payload

        location = self.work_location(context)
        env = env_reference(self.env)
        kwargs = {**self.context_arguments(context), **self.op_kwargs}
        put_payload(location, encode_payload(self.python_callable, list(self.op_args), kwargs))
        self.log.info("Work of %s in %s (environment %s)", self.task_id, location.try_prefix, env or "none")
        if self.resolved_backend() == "local":
            return self._execute_local(location, env)
        self.prepare_pod(location, env)
        try:
            with self._without_sidecar():
                super().execute(context)
        except Exception as exc:
            self._raise_legibly(location, exc)
        return self._collect(self._location_of_pod(location))

    def trigger_reentry(self, context: Context, event: dict[str, Any]) -> Any:
        location = self.work_location(context)
        try:
            with self._without_sidecar():
                super().trigger_reentry(context, event)
        except Exception as exc:
            self._raise_legibly(location, exc)
        return self._collect(self._location_of_pod(location))

    def _location_of_pod(self, location: WorkLocation) -> WorkLocation:
        """The work of the pod that actually ran. KubernetesPodOperator reattaches a retry to an earlier
        try's pod that is still running (its labels leave the try number out); that pod reads and
        writes its own try's paths, which its annotation names."""
        import dataclasses

        pod = getattr(self, "pod", None)
        annotations = (getattr(getattr(pod, "metadata", None), "annotations", None) or {}) if pod else {}
        prefix = annotations.get(WORK_ANNOTATION)
        if not prefix or prefix == location.try_prefix or not prefix.startswith(f"{location.prefix}/try-"):
            return location
        try_text = prefix.rsplit("/try-", 1)[1]
        if not try_text.isdigit():
            return location
        self.log.info("Reattached to the pod of try %s: its result is at %s", try_text, prefix)
        return dataclasses.replace(location, try_number=int(try_text))

    def build_pod_request_obj(self, context: Context | None = None, *, dry_run: bool = False) -> Any:
        # Also when called on its own (dry runs, callbacks, rendering): never with the XCom sidecar.
        with self._without_sidecar():
            return super().build_pod_request_obj(context, dry_run=dry_run)

    @contextmanager
    def _without_sidecar(self) -> Iterator[None]:
        """KubernetesPodOperator reads ``do_xcom_push`` to add and await its XCom sidecar; while it runs,
        the flag says no, and afterwards it says again whether this task's return value is pushed."""
        push, self.do_xcom_push = self.do_xcom_push, False
        try:
            yield
        finally:
            if push is not False:  # nested use: only the outermost restores
                self.do_xcom_push = push

    def prepare_pod(self, location: WorkLocation, env: str | None) -> None:
        """The seam: set the pod's image, command, resources, security and volumes before
        ``KubernetesPodOperator`` builds its request. Subclasses extend it (call super first)."""
        from kubernetes.client import models as k8s

        from airflow_provider_mlp.compute import pod
        from airflow_provider_mlp.config import settings

        resolved = settings()
        self.image = self.image or resolved.runtime_image
        self.cmds = ["python", "-m", "airflow_provider_mlp.compute"]
        self.arguments = pod.bootstrap_arguments(
            location.payload_uri,
            location.result_uri,
            env=env,
            env_store=self.env_store or (resolved.env_store if env else None),
            cache_dir=pod.ENV_CACHE_MOUNT,
            runtime_packages=self.runtime_packages,
        )
        resources = pod.Resources(
            cpu=self.cpu, memory=self.memory, gpu=int(self.gpu or 0), ephemeral_storage=self.ephemeral_storage
        ).requirements()
        if resources is not None:
            self.container_resources = resources
        extra_env = [
            k8s.V1EnvVar(name=k, value=v) for k, v in self._bootstrap_environment(location, for_pod=True).items()
        ]
        extra_env += [k8s.V1EnvVar(name="HOME", value=pod.SCRATCH_MOUNT)]
        self.env_vars = [*(self.env_vars or []), *extra_env, *pod.secret_env_vars(self.secrets_as_env)]
        volumes, mounts = pod.writable_volumes(self.env_cache_volume)
        taken = {v.name for v in self.volumes or []}
        self.volumes = [*(self.volumes or []), *(v for v in volumes if v.name not in taken)]
        self.volume_mounts = [*(self.volume_mounts or []), *(m for m in mounts if m.name not in taken)]
        if self.restricted:
            self.security_context = self.security_context or pod.restricted_pod_security_context()
            self.container_security_context = (
                self.container_security_context or pod.restricted_container_security_context()
            )
        annotations = dict(self.annotations or {})
        annotations.setdefault("mlp.airflow.apache.org/env", env or "")
        annotations.setdefault(WORK_ANNOTATION, location.try_prefix)
        self.annotations = annotations

    def _execute_local(self, location: WorkLocation, env: str | None) -> Any:
        from airflow_provider_mlp.compute import local, pod
        from airflow_provider_mlp.compute.work import ComputeError
        from airflow_provider_mlp.config import settings

        resolved = settings()
        arguments = pod.bootstrap_arguments(
            location.payload_uri,
            location.result_uri,
            env=env,
            env_store=self.env_store or (resolved.env_store if env else None),
            cache_dir=str(resolved.env_cache_dir),
            runtime_packages=self.runtime_packages,
        )
        code, tail = local.run_bootstrap(arguments, env=self._bootstrap_environment(location), log=self.log.info)
        if code != 0:
            header = self._result_header(location)
            if header is None or header[0].get("kind") != "error":
                raise ComputeError(
                    f"local process of task {self.task_id!r} exited {code}; last log lines: "
                    + " | ".join(line for line in tail[-5:] if line.strip())
                )
        return self._collect(location)

    # -- results and failures ------------------------------------------------------------------------

    @staticmethod
    def _result_header(location: WorkLocation) -> tuple[dict[str, Any], bytes] | None:
        from airflow_provider_mlp.compute.work import read_result_header

        return read_result_header(location)

    def _collect(self, location: WorkLocation) -> Any:
        from airflow_provider_mlp.compute.work import ComputeError, decode_result, result_reference

        found = self._result_header(location)
        if found is None:
            raise ComputeError(f"task {self.task_id!r} finished without a result at {location.result_uri}")
        header, body = found
        started, finished = header.get("started_at"), header.get("finished_at")
        if started and finished:
            self.log.info("User function ran %.3fs", float(finished) - float(started))
        if header.get("kind") == "table":
            return result_reference(location, header)
        value = decode_result(header, body, where=location.result_uri)
        try:
            size = len(json.dumps(value))
        except (TypeError, ValueError):
            size = None
        if size is None or size > self.max_xcom_bytes:
            self.log.info("Result kept in the store (%s): XCom carries a reference", location.result_uri)
            return result_reference(location, header)
        return value

    def _raise_legibly(self, location: WorkLocation, exc: Exception) -> None:
        """Re-raise the function's own exception when it left one, else one clear line about the pod."""
        from airflow.exceptions import AirflowException
        from airflow.sdk.exceptions import AirflowSkipException

        from airflow_provider_mlp.compute.failures import explain_pod_failure
        from airflow_provider_mlp.compute.work import decode_result

        if isinstance(exc, AirflowSkipException):  # skip_on_exit_code: a skip, not a failure
            raise exc
        location = self._location_of_pod(location)
        found = self._result_header(location)
        if found is not None and found[0].get("kind") == "error":
            decode_result(found[0], found[1], where=location.result_uri)  # raises RemoteTaskError
        pod = getattr(self, "pod", None)
        remote = getattr(self, "remote_pod", None) or pod
        lines: list[str] = []
        if pod is not None:
            try:
                remote = self.hook.get_pod(pod.metadata.name, pod.metadata.namespace)
                # _preload_content=False: kubernetes client 36 returns the text as "b'...'" otherwise.
                response = self.client.read_namespaced_pod_log(
                    pod.metadata.name,
                    pod.metadata.namespace,
                    container=self.base_container_name,
                    tail_lines=5,
                    _preload_content=False,
                )
                lines = response.data.decode("utf-8", "replace").splitlines()
            except Exception:  # the pod may be gone (deleted on finish): explain with what we have
                pass
        if remote is None:
            raise exc
        message = explain_pod_failure(remote, self.base_container_name, lines)
        self.log.error("%s", message)
        raise AirflowException(message) from None
