"""A Kubernetes API test server with a simulated kubelet, for tests that drive real Kubernetes clients.

No cluster can run here, so this serves enough of the core/v1 API over plain HTTP on 127.0.0.1 for
the real ``kubernetes`` client, ``kubernetes_asyncio`` and the cncf.kubernetes provider
(``KubernetesPodOperator``, its hook and its trigger, sync and deferrable) to run unchanged; and a
simulated kubelet (tests/support/k8s_kubelet.py) runs every created pod's real container command as
a local process, streams its output through ``pods/log`` and reports phase and container states.

Served (``/api/v1``; all objects complete enough for the clients' response validation):

- ``/version``, ``/api``, ``/api/v1`` (resource list), ``/apis`` (no groups), ``/healthz``, ``/readyz``,
  ``/livez``; anything else is a 404 with a ``Status`` object, like every error (400, 401, 404, 405,
  409, 415, 422).
- pods, namespaced and across namespaces: create (``dryRun`` too), read, list and watch with
  ``labelSelector`` (equality and set-based, ``!key``) and ``fieldSelector`` (``metadata.name``,
  ``status.phase``, ...), ``limit``/``continue``, ``resourceVersion``, ``timeoutSeconds``; replace,
  PATCH as strategic merge, JSON merge or JSON patch (spec immutability and resourceVersion conflicts
  enforced, status kept); delete (graceful: ``deletionTimestamp`` while the kubelet stops the
  containers, then gone) and delete collection; ``pods/status`` (read, replace, patch);
  ``pods/eviction``; ``pods/log`` with ``container``, ``follow``, ``timestamps``, ``sinceSeconds``,
  ``sinceTime``, ``tailLines``, ``limitBytes``, ``previous`` as plain text. ``exec``/``attach``/
  ``portforward`` answer 400 "Upgrade request required" (no websocket: the XCom sidecar is not
  supported).
- events (what the kubelet and scheduler emit: Scheduled, Pulling, Pulled, Created, Started, Killing,
  OOMKilling, Failed, BackOff, FailedMount, DeadlineExceeded, Evicted), secrets, configmaps: full CRUD,
  list and watch (``fieldSelector=involvedObject.name=...`` for events). Namespaces are read-only
  objects created on first use.

The simulated kubelet, per pod: schedules it on node ``sim-node`` (scheduling constraints such as node
selectors, affinity, taints and GPU requests are accepted, not enforced); pulls nothing (the image is
only a name; one containing ``does-not-exist`` stays Pending with ``ErrImagePull`` then
``ImagePullBackOff``); runs init containers in order, then the containers, each as a process group:
``command`` + ``args`` (``args`` alone when there is no ``command``, since no image entrypoint exists)
with ``$(VAR)`` expansion, the container's ``env``/``envFrom`` (values, ``secretKeyRef``,
``configMapKeyRef`` from objects created through this API, ``fieldRef``, ``resourceFieldRef``) and
``workingDir``; restarts per ``restartPolicy`` with CrashLoopBackOff; kills a container whose process
tree's RSS exceeds ``resources.limits.memory`` (``OOMKilled``, exit code 137, event OOMKilling); on
delete sends SIGTERM, then SIGKILL after the grace period (exit 143/137); enforces
``activeDeadlineSeconds`` (phase Failed, reason DeadlineExceeded) and ephemeral-storage limits (phase
Failed, reason Evicted; ``K8sApiServer.evict`` evicts on demand); fills ``terminated.message`` from
the termination-message file or, with ``FallbackToLogsOnError``, from the last log lines.

Volumes and paths: why ``K8S_SIM_ROOT``. A local process shares the host's filesystem, so it cannot
see a volume at its real mount path (``/data``) without root privileges and mount namespaces, which
a test machine or CI runner may not grant, and creating ``/data`` on the host is not acceptable.
Rewriting paths everywhere is impossible (a program may build paths itself). The practical scheme:

1. Each container gets a private root directory, passed to it as ``K8S_SIM_ROOT`` (also its HOME is
   ``$K8S_SIM_ROOT/root`` and TMPDIR ``$K8S_SIM_ROOT/tmp``). Every ``volumeMount`` exists at
   ``$K8S_SIM_ROOT/<mountPath>`` as a symlink to the volume's directory (``subPath`` honoured), and the
   working directory is ``$K8S_SIM_ROOT/<workingDir>`` (the root itself by default), so relative
   paths work as in the container.
2. Where mount paths reach the process through the pod spec, they are mapped for it: every
   occurrence of a mount path (or the termination-message path) at a path boundary in ``command``,
   ``args``, env values and ``workingDir`` is prefixed with ``K8S_SIM_ROOT`` (``/data/x``,
   ``--out=/data/x``, ``file:///data/x`` and code strings passed with ``python -c`` all work; ``/database``
   is not touched). A path that continues into an entry existing on the host but not in the volume
   is the host's and stays as it is: a test's ``/tmp/pytest-of-.../x`` handed to a pod that mounts an
   emptyDir at ``/tmp`` still names the test's directory. Turn it off with ``rewrite_mount_paths=False``.
3. A program that computes a mount path itself must join it with ``K8S_SIM_ROOT``.

Volume sources: ``emptyDir`` (a per-pod directory, removed with the pod; ``sizeLimit`` enforced by
eviction), ``hostPath`` (under the simulated node's filesystem ``K8sApiServer.host_path(path)``,
shared by all pods), ``persistentVolumeClaim`` (one directory per namespace and claim,
``K8sApiServer.pvc_path``, provisioned on first use and shared), ``secret``/``configMap``/
``downwardAPI``/``projected`` (files written once at pod start). Not simulated: ``readOnly`` mounts,
security contexts (processes run as the test's user), CPU limits, probes, the image's own
entrypoint/environment, in-cluster service-account credentials.

Other deviations worth knowing: container output is captured line by line (Python programs buffer
stdout when it is a pipe, as in a real container: set ``PYTHONUNBUFFERED=1`` to stream); a
container without any command ends at once with ``StartError`` (exit 128) instead of waiting; the
create call returns once the containers have started (so the first poll already sees Running; set
``start_delay`` to watch a pod go through Pending).

Use the ``k8s_api_server`` fixture (tests/conftest.py) or ``running_k8s_api_server(root)``; the
server writes a kubeconfig (``kubeconfig_path``) and can become Airflow's ``kubernetes_default``
connection (``airflow_connection_env()``, ``use_as_airflow_connection(monkeypatch)``).
"""

from __future__ import annotations

import base64
import bisect
import copy
import json
import re
import secrets
import select
import socket
import threading
import time
import traceback
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, unquote, urlsplit

from tests.support.k8s_kubelet import NODE_NAME, SimulatedKubelet, log_timestamp, now_iso

if TYPE_CHECKING:
    import pytest
    from kubernetes.client import CoreV1Api

Json = dict[str, Any]

VERSION_INFO = {
    "major": "1",
    "minor": "33",
    "gitVersion": "v1.33.0-sim",
    "gitCommit": "0000000000000000000000000000000000000000",
    "gitTreeState": "clean",
    "buildDate": "2025-04-23T00:00:00Z",
    "goVersion": "go1.24.2",
    "compiler": "gc",
    "platform": "linux/amd64",
}
INITIAL_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")
# Watches without timeoutSeconds end after this long (a real API server picks 30-60 minutes).
DEFAULT_WATCH_SECONDS = 1800.0


@dataclass(frozen=True)
class Resource:
    plural: str
    kind: str
    namespaced: bool = True
    verbs: tuple[str, ...] = ("create", "delete", "deletecollection", "get", "list", "patch", "update", "watch")


RESOURCES = {
    r.plural: r
    for r in (
        Resource("pods", "Pod"),
        Resource("events", "Event"),
        Resource("secrets", "Secret"),
        Resource("configmaps", "ConfigMap"),
        Resource("namespaces", "Namespace", namespaced=False, verbs=("create", "get", "list", "watch")),
    )
}
SUBRESOURCES = {
    "pods/log": ("Pod", ("get",)),
    "pods/status": ("Pod", ("get", "patch", "update")),
    "pods/eviction": ("Eviction", ("create",)),
    "pods/exec": ("PodExecOptions", ("create", "get")),
    "pods/attach": ("PodAttachOptions", ("create", "get")),
    "pods/portforward": ("PodPortForwardOptions", ("create", "get")),
}

_FIELDS: dict[str, tuple[str, ...]] = {
    "pods": (
        "spec.nodeName",
        "spec.restartPolicy",
        "spec.schedulerName",
        "spec.serviceAccountName",
        "spec.hostNetwork",
        "status.phase",
        "status.podIP",
        "status.nominatedNodeName",
    ),
    "events": (
        "involvedObject.kind",
        "involvedObject.namespace",
        "involvedObject.name",
        "involvedObject.uid",
        "involvedObject.apiVersion",
        "involvedObject.resourceVersion",
        "involvedObject.fieldPath",
        "reason",
        "reportingComponent",
        "source",
        "type",
    ),
    "secrets": ("type",),
    "configmaps": (),
    "namespaces": ("status.phase",),
}


class ApiError(Exception):
    """An error answered as a Kubernetes ``Status`` object."""

    def __init__(self, code: int, reason: str, message: str, details: Json | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message
        self.details = details

    def status(self) -> Json:
        status: Json = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        }
        if self.details is not None:
            status["details"] = self.details
        return status


def not_found(plural: str, name: str) -> ApiError:
    return ApiError(404, "NotFound", f'{plural} "{name}" not found', {"name": name, "kind": plural})


def invalid(kind: str, name: str, causes: list[tuple[str, str]]) -> ApiError:
    text = ", ".join(f"{field_}: {message}" for field_, message in causes)
    message = f'{kind} "{name}" is invalid: ' + (f"[{text}]" if len(causes) > 1 else text)
    details = {
        "name": name,
        "kind": kind.lower() + "s",
        "causes": [{"reason": "FieldValueInvalid", "message": m, "field": f} for f, m in causes],
    }
    return ApiError(422, "Invalid", message, details)


# -- selectors -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Requirement:
    key: str
    op: str  # = != in notin exists !exists
    values: tuple[str, ...] = ()

    def matches(self, labels: dict[str, str]) -> bool:
        present = self.key in labels
        value = labels.get(self.key)
        if self.op == "=":
            return present and value == self.values[0]
        if self.op == "!=":
            return not present or value != self.values[0]
        if self.op == "in":
            return present and value in self.values
        if self.op == "notin":
            return not present or value not in self.values
        if self.op == "exists":
            return present
        return not present


_SET_TERM = re.compile(r"^([^\s!=(),]+)\s+(in|notin)\s+\(([^()]*)\)$")
_KEY = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*(/))?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$")


def _split_terms(text: str) -> list[str]:
    terms, depth, current = [], 0, ""
    for char in text:
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        if char == "," and depth == 0:
            terms.append(current)
            current = ""
        else:
            current += char
    terms.append(current)
    return [t.strip() for t in terms if t.strip()]


def parse_label_selector(text: str) -> list[Requirement]:
    requirements = []
    for term in _split_terms(text or ""):
        set_term = _SET_TERM.match(term)
        if set_term:
            values = tuple(v.strip() for v in set_term.group(3).split(",") if v.strip())
            requirement = Requirement(set_term.group(1), set_term.group(2), values)
        elif term.startswith("!"):
            requirement = Requirement(term[1:].strip(), "!exists")
        elif "!=" in term:
            key, value = term.split("!=", 1)
            requirement = Requirement(key.strip(), "!=", (value.strip(),))
        elif "=" in term:
            key, value = term.replace("==", "=", 1).split("=", 1)
            requirement = Requirement(key.strip(), "=", (value.strip(),))
        else:
            requirement = Requirement(term, "exists")
        if not _KEY.match(requirement.key):
            raise ApiError(400, "BadRequest", f"unable to parse requirement: invalid label key {requirement.key!r}")
        requirements.append(requirement)
    return requirements


def parse_field_selector(text: str, plural: str) -> list[Requirement]:
    requirements = []
    allowed = {"metadata.name", "metadata.namespace", *_FIELDS.get(plural, ())}
    for term in _split_terms(text or ""):
        if "!=" in term:
            key, value = term.split("!=", 1)
            op = "!="
        elif "=" in term:
            key, value = term.replace("==", "=", 1).split("=", 1)
            op = "="
        else:
            raise ApiError(400, "BadRequest", f"invalid selector: '{text}'; can't understand '{term}'")
        key = key.strip()
        if key not in allowed:
            raise ApiError(400, "BadRequest", f"field label not supported: {key}")
        requirements.append(Requirement(key, op, (value.strip(),)))
    return requirements


def field_value(obj: Json, path: str) -> str:
    value: Any = obj
    for part in path.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    if isinstance(value, dict) and path == "source":
        value = value.get("component")
    if isinstance(value, bool):
        return "true" if value else "false"
    return "" if value is None else str(value)


@dataclass(frozen=True)
class Selector:
    labels: list[Requirement] = field(default_factory=list)
    fields: list[Requirement] = field(default_factory=list)

    @classmethod
    def parse(cls, query: dict[str, str], plural: str, name: str | None = None) -> Selector:
        fields = parse_field_selector(query.get("fieldSelector", ""), plural)
        if name is not None:
            fields.append(Requirement("metadata.name", "=", (name,)))
        return cls(parse_label_selector(query.get("labelSelector", "")), fields)

    def matches(self, obj: Json | None) -> bool:
        if obj is None:
            return False
        labels = obj.get("metadata", {}).get("labels") or {}
        if not all(r.matches(labels) for r in self.labels):
            return False
        return all(r.matches({r.key: field_value(obj, r.key)}) for r in self.fields)


# -- patches -------------------------------------------------------------------------------------

# patchMergeKey of the lists a strategic merge patch merges element-wise (the rest are replaced).
_MERGE_KEYS = {
    "containers": "name",
    "initContainers": "name",
    "ephemeralContainers": "name",
    "env": "name",
    "volumes": "name",
    "volumeMounts": "mountPath",
    "volumeDevices": "devicePath",
    "ports": "containerPort",
    "imagePullSecrets": "name",
    "hostAliases": "ip",
    "ownerReferences": "uid",
    "conditions": "type",
    "readinessGates": "conditionType",
    "resourceClaims": "name",
}
_SET_LISTS = {"finalizers"}


def _without_directives(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _without_directives(v) for k, v in value.items() if not k.startswith("$")}
    if isinstance(value, list):
        return [_without_directives(v) for v in value]
    return value


def strategic_merge(target: Any, patch: Any) -> Any:
    """Kubernetes' strategic merge patch for the built-in types' merge keys and directives."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    if patch.get("$patch") == "replace":
        return _without_directives(patch)
    result = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if key.startswith("$deleteFromPrimitiveList/"):
            name = key.split("/", 1)[1]
            result[name] = [item for item in result.get(name, []) if item not in value]
            continue
        if key.startswith("$"):
            continue
        if value is None:
            result.pop(key, None)
        elif isinstance(value, dict):
            if value.get("$patch") == "delete":
                result.pop(key, None)
            else:
                result[key] = strategic_merge(result.get(key), value)
        elif isinstance(value, list) and key in _MERGE_KEYS and all(isinstance(v, dict) for v in value):
            result[key] = _merge_list(result.get(key) or [], value, _MERGE_KEYS[key])
        elif isinstance(value, list) and key in _SET_LISTS:
            current = list(result.get(key) or [])
            result[key] = current + [v for v in value if v not in current]
        else:
            result[key] = _without_directives(value)
    return result


def _merge_list(current: list[Json], patch: list[Json], merge_key: str) -> list[Json]:
    if any(item.get("$patch") == "replace" for item in patch):
        return [_without_directives(item) for item in patch if item.get("$patch") != "replace"]
    result = copy.deepcopy(current)
    for item in patch:
        index = next((i for i, x in enumerate(result) if x.get(merge_key) == item.get(merge_key)), None)
        if item.get("$patch") == "delete":
            if index is not None:
                result.pop(index)
        elif index is None:
            result.append(_without_directives(item))
        else:
            result[index] = strategic_merge(result[index], item)
    return result


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def _pointer(path: str) -> list[str]:
    if path == "":
        return []
    if not path.startswith("/"):
        raise ApiError(422, "Invalid", f"invalid JSON pointer {path!r}")
    return [token.replace("~1", "/").replace("~0", "~") for token in path[1:].split("/")]


def _resolve(doc: Any, tokens: list[str], path: str) -> Any:
    for token in tokens:
        if isinstance(doc, dict) and token in doc:
            doc = doc[token]
        elif isinstance(doc, list) and token.isdigit() and int(token) < len(doc):
            doc = doc[int(token)]
        else:
            raise ApiError(422, "Invalid", f"the server rejected our request: doc is missing path: {path!r}")
    return doc


def json_patch(document: Json, operations: list[Json]) -> Json:
    """RFC 6902 JSON patch."""
    doc: Any = copy.deepcopy(document)
    for operation in operations:
        op, path = operation.get("op"), operation.get("path", "")
        tokens = _pointer(path)
        if op == "test":
            if _resolve(doc, tokens, path) != operation.get("value"):
                raise ApiError(422, "Invalid", f"the server rejected our request: testing value {path} failed")
            continue
        if op in ("move", "copy"):
            source = operation.get("from", "")
            value = copy.deepcopy(_resolve(doc, _pointer(source), source))
            if op == "move":
                doc = json_patch(doc, [{"op": "remove", "path": source}])
            op, operation = "add", {"value": value}
        if not tokens:
            doc = copy.deepcopy(operation.get("value"))
            continue
        parent = _resolve(doc, tokens[:-1], path)
        last = tokens[-1]
        if op == "add":
            if isinstance(parent, list):
                index = len(parent) if last == "-" else int(last)
                if index > len(parent):
                    raise ApiError(422, "Invalid", f"the server rejected our request: index out of range: {path}")
                parent.insert(index, copy.deepcopy(operation.get("value")))
            else:
                parent[last] = copy.deepcopy(operation.get("value"))
        elif op in ("remove", "replace"):
            _resolve(parent, [last], path)
            if op == "remove":
                if isinstance(parent, list):
                    parent.pop(int(last))
                else:
                    del parent[last]
            elif isinstance(parent, list):
                parent[int(last)] = copy.deepcopy(operation.get("value"))
            else:
                parent[last] = copy.deepcopy(operation.get("value"))
        else:
            raise ApiError(422, "Invalid", f"the server rejected our request: unexpected kind of operation {op!r}")
    if not isinstance(doc, dict):
        raise ApiError(422, "Invalid", "the server rejected our request: a JSON patch must leave an object")
    return doc


# -- validation ----------------------------------------------------------------------------------

_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_LABEL_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")


def _check_metadata(meta: Json, causes: list[tuple[str, str]]) -> None:
    for kind in ("labels", "annotations"):
        for key, value in (meta.get(kind) or {}).items():
            prefix, _, name = key.rpartition("/")
            if (
                (prefix and (len(prefix) > 253 or not _DNS_SUBDOMAIN.match(prefix)))
                or len(name) > 63
                or not (_LABEL_NAME.match(name))
            ):
                causes.append(
                    (
                        f"metadata.{kind}",
                        f'Invalid value: "{key}": name part must consist of alphanumeric '
                        "characters, '-', '_' or '.', and must start and end with an alphanumeric character",
                    )
                )
            if not isinstance(value, str):
                causes.append((f"metadata.{kind}", f"Invalid value: {value!r}: must be a string"))
            elif kind == "labels" and value and (len(value) > 63 or not _LABEL_NAME.match(value)):
                causes.append(
                    (
                        "metadata.labels",
                        f'Invalid value: "{value}": a valid label must be an empty string '
                        "or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an "
                        "alphanumeric character",
                    )
                )


def _validate_pod(pod: Json) -> list[tuple[str, str]]:
    causes: list[tuple[str, str]] = []
    _check_metadata(pod["metadata"], causes)
    spec = pod.get("spec")
    if not isinstance(spec, dict):
        return [*causes, ("spec", "Required value")]
    containers = spec.get("containers") or []
    if not containers:
        causes.append(("spec.containers", "Required value"))
    volumes = {v.get("name") for v in spec.get("volumes") or []}
    seen: set[str] = set()
    for kind in ("initContainers", "containers"):
        for index, container in enumerate(spec.get(kind) or []):
            where = f"spec.{kind}[{index}]"
            name = container.get("name") or ""
            if not _DNS_LABEL.match(name) or len(name) > 63:
                causes.append(
                    (
                        f"{where}.name",
                        f'Invalid value: "{name}": a lowercase RFC 1123 label must consist '
                        "of lower case alphanumeric characters or '-'",
                    )
                )
            elif name in seen:
                causes.append((f"{where}.name", f'Duplicate value: "{name}"'))
            seen.add(name)
            if not container.get("image"):
                causes.append((f"{where}.image", "Required value"))
            for mount_index, mount in enumerate(container.get("volumeMounts") or []):
                if mount.get("name") not in volumes:
                    causes.append((f"{where}.volumeMounts[{mount_index}].name", f'Not found: "{mount.get("name")}"'))
                if not str(mount.get("mountPath", "")).startswith("/"):
                    causes.append((f"{where}.volumeMounts[{mount_index}].mountPath", "Invalid value: must be absolute"))
    if len(volumes) != len(spec.get("volumes") or []):
        causes.append(("spec.volumes", "Duplicate value: volume names must be unique"))
    restart = spec.get("restartPolicy")
    if restart not in (None, "Always", "OnFailure", "Never"):
        causes.append(("spec.restartPolicy", f'Unsupported value: "{restart}"'))
    return causes


def _default_pod(pod: Json) -> None:
    """The API server's defaulting: what a real server adds to a created pod's spec and status."""
    spec = pod["spec"]
    spec.setdefault("restartPolicy", "Always")
    spec.setdefault("terminationGracePeriodSeconds", 30)
    spec.setdefault("dnsPolicy", "ClusterFirst")
    spec.setdefault("schedulerName", "default-scheduler")
    spec.setdefault("securityContext", {})
    spec.setdefault("enableServiceLinks", True)
    spec.setdefault("priority", 0)
    spec.setdefault("preemptionPolicy", "PreemptLowerPriority")
    account = spec.get("serviceAccountName") or spec.get("serviceAccount") or "default"
    spec["serviceAccountName"] = spec["serviceAccount"] = account
    tolerations = spec.setdefault("tolerations", [])
    for taint in ("node.kubernetes.io/not-ready", "node.kubernetes.io/unreachable"):
        if not any(t.get("key") == taint for t in tolerations):
            tolerations.append({"key": taint, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300})
    for kind in ("initContainers", "containers"):
        for container in spec.get(kind) or []:
            image = container.get("image", "")
            tag = image.rsplit("/", 1)[-1]
            latest = "@" not in tag and (":" not in tag or tag.endswith(":latest"))
            container.setdefault("imagePullPolicy", "Always" if latest else "IfNotPresent")
            container.setdefault("terminationMessagePath", "/dev/termination-log")
            container.setdefault("terminationMessagePolicy", "File")
            resources = container.setdefault("resources", {})
            limits = resources.get("limits") or {}
            if limits:
                requests = resources.setdefault("requests", {})
                for name, value in limits.items():
                    requests.setdefault(name, value)
    pod["status"] = {"phase": "Pending", "qosClass": _qos_class(spec)}


def _qos_class(spec: Json) -> str:
    containers = [*(spec.get("initContainers") or []), *spec["containers"]]
    resources = [c.get("resources") or {} for c in containers]
    requests = [r.get("requests") or {} for r in resources]
    limits = [r.get("limits") or {} for r in resources]
    if not any(requests) and not any(limits):
        return "BestEffort"
    guaranteed = all(
        all(name in lim and name in req and str(lim[name]) == str(req[name]) for name in ("cpu", "memory"))
        for req, lim in zip(requests, limits, strict=True)
    )
    return "Guaranteed" if guaranteed else "Burstable"


_MUTABLE_POD_SPEC = (
    "spec.containers[*].image,spec.initContainers[*].image,spec.activeDeadlineSeconds,"
    "spec.tolerations (only additions to existing tolerations),spec.terminationGracePeriodSeconds "
    "(allow it to be set to 1 if it was previously negative)"
)


def _immutable_spec(spec: Json) -> Json:
    frozen = copy.deepcopy(spec)
    for key in ("activeDeadlineSeconds", "tolerations", "terminationGracePeriodSeconds"):
        frozen.pop(key, None)
    for kind in ("initContainers", "containers"):
        for container in frozen.get(kind) or []:
            container.pop("image", None)
    return frozen


# -- the object store ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Change:
    rv: int
    plural: str
    namespace: str
    type: str  # ADDED | MODIFIED | DELETED
    obj: Json
    previous: Json | None


class ObjectStore:
    """All API objects, with one resourceVersion sequence and the change history watches replay."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.changed = threading.Condition(self.lock)
        self._rv = 0
        self._objects: dict[str, dict[tuple[str, str], Json]] = {plural: {} for plural in RESOURCES}
        self._history: list[Change] = []
        self._history_rvs: list[int] = []
        self._event_index: dict[tuple[str, str, str, str], tuple[str, str]] = {}
        self.deleted: list[tuple[str, str, str]] = []  # (plural, namespace, name) in deletion order

    @property
    def resource_version(self) -> int:
        return self._rv

    def _record(self, plural: str, namespace: str, type_: str, obj: Json, previous: Json | None) -> None:
        self._history.append(Change(self._rv, plural, namespace, type_, copy.deepcopy(obj), previous))
        self._history_rvs.append(self._rv)
        self.changed.notify_all()

    def _next_rv(self) -> str:
        self._rv += 1
        return str(self._rv)

    def ensure_namespace(self, namespace: str) -> None:
        with self.lock:
            if ("", namespace) in self._objects["namespaces"]:
                return
            obj = {
                "kind": "Namespace",
                "apiVersion": "v1",
                "metadata": {"name": namespace, "labels": {"kubernetes.io/metadata.name": namespace}},
                "spec": {"finalizers": ["kubernetes"]},
                "status": {"phase": "Active"},
            }
            self.create("namespaces", "", obj)

    def create(self, plural: str, namespace: str, obj: Json, *, dry_run: bool = False) -> Json:
        resource = RESOURCES[plural]
        with self.lock:
            if resource.namespaced and not dry_run:
                self.ensure_namespace(namespace)
            meta = obj.setdefault("metadata", {})
            if not meta.get("name") and meta.get("generateName"):
                meta["name"] = meta["generateName"] + "".join(
                    secrets.choice("bcdfghjklmnpqrstvwxz2456789") for _ in range(5)
                )
            name = meta.get("name") or ""
            if not name:
                raise ApiError(
                    422,
                    "Invalid",
                    f'{resource.kind} "" is invalid: metadata.name: Required value: name or generateName is required',
                    {
                        "kind": plural,
                        "causes": [
                            {"reason": "FieldValueRequired", "message": "Required value", "field": "metadata.name"}
                        ],
                    },
                )
            if len(name) > 253 or not _DNS_SUBDOMAIN.match(name):
                raise invalid(
                    resource.kind,
                    name,
                    [
                        (
                            "metadata.name",
                            f'Invalid value: "{name}": a lowercase RFC 1123 '
                            "subdomain must consist of lower case alphanumeric characters, '-' or '.'",
                        )
                    ],
                )
            key = (namespace if resource.namespaced else "", name)
            if key in self._objects[plural]:
                raise ApiError(
                    409, "AlreadyExists", f'{plural} "{name}" already exists', {"name": name, "kind": plural}
                )
            obj["kind"] = resource.kind
            obj["apiVersion"] = "v1"
            if resource.namespaced:
                meta["namespace"] = namespace
            meta["uid"] = str(uuid.uuid4())
            meta["creationTimestamp"] = now_iso()
            meta.pop("resourceVersion", None)
            if dry_run:
                meta["resourceVersion"] = str(self._rv)
                return copy.deepcopy(obj)
            meta["resourceVersion"] = self._next_rv()
            self._objects[plural][key] = obj
            self._record(plural, key[0], "ADDED", obj, None)
            return copy.deepcopy(obj)

    def get(self, plural: str, namespace: str, name: str) -> Json | None:
        with self.lock:
            obj = self._objects[plural].get((namespace if RESOURCES[plural].namespaced else "", name))
            return copy.deepcopy(obj) if obj is not None else None

    def select(self, plural: str, namespace: str | None, selector: Selector) -> tuple[list[Json], int]:
        with self.lock:
            items = [
                copy.deepcopy(obj)
                for (ns, _), obj in sorted(self._objects[plural].items())
                if (namespace is None or ns == namespace) and selector.matches(obj)
            ]
            return items, self._rv

    def put(self, plural: str, namespace: str, name: str, obj: Json) -> Json:
        """Store a new version of an existing object (validated by the caller)."""
        with self.lock:
            key = (namespace if RESOURCES[plural].namespaced else "", name)
            previous = self._objects[plural].get(key)
            if previous is None:
                raise not_found(plural, name)
            obj["metadata"]["resourceVersion"] = self._next_rv()
            self._objects[plural][key] = obj
            self._record(plural, key[0], "MODIFIED", obj, copy.deepcopy(previous))
            return copy.deepcopy(obj)

    def mutate(
        self, plural: str, namespace: str, name: str, change: Callable[[Json], None], *, uid: str | None = None
    ) -> Json | None:
        """Change an object in place (the kubelet's status updates); None if it is gone."""
        with self.lock:
            key = (namespace, name)
            obj = self._objects[plural].get(key)
            if obj is None or (uid is not None and obj["metadata"]["uid"] != uid):
                return None
            previous = copy.deepcopy(obj)
            change(obj)
            if obj == previous:
                return copy.deepcopy(obj)
            obj["metadata"]["resourceVersion"] = self._next_rv()
            self._record(plural, namespace, "MODIFIED", obj, previous)
            return copy.deepcopy(obj)

    def delete(self, plural: str, namespace: str, name: str, *, uid: str | None = None) -> Json | None:
        with self.lock:
            key = (namespace if RESOURCES[plural].namespaced else "", name)
            obj = self._objects[plural].get(key)
            if obj is None or (uid is not None and obj["metadata"]["uid"] != uid):
                return None
            del self._objects[plural][key]
            previous = copy.deepcopy(obj)
            obj["metadata"]["resourceVersion"] = self._next_rv()
            self._record(plural, key[0], "DELETED", obj, previous)
            self.deleted.append((plural, key[0], name))
            return copy.deepcopy(obj)

    def changes_since(self, rv: int, plural: str, namespace: str | None) -> list[Change]:
        with self.lock:
            start = bisect.bisect_right(self._history_rvs, rv)
            return [
                c
                for c in self._history[start:]
                if c.plural == plural and (namespace is None or c.namespace == namespace)
            ]

    def record_event(
        self,
        *,
        namespace: str,
        name: str,
        uid: str,
        reason: str,
        message: str,
        type_: str,
        component: str,
        host: str,
        field_path: str | None,
    ) -> None:
        """An event about a pod; a repeat of the same event raises its count, as the event recorder does."""
        with self.lock:
            now = now_iso()
            dedupe = (uid, reason, message, field_path or "")
            existing = self._event_index.get(dedupe)
            if existing is not None and (namespace, existing[1]) in self._objects["events"]:

                def repeat(event: Json) -> None:
                    event["count"] = event.get("count", 1) + 1
                    event["lastTimestamp"] = now

                self.mutate("events", namespace, existing[1], repeat)
                return
            pod = self._objects["pods"].get((namespace, name))
            involved: Json = {
                "kind": "Pod",
                "namespace": namespace,
                "name": name,
                "uid": uid,
                "apiVersion": "v1",
                "resourceVersion": pod["metadata"]["resourceVersion"] if pod else "",
            }
            if field_path:
                involved["fieldPath"] = field_path
            # Named like the event recorder names them (pod name, then the time in hex): lists come out in order.
            event_name = f"{name}.{time.time_ns():x}"
            while (namespace, event_name) in self._objects["events"]:
                event_name = f"{name}.{time.time_ns():x}"
            self.create(
                "events",
                namespace,
                {
                    "metadata": {"name": event_name, "namespace": namespace},
                    "involvedObject": involved,
                    "reason": reason,
                    "message": message,
                    "source": {"component": component, "host": host},
                    "firstTimestamp": now,
                    "lastTimestamp": now,
                    "count": 1,
                    "type": type_,
                    "eventTime": None,
                    "reportingComponent": component,
                    "reportingInstance": host if component == "kubelet" else "",
                },
            )
            self._event_index[dedupe] = (namespace, event_name)


# -- HTTP ------------------------------------------------------------------------------------------


_RESOURCE_PATH = re.compile(
    r"^/api/v1(?P<watch>/watch)?(?:/namespaces/(?P<namespace>[^/]+))?/(?P<plural>[a-z]+)"
    r"(?:/(?P<name>[^/]+)(?:/(?P<sub>[a-z]+))?)?/?$"
)


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str
    query: dict[str, str]
    content_type: str | None


def _truthy(value: str | None) -> bool:
    return value is not None and value.lower() in ("true", "1", "")


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _HttpServer

    def setup(self) -> None:
        super().setup()
        # Headers and body leave in separate writes: without this, Nagle's algorithm and the client's
        # delayed ACK add some 40 ms to every request.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self._handle("GET")

    def do_POST(self) -> None:
        self._handle("POST")

    def do_PUT(self) -> None:
        self._handle("PUT")

    def do_PATCH(self) -> None:
        self._handle("PATCH")

    def do_DELETE(self) -> None:
        self._handle("DELETE")

    # -- plumbing ---------------------------------------------------------------------------------

    @property
    def api(self) -> K8sApiServer:
        return self.server.api

    def _handle(self, method: str) -> None:
        url = urlsplit(self.path)
        query = {key: values[-1] for key, values in parse_qs(url.query, keep_blank_values=True).items()}
        content_type = self.headers.get("Content-Type")
        self.api.requests.append(RecordedRequest(method, url.path, query, content_type))
        try:
            raw = self._read_body()
            if self.api.token and self.headers.get("Authorization") != f"Bearer {self.api.token}":
                raise ApiError(401, "Unauthorized", "Unauthorized")
            self._route(method, url.path, query, raw, (content_type or "").split(";")[0].strip())
        except ApiError as exc:
            self._send_json(exc.code, exc.status())
        except (BrokenPipeError, ConnectionResetError, TimeoutError):
            self.close_connection = True
        except Exception:
            self.api.errors.append(f"{method} {self.path}\n{traceback.format_exc()}")
            self._send_json(500, ApiError(500, "InternalError", "internal error in the test API server").status())

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks: list[bytes] = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    self.rfile.readline()
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _json_body(self, raw: bytes) -> Any:
        try:
            return json.loads(raw or b"null")
        except ValueError as exc:
            raise ApiError(400, "BadRequest", f"error decoding body: {exc}") from None

    def _send(self, code: int, body: bytes, content_type: str) -> None:
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-cache, private")
        self.end_headers()
        self.wfile.write(body)

    def _send_json(self, code: int, obj: Any) -> None:
        self._send(code, json.dumps(obj).encode(), "application/json")

    def _start_stream(self, content_type: str) -> None:
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Transfer-Encoding", "chunked")
        self.send_header("Cache-Control", "no-cache, private")
        self.end_headers()
        self.wfile.flush()

    def _chunk(self, data: bytes) -> None:
        if data:
            self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
            self.wfile.flush()

    def _end_stream(self) -> None:
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    def _client_gone(self) -> bool:
        try:
            readable, _, _ = select.select([self.connection], [], [], 0)
            return bool(readable) and self.connection.recv(1, socket.MSG_PEEK) == b""
        except OSError:
            return True

    # -- routes -----------------------------------------------------------------------------------

    def _route(self, method: str, path: str, query: dict[str, str], raw: bytes, content_type: str) -> None:
        if path != "/":
            path = path.rstrip("/")
        if method == "GET" and path in ("/healthz", "/readyz", "/livez"):
            self._send(200, b"ok", "text/plain; charset=utf-8")
            return
        if method == "GET" and path == "/version":
            self._send_json(200, VERSION_INFO)
            return
        if method == "GET" and path == "/api":
            self._send_json(
                200,
                {
                    "kind": "APIVersions",
                    "versions": ["v1"],
                    "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": self.api.address}],
                },
            )
            return
        if method == "GET" and path == "/apis":
            self._send_json(200, {"kind": "APIGroupList", "apiVersion": "v1", "groups": []})
            return
        if method == "GET" and path == "/api/v1":
            self._send_json(200, self.api.resource_list())
            return
        match = _RESOURCE_PATH.match(path)
        if not match or match["plural"] not in RESOURCES:
            raise ApiError(404, "NotFound", "the server could not find the requested resource", {})
        plural, namespace = match["plural"], match["namespace"]
        name = unquote(match["name"]) if match["name"] else None
        sub = match["sub"]
        resource = RESOURCES[plural]
        if namespace is not None:
            namespace = unquote(namespace)
            if not resource.namespaced:
                raise ApiError(404, "NotFound", "the server could not find the requested resource", {})
        elif resource.namespaced and name is not None:
            raise ApiError(404, "NotFound", "the server could not find the requested resource", {})
        scope = namespace if resource.namespaced else ""
        watch = bool(match["watch"]) or _truthy(query.get("watch"))
        if sub is not None:
            self._subresource(method, plural, scope or "", name or "", sub, query, raw, content_type)
            return
        if name is None:
            if method == "GET" and watch:
                self._watch(plural, namespace if resource.namespaced else None, query, None)
            elif method == "GET":
                self._send_json(200, self.api.list_objects(plural, namespace, query))
            elif method == "POST" and namespace is not None or method == "POST" and not resource.namespaced:
                obj = self._json_body(raw)
                created = self.api.create_object(plural, scope or "", obj, dry_run=query.get("dryRun") == "All")
                self._send_json(201, created)
            elif method == "DELETE" and "deletecollection" in resource.verbs:
                self._send_json(200, self.api.delete_collection(plural, namespace, query))
            else:
                raise self._method_not_allowed(method)
            return
        if method == "GET" and watch:
            self._watch(plural, scope if resource.namespaced else None, query, name)
        elif method == "GET":
            obj = self.api.store.get(plural, scope or "", name)
            if obj is None:
                raise not_found(plural, name)
            self._send_json(200, obj)
        elif method == "PUT" and "update" in resource.verbs:
            self._send_json(200, self.api.replace_object(plural, scope or "", name, self._json_body(raw)))
        elif method == "PATCH" and "patch" in resource.verbs:
            self._send_json(200, self.api.patch_object(plural, scope or "", name, self._json_body(raw), content_type))
        elif method == "DELETE" and "delete" in resource.verbs:
            body = self._json_body(raw) or {}
            self._send_json(200, self.api.delete_object(plural, scope or "", name, query, body))
        else:
            raise self._method_not_allowed(method)

    @staticmethod
    def _method_not_allowed(method: str) -> ApiError:
        return ApiError(
            405, "MethodNotAllowed", f"the server does not allow this method on the requested resource ({method})", {}
        )

    def _subresource(
        self,
        method: str,
        plural: str,
        namespace: str,
        name: str,
        sub: str,
        query: dict[str, str],
        raw: bytes,
        content_type: str,
    ) -> None:
        if f"{plural}/{sub}" not in SUBRESOURCES:
            raise ApiError(404, "NotFound", "the server could not find the requested resource", {})
        if sub in ("exec", "attach", "portforward"):
            raise ApiError(400, "BadRequest", "Upgrade request required")
        if sub == "log" and method == "GET":
            self._log(namespace, name, query)
        elif sub == "status" and method == "GET":
            obj = self.api.store.get(plural, namespace, name)
            if obj is None:
                raise not_found(plural, name)
            self._send_json(200, obj)
        elif sub == "status" and method == "PUT":
            self._send_json(200, self.api.replace_object(plural, namespace, name, self._json_body(raw), status=True))
        elif sub == "status" and method == "PATCH":
            patched = self.api.patch_object(plural, namespace, name, self._json_body(raw), content_type, status=True)
            self._send_json(200, patched)
        elif sub == "eviction" and method == "POST":
            self.api.delete_object(plural, namespace, name, {}, (self._json_body(raw) or {}).get("deleteOptions") or {})
            self._send_json(
                201, {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201}
            )
        else:
            raise self._method_not_allowed(method)

    def _watch(self, plural: str, namespace: str | None, query: dict[str, str], name: str | None) -> None:
        selector = Selector.parse(query, plural, name)
        store = self.api.store
        timeout = float(query.get("timeoutSeconds") or DEFAULT_WATCH_SECONDS)
        requested_rv = query.get("resourceVersion") or ""
        if requested_rv and not requested_rv.isdigit():
            raise ApiError(400, "BadRequest", f"invalid resource version: {requested_rv}")
        with store.lock:
            if requested_rv in ("", "0"):
                initial, rv = store.select(plural, namespace, selector)
            else:
                initial, rv = [], int(requested_rv)
        self._start_stream("application/json")
        for obj in initial:
            self._chunk(json.dumps({"type": "ADDED", "object": obj}).encode() + b"\n")
        ends = time.monotonic() + timeout
        while not self.api.stopping and time.monotonic() < ends:
            with store.lock:
                changes = store.changes_since(rv, plural, namespace)
                if not changes:
                    store.changed.wait(min(0.25, max(0.0, ends - time.monotonic())))
                    changes = store.changes_since(rv, plural, namespace)
            lines = []
            for change in changes:
                rv = change.rv
                now_matches = change.type != "DELETED" and selector.matches(change.obj)
                before_matches = selector.matches(change.previous)
                if change.type == "DELETED" and before_matches:
                    type_ = "DELETED"
                elif now_matches:
                    type_ = "MODIFIED" if before_matches else "ADDED"
                elif before_matches:
                    type_ = "DELETED"
                else:
                    continue
                lines.append(json.dumps({"type": type_, "object": change.obj}).encode() + b"\n")
            if lines:
                self._chunk(b"".join(lines))
            elif self._client_gone():
                self.close_connection = True
                return
        self._end_stream()

    def _log(self, namespace: str, name: str, query: dict[str, str]) -> None:
        log = self.api.open_log(namespace, name, query.get("container"), _truthy(query.get("previous")))
        since_ns = None
        if query.get("sinceSeconds"):
            since_ns = time.time_ns() - int(query["sinceSeconds"]) * 1_000_000_000
        elif query.get("sinceTime"):
            since = datetime.fromisoformat(query["sinceTime"].replace("Z", "+00:00"))
            since_ns = int(since.timestamp() * 1_000_000_000)
        tail = int(query["tailLines"]) if query.get("tailLines") else None
        limit = int(query["limitBytes"]) if query.get("limitBytes") else None
        timestamps = _truthy(query.get("timestamps")) if "timestamps" in query else False
        follow = _truthy(query.get("follow")) if "follow" in query else False
        self._start_stream("text/plain")
        sent = 0
        for batch in log.follow(
            follow=follow,
            since_ns=since_ns,
            tail_lines=tail,
            should_stop=lambda: self.api.stopping or self._client_gone(),
        ):
            data = b"".join((log_timestamp(ts) + b" " + line) if timestamps else line for ts, line in batch)
            if limit is not None:
                data = data[: max(0, limit - sent)]
            self._chunk(data)
            sent += len(data)
            if limit is not None and sent >= limit:
                break
        self._end_stream()


class _HttpServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, api: K8sApiServer) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.api = api
        self.connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._connections_lock:
            self.connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._connections_lock:
            self.connections.discard(request)
        super().shutdown_request(request)

    def close_connections(self) -> None:
        with self._connections_lock:
            connections = list(self.connections)
        for connection in connections:
            try:
                connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


# -- the server ----------------------------------------------------------------------------------


class K8sApiServer:
    """The API server, its simulated kubelet and what tests need around them."""

    def __init__(
        self,
        root: Path,
        *,
        token: str | None = None,
        namespace: str = "default",
        rewrite_mount_paths: bool = True,
        extra_env: dict[str, str] | None = None,
        start_delay: float = 0.0,
    ) -> None:
        self.root = root
        self.token = token
        self.namespace = namespace
        self.store = ObjectStore()
        for name in INITIAL_NAMESPACES:
            self.store.ensure_namespace(name)
        self.kubelet = SimulatedKubelet(
            self.store,
            root / "kubelet",
            rewrite_mount_paths=rewrite_mount_paths,
            extra_env=extra_env,
            start_delay=start_delay,
        )
        self.requests: list[RecordedRequest] = []
        self.errors: list[str] = []
        self.stopping = False
        self._http: _HttpServer | None = None
        self._thread: threading.Thread | None = None
        self.kubeconfig_path = root / "kubeconfig.yaml"

    # -- lifecycle --------------------------------------------------------------------------------

    def start(self) -> K8sApiServer:
        self._http = _HttpServer(self)
        self._thread = threading.Thread(target=self._http.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
        self._thread.start()
        write_kubeconfig(self.kubeconfig_path, self.url, token=self.token, namespace=self.namespace)
        return self

    def stop(self) -> None:
        self.stopping = True
        with self.store.changed:
            self.store.changed.notify_all()
        self.kubelet.shutdown()
        if self._http is not None:
            self._http.shutdown()
            self._http.close_connections()
            self._http.server_close()
        if self._thread is not None:
            self._thread.join(5)

    def __enter__(self) -> K8sApiServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        assert self._http is not None, "the server is not started"
        return int(self._http.server_address[1])

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.address}"

    # -- for tests --------------------------------------------------------------------------------

    @property
    def pods(self) -> list[Json]:
        """The pods that exist now (copies), in every namespace."""
        return self.store.select("pods", None, Selector())[0]

    @property
    def deleted_pods(self) -> list[str]:
        """Names of deleted pods, in deletion order."""
        return [name for plural, _, name in self.store.deleted if plural == "pods"]

    def pod(self, name: str, namespace: str | None = None) -> Json | None:
        return self.store.get("pods", namespace or self.namespace, name)

    def pod_log(self, name: str, container: str | None = None, namespace: str | None = None) -> str:
        """A container's whole log (all its instances), also after the pod was deleted."""
        namespace = namespace or self.namespace
        uid = self.kubelet.uid_of(namespace, name)
        if uid is None:
            raise KeyError(f"no pod {namespace}/{name} ever ran")
        if container is None:
            pod = self.pod(name, namespace)
            container = pod["spec"]["containers"][0]["name"] if pod else "base"
        return "".join(log.text() for log in self.kubelet.container_logs(uid, container))

    def events(self, name: str | None = None, namespace: str | None = None) -> list[Json]:
        query = {"fieldSelector": f"involvedObject.name={name}"} if name else {}
        return self.store.select("events", namespace or self.namespace, Selector.parse(query, "events"))[0]

    def wait_for_pod(
        self, name: str, condition: Callable[[Json | None], bool], *, timeout: float = 20, namespace: str | None = None
    ) -> Json | None:
        """Wait until ``condition(pod)`` holds (the pod is None once deleted); the pod at that moment."""
        deadline = time.monotonic() + timeout
        with self.store.changed:
            while True:
                pod = self.pod(name, namespace)
                if condition(pod):
                    return pod
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(f"pod {name}: condition not met within {timeout}s; last state: {pod}")
                self.store.changed.wait(min(remaining, 0.25))

    def wait_for_phase(self, name: str, *phases: str, timeout: float = 20, namespace: str | None = None) -> Json:
        pod = self.wait_for_pod(
            name, lambda p: p is not None and p["status"].get("phase") in phases, timeout=timeout, namespace=namespace
        )
        assert pod is not None
        return pod

    def create_secret(self, name: str, data: dict[str, str], namespace: str | None = None) -> Json:
        encoded = {key: base64.b64encode(value.encode()).decode() for key, value in data.items()}
        return self.create_object("secrets", namespace or self.namespace, {"metadata": {"name": name}, "data": encoded})

    def evict(
        self, name: str, namespace: str | None = None, message: str = "The node was low on resource: memory. "
    ) -> None:
        """Evict a pod the way node pressure does: phase Failed, reason Evicted, containers killed."""
        pod = self.pod(name, namespace)
        if pod is None:
            raise KeyError(name)
        self.kubelet.evict(pod["metadata"]["uid"], message)

    def host_path(self, path: str) -> Path:
        return self.kubelet.host_path(path)

    def pvc_path(self, claim: str, namespace: str | None = None) -> Path:
        return self.kubelet.pvc_path(claim, namespace or self.namespace)

    def client(self) -> CoreV1Api:
        """A real ``kubernetes`` CoreV1Api client configured from this server's kubeconfig."""
        from kubernetes import client, config

        return client.CoreV1Api(config.new_client_from_config(config_file=str(self.kubeconfig_path)))

    def airflow_connection_env(self, conn_id: str = "kubernetes_default") -> dict[str, str]:
        """The environment variable that makes this server Airflow's ``conn_id`` connection."""
        extra = {"kube_config_path": str(self.kubeconfig_path), "namespace": self.namespace}
        return {f"AIRFLOW_CONN_{conn_id.upper()}": json.dumps({"conn_type": "kubernetes", "extra": extra})}

    def use_as_airflow_connection(self, monkeypatch: pytest.MonkeyPatch, conn_id: str = "kubernetes_default") -> None:
        for key, value in self.airflow_connection_env(conn_id).items():
            monkeypatch.setenv(key, value)
        # The connection names its kubeconfig; a KUBECONFIG as well would make the deferrable
        # trigger see two configurations ("mutually exclusive") and fail.
        monkeypatch.delenv("KUBECONFIG", raising=False)

    # -- API operations (called by the HTTP handler) -----------------------------------------------

    def resource_list(self) -> Json:
        resources = [
            {
                "name": r.plural,
                "singularName": r.kind.lower(),
                "namespaced": r.namespaced,
                "kind": r.kind,
                "verbs": list(r.verbs),
            }
            for r in RESOURCES.values()
        ]
        resources += [
            {"name": name, "singularName": "", "namespaced": True, "kind": kind, "verbs": list(verbs)}
            for name, (kind, verbs) in SUBRESOURCES.items()
        ]
        return {"kind": "APIResourceList", "groupVersion": "v1", "resources": resources}

    def list_objects(self, plural: str, namespace: str | None, query: dict[str, str]) -> Json:
        items, rv = self.store.select(plural, namespace, Selector.parse(query, plural))
        meta: Json = {"resourceVersion": str(rv)}
        limit = int(query.get("limit") or 0)
        offset = int(base64.b64decode(query["continue"]).decode()) if query.get("continue") else 0
        if limit or offset:
            remaining = items[offset + limit :] if limit else []
            items = items[offset : offset + limit] if limit else items[offset:]
            if remaining:
                meta["continue"] = base64.b64encode(str(offset + limit).encode()).decode()
                meta["remainingItemCount"] = len(remaining)
        for item in items:
            item.pop("kind", None)
            item.pop("apiVersion", None)
        return {"kind": RESOURCES[plural].kind + "List", "apiVersion": "v1", "metadata": meta, "items": items}

    def create_object(self, plural: str, namespace: str, obj: Any, *, dry_run: bool = False) -> Json:
        resource = RESOURCES[plural]
        if not isinstance(obj, dict):
            raise ApiError(400, "BadRequest", f"the body of the request must be a {resource.kind} object")
        if obj.get("kind") not in (None, resource.kind):
            raise ApiError(
                400,
                "BadRequest",
                f"the API version in the data (v1) does not match the expected API "
                f"version (v1): kind {obj.get('kind')!r} is not {resource.kind!r}",
            )
        meta = obj.setdefault("metadata", {}) or {}
        obj["metadata"] = meta
        if resource.namespaced and meta.get("namespace") not in (None, "", namespace):
            raise ApiError(
                400,
                "BadRequest",
                "the namespace of the provided object does not match the namespace sent on the request",
            )
        if plural == "pods":
            causes = _validate_pod(obj)
            if causes:
                raise invalid("Pod", meta.get("name") or meta.get("generateName") or "", causes)
            _default_pod(obj)
        elif plural == "secrets":
            obj.setdefault("type", "Opaque")
            data = obj.setdefault("data", {}) or {}
            for key, value in (obj.pop("stringData", None) or {}).items():
                data[key] = base64.b64encode(str(value).encode()).decode()
            obj["data"] = data
        created = self.store.create(plural, namespace, obj, dry_run=dry_run)
        if plural == "pods" and not dry_run:
            self.kubelet.admit(created)
        return created

    def replace_object(self, plural: str, namespace: str, name: str, obj: Any, *, status: bool = False) -> Json:
        if not isinstance(obj, dict):
            raise ApiError(400, "BadRequest", f"the body of the request must be a {RESOURCES[plural].kind} object")
        with self.store.lock:
            current = self.store.get(plural, namespace, name)
            if current is None:
                raise not_found(plural, name)
            return self._update(plural, namespace, name, current, obj, status=status)

    def patch_object(
        self, plural: str, namespace: str, name: str, patch: Any, content_type: str, *, status: bool = False
    ) -> Json:
        with self.store.lock:
            current = self.store.get(plural, namespace, name)
            if current is None:
                raise not_found(plural, name)
            if content_type == "application/json-patch+json":
                if not isinstance(patch, list):
                    raise ApiError(400, "BadRequest", "a JSON patch must be a list of operations")
                patched = json_patch(current, patch)
            elif content_type == "application/merge-patch+json":
                patched = merge_patch(current, patch)
            elif content_type == "application/strategic-merge-patch+json":
                if not isinstance(patch, dict):
                    raise ApiError(400, "BadRequest", "a strategic merge patch must be an object")
                patched = strategic_merge(current, patch)
            else:
                raise ApiError(
                    415,
                    "UnsupportedMediaType",
                    f"the body of the request was in an unknown format - "
                    f"accepted media types include: application/json-patch+json, application/merge-patch+"
                    f"json, application/strategic-merge-patch+json (got {content_type!r})",
                )
            if not isinstance(patched, dict):
                raise ApiError(422, "Invalid", "the patch must leave an object")
            patched_rv = (patched.get("metadata") or {}).get("resourceVersion")
            if patched_rv == current["metadata"]["resourceVersion"]:
                # Only a resourceVersion the patch itself sets is a precondition.
                patched.setdefault("metadata", {}).pop("resourceVersion", None)
            return self._update(plural, namespace, name, current, patched, status=status)

    def _update(self, plural: str, namespace: str, name: str, current: Json, new: Json, *, status: bool) -> Json:
        kind = RESOURCES[plural].kind
        meta = new.get("metadata")
        if not isinstance(meta, dict):
            raise invalid(kind, name, [("metadata", "Required value")])
        if meta.get("name", name) != name:
            raise ApiError(400, "BadRequest", "the name of the object does not match the name on the URL")
        requested_rv = meta.get("resourceVersion")
        if requested_rv and requested_rv != current["metadata"]["resourceVersion"]:
            raise ApiError(
                409,
                "Conflict",
                f'Operation cannot be fulfilled on {plural} "{name}": the object has been '
                "modified; please apply your changes to the latest version and try again",
                {"name": name, "kind": plural},
            )
        if status:
            updated = copy.deepcopy(current)
            updated["status"] = new.get("status") or {}
        else:
            updated = copy.deepcopy(new)
            for key in ("uid", "creationTimestamp", "namespace", "deletionTimestamp", "deletionGracePeriodSeconds"):
                if key in current["metadata"]:
                    updated["metadata"][key] = current["metadata"][key]
                else:
                    updated["metadata"].pop(key, None)
            updated["metadata"]["name"] = name
            updated["kind"] = kind
            updated["apiVersion"] = "v1"
            if plural == "pods":
                causes: list[tuple[str, str]] = []
                _check_metadata(updated["metadata"], causes)
                if causes:
                    raise invalid(kind, name, causes)
                if _immutable_spec(updated.get("spec") or {}) != _immutable_spec(current["spec"]):
                    raise invalid(
                        kind,
                        name,
                        [("spec", f"Forbidden: pod updates may not change fields other than {_MUTABLE_POD_SPEC}")],
                    )
                updated["status"] = current["status"]
        return self.store.put(plural, namespace, name, updated)

    def delete_object(self, plural: str, namespace: str, name: str, query: dict[str, str], options: Any) -> Json:
        if not isinstance(options, dict):
            options = {}
        with self.store.lock:
            current = self.store.get(plural, namespace, name)
            if current is None:
                raise not_found(plural, name)
            if plural != "pods":
                deleted = self.store.delete(plural, namespace, name)
                assert deleted is not None
                return deleted
            grace_text = options.get("gracePeriodSeconds", query.get("gracePeriodSeconds"))
            grace = (
                float(grace_text) if grace_text is not None else float(current["spec"]["terminationGracePeriodSeconds"])
            )
            uid = current["metadata"]["uid"]
            if current["metadata"].get("deletionTimestamp") is None and grace > 0:
                if self.kubelet.stop_pod(uid, grace):

                    def mark(pod: Json) -> None:
                        deadline = datetime.now(UTC) + timedelta(seconds=grace)
                        pod["metadata"]["deletionTimestamp"] = deadline.strftime("%Y-%m-%dT%H:%M:%SZ")
                        pod["metadata"]["deletionGracePeriodSeconds"] = int(grace)

                    marked = self.store.mutate("pods", namespace, name, mark, uid=uid)
                    if marked is not None:
                        return marked
            elif current["metadata"].get("deletionTimestamp") is not None and grace > 0:
                self.kubelet.stop_pod(uid, grace)
                return current
            deleted = self.store.delete("pods", namespace, name, uid=uid)
        self.kubelet.forget(uid)
        return deleted or current

    def delete_collection(self, plural: str, namespace: str | None, query: dict[str, str]) -> Json:
        items, _ = self.store.select(plural, namespace, Selector.parse(query, plural))
        deleted = [
            self.delete_object(plural, item["metadata"].get("namespace", ""), item["metadata"]["name"], query, {})
            for item in items
        ]
        return {
            "kind": RESOURCES[plural].kind + "List",
            "apiVersion": "v1",
            "metadata": {"resourceVersion": str(self.store.resource_version)},
            "items": deleted,
        }

    def open_log(self, namespace: str, name: str, container: str | None, previous: bool) -> Any:
        pod = self.store.get("pods", namespace, name)
        if pod is None:
            raise not_found("pods", name)
        spec = pod["spec"]
        names = [c["name"] for c in spec["containers"]]
        init_names = [c["name"] for c in spec.get("initContainers") or []]
        if container is None:
            if len(names) != 1:
                message = f"a container name must be specified for pod {name}, choose one of: [{' '.join(names)}]"
                if init_names:
                    message += f" or one of the init containers: [{' '.join(init_names)}]"
                raise ApiError(400, "BadRequest", message)
            container = names[0]
        if container not in names + init_names:
            raise ApiError(400, "BadRequest", f"container {container} is not valid for pod {name}")
        logs = self.kubelet.container_logs(pod["metadata"]["uid"], container)
        state: Json = {}
        for key in ("initContainerStatuses", "containerStatuses"):
            for status in pod["status"].get(key, []):
                if status["name"] == container:
                    state = status.get("state", {})
        if previous:
            # While a restarted container waits (CrashLoopBackOff), its last instance is the previous one.
            waiting_again = "waiting" in state and bool(logs) and logs[-1].closed
            candidates = logs if waiting_again else logs[:-1]
            if not candidates:
                raise ApiError(
                    400, "BadRequest", f'previous terminated container "{container}" in pod "{name}" not found'
                )
            return candidates[-1]
        if not logs:
            reason = (state.get("waiting") or {}).get("reason", "ContainerCreating")
            shown = {"ErrImagePull": "image can't be pulled", "ImagePullBackOff": "trying and failing to pull image"}
            raise ApiError(
                400,
                "BadRequest",
                f'container "{container}" in pod "{name}" is waiting to start: {shown.get(reason, reason)}',
            )
        return logs[-1]


def write_kubeconfig(
    path: Path, url: str, *, token: str | None = None, namespace: str = "default", context: str = "k8s-sim"
) -> Path:
    """A kubeconfig pointing at ``url`` (plain HTTP, bearer token if given)."""
    user: Json = {"token": token} if token else {}
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": context, "cluster": {"server": url}}],
        "users": [{"name": context, "user": user}],
        "contexts": [{"name": context, "context": {"cluster": context, "user": context, "namespace": namespace}}],
        "current-context": context,
        "preferences": {},
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    # JSON is YAML: no YAML writer needed to produce a kubeconfig every client reads.
    path.write_text(json.dumps(config, indent=2))
    return path


@contextmanager
def running_k8s_api_server(root: Path, **options: Any) -> Iterator[K8sApiServer]:
    """A started server under ``root``; stopped, with every pod process killed, on exit.

    Internal errors of the server or the kubelet fail the test at exit, unless it already failed.
    """
    server = K8sApiServer(root, **options)
    server.start()
    try:
        yield server
    except BaseException:
        server.stop()
        raise
    server.stop()
    errors = server.errors + server.kubelet.errors
    if errors:
        raise AssertionError("the Kubernetes API test server had internal errors:\n" + "\n".join(errors))


__all__ = [
    "NODE_NAME",
    "ApiError",
    "K8sApiServer",
    "ObjectStore",
    "RecordedRequest",
    "running_k8s_api_server",
    "write_kubeconfig",
]
