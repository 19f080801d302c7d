"""The simulated kubelet behind the Kubernetes API test server (tests/support/k8s_api_server.py).

It picks up every pod the API server admits and runs the pod's real container commands as local
processes, one process group per container, each in its own private root directory
(``K8S_SIM_ROOT``). How volumes, paths, images and resources are mapped is described in the API
server's module docstring; this module only implements it.

One worker thread per pod drives the pod's life (schedule, mount, init containers, containers,
deadline and ephemeral-storage checks) and one thread per container watches its process (exit,
memory limit, stop requests). Every status change goes through the API server's object store, so
watches and polls see the same sequence a real kubelet would report: Pending -> Running ->
Succeeded/Failed, container states waiting -> running -> terminated.
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import os
import re
import secrets
import shutil
import signal
import subprocess
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psutil

if TYPE_CHECKING:
    from tests.support.k8s_api_server import ObjectStore

NODE_NAME = "sim-node"
NODE_IP = "127.0.0.1"
# Host environment variables a container inherits; everything else comes from the pod spec.
INHERITED_ENV = ("PATH", "LANG", "LC_ALL", "TZ")
DEFAULT_TERMINATION_MESSAGE_PATH = "/dev/termination-log"
# Kubelet limits for the termination message taken from the log (FallbackToLogsOnError).
FALLBACK_MESSAGE_LINES = 80
FALLBACK_MESSAGE_BYTES = 2048
MAX_TERMINATION_MESSAGE_BYTES = 4096
# Like the kubelet, a log line longer than this is split into several entries.
MAX_LOG_LINE_BYTES = 16 * 1024

Json = dict[str, Any]


def now_iso() -> str:
    """RFC 3339 with second precision, the format of every timestamp in Kubernetes objects."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def log_timestamp(ns: int) -> bytes:
    """The kubelet's log timestamp: RFC 3339 with exactly nine fractional digits."""
    seconds, nanos = divmod(ns, 1_000_000_000)
    return (datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S") + f".{nanos:09d}Z").encode()


def parse_quantity(value: object) -> float:
    """A Kubernetes resource quantity ("64Mi", "0.5", "1e9", "250m") as a number."""
    from kubernetes.utils import parse_quantity as parse

    return float(parse(value))


class ConfigError(Exception):
    """A container's configuration refers to something missing (CreateContainerConfigError)."""


class MountError(Exception):
    """A volume cannot be set up yet (FailedMount)."""


class ContainerLog:
    """The log of one container instance: timestamped lines, closed once the container terminated."""

    def __init__(self, changed: threading.Condition) -> None:
        self.entries: list[tuple[int, bytes]] = []
        self.closed = False
        self._changed = changed

    def append(self, line: bytes) -> None:
        with self._changed:
            self.entries.append((time.time_ns(), line))
            self._changed.notify_all()

    def close(self) -> None:
        with self._changed:
            self.closed = True
            self._changed.notify_all()

    def text(self) -> str:
        with self._changed:
            return b"".join(line for _, line in self.entries).decode("utf-8", errors="replace")

    def tail_message(self) -> str:
        """What FallbackToLogsOnError puts in the termination message: the last lines, capped in size."""
        with self._changed:
            lines = [line for _, line in self.entries[-FALLBACK_MESSAGE_LINES:]]
        data = b"".join(lines)[-FALLBACK_MESSAGE_BYTES:]
        return data.decode("utf-8", errors="replace")

    def follow(
        self,
        *,
        follow: bool,
        since_ns: int | None,
        tail_lines: int | None,
        should_stop: Callable[[], bool],
    ) -> Iterator[list[tuple[int, bytes]]]:
        """Batches of (timestamp, line): what is there now, then (if following) new lines until closed."""
        with self._changed:
            current = [e for e in self.entries if since_ns is None or e[0] >= since_ns]
            position = len(self.entries)
        if tail_lines is not None:
            current = current[-tail_lines:] if tail_lines > 0 else []
        if current:
            yield current
        if not follow:
            return
        while True:
            with self._changed:
                while position >= len(self.entries) and not self.closed and not should_stop():
                    self._changed.wait(0.25)
                batch = self.entries[position:]
                position = len(self.entries)
                finished = self.closed and position >= len(self.entries)
            if batch:
                yield batch
            if finished or should_stop():
                return


@dataclass
class _Stop:
    reason: str  # Deleted | DeadlineExceeded | Evicted
    grace_seconds: float
    requested_at: float


class SimulatedKubelet:
    """Runs the pods of one simulated node as local processes under ``root``."""

    def __init__(
        self,
        store: ObjectStore,
        root: Path,
        *,
        node_name: str = NODE_NAME,
        rewrite_mount_paths: bool = True,
        extra_env: dict[str, str] | None = None,
        start_delay: float = 0.0,
        pull_backoff: float = 0.5,
        restart_backoff: float = 0.5,
        watch_interval: float = 0.03,
    ) -> None:
        self.store = store
        self.root = root
        self.node_name = node_name
        self.node_root = root / "node"
        self.pvc_root = root / "pvc"
        self.pods_root = root / "pods"
        for path in (self.node_root, self.pvc_root, self.pods_root):
            path.mkdir(parents=True, exist_ok=True)
        self.rewrite_mount_paths = rewrite_mount_paths
        self.extra_env = dict(extra_env or {})
        self.start_delay = start_delay
        self.pull_backoff = pull_backoff
        self.restart_backoff = restart_backoff
        self.watch_interval = watch_interval
        self.errors: list[str] = []
        self.log_changed = threading.Condition()
        self._lock = threading.Lock()
        self._workers: dict[str, _PodWorker] = {}
        self._logs: dict[tuple[str, str], list[ContainerLog]] = {}
        self._uids: dict[tuple[str, str], str] = {}
        self._pulled: set[str] = set()
        self._pod_ips = itertools.count(2)
        self.stopping = False

    # -- called by the API server -------------------------------------------------------------

    def admit(self, pod: Json) -> None:
        """Start running a pod the API server just stored; returns once its containers started."""
        worker = _PodWorker(self, pod, pod_ip=f"10.244.0.{next(self._pod_ips) % 250 + 2}")
        with self._lock:
            self._workers[worker.uid] = worker
            self._uids[(worker.namespace, worker.name)] = worker.uid
        worker.thread.start()
        if self.start_delay <= 0:
            # The create call returns once the containers run (or cannot), so that a client's
            # first poll already sees the pod Running instead of sleeping a whole poll interval.
            worker.first_sync.wait(5)

    def stop_pod(self, uid: str, grace_seconds: float, reason: str = "Deleted") -> bool:
        """Stop a pod's containers; True if processes are running (the kubelet removes the pod when done)."""
        worker = self._workers.get(uid)
        if worker is None:
            return False
        return worker.request_stop(reason, grace_seconds, remove=reason == "Deleted")

    def forget(self, uid: str) -> None:
        """The pod object is gone from the API: kill what is left and remove its private directories."""
        worker = self._workers.get(uid)
        if worker is None:
            return
        worker.request_stop("Deleted", 0, remove=False)
        worker.removed = True
        worker.kill_all()
        threading.Thread(target=worker.cleanup_when_done, daemon=True).start()

    def evict(self, uid: str, message: str) -> None:
        worker = self._workers.get(uid)
        if worker is not None:
            worker.evict(message)

    def container_logs(self, uid: str, container: str) -> list[ContainerLog]:
        with self._lock:
            return list(self._logs.get((uid, container), []))

    def uid_of(self, namespace: str, name: str) -> str | None:
        """The uid of the latest pod of that name, deleted or not (for tests reading logs afterwards)."""
        return self._uids.get((namespace, name))

    def host_path(self, path: str) -> Path:
        """Where the simulated node keeps a hostPath volume's ``path``."""
        return self.node_root / path.lstrip("/")

    def pvc_path(self, claim: str, namespace: str) -> Path:
        return self.pvc_root / namespace / claim

    def running_processes(self) -> list[int]:
        with self._lock:
            workers = list(self._workers.values())
        return [p.pid for w in workers for p in w.processes.values() if p.poll() is None]

    def shutdown(self) -> None:
        """Kill every process and wait for the workers (also when a test failed half-way)."""
        self.stopping = True
        with self._lock:
            workers = list(self._workers.values())
        for worker in workers:
            worker.request_stop("Deleted", 0, remove=False)
            worker.kill_all()
        deadline = time.monotonic() + 10
        for worker in workers:
            worker.thread.join(max(0.1, deadline - time.monotonic()))
        with self.log_changed:
            self.log_changed.notify_all()
        alive = [w.name for w in workers if w.thread.is_alive()]
        if alive:
            self.errors.append(f"kubelet workers still running at shutdown: {alive}")

    # -- used by the workers ------------------------------------------------------------------

    def new_log(self, uid: str, container: str) -> ContainerLog:
        log = ContainerLog(self.log_changed)
        with self._lock:
            self._logs.setdefault((uid, container), []).append(log)
        return log

    def pull(self, image: str, policy: str | None) -> bool:
        """True if the image is pulled now, False if it is already present on the node."""
        with self._lock:
            present = image in self._pulled
            self._pulled.add(image)
        return policy == "Always" or (not present and policy != "Never")

    def record_error(self) -> None:
        self.errors.append(traceback.format_exc())


def normalized_image(image: str) -> str:
    """``python:3.11`` -> ``docker.io/library/python:3.11``, as container runtimes report it."""
    name = image
    first, _, rest = name.partition("/")
    if not rest or ("." not in first and ":" not in first and first != "localhost"):
        name = f"docker.io/{name}" if rest else f"docker.io/library/{name}"
    last = name.rsplit("/", 1)[-1]
    if ":" not in last and "@" not in last:
        name += ":latest"
    return name


def image_id(image: str) -> str:
    repository = normalized_image(image).split("@")[0].rsplit(":", 1)[0]
    return f"{repository}@sha256:{hashlib.sha256(image.encode()).hexdigest()}"


_VAR_REF = re.compile(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)")


def expand(text: str, env: dict[str, str]) -> str:
    """Kubernetes' ``$(VAR)`` expansion: unknown references stay as they are, ``$$`` escapes."""
    return _VAR_REF.sub(lambda m: "$" if m.group(0) == "$$" else env.get(m.group(1), m.group(0)), text)


def directory_size(path: Path) -> int:
    total = 0
    for dirpath, _, filenames in os.walk(path):
        for filename in filenames:
            try:
                total += os.lstat(os.path.join(dirpath, filename)).st_size
            except OSError:
                pass
    return total


def _tree_rss(process: psutil.Process) -> int:
    try:
        members = [process, *process.children(recursive=True)]
    except psutil.Error:
        return 0
    total = 0
    for member in members:
        try:
            total += member.memory_info().rss
        except psutil.Error:
            pass
    return total


def _kill_group(pgid: int, sig: signal.Signals) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


class _PodWorker:
    def __init__(self, kubelet: SimulatedKubelet, pod: Json, *, pod_ip: str) -> None:
        self.kubelet = kubelet
        self.store = kubelet.store
        meta = pod["metadata"]
        self.namespace: str = meta["namespace"]
        self.name: str = meta["name"]
        self.uid: str = meta["uid"]
        self.spec: Json = pod["spec"]
        self.pod_ip = pod_ip
        self.dir = kubelet.pods_root / f"{self.namespace}_{self.name}_{self.uid[:8]}"
        self.first_sync = threading.Event()
        self.done = threading.Event()
        self.stop_event = threading.Event()
        self.stop: _Stop | None = None
        self.remove_when_stopped = False
        self.removed = False
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self.volume_dirs: dict[str, Path] = {}
        self.instances: dict[str, int] = {}  # container instances started so far, by container name
        self.lock = threading.Lock()
        self.started = time.monotonic()
        self.thread = threading.Thread(target=self._main, name=f"kubelet-{self.name}", daemon=True)

    # -- control --------------------------------------------------------------------------------

    def request_stop(self, reason: str, grace_seconds: float, *, remove: bool) -> bool:
        with self.lock:
            running = any(p.poll() is None for p in self.processes.values())
            if self.stop is None or grace_seconds < self.stop.grace_seconds:
                self.stop = _Stop(reason, grace_seconds, time.monotonic())
            if remove and running:
                self.remove_when_stopped = True
            self.stop_event.set()
        with self.kubelet.log_changed:
            self.kubelet.log_changed.notify_all()
        return running and remove

    def evict(self, message: str) -> None:
        if self.stop is not None:
            return
        self.event("Evicted", message, "Warning")

        def mark(pod: Json) -> None:
            status = pod["status"]
            status["reason"] = "Evicted"
            status["message"] = message
            _set_condition(status, "DisruptionTarget", "True", "TerminationByKubelet", message)

        self._mutate(mark)
        self.request_stop("Evicted", 0, remove=False)

    def kill_all(self) -> None:
        with self.lock:
            processes = list(self.processes.values())
        for process in processes:
            _kill_group(process.pid, signal.SIGKILL)

    def cleanup_when_done(self) -> None:
        self.done.wait(15)
        shutil.rmtree(self.dir, ignore_errors=True)

    # -- store helpers --------------------------------------------------------------------------

    def _mutate(self, change: Callable[[Json], None]) -> Json | None:
        if self.removed:
            return None
        return self.store.mutate("pods", self.namespace, self.name, change, uid=self.uid)

    def current_pod(self) -> Json | None:
        pod = self.store.get("pods", self.namespace, self.name)
        return pod if pod is not None and pod["metadata"]["uid"] == self.uid else None

    def event(
        self, reason: str, message: str, type_: str = "Normal", *, container: Json | None = None, component: str = ""
    ) -> None:
        field_path = None
        if container is not None:
            kind = "initContainers" if container in self.spec.get("initContainers", []) else "containers"
            field_path = f"spec.{kind}{{{container['name']}}}"
        self.store.record_event(
            namespace=self.namespace,
            name=self.name,
            uid=self.uid,
            reason=reason,
            message=message,
            type_=type_,
            component=component or "kubelet",
            host=self.kubelet.node_name,
            field_path=field_path,
        )

    def _container_status(self, status: Json, name: str) -> Json:
        for key in ("initContainerStatuses", "containerStatuses"):
            for entry in status.get(key, []):
                if entry["name"] == name:
                    return entry
        raise KeyError(name)

    def _set_state(self, name: str, state: Json, **fields: Any) -> None:
        def change(pod: Json) -> None:
            entry = self._container_status(pod["status"], name)
            entry["state"] = state
            entry.update(fields)
            refresh_pod_conditions(pod)

        self._mutate(change)

    # -- the pod's life -------------------------------------------------------------------------

    def _main(self) -> None:
        try:
            if self.kubelet.start_delay > 0 and self.stop_event.wait(self.kubelet.start_delay):
                return
            self._schedule()
            lifecycle = threading.Thread(target=self._lifecycle, name=f"pod-{self.name}", daemon=True)
            lifecycle.start()
            last_storage_check = 0.0
            while lifecycle.is_alive():
                lifecycle.join(0.1)
                self._check_deadline()
                if time.monotonic() - last_storage_check > 0.5:
                    last_storage_check = time.monotonic()
                    self._check_ephemeral_storage()
            self._finish()
        except Exception:
            self.kubelet.record_error()
        finally:
            self.first_sync.set()
            self.done.set()

    def _schedule(self) -> None:
        now = now_iso()
        init = self.spec.get("initContainers", [])
        containers = self.spec["containers"]

        def waiting(container: Json, reason: str) -> Json:
            return {
                "name": container["name"],
                "state": {"waiting": {"reason": reason}},
                "lastState": {},
                "ready": False,
                "restartCount": 0,
                "image": normalized_image(container.get("image", "")),
                "imageID": "",
                "started": False,
            }

        preassigned = bool(self.spec.get("nodeName"))

        def change(pod: Json) -> None:
            pod["spec"]["nodeName"] = self.spec.get("nodeName") or self.kubelet.node_name
            status = pod["status"]
            status.update(
                {
                    "phase": "Pending",
                    "hostIP": NODE_IP,
                    "hostIPs": [{"ip": NODE_IP}],
                    "podIP": self.pod_ip,
                    "podIPs": [{"ip": self.pod_ip}],
                    "startTime": now,
                }
            )
            _set_condition(status, "PodScheduled", "True")
            _set_condition(status, "PodReadyToStartContainers", "True")
            if init:
                _set_condition(status, "Initialized", "False", "ContainersNotInitialized")
                status["initContainerStatuses"] = [waiting(c, "PodInitializing") for c in init]
            else:
                _set_condition(status, "Initialized", "True")
            main_reason = "PodInitializing" if init else "ContainerCreating"
            status["containerStatuses"] = [waiting(c, main_reason) for c in containers]
            refresh_pod_conditions(pod)

        self._mutate(change)
        if not preassigned:
            self.event(
                "Scheduled",
                f"Successfully assigned {self.namespace}/{self.name} to {self.kubelet.node_name}",
                component="default-scheduler",
            )

    def _lifecycle(self) -> None:
        try:
            if not self._prepare_volumes():
                return
            policy = self.spec.get("restartPolicy", "Always")
            for container in self.spec.get("initContainers", []):
                attempt = 0
                while True:
                    exit_code = self._run_container(container, init=True, first_attempt=self.first_sync)
                    if exit_code is None or self.stop_event.is_set():
                        return
                    if exit_code == 0:
                        break
                    if policy == "Never":
                        return
                    if self._back_off(container, attempt):
                        return
                    attempt += 1

            def initialized(pod: Json) -> None:
                _set_condition(pod["status"], "Initialized", "True")

            self._mutate(initialized)
            first_attempts = [threading.Event() for _ in self.spec["containers"]]
            threads = [
                threading.Thread(
                    target=self._container_loop, args=(container, attempted), name=f"ctr-{container['name']}"
                )
                for container, attempted in zip(self.spec["containers"], first_attempts, strict=True)
            ]
            for thread in threads:
                thread.daemon = True
                thread.start()
            for attempted in first_attempts:
                while not attempted.wait(0.05) and not self.stop_event.is_set():
                    pass
            self.first_sync.set()
            for thread in threads:
                thread.join()
        except Exception:
            self.kubelet.record_error()

    def _container_loop(self, container: Json, first_attempt: threading.Event) -> None:
        try:
            attempt = 0
            while True:
                exit_code = self._run_container(container, init=False, first_attempt=first_attempt)
                first_attempt.set()
                if exit_code is None or self.stop_event.is_set():
                    return
                policy = self.spec.get("restartPolicy", "Always")
                if policy == "Never" or (policy == "OnFailure" and exit_code == 0):
                    return
                if self._back_off(container, attempt if exit_code != 0 else 0):
                    return
                attempt += 1
        except Exception:
            self.kubelet.record_error()
        finally:
            first_attempt.set()

    def _back_off(self, container: Json, attempt: int) -> bool:
        """Wait before restarting a container (CrashLoopBackOff); True if the pod is being stopped."""
        delay = min(self.kubelet.restart_backoff * 2**attempt, 10 * self.kubelet.restart_backoff)
        message = (
            f"back-off {delay:g}s restarting failed container={container['name']} "
            f"pod={self.name}_{self.namespace}({self.uid})"
        )

        def waiting(pod: Json) -> None:
            entry = self._container_status(pod["status"], container["name"])
            previous = entry.get("state", {}).get("terminated")
            if previous is not None:
                entry["lastState"] = {"terminated": previous}
            entry["state"] = {"waiting": {"reason": "CrashLoopBackOff", "message": message}}
            refresh_pod_conditions(pod)

        self._mutate(waiting)
        self.event("BackOff", "Back-off restarting failed container", "Warning", container=container)
        return self.stop_event.wait(delay)

    def _finish(self) -> None:
        stop = self.stop
        if stop is not None and stop.reason in ("DeadlineExceeded", "Evicted"):

            def failed(pod: Json) -> None:
                status = pod["status"]
                if status.get("phase") not in ("Succeeded", "Failed"):
                    status["phase"] = "Failed"
                    refresh_pod_conditions(pod)

            self._mutate(failed)
        if self.remove_when_stopped and not self.removed:
            self.removed = True
            self.store.delete("pods", self.namespace, self.name, uid=self.uid)
            shutil.rmtree(self.dir, ignore_errors=True)

    def _check_deadline(self) -> None:
        if self.stop is not None:
            return
        pod = self.current_pod()
        deadline = pod["spec"].get("activeDeadlineSeconds") if pod else None
        if deadline is None or time.monotonic() - self.started < float(deadline):
            return
        message = "Pod was active on the node longer than the specified deadline"
        self.event("DeadlineExceeded", message, "Warning")

        def mark(pod: Json) -> None:
            pod["status"]["reason"] = "DeadlineExceeded"
            pod["status"]["message"] = message

        self._mutate(mark)
        self.request_stop("DeadlineExceeded", float(self.spec.get("terminationGracePeriodSeconds", 30)), remove=False)

    def _check_ephemeral_storage(self) -> None:
        if self.stop is not None or not self.dir.exists():
            return
        for volume in self.spec.get("volumes", []):
            limit = (volume.get("emptyDir") or {}).get("sizeLimit")
            path = self.volume_dirs.get(volume["name"])
            if limit is not None and path is not None and directory_size(path) > parse_quantity(limit):
                self.evict(f'Usage of EmptyDir volume "{volume["name"]}" exceeds the limit "{limit}". ')
                return
        limits = [c.get("resources", {}).get("limits", {}).get("ephemeral-storage") for c in self.spec["containers"]]
        if not limits or any(limit is None for limit in limits):
            return
        total = sum(parse_quantity(limit) for limit in limits)
        if directory_size(self.dir) > total:
            shown = limits[0] if len(limits) == 1 else f"{int(total)}"
            self.evict(f"Pod ephemeral local storage usage exceeds the total limit of containers {shown}. ")

    # -- volumes --------------------------------------------------------------------------------

    def _prepare_volumes(self) -> bool:
        while True:
            try:
                self.volume_dirs = {v["name"]: self._volume(v) for v in self.spec.get("volumes", [])}
                return True
            except MountError as exc:
                self.event("FailedMount", str(exc), "Warning")
                self.first_sync.set()
                if self.stop_event.wait(1.0):
                    return False

    def _volume(self, volume: Json) -> Path:
        name = volume["name"]
        own = self.dir / "volumes" / name
        if "hostPath" in volume:
            source = volume["hostPath"]
            path = self.kubelet.host_path(source["path"])
            kind = source.get("type") or ""
            if kind in ("File", "FileOrCreate"):
                if kind == "File" and not path.is_file():
                    raise MountError(
                        f'MountVolume.SetUp failed for volume "{name}" : hostPath type check failed: '
                        f"{source['path']} is not a file"
                    )
                path.parent.mkdir(parents=True, exist_ok=True)
                path.touch()
            elif kind == "Directory" and not path.is_dir():
                raise MountError(
                    f'MountVolume.SetUp failed for volume "{name}" : hostPath type check failed: '
                    f"{source['path']} is not a directory"
                )
            else:
                path.mkdir(parents=True, exist_ok=True)
            return path
        if "persistentVolumeClaim" in volume:
            path = self.kubelet.pvc_path(volume["persistentVolumeClaim"]["claimName"], self.namespace)
            path.mkdir(parents=True, exist_ok=True)
            return path
        own.mkdir(parents=True, exist_ok=True)
        if "secret" in volume:
            source = volume["secret"]
            self._write_items(own, name, "secret", source.get("secretName", ""), source)
        elif "configMap" in volume:
            source = volume["configMap"]
            self._write_items(own, name, "configmap", source.get("name", ""), source)
        elif "downwardAPI" in volume:
            self._write_downward(own, volume["downwardAPI"].get("items", []))
        elif "projected" in volume:
            for projection in volume["projected"].get("sources", []):
                if "secret" in projection:
                    self._write_items(own, name, "secret", projection["secret"].get("name", ""), projection["secret"])
                elif "configMap" in projection:
                    source = projection["configMap"]
                    self._write_items(own, name, "configmap", source.get("name", ""), source)
                elif "downwardAPI" in projection:
                    self._write_downward(own, projection["downwardAPI"].get("items", []))
                elif "serviceAccountToken" in projection:
                    (own / projection["serviceAccountToken"].get("path", "token")).write_text("sim-token")
        return own

    def _write_items(self, target: Path, volume: str, kind: str, name: str, source: Json) -> None:
        plural = "secrets" if kind == "secret" else "configmaps"
        obj = self.store.get(plural, self.namespace, name)
        if obj is None:
            if source.get("optional"):
                return
            raise MountError(f'MountVolume.SetUp failed for volume "{volume}" : {kind} "{name}" not found')
        data = _decoded_data(obj)
        items = source.get("items") or [{"key": key, "path": key} for key in data]
        for item in items:
            if item["key"] not in data:
                if source.get("optional"):
                    continue
                raise MountError(
                    f'MountVolume.SetUp failed for volume "{volume}" : configmap references non-existent config '
                    f"key: {item['key']}"
                )
            path = target / item["path"]
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data[item["key"]])
            mode = item.get("mode", source.get("defaultMode"))
            if mode is not None:
                path.chmod(int(mode))

    def _write_downward(self, target: Path, items: list[Json]) -> None:
        pod = self.current_pod() or {}
        for item in items:
            if "fieldRef" in item:
                value = _field_value(pod, item["fieldRef"]["fieldPath"])
            else:
                value = self._resource_value(item["resourceFieldRef"], None)
            path = target / item["path"]
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(value)

    # -- one container instance -----------------------------------------------------------------

    def _run_container(self, container: Json, *, init: bool, first_attempt: threading.Event) -> int | None:
        """Run one instance of the container to its end; its exit code, or None if it never started."""
        name = container["name"]
        if not self._pull_image(container, first_attempt):
            return None
        env = self._environment(container, first_attempt)
        if env is None:
            return None
        root = self.dir / "rootfs" / name
        argv, cwd, process_env, message_file = self._process_spec(container, env, root)
        container_id = "containerd://" + secrets.token_hex(32)
        started_iso = now_iso()
        restart = self._begin_instance(name)
        log = self.kubelet.new_log(self.uid, name)
        self.event("Created", f"Created container: {name}", container=container)
        if not argv:
            return self._start_error(
                container, container_id, log, "no command specified (the simulated kubelet runs no image: set command)"
            )
        try:
            with self.lock:
                if self.stop_event.is_set():
                    log.close()
                    return None
                process = subprocess.Popen(
                    argv,
                    cwd=cwd,
                    env=process_env,
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    start_new_session=True,
                    close_fds=True,
                )
                self.processes[name] = process
        except OSError as exc:
            return self._start_error(container, container_id, log, f'exec: "{argv[0]}": {exc.strerror or exc}')
        self._set_state(
            name,
            {"running": {"startedAt": started_iso}},
            ready=not init,
            started=not init,
            containerID=container_id,
            imageID=image_id(container.get("image", "")),
            restartCount=restart,
        )
        self.event("Started", f"Started container {name}", container=container)
        first_attempt.set()
        readers = [
            threading.Thread(target=_pump, args=(stream, log), daemon=True)
            for stream in (process.stdout, process.stderr)
        ]
        for reader in readers:
            reader.start()
        oom_killed = self._watch_process(process, container)
        # Like a container's PID namespace: when its main process ends, everything it left behind ends too.
        _kill_group(process.pid, signal.SIGKILL)
        for reader in readers:
            reader.join(5)
        returncode = process.returncode
        exit_code = returncode if returncode >= 0 else 128 - returncode
        reason = "OOMKilled" if oom_killed else ("Completed" if exit_code == 0 else "Error")
        terminated: Json = {
            "exitCode": exit_code,
            "reason": reason,
            "startedAt": started_iso,
            "finishedAt": now_iso(),
            "containerID": container_id,
        }
        message = self._termination_message(container, message_file, log, exit_code)
        if message:
            terminated["message"] = message
        if returncode < 0:
            terminated["signal"] = -returncode
        # The status says "terminated" before the log stream ends: a client that follows the log and
        # then checks the container sees it finished, as with a real kubelet.
        self._terminated(container, terminated, init=init)
        log.close()
        return exit_code

    def _begin_instance(self, name: str) -> int:
        """Move the previous instance's final state to lastState; the new instance's restartCount."""
        with self.lock:
            restart_count = self.instances.get(name, 0)
            self.instances[name] = restart_count + 1

        def change(pod: Json) -> None:
            entry = self._container_status(pod["status"], name)
            previous = entry.get("state", {}).get("terminated")
            if previous is not None:
                entry["lastState"] = {"terminated": previous}
            entry["restartCount"] = restart_count

        self._mutate(change)
        return restart_count

    def _start_error(self, container: Json, container_id: str, log: ContainerLog, detail: str) -> int:
        message = (
            "failed to create containerd task: failed to create shim task: OCI runtime create failed: "
            f"runc create failed: unable to start container process: {detail}"
        )
        self.event("Failed", f"Error: {message}", "Warning", container=container)
        terminated = {
            "exitCode": 128,
            "reason": "StartError",
            "message": message,
            "startedAt": "1970-01-01T00:00:00Z",
            "finishedAt": now_iso(),
            "containerID": container_id,
        }
        init = container in self.spec.get("initContainers", [])
        self._terminated(container, terminated, init=init)
        log.close()
        return 128

    def _terminated(self, container: Json, terminated: Json, *, init: bool) -> None:
        name = container["name"]
        policy = self.spec.get("restartPolicy", "Always")

        def change(pod: Json) -> None:
            status = pod["status"]
            entry = self._container_status(status, name)
            entry["state"] = {"terminated": terminated}
            entry["ready"] = False
            entry["started"] = False
            exit_code = terminated["exitCode"]
            stopping = self.stop is not None
            if init:
                if exit_code != 0 and (policy == "Never" or stopping):
                    status["phase"] = "Failed"
            else:
                mains = status.get("containerStatuses", [])
                finals = [m["state"].get("terminated") for m in mains]
                if all(f is not None for f in finals):
                    codes = [f["exitCode"] for f in finals if f is not None]
                    restarts = policy == "Always" or (policy == "OnFailure" and any(codes))
                    if stopping or not restarts:
                        failed = any(codes) or (self.stop is not None and self.stop.reason != "Deleted")
                        status["phase"] = "Failed" if failed else "Succeeded"
            refresh_pod_conditions(pod)

        self._mutate(change)
        with self.lock:
            self.processes.pop(name, None)

    def _watch_process(self, process: subprocess.Popen[bytes], container: Json) -> bool:
        """Wait for the process; enforce its memory limit and stop requests. True if it was OOM-killed."""
        limit_text = container.get("resources", {}).get("limits", {}).get("memory")
        limit = parse_quantity(limit_text) if limit_text is not None else None
        program = process.args[0] if isinstance(process.args, list) else process.args
        try:
            observed = psutil.Process(process.pid)
        except psutil.Error:
            observed = None
        term_sent: float | None = None
        while True:
            try:
                process.wait(timeout=self.kubelet.watch_interval)
                return False
            except subprocess.TimeoutExpired:
                pass
            if limit is not None and observed is not None:
                rss = _tree_rss(observed)
                if rss > limit:
                    self.event(
                        "OOMKilling",
                        f"Memory cgroup out of memory: Killed process {process.pid} ({Path(str(program)).name}) "
                        f"anon-rss:{rss // 1024}kB, limit {limit_text}",
                        "Warning",
                        component="kernel-monitor",
                    )
                    _kill_group(process.pid, signal.SIGKILL)
                    process.wait()
                    return True
            stop = self.stop
            if stop is None:
                continue
            if term_sent is None:
                term_sent = time.monotonic()
                if stop.grace_seconds > 0:
                    self.event("Killing", f"Stopping container {container['name']}", container=container)
                    _kill_group(process.pid, signal.SIGTERM)
            if time.monotonic() - term_sent >= stop.grace_seconds:
                _kill_group(process.pid, signal.SIGKILL)

    def _termination_message(self, container: Json, message_file: Path, log: ContainerLog, exit_code: int) -> str:
        try:
            data = message_file.read_bytes()[:MAX_TERMINATION_MESSAGE_BYTES]
        except OSError:
            data = b""
        if data:
            return data.decode("utf-8", errors="replace")
        if exit_code != 0 and container.get("terminationMessagePolicy") == "FallbackToLogsOnError":
            return log.tail_message()
        return ""

    # -- image, environment, process ------------------------------------------------------------

    def _pull_image(self, container: Json, first_attempt: threading.Event) -> bool:
        image = container.get("image", "")
        if "does-not-exist" in image:
            reference = normalized_image(image)
            error = (
                f'rpc error: code = NotFound desc = failed to pull and unpack image "{reference}": '
                f'failed to resolve reference "{reference}": {reference}: not found'
            )
            attempt = 0
            while not self.stop_event.is_set():
                self.event("Pulling", f'Pulling image "{image}"', container=container)
                self.event("Failed", f'Failed to pull image "{image}": {error}', "Warning", container=container)
                self.event("Failed", "Error: ErrImagePull", "Warning", container=container)
                self._set_state(container["name"], {"waiting": {"reason": "ErrImagePull", "message": error}})
                first_attempt.set()
                self.first_sync.set()
                if self.stop_event.wait(self.kubelet.pull_backoff * 2 ** min(attempt, 3)):
                    break
                self.event("BackOff", f'Back-off pulling image "{image}"', container=container)
                self.event("Failed", "Error: ImagePullBackOff", "Warning", container=container)
                message = f'Back-off pulling image "{image}": ErrImagePull: {error}'
                self._set_state(container["name"], {"waiting": {"reason": "ImagePullBackOff", "message": message}})
                if self.stop_event.wait(self.kubelet.pull_backoff * 2 ** min(attempt, 3)):
                    break
                attempt += 1
            return False
        if self.kubelet.pull(image, container.get("imagePullPolicy")):
            self.event("Pulling", f'Pulling image "{image}"', container=container)
            self.event(
                "Pulled",
                f'Successfully pulled image "{image}" in 1ms (1ms including waiting). Image size: 0 bytes.',
                container=container,
            )
        else:
            self.event("Pulled", f'Container image "{image}" already present on machine', container=container)
        return True

    def _environment(self, container: Json, first_attempt: threading.Event) -> dict[str, str] | None:
        while True:
            try:
                return self._resolve_env(container)
            except ConfigError as exc:
                self._set_state(
                    container["name"], {"waiting": {"reason": "CreateContainerConfigError", "message": str(exc)}}
                )
                self.event("Failed", f"Error: {exc}", "Warning", container=container)
                first_attempt.set()
                self.first_sync.set()
                if self.stop_event.wait(1.0):
                    return None

    def _resolve_env(self, container: Json) -> dict[str, str]:
        pod = self.current_pod() or {"metadata": {}, "spec": self.spec, "status": {}}
        env: dict[str, str] = {}
        for source in container.get("envFrom", []):
            prefix = source.get("prefix", "")
            for key, plural, label in (("secretRef", "secrets", "secret"), ("configMapRef", "configmaps", "configmap")):
                if key not in source:
                    continue
                ref = source[key]
                obj = self.store.get(plural, self.namespace, ref.get("name", ""))
                if obj is None:
                    if ref.get("optional"):
                        continue
                    raise ConfigError(f'{label} "{ref.get("name", "")}" not found')
                for name, data in _decoded_data(obj).items():
                    env[prefix + name] = data.decode("utf-8", errors="replace")
        for item in container.get("env", []):
            if "valueFrom" in item:
                value = self._value_from(item["valueFrom"], pod, container)
                if value is None:
                    continue
                env[item["name"]] = value
            else:
                env[item["name"]] = expand(item.get("value", ""), env)
        return env

    def _value_from(self, source: Json, pod: Json, container: Json) -> str | None:
        if "fieldRef" in source:
            return _field_value(pod, source["fieldRef"]["fieldPath"])
        if "resourceFieldRef" in source:
            return self._resource_value(source["resourceFieldRef"], container)
        for key, plural, kind in (
            ("secretKeyRef", "secrets", "Secret"),
            ("configMapKeyRef", "configmaps", "ConfigMap"),
        ):
            if key not in source:
                continue
            ref = source[key]
            obj = self.store.get(plural, self.namespace, ref.get("name", ""))
            if obj is None:
                if ref.get("optional"):
                    return None
                raise ConfigError(f'{kind.lower()} "{ref.get("name", "")}" not found')
            data = _decoded_data(obj)
            if ref["key"] not in data:
                if ref.get("optional"):
                    return None
                raise ConfigError(f"couldn't find key {ref['key']} in {kind} {self.namespace}/{ref.get('name', '')}")
            return data[ref["key"]].decode("utf-8", errors="replace")
        raise ConfigError(f"unsupported valueFrom source: {sorted(source)}")

    def _resource_value(self, ref: Json, container: Json | None) -> str:
        name = ref.get("containerName") or (container or {}).get("name")
        target = next((c for c in self.spec["containers"] if c["name"] == name), self.spec["containers"][0])
        kind, _, resource = ref["resource"].partition(".")
        value = target.get("resources", {}).get(kind, {}).get(resource)
        if value is None:
            value = str(os.cpu_count() or 1) if resource == "cpu" else str(psutil.virtual_memory().total)
        divisor = parse_quantity(ref.get("divisor", "1"))
        amount = parse_quantity(value) / divisor
        return str(int(amount) if amount == int(amount) else int(amount) + 1)

    def _process_spec(
        self, container: Json, env: dict[str, str], root: Path
    ) -> tuple[list[str], Path, dict[str, str], Path]:
        """argv, working directory, environment and termination-message file of one container."""
        root.mkdir(parents=True, exist_ok=True)
        for sub in ("tmp", "root", "dev"):
            (root / sub).mkdir(exist_ok=True)
        mounts = sorted(container.get("volumeMounts", []), key=lambda m: len(m["mountPath"]))
        for mount in mounts:
            self._mount(root, mount)
        message_path = container.get("terminationMessagePath") or DEFAULT_TERMINATION_MESSAGE_PATH
        mapped = [m["mountPath"].rstrip("/") for m in mounts if m["mountPath"].rstrip("/")] + [message_path]
        rewrite = path_rewriter(mapped, root) if self.kubelet.rewrite_mount_paths else (lambda text: text)
        command = [rewrite(expand(part, env)) for part in container.get("command") or []]
        args = [rewrite(expand(part, env)) for part in container.get("args") or []]
        argv = command + args
        working_dir = rewrite(container.get("workingDir") or "")
        if working_dir.startswith(str(root)):
            cwd = Path(working_dir)
        else:
            cwd = root / working_dir.lstrip("/")
        cwd.mkdir(parents=True, exist_ok=True)
        process_env = {key: os.environ[key] for key in INHERITED_ENV if key in os.environ}
        process_env.update(
            {
                "HOSTNAME": self.spec.get("hostname") or self.name,
                "HOME": str(root / "root"),
                "TMPDIR": str(root / "tmp"),
            }
        )
        process_env.update(self.kubelet.extra_env)
        process_env.update({key: rewrite(value) for key, value in env.items()})
        process_env["K8S_SIM_ROOT"] = str(root)
        # The working directory may be a mount (a symlink here): shells take the logical path from PWD.
        process_env["PWD"] = str(cwd)
        return argv, cwd, process_env, root / message_path.lstrip("/")

    def _mount(self, root: Path, mount: Json) -> None:
        volume = self.volume_dirs.get(mount["name"])
        if volume is None:
            return
        target = volume
        sub_path = mount.get("subPath") or ""
        if sub_path:
            target = volume / sub_path
            if not target.exists():
                target.mkdir(parents=True)
        link = root / mount["mountPath"].strip("/")
        if link == root or link.is_symlink():
            return
        link.parent.mkdir(parents=True, exist_ok=True)
        if link.is_dir() and not any(link.iterdir()):
            link.rmdir()
        link.symlink_to(target, target_is_directory=target.is_dir())


def _pump(stream: Any, log: ContainerLog) -> None:
    try:
        for line in iter(lambda: stream.readline(MAX_LOG_LINE_BYTES), b""):
            log.append(line)
    except (OSError, ValueError):
        pass
    finally:
        stream.close()


def path_rewriter(mount_paths: list[str], root: Path) -> Callable[[str], str]:
    """Map mount paths appearing in a string (a whole argument, ``--out=/data/x``, code) under ``root``."""
    paths = sorted(set(mount_paths), key=len, reverse=True)
    if not paths:
        return lambda text: text
    alternatives = "|".join(re.escape(p) for p in paths)
    # A mount path counts where it starts a path: not glued to a preceding path character, except
    # after "file://"; and it must end at a path-segment boundary ("/data" is not in "/database").
    pattern = re.compile(rf"(?:(?<![\w.~/-])|(?<=file://))({alternatives})(?![\w.~-])")
    prefix = str(root)

    def replace(match: re.Match[str]) -> str:
        mount = match.group(1)
        segment = _NEXT_SEGMENT.match(match.string, match.end())
        if segment is not None:
            entry = f"{mount}/{segment.group(1)}"
            if os.path.lexists(entry) and not os.path.lexists(prefix + entry):
                # A path on the host handed to the pod (say a test's directory under /tmp while the pod
                # mounts an emptyDir at /tmp): it names the host's file, not one in the volume.
                return mount
        return prefix + mount

    return lambda text: pattern.sub(replace, text)


_NEXT_SEGMENT = re.compile(r"/([^/\s'\"`,;:)\]}]+)")


def _decoded_data(obj: Json) -> dict[str, bytes]:
    data = {key: base64.b64decode(value) for key, value in (obj.get("data") or {}).items()}
    if obj.get("kind") == "ConfigMap" or "binaryData" in obj:
        data = {key: str(value).encode() for key, value in (obj.get("data") or {}).items()}
        data.update({key: base64.b64decode(value) for key, value in (obj.get("binaryData") or {}).items()})
    return data


_FIELD_INDEX = re.compile(r"^metadata\.(labels|annotations)\['(.+)'\]$")


def _field_value(pod: Json, path: str) -> str:
    indexed = _FIELD_INDEX.match(path)
    if indexed:
        return str((pod.get("metadata", {}).get(indexed.group(1)) or {}).get(indexed.group(2), ""))
    if path in ("metadata.labels", "metadata.annotations"):
        values = pod.get("metadata", {}).get(path.split(".")[1]) or {}
        return "\n".join(f'{key}="{value}"' for key, value in sorted(values.items()))
    if path in ("status.podIPs", "status.hostIPs"):
        return ",".join(entry["ip"] for entry in pod.get("status", {}).get(path.split(".")[1], []))
    value: Any = pod
    for part in path.split("."):
        value = value.get(part, "") if isinstance(value, dict) else ""
    return str(value)


def _set_condition(status: Json, type_: str, value: str, reason: str | None = None, message: str | None = None) -> None:
    conditions: list[Json] = status.setdefault("conditions", [])
    entry = next((c for c in conditions if c["type"] == type_), None)
    if entry is None:
        entry = {"type": type_, "status": value, "lastProbeTime": None, "lastTransitionTime": now_iso()}
        conditions.append(entry)
        order = ["PodReadyToStartContainers", "Initialized", "Ready", "ContainersReady", "PodScheduled"]
        conditions.sort(key=lambda c: order.index(c["type"]) if c["type"] in order else len(order))
    elif entry["status"] != value:
        entry["status"] = value
        entry["lastTransitionTime"] = now_iso()
    for key, text in (("reason", reason), ("message", message)):
        if text:
            entry[key] = text
        else:
            entry.pop(key, None)


def refresh_pod_conditions(pod: Json) -> None:
    """Phase Running and the Ready conditions, derived from the container states as the kubelet does."""
    status = pod["status"]
    mains = status.get("containerStatuses", [])
    phase = status.get("phase", "Pending")
    if phase in ("Succeeded", "Failed"):
        for type_ in ("Ready", "ContainersReady"):
            _set_condition(status, type_, "False", "PodCompleted")
        return
    running = [m for m in mains if "running" in m.get("state", {})]
    if (
        running
        and phase == "Pending"
        and all("terminated" in s.get("state", {}) for s in status.get("initContainerStatuses", []))
    ):
        status["phase"] = "Running"
    unready = [m["name"] for m in mains if not m.get("ready")]
    if unready:
        message = f"containers with unready status: [{' '.join(unready)}]"
        for type_ in ("Ready", "ContainersReady"):
            _set_condition(status, type_, "False", "ContainersNotReady", message)
    else:
        for type_ in ("Ready", "ContainersReady"):
            _set_condition(status, type_, "True")
