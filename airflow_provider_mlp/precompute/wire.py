"""The publisher's write path: one socket per server, meta commands pipelined in large buffers.

Each batch reaches a server as one buffer of ``ms <key> <len> ME q k`` commands followed by
``mn``. With ``q`` memcached answers only failures, and ``MN`` once everything before it was
processed, so a batch costs one reply line when it succeeds, and any failure (``NS`` for a key
written twice, ``SERVER_ERROR`` out of memory, a dropped connection, silence past the timeout)
comes back with the server's name. One I/O thread per server sends and reads (non-blocking, so a
burst of failure replies can never deadlock a large send) while the main thread builds the next
batch.
"""

from __future__ import annotations

import contextlib
import queue
import select
import socket
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, TypeVar

from airflow_provider_mlp.config import format_server
from airflow_provider_mlp.precompute.errors import PublishServerError

T = TypeVar("T")

if TYPE_CHECKING:
    from airflow_provider_mlp.precompute.options import MemcachedOptions

_SEND_SLICE = 1 << 20
_QUEUE_BATCHES = 3
_MAX_FAILURE_LINES = 20


def open_socket(address: tuple[str, int], options: MemcachedOptions) -> socket.socket:
    """A connected socket (TLS-wrapped when the options ask for it), or an error naming the server."""
    name = format_server(address)
    try:
        sock = socket.create_connection(address, timeout=options.connect_timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        context = options.tls_context()
        if context is not None:
            sock = context.wrap_socket(sock, server_hostname=address[0])
        sock.settimeout(options.timeout)
        return sock
    except OSError as exc:
        raise PublishServerError(f"memcached {name}: cannot connect: {exc}", server=name) from exc


def request(sock: socket.socket, name: str, payload: bytes, terminator: bytes) -> bytes:
    """Send ``payload`` and read until the reply ends with ``terminator``: for text replies only (a
    binary value may end with the terminator's bytes; see ``exchange``)."""
    return exchange(sock, name, payload, lambda reply: reply if reply.endswith(terminator) else None)


def exchange(sock: socket.socket, name: str, payload: bytes, parse: Callable[[bytes], T | None]) -> T:
    """Send ``payload`` and read until ``parse`` of the reply so far gives a result (None: not complete
    yet), which is returned (blocking, for small exchanges)."""
    try:
        sock.sendall(payload)
        reply = bytearray()
        while True:
            chunk = sock.recv(1 << 16)
            if not chunk:
                raise PublishServerError(f"memcached {name}: connection closed by the server", server=name)
            reply += chunk
            parsed = parse(bytes(reply))
            if parsed is not None:
                return parsed
    except OSError as exc:
        raise PublishServerError(f"memcached {name}: {exc}", server=name) from exc


def item_size_max(sock: socket.socket, name: str) -> int | None:
    """The server's ``item_size_max`` (``stats settings``), or ``None`` when it does not say."""
    reply = request(sock, name, b"stats settings\r\n", b"END\r\n")
    for line in reply.split(b"\r\n"):
        parts = line.split()
        if len(parts) == 3 and parts[0] == b"STAT" and parts[1] == b"item_size_max":
            return int(parts[2])
    return None


@dataclass
class Failure:
    server: str
    line: str


@dataclass
class ServerWriter:
    """Sends buffers to one server from its own thread and collects the failure replies."""

    name: str
    sock: socket.socket
    timeout: float
    on_failures: Callable[[ServerWriter], BaseException]
    context: str = "the publish"
    commands: int = 0
    failures: list[Failure] = field(default_factory=list)
    failure_count: int = 0
    error: BaseException | None = None
    _queue: queue.Queue[list[bytes | memoryview] | None] = field(default_factory=lambda: queue.Queue(_QUEUE_BATCHES))
    _thread: threading.Thread | None = None
    _expected_mn: int = 0
    _received_mn: int = 0
    _stopped: bool = False
    _aborted: bool = False

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=f"mlp-publish-{self.name}", daemon=True)
        self._thread.start()

    def send(self, parts: Sequence[bytes | memoryview], commands: int) -> None:
        """Queue one batch (its commands, without the closing ``mn``) for sending."""
        self.commands += commands
        while True:
            self.raise_if_failed()
            try:
                self._queue.put([*parts, b"mn\r\n"], timeout=0.1)
                return
            except queue.Full:
                continue

    def finish(self) -> None:
        """Wait until every queued batch was sent and acknowledged; raise the first failure."""
        while True:
            self.raise_if_failed()
            try:
                self._queue.put(None, timeout=0.1)
                break
            except queue.Full:
                continue
        assert self._thread is not None
        self._thread.join()
        self.raise_if_failed()
        if self.failures:
            raise self.on_failures(self)

    def raise_if_failed(self) -> None:
        if self.error is not None:
            raise self.error
        if self._stopped and self.failures:
            raise self.on_failures(self)

    def abort(self) -> None:
        """Stop the thread (after a failure elsewhere) without waiting for replies."""
        self._aborted = True
        with contextlib.suppress(queue.Full):
            self._queue.put_nowait(None)

    def _fail(self, message: str) -> None:
        if self.error is None:
            self.error = PublishServerError(
                f"memcached {self.name}: {message}; {self.context} was abandoned and the pointer not moved",
                server=self.name,
            )

    def _run(self) -> None:
        try:
            self._loop()
        except BaseException as exc:  # reported to the main thread, which raises it
            if self.error is None:
                self._fail(f"{type(exc).__name__}: {exc}")
        finally:
            self._stopped = True
            # Unblock a main thread waiting to queue more.
            with contextlib.suppress(queue.Empty):
                while True:
                    self._queue.get_nowait()

    def _loop(self) -> None:
        sock = self.sock
        sock.setblocking(False)
        pending: list[memoryview] = []
        received = bytearray()
        closing = False
        last_progress = time.monotonic()
        while not self._aborted:
            if not pending and not closing:
                try:
                    item = self._queue.get(timeout=0.05 if self._expected_mn > self._received_mn else 1.0)
                except queue.Empty:
                    item = False  # type: ignore[assignment]
                if item is None:
                    closing = True
                elif item:
                    pending = [memoryview(p).cast("B") for p in item]
                    self._expected_mn += 1
                    last_progress = time.monotonic()
            if closing and not pending and self._received_mn >= self._expected_mn:
                return
            if not pending and self._received_mn >= self._expected_mn:
                continue
            readable, writable, _ = select.select([sock], [sock] if pending else [], [], 0.1)
            progressed = False
            if readable:
                data = self._recv(sock)
                if data == b"":
                    self._fail("connection closed by the server during the publish")
                    return
                if data:
                    received += data
                    progressed = True
                    if self._parse(received):
                        return
            if writable and pending:
                sent = self._send(sock, pending[0][:_SEND_SLICE])
                if sent:
                    progressed = True
                    if sent == len(pending[0]):
                        pending.pop(0)
                    else:
                        pending[0] = pending[0][sent:]
            now = time.monotonic()
            if progressed:
                last_progress = now
            elif now - last_progress > self.timeout:
                state = "sending" if pending else "waiting for its reply"
                self._fail(f"no progress for {self.timeout:g}s while {state} (server down or overloaded?)")
                return

    def _recv(self, sock: socket.socket) -> bytes | None:
        import ssl

        try:
            data = sock.recv(1 << 16)
            if isinstance(sock, ssl.SSLSocket):
                while sock.pending():
                    data += sock.recv(sock.pending())
            return data
        except (BlockingIOError, ssl.SSLWantReadError, ssl.SSLWantWriteError):
            return None
        except OSError as exc:
            self._fail(f"connection lost during the publish: {exc}")
            return b""

    def _send(self, sock: socket.socket, view: memoryview) -> int:
        import ssl

        try:
            return sock.send(view)
        except (BlockingIOError, ssl.SSLWantReadError, ssl.SSLWantWriteError):
            return 0
        except OSError as exc:
            self._fail(f"connection lost during the publish: {exc}")
            raise

    def _parse(self, received: bytearray) -> bool:
        """Consume complete reply lines; True when a failure ended this writer."""
        end = received.rfind(b"\r\n")
        if end < 0:
            return False
        lines = bytes(received[:end]).split(b"\r\n")
        del received[: end + 2]
        for line in lines:
            if line == b"MN":
                self._received_mn += 1
                if self.failures:
                    return True
            else:
                self.failure_count += 1
                if len(self.failures) < _MAX_FAILURE_LINES:
                    self.failures.append(Failure(self.name, line.decode("ascii", "replace")))
                if line.startswith((b"CLIENT_ERROR", b"ERROR")):
                    # The stream may be out of step after a protocol error: stop here.
                    return True
        return False
