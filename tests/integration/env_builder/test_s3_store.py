"""The store on a real S3-protocol server (moto in server mode on 127.0.0.1)."""

from __future__ import annotations

import datetime as dt
import logging
from pathlib import Path

import pytest

from env_builder.builder import alias, build
from env_builder.errors import AliasError, EnvNotFoundError, IntegrityError, StoreError
from env_builder.rehydrate import ensure
from env_builder.spec import EnvSpec
from env_builder.store import EnvStore, utcnow
from tests.integration.env_builder.conftest import PY, SIX_SPEC
from tests.support.s3_server import S3Server
from tests.unit.env_builder.helpers import RecordingProgress, host_build_output, run_at_once, stored_names

pytestmark = pytest.mark.integration


@pytest.fixture
def s3_store(s3_server: S3Server, request: pytest.FixtureRequest) -> tuple[str, dict[str, object]]:
    bucket = "mlp-envs-" + request.node.name.replace("_", "-")[:40].lower().strip("-")
    s3_server.create_bucket(bucket)
    return f"s3://{bucket}/mlp/envs", s3_server.storage_options()


def test_build_alias_and_rehydrate_through_s3(s3_store: tuple[str, dict[str, object]], tmp_path: Path) -> None:
    url, options = s3_store
    ref = build(SIX_SPEC, url, storage_options=options)
    assert ref.uri == f"{url}/envs/{ref.id}.{ref.sha256}.tar.zst"
    store = EnvStore.open(url, options)
    assert store.list_envs() == [ref.id]
    alias(ref, "ranking/six:v1", store=url, storage_options=options)
    alias(ref, "ranking/six:v1", store=url, storage_options=options)
    other = build(EnvSpec(python=PY, pip=["idna==3.10"]), url, storage_options=options)
    with pytest.raises(AliasError, match="immutable"):
        alias(other, "ranking/six:v1", store=url, storage_options=options)
    alias(other, "ranking/six:latest", store=url, storage_options=options)
    assert sorted((str(a), e) for a, e in store.list_aliases()) == [
        ("ranking/default/six:latest", other.id),
        ("ranking/default/six:v1", ref.id),
    ]

    env = ensure("ranking/six:v1", store=url, storage_options=options, cache_dir=tmp_path / "cache")
    assert env.env_id == ref.id and (env.path / "lib" / f"python{PY}" / "site-packages" / "six.py").exists()
    assert store.gc(dt.timedelta(0)) == []  # both referenced by aliases


def test_concurrent_builders_on_s3_both_succeed(
    s3_store: tuple[str, dict[str, object]], caplog: pytest.LogCaptureFixture
) -> None:
    url, options = s3_store
    caplog.set_level(logging.WARNING, logger="env_builder.store")
    refs, errors = run_at_once(lambda: build(SIX_SPEC, url, storage_options=options), [(), ()])
    assert not errors and refs[0] == refs[1]
    assert not caplog.records  # S3's create-only writes are conditional requests: nothing to warn about
    store = EnvStore.open(url, options)
    assert sorted(p.rsplit("/", 1)[1] for p in store.fs.ls(f"{store.root}/envs", detail=False)) == stored_names(
        refs[0].id, refs[0].sha256
    )


def test_archive_tampered_in_s3_is_refused(s3_store: tuple[str, dict[str, object]], tmp_path: Path) -> None:
    url, options = s3_store
    ref = build(SIX_SPEC, url, storage_options=options)
    store = EnvStore.open(url, options)
    path = f"{store.root}/envs/{ref.id}.{ref.sha256}.tar.zst"
    data = bytearray(store.fs.cat_file(path))
    data[100] ^= 0xFF
    store.fs.pipe_file(path, bytes(data))
    with pytest.raises(IntegrityError, match="refusing to extract"):
        ensure(ref.id, store=url, storage_options=options, cache_dir=tmp_path / "cache")
    assert not (tmp_path / "cache" / "envs" / ref.id).exists()
    assert not list((tmp_path / "cache" / "tmp").iterdir())


def test_builders_on_two_hosts_with_different_bytes_on_s3_keep_the_winners_archive(
    s3_store: tuple[str, dict[str, object]], tmp_path: Path
) -> None:
    # Two hosts built one env id into different bytes: the second to store must not replace the
    # archive the first one's manifest describes, and gc later removes the loser's archive.
    url, options = s3_store
    store = EnvStore.open(url, options)
    env_id = "c" * 64
    uploads = RecordingProgress()
    published = [
        store.put_env(env_id, str(archive), manifest, "lock\n", progress=uploads)
        for archive, manifest in (host_build_output(tmp_path, env_id, host) for host in ("a", "b"))
    ]
    assert published == [True, False]
    ref = store.ref(env_id)
    downloads = RecordingProgress()
    env = ensure(ref, store=url, storage_options=options, cache_dir=tmp_path / "cache", progress=downloads)
    # fsspec's transfer callback and our download loop count every byte of the archives
    assert uploads.steps["uploading"][0] == uploads.steps["uploading"][1]
    assert downloads.steps["downloading"] == (ref.size, ref.size)
    assert "built on a" in next(env.path.glob("lib/python*/site-packages/greeting.py")).read_text()

    def names() -> list[str]:
        store.fs.invalidate_cache()
        return sorted(p.rsplit("/", 1)[1] for p in store.fs.ls(f"{store.root}/envs", detail=False))

    assert len([name for name in names() if name.endswith(".tar.zst")]) == 2
    store.set_alias("t/p/n:v1", env_id)
    assert store.gc(dt.timedelta(days=7), now=utcnow() + dt.timedelta(days=30)) == []
    assert names() == stored_names(env_id, ref.sha256)


def test_unreachable_store_is_named(tmp_path: Path) -> None:
    options = {
        "key": "k",
        "secret": "s",
        "client_kwargs": {"endpoint_url": "http://127.0.0.1:9", "region_name": "us-east-1"},
        "config_kwargs": {"retries": {"max_attempts": 1}, "connect_timeout": 1},
    }
    with pytest.raises(StoreError, match="environment store 's3://nowhere/envs' failed"):
        ensure("a" * 64, store="s3://nowhere/envs", storage_options=options, cache_dir=tmp_path / "cache")


def test_a_long_lived_process_sees_envs_deleted_and_published_by_other_hosts(
    s3_store: tuple[str, dict[str, object]], tmp_path: Path
) -> None:
    # fsspec filesystems answer from listings they saw earlier; a worker that listed the store once
    # must still see another host's gc and another host's new manifest.
    url, options = s3_store
    worker = EnvStore.open(url, options)
    other_host = EnvStore.open(url, {**options, "skip_instance_cache": True})
    doomed, later = "6" * 64, "7" * 64
    archive, manifest = host_build_output(tmp_path, doomed, "a")
    old = {**manifest, "created_at": (utcnow() - dt.timedelta(days=30)).isoformat()}
    other_host.put_env(doomed, str(archive), old, "lock\n")
    assert worker.list_envs() == [doomed]  # the worker has listed envs/

    assert other_host.gc(dt.timedelta(days=7)) == [doomed]
    with pytest.raises(EnvNotFoundError, match=f"cannot alias t/p/n:latest to {doomed}"):
        worker.set_alias("t/p/n:latest", doomed)
    other_host.put_env(later, str(archive), {**manifest, "env_id": later}, "lock\n")
    assert worker.has_env(later) and worker.list_envs() == [later]
    assert ensure(later, store=url, storage_options=options, cache_dir=tmp_path / "cache").env_id == later
