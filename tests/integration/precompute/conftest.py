"""Real memcached servers (the Debian binary) on 127.0.0.1, started and stopped per test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.memcached import MemcachedProcess, running_memcached


@pytest.fixture
def memcached() -> Iterator[MemcachedProcess]:
    """One memcached server on a free port."""
    with running_memcached(1) as servers:
        yield servers[0]


@pytest.fixture
def memcached_pair() -> Iterator[list[MemcachedProcess]]:
    """Two memcached servers on free ports (keys spread over both by consistent hashing)."""
    with running_memcached(2) as servers:
        yield servers


def servers_of(processes: list[MemcachedProcess]) -> str:
    return ",".join(p.address for p in processes)
