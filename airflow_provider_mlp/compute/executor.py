"""Runs one pickled call inside an environment's interpreter and writes its outcome.

Started as a script (``<env python> executor.py PAYLOAD RESULT``), not as a module of the package:
the environment has the user's packages, not this provider's. It needs the standard library and
cloudpickle only: the bootstrap names a folder holding cloudpickle (and, with ``runtime_packages``,
the runtime's package folders) in ``MLP_EXECUTOR_APPEND_PATHS``, which this script appends to
``sys.path`` before anything is imported, so the environment's own packages always come first
(``PYTHONPATH`` would put them before the environment's site-packages). pyarrow, pandas and
polars are imported only when the function returned one of their
objects, which means the environment has them.

The result file starts with one JSON header line (``kind``, ``format``, ...) followed by the body:
- ``value``: a pickled Python object (``format: pickle``);
- ``table``: an Arrow table, a pandas or polars DataFrame, as Arrow IPC (``format: arrow-ipc``), never
  pickled, so the reader needs no library of the environment's to get the data back;
- ``error``: the exception's type, message and remote traceback as JSON, plus the pickled
  exception when it pickles.
"""

from __future__ import annotations

import io
import json
import os
import sys
import time
import traceback
from typing import Any

PAYLOAD_VERSION = 1
START_MARK = "[mlp] user function starting"
APPEND_PATHS_ENV = "MLP_EXECUTOR_APPEND_PATHS"


def append_paths() -> None:
    """Put the folders the bootstrap named after everything of the environment's own."""
    extra = os.environ.pop(APPEND_PATHS_ENV, "")
    for entry in extra.split(os.pathsep):
        if entry and entry not in sys.path:
            sys.path.append(entry)


def _is_arrow_table(value: Any) -> bool:
    return type(value).__module__.startswith("pyarrow") and type(value).__name__ in ("Table", "RecordBatch")


def _is_frame(value: Any, module: str) -> bool:
    return type(value).__module__.split(".")[0] == module and type(value).__name__ == "DataFrame"


def _table_body(value: Any) -> tuple[bytes, str]:
    """Arrow IPC stream bytes of a table-like result, and what it was."""
    if _is_frame(value, "polars"):
        buffer = io.BytesIO()
        value.write_ipc_stream(buffer)
        return buffer.getvalue(), "polars"
    import pyarrow as pa

    source = "pyarrow"
    if _is_frame(value, "pandas"):
        value, source = pa.Table.from_pandas(value), "pandas"
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, value.schema) as writer:
        writer.write(value)
    return sink.getvalue().to_pybytes(), source


def _write(path: str, header: dict[str, Any], body: bytes) -> None:
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "wb") as fh:
        fh.write(json.dumps(header).encode() + b"\n")
        fh.write(body)
    os.replace(tmp, path)


def encode_outcome(value: Any) -> tuple[dict[str, Any], bytes]:
    import cloudpickle

    if _is_arrow_table(value) or _is_frame(value, "pandas") or _is_frame(value, "polars"):
        try:
            body, source = _table_body(value)
            return {"kind": "table", "format": "arrow-ipc", "source": source}, body
        except ImportError:
            pass  # a pandas DataFrame in an environment without pyarrow: pickled below
        except Exception:
            pass  # Arrow cannot hold it (mixed object columns): pickled below
    return {"kind": "value", "format": "pickle"}, cloudpickle.dumps(value)


def encode_error(exc: BaseException) -> tuple[dict[str, Any], bytes]:
    import cloudpickle

    details = {
        "type": f"{type(exc).__module__}.{type(exc).__qualname__}",
        "message": str(exc),
        "traceback": "".join(traceback.format_exception(exc)),
    }
    try:
        pickled = cloudpickle.dumps(exc).hex()
    except Exception:
        pickled = None
    return {"kind": "error", "format": "json"}, json.dumps({**details, "pickled": pickled}).encode()


def read_payload(payload_path: str) -> tuple[dict[str, Any], bytes]:
    """The payload's JSON header line and its pickled body."""
    with open(payload_path, "rb") as fh:
        header = json.loads(fh.readline())
        body = fh.read()
    if header.get("version") != PAYLOAD_VERSION:
        raise SystemExit(f"payload {payload_path} has version {header.get('version')!r}, expected {PAYLOAD_VERSION}")
    here = f"{sys.version_info.major}.{sys.version_info.minor}"
    if header.get("python") != here:
        # A pickled function's bytecode belongs to one Python version: say so rather than fail in unpickling.
        raise SystemExit(
            f"the task was pickled by Python {header.get('python')} but the environment runs Python {here}; "
            f"build the environment for Python {header.get('python')}"
        )
    return header, body


def run(payload_path: str, result_path: str) -> int:
    import cloudpickle

    header, body = read_payload(payload_path)
    work = cloudpickle.loads(body)
    started = time.time()
    print(f"{START_MARK} at {started:.6f} ({header.get('name', 'callable')})", flush=True)
    try:
        value = work["callable"](*work.get("args", ()), **work.get("kwargs", {}))
    except BaseException as exc:  # the task's exception travels back whole, SystemExit included
        header, body = encode_error(exc)
        _write(result_path, {**header, "started_at": started, "finished_at": time.time()}, body)
        traceback.print_exc()
        return 1
    try:
        header, body = encode_outcome(value)
    except Exception as exc:  # an unpicklable return value: say so, rather than leave no result
        header, body = encode_error(
            TypeError(
                f"the task returned a {type(value).__module__}.{type(value).__qualname__} that cannot be stored: {exc}"
            )
        )
        _write(result_path, {**header, "started_at": started, "finished_at": time.time()}, body)
        return 1
    _write(result_path, {**header, "started_at": started, "finished_at": time.time()}, body)
    return 0


def _exit_now(code: int) -> None:
    """Exit once the result is written, without tearing the interpreter down: after a task imported
    pandas or torch, freeing every module takes longer than many tasks. The user's atexit handlers
    still run and output is flushed; only the module teardown is skipped."""
    import atexit

    atexit._run_exitfuncs()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    if len(sys.argv) != 3:
        raise SystemExit("usage: executor.py PAYLOAD RESULT")
    append_paths()
    _exit_now(run(sys.argv[1], sys.argv[2]))
