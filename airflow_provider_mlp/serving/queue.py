"""The durable queue behind async requests: SQLite (WAL) embedded, PostgreSQL for several replicas.

A request is accepted only once its row is committed, so an accepted request survives any crash.
Workers *claim* a job (``queued`` -> ``running``) with a lease they renew while computing; a job
whose worker died (SIGKILL, lost node) is claimed again when its lease runs out. Completion is a
guarded update (``WHERE claim = <our claim> AND state = 'running'``), so a job completes exactly
once even when a slow worker's lease was taken over: the late worker's completion is refused.
On PostgreSQL the claim is ``FOR UPDATE SKIP LOCKED``: concurrent replicas never claim the same
job and never wait on each other. On SQLite one statement claims (SQLite serialises writers).

``queue_from_url("sqlite:///path/queue.db")`` or ``queue_from_url("postgresql://user@host:port/db")``.
Runtime side: no Airflow.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Any

from airflow_provider_mlp.errors import ConfigurationError, MlpError
from airflow_provider_mlp.extras import require

TABLE = "mlp_serving_jobs"
STATES = ("queued", "running", "done", "failed")


class QueueError(MlpError, RuntimeError):
    """The queue's database could not be reached or refused a statement; the message names it."""


@dataclass(frozen=True)
class Job:
    id: str
    state: str
    payload: Any
    attempts: int = 0
    result: Any = None
    error: str | None = None
    created_at: float = 0.0
    finished_at: float | None = None
    completions: int = 0
    claim: str | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"id": self.id, "status": self.state, "attempts": self.attempts}
        if self.state == "done":
            out["result"] = self.result
        if self.error:
            out["error"] = self.error
        return out


_COLUMNS = "id, state, payload, attempts, result, error, created_at, finished_at, completions, claim"


def _job(row: Any) -> Job:
    return Job(
        id=row[0],
        state=row[1],
        payload=json.loads(row[2]),
        attempts=int(row[3]),
        result=None if row[4] is None else json.loads(row[4]),
        error=row[5],
        created_at=float(row[6]),
        finished_at=None if row[7] is None else float(row[7]),
        completions=int(row[8]),
        claim=row[9],
    )


class JobQueue:
    """Common logic; subclasses give the connection, the clock expression and the claim statement."""

    now_sql = ""
    param = "?"
    url = ""

    def __init__(self, *, max_attempts: int = 3) -> None:
        self.max_attempts = max_attempts
        self._local = threading.local()

    # -- connections ------------------------------------------------------------------------------

    def _connect(self) -> Any:
        raise NotImplementedError

    def _conn(self) -> Any:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = self._connect()
        return conn

    def _execute(self, sql: str, args: tuple[Any, ...] = ()) -> tuple[list[Any], int]:
        sql = sql.replace("?", self.param).replace("NOW()", self.now_sql)
        for attempt in range(2):
            conn = self._conn()
            try:
                cur = conn.cursor()
                try:
                    cur.execute(sql, args)
                    rows = cur.fetchall() if cur.description else []
                    count = cur.rowcount
                finally:
                    cur.close()
                conn.commit()
                return rows, count
            except Exception as exc:
                self._reset()
                if attempt or not self._retryable(exc):
                    raise QueueError(f"job queue {self.url}: {type(exc).__name__}: {exc}") from exc
        raise AssertionError("unreachable")

    def _retryable(self, exc: Exception) -> bool:
        return False

    def _reset(self) -> None:
        conn = getattr(self._local, "conn", None)
        self._local.conn = None
        if conn is not None:
            try:
                conn.close()
            except Exception:
                pass

    def close(self) -> None:
        self._reset()

    def setup(self) -> None:
        for statement in self._schema():
            self._execute(statement)

    def _schema(self) -> list[str]:
        return [
            f"CREATE TABLE IF NOT EXISTS {TABLE} (id TEXT PRIMARY KEY, model TEXT NOT NULL, payload TEXT NOT NULL, "
            "state TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0, claim TEXT, lease_until DOUBLE PRECISION, "
            "result TEXT, error TEXT, created_at DOUBLE PRECISION NOT NULL, finished_at DOUBLE PRECISION, "
            "completions INTEGER NOT NULL DEFAULT 0)",
            f"CREATE INDEX IF NOT EXISTS {TABLE}_pending ON {TABLE} (state, created_at)",
        ]

    # -- producers --------------------------------------------------------------------------------

    def submit(self, payload: Any, *, model: str, job_id: str | None = None, result: Any = None) -> tuple[Job, bool]:
        """Accept a job (committed before this returns); ``(job, created)``. A known ``job_id`` is not re-queued.

        With ``result`` the job is recorded as done at once (its answer was already cached).
        """
        job_id = job_id or uuid.uuid4().hex
        body = json.dumps(payload, separators=(",", ":"), sort_keys=True)
        if result is None:
            _, count = self._execute(
                f"INSERT INTO {TABLE} (id, model, payload, state, created_at) VALUES (?, ?, ?, 'queued', NOW()) "
                "ON CONFLICT (id) DO NOTHING",
                (job_id, model, body),
            )
        else:
            _, count = self._execute(
                f"INSERT INTO {TABLE} (id, model, payload, state, result, created_at, finished_at, completions) "
                "VALUES (?, ?, ?, 'done', ?, NOW(), NOW(), 1) ON CONFLICT (id) DO NOTHING",
                (job_id, model, body, json.dumps(result, separators=(",", ":"))),
            )
        job = self.get(job_id)
        assert job is not None
        return job, count == 1

    def get(self, job_id: str) -> Job | None:
        rows, _ = self._execute(f"SELECT {_COLUMNS} FROM {TABLE} WHERE id = ?", (job_id,))
        return _job(rows[0]) if rows else None

    def depth(self) -> dict[str, int]:
        rows, _ = self._execute(
            f"SELECT state, COUNT(*) FROM {TABLE} WHERE state IN ('queued', 'running') GROUP BY state"
        )
        out = {"queued": 0, "running": 0}
        out.update({str(state): int(count) for state, count in rows})
        return out

    def jobs(self) -> list[Job]:
        rows, _ = self._execute(f"SELECT {_COLUMNS} FROM {TABLE} ORDER BY created_at")
        return [_job(r) for r in rows]

    # -- workers ----------------------------------------------------------------------------------

    def _claim_sql(self) -> str:
        raise NotImplementedError

    def claim(self, *, lease_seconds: float) -> Job | None:
        """Take the oldest queued job (or one whose lease ran out) with a fresh claim token."""
        claim = uuid.uuid4().hex
        rows, _ = self._execute(self._claim_sql(), (claim, float(lease_seconds)))
        if not rows:
            return None
        return _job(rows[0])

    def renew(self, job: Job, *, lease_seconds: float) -> bool:
        _, count = self._execute(
            f"UPDATE {TABLE} SET lease_until = NOW() + ? WHERE id = ? AND claim = ? AND state = 'running'",
            (float(lease_seconds), job.id, job.claim),
        )
        return count == 1

    def complete(self, job: Job, result: Any) -> bool:
        """Record the result; False when the claim was lost (another worker owns the job now)."""
        _, count = self._execute(
            f"UPDATE {TABLE} SET state = 'done', result = ?, finished_at = NOW(), completions = completions + 1, "
            "lease_until = NULL WHERE id = ? AND claim = ? AND state = 'running'",
            (json.dumps(result, separators=(",", ":")), job.id, job.claim),
        )
        return count == 1

    def fail(self, job: Job, error: str) -> bool:
        """Put the job back for another attempt, or mark it failed after ``max_attempts``."""
        final = job.attempts >= self.max_attempts
        _, count = self._execute(
            f"UPDATE {TABLE} SET state = ?, error = ?, lease_until = NULL, claim = NULL, "
            "finished_at = CASE WHEN ? THEN NOW() ELSE NULL END WHERE id = ? AND claim = ? AND state = 'running'",
            ("failed" if final else "queued", error[:2000], final, job.id, job.claim),
        )
        return count == 1


class SqliteJobQueue(JobQueue):
    """The embedded default: one SQLite file in WAL mode (readers never block the writer)."""

    param = "?"
    now_sql = "((julianday('now') - 2440587.5) * 86400.0)"

    def __init__(self, path: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.path = path
        self.url = f"sqlite:///{path}"

    def _connect(self) -> Any:
        os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
        conn = sqlite3.connect(self.path, timeout=30.0, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        # FULL: a commit is on disk before the request is acknowledged (NORMAL could lose the last
        # transactions on power loss, which would break "an accepted request is never lost").
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("PRAGMA busy_timeout=30000")
        return _AutocommitSqlite(conn)

    def _claim_sql(self) -> str:
        return (
            f"UPDATE {TABLE} SET state = 'running', claim = ?, lease_until = NOW() + ?, attempts = attempts + 1 "
            f"WHERE id = (SELECT id FROM {TABLE} WHERE state = 'queued' OR (state = 'running' AND lease_until < NOW()) "
            f"ORDER BY created_at LIMIT 1) RETURNING {_COLUMNS}"
        )


class _AutocommitSqlite:
    """sqlite3 in autocommit mode behind the DB-API calls the queue makes (each statement is its own transaction)."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    def cursor(self) -> sqlite3.Cursor:
        return self._conn.cursor()

    def commit(self) -> None:
        pass

    def close(self) -> None:
        self._conn.close()


class PostgresJobQueue(JobQueue):
    """Several replicas share one PostgreSQL table; claims use ``FOR UPDATE SKIP LOCKED``."""

    param = "%s"
    # The database's clock, so that replicas on hosts with skewed clocks agree on leases.
    now_sql = "EXTRACT(EPOCH FROM clock_timestamp())::double precision"

    def __init__(self, url: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.url = url

    def _connect(self) -> Any:
        psycopg = require("psycopg", feature="serving (PostgreSQL job queue)")
        return psycopg.connect(self.url, connect_timeout=5)

    def _retryable(self, exc: Exception) -> bool:
        import psycopg

        return isinstance(exc, psycopg.OperationalError)

    def setup(self) -> None:
        # Two replicas starting together may both create the table: serialise on an advisory lock.
        self._execute("SELECT pg_advisory_lock(727271)")
        try:
            super().setup()
        finally:
            self._execute("SELECT pg_advisory_unlock(727271)")

    def _claim_sql(self) -> str:
        return (
            f"UPDATE {TABLE} SET state = 'running', claim = ?, lease_until = NOW() + ?, attempts = attempts + 1 "
            f"WHERE id = (SELECT id FROM {TABLE} WHERE state = 'queued' OR (state = 'running' AND lease_until < NOW()) "
            f"ORDER BY created_at LIMIT 1 FOR UPDATE SKIP LOCKED) RETURNING {_COLUMNS}"
        )


def queue_from_url(url: str, **kwargs: Any) -> JobQueue:
    """``sqlite:///relative.db``, ``sqlite:////abs/path.db`` or ``postgresql://...``."""
    if url.startswith("sqlite:///"):
        return SqliteJobQueue(url[len("sqlite:///") :], **kwargs)
    if url.startswith(("postgresql://", "postgres://")):
        return PostgresJobQueue(url, **kwargs)
    raise ConfigurationError(
        f"job queue URL {url!r} is not supported: use sqlite:///<path> (embedded) or postgresql://user@host:port/db"
    )


def wait_for(queue: JobQueue, job_id: str, *, timeout: float = 30.0, interval: float = 0.05) -> Job:
    """Poll until ``job_id`` is done or failed (tests and simple clients)."""
    deadline = time.monotonic() + timeout
    while True:
        job = queue.get(job_id)
        if job is not None and job.state in ("done", "failed"):
            return job
        if time.monotonic() > deadline:
            raise TimeoutError(f"job {job_id} not finished after {timeout}s (state {job.state if job else None})")
        time.sleep(interval)
