"""``mlp demo``'s checks before it starts: a missing memcached is named at once, before any work."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from airflow_provider_mlp.demo.runner import demo


def test_demo_names_an_unreachable_memcached_before_doing_any_work(
    mlp_home: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # A port bound but not listening: connections are refused, and no other process can take it meanwhile.
    with socket.socket() as bound:
        bound.bind(("127.0.0.1", 0))
        port = int(bound.getsockname()[1])
        monkeypatch.setenv("MLP_MEMCACHED_SERVERS", f"127.0.0.1:{port}")
        assert demo(None, rows=1_000) == 2
    err = capsys.readouterr().err
    assert f"memcached is not reachable at 127.0.0.1:{port}" in err
    assert "MLP_MEMCACHED_SERVERS" in err
    # Nothing was generated: no table, no Airflow home.
    assert not (mlp_home / "airflow").exists()
    assert not list(mlp_home.rglob("*.parquet"))
