"""The provider's hooks against the real services: memcached and an S3-protocol server."""

from __future__ import annotations

import json
import uuid

import pytest

from airflow_provider_mlp.hooks.memcached import MemcachedHook
from airflow_provider_mlp.hooks.object_store import ObjectStoreHook
from tests.support.s3_server import S3Server

pytestmark = pytest.mark.integration


def test_memcached_hook_round_trips_through_the_real_server(memcached_server: str) -> None:
    hook = MemcachedHook(servers=memcached_server)
    key = f"mlp-test-{uuid.uuid4().hex}"
    try:
        hook.client.set(key, b"precomputed", expire=60)
        assert hook.client.get(key) == b"precomputed"
        assert hook.test_connection()[0]
    finally:
        hook.close()


def test_memcached_hook_reads_servers_from_a_connection(memcached_server: str, monkeypatch: pytest.MonkeyPatch) -> None:
    conn = {"conn_type": "mlp_memcached", "extra": {"servers": memcached_server}}
    monkeypatch.setenv("AIRFLOW_CONN_MLP_MEMCACHED_TEST", json.dumps(conn))
    hook = MemcachedHook("mlp_memcached_test")
    host, port = memcached_server.rsplit(":", 1)
    assert hook.servers == [(host, int(port))]
    assert hook.test_connection()[0]


def test_object_store_hook_writes_to_s3_through_a_connection(
    s3_server: S3Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    s3_server.create_bucket("mlp-hook-test")
    conn = {
        "conn_type": "mlp_object_store",
        "login": "testing",
        "password": "testing",
        "extra": {"url": "s3://mlp-hook-test/artifacts", "endpoint_url": s3_server.endpoint_url},
    }
    monkeypatch.setenv("AIRFLOW_CONN_MLP_STORE_TEST", json.dumps(conn))
    hook = ObjectStoreHook("mlp_store_test")
    assert hook.url == "s3://mlp-hook-test/artifacts"
    hook.fs.pipe(f"{hook.url}/hello.txt", b"hi")
    assert hook.fs.cat(f"{hook.url}/hello.txt") == b"hi"


def test_object_store_hook_rejects_malformed_storage_options(monkeypatch: pytest.MonkeyPatch) -> None:
    conn = {"conn_type": "mlp_object_store", "extra": {"url": "memory://x", "storage_options": "{not json"}}
    monkeypatch.setenv("AIRFLOW_CONN_MLP_STORE_BAD", json.dumps(conn))
    with pytest.raises(ValueError, match="'mlp_store_bad': field 'storage_options' must be a JSON object"):
        _ = ObjectStoreHook("mlp_store_bad").url
