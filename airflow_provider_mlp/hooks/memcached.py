"""memcached servers for the precompute layer, through pymemcache's HashClient."""

from __future__ import annotations

from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseHook

from airflow_provider_mlp.config import DEFAULT_MEMCACHED_PORT, parse_servers, settings
from airflow_provider_mlp.errors import ConfigurationError

if TYPE_CHECKING:
    from pymemcache.client.hash import HashClient


class MemcachedHook(BaseHook):
    """
    A consistent-hashing memcached client (pymemcache ``HashClient``) over one or more servers.

    Precedence: the ``servers`` argument, then the connection (its ``servers`` field, or host
    and port), then the embedded default (``[mlp] memcached_servers`` /
    ``MLP_MEMCACHED_SERVERS``, ``127.0.0.1:11211``).

    :param mlp_memcached_conn_id: connection of type ``mlp_memcached``; ``None`` uses the default.
    :param servers: ``"host:port,host:port"`` or a list of them.
    """

    conn_name_attr = "mlp_memcached_conn_id"
    default_conn_name = "mlp_memcached_default"
    conn_type = "mlp_memcached"
    hook_name = "MLP memcached"

    def __init__(
        self,
        mlp_memcached_conn_id: str | None = None,
        *,
        servers: str | list[str] | None = None,
        client_options: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self.mlp_memcached_conn_id = mlp_memcached_conn_id
        self._servers = servers
        self._client_options = client_options or {}

    @cached_property
    def servers(self) -> list[tuple[str, int]]:
        """The resolved server addresses."""
        if self._servers is not None:
            return parse_servers(self._servers, source="argument 'servers'")
        if self.mlp_memcached_conn_id is not None:
            conn = self.get_connection(self.mlp_memcached_conn_id)
            source = f"connection {self.mlp_memcached_conn_id!r}"
            extra_servers = (conn.extra_dejson or {}).get("servers")
            if extra_servers:
                return parse_servers(extra_servers, source=f"{source} field 'servers'")
            if conn.host:
                return parse_servers(f"{conn.host}:{conn.port or DEFAULT_MEMCACHED_PORT}", source=source)
            raise ConfigurationError(f"{source}: set its host (and port) or its 'servers' field")
        return parse_servers(settings().memcached_servers, source="[mlp] memcached_servers")

    @cached_property
    def client(self) -> HashClient:
        """A pymemcache HashClient over :attr:`servers`."""
        from pymemcache.client.hash import HashClient

        options = {"connect_timeout": 2, "timeout": 5, "use_pooling": True, **self._client_options}
        return HashClient(self.servers, **options)

    def close(self) -> None:
        """Close the client's sockets, if a client was made."""
        if "client" in self.__dict__:
            self.__dict__.pop("client").close()

    def get_conn(self) -> HashClient:
        return self.client

    def test_connection(self) -> tuple[bool, str]:
        # HashClient has no stats(); ask each server directly so that one dead server shows.
        from pymemcache.client.base import Client

        for address in self.servers:
            probe = Client(address, connect_timeout=2, timeout=2)
            try:
                probe.version()
            except Exception as exc:
                return False, f"memcached {address[0]}:{address[1]}: {exc}"
            finally:
                probe.close()
        return True, f"memcached reachable: {len(self.servers)} server(s)"
