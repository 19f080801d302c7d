"""A local Airflow that is safe on a laptop or a small shared machine: ``mlp airflow up`` / ``down``.

``airflow standalone`` opens its log servers on every interface (0.0.0.0:8793 and :8794, whatever
``[api] host`` says) and sizes LocalExecutor by ``[core] parallelism`` (32 workers by default). This
launcher starts the four Airflow 3 components itself instead:

- ``api-server`` bound to 127.0.0.1 on a chosen (or free) port, one worker;
- ``scheduler`` and ``triggerer`` with ``--skip-serve-logs`` (their log servers bind every interface
  and the local executor reads task logs from files anyway);
- ``dag-processor`` on the given DAGs folder;

with LocalExecutor on SQLite, parallelism fit for the machine, and the simple auth manager with every
user an admin (local use only: anyone who can reach 127.0.0.1 can use the UI). Every process is
started in its own session and recorded in ``<AIRFLOW_HOME>/mlp-airflow.json`` so that ``down`` (or
the test fixture) stops exactly the processes it started.

Nothing here imports Airflow: the components are ``airflow`` subprocesses of this interpreter.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from airflow_provider_mlp.errors import MlpError

HOST = "127.0.0.1"
STATE_FILE = "mlp-airflow.json"
# (name, airflow arguments): every listener of each is on 127.0.0.1 or switched off.
COMPONENTS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("api-server", ("api-server", "--workers", "1")),
    ("scheduler", ("scheduler", "--skip-serve-logs")),
    ("dag-processor", ("dag-processor",)),
    ("triggerer", ("triggerer", "--skip-serve-logs")),
)
HEALTH_COMPONENTS = ("metadatabase", "scheduler", "triggerer", "dag_processor")


class LocalAirflowError(MlpError, RuntimeError):
    """The local Airflow could not be started, reached or stopped."""


def free_port(host: str = HOST) -> int:
    """A TCP port nobody listens on at ``host`` right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def default_parallelism() -> int:
    """One LocalExecutor worker per core (each is a whole Python process), at least two."""
    return max(2, os.cpu_count() or 2)


def airflow_executable() -> str:
    """The ``airflow`` script next to this interpreter (the environment the provider is installed in)."""
    candidate = Path(sys.executable).with_name("airflow")
    return str(candidate) if candidate.exists() else "airflow"


@dataclass
class LocalAirflow:
    """One local Airflow: its home, DAGs folder, port and the processes it started.

    :param home: AIRFLOW_HOME (metadata database ``airflow.db``, logs, state file).
    :param dags_folder: the DAGs folder the dag-processor parses.
    :param port: api-server port on 127.0.0.1 (default: a free one).
    :param parallelism: LocalExecutor workers (default: one per core, at least two).
    :param config: extra ``AIRFLOW__SECTION__KEY`` values (e.g. faster DAG folder refreshes in tests).
    :param env: extra environment variables for every component (e.g. ``MLP_HOME``).
    """

    home: Path
    dags_folder: Path
    port: int = 0
    parallelism: int = 0
    config: Mapping[str, str] = field(default_factory=dict)
    env: Mapping[str, str] = field(default_factory=dict)
    jwt_secret: str = ""
    pids: dict[str, int] = field(default_factory=dict)
    # The Popen objects of processes started from this interpreter (reaped on stop).
    _children: list[subprocess.Popen[bytes]] = field(default_factory=list, repr=False)

    def __post_init__(self) -> None:
        self.home = Path(self.home).expanduser().resolve()
        self.dags_folder = Path(self.dags_folder).expanduser().resolve()
        self.port = self.port or free_port()
        self.parallelism = self.parallelism or default_parallelism()
        # One secret for every component: tokens the api-server issues must verify everywhere.
        self.jwt_secret = self.jwt_secret or secrets.token_urlsafe(32)

    # -- where things are ---------------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def state_path(self) -> Path:
        return self.home / STATE_FILE

    @property
    def log_dir(self) -> Path:
        return self.home / "logs" / "mlp-airflow"

    def token_command(self) -> str:
        return f"curl -s {self.url}/auth/token"

    def environment(self) -> dict[str, str]:
        """The environment every component (and an ``airflow`` CLI call against this instance) runs with."""
        env = {**os.environ, **self.env}
        # A DAGs folder or executor the caller's shell exported must not leak into this instance.
        for key in [k for k in env if k.startswith("AIRFLOW__")]:
            del env[key]
        env.update(
            {
                "AIRFLOW_HOME": str(self.home),
                "AIRFLOW__CORE__DAGS_FOLDER": str(self.dags_folder),
                "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
                "AIRFLOW__CORE__PARALLELISM": str(self.parallelism),
                "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
                "AIRFLOW__CORE__AUTH_MANAGER": (
                    "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager"
                ),
                "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
                "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{self.url}/execution/",
                "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{self.home / 'airflow.db'}",
                "AIRFLOW__API__HOST": HOST,
                "AIRFLOW__API__PORT": str(self.port),
                "AIRFLOW__API__BASE_URL": self.url,
                "AIRFLOW__API__WORKERS": "1",
                "AIRFLOW__API_AUTH__JWT_SECRET": self.jwt_secret,
                "AIRFLOW__API_AUTH__JWT_ISSUER": "mlp-local-airflow",
                # The scheduler's health server binds every interface when enabled: keep it off.
                "AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK": "False",
                "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "10",
                "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(self.home / "logs"),
            }
        )
        env.update(self.config)
        return env

    # -- lifecycle ------------------------------------------------------------------------------------

    def migrate(self) -> None:
        """Create or upgrade the SQLite metadata database."""
        self.home.mkdir(parents=True, exist_ok=True)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        done = subprocess.run(
            [airflow_executable(), "db", "migrate"],
            env=self.environment(),
            capture_output=True,
            text=True,
            timeout=600,
        )
        if done.returncode != 0:
            raise LocalAirflowError(f"airflow db migrate failed in {self.home}:\n{done.stderr[-3000:]}")

    def start(self, *, wait: bool = True, timeout: float = 180.0) -> None:
        """Migrate, start the four components and (by default) wait until the api-server reports them healthy."""
        if self.state_path.exists():
            other = load_state(self.home)
            if other.running():
                raise LocalAirflowError(
                    f"an Airflow started by mlp is already running from {self.home} at {other.url} "
                    f"(stop it: mlp airflow down --home {self.home})"
                )
        self.dags_folder.mkdir(parents=True, exist_ok=True)
        self.migrate()
        env = self.environment()
        try:
            for name, args in COMPONENTS:
                argv = [airflow_executable(), *args]
                if name == "api-server":
                    argv += ["--host", HOST, "--port", str(self.port)]
                with open(self.log_dir / f"{name}.log", "ab") as log:
                    # Its own session: ``down`` signals the whole process group (executor workers included).
                    process = subprocess.Popen(
                        argv, env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                        start_new_session=True,
                    )  # fmt: skip
                self.pids[name] = process.pid
                self._children.append(process)
                self.save_state()
            if wait:
                self.wait_healthy(timeout=timeout)
        except BaseException:
            self.stop()
            raise

    def running(self) -> bool:
        return any(_is_our_process(pid) for pid in self.pids.values())

    def health(self) -> dict[str, Any]:
        with urllib.request.urlopen(f"{self.url}/api/v2/monitor/health", timeout=5) as response:
            return dict(json.load(response))

    def wait_healthy(self, timeout: float = 180.0) -> None:
        """Until the api-server answers and reports the database, scheduler, triggerer and dag-processor healthy."""
        deadline = time.monotonic() + timeout
        last: Any = None
        while time.monotonic() < deadline:
            dead = [name for name, pid in self.pids.items() if not _is_our_process(pid)]
            if dead:
                raise LocalAirflowError(f"{', '.join(dead)} exited while starting; {self._log_tails(dead)}")
            try:
                last = self.health()
            except (OSError, ValueError) as exc:
                last = exc
            else:
                if all((last.get(c) or {}).get("status") == "healthy" for c in HEALTH_COMPONENTS):
                    return
            time.sleep(0.5)
        raise LocalAirflowError(f"Airflow at {self.url} not healthy after {timeout:.0f}s (last: {last})")

    def stop(self, timeout: float = 30.0) -> None:
        """Stop every process this instance started (their whole process groups): SIGTERM, then SIGKILL."""
        pids = {name: pid for name, pid in self.pids.items() if _is_our_process(pid)}
        for pid in pids.values():
            _signal_group(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and any(_group_alive(pid) for pid in pids.values()):
            time.sleep(0.2)
        for pid in pids.values():
            if _group_alive(pid):
                _signal_group(pid, signal.SIGKILL)
        for pid in pids.values():
            _reap(pid)
        for child in self._children:
            try:
                child.wait(timeout=5)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
        self._children.clear()
        self.pids.clear()
        self.state_path.unlink(missing_ok=True)

    def token(self) -> str:
        """An access token from ``/auth/token`` (simple auth manager, all admins)."""
        with urllib.request.urlopen(f"{self.url}/auth/token", timeout=10) as response:
            return str(json.load(response)["access_token"])

    # -- state file -----------------------------------------------------------------------------------

    def save_state(self) -> None:
        state = {
            "home": str(self.home),
            "dags_folder": str(self.dags_folder),
            "port": self.port,
            "parallelism": self.parallelism,
            "config": dict(self.config),
            "env": dict(self.env),
            "jwt_secret": self.jwt_secret,
            "pids": self.pids,
        }
        tmp = self.state_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(state, indent=2))
        os.chmod(tmp, 0o600)
        tmp.replace(self.state_path)

    def _log_tails(self, names: Sequence[str]) -> str:
        tails = []
        for name in names:
            path = self.log_dir / f"{name}.log"
            text = path.read_text(errors="replace")[-2000:] if path.exists() else "(no log)"
            tails.append(f"--- {path} ---\n{text}")
        return "\n".join(tails)


def load_state(home: Path | str) -> LocalAirflow:
    """The instance ``mlp airflow up`` recorded in ``home``."""
    path = Path(home).expanduser().resolve() / STATE_FILE
    try:
        state = json.loads(path.read_text())
    except FileNotFoundError:
        raise LocalAirflowError(f"no Airflow started by mlp in {path.parent} ({path} not found)") from None
    return LocalAirflow(
        home=Path(state["home"]),
        dags_folder=Path(state["dags_folder"]),
        port=int(state["port"]),
        parallelism=int(state["parallelism"]),
        config=state.get("config", {}),
        env=state.get("env", {}),
        jwt_secret=state["jwt_secret"],
        pids={str(k): int(v) for k, v in state["pids"].items()},
    )


def _is_our_process(pid: int) -> bool:
    """Alive, not a zombie, and an airflow process (a recycled pid of another program is left alone)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            if fh.read().rsplit(b")", 1)[-1].split()[0] == b"Z":
                return False
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            return b"airflow" in fh.read()
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False


def _group_alive(pgid: int) -> bool:
    _reap(pgid)
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        pass


def _reap(pid: int) -> None:
    # Our own children become zombies until waited for (the fixture starts them from this process).
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


def listening_sockets(pids: Sequence[int]) -> list[tuple[str, int]]:
    """(local address, pid) of every TCP listener owned by ``pids`` or their descendants, from ``ss -ltnp``."""
    import re

    family = set(pids)
    # Descendants: executor workers, api-server workers and the like.
    changed = True
    while changed:
        changed = False
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit() or int(entry.name) in family:
                continue
            try:
                stat = (entry / "stat").read_bytes().rsplit(b")", 1)[-1].split()
            except OSError:
                continue
            if int(stat[1]) in family:
                family.add(int(entry.name))
                changed = True
    out = subprocess.run(["ss", "-ltnpH"], capture_output=True, text=True, check=True).stdout
    found = []
    for line in out.splitlines():
        fields = line.split()
        if len(fields) < 4:
            continue
        for pid in re.findall(r"pid=(\d+)", line):
            if int(pid) in family:
                found.append((fields[3], int(pid)))
    return found


# -- mlp airflow up | down -------------------------------------------------------------------------------


def add_arguments(parser: Any) -> None:
    """The ``mlp airflow`` subcommands (wired into ``airflow_provider_mlp.cli``)."""
    sub = parser.add_subparsers(dest="airflow_command", required=True)
    up = sub.add_parser("up", help="start api-server, scheduler, dag-processor and triggerer on 127.0.0.1")
    up.add_argument("--home", type=Path, default=None, help="AIRFLOW_HOME (default: <MLP_HOME>/airflow)")
    up.add_argument("--dags-folder", type=Path, default=None, help="default: the provider's example DAGs")
    up.add_argument("--port", type=int, default=0, help="api-server port on 127.0.0.1 (default: 8080, or a free one)")
    up.add_argument("--parallelism", type=int, default=0, help="LocalExecutor workers (default: one per core)")
    down = sub.add_parser("down", help="stop every process 'mlp airflow up' started")
    down.add_argument("--home", type=Path, default=None, help="AIRFLOW_HOME given to 'up'")


def _default_home() -> Path:
    from airflow_provider_mlp.config import settings

    return settings().home / "airflow"


def _default_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((HOST, 8080))
        except OSError:
            return free_port()
    return 8080


def run_command(args: Any) -> int:
    home = args.home or _default_home()
    if args.airflow_command == "down":
        try:
            instance = load_state(home)
        except LocalAirflowError as exc:
            print(f"mlp airflow down: {exc}", file=sys.stderr)
            return 1
        instance.stop()
        print(f"stopped the Airflow started from {instance.home}")
        return 0
    if args.dags_folder is None:
        from airflow_provider_mlp.demo.runner import example_dags_folder

        dags_folder = example_dags_folder()
    else:
        dags_folder = args.dags_folder
    instance = LocalAirflow(
        home=home, dags_folder=dags_folder, port=args.port or _default_port(), parallelism=args.parallelism
    )
    print(f"starting Airflow from {instance.home} (DAGs: {instance.dags_folder}, logs: {instance.log_dir})")
    try:
        instance.start()
    except LocalAirflowError as exc:
        print(f"mlp airflow up: {exc}", file=sys.stderr)
        return 1
    print(f"Airflow UI:   {instance.url}  (simple auth manager, every user an admin: local use only)")
    print(f"API token:    {instance.token_command()}")
    print(f"Airflow CLI:  export AIRFLOW_HOME={instance.home}")
    print(f"stop it:      mlp airflow down --home {instance.home}")
    return 0
