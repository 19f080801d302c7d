"""A real ``bentoml serve`` of the MLP model service on 127.0.0.1 (free port), always stopped; and PostgreSQL.

:class:`ServingProcess` starts the service in its own process group so that a SIGKILL takes down
BentoML's arbiter and workers together (as a lost pod would). :class:`PostgresServer` runs
Debian's PostgreSQL as the ``postgres`` user (it refuses root) in a temporary data directory.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from tests.support.memcached import free_port

ROOT = Path(__file__).resolve().parents[2]
BENTOML = str(Path(sys.executable).with_name("bentoml"))


def http(
    method: str,
    url: str,
    body: Any = None,
    *,
    token: str | None = None,
    timeout: float = 10.0,
    raw: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, dict[str, str], Any]:
    data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
    request = urllib.request.Request(url, data=data, method=method)
    request.add_header("content-type", "application/json")
    if token:
        request.add_header("authorization", f"Bearer {token}")
    for name, value in (headers or {}).items():
        request.add_header(name, value)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            text = response.read()
            status, got = response.status, dict(response.headers)
    except urllib.error.HTTPError as exc:
        text, status, got = exc.read(), exc.code, dict(exc.headers)
    try:
        return status, {k.lower(): v for k, v in got.items()}, json.loads(text)
    except ValueError:
        return status, {k.lower(): v for k, v in got.items()}, text.decode(errors="replace")


class ServingProcess:
    def __init__(
        self,
        env: dict[str, str],
        log_path: Path,
        *,
        service: str = "airflow_provider_mlp.serving.service:MlpModelService",
        port: int | None = None,
    ) -> None:
        self.env = env
        self.service = service
        self.port = port or free_port()
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, *, timeout: float = 60.0, ready_path: str = "/readyz") -> ServingProcess:
        if self.process is not None and self.process.poll() is None:
            raise RuntimeError(f"the service on port {self.port} is already running (use `with service:` or .start())")
        env = {**os.environ, **self.env}
        env.setdefault("BENTOML_DO_NOT_TRACK", "true")
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                [BENTOML, "serve", self.service, "--host", "127.0.0.1", "--port", str(self.port)],
                cwd=ROOT,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"bentoml serve exited ({self.process.returncode}):\n{self.log()[-4000:]}")
            try:
                status, _, _ = http("GET", self.url + ready_path, token=self.env.get("MLP_SERVING_TOKEN"), timeout=2)
                if status == 200:
                    return self
            except OSError:
                pass
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"bentoml serve not ready after {timeout}s:\n{self.log()[-4000:]}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def kill(self) -> None:
        """SIGKILL the arbiter and every worker at once (as a lost pod): nothing is flushed."""
        if self.process is None:
            return
        # The workers run in sessions of their own, so the arbiter's process group does not reach them.
        doomed = [self.process.pid, *_descendants(self.process.pid)]
        for pid in doomed:
            try:
                os.kill(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        self.process.wait(timeout=10)

    def stop(self, timeout: float = 30.0) -> None:
        """Graceful: SIGTERM to the arbiter (BentoML stops its workers, which run their shutdown); then
        SIGKILL whatever is left."""
        if self.process is None:
            return
        workers = _descendants(self.process.pid)
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline and (self.process.poll() is None or any(_alive(p) for p in workers)):
                time.sleep(0.05)
        self.kill()
        for pid in workers:
            try:
                os.kill(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass

    def __enter__(self) -> ServingProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _descendants(root: int) -> list[int]:
    """Every live process below ``root`` (from /proc), children before grandchildren."""
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as stat:
                    parents[int(entry)] = int(stat.read().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
    found: list[int] = []
    frontier = [root]
    while frontier:
        frontier = [pid for pid, parent in parents.items() if parent in frontier]
        found += frontier
    return found


class PostgresServer:
    """PostgreSQL from Debian's packages on 127.0.0.1:<free port>, data in a temporary directory."""

    def __init__(self) -> None:
        bindir = Path("/usr/lib/postgresql")
        versions = sorted(bindir.glob("*/bin/initdb")) if bindir.exists() else []
        initdb = str(versions[-1]) if versions else shutil.which("initdb")
        if not initdb:
            raise RuntimeError("PostgreSQL is not installed (apt-get install -y postgresql)")
        self.bin = Path(initdb).parent
        # Its own directory under /tmp (not pytest's 0700 tree, which the postgres user cannot reach).
        self.data_dir = Path(tempfile.mkdtemp(prefix="mlp-test-pg-"))
        self.port = free_port()
        self.started = False

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _as_postgres(self, *args: str) -> list[str]:
        return ["runuser", "-u", "postgres", "--", *args] if os.geteuid() == 0 else list(args)

    def start(self) -> PostgresServer:
        if os.geteuid() == 0:
            shutil.chown(self.data_dir, "postgres", "postgres")
        subprocess.run(
            self._as_postgres(
                str(self.bin / "initdb"), "-D", str(self.data_dir), "-A", "trust", "-U", "postgres", "--no-sync"
            ),
            check=True,
            capture_output=True,
        )
        options = (
            f"-c listen_addresses=127.0.0.1 -p {self.port} -c unix_socket_directories={self.data_dir} -c fsync=off"
        )
        subprocess.run(
            self._as_postgres(
                str(self.bin / "pg_ctl"),
                "-D",
                str(self.data_dir),
                "-o",
                options,
                "-w",
                "-l",
                str(self.data_dir / "server.log"),
                "start",
            ),
            check=True,
            capture_output=True,
        )
        self.started = True
        return self

    def stop(self) -> None:
        if self.started:
            subprocess.run(
                self._as_postgres(str(self.bin / "pg_ctl"), "-D", str(self.data_dir), "-m", "immediate", "-w", "stop"),
                capture_output=True,
            )
            self.started = False
        shutil.rmtree(self.data_dir, ignore_errors=True)

    def __enter__(self) -> PostgresServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
