from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import os
import posixpath
import re
import threading
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from env_builder.errors import AliasError, AmbiguousEnvError, EnvNotFoundError, StoreError
from env_builder.refs import AliasRef, parse_alias, sanitize_component
from env_builder.rehydrate import ensure
from env_builder.store import EnvStore, utcnow
from tests.unit.env_builder.helpers import (
    Publish,
    base_interpreter,
    host_build_output,
    run_at_once,
    stored_names,
)


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
    sha256 = store.manifest(env_id)["archive"]["sha256"]
    names = sorted(p.name for p in (tmp_path / "store" / "envs").iterdir())
    assert names == stored_names(env_id, sha256)
    assert store.has_env(env_id) and store.list_envs() == [env_id]
    assert store.ref(env_id).uri.endswith(f"envs/{env_id}.{sha256}.tar.zst")
    assert store.manifest(env_id)["archive"]["path"] == f"envs/{env_id}.{sha256}.tar.zst"


def test_two_builders_storing_the_same_env_at_once_both_succeed_with_one_archive(tmp_path: Path) -> None:
    store = EnvStore.open(str(tmp_path / "store"))
    archive = tmp_path / "a.tar.zst"
    archive.write_bytes(b"same bytes" * 1000)
    env_id = "a" * 64
    sha256 = hashlib.sha256(archive.read_bytes()).hexdigest()
    manifest = {
        "env_id": env_id,
        "archive": {"sha256": sha256, "size": archive.stat().st_size},
        "base_interpreter": base_interpreter(),
        "created_at": utcnow().isoformat(),
    }
    results, errors = run_at_once(lambda: store.put_env(env_id, str(archive), manifest, "lock\n"), [()] * 8)
    assert not errors
    assert sorted(results) == [False] * 7 + [True]  # exactly one manifest creation won
    assert sorted(p.name for p in (tmp_path / "store" / "envs").iterdir()) == stored_names(env_id, sha256)


def test_builders_on_two_hosts_with_different_bytes_never_break_the_winning_manifest(tmp_path: Path) -> None:
    # Host A stores its archive and wins the manifest; host B, whose uv or zstd made other bytes for the
    # same env id, stores afterwards. B must not replace the bytes A's manifest describes.
    store = EnvStore.open(str(tmp_path / "store"))
    env_id = "c" * 64
    archive_a, manifest_a = host_build_output(tmp_path, env_id, "a")
    archive_b, manifest_b = host_build_output(tmp_path, env_id, "b")
    assert manifest_a["archive"] != manifest_b["archive"]

    assert store.put_env(env_id, str(archive_a), manifest_a, "lock\n") is True
    assert store.put_env(env_id, str(archive_b), manifest_b, "lock\n") is False
    ref = store.ref(env_id)
    assert ref.sha256 == manifest_a["archive"]["sha256"]  # type: ignore[index]
    local = ensure(ref, store=store.url, cache_dir=tmp_path / "cache")
    site = next(local.path.glob("lib/python*/site-packages"))
    assert "built on a" in (site / "greeting.py").read_text()

    # B's archive is an orphan: kept within the retention period (B may still be uploading), then removed.
    envs = tmp_path / "store" / "envs"
    loser = envs / f"{env_id}.{manifest_b['archive']['sha256']}.tar.zst"  # type: ignore[index]
    assert loser.exists()
    assert store.gc(dt.timedelta(days=7)) == [] and loser.exists()
    later = utcnow() + dt.timedelta(days=30)
    store.set_alias("t/p/n:v1", env_id)  # aliased: the env itself stays
    assert store.gc(dt.timedelta(days=7), now=later) == []
    assert not loser.exists()
    assert sorted(p.name for p in envs.iterdir()) == stored_names(env_id, ref.sha256)
    assert ensure(ref, store=store.url, cache_dir=tmp_path / "cache2").sha256 == ref.sha256


def test_many_builders_with_different_bytes_at_once_leave_one_consistent_env(tmp_path: Path) -> None:
    store = EnvStore.open(str(tmp_path / "store"))
    env_id = "d" * 64
    outputs = [host_build_output(tmp_path, env_id, f"host{n}") for n in range(6)]
    barrier = threading.Barrier(len(outputs))

    def put(archive: Path, manifest: dict[str, object]) -> bool:
        barrier.wait()
        return store.put_env(env_id, str(archive), manifest, "lock\n")

    results, errors = run_at_once(put, outputs)
    assert not errors and sorted(results) == [False] * 5 + [True]
    ref = store.ref(env_id)
    winner = store.manifest(env_id)["builder"]["host"]
    local = ensure(ref, store=store.url, cache_dir=tmp_path / "cache")
    assert f"built on {winner}" in next(local.path.glob("lib/python*/site-packages/greeting.py")).read_text()
    store.delete_env(env_id)  # every archive of the env goes, the losers' too
    assert list((tmp_path / "store" / "envs").iterdir()) == []


@pytest.mark.parametrize("legacy_path", [None, "envs/{env_id}.tar.zst"])
def test_manifests_naming_the_legacy_archive_key_are_still_read(
    tmp_path: Path, publish: Publish, legacy_path: str | None
) -> None:
    store = EnvStore.open(str(tmp_path / "store"))
    env_id = publish(store)
    envs = tmp_path / "store" / "envs"
    manifest = store.manifest(env_id)
    (envs / posixpath.basename(manifest["archive"]["path"])).rename(envs / f"{env_id}.tar.zst")
    if legacy_path is None:
        del manifest["archive"]["path"]
    else:
        manifest["archive"]["path"] = legacy_path.format(env_id=env_id)
    (envs / f"{env_id}.manifest.json").write_text(json.dumps(manifest))
    assert store.ref(env_id).uri.endswith(f"envs/{env_id}.tar.zst")
    assert ensure(env_id, store=store.url, cache_dir=tmp_path / "cache").sha256 == manifest["archive"]["sha256"]
    assert store.gc(dt.timedelta(0), now=utcnow() + dt.timedelta(days=1)) == [env_id]
    assert list(envs.iterdir()) == []


@pytest.mark.parametrize(
    "path",
    ["../../outside.tar.zst", "envs/{other}.tar.zst", "envs/{env_id}.{wrong_sha}.tar.zst", "/etc/passwd", 7],
)
def test_manifest_naming_an_archive_that_is_not_its_own_is_refused(
    tmp_path: Path, publish: Publish, path: object
) -> None:
    store = EnvStore.open(str(tmp_path / "store"))
    env_id = publish(store)
    manifest = store.manifest(env_id)
    if isinstance(path, str):
        path = path.format(env_id=env_id, other="e" * 64, wrong_sha="0" * 64)
    manifest["archive"]["path"] = path
    (tmp_path / "store" / "envs" / f"{env_id}.manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(StoreError, match=f"{env_id}.manifest.json names archive .*expected envs/{env_id}"):
        ensure(env_id, store=store.url, cache_dir=tmp_path / "cache")
    with pytest.raises(StoreError, match="names archive"):
        store.ref(env_id)
    # gc keeps every file of an env whose manifest it cannot follow: nothing is deleted on a guess
    before = sorted(p.name for p in (tmp_path / "store" / "envs").iterdir())
    store.gc(dt.timedelta(0), now=utcnow() + dt.timedelta(days=1))
    assert sorted(p.name for p in (tmp_path / "store" / "envs").iterdir()) == before


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


# Two ids sharing their first seven hex digits, as two of many environments eventually do.
FIRST_ID = "abcdef1" + "1" * 57
SECOND_ID = "abcdef2" + "2" * 57


def test_an_env_is_named_by_a_unique_id_prefix_like_git(tmp_path: Path, publish: Publish) -> None:
    store = EnvStore.open(str(tmp_path / "store"))
    publish(store, env_id=FIRST_ID), publish(store, env_id=SECOND_ID)
    assert store.resolve(FIRST_ID[:16]) == FIRST_ID  # what `mlp-env list` prints
    assert store.resolve("abcdef2") == SECOND_ID
    assert store.resolve(FIRST_ID) == FIRST_ID
    with pytest.raises(AmbiguousEnvError, match=f"id prefix abcdef is ambiguous .*: {FIRST_ID}, {SECOND_ID}; give"):
        store.resolve("abcdef")
    # A text that looks like an id is reported as one, not as an unknown alias.
    with pytest.raises(EnvNotFoundError, match="no environment with id prefix e637cebd16d67d58 in store"):
        store.resolve("e637cebd16d67d58")
    with pytest.raises(EnvNotFoundError, match="an env id has 64 hex digits"):
        store.resolve(FIRST_ID + "0")
    with pytest.raises(EnvNotFoundError, match="no environment with id prefix 0{130} in store '[^']*'; an env id"):
        store.resolve("0" * 130)  # too long for an alias name as well
    # Too short for a prefix: an alias only, and the error says how many digits a prefix needs.
    with pytest.raises(AliasError, match="unknown alias default/default/abcde:latest .*at least 6 hex digits"):
        store.resolve("abcde")


def test_a_hex_alias_name_and_an_id_prefix_never_hide_each_other(tmp_path: Path, publish: Publish) -> None:
    store = EnvStore.open(str(tmp_path / "store"))
    publish(store, env_id=FIRST_ID), publish(store, env_id=SECOND_ID)
    store.set_alias("cafe01", SECOND_ID)  # no id starts with it: the alias answers
    assert store.resolve("cafe01") == SECOND_ID
    store.set_alias("abcdef1", FIRST_ID)  # the same env either way
    assert store.resolve("abcdef1") == FIRST_ID
    store.set_alias("abcdef1", SECOND_ID)
    with pytest.raises(
        AmbiguousEnvError, match=f"{FIRST_ID}, {SECOND_ID} \\(alias default/default/abcdef1:latest\\); give more digits"
    ):
        store.resolve("abcdef1")


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


def _age(store: EnvStore, env_id: str, days: int) -> None:
    manifest_path = f"{store.root}/envs/{env_id}.manifest.json"
    manifest = json.loads(Path(manifest_path).read_text())
    manifest["created_at"] = (utcnow() - dt.timedelta(days=days)).isoformat()
    Path(manifest_path).write_text(json.dumps(manifest))


def _when_gc_looks_at_aliases_again(monkeypatch: pytest.MonkeyPatch, meanwhile: Callable[[], None]) -> None:
    """Run ``meanwhile`` once gc has hidden the expired envs, just before it lists the aliases again."""
    list_aliases = EnvStore.list_aliases
    calls = []

    def second_look(self: EnvStore) -> list[tuple[AliasRef, str]]:
        calls.append(1)
        if len(calls) == 2:
            meanwhile()
        return list_aliases(self)

    monkeypatch.setattr(EnvStore, "list_aliases", second_look)


def _alias_record_lands(store: EnvStore, name: str, env_id: str) -> None:
    """The write of a set_alias that checked the env before gc hid it."""
    alias = parse_alias(name)
    target = Path(store.root) / alias.store_path
    target.parent.mkdir(parents=True)
    target.write_text(json.dumps({"alias": str(alias), "env_id": env_id, "updated_at": utcnow().isoformat()}))


def test_alias_set_while_gc_hides_the_env_brings_the_env_back(
    tmp_path: Path, publish: Publish, monkeypatch: pytest.MonkeyPatch
) -> None:
    # set_alias checked the env before gc hid it, and its write lands before gc looks at the aliases again.
    store = EnvStore.open(str(tmp_path / "store"))
    env_id = publish(store)
    _age(store, env_id, 30)
    _when_gc_looks_at_aliases_again(monkeypatch, lambda: _alias_record_lands(store, "t/p/n:v1", env_id))
    assert store.gc(dt.timedelta(days=7)) == []
    assert store.resolve("t/p/n:v1") == env_id
    assert ensure("t/p/n:v1", store=store.url, cache_dir=tmp_path / "cache").env_id == env_id


@pytest.mark.parametrize("tag", ["v1", "latest"])
def test_alias_written_after_gc_deleted_its_env_is_taken_back(
    tmp_path: Path, publish: Publish, monkeypatch: pytest.MonkeyPatch, tag: str
) -> None:
    # set_alias checked the env just before gc deleted it: its write must not leave a dangling alias.
    store = EnvStore.open(str(tmp_path / "store"))
    doomed, other = publish(store), publish(store)
    store.set_alias("t/p/n:latest", other)
    _age(store, doomed, 30)
    assert store.gc(dt.timedelta(days=7)) == [doomed]
    has_env = EnvStore.has_env
    checks = []

    def existed_at_first_check(self: EnvStore, env_id: str) -> bool:
        checks.append(env_id)
        return True if len(checks) == 1 else has_env(self, env_id)

    monkeypatch.setattr(EnvStore, "has_env", existed_at_first_check)
    with pytest.raises(EnvNotFoundError, match=f"cannot alias t/p/n:{tag} to {doomed}: the environment was deleted"):
        store.set_alias(f"t/p/n:{tag}", doomed)
    monkeypatch.undo()
    if tag == "latest":
        assert store.resolve("t/p/n@latest") == other  # the previous target is back
    else:
        with pytest.raises(AliasError, match="unknown alias t/p/n:v1"):
            store.resolve("t/p/n:v1")


def test_a_store_on_another_fsspec_backend_works_and_says_its_create_only_writes_can_race(
    tmp_path: Path, publish: Publish, caplog: pytest.LogCaptureFixture
) -> None:
    url = f"memory://mlp-test-{uuid.uuid4().hex}/envs"
    store = EnvStore.open(url)
    with caplog.at_level(logging.WARNING, logger="env_builder.store"):
        env_id = publish(store)
        store.set_alias("t/p/n:v1", env_id)
    warnings = [r.getMessage() for r in caplog.records if r.name == "env_builder.store"]
    assert len(warnings) == 1 and "on memory are check-then-write, not atomic" in warnings[0]
    assert ensure("t/p/n:v1", store=url, cache_dir=tmp_path / "cache").env_id == env_id


def test_env_published_again_while_gc_hides_it_is_left_whole(
    tmp_path: Path, publish: Publish, monkeypatch: pytest.MonkeyPatch
) -> None:
    # gc hid X; a builder sees X missing and publishes it again before gc deletes X's files.
    store = EnvStore.open(str(tmp_path / "store"))
    env_id = "9" * 64
    archive, manifest = host_build_output(tmp_path, env_id, "a")
    store.put_env(env_id, str(archive), {**manifest, "created_at": (utcnow() - dt.timedelta(days=30)).isoformat()}, "l")

    def republish() -> None:
        assert not store.has_env(env_id)
        assert store.put_env(env_id, str(archive), manifest, "l") is True

    _when_gc_looks_at_aliases_again(monkeypatch, republish)
    assert store.gc(dt.timedelta(days=7)) == []
    monkeypatch.undo()
    assert store.has_env(env_id)
    assert ensure(env_id, store=store.url, cache_dir=tmp_path / "cache").env_id == env_id


def test_identical_archive_kept_from_a_dead_builder_is_put_back_if_gc_removes_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A builder died long ago after uploading; a new build of the same env finds the identical archive and
    # keeps it, and gc deletes it as an old orphan just before the new manifest lands.
    store = EnvStore.open(str(tmp_path / "store"))
    env_id = "8" * 64
    archive, manifest = host_build_output(tmp_path, env_id, "a")
    key = EnvStore.archive_key(env_id, manifest["archive"]["sha256"])  # type: ignore[index]
    store._put_file(key, str(archive), archive.stat().st_size)
    write_bytes = EnvStore._write_bytes

    def gc_deletes_the_orphan_first(self: EnvStore, relative: str, data: bytes, *, create: bool) -> bool:
        if relative == EnvStore.manifest_key(env_id):
            (tmp_path / "store" / key).unlink()
        return write_bytes(self, relative, data, create=create)

    monkeypatch.setattr(EnvStore, "_write_bytes", gc_deletes_the_orphan_first)
    assert store.put_env(env_id, str(archive), manifest, "l") is True
    monkeypatch.undo()
    assert (tmp_path / "store" / key).exists()
    assert ensure(env_id, store=store.url, cache_dir=tmp_path / "cache").env_id == env_id


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("archive", "oops", "has archive 'oops'; expected a JSON object"),
        ("archive", {"sha256": "0" * 64, "size": "12"}, "has archive.size '12'; expected a byte count"),
        ("archive", {"size": 12}, "has archive.sha256 None; expected 64 lowercase hex digits"),
        ("created_at", 7, "has created_at 7; expected an ISO 8601 time"),
        ("created_at", "oops", None),  # a string, but not a time: gc cannot age it
        ("base_interpreter", None, "has base_interpreter None; expected a JSON object"),
    ],
)
def test_malformed_manifest_is_named_and_gc_keeps_its_files(
    tmp_path: Path, publish: Publish, field: str, value: object, message: str | None
) -> None:
    store = EnvStore.open(str(tmp_path / "store"))
    broken, old = publish(store), publish(store)
    _age(store, broken, 30)
    _age(store, old, 30)
    path = tmp_path / "store" / "envs" / f"{broken}.manifest.json"
    manifest = json.loads(path.read_text())
    manifest[field] = value
    path.write_text(json.dumps(manifest))
    assert store.gc(dt.timedelta(days=7)) == [old]
    assert len(list((tmp_path / "store" / "envs").glob(f"{broken}.*"))) == 3
    if message is not None:
        with pytest.raises(StoreError, match=re.escape(f"{broken}.manifest.json {message}")):
            store.ref(broken)
        with pytest.raises(StoreError, match=re.escape(message)):
            ensure(broken, store=store.url, cache_dir=tmp_path / "cache")


def test_created_at_without_a_time_zone_is_read_as_utc(tmp_path: Path, publish: Publish) -> None:
    store = EnvStore.open(str(tmp_path / "store"))
    env_id = publish(store)
    path = tmp_path / "store" / "envs" / f"{env_id}.manifest.json"
    manifest = json.loads(path.read_text())
    manifest["created_at"] = "2000-01-01T00:00:00"
    path.write_text(json.dumps(manifest))
    assert store.gc(dt.timedelta(days=7)) == [env_id]


def test_gc_failing_after_hiding_puts_every_manifest_back_and_never_deletes_an_aliased_env(
    tmp_path: Path, publish: Publish, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = EnvStore.open(str(tmp_path / "store"))
    env_id = publish(store)
    _age(store, env_id, 30)

    def aliased_then_the_store_fails() -> None:
        _alias_record_lands(store, "t/p/n:v1", env_id)
        raise StoreError("503 Slow Down")

    _when_gc_looks_at_aliases_again(monkeypatch, aliased_then_the_store_fails)
    with pytest.raises(StoreError, match="503"):
        store.gc(dt.timedelta(days=7))
    monkeypatch.undo()
    assert store.resolve("t/p/n:v1") == env_id

    # A gc killed at the same point leaves the manifest hidden; the next gc keeps an aliased env's files.
    (tmp_path / "store" / "envs" / f"{env_id}.manifest.json").unlink()
    month_ago = (utcnow() - dt.timedelta(days=30)).timestamp()
    for path in (tmp_path / "store" / "envs").iterdir():
        os.utime(path, (month_ago, month_ago))
    assert store.gc(dt.timedelta(days=7)) == []
    assert len(list((tmp_path / "store" / "envs").glob(f"{env_id}.*"))) == 2  # archive and lock


def test_gc_with_no_retention_still_leaves_uploads_in_flight_alone(tmp_path: Path, publish: Publish) -> None:
    store = EnvStore.open(str(tmp_path / "store"))
    publish(store)
    envs = tmp_path / "store" / "envs"
    in_flight = [envs / f".{'e' * 64}.{'1' * 64}.tar.zst.tmp-0123", envs / f"{'e' * 64}.{'1' * 64}.tar.zst"]
    for path in in_flight:
        path.write_bytes(b"uploading")
    store.gc(dt.timedelta(0))
    assert all(path.exists() for path in in_flight)


@pytest.mark.parametrize("other_writer_won", [True, False])
def test_a_create_conflict_on_an_object_store_is_retried_not_raised(
    tmp_path: Path, publish: Publish, monkeypatch: pytest.MonkeyPatch, other_writer_won: bool
) -> None:
    # S3 answers two conditional PUTs racing for one key with 409 ConditionalRequestConflict, which
    # s3fs raises as a plain OSError.
    store = EnvStore.open(f"memory://mlp-test-{uuid.uuid4().hex}/envs")
    pipe_file = store.fs.pipe_file
    conflicts = []

    def conflicting_once(path: str, value: bytes, mode: str = "overwrite", **kwargs: object) -> None:
        if mode == "create" and path.endswith(".manifest.json") and not conflicts:
            conflicts.append(path)
            if other_writer_won:
                pipe_file(path, value)
            raise OSError(5, "ConditionalRequestConflict: please retry")
        pipe_file(path, value, mode=mode, **kwargs)

    monkeypatch.setattr(store.fs, "pipe_file", conflicting_once)
    env_id = publish(store)
    assert conflicts and store.has_env(env_id)
    assert ensure(env_id, store=store.url, cache_dir=tmp_path / "cache").env_id == env_id
