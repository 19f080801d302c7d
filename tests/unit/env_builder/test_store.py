from __future__ import annotations

import datetime as dt
import json
import threading
from pathlib import Path

import pytest

from env_builder.errors import AliasError, EnvNotFoundError, StoreError
from env_builder.refs import parse_alias, sanitize_component
from env_builder.store import EnvStore
from tests.unit.env_builder.helpers import Publish


def test_alias_parsing_fills_defaults_and_names_the_bad_part() -> None:
    assert str(parse_alias("ranking/proj/model-a:v1")) == "ranking/proj/model-a:v1"
    assert str(parse_alias("ranking/model-a@stable")) == "ranking/default/model-a:stable"
    assert str(parse_alias("model-a")) == "default/default/model-a:latest"
    assert parse_alias("model-a@latest").mutable and not parse_alias("model-a:v2").mutable
    with pytest.raises(AliasError, match="invalid tag 'v 1'"):
        parse_alias("team/model:v 1")
    with pytest.raises(AliasError, match="4 path parts"):
        parse_alias("a/b/c/d:v1")
    assert sanitize_component("explainer-xgb-manual__2024-01-01T00:00:00+00:00") == (
        "explainer-xgb-manual__2024-01-01T00-00-00-00-00"
    )


def test_put_env_writes_archive_lock_and_manifest_without_temporaries(tmp_path: Path, publish: Publish) -> None:
    store = EnvStore.open(str(tmp_path / "store"))
    env_id = publish(store)
    names = sorted(p.name for p in (tmp_path / "store" / "envs").iterdir())
    assert names == sorted([f"{env_id}.tar.zst", f"{env_id}.lock", f"{env_id}.manifest.json"])
    assert store.has_env(env_id) and store.list_envs() == [env_id]
    assert store.ref(env_id).uri.endswith(f"envs/{env_id}.tar.zst")


def test_two_builders_storing_the_same_env_at_once_both_succeed_with_one_archive(tmp_path: Path) -> None:
    store = EnvStore.open(str(tmp_path / "store"))
    archive = tmp_path / "a.tar.zst"
    archive.write_bytes(b"same bytes" * 1000)
    env_id = "a" * 64
    manifest = {"env_id": env_id, "archive": {"sha256": "x", "size": archive.stat().st_size}, "created_at": "now"}
    results: list[bool] = []
    errors: list[BaseException] = []

    def put() -> None:
        try:
            results.append(store.put_env(env_id, str(archive), manifest, "lock\n"))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=put) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert sorted(results) == [False] * 7 + [True]  # exactly one manifest creation won
    assert sorted(p.name for p in (tmp_path / "store" / "envs").iterdir()) == sorted(
        [f"{env_id}.tar.zst", f"{env_id}.lock", f"{env_id}.manifest.json"]
    )


def test_immutable_alias_cannot_be_repointed_mutable_tags_can(tmp_path: Path, publish: Publish) -> None:
    store = EnvStore.open(str(tmp_path / "store"))
    first, second = publish(store), publish(store)
    store.set_alias("ranking/model-a:v1", first)
    store.set_alias("ranking/model-a:v1", first)  # same target: idempotent
    with pytest.raises(AliasError, match=r"ranking/default/model-a:v1 is immutable and already points at " + first):
        store.set_alias("ranking/model-a:v1", second)
    assert store.resolve("ranking/model-a:v1") == first
    for tag in ("latest", "candidate", "stable"):
        store.set_alias(f"ranking/model-a:{tag}", first)
        store.set_alias(f"ranking/model-a:{tag}", second)
        assert store.resolve(f"ranking/model-a@{tag}") == second
    assert [(str(a), e) for a, e in store.list_aliases()][0] == ("ranking/default/model-a:candidate", second)


def test_unknown_alias_unknown_env_and_alias_to_missing_env_are_named(tmp_path: Path) -> None:
    store = EnvStore.open(str(tmp_path / "store"))
    with pytest.raises(AliasError, match="unknown alias ranking/default/nope:latest"):
        store.resolve("ranking/nope")
    with pytest.raises(EnvNotFoundError, match="environment " + "b" * 64 + " is not in store"):
        store.resolve("b" * 64)
    with pytest.raises(EnvNotFoundError, match="cannot alias ranking/default/m:v1"):
        store.set_alias("ranking/m:v1", "c" * 64)


def test_corrupt_manifest_is_reported_with_its_url(tmp_path: Path, publish: Publish) -> None:
    store = EnvStore.open(str(tmp_path / "store"))
    env_id = publish(store)
    (tmp_path / "store" / "envs" / f"{env_id}.manifest.json").write_text("{not json")
    with pytest.raises(StoreError, match=f"{env_id}.manifest.json is not valid JSON"):
        store.manifest(env_id)


def test_gc_removes_only_unaliased_envs_older_than_retention(tmp_path: Path, publish: Publish) -> None:
    store = EnvStore.open(str(tmp_path / "store"))
    kept_by_alias, old, recent = publish(store), publish(store), publish(store)
    store.set_alias("t/p/n:v1", kept_by_alias)
    old_manifest = tmp_path / "store" / "envs" / f"{old}.manifest.json"
    data = json.loads(old_manifest.read_text())
    data["created_at"] = (dt.datetime.now(dt.UTC) - dt.timedelta(days=30)).isoformat()
    old_manifest.write_text(json.dumps(data))
    aliased_manifest = tmp_path / "store" / "envs" / f"{kept_by_alias}.manifest.json"
    aliased = json.loads(aliased_manifest.read_text())
    aliased["created_at"] = data["created_at"]
    aliased_manifest.write_text(json.dumps(aliased))

    assert store.gc(dt.timedelta(days=7), dry_run=True) == [old]
    assert store.has_env(old)
    assert store.gc(dt.timedelta(days=7)) == [old]
    assert sorted(store.list_envs()) == sorted([kept_by_alias, recent])
    assert not list((tmp_path / "store" / "envs").glob(f"{old}*"))


def test_gc_removes_old_orphaned_archives_and_temporaries(tmp_path: Path, publish: Publish) -> None:
    import os
    import time

    store = EnvStore.open(str(tmp_path / "store"))
    kept = publish(store)
    envs = tmp_path / "store" / "envs"
    old_orphan = envs / f"{'d' * 64}.tar.zst"  # a builder died before writing the manifest
    old_temp = envs / f".{'e' * 64}.tar.zst.tmp-0123"
    new_orphan = envs / f"{'f' * 64}.tar.zst"  # maybe a builder still uploading: kept
    for path in (old_orphan, old_temp, new_orphan):
        path.write_bytes(b"partial")
    month_ago = time.time() - 30 * 86400
    for path in (old_orphan, old_temp):
        os.utime(path, (month_ago, month_ago))
    assert store.gc(dt.timedelta(days=7)) == []
    assert not old_orphan.exists() and not old_temp.exists()
    assert new_orphan.exists() and store.has_env(kept)


@pytest.mark.parametrize("record", [{"alias": "x"}, {"env_id": "../../victim"}, {"env_id": 7}])
def test_alias_record_without_a_valid_env_id_is_refused_naming_the_alias(tmp_path: Path, record: object) -> None:
    store = EnvStore.open(str(tmp_path / "store"))
    path = tmp_path / "store" / parse_alias("team/proj/model:v1").store_path
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(record))
    with pytest.raises(AliasError, match=r"alias team/proj/model:v1 .* has env_id"):
        store.resolve("team/proj/model:v1")
