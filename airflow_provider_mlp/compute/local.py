"""The local backend: the pod's bootstrap as a subprocess of the worker, with the same arguments,
environment and artifact store, for laptops and CI where no cluster exists."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence


def bootstrap_command(arguments: Sequence[str]) -> list[str]:
    return [sys.executable, "-m", "airflow_provider_mlp.compute", *arguments]


def run_bootstrap(
    arguments: Sequence[str], *, env: Mapping[str, str] | None = None, log: Callable[[str], object] = print
) -> tuple[int, list[str]]:
    """Run the bootstrap, streaming each output line to ``log``; its exit code and last lines."""
    child_env = {**os.environ, **(env or {})}
    proc = subprocess.Popen(
        bootstrap_command(arguments),
        env=child_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        errors="replace",
    )
    tail: list[str] = []
    assert proc.stdout is not None
    with proc.stdout:
        for line in proc.stdout:
            line = line.rstrip("\n")
            log(line)
            tail = [*tail[-19:], line]
    return proc.wait(), tail
