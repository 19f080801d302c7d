from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

import pytest

import env_builder.unpack
from env_builder.errors import (
    BaseInterpreterError,
    EnvBuilderError,
    EnvNotFoundError,
    IntegrityError,
    UnsafeArchiveError,
)
from env_builder.rehydrate import READY_MARKER, cached, ensure
from env_builder.store import EnvStore
from tests.unit.env_builder.helpers import Publish, make_venv_tree, member, tar_zst


def _cache_state(cache: Path) -> list[str]:
    """Everything in the cache except lock files (which persist by design)."""
    return sorted(str(p.relative_to(cache)) for p in cache.rglob("*") if "locks" not in p.parts)


def test_cold_rehydrate_relinks_the_interpreter_then_warm_hit_skips_the_store(tmp_path: Path, publish: Publish) -> None:
    store = EnvStore.open(str(tmp_path / "store"))
    env_id = publish(store)
    cache = tmp_path / "cache"
    env = ensure(env_id, store=store.url, cache_dir=cache)
    assert env.path == cache / "envs" / env_id
    assert os.path.realpath(env.python) == os.path.realpath(getattr(sys, "_base_executable", sys.executable))
    cfg = (env.path / "pyvenv.cfg").read_text()
    assert "/nonexistent" not in cfg and cfg.startswith("home = ")
    out = subprocess.run(
        [str(env.python), "-c", "import greeting, sys; print(greeting.MESSAGE, sys.prefix)"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.split() == ["tree-0", str(env.path)]
    assert not list((cache / "tmp").iterdir())

    ran = env.run([str(env.bin_dir / "greet")], capture_output=True)
    assert ran.stdout == b"hi\n"
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(os, "environ", dict(os.environ))
        env.activate()
        assert os.environ["VIRTUAL_ENV"] == str(env.path)
        assert os.environ["PATH"].split(os.pathsep)[0] == str(env.bin_dir)

    # A warm hit needs no store at all: point at one that does not exist.
    assert ensure(env_id, store=str(tmp_path / "gone"), cache_dir=cache) == env
    assert cached(env_id, cache) == env


def test_immutable_alias_is_remembered_on_the_node_mutable_tags_ask_the_store(tmp_path: Path, publish: Publish) -> None:
    store = EnvStore.open(str(tmp_path / "store"))
    first, second = publish(store), publish(store)
    store.set_alias("t/p/model:v1", first)
    store.set_alias("t/p/model:latest", first)
    cache = tmp_path / "cache"
    assert ensure("t/p/model:v1", store=store.url, cache_dir=cache).env_id == first
    assert ensure("t/p/model:v1", store=str(tmp_path / "gone"), cache_dir=cache).env_id == first
    assert json.loads((cache / "aliases" / "t" / "p" / "model" / "v1.json").read_text()) == {"env_id": first}
    store.set_alias("t/p/model:latest", second)
    assert ensure("t/p/model@latest", store=store.url, cache_dir=cache).env_id == second


def test_wrong_sha256_is_refused_before_extracting(tmp_path: Path, publish: Publish) -> None:
    store = EnvStore.open(str(tmp_path / "store"))
    env_id = publish(store, manifest_sha256="0" * 64)
    cache = tmp_path / "cache"
    with pytest.raises(IntegrityError, match=f"archive of {env_id} .* has sha256 .*refusing to extract"):
        ensure(env_id, store=store.url, cache_dir=cache)
    assert _cache_state(cache) == ["envs", "tmp"]


def test_tampered_archive_in_store_is_refused(tmp_path: Path, publish: Publish) -> None:
    store = EnvStore.open(str(tmp_path / "store"))
    env_id = publish(store)
    archive = tmp_path / "store" / "envs" / f"{env_id}.{store.ref(env_id).sha256}.tar.zst"
    data = bytearray(archive.read_bytes())
    data[len(data) // 2] ^= 0xFF
    archive.write_bytes(bytes(data))
    with pytest.raises(IntegrityError, match="refusing to extract"):
        ensure(env_id, store=store.url, cache_dir=tmp_path / "cache")
    assert _cache_state(tmp_path / "cache") == ["envs", "tmp"]


def test_malicious_archive_with_matching_sha256_leaves_nothing_in_the_cache(tmp_path: Path, publish: Publish) -> None:
    store = EnvStore.open(str(tmp_path / "store"))
    evil = tar_zst([(member("ok.txt"), b"fine"), (member("../../escaped.txt"), b"owned")])
    env_id = publish(store, archive_bytes=evil, unpacked_size=100)
    cache = tmp_path / "cache"
    with pytest.raises(UnsafeArchiveError, match="contains '..'"):
        ensure(env_id, store=store.url, cache_dir=cache)
    assert _cache_state(cache) == ["envs", "tmp"]
    assert not list(tmp_path.rglob("escaped.txt"))


def test_exception_mid_extraction_leaves_no_half_environment(
    tmp_path: Path, publish: Publish, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = EnvStore.open(str(tmp_path / "store"))
    env_id = publish(store)
    cache = tmp_path / "cache"
    real_write = env_builder.unpack._write_file
    calls = {"n": 0}

    def failing_write(*args: Any) -> None:
        calls["n"] += 1
        if calls["n"] == 2:
            raise OSError(28, "No space left on device (injected)")
        real_write(*args)

    monkeypatch.setattr(env_builder.unpack, "_write_file", failing_write)
    with pytest.raises(OSError, match="injected"):
        ensure(env_id, store=store.url, cache_dir=cache)
    monkeypatch.undo()
    assert _cache_state(cache) == ["envs", "tmp"]
    assert ensure(env_id, store=store.url, cache_dir=cache).env_id == env_id


def test_killed_extraction_leaves_no_half_environment_and_the_next_run_cleans_up(
    tmp_path: Path, publish: Publish
) -> None:
    tree = make_venv_tree(tmp_path / "tree")
    for i in range(200):
        (tree / "lib" / f"blob{i}.bin").write_bytes(os.urandom(1000))
    store = EnvStore.open(str(tmp_path / "store"))
    env_id = publish(store, tree=tree)
    cache = tmp_path / "cache"
    started = tmp_path / "started"
    # The child slows extraction down and tells us once files are being written; we SIGKILL it.
    script = textwrap.dedent(
        f"""
        import os, time, pathlib
        import env_builder.unpack as unpack
        real_write = unpack._write_file
        def slow_write(*args):
            pathlib.Path({str(started)!r}).touch()
            time.sleep(0.05)
            real_write(*args)
        unpack._write_file = slow_write
        from env_builder.rehydrate import ensure
        ensure({env_id!r}, store={store.url!r}, cache_dir={str(cache)!r})
        """
    )
    child = subprocess.Popen([sys.executable, "-c", script])
    try:
        deadline = time.monotonic() + 60
        while not started.exists():
            assert child.poll() is None, "the child finished before it could be killed"
            assert time.monotonic() < deadline
            time.sleep(0.01)
        time.sleep(0.2)
    finally:
        child.kill()
        child.wait()
    assert not (cache / "envs" / env_id).exists()
    assert cached(env_id, cache) is None
    leftovers = list((cache / "tmp").iterdir())
    assert leftovers  # the killed child's staging directory
    env = ensure(env_id, store=store.url, cache_dir=cache)
    assert (env.path / "lib" / "blob199.bin").exists()
    assert not list((cache / "tmp").iterdir())


def test_corrupted_cache_entry_is_detected_and_rebuilt(tmp_path: Path, publish: Publish) -> None:
    store = EnvStore.open(str(tmp_path / "store"))
    env_id = publish(store)
    cache = tmp_path / "cache"
    env = ensure(env_id, store=store.url, cache_dir=cache)
    marker = env.path / READY_MARKER
    ref = store.ref(env_id)
    from_before_a_reboot = json.dumps({"env_id": env_id, "sha256": ref.sha256, "boot_id": "an-earlier-boot"})
    corruptions = ("garbage", json.dumps({"env_id": "f" * 64, "sha256": ref.sha256}), None, from_before_a_reboot)
    for corruption in (*corruptions, "wrong-sha"):
        if corruption is None:
            marker.unlink()
        elif corruption == "wrong-sha":
            # Only detectable against the expected sha256: passing the EnvRef (or verify=True) checks it.
            marker.write_text(json.dumps({"env_id": env_id, "sha256": "0" * 64}))
        else:
            marker.write_text(corruption)
        (env.path / "lib" / "junk").write_text("left by a crash")
        again = ensure(ref if corruption == "wrong-sha" else env_id, store=store.url, cache_dir=cache)
        assert not (again.path / "lib" / "junk").exists()
        assert json.loads(marker.read_text())["sha256"] == store.manifest(env_id)["archive"]["sha256"]


def test_concurrent_rehydrations_on_one_node_extract_once(
    tmp_path: Path, publish: Publish, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = EnvStore.open(str(tmp_path / "store"))
    env_id = publish(store)
    cache = tmp_path / "cache"
    extractions = []
    real_extract = env_builder.unpack.extract_archive

    def counting_extract(*args: object, **kwargs: object) -> int:
        extractions.append(1)
        time.sleep(0.1)
        return real_extract(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(env_builder.unpack, "extract_archive", counting_extract)
    results: list[str] = []
    threads = [
        threading.Thread(target=lambda: results.append(str(ensure(env_id, store=store.url, cache_dir=cache).path)))
        for _ in range(4)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 4 and len(set(results)) == 1
    assert len(extractions) == 1


def test_missing_base_interpreter_is_named(tmp_path: Path, publish: Publish, monkeypatch: pytest.MonkeyPatch) -> None:
    store = EnvStore.open(str(tmp_path / "store"))
    env_id = publish(store)
    manifest_path = tmp_path / "store" / "envs" / f"{env_id}.manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["base_interpreter"] = {"path": "/opt/python3.99/bin/python3.99", "version": "3.99.0"}
    manifest_path.write_text(json.dumps(manifest))
    with pytest.raises(BaseInterpreterError, match="no Python 3.99 interpreter.*MLP_ENV_BASE_PYTHON"):
        ensure(env_id, store=store.url, cache_dir=tmp_path / "cache")
    assert _cache_state(tmp_path / "cache") == ["envs", "tmp"]


def test_run_takes_check_and_env_like_subprocess_run(tmp_path: Path, publish: Publish) -> None:
    store = EnvStore.open(str(tmp_path / "store"))
    env = ensure(publish(store), store=store.url, cache_dir=tmp_path / "cache")
    assert env.run(["greet"], check=True, capture_output=True).stdout == b"hi\n"  # found on the env's PATH
    with pytest.raises(subprocess.CalledProcessError) as failed:
        env.run(["sh", "-c", "exit 3"], check=True)
    assert failed.value.returncode == 3
    assert env.run(["sh", "-c", "exit 3"]).returncode == 3  # check=False stays the default
    # env= is the base the environment is activated on, as environ(base) makes it.
    shown = env.run(
        ["/bin/sh", "-c", 'echo "$MLP_TEST_VALUE $VIRTUAL_ENV $PATH"'], env={"MLP_TEST_VALUE": "x"}, capture_output=True
    )
    assert shown.stdout.decode().split() == ["x", str(env.path), str(env.bin_dir)]


def test_ensure_takes_a_unique_id_prefix_and_asks_the_store_each_time(tmp_path: Path, publish: Publish) -> None:
    store = EnvStore.open(str(tmp_path / "store"))
    env_id = publish(store)
    cache = tmp_path / "cache"
    assert ensure(env_id[:16], store=store.url, cache_dir=cache).env_id == env_id
    # Unique in the node cache is not unique in the store: a prefix always asks the store.
    with pytest.raises(EnvNotFoundError, match=f"no environment with id prefix {env_id[:16]}"):
        ensure(env_id[:16], store=str(tmp_path / "gone"), cache_dir=cache)
    assert ensure(env_id, store=str(tmp_path / "gone"), cache_dir=cache).env_id == env_id


def test_activate_on_the_real_environ_keeps_the_rest_and_adds_no_empty_path_entry(tmp_path: Path) -> None:
    from env_builder.rehydrate import LocalEnv

    env = LocalEnv("e" * 64, tmp_path / "env", "0" * 64, "pip")
    saved = dict(os.environ)
    try:
        os.environ["MLP_TEST_KEEP"] = "kept"
        os.environ["PATH"] = "/usr/bin"
        env.activate()
        assert os.environ["MLP_TEST_KEEP"] == "kept"
        assert os.environ["PATH"] == f"{env.bin_dir}{os.pathsep}/usr/bin"
        assert os.environ["VIRTUAL_ENV"] == str(env.path)

        del os.environ["PATH"]
        env.activate()
        assert os.environ["PATH"] == str(env.bin_dir)
        assert os.environ["MLP_TEST_KEEP"] == "kept"
    finally:
        os.environ.clear()
        os.environ.update(saved)


def test_alias_pointing_outside_the_cache_is_refused_and_touches_nothing(tmp_path: Path) -> None:
    from env_builder.errors import AliasError, EnvBuilderError
    from env_builder.refs import parse_alias
    from env_builder.rehydrate import rehydrate

    store = EnvStore.open(str(tmp_path / "store"))
    path = tmp_path / "store" / parse_alias("team/proj/model:v1").store_path
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"env_id": "../../victim"}))
    cache = tmp_path / "node" / "cache"
    with pytest.raises(AliasError, match="team/proj/model:v1"):
        ensure("team/proj/model:v1", store=store.url, cache_dir=cache)
    with pytest.raises(EnvBuilderError, match="64 lowercase hex"):
        rehydrate("../../victim", store, cache)
    assert not (tmp_path / "victim.lock").exists() and not (tmp_path / "node" / "victim.lock").exists()
    assert not list(tmp_path.rglob("victim*"))


def test_archive_vanishing_from_a_local_store_mid_rehydrate_is_env_not_found(
    tmp_path: Path, publish: Publish, monkeypatch: pytest.MonkeyPatch
) -> None:
    from env_builder.errors import EnvNotFoundError

    store = EnvStore.open(str(tmp_path / "store"))
    env_id = publish(store)
    find = EnvStore.local_archive_path

    def found_then_deleted(env_store: EnvStore, wanted: str, manifest: dict[str, Any]) -> str | None:
        path = find(env_store, wanted, manifest)
        assert path is not None
        os.remove(path)  # gc deletes it between the lookup and the link
        return path

    monkeypatch.setattr(EnvStore, "local_archive_path", found_then_deleted)
    cache = tmp_path / "cache"
    with pytest.raises(EnvNotFoundError, match=f"{env_id} vanished"):
        ensure(env_id, store=store.url, cache_dir=cache)
    assert not list((cache / "tmp").iterdir()) and not (cache / "envs" / env_id).exists()


def test_transport_error_while_downloading_is_a_store_error(
    tmp_path: Path, publish: Publish, monkeypatch: pytest.MonkeyPatch
) -> None:
    import io

    from env_builder.errors import StoreError
    from env_builder.rehydrate import _download

    store = EnvStore.open(str(tmp_path / "store"))
    env_id = publish(store)

    class DropsConnection(io.BytesIO):
        def read(self, size: int | None = -1) -> bytes:
            raise ConnectionResetError("connection reset by peer")

    monkeypatch.setattr(store, "open_archive", lambda wanted, manifest: DropsConnection())
    with pytest.raises(StoreError, match=f"failed while downloading the archive of {env_id}.*reset by peer"):
        _download(store, env_id, store.manifest(env_id), tmp_path / "download", lambda message: None)


def test_env_ref_on_a_cache_miss_must_match_the_stores_manifest(tmp_path: Path, publish: Publish) -> None:
    from dataclasses import replace

    store = EnvStore.open(str(tmp_path / "store"))
    env_id = publish(store)
    ref = store.ref(env_id)
    cache = tmp_path / "cache"
    stale = replace(ref, sha256="0" * 64)
    with pytest.raises(IntegrityError, match=f"{env_id}.*the reference asks for {'0' * 64}"):
        ensure(stale, store=store.url, cache_dir=cache)
    assert not (cache / "envs" / env_id).exists()
    assert ensure(ref, store=store.url, cache_dir=cache).sha256 == ref.sha256


def test_a_rehydration_sweeps_other_envs_leftovers_nobody_is_working_on(tmp_path: Path, publish: Publish) -> None:
    from env_builder.concurrency import file_lock

    store = EnvStore.open(str(tmp_path / "store"))
    env_id = publish(store)
    cache = tmp_path / "cache"
    abandoned, in_progress = "a" * 64, "b" * 64
    (cache / "tmp" / f"{abandoned}.0123.d" / "lib").mkdir(parents=True)  # a killed rehydration's staging
    (cache / "tmp" / f"{in_progress}.4567.tar.zst").write_bytes(b"downloading")
    with file_lock(cache / "locks" / f"{in_progress}.lock"):  # another process is rehydrating it
        ensure(env_id, store=store.url, cache_dir=cache)
    assert sorted(p.name for p in (cache / "tmp").iterdir()) == [f"{in_progress}.4567.tar.zst"]


@pytest.mark.parametrize("cache_dir", ["/dev/null", "/proc/mlp-env-cache"])
def test_an_unusable_cache_directory_is_named(tmp_path: Path, publish: Publish, cache_dir: str) -> None:
    store = EnvStore.open(str(tmp_path / "store"))
    env_id = publish(store)
    with pytest.raises(EnvBuilderError, match=f"environment cache directory {cache_dir} is not usable"):
        ensure(env_id, store=store.url, cache_dir=cache_dir)
