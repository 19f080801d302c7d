"""Where the memcached servers are and how to talk to them: one value shared by publisher, reader and CLI.

The Airflow hook (``MemcachedHook.memcached_options()``) resolves a connection into a
:class:`MemcachedOptions`; runtime code builds one from an explicit server list or from
``settings().memcached_servers`` (``MLP_MEMCACHED_SERVERS``).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from airflow_provider_mlp.config import format_server, parse_servers, settings
from airflow_provider_mlp.errors import ConfigurationError

if TYPE_CHECKING:
    import ssl

    from pymemcache.client.hash import HashClient


@dataclass(frozen=True)
class MemcachedOptions:
    """Servers plus client options.

    :param servers: ``(host, port)`` pairs; keys are spread over them by pymemcache's ``HashClient``
        (rendezvous hashing), so every client must list the same servers.
    :param connect_timeout: seconds to wait for a connection.
    :param timeout: seconds a socket may make no progress before the operation fails.
    :param max_pool_size: connections per server in a reader's pool (``None``: pymemcache's default).
    :param tls: talk TLS (memcached built with ``-Z``, or a managed cluster with in-transit encryption).
    :param tls_ca_file: CA bundle to verify the servers with (default: the system's).
    :param tls_cert_file: client certificate, for servers that verify clients.
    :param tls_key_file: the client certificate's private key.
    :param tls_verify: verify the server certificate and host name.
    """

    servers: tuple[tuple[str, int], ...]
    connect_timeout: float = 2.0
    timeout: float = 5.0
    max_pool_size: int | None = None
    tls: bool = False
    tls_ca_file: str | None = None
    tls_cert_file: str | None = None
    tls_key_file: str | None = None
    tls_verify: bool = True

    def __post_init__(self) -> None:
        if not self.servers:
            raise ConfigurationError("memcached options: no server given")
        for name in ("connect_timeout", "timeout"):
            value = getattr(self, name)
            if not isinstance(value, int | float) or value <= 0:
                raise ConfigurationError(
                    f"memcached option {name!r} must be a positive number of seconds, got {value!r}"
                )
        if self.max_pool_size is not None and (not isinstance(self.max_pool_size, int) or self.max_pool_size < 1):
            raise ConfigurationError(
                f"memcached option 'max_pool_size' must be a positive integer, got {self.max_pool_size!r}"
            )

    @classmethod
    def resolve(
        cls, servers: str | Iterable[str] | Iterable[tuple[str, int]] | None = None, **options: Any
    ) -> MemcachedOptions:
        """From an explicit server list (``"h:p,h:p"``, ``["h:p"]`` or ``[(h, p)]``) or the settings' default."""
        if servers is None:
            parsed = parse_servers(settings().memcached_servers, source="[mlp] memcached_servers")
        elif isinstance(servers, str):
            parsed = parse_servers(servers, source="argument 'servers'")
        else:
            items = list(servers)
            if items and all(isinstance(s, tuple) for s in items):
                parsed = parse_servers([format_server((str(h), int(p))) for h, p in items], source="argument 'servers'")
            else:
                parsed = parse_servers([str(s) for s in items], source="argument 'servers'")
        return cls(servers=tuple(parsed), **options)

    def with_options(self, **changes: Any) -> MemcachedOptions:
        return replace(self, **changes)

    @property
    def server_names(self) -> list[str]:
        return [format_server(s) for s in self.servers]

    def tls_context(self) -> ssl.SSLContext | None:
        """The client TLS context, or ``None`` without TLS."""
        if not self.tls:
            return None
        import ssl

        context = ssl.create_default_context(cafile=self.tls_ca_file)
        if not self.tls_verify:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        if self.tls_cert_file:
            context.load_cert_chain(self.tls_cert_file, self.tls_key_file)
        return context

    def hash_client(self, *, pooled: bool = False, serde: Any = None) -> HashClient:
        """A pymemcache ``HashClient`` over the servers whose failures raise (never silently drop)."""
        from pymemcache.client.hash import HashClient

        kwargs: dict[str, Any] = {
            "connect_timeout": self.connect_timeout,
            "timeout": self.timeout,
            "no_delay": True,
            "default_noreply": False,
            "ignore_exc": False,
            "serde": serde,
            "tls_context": self.tls_context(),
        }
        if pooled:
            kwargs["use_pooling"] = True
            kwargs["max_pool_size"] = self.max_pool_size
        return HashClient(list(self.servers), **kwargs)
