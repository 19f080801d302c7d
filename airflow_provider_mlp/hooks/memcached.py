"""memcached servers for the precompute layer, through pymemcache's HashClient."""

from __future__ import annotations

from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseHook

from airflow_provider_mlp.config import DEFAULT_MEMCACHED_PORT, parse_servers, settings
from airflow_provider_mlp.errors import ConfigurationError

if TYPE_CHECKING:
    from pymemcache.client.hash import HashClient

    from airflow_provider_mlp.precompute.options import MemcachedOptions

# Connection extra fields besides ``servers``, with how their text is read.
_OPTION_FIELDS: dict[str, type] = {
    "connect_timeout": float,
    "timeout": float,
    "max_pool_size": int,
    "tls": bool,
    "tls_ca_file": str,
    "tls_cert_file": str,
    "tls_key_file": str,
    "tls_verify": bool,
}


def _option_value(name: str, kind: type, value: Any, source: str) -> Any:
    if kind is bool:
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in ("1", "true", "yes", "on"):
            return True
        if text in ("0", "false", "no", "off", ""):
            return False
        raise ConfigurationError(f"{source} field {name!r}: expected true or false, got {value!r}")
    try:
        return kind(value)
    except (TypeError, ValueError):
        raise ConfigurationError(f"{source} field {name!r}: expected {kind.__name__}, got {value!r}") from None


class MemcachedHook(BaseHook):
    """
    A consistent-hashing memcached client (pymemcache ``HashClient``) over one or more servers.

    Precedence: the ``servers`` argument, then the connection (its ``servers`` field, or host
    and port), then the embedded default (``[mlp] memcached_servers`` /
    ``MLP_MEMCACHED_SERVERS``, ``127.0.0.1:11211``). Client options (timeouts, pool size, TLS)
    likewise: an argument beats the connection's extra field of the same name, which beats the default.

    :param mlp_memcached_conn_id: connection of type ``mlp_memcached``; ``None`` uses the default.
    :param servers: ``"host:port,host:port"`` or a list of them.
    :param connect_timeout: seconds to connect (default 2).
    :param timeout: seconds a socket may make no progress (default 5).
    :param max_pool_size: connections per server in a pooled client.
    :param tls: use TLS; ``tls_ca_file``, ``tls_cert_file``, ``tls_key_file``, ``tls_verify`` refine it.
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
        connect_timeout: float | None = None,
        timeout: float | None = None,
        max_pool_size: int | None = None,
        tls: bool | None = None,
        tls_ca_file: str | None = None,
        tls_cert_file: str | None = None,
        tls_key_file: str | None = None,
        tls_verify: bool | None = None,
    ) -> None:
        super().__init__()
        self.mlp_memcached_conn_id = mlp_memcached_conn_id
        self._servers = servers
        self._client_options = client_options or {}
        explicit = {
            "connect_timeout": connect_timeout,
            "timeout": timeout,
            "max_pool_size": max_pool_size,
            "tls": tls,
            "tls_ca_file": tls_ca_file,
            "tls_cert_file": tls_cert_file,
            "tls_key_file": tls_key_file,
            "tls_verify": tls_verify,
        }
        self._explicit_options = {k: v for k, v in explicit.items() if v is not None}

    @cached_property
    def _connection(self) -> Any:
        return self.get_connection(self.mlp_memcached_conn_id) if self.mlp_memcached_conn_id is not None else None

    @cached_property
    def servers(self) -> list[tuple[str, int]]:
        """The resolved server addresses."""
        if self._servers is not None:
            return parse_servers(self._servers, source="argument 'servers'")
        if self.mlp_memcached_conn_id is not None:
            conn = self._connection
            source = f"connection {self.mlp_memcached_conn_id!r}"
            extra_servers = (conn.extra_dejson or {}).get("servers")
            if extra_servers:
                return parse_servers(extra_servers, source=f"{source} field 'servers'")
            if conn.host:
                return parse_servers(f"{conn.host}:{conn.port or DEFAULT_MEMCACHED_PORT}", source=source)
            raise ConfigurationError(f"{source}: set its host (and port) or its 'servers' field")
        return parse_servers(settings().memcached_servers, source="[mlp] memcached_servers")

    def memcached_options(self) -> MemcachedOptions:
        """The resolved servers and client options, for the runtime publisher and reader.

        ``publish(..., options=hook.memcached_options())`` / ``CacheReader(ns, options=...)``.
        """
        from airflow_provider_mlp.precompute.options import MemcachedOptions

        options: dict[str, Any] = {}
        if self.mlp_memcached_conn_id is not None:
            extra = self._connection.extra_dejson or {}
            source = f"connection {self.mlp_memcached_conn_id!r}"
            for name, kind in _OPTION_FIELDS.items():
                if extra.get(name) not in (None, ""):
                    options[name] = _option_value(name, kind, extra[name], source)
        options.update(self._explicit_options)
        return MemcachedOptions(servers=tuple(self.servers), **options)

    @cached_property
    def client(self) -> HashClient:
        """A pymemcache HashClient over :attr:`servers`."""
        from pymemcache.client.hash import HashClient

        resolved = self.memcached_options()
        options: dict[str, Any] = {
            "connect_timeout": resolved.connect_timeout,
            "timeout": resolved.timeout,
            "use_pooling": True,
            "max_pool_size": resolved.max_pool_size,
            "tls_context": resolved.tls_context(),
            **self._client_options,
        }
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

        resolved = self.memcached_options()
        for address in self.servers:
            probe = Client(address, connect_timeout=2, timeout=2, tls_context=resolved.tls_context())
            try:
                probe.version()
            except Exception as exc:
                return False, f"memcached {address[0]}:{address[1]}: {exc}"
            finally:
                probe.close()
        return True, f"memcached reachable: {len(self.servers)} server(s)"
