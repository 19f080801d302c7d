"""A non-blocking memcached reader for asyncio servers: one pipelined connection per server (runtime side).

:class:`CacheReader` talks through pymemcache, whose calls block: inside an event loop every
lookup would stall all other requests of the process for a whole round trip. Here each server
gets one connection that any number of coroutines share: requests are written in order as they
come (``get k1 k2 ...``) and one protocol object parses the responses in order and hands each to
its waiter, so a process keeps answering other requests while memcached works, and many
concurrent lookups cost one socket.

Only reads (the ``get`` the reader needs). Failures raise :class:`CacheServerError` naming the
server; a request that gets no answer within ``options.timeout`` fails and the connection is
dropped (its later answers could no longer be matched to their requests). The next request
reconnects, so a server that comes back is used again.
"""

from __future__ import annotations

import asyncio
import socket
from collections import deque

from airflow_provider_mlp.precompute.errors import CacheServerError
from airflow_provider_mlp.precompute.options import MemcachedOptions

Found = dict[str, tuple[bytes, int]]


class _Stale(Exception):
    """The connection died before its answer came: a read may be sent again on a fresh one."""


class _Protocol(asyncio.Protocol):
    def __init__(self, server: ServerConnection) -> None:
        self.server = server
        self.transport: asyncio.Transport | None = None
        self.waiters: deque[asyncio.Future[Found]] = deque()
        self.buffer = bytearray()
        self.found: Found = {}
        self.outgoing: list[bytes] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def connection_lost(self, exc: Exception | None) -> None:
        self.fail(_Stale(f"connection lost{f': {exc}' if exc else ''}"))
        self.server.forget(self)

    def send(self, request: bytes) -> None:
        # Requests made during one turn of the loop go out in one write (one syscall, one wake-up of
        # memcached) when the turn ends: under load, many lookups share a packet.
        if not self.outgoing:
            asyncio.get_running_loop().call_soon(self.flush)
        self.outgoing.append(request)

    def flush(self) -> None:
        if self.transport is not None and self.outgoing:
            self.transport.write(b"".join(self.outgoing))
        self.outgoing.clear()

    def fail(self, exc: Exception) -> None:
        self.outgoing.clear()
        while self.waiters:
            waiter = self.waiters.popleft()
            if not waiter.done():
                waiter.set_exception(exc)
        if self.transport is not None:
            self.transport.abort()
            self.transport = None

    def data_received(self, data: bytes) -> None:
        buffer = self.buffer
        buffer += data
        pos = 0
        size = len(buffer)
        while self.waiters:
            end = buffer.find(b"\r\n", pos)
            if end < 0:
                break
            if buffer.startswith(b"END", pos) and end == pos + 3:
                pos = end + 2
                found, self.found = self.found, {}
                waiter = self.waiters.popleft()
                if not waiter.done():
                    waiter.set_result(found)
                continue
            if buffer.startswith(b"VALUE ", pos):
                parts = bytes(buffer[pos + 6 : end]).split()
                stop = end + 2 + int(parts[2])
                if size < stop + 2:
                    break  # the value is still on its way
                self.found[parts[0].decode()] = (bytes(buffer[end + 2 : stop]), int(parts[1]))
                pos = stop + 2
                continue
            line = bytes(buffer[pos:end]).decode(errors="replace")
            del buffer[:]
            self.fail(CacheServerError(f"memcached {self.server.name}: {line}", server=self.server.name))
            return
        if pos:
            del buffer[:pos]


class ServerConnection:
    """The shared, pipelined connection to one server (connected on first use, again after a failure)."""

    def __init__(self, name: str, address: tuple[str, int], options: MemcachedOptions) -> None:
        self.name = name
        self.address = address
        self.options = options
        self._protocol: _Protocol | None = None
        self._connecting: asyncio.Future[_Protocol] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def forget(self, protocol: _Protocol) -> None:
        if self._protocol is protocol:
            self._protocol = None

    def close(self) -> None:
        """Drop the connection (from its loop's thread, or from any other while that loop runs)."""
        protocol, self._protocol = self._protocol, None
        if protocol is None or protocol.transport is None:
            return
        loop = self._loop
        try:
            running: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if loop is None or running is loop or loop.is_closed():
            try:
                protocol.fail(_Stale("closed"))
            except RuntimeError:  # its loop is closed: nothing can be sent or received any more
                protocol.transport = None
        else:
            loop.call_soon_threadsafe(protocol.fail, _Stale("closed"))

    async def _connect(self) -> _Protocol:
        if self._connecting is None:
            self._connecting = asyncio.ensure_future(self._open())
        connecting = self._connecting
        try:
            return await asyncio.shield(connecting)
        finally:
            if connecting.done() and self._connecting is connecting:
                self._connecting = None

    async def _open(self) -> _Protocol:
        loop = asyncio.get_running_loop()
        host, port = self.address
        context = self.options.tls_context()
        try:
            _, protocol = await asyncio.wait_for(
                loop.create_connection(
                    lambda: _Protocol(self), host, port, ssl=context, server_hostname=host if context else None
                ),
                self.options.connect_timeout,
            )
        except (TimeoutError, OSError) as exc:
            what = "connect timed out" if isinstance(exc, TimeoutError) else f"{type(exc).__name__}: {exc}"
            raise CacheServerError(f"memcached {self.name}: {what}", server=self.name) from exc
        self._protocol = protocol
        return protocol

    async def get_many(self, keys: list[str]) -> Found:
        """``{key: (value, flags)}`` of the keys found; a stale connection is retried once on a new one."""
        for attempt in (1, 2):
            try:
                return await self._get_many(keys)
            except _Stale as exc:
                if attempt == 2:
                    raise CacheServerError(f"memcached {self.name}: {exc}", server=self.name) from None
        raise AssertionError("unreachable")

    async def _get_many(self, keys: list[str]) -> Found:
        loop = asyncio.get_running_loop()
        if loop is not self._loop:  # a connection belongs to the loop that opened it
            self.close()
            self._connecting = None
            self._loop = loop
        protocol = self._protocol
        if protocol is None or protocol.transport is None:
            protocol = await self._connect()
        if protocol.transport is None:
            raise _Stale("connection lost")
        waiter: asyncio.Future[Found] = loop.create_future()
        protocol.waiters.append(waiter)
        protocol.send(b"get " + " ".join(keys).encode() + b"\r\n")
        timer = loop.call_later(self.options.timeout, self._timed_out, protocol, waiter)
        try:
            return await waiter
        finally:
            timer.cancel()

    def _timed_out(self, protocol: _Protocol, waiter: asyncio.Future[Found]) -> None:
        if not waiter.done():
            protocol.fail(
                CacheServerError(
                    f"memcached {self.name}: no answer within {self.options.timeout:g} s", server=self.name
                )
            )
            self.forget(protocol)


class AsyncCacheClient:
    """Pipelined connections to every server of ``options``, by the node names pymemcache's hashing gives."""

    def __init__(self, options: MemcachedOptions) -> None:
        # The same "host:port" names as pymemcache's HashClient (so a reader's routing picks them).
        self.servers = {
            f"{host}:{port}": ServerConnection(f"{host}:{port}", (host, port), options)
            for host, port in options.servers
        }

    async def get_many_on(self, node: str, keys: list[str]) -> Found:
        return await self.servers[node].get_many(keys)

    async def get_by_node(self, request: dict[str, list[str]]) -> dict[str, Found]:
        """One request per server, all in flight at once."""
        if len(request) == 1:
            ((node, keys),) = request.items()
            return {node: await self.get_many_on(node, keys)}
        nodes = list(request)
        answers = await asyncio.gather(*(self.get_many_on(n, request[n]) for n in nodes))
        return dict(zip(nodes, answers, strict=True))

    def close(self) -> None:
        for server in self.servers.values():
            server.close()
