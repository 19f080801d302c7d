from __future__ import annotations

from pathlib import Path

import pytest

from airflow_provider_mlp.hooks.memcached import MemcachedHook, parse_servers


def test_parse_servers_accepts_lists_and_strings() -> None:
    assert parse_servers("a:1, b:2", source="x") == [("a", 1), ("b", 2)]
    assert parse_servers(["h:11211"], source="x") == [("h", 11211)]


@pytest.mark.parametrize("bad", ["nohost", "h:port", ":11211", ""])
def test_parse_servers_names_the_bad_entry(bad: str) -> None:
    with pytest.raises(ValueError, match="argument 'servers'"):
        parse_servers(bad, source="argument 'servers'")


def test_argument_beats_default(mlp_home: Path) -> None:
    assert MemcachedHook(servers="10.1.1.1:1").servers == [("10.1.1.1", 1)]
    assert MemcachedHook().servers == [("127.0.0.1", 11211)]
