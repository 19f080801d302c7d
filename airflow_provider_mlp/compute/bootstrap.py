"""The bootstrap a pod (or a local process) runs: environment, payload, call, result.

::

    python -m airflow_provider_mlp.compute run --payload URI --result URI [--env REF] [--env-store URL]

1. rehydrate the environment (``env_builder.rehydrate.ensure``; a warm node cache costs one small
   file read), or use this interpreter when no environment is named;
2. fetch the payload from the artifact store;
3. run ``executor.py`` with the environment's interpreter (cloudpickle appended to its path, nothing
   else of this image's), streaming its output as the task log;
4. upload the result, or the exception with its remote traceback, to the artifact store.

The exit code is the call's: 0 on success, 1 when the function raised, the executor's own code
when it died (a signal gives 128 + its number, as a container runtime reports it).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from airflow_provider_mlp.compute.work import ComputeError

# fsspec options for the artifact store and the environment store, as JSON objects (credentials
# normally come from the pod's own environment: AWS_* variables, a web identity, a mounted secret).
ARTIFACT_OPTIONS_ENV = "MLP_ARTIFACT_STORAGE_OPTIONS"
ENV_STORE_OPTIONS_ENV = "MLP_ENV_STORAGE_OPTIONS"


def _options(variable: str) -> dict[str, Any]:
    text = os.environ.get(variable, "").strip()
    if not text:
        return {}
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise ComputeError(f"{variable} must be a JSON object of fsspec options: {exc}") from None
    if not isinstance(value, dict):
        raise ComputeError(f"{variable} must be a JSON object of fsspec options, got {type(value).__name__}")
    return value


def _say(message: str) -> None:
    print(f"[mlp] {message}", flush=True)


def _shim_path(work_dir: Path) -> str:
    """A directory holding only cloudpickle (a link to this image's copy), for the environment's path."""
    import cloudpickle

    shim = work_dir / "shim"
    shim.mkdir(exist_ok=True)
    source = Path(cloudpickle.__file__).resolve().parent
    target = shim / "cloudpickle"
    if not target.exists():
        try:
            target.symlink_to(source, target_is_directory=True)
        except OSError:
            shutil.copytree(source, target)
    return str(shim)


def _child_environment(base: Mapping[str, str], shim: str | None) -> dict[str, str]:
    env = dict(base)
    if shim is not None:
        # Last on the path: the environment's own packages (its cloudpickle too) always win.
        existing = env.get("PYTHONPATH")
        env["PYTHONPATH"] = f"{existing}{os.pathsep}{shim}" if existing else shim
    env["PYTHONUNBUFFERED"] = "1"
    return env


def run(
    payload_uri: str,
    result_uri: str,
    *,
    env: str | None = None,
    env_store: str | None = None,
    cache_dir: str | None = None,
) -> int:
    from airflow_provider_mlp.compute import executor
    from airflow_provider_mlp.stores import read_bytes, write_bytes

    started = time.monotonic()
    artifact_options = _options(ARTIFACT_OPTIONS_ENV)
    python, base_env, shim_needed = sys.executable, dict(os.environ), False
    if env:
        from env_builder.rehydrate import ensure

        local = ensure(env, store=env_store, storage_options=_options(ENV_STORE_OPTIONS_ENV), cache_dir=cache_dir)
        python, base_env, shim_needed = str(local.python), local.environ(), True
        _say(f"environment {local.env_id} ready in {time.monotonic() - started:.3f}s at {local.path}")
    scratch = Path(tempfile.mkdtemp(prefix="mlp-compute-"))
    try:
        payload = scratch / "payload.pkl"
        try:
            payload.write_bytes(read_bytes(payload_uri, artifact_options))
        except FileNotFoundError:
            raise ComputeError(f"payload {payload_uri} is not in the artifact store") from None
        result = scratch / "result"
        child_env = _child_environment(base_env, _shim_path(scratch) if shim_needed else None)
        proc = subprocess.run([python, executor.__file__, str(payload), str(result)], env=child_env, check=False)
        code = proc.returncode if proc.returncode >= 0 else 128 - proc.returncode
        if result.exists():
            write_bytes(result_uri, result.read_bytes(), artifact_options)
        elif code == 0:
            raise ComputeError(f"the executor exited 0 without writing {result}")
        _say(f"bootstrap done in {time.monotonic() - started:.3f}s (exit {code})")
        return code
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def main(argv: Sequence[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m airflow_provider_mlp.compute", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    run_parser = sub.add_parser("run", help="run one task try's payload and write its result")
    run_parser.add_argument("--payload", required=True, help="URI of the payload in the artifact store")
    run_parser.add_argument("--result", required=True, help="URI the result is written to")
    run_parser.add_argument("--env", default=None, help="environment: env id, id prefix or alias (default: none)")
    run_parser.add_argument("--env-store", default=None, help="environment store URL (default: settings)")
    run_parser.add_argument("--cache-dir", default=None, help="node cache of environments (default: settings)")
    args = parser.parse_args(argv)
    try:
        return run(args.payload, args.result, env=args.env, env_store=args.env_store, cache_dir=args.cache_dir)
    except Exception as exc:
        from airflow_provider_mlp.errors import MlpError

        if not isinstance(exc, MlpError):
            raise
        print(f"[mlp] error: {exc}", file=sys.stderr, flush=True)
        return 2
