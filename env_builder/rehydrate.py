"""Pod side: make a stored environment ready in the node cache (standard library, fsspec, zstandard).

Cache layout (``settings().env_cache_dir`` or ``MLP_ENV_CACHE_DIR``; an emptyDir or hostPath in pods)::

    envs/<env_id>/               a ready environment; ``.mlp-ready`` inside it is written last
    locks/<env_id>.lock          fcntl lock serializing rehydrations of one env on this node
    tmp/<env_id>.<random>...     downloads and extractions in progress (removed on failure)
    aliases/<team>/<project>/<name>/<tag>.json  immutable aliases already resolved (mutable tags always ask the store)

A hit reads one small JSON file and checks the interpreter link, so it never touches the store.
A miss downloads the archive, checks its sha256 and size against the manifest **before**
extracting, extracts with member checks into a temporary directory, relinks the interpreter (or
runs ``conda-unpack``), then renames the directory into place. A directory without a valid marker
(an interrupted or tampered entry) is treated as absent and rebuilt.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from env_builder.cache_layout import READY_MARKER
from env_builder.concurrency import file_lock
from env_builder.errors import BaseInterpreterError, EnvBuilderError, EnvNotFoundError, IntegrityError
from env_builder.progress import ByteProgress, Progress, byte_counter, quiet
from env_builder.refs import ENV_ID_RE, looks_like_id, parse_alias

_DOWNLOAD_CHUNK = 8 << 20


@dataclass(frozen=True)
class LocalEnv:
    """A ready environment on this node."""

    env_id: str
    path: Path
    sha256: str
    kind: str

    @property
    def bin_dir(self) -> Path:
        return self.path / "bin"

    @property
    def python(self) -> Path:
        return self.bin_dir / "python"

    def environ(self, base: Mapping[str, str] | None = None) -> dict[str, str]:
        """Environment variables that activate it for a subprocess (what ``bin/activate`` would set)."""
        env = dict(os.environ if base is None else base)
        # An empty PATH entry means the current directory: never add one.
        path = env.get("PATH")
        env["PATH"] = f"{self.bin_dir}{os.pathsep}{path}" if path else str(self.bin_dir)
        env["VIRTUAL_ENV" if self.kind == "pip" else "CONDA_PREFIX"] = str(self.path)
        env.pop("PYTHONHOME", None)
        return env

    def activate(self) -> None:
        """Activate it for this process's future subprocesses (``os.environ``), like ``source bin/activate``."""
        activated = self.environ()  # built from the current environment before it is replaced
        os.environ.clear()
        os.environ.update(activated)

    def run(
        self, argv: Sequence[str], *, check: bool = False, env: Mapping[str, str] | None = None, **kwargs: Any
    ) -> subprocess.CompletedProcess[Any]:
        """Run a command inside the environment: ``subprocess.run`` with ``environ(env)`` as its environment."""
        return subprocess.run(list(argv), env=self.environ(env), check=check, **kwargs)


def default_cache_dir() -> Path:
    """``settings().env_cache_dir``: ``MLP_ENV_CACHE_DIR``, ``[mlp] env_cache_dir``, or under ``MLP_HOME``."""
    from airflow_provider_mlp.config import settings

    return settings().env_cache_dir


def _read_marker(env_dir: Path, env_id: str) -> dict[str, Any] | None:
    try:
        with open(env_dir / READY_MARKER, "rb") as fh:
            marker = json.loads(fh.read())
    except (OSError, ValueError):
        return None
    if not isinstance(marker, dict) or marker.get("env_id") != env_id or not marker.get("sha256"):
        return None
    if marker.get("boot_id") is not None and marker["boot_id"] != _boot_id():
        return None  # written before a reboot without being flushed: rebuild rather than trust it
    return marker


def _is_ready(env_dir: Path, env_id: str, sha256: str | None) -> LocalEnv | None:
    marker = _read_marker(env_dir, env_id)
    if marker is None or (sha256 is not None and marker["sha256"] != sha256):
        return None
    kind = marker.get("kind", "pip")
    # The interpreter link must still lead somewhere (the base image may have changed under a hostPath).
    if kind == "pip" and not os.path.exists(env_dir / "bin" / "python"):
        return None
    return LocalEnv(env_id, env_dir, marker["sha256"], kind)


def cached(env_id: str, cache_dir: str | Path | None = None) -> LocalEnv | None:
    """The ready environment in the node cache, or None; never touches the store."""
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    return _is_ready(cache / "envs" / env_id, env_id, None)


def _remove_tree(path: Path) -> None:
    """Remove a tree even where extraction left directories without write permission."""

    def make_writable(func: Callable[..., Any], target: str, _exc: Any) -> None:
        os.chmod(os.path.dirname(target), 0o700)
        func(target)

    if path.is_symlink() or path.is_file():
        path.unlink()
    elif path.exists():
        if sys.version_info >= (3, 12):
            shutil.rmtree(path, onexc=make_writable)
        else:
            shutil.rmtree(path, onerror=make_writable)


def _version_of(python: str) -> str | None:
    try:
        out = subprocess.run(
            [python, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    except OSError:
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def find_base_interpreter(recorded: Mapping[str, Any], override: str | None = None) -> str:
    """A local interpreter matching the recorded base's major.minor version: the override,
    settings' ``env_base_python`` (``MLP_ENV_BASE_PYTHON``), the recorded path, this process's own
    interpreter, then ``pythonX.Y`` on PATH."""
    from airflow_provider_mlp.config import settings

    version = ".".join(str(recorded["version"]).split(".")[:2])
    candidates: list[str] = []
    for value in (override, settings().env_base_python, recorded.get("path")):
        if value:
            candidates.append(str(value))
    if f"{sys.version_info.major}.{sys.version_info.minor}" == version:
        candidates.append(getattr(sys, "_base_executable", sys.executable))
    on_path = shutil.which(f"python{version}")
    if on_path:
        candidates.append(on_path)
    own = os.path.realpath(getattr(sys, "_base_executable", sys.executable))
    own_version = f"{sys.version_info.major}.{sys.version_info.minor}"
    for candidate in candidates:
        if not os.path.exists(candidate):
            continue
        # Our own interpreter needs no probe (a subprocess costs tens of milliseconds).
        known = own_version if os.path.realpath(candidate) == own else _version_of(candidate)
        if known == version:
            return os.path.abspath(candidate)
    raise BaseInterpreterError(
        f"no Python {version} interpreter for this environment: tried {candidates or 'nothing'}; the manifest "
        f"records {recorded.get('path')}. Set MLP_ENV_BASE_PYTHON to a Python {version} executable"
    )


def relink_interpreter(env_dir: Path, manifest: Mapping[str, Any], base_python: str | None = None) -> str:
    """Point a relocatable venv at this node's base interpreter: bin/python links and pyvenv.cfg."""
    recorded = manifest["base_interpreter"]
    base = find_base_interpreter(recorded, base_python)
    bin_dir = env_dir / "bin"
    bin_dir.mkdir(exist_ok=True)
    version = ".".join(str(recorded["version"]).split(".")[:2])
    for name in ("python", "python3", f"python{version}"):
        link = bin_dir / name
        if link.is_symlink() or link.exists():
            link.unlink()
    os.symlink(base, bin_dir / "python")
    os.symlink("python", bin_dir / "python3")
    os.symlink("python", bin_dir / f"python{version}")
    cfg = env_dir / "pyvenv.cfg"
    lines = cfg.read_text().splitlines() if cfg.exists() else []
    kept = [line for line in lines if line.split("=")[0].strip() not in ("home", "executable", "command")]
    cfg.write_text("\n".join([f"home = {os.path.dirname(base)}", *kept]) + "\n")
    return base


def run_conda_unpack(env_dir: Path) -> None:
    script = env_dir / "bin" / "conda-unpack"
    if not script.exists():
        raise EnvBuilderError(f"{env_dir} was packed by conda-pack but has no bin/conda-unpack")
    # conda-unpack is a standard-library script: the env's own Python runs it, or ours if it has none.
    env_python = env_dir / "bin" / "python"
    python = str(env_python) if env_python.exists() else sys.executable
    proc = subprocess.run([python, str(script)], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise EnvBuilderError(f"conda-unpack failed in {env_dir}: {proc.stderr.strip()}")


def _download(store: Any, env_id: str, manifest: Mapping[str, Any], destination: Path, say: Progress) -> str:
    digest = hashlib.sha256()
    size = 0
    expected_size = int(manifest["archive"]["size"])
    downloaded = byte_counter(say, "downloading", expected_size)
    # A reporter with bars shows the bytes; a plain one (a task log) gets a line every 2 s instead.
    lines = not isinstance(say, ByteProgress)
    last_report = started = time.monotonic()
    with store.open_archive(env_id, manifest) as src, open(destination, "xb") as dst:
        while chunk := _read_store_chunk(store, env_id, src):
            digest.update(chunk)
            dst.write(chunk)
            size += len(chunk)
            downloaded(len(chunk))
            if size > expected_size:
                break
            now = time.monotonic()
            if lines and now >= last_report + 2:
                last_report = now
                rate = size / max(now - started, 1e-6) / 1e6
                say(f"downloaded {size / 1e6:.1f}/{expected_size / 1e6:.1f} MB ({rate:.1f} MB/s)")
    if size != expected_size:
        raise IntegrityError(
            f"archive of {env_id} in {store.url!r} has {size}{'+' if size > expected_size else ''} bytes; "
            f"its manifest says {expected_size}"
        )
    return digest.hexdigest()


def _read_store_chunk(store: Any, env_id: str, src: Any) -> bytes:
    """One chunk of the archive; a transport failure is a StoreError, a vanished archive EnvNotFoundError."""
    with store._errors(f"downloading the archive of {env_id}"):
        try:
            return bytes(src.read(_DOWNLOAD_CHUNK))
        except FileNotFoundError:
            raise EnvNotFoundError(f"archive of {env_id} vanished from store {store.url!r} while downloading") from None


def _link_local_archive(store: Any, env_id: str, local: str, download: Path) -> None:
    """Our own hard link to (or, across filesystems, copy of) a local store's archive."""
    with store._errors(f"copying the archive of {env_id}"):
        try:
            try:
                os.link(local, download)
            except FileNotFoundError:
                raise
            except OSError:
                shutil.copyfile(local, download)
        except FileNotFoundError:
            # Deleted (gc, delete_env) between the lookup and the link.
            raise EnvNotFoundError(f"archive {local} of {env_id} vanished from store {store.url!r}") from None


def _hash_file(path: str) -> tuple[str, int]:
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest(), os.fstat(fh.fileno()).st_size


def ensure(
    env: str | Any,
    *,
    store: str | None = None,
    storage_options: Mapping[str, Any] | None = None,
    cache_dir: str | Path | None = None,
    base_python: str | None = None,
    progress: Progress | None = None,
    verify: bool = False,
) -> LocalEnv:
    """Make environment ``env`` (an env id, a unique id prefix, an alias or an ``EnvRef``) ready here; return it.

    A cache hit is trusted as long as its marker names the env id (and, for an ``EnvRef``, its
    sha256); ``verify=True`` also checks the marker's sha256 against the store's manifest.
    """
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    expected_sha256: str | None = None
    if not isinstance(env, str):  # an EnvRef: its sha256 is what the cache entry must hold
        expected_sha256 = env.sha256
        env = env.id
    env_id = env if ENV_ID_RE.fullmatch(env) else None
    # An id prefix, like a mutable alias, is resolved by the store every time: one that is unique
    # among this node's cached envs may not be unique in the store.
    alias = None if env_id is not None or looks_like_id(env) else parse_alias(env)
    # An immutable alias names one env forever: the node remembers what it resolved to.
    remembered = cache / "aliases" / alias.record_name if alias is not None and not alias.mutable else None
    if remembered is not None and not verify:
        env_id = _remembered_env_id(remembered)
    if env_id is not None and not verify:
        ready = _is_ready(cache / "envs" / env_id, env_id, expected_sha256)
        if ready is not None:
            return ready

    from env_builder.store import EnvStore

    env_store = EnvStore.open(store, storage_options)
    if env_id is None:
        env_id = env_store.resolve(env)
        if remembered is not None:
            _write_small(remembered, json.dumps({"env_id": env_id}))
    return rehydrate(
        env_id, env_store, cache, base_python=base_python, progress=progress, expected_sha256=expected_sha256
    )


def _remembered_env_id(record: Path) -> str | None:
    try:
        env_id = json.loads(record.read_text())["env_id"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    # A damaged node-side record: ask the store again.
    return env_id if isinstance(env_id, str) and ENV_ID_RE.fullmatch(env_id) else None


def _write_small(path: Path, text: str) -> None:
    """Best effort: the alias record only saves a store lookup next time (an unusable cache
    directory is reported by the rehydration that follows)."""
    temp = path.with_name(f".{path.name}.{uuid.uuid4().hex}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        temp.write_text(text)
        os.replace(temp, path)
    except OSError:
        with contextlib.suppress(OSError):
            temp.unlink(missing_ok=True)


def _prepare_cache(cache: Path) -> None:
    for folder in ("envs", "locks", "tmp"):
        try:
            (cache / folder).mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise EnvBuilderError(
                f"environment cache directory {cache} is not usable: {exc}; set MLP_ENV_CACHE_DIR or --cache-dir "
                "to a writable directory"
            ) from None


def _sweep_leftovers(cache: Path, current_env_id: str) -> None:
    """Remove the temporaries of killed rehydrations: all of ``current_env_id``'s (its lock is held,
    so they are leftovers), and other envs' where nobody holds their lock."""
    for leftover in (cache / "tmp").iterdir():
        other = leftover.name.split(".", 1)[0]
        if other == current_env_id:
            _remove_tree(leftover)
        elif ENV_ID_RE.fullmatch(other):
            with file_lock(cache / "locks" / f"{other}.lock", blocking=False) as held:
                if held:
                    _remove_tree(leftover)


def rehydrate(
    env_id: str,
    env_store: Any,
    cache: Path,
    *,
    base_python: str | None = None,
    progress: Progress | None = None,
    expected_sha256: str | None = None,
) -> LocalEnv:
    """Cache miss path: under the env's file lock, download, verify, extract, relink, rename into place.

    ``expected_sha256`` (an ``EnvRef``'s) must match the store's manifest: a caller holding a reference
    never gets other bytes than it was given, even if the store's copy was replaced.
    """
    from env_builder.unpack import extract_archive

    if not isinstance(env_id, str) or not ENV_ID_RE.fullmatch(env_id):
        # It becomes a path under the cache (lock, temporaries, the entry itself): nothing else may pass.
        raise EnvBuilderError(f"cannot rehydrate {env_id!r}: an environment id is 64 lowercase hex digits")
    say = progress or quiet
    final = cache / "envs" / env_id
    tmp_root = cache / "tmp"
    _prepare_cache(cache)
    with file_lock(cache / "locks" / f"{env_id}.lock"):
        manifest = env_store.manifest(env_id)
        archive = manifest["archive"]
        if expected_sha256 is not None and archive["sha256"] != expected_sha256:
            raise IntegrityError(
                f"environment {env_id} in {env_store.url!r} has archive sha256 {archive['sha256']}; "
                f"the reference asks for {expected_sha256}"
            )
        ready = _is_ready(final, env_id, archive["sha256"])
        if ready is not None:
            return ready  # another process on this node finished it while we waited for the lock
        _sweep_leftovers(cache, env_id)
        if final.exists() or final.is_symlink():
            say(f"cache entry {final} is incomplete or corrupted; rebuilding it")
            trash = tmp_root / f"{env_id}.trash-{uuid.uuid4().hex}"
            os.rename(final, trash)
            _remove_tree(trash)
        token = uuid.uuid4().hex
        staging = tmp_root / f"{env_id}.{token}.d"
        download = tmp_root / f"{env_id}.{token}.tar.zst"
        try:
            started = time.monotonic()
            local = env_store.local_archive_path(env_id, manifest)
            if local is not None:
                # A local store needs no download. The bytes we hash must be the bytes we extract, so
                # we hash our own hard link (the store only ever replaces files, never rewrites
                # them in place) or, across filesystems, our own copy.
                _link_local_archive(env_store, env_id, local, download)
                sha256, size = _hash_file(str(download))
                if size != int(archive["size"]):
                    raise IntegrityError(
                        f"archive of {env_id} in {env_store.url!r} has {size} bytes; "
                        f"its manifest says {archive['size']}"
                    )
            else:
                say(f"downloading {env_id} ({int(archive['size']) / 1e6:.1f} MB)")
                sha256 = _download(env_store, env_id, manifest, download, say)
            if sha256 != archive["sha256"]:
                raise IntegrityError(
                    f"archive of {env_id} in {env_store.url!r} has sha256 {sha256}; its manifest says "
                    f"{archive['sha256']}; refusing to extract it"
                )
            say(f"verified {env_id} in {time.monotonic() - started:.2f}s; extracting")
            staging.mkdir(mode=0o755)
            extract_archive(
                download,
                staging,
                max_unpacked_size=int(archive.get("unpacked_size") or 0) or None,
                label=f"archive of {env_id}",
                progress=byte_counter(say, "extracting", int(archive.get("unpacked_size") or 0) or None),
            )
            download.unlink()
            kind = manifest.get("kind", "pip")
            marker: dict[str, Any] = {"env_id": env_id, "sha256": sha256, "kind": kind, "rehydrated_at": time.time()}
            if kind == "pip":
                marker["base_interpreter"] = relink_interpreter(staging, manifest, base_python)
                _write_marker(staging, marker)
                os.rename(staging, final)
            else:
                # conda-unpack rewrites prefixes to where the env lives, so it runs in place; the
                # marker, written after it, is what makes the entry count as ready.
                os.rename(staging, final)
                run_conda_unpack(final)
                _write_marker(final, marker)
            say(f"environment {env_id} ready at {final} after {time.monotonic() - started:.2f}s")
        except BaseException:
            for leftover in (staging, download):
                _remove_tree(leftover)
            if final.exists() and _read_marker(final, env_id) is None:
                _remove_tree(final)
            raise
    return LocalEnv(env_id, final, sha256, manifest.get("kind", "pip"))


@functools.cache
def _boot_id() -> str | None:
    try:
        with open("/proc/sys/kernel/random/boot_id") as fh:
            return fh.read().strip() or None
    except OSError:
        return None


def _write_marker(env_dir: Path, marker: dict[str, Any]) -> None:
    # Nothing is fsynced: flushing a freshly written tree costs more than extracting it. Within one
    # boot the page cache is coherent, so the marker is enough; an entry from an earlier boot (a
    # hostPath cache after a node crash) may have lost data, so the boot id makes it count as stale.
    # Where there is no boot id, everything is flushed before the marker is written.
    boot_id = _boot_id()
    marker["boot_id"] = boot_id
    if boot_id is None:
        os.sync()
    with open(env_dir / READY_MARKER, "x") as fh:
        fh.write(json.dumps(marker, sort_keys=True))
