"""``mlp cache`` against real memcached: versions, current, rollback, get; text and JSON."""

from __future__ import annotations

import argparse
import json

import pyarrow as pa
import pytest

from airflow_provider_mlp.precompute import cli, publish
from tests.support.memcached import MemcachedProcess

pytestmark = pytest.mark.integration


def _run(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="mlp")
    cli.add_parser(parser.add_subparsers(dest="command", required=True))
    return cli.run(parser.parse_args(["cache", *argv]))


def test_versions_current_rollback_and_get(memcached: MemcachedProcess, capsys: pytest.CaptureFixture[str]) -> None:
    servers = ["--servers", memcached.address]
    for views in (10, 20):
        table = pa.table({"title_id": [1, 2], "country": ["US", "FR"], "views": [views, views + 1]})
        publish(
            table,
            key=["title_id", "country"],
            namespace="perf",
            servers=memcached.address,
            dag_id="d",
            run_id=f"r{views}",
        )
    capsys.readouterr()

    assert _run("versions", "perf", *servers) == 0
    text = capsys.readouterr().out
    assert "*      2" in text and "dag d run r20" in text and "      1" in text

    assert _run("current", "perf", *servers, "--json") == 0
    current = json.loads(capsys.readouterr().out)
    assert (current["seq"], current["run_id"], current["row_count"]) == (2, "r20", 2)

    assert _run("get", "perf", "1", "US", *servers) == 0
    assert json.loads(capsys.readouterr().out) == {"views": 20}

    assert _run("rollback", "perf", *servers, "--json") == 0
    assert json.loads(capsys.readouterr().out)["seq"] == 1
    assert _run("get", "perf", "1", "US", *servers) == 0
    assert json.loads(capsys.readouterr().out) == {"views": 10}

    assert _run("rollback", "perf", *servers) == 1
    assert "no version older than the current 1" in capsys.readouterr().err
    assert _run("rollback", "perf", "--to", "2", *servers) == 0
    assert "now serving version 2" in capsys.readouterr().out
    assert _run("get", "perf", "x", "US", *servers) == 1
    assert "holds integers" in capsys.readouterr().err


def test_an_unknown_namespace_and_a_dead_server_are_reported(capsys: pytest.CaptureFixture[str]) -> None:
    with MemcachedProcess() as server:
        assert _run("versions", "nothing", "--servers", server.address) == 0
        assert "no versions" in capsys.readouterr().out
        assert _run("current", "nothing", "--servers", server.address) == 1
        assert "has no current version" in capsys.readouterr().err
        address = server.address
    assert _run("versions", "nothing", "--servers", address) == 1
    assert f"memcached {address}" in capsys.readouterr().err
