"""The work of one task try in the artifact store: where its payload and result live, how they are
written by the caller and read back.

Layout under ``settings().artifact_store`` (any fsspec URL)::

    compute/<dag_id>/<run_id>/<task_id>/<map_index>/try-<n>/payload.pkl
    compute/<dag_id>/<run_id>/<task_id>/<map_index>/try-<n>/result

Paths are derived from the task instance alone, so a deferred operator that resumes in a new
process finds its result without any state of its own, and a retry never reads (or overwrites)
what an earlier try, maybe still running on a lost node, writes.
"""

from __future__ import annotations

import json
import re
import sys
import sysconfig
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from airflow_provider_mlp.compute.executor import PAYLOAD_VERSION
from airflow_provider_mlp.errors import MlpError

RESULT_KIND = "mlp.compute.result"
_SAFE = re.compile(r"[^A-Za-z0-9._=+-]")


class ComputeError(MlpError, RuntimeError):
    """The work could not be shipped, run or collected (not the user function's own exception)."""


class RemoteTaskError(MlpError, RuntimeError):
    """The user function raised inside the environment; carries its remote traceback."""

    def __init__(self, type_name: str, message: str, remote_traceback: str) -> None:
        super().__init__(f"{type_name}: {message}\n\nRemote traceback (inside the environment):\n{remote_traceback}")
        self.type_name = type_name
        self.remote_message = message
        self.remote_traceback = remote_traceback


def _component(value: Any) -> str:
    return quote(_SAFE.sub("_", str(value)), safe="") or "_"


@dataclass(frozen=True)
class WorkLocation:
    """Where one task try's payload and result live."""

    store_url: str
    dag_id: str
    run_id: str
    task_id: str
    map_index: int = -1
    try_number: int = 1
    storage_options: Mapping[str, Any] = field(default_factory=dict)

    @property
    def prefix(self) -> str:
        parts = (self.dag_id, self.run_id, self.task_id, self.map_index)
        return f"{self.store_url.rstrip('/')}/compute/" + "/".join(_component(p) for p in parts)

    @property
    def try_prefix(self) -> str:
        return f"{self.prefix}/try-{int(self.try_number)}"

    @property
    def payload_uri(self) -> str:
        return f"{self.try_prefix}/payload.pkl"

    @property
    def result_uri(self) -> str:
        return f"{self.try_prefix}/result"

    def filesystem(self) -> Any:
        from airflow_provider_mlp.stores import open_filesystem

        fs, _ = open_filesystem(self.store_url, self.storage_options)
        return fs


def _module_is_installed(module_name: str) -> bool:
    """Whether ``module_name`` comes from an installed distribution (site-packages), which an
    environment can import itself; a DAG file's module cannot be imported there."""
    module = sys.modules.get(module_name)
    path = getattr(module, "__file__", None)
    if module is None or path is None:
        return False
    roots = {sysconfig.get_paths()[k] for k in ("purelib", "platlib")}
    return any(str(path).startswith(root) for root in roots)


def encode_payload(
    callable_: Callable[..., Any], args: Sequence[Any] = (), kwargs: Mapping[str, Any] | None = None
) -> bytes:
    """A JSON header line and the cloudpickled call. The function's own module is pickled by value
    when the environment could not import it (a DAG file, ``__main__``)."""
    import cloudpickle

    module_name = getattr(callable_, "__module__", None) or "__main__"
    registered = False
    if module_name != "__main__" and module_name in sys.modules and not _module_is_installed(module_name):
        cloudpickle.register_pickle_by_value(sys.modules[module_name])
        registered = True
    try:
        body = cloudpickle.dumps({"callable": callable_, "args": tuple(args), "kwargs": dict(kwargs or {})})
    except Exception as exc:
        name = getattr(callable_, "__qualname__", repr(callable_))
        raise ComputeError(f"cannot pickle the call of {name} with its arguments: {exc}") from exc
    finally:
        if registered:
            cloudpickle.unregister_pickle_by_value(sys.modules[module_name])
    header = {
        "version": PAYLOAD_VERSION,
        "python": f"{sys.version_info.major}.{sys.version_info.minor}",
        "name": getattr(callable_, "__qualname__", type(callable_).__name__),
    }
    return json.dumps(header).encode() + b"\n" + body


def put_payload(location: WorkLocation, payload: bytes) -> None:
    from airflow_provider_mlp.stores import write_bytes

    write_bytes(location.payload_uri, payload, location.storage_options)


def read_result_header(location: WorkLocation) -> tuple[dict[str, Any], bytes] | None:
    """The result's header and body, or None when the try wrote no result (it died first)."""
    from airflow_provider_mlp.stores import read_bytes

    try:
        data = read_bytes(location.result_uri, location.storage_options)
    except FileNotFoundError:
        return None
    line, _, body = data.partition(b"\n")
    try:
        header = json.loads(line)
    except ValueError:
        raise ComputeError(f"result {location.result_uri} has no valid header line") from None
    return header, body


def result_reference(location: WorkLocation, header: Mapping[str, Any]) -> dict[str, Any]:
    """What XCom carries for a result kept in the store."""
    return {
        "kind": RESULT_KIND,
        "uri": location.result_uri,
        "format": header.get("format"),
        "source": header.get("source"),
    }


def decode_result(header: Mapping[str, Any], body: bytes, *, where: str) -> Any:
    """The Python value of a result: a value, an Arrow table, or a raised ``RemoteTaskError``."""
    kind = header.get("kind")
    if kind == "error":
        details = json.loads(body)
        raise RemoteTaskError(details["type"], details["message"], details["traceback"])
    if kind == "table":
        import pyarrow as pa

        return pa.ipc.open_stream(body).read_all()
    if kind == "value":
        import cloudpickle

        try:
            return cloudpickle.loads(body)
        except Exception as exc:
            raise ComputeError(
                f"result {where} holds an object this process cannot unpickle ({exc}); return plain data, or "
                "an Arrow table or DataFrame, from tasks whose environment has packages the caller lacks"
            ) from exc
    raise ComputeError(f"result {where} has unknown kind {kind!r}")


def load_result(reference: Mapping[str, Any], storage_options: Mapping[str, Any] | None = None) -> Any:
    """Read back a result that XCom carries as a reference (``{"kind": "mlp.compute.result", ...}``)."""
    from airflow_provider_mlp.stores import read_bytes

    if reference.get("kind") != RESULT_KIND:
        raise ComputeError(f"not a compute result reference: {dict(reference)!r}")
    uri = str(reference["uri"])
    line, _, body = read_bytes(uri, storage_options).partition(b"\n")
    return decode_result(json.loads(line), body, where=uri)
