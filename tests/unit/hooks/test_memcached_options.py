"""MemcachedHook resolves servers and client options (timeouts, pool size, TLS) for the runtime publisher."""

from __future__ import annotations

import json
import ssl
from pathlib import Path

import pytest

from airflow_provider_mlp.errors import ConfigurationError
from airflow_provider_mlp.hooks.memcached import MemcachedHook


def _connection(monkeypatch: pytest.MonkeyPatch, **extra: object) -> None:
    conn = {"conn_type": "mlp_memcached", "host": "10.0.0.1", "port": 11311, "extra": extra}
    monkeypatch.setenv("AIRFLOW_CONN_MLP_MEMCACHED_OPTS", json.dumps(conn))


def test_connection_extras_become_options(monkeypatch: pytest.MonkeyPatch) -> None:
    _connection(monkeypatch, servers="a:1,b:2", timeout="7.5", max_pool_size="4", tls="false")
    options = MemcachedHook("mlp_memcached_opts").memcached_options()
    assert options.servers == (("a", 1), ("b", 2))
    assert (options.timeout, options.connect_timeout, options.max_pool_size, options.tls) == (7.5, 2.0, 4, False)
    assert options.tls_context() is None


def test_an_argument_beats_the_connection(monkeypatch: pytest.MonkeyPatch) -> None:
    _connection(monkeypatch, timeout=9, connect_timeout=3)
    options = MemcachedHook("mlp_memcached_opts", servers="c:3", timeout=1).memcached_options()
    assert options.servers == (("c", 3),) and options.timeout == 1 and options.connect_timeout == 3
    assert MemcachedHook("mlp_memcached_opts").memcached_options().servers == (("10.0.0.1", 11311),)


def test_tls_options_build_a_verifying_context(monkeypatch: pytest.MonkeyPatch, mlp_home: Path) -> None:
    _connection(monkeypatch, tls=True)
    context = MemcachedHook("mlp_memcached_opts").memcached_options().tls_context()
    assert isinstance(context, ssl.SSLContext) and context.verify_mode == ssl.CERT_REQUIRED
    insecure = MemcachedHook("mlp_memcached_opts", tls_verify=False).memcached_options().tls_context()
    assert insecure is not None and insecure.verify_mode == ssl.CERT_NONE


def test_bad_option_values_name_the_field(monkeypatch: pytest.MonkeyPatch) -> None:
    _connection(monkeypatch, timeout="soon")
    with pytest.raises(ConfigurationError, match="connection 'mlp_memcached_opts' field 'timeout'"):
        MemcachedHook("mlp_memcached_opts").memcached_options()
    _connection(monkeypatch, tls="maybe")
    with pytest.raises(ConfigurationError, match="field 'tls': expected true or false"):
        MemcachedHook("mlp_memcached_opts").memcached_options()
    with pytest.raises(ConfigurationError, match="'timeout' must be a positive number"):
        MemcachedHook(servers="a:1", timeout=-1).memcached_options()
