"""The local backend: the pod's bootstrap as a subprocess of the worker, with the same arguments,
environment and artifact store, for laptops and CI where no cluster exists."""

from __future__ import annotations

import os
import subprocess
import sys
from collections import deque
from collections.abc import Callable, Mapping, Sequence


def bootstrap_command(arguments: Sequence[str]) -> list[str]:
    return [sys.executable, "-m", "airflow_provider_mlp.compute", *arguments]


def stream_process(argv: Sequence[str], *, env: Mapping[str, str] | None, on_line: Callable[[str], object]) -> int:
    """Run ``argv`` (stderr into stdout), handing each output line (without its newline) to ``on_line``
    as it comes; the exit code."""
    proc = subprocess.Popen(
        list(argv),
        env=dict(env) if env is not None else None,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        errors="replace",
    )
    assert proc.stdout is not None
    with proc.stdout:
        for line in proc.stdout:
            on_line(line.rstrip("\n"))
    return proc.wait()


def run_bootstrap(
    arguments: Sequence[str], *, env: Mapping[str, str] | None = None, log: Callable[[str], object] = print
) -> tuple[int, list[str]]:
    """Run the bootstrap, streaming each output line to ``log``; its exit code and last lines."""
    tail: deque[str] = deque(maxlen=20)

    def on_line(line: str) -> None:
        log(line)
        tail.append(line)

    code = stream_process(bootstrap_command(arguments), env={**os.environ, **(env or {})}, on_line=on_line)
    return code, list(tail)
