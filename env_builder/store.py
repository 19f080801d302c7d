"""The environment store on any fsspec URL (standard library and fsspec only: pods use it too).

Layout under the store root::

    envs/<env_id>.<sha256>.tar.zst   the packed environment, named by its content too
    envs/<env_id>.lock               the lock it was built from (a rebuild is exact)
    envs/<env_id>.manifest.json      written last: an environment exists once its manifest does;
                                     its ``archive.path`` names the archive that belongs to it
    aliases/<team>/<project>/<name>/<tag>.json

Archives carry their sha256 in their name because two builders of one env on different hosts may
produce different bytes (another uv, another zstd): each uploads its own archive, exactly one
manifest wins the create-only write, and the loser's archive is an orphan that ``gc`` removes
later. A shared name would let the loser overwrite the bytes the winning manifest describes.
Manifests written before archives were content-addressed name ``envs/<env_id>.tar.zst``.

Every write is atomic: on a local filesystem a temporary name in the same directory is renamed
into place (``os.link`` for create-only writes); on object stores a single PUT or completed
multipart upload is already atomic, and an archive's size is checked after upload. Create-only
writes are atomic on the local filesystem and on S3 (a conditional PUT, ``If-None-Match``); on
other backends fsspec checks and then writes, and the store logs a warning saying so.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import posixpath
import re
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from env_builder.errors import AliasError, AmbiguousEnvError, EnvNotFoundError, StoreError
from env_builder.progress import Progress, byte_counter
from env_builder.refs import MIN_ID_PREFIX, AliasRef, is_env_id, is_sha256, looks_like_id, parse_alias

MANIFEST_SUFFIX = ".manifest.json"
ARCHIVE_SUFFIX = ".tar.zst"
LOCK_SUFFIX = ".lock"
_TEMP_MARK = ".tmp-"
# Object stores whose fsspec create-only write is a conditional request (s3fs: If-None-Match). The
# local filesystem is handled with os.link. Everything else gets a check-then-write.
_ATOMIC_CREATE_PROTOCOLS = frozenset({"s3", "s3a"})
logger = logging.getLogger(__name__)
_CREATE_WARNED: set[str] = set()  # store URLs already warned about, once per process
_CREATE_ATTEMPTS = 5
# gc never removes a temporary or an unpublished archive younger than this, whatever the retention:
# a builder may be uploading it right now.
MIN_ORPHAN_AGE = dt.timedelta(hours=1)
# Hex too short for an id prefix: resolved as an alias only, and said so when there is none.
_SHORT_HEX_RE = re.compile(rf"[0-9a-f]{{1,{MIN_ID_PREFIX - 1}}}")
_ARCHIVE_KEY_RE = re.compile(r"envs/(?P<env_id>[0-9a-f]{64})(?:\.(?P<sha256>[0-9a-f]{64}))?\.tar\.zst")


@dataclass(frozen=True)
class EnvRef:
    """A stored environment: content id, archive sha256 and size, and the archive's URL."""

    id: str
    sha256: str
    size: int
    uri: str

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "sha256": self.sha256, "size": self.size, "uri": self.uri}


def default_store_url() -> str:
    from airflow_provider_mlp.config import settings

    return settings().env_store


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class EnvStore:
    """Packed environments, their manifests and aliases under one fsspec URL."""

    def __init__(self, url: str, fs: Any, root: str) -> None:
        """``fs`` must not cache listings (see ``open``): every existence check has to see the store now."""
        self.url = url.rstrip("/")
        self.fs = fs
        self.root = root.rstrip("/")

    @classmethod
    def open(cls, url: str | None = None, storage_options: Mapping[str, Any] | None = None) -> EnvStore:
        """Open the store at ``url`` (default: settings().env_store, i.e. MLP_ENV_STORE)."""
        from airflow_provider_mlp.errors import MlpError
        from airflow_provider_mlp.stores import open_filesystem

        url = url or default_store_url()
        try:
            # Fresh listings: a manifest another host wrote or deleted since this process last looked
            # must not look absent or present; the store's races are decided by fresh answers only.
            fs, root = open_filesystem(url, storage_options, fresh_listings=True)
        except MlpError as exc:
            raise StoreError(f"cannot open environment store {url!r}: {exc}") from None
        return cls(url, fs, root)

    # -- paths -----------------------------------------------------------------------------------

    @property
    def protocols(self) -> frozenset[str]:
        protocol = self.fs.protocol
        return frozenset((protocol,) if isinstance(protocol, str) else protocol)

    @property
    def is_local(self) -> bool:
        return bool(self.protocols & {"file", "local"})

    def _path(self, relative: str) -> str:
        return f"{self.root}/{relative}"

    def _url(self, relative: str) -> str:
        return f"{self.url}/{relative}"

    @staticmethod
    def archive_key(env_id: str, sha256: str | None = None) -> str:
        """Key of an archive: ``envs/<env_id>.<sha256>.tar.zst`` (without ``sha256``, the legacy name)."""
        return f"envs/{env_id}.{sha256}{ARCHIVE_SUFFIX}" if sha256 else f"envs/{env_id}{ARCHIVE_SUFFIX}"

    def archive_key_of(self, env_id: str, manifest: Mapping[str, Any]) -> str:
        """The archive ``manifest`` describes; it must be one of ``env_id``'s, with the manifest's sha256."""
        archive = manifest.get("archive")
        if not isinstance(archive, Mapping):
            raise StoreError(
                f"manifest {self._url(self.manifest_key(env_id))} has archive {archive!r}; expected a JSON object"
            )
        key = archive.get("path") or self.archive_key(env_id)
        match = _ARCHIVE_KEY_RE.fullmatch(key) if isinstance(key, str) else None
        # The key becomes a path in the store (and, for a local store, on this host): nothing else may pass.
        if match is None or match["env_id"] != env_id or match["sha256"] not in (None, archive.get("sha256")):
            raise StoreError(
                f"manifest {self._url(self.manifest_key(env_id))} names archive {key!r}; "
                f"expected envs/{env_id}.<its archive sha256>.tar.zst"
            )
        return key

    @staticmethod
    def manifest_key(env_id: str) -> str:
        return f"envs/{env_id}{MANIFEST_SUFFIX}"

    @staticmethod
    def lock_key(env_id: str) -> str:
        return f"envs/{env_id}{LOCK_SUFFIX}"

    @contextmanager
    def _errors(self, what: str, *, writing: bool = False) -> Iterator[None]:
        """Turn transport failures into a StoreError that names the store and the operation.

        A FileNotFoundError passes through while reading (callers turn it into the missing thing's
        own error); while writing it is a StoreError too (say, gc removed a temporary meanwhile).
        """
        try:
            yield
        except FileNotFoundError as exc:
            if writing:
                raise StoreError(f"environment store {self.url!r} failed while {what}: {exc}") from exc
            raise
        except (OSError, TimeoutError, ConnectionError) as exc:
            raise StoreError(f"environment store {self.url!r} failed while {what}: {exc}") from exc
        except Exception as exc:
            # botocore/aiohttp raise their own exception types for an unreachable endpoint.
            if type(exc).__module__.split(".")[0] in {"botocore", "aiohttp", "aiobotocore", "s3fs", "gcsfs", "adlfs"}:
                raise StoreError(f"environment store {self.url!r} failed while {what}: {exc}") from exc
            raise

    # -- atomic writes ---------------------------------------------------------------------------

    def _write_bytes(self, relative: str, data: bytes, *, create: bool) -> bool:
        """Write ``data``; with ``create`` only if absent. Returns False when it already existed."""
        path = self._path(relative)
        with self._errors(f"writing {relative}", writing=True):
            if self.is_local:
                return _local_atomic_write(path, lambda fh: fh.write(data), create=create)
            if create:
                return self._create_remote(path, data)
            self.fs.pipe_file(path, data)
            return True

    def _create_remote(self, path: str, data: bytes) -> bool:
        """A create-only write on an object store; False when the object already exists."""
        self._warn_if_create_is_not_atomic()
        for attempt in range(_CREATE_ATTEMPTS):
            try:
                self.fs.pipe_file(path, data, mode="create")
                return True
            except FileExistsError:
                return False
            except (NotImplementedError, TypeError):
                if self.fs.exists(path):
                    return False
                self.fs.pipe_file(path, data)
                return True
            except OSError:
                # S3 answers two conditional PUTs racing for one key with 409 ConditionalRequestConflict
                # ("retry"), which s3fs raises as a plain OSError: the object may exist by now.
                if self.fs.exists(path):
                    return False
                if attempt == _CREATE_ATTEMPTS - 1:
                    raise
                time.sleep(0.05 * 2**attempt)
        raise AssertionError("unreachable")

    def _warn_if_create_is_not_atomic(self) -> None:
        """Say once per store when create-only writes can race: fsspec's generic ``mode="create"``
        checks for the object and then writes it, so two writers may both believe they created it."""
        if self.url in _CREATE_WARNED or self.protocols & _ATOMIC_CREATE_PROTOCOLS:
            return
        _CREATE_WARNED.add(self.url)
        logger.warning(
            "environment store %r: create-only writes (manifests, immutable aliases) on %s are check-then-write, "
            "not atomic; builders of one environment or writers of one immutable alias should not run at once",
            self.url,
            "/".join(sorted(self.protocols)),
        )

    def _put_file(self, relative: str, local_path: str, size: int, progress: Progress | None = None) -> None:
        """Upload a local file atomically; an identical object already there is kept."""
        path = self._path(relative)
        uploaded = byte_counter(progress, "uploading", size)
        with self._errors(f"uploading {relative}", writing=True):
            if self.is_local:

                def copy(fh: Any) -> None:
                    with open(local_path, "rb") as src:
                        while chunk := src.read(8 << 20):
                            fh.write(chunk)
                            uploaded(len(chunk))

                _local_atomic_write(path, copy, create=False)
                return
            try:
                if self.fs.info(path).get("size") == size:
                    return
            except FileNotFoundError:
                pass
            self.fs.put_file(local_path, path, callback=_fsspec_callback(uploaded))
            self.fs.invalidate_cache(path)
            stored = self.fs.info(path).get("size")
            if stored != size:
                raise StoreError(f"upload of {self._url(relative)} left {stored} bytes, expected {size}")

    def _read_json(self, relative: str, missing: Callable[[], Exception]) -> dict[str, Any]:
        path = self._path(relative)
        with self._errors(f"reading {relative}"):
            try:
                with self.fs.open(path, "rb") as fh:
                    raw = fh.read()
            except FileNotFoundError:
                raise missing() from None
        try:
            data = json.loads(raw)
        except ValueError as exc:
            raise StoreError(f"{self._url(relative)} is not valid JSON: {exc}") from None
        if not isinstance(data, dict):
            raise StoreError(f"{self._url(relative)} holds {type(data).__name__}, expected a JSON object")
        return data

    # -- environments ----------------------------------------------------------------------------

    def has_env(self, env_id: str) -> bool:
        with self._errors(f"looking up environment {env_id}"):
            return bool(self.fs.exists(self._path(self.manifest_key(env_id))))

    def manifest(self, env_id: str) -> dict[str, Any]:
        """The manifest of ``env_id``, checked for the fields every reader relies on."""
        manifest = self._read_json(
            self.manifest_key(env_id),
            lambda: EnvNotFoundError(f"environment {env_id} is not in store {self.url!r}"),
        )
        archive = manifest.get("archive")
        problem = None
        if not isinstance(archive, dict):
            problem = f"has archive {archive!r}; expected a JSON object"
        elif not isinstance(archive.get("sha256"), str) or not is_sha256(archive["sha256"]):
            problem = f"has archive.sha256 {archive.get('sha256')!r}; expected 64 lowercase hex digits"
        elif not _is_count(archive.get("size")):
            problem = f"has archive.size {archive.get('size')!r}; expected a byte count"
        elif archive.get("unpacked_size") is not None and not _is_count(archive["unpacked_size"]):
            problem = f"has archive.unpacked_size {archive['unpacked_size']!r}; expected a byte count"
        elif not isinstance(manifest.get("created_at"), str):
            problem = f"has created_at {manifest.get('created_at')!r}; expected an ISO 8601 time"
        elif manifest.get("kind", "pip") == "pip" and not isinstance(manifest.get("base_interpreter"), dict):
            problem = f"has base_interpreter {manifest.get('base_interpreter')!r}; expected a JSON object"
        if problem is not None:
            raise StoreError(f"manifest {self._url(self.manifest_key(env_id))} {problem}")
        return manifest

    def ref(self, env_id: str, manifest: Mapping[str, Any] | None = None) -> EnvRef:
        manifest = manifest or self.manifest(env_id)
        key = self.archive_key_of(env_id, manifest)  # checks the archive entry first
        archive = manifest["archive"]
        return EnvRef(env_id, archive["sha256"], int(archive["size"]), self._url(key))

    def put_env(
        self,
        env_id: str,
        archive_path: str,
        manifest: Mapping[str, Any],
        lock_text: str,
        *,
        progress: Progress | None = None,
    ) -> bool:
        """Store an environment; returns False when another builder stored it first (both succeed).

        The archive goes under its content-addressed key and the manifest records that key, so a
        builder that loses the race for the manifest never touches the winner's archive.
        """
        archive = dict(manifest["archive"])
        if not is_env_id(env_id) or not is_sha256(str(archive.get("sha256"))):
            raise ValueError(
                f"cannot store environment {env_id!r}: its id and its archive sha256 ({archive.get('sha256')!r}) "
                "must each be 64 lowercase hex digits"
            )
        archive["path"] = key = self.archive_key(env_id, archive["sha256"])
        self._put_file(key, archive_path, int(archive["size"]), progress)
        self._write_bytes(self.lock_key(env_id), lock_text.encode(), create=False)
        body = json.dumps({**manifest, "archive": archive}, indent=2, sort_keys=True).encode()
        created = self._write_bytes(self.manifest_key(env_id), body, create=True)
        # An identical archive already in the store was kept, not uploaded again; if it was an old
        # orphan (its builder died), gc may have deleted it just now. Check the archive the winning
        # manifest names, and put it back when we hold the same bytes.
        stored = {**manifest, "archive": archive} if created else self.manifest(env_id)
        stored_key = self.archive_key_of(env_id, stored)
        with self._errors(f"checking {stored_key}"):
            missing = not self.fs.exists(self._path(stored_key))
        if missing and stored["archive"].get("sha256") == archive["sha256"]:
            self._put_file(stored_key, archive_path, int(archive["size"]), progress)
        return created

    def open_archive(self, env_id: str, manifest: Mapping[str, Any]) -> Any:
        """Open the archive ``manifest`` (env ``env_id``'s) describes, for reading."""
        key = self.archive_key_of(env_id, manifest)
        with self._errors(f"opening the archive of {env_id}"):
            try:
                return self.fs.open(self._path(key), "rb", block_size=8 << 20)
            except FileNotFoundError:
                raise EnvNotFoundError(f"archive {self._url(key)} is missing") from None

    def local_archive_path(self, env_id: str, manifest: Mapping[str, Any]) -> str | None:
        """Path of the archive on this host when the store is a local directory and the archive exists."""
        if not self.is_local:
            return None
        path = self._path(self.archive_key_of(env_id, manifest))
        return path if os.path.exists(path) else None

    def list_envs(self) -> list[str]:
        with self._errors("listing environments"):
            try:
                names = self.fs.ls(self._path("envs"), detail=False)
            except FileNotFoundError:
                return []
        ids = []
        for name in names:
            base = posixpath.basename(str(name))
            if base.endswith(MANIFEST_SUFFIX) and is_env_id(base[: -len(MANIFEST_SUFFIX)]):
                ids.append(base[: -len(MANIFEST_SUFFIX)])
        return sorted(ids)

    def delete_env(self, env_id: str) -> None:
        """Delete an environment: the manifest goes first so that nobody starts fetching it meanwhile,
        then every archive of it (a losing builder's too) and its lock."""
        with self._errors(f"deleting environment {env_id}"):
            self._remove(self._path(self.manifest_key(env_id)))
        self._delete_files(env_id, self._list_env_files())

    def _list_env_files(self) -> list[dict[str, Any]]:
        """The listing of ``envs/`` with details (name, size, modified time)."""
        with self._errors("listing environments"):
            try:
                return list(self.fs.ls(self._path("envs"), detail=True))
            except FileNotFoundError:
                return []

    def _delete_files(self, env_id: str, entries: list[dict[str, Any]]) -> None:
        """The files of ``env_id`` among ``entries``, but temporaries (they belong to writers still at work)."""
        with self._errors(f"deleting environment {env_id}"):
            for entry in entries:
                base = posixpath.basename(str(entry["name"]))
                if base.startswith(f"{env_id}.") and _TEMP_MARK not in base:
                    self._remove(str(entry["name"]))

    def _remove(self, path: str) -> None:
        try:
            self.fs.rm_file(path)
        except FileNotFoundError:
            pass

    # -- aliases ---------------------------------------------------------------------------------

    def resolve(self, reference: str) -> str:
        """Env id of ``reference``: an env id, a unique prefix of one (at least ``MIN_ID_PREFIX`` hex
        digits, like git's short ids; ``mlp-env list`` prints 16) or an alias (``team/project/name:tag``)."""
        if is_env_id(reference):
            if not self.has_env(reference):
                raise EnvNotFoundError(f"environment {reference} is not in store {self.url!r}")
            return reference
        if looks_like_id(reference):
            return self._resolve_id_prefix(reference)
        alias = parse_alias(reference)
        if _SHORT_HEX_RE.fullmatch(reference) and self._read_optional(alias.store_path) is None:
            raise AliasError(
                f"unknown alias {alias} (no {self._url(alias.store_path)}); an env id prefix needs at least "
                f"{MIN_ID_PREFIX} hex digits"
            )
        return self.get_alias(alias)["env_id"]

    def _resolve_id_prefix(self, prefix: str) -> str:
        """The one environment ``prefix`` names. Hex text is a valid alias name too (``cafe01``): an
        alias of that name counts as one more candidate, so neither silently hides the other."""
        matches = [env_id for env_id in self.list_envs() if env_id.startswith(prefix)]
        alias = parse_alias(prefix) if len(prefix) <= 128 else None  # longer is no alias name
        aliased = None
        if alias is not None and self._read_optional(alias.store_path) is not None:
            aliased = self.get_alias(alias)["env_id"]
        candidates = {*matches, *([aliased] if aliased else [])}
        if len(candidates) == 1:
            return candidates.pop()
        if not candidates:
            also = f" (and no alias {alias})" if alias is not None else ""
            hint = "; an env id has 64 hex digits" if len(prefix) > 64 else ""
            raise EnvNotFoundError(f"no environment with id prefix {prefix} in store {self.url!r}{also}{hint}")
        named = [*matches, *([f"{aliased} (alias {alias})"] if aliased else [])]
        raise AmbiguousEnvError(
            f"id prefix {prefix} is ambiguous in store {self.url!r}: it names {len(candidates)} environments: "
            f"{', '.join(named)}; give more digits of the id" + (f", or the alias in full, {alias}" if aliased else "")
        )

    def get_alias(self, alias: AliasRef) -> dict[str, Any]:
        record = self._read_json(
            alias.store_path, lambda: AliasError(f"unknown alias {alias} (no {self._url(alias.store_path)})")
        )
        # The env id becomes a cache path on every node: a record naming anything else is refused.
        env_id = record.get("env_id")
        if not isinstance(env_id, str) or not is_env_id(env_id):
            raise AliasError(
                f"alias {alias} record {self._url(alias.store_path)} has env_id {env_id!r}; "
                "expected 64 lowercase hex digits"
            )
        return record

    def set_alias(self, alias: AliasRef | str, env_id: str) -> dict[str, Any]:
        """Point ``alias`` at ``env_id``. Tags other than latest/candidate/stable can never be re-pointed."""
        alias = parse_alias(alias) if isinstance(alias, str) else alias
        if not self.has_env(env_id):
            raise EnvNotFoundError(f"cannot alias {alias} to {env_id}: no such environment in {self.url!r}")
        record = {"alias": str(alias), "env_id": env_id, "updated_at": utcnow().isoformat()}
        body = json.dumps(record, indent=2, sort_keys=True).encode()
        if alias.mutable:
            previous = self._read_optional(alias.store_path)
            self._write_bytes(alias.store_path, body, create=False)
            self._check_alias_target(alias, env_id, previous)
            return record
        if self._write_bytes(alias.store_path, body, create=True):
            self._check_alias_target(alias, env_id, None)
            return record
        existing = self.get_alias(alias)
        if existing.get("env_id") != env_id:
            raise AliasError(
                f"alias {alias} is immutable and already points at {existing.get('env_id')}; cannot re-point it "
                f"to {env_id} (only the tags latest, candidate and stable move; use a new tag)"
            )
        return existing

    def _check_alias_target(self, alias: AliasRef, env_id: str, previous: bytes | None) -> None:
        """After writing ``alias``: if gc deleted ``env_id`` meanwhile, take the alias back (restore
        ``previous``, or remove it) and fail, so that no alias is left naming a deleted environment.

        gc hides an environment by deleting its manifest, then lists aliases again and restores the
        manifest of any that gained one: whichever of the two looks second sees the other's write.
        Restoring a mutable tag is a plain write: a third writer re-pointing the same tag in that
        instant can be overwritten (object stores offer no compare-and-swap through fsspec).
        """
        if self.has_env(env_id):
            return
        path = self._path(alias.store_path)
        with self._errors(f"taking back alias {alias}"):
            current = self._read_optional(alias.store_path)
            if current is not None and _record_env_id(current) == env_id:
                if previous is None:
                    self._remove(path)
                else:
                    self._write_bytes(alias.store_path, previous, create=False)
        raise EnvNotFoundError(
            f"cannot alias {alias} to {env_id}: the environment was deleted (gc) while the alias was written"
        )

    def _read_optional(self, relative: str) -> bytes | None:
        with self._errors(f"reading {relative}"):
            try:
                return bytes(self.fs.cat_file(self._path(relative)))
            except FileNotFoundError:
                return None

    def list_aliases(self) -> list[tuple[AliasRef, str]]:
        with self._errors("listing aliases"):
            try:
                paths = self.fs.glob(self._path("aliases/*/*/*/*.json"))
            except FileNotFoundError:
                return []
        aliases = []
        for path in sorted(str(p) for p in paths):
            team, project, name, file_name = path.rsplit("/", 4)[1:]
            if _TEMP_MARK in file_name:
                continue
            alias = AliasRef(team, project, name, file_name[: -len(".json")])
            try:
                aliases.append((alias, str(self.get_alias(alias)["env_id"])))
            except AliasError:
                continue  # deleted since it was listed
        return aliases

    # -- garbage collection ----------------------------------------------------------------------

    def gc(self, retention: dt.timedelta, *, dry_run: bool = False, now: dt.datetime | None = None) -> list[str]:
        """Delete environments that no alias references and that are older than ``retention``."""
        now = now or utcnow()
        referenced = {env_id for _, env_id in self.list_aliases()}
        expired: dict[str, dict[str, Any]] = {}
        # The archive each live manifest names; None where a manifest exists but cannot be read.
        live_archives: dict[str, str | None] = {}
        for env_id in self.list_envs():
            try:
                manifest = self.manifest(env_id)
                live_archives[env_id] = posixpath.basename(self.archive_key_of(env_id, manifest))
                created = dt.datetime.fromisoformat(manifest["created_at"])
                if created.tzinfo is None:
                    created = created.replace(tzinfo=dt.UTC)
            except EnvNotFoundError:
                continue
            except (StoreError, KeyError, TypeError, ValueError):
                live_archives.setdefault(env_id, None)
                continue
            if env_id in referenced or now - created < retention:
                continue
            expired[env_id] = manifest
        if dry_run:
            return sorted(expired)
        # The files to delete are those listed now, before hiding: whatever a builder publishing
        # the same env again writes from here on is not touched.
        files_before = self._list_env_files()
        # Hide the expired environments (manifest first), then look at the aliases again: one set
        # meanwhile (set_alias checked the env before we hid it) brings its manifest back.
        hidden: list[str] = []
        try:
            for env_id in expired:
                with self._errors(f"deleting environment {env_id}"):
                    self._remove(self._path(self.manifest_key(env_id)))
                hidden.append(env_id)
            referenced |= {env_id for _, env_id in self.list_aliases()}
        except BaseException:
            # Without the second look at the aliases nothing hidden may go: put every manifest back.
            for env_id in hidden:
                self._restore_manifest(env_id, expired[env_id])
            raise
        for env_id in referenced & set(expired):
            self._restore_manifest(env_id, expired.pop(env_id))
        removed = []
        for env_id in sorted(expired):
            del live_archives[env_id]
            if self.has_env(env_id):
                continue  # published again since it was hidden: it is a new environment now
            self._delete_files(env_id, files_before)
            removed.append(env_id)
        # Orphans come from the same listing: anything written since is younger than MIN_ORPHAN_AGE.
        self._remove_orphans(
            files_before, now, max(retention, MIN_ORPHAN_AGE), live_archives, referenced | set(removed)
        )
        return removed

    def _restore_manifest(self, env_id: str, manifest: Mapping[str, Any]) -> None:
        body = json.dumps(manifest, indent=2, sort_keys=True).encode()
        self._write_bytes(self.manifest_key(env_id), body, create=True)

    def _remove_orphans(
        self,
        entries: list[dict[str, Any]],
        now: dt.datetime,
        retention: dt.timedelta,
        live_archives: dict[str, str | None],
        keep: set[str],
    ) -> None:
        """Files among ``entries`` older than ``retention`` that no manifest owns: archives and locks of
        builders that died before writing the manifest, archives of builders that lost the race for it,
        stale temporaries. Envs in ``keep`` without a live manifest are left alone: aliased ones (an
        interrupted gc may have hidden their manifest) and those this gc just removed."""
        for entry in entries:
            name = posixpath.basename(str(entry["name"]))
            if _TEMP_MARK not in name:
                env_id = name.split(".", 1)[0]
                if not is_env_id(env_id) or (env_id in keep and env_id not in live_archives):
                    continue  # not ours, aliased, or removed already
                if env_id in live_archives:
                    live_archive = live_archives[env_id]
                    # An unreadable manifest keeps everything of its env: nothing is deleted on a guess.
                    if live_archive is None or not name.endswith(ARCHIVE_SUFFIX) or name == live_archive:
                        continue
                elif self.has_env(env_id):
                    continue  # published since the listing
            modified = _modified(entry)
            if modified is None or now - modified < retention:
                continue
            with self._errors(f"removing {name}"):
                self._remove(str(entry["name"]))


def _is_count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _record_env_id(raw: bytes) -> object:
    try:
        record = json.loads(raw)
    except ValueError:
        return None
    return record.get("env_id") if isinstance(record, dict) else None


def _fsspec_callback(uploaded: Callable[[int], None]) -> Any:
    """An fsspec transfer callback passing each increment to ``uploaded``."""
    from fsspec.callbacks import Callback

    class Counting(Callback):
        reported = 0

        def call(self, *args: Any, **kwargs: Any) -> None:  # every kind of update ends here
            value = self.value or 0
            if value > self.reported:
                uploaded(value - self.reported)
                self.reported = value

    return Counting()


def _local_atomic_write(path: str, write: Callable[[Any], object], *, create: bool) -> bool:
    directory = os.path.dirname(path)
    os.makedirs(directory, exist_ok=True)
    temp = os.path.join(directory, f".{os.path.basename(path)}{_TEMP_MARK}{uuid.uuid4().hex}")
    try:
        with open(temp, "xb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        if create:
            try:
                os.link(temp, path)  # fails if the name exists: an atomic create-only write
            except FileExistsError:
                return False
        else:
            os.replace(temp, path)
        return True
    finally:
        try:
            os.unlink(temp)
        except FileNotFoundError:
            pass


def _modified(entry: Mapping[str, Any]) -> dt.datetime | None:
    """Last-modified time of an fsspec listing entry (local ``mtime``, S3 ``LastModified``, ...)."""
    for key in ("mtime", "LastModified", "last_modified", "updated", "created"):
        value = entry.get(key)
        if isinstance(value, dt.datetime):
            return value if value.tzinfo else value.replace(tzinfo=dt.UTC)
        if isinstance(value, int | float):
            return dt.datetime.fromtimestamp(value, dt.UTC)
        if isinstance(value, str):
            try:
                parsed = dt.datetime.fromisoformat(value)
            except ValueError:
                continue
            return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)
    return None
