"""Long-running processes of the main job (``bentoml serve``, ``streamlit run``) on 127.0.0.1: started in
their own process group with a log file, healthy before they are used, and always stopped."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path

from airflow_provider_mlp.errors import MlpError


class ServiceStartError(MlpError, RuntimeError):
    """A service exited, or was not healthy in time; the message ends with its log."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def venv_command(name: str) -> str:
    """A console script of this interpreter's environment (``bentoml``, ``streamlit``)."""
    return str(Path(sys.executable).with_name(name))


class BackgroundService:
    """``command`` in a process group of its own, its output in ``log_path``, healthy once
    ``health_url`` answers 200."""

    def __init__(
        self,
        name: str,
        command: Sequence[str],
        health_url: str,
        log_path: Path,
        *,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.name = name
        self.command = list(command)
        self.health_url = health_url
        self.log_path = log_path
        self.env = dict(env or {})
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 90.0) -> BackgroundService:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                self.command,
                env={**os.environ, **self.env},
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                code = self.process.returncode
                self.stop()  # whatever it started may still run
                raise ServiceStartError(f"{self.name} exited ({code}):\n{self.log()[-4000:]}")
            try:
                with urllib.request.urlopen(self.health_url, timeout=2) as response:
                    if response.status == 200:
                        return self
            except OSError:
                pass
            time.sleep(0.2)
        self.stop()
        raise ServiceStartError(
            f"{self.name} not healthy at {self.health_url} after {timeout:.0f}s:\n{self.log()[-4000:]}"
        )

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self, timeout: float = 15.0) -> None:
        process, self.process = self.process, None
        if process is None:
            return
        # The whole group, even when its leader is gone: bentoml serve and streamlit start workers
        # of their own, which can outlive it.
        _signal_group(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            pass
        deadline = time.monotonic() + timeout
        while _group_alive(process.pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        _signal_group(process.pid, signal.SIGKILL)
        process.wait(timeout=timeout)

    def __enter__(self) -> BackgroundService:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _signal_group(pgid: int, signum: int) -> None:
    try:
        os.killpg(pgid, signum)
    except ProcessLookupError:
        pass  # nothing of the group is left


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def lookup_service(env: Mapping[str, str], log_path: Path, port: int | None = None) -> BackgroundService:
    """A lookup-only ``bentoml serve`` of this provider's service (``env`` from a use case's ``service_env``)."""
    port = port or free_port()
    command = [
        venv_command("bentoml"),
        "serve",
        "airflow_provider_mlp.serving.service:MlpModelService",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
    ]
    return BackgroundService("bentoml serve", command, f"http://127.0.0.1:{port}/readyz", log_path, env=env)


def streamlit_app(
    app: str, log_path: Path, *, args: Sequence[str] = (), env: Mapping[str, str] | None = None, port: int | None = None
) -> BackgroundService:
    """``streamlit run APP`` headless on 127.0.0.1 (no file watcher, no usage statistics)."""
    port = port or free_port()
    command = [
        venv_command("streamlit"),
        "run",
        app,
        "--server.headless=true",
        "--server.address=127.0.0.1",
        f"--server.port={port}",
        "--server.fileWatcherType=none",
        "--browser.gatherUsageStats=false",
        "--global.developmentMode=false",
    ]
    if args:
        command += ["--", *args]
    return BackgroundService("streamlit", command, f"http://127.0.0.1:{port}/_stcore/health", log_path, env=env)
