from __future__ import annotations

from pathlib import Path

import pytest

from airflow_provider_mlp.config import parse_servers
from airflow_provider_mlp.errors import ConfigurationError, MlpError
from airflow_provider_mlp.hooks.memcached import MemcachedHook


def test_parse_servers_accepts_lists_and_strings() -> None:
    assert parse_servers("a:1, b:2", source="x") == [("a", 1), ("b", 2)]
    assert parse_servers(["h:11211"], source="x") == [("h", 11211)]
    assert parse_servers("[::1]:11212", source="x") == [("::1", 11212)]


def test_a_host_without_a_port_gets_the_default_port_as_a_connection_host_does() -> None:
    assert parse_servers("cache-1, cache-2:11212", source="x") == [("cache-1", 11211), ("cache-2", 11212)]


@pytest.mark.parametrize("bad", ["h:port", ":11211", "", " , ", "h:0", "a b:1", "::1"])
def test_parse_servers_names_the_bad_entry(bad: str) -> None:
    with pytest.raises(ConfigurationError, match="argument 'servers'"):
        parse_servers(bad, source="argument 'servers'")


def test_a_port_out_of_range_names_the_server_and_the_range() -> None:
    with pytest.raises(ConfigurationError, match=r"'127\.0\.0\.1:99999' has port 99999, expected 1-65535"):
        parse_servers("127.0.0.1:99999", source="MLP_MEMCACHED_SERVERS")


def test_argument_beats_default(mlp_home: Path) -> None:
    assert MemcachedHook(servers="10.1.1.1:1").servers == [("10.1.1.1", 1)]
    assert MemcachedHook().servers == [("127.0.0.1", 11211)]


def test_an_empty_servers_argument_is_refused_not_read_as_the_default(mlp_home: Path) -> None:
    with pytest.raises(MlpError, match="no memcached server given"):
        _ = MemcachedHook(servers="").servers


@pytest.mark.parametrize("bad", ["[::1", "[::1]x", "h:²"])
def test_unclosed_brackets_and_non_ascii_ports_are_refused(bad: str) -> None:
    with pytest.raises(ConfigurationError, match="not of the form host"):
        parse_servers(bad, source="x")
