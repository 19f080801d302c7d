"""The bootstrap a pod (or a local process) runs: environment, payload, call, result.

::

    python -m airflow_provider_mlp.compute run --payload URI --result URI [--env REF] [--env-store URL]

1. rehydrate the environment (``env_builder.rehydrate.ensure``; a warm node cache costs one small
   file read), or use this interpreter when no environment is named;
2. fetch the payload from the artifact store;
3. run ``executor.py`` with the environment's interpreter (cloudpickle appended to its path, nothing
   else of this image's unless ``--runtime-packages`` appends them all: the provider's runtime side
   with pyarrow and pyiceberg, for a task that reads Fast Data in an environment of its own),
   streaming its output as the task log;
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


def runtime_package_paths() -> list[str]:
    """This interpreter's package directories (site-packages, .pth and editable entries), not its stdlib."""
    import sysconfig

    paths = sysconfig.get_paths()
    stdlib = {os.path.realpath(paths[key]) for key in ("stdlib", "platstdlib")}
    stdlib |= {os.path.join(root, "lib-dynload") for root in stdlib}
    out: list[str] = []
    for entry in sys.path:
        if not entry or not os.path.isdir(entry):
            continue  # '' is the current directory; zip files of the stdlib are not packages
        real = os.path.realpath(entry)
        if real in stdlib or real == os.path.dirname(os.path.realpath(__file__)) or real in out:
            continue
        out.append(real)
    return out


def _env_python_version(env_dir: Path, python: str) -> str | None:
    """``X.Y`` of an environment's interpreter: from pyvenv.cfg, else by asking it."""
    try:
        for line in (env_dir / "pyvenv.cfg").read_text().splitlines():
            key, _, value = line.partition("=")
            if key.strip() in ("version_info", "version"):
                return ".".join(value.strip().split(".")[:2])
    except OSError:
        pass
    from env_builder.rehydrate import _version_of

    return _version_of(python)


def _child_environment(base: Mapping[str, str], extra_paths: Sequence[str]) -> dict[str, str]:
    from airflow_provider_mlp.compute.executor import APPEND_PATHS_ENV

    env = dict(base)
    if extra_paths:
        # Appended by the executor itself, after the environment's site-packages: on PYTHONPATH they
        # would come first and the runtime's numpy or cloudpickle would shadow the environment's.
        env[APPEND_PATHS_ENV] = os.pathsep.join(extra_paths)
    env["PYTHONUNBUFFERED"] = "1"
    return env


def run(
    payload_uri: str,
    result_uri: str,
    *,
    env: str | None = None,
    env_store: str | None = None,
    cache_dir: str | None = None,
    runtime_packages: bool = False,
) -> int:
    from airflow_provider_mlp.compute import executor
    from airflow_provider_mlp.stores import read_bytes, write_bytes

    started = time.monotonic()
    artifact_options = _options(ARTIFACT_OPTIONS_ENV)
    python, base_env, shim_needed = sys.executable, dict(os.environ), False
    extra_paths: list[str] = []
    if env:
        from env_builder.rehydrate import ensure

        local = ensure(env, store=env_store, storage_options=_options(ENV_STORE_OPTIONS_ENV), cache_dir=cache_dir)
        python, base_env, shim_needed = str(local.python), local.environ(), True
        _say(f"environment {local.env_id} ready in {time.monotonic() - started:.3f}s at {local.path}")
        if runtime_packages:
            # Compiled packages (the provider's kernels, pyarrow) load only into the Python they were built for.
            runtime = f"{sys.version_info[0]}.{sys.version_info[1]}"
            version = _env_python_version(local.path, python)
            if version != runtime:
                raise ComputeError(
                    f"environment {local.env_id} runs Python {version or 'of an unknown version'}; "
                    f"runtime_packages needs the runtime's Python {runtime}"
                )
            extra_paths = runtime_package_paths()
    scratch = Path(tempfile.mkdtemp(prefix="mlp-compute-"))
    try:
        payload = scratch / "payload.pkl"
        try:
            payload.write_bytes(read_bytes(payload_uri, artifact_options))
        except FileNotFoundError:
            raise ComputeError(f"payload {payload_uri} is not in the artifact store") from None
        result = scratch / "result"
        shim = [_shim_path(scratch)] if shim_needed else []
        child_env = _child_environment(base_env, [*shim, *extra_paths])
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
    run_parser.add_argument(
        "--runtime-packages",
        action="store_true",
        help="append this image's packages (the provider, pyarrow, pyiceberg, ...) to the environment's path",
    )
    args = parser.parse_args(argv)
    try:
        return run(
            args.payload,
            args.result,
            env=args.env,
            env_store=args.env_store,
            cache_dir=args.cache_dir,
            runtime_packages=args.runtime_packages,
        )
    except Exception as exc:
        from airflow_provider_mlp.errors import MlpError

        if not isinstance(exc, MlpError):
            raise
        print(f"[mlp] error: {exc}", file=sys.stderr, flush=True)
        return 2
