"""Build side: resolve a spec, build the environment, pack it and put it in the store."""

from __future__ import annotations

import json
import os
import platform
import sys
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from env_builder.errors import BaseInterpreterError, BuildError
from env_builder.pack import pack_tree
from env_builder.progress import Progress, byte_counter, quiet
from env_builder.refs import parse_alias
from env_builder.resolve import Lock, resolve, run_uv
from env_builder.spec import EnvSpec
from env_builder.store import EnvRef, EnvStore, utcnow

BUILDER_NAME = "env_builder"
MANIFEST_FORMAT = 1


_PROBE_TIMEOUT_S = 60


def find_base_python(python: str, override: str | None = None) -> dict[str, str]:
    """The base interpreter for ``python`` (3.X): the override, settings' ``env_base_python``
    (``MLP_ENV_BASE_PYTHON``), else ``uv python find``."""
    from airflow_provider_mlp.config import settings

    candidate = override or settings().env_base_python
    if not candidate:
        try:
            proc = run_uv(["python", "find", "--system", python], cwd=tempfile.gettempdir(), what="finding Python")
        except BuildError as exc:
            raise BaseInterpreterError(
                f"no base interpreter for Python {python} on this builder (set MLP_ENV_BASE_PYTHON): {exc}"
            ) from None
        candidate = proc.stdout.strip()
    probe = (
        "import json, platform, sys; print(json.dumps({'path': sys.executable, 'version': platform.python_version(),"
        " 'implementation': sys.implementation.name, 'prefix': sys.base_prefix}))"
    )
    import subprocess

    try:
        out = subprocess.run(
            [candidate, "-c", probe], capture_output=True, text=True, check=True, timeout=_PROBE_TIMEOUT_S
        )
    except (OSError, subprocess.SubprocessError) as exc:  # SubprocessError: non-zero exit or timeout
        raise BaseInterpreterError(f"base interpreter {candidate!r} does not run: {exc}") from None
    try:
        info: dict[str, str] = json.loads(out.stdout)
    except ValueError:
        info = {}
    if not isinstance(info, dict) or not all(
        isinstance(info.get(key), str) for key in ("path", "version", "implementation", "prefix")
    ):
        raise BaseInterpreterError(
            f"base interpreter {candidate!r} answered the probe with {out.stdout[:200]!r}; "
            "expected a JSON object with path, version, implementation and prefix"
        )
    wanted = python.split(".")
    if info["version"].split(".")[: len(wanted)] != wanted:
        raise BaseInterpreterError(
            f"base interpreter {candidate} is Python {info['version']}, the spec asks for {python}"
        )
    if info["implementation"] != "cpython":
        raise BaseInterpreterError(
            f"base interpreter {candidate} is {info['implementation']}; only CPython is supported"
        )
    return info


def _refuse_editable(env_dir: Path) -> None:
    """An editable or path-based install points outside the environment: it cannot be packed."""
    for site in env_dir.glob("lib/python*/site-packages"):
        for entry in site.iterdir():
            name = entry.name
            if name.startswith("__editable__") or name.endswith(".egg-link"):
                raise BuildError(f"cannot pack {env_dir}: {name} is an editable install; install a wheel instead")
            if name.endswith(".dist-info"):
                direct = entry / "direct_url.json"
                if direct.exists():
                    data = json.loads(direct.read_text())
                    if data.get("dir_info", {}).get("editable"):
                        raise BuildError(f"cannot pack {env_dir}: {name} is an editable install of {data.get('url')}")
            if name.endswith(".pth") and entry.is_file():
                for raw in entry.read_text(errors="replace").splitlines():
                    line = raw.rstrip()  # as site.addpackage reads it
                    if not line or line.startswith(("#", "import ", "import\t")):
                        continue
                    # An absolute path breaks once the environment is relocated, even one inside it today.
                    if line.startswith("/"):
                        raise BuildError(
                            f"cannot pack {env_dir}: {name} adds the absolute path {line} to sys.path; "
                            "a relocatable environment may only add paths relative to site-packages"
                        )
                    added = os.path.normpath(os.path.join(site, line))
                    if not added.startswith(os.path.normpath(env_dir) + os.sep):
                        raise BuildError(
                            f"cannot pack {env_dir}: {name} adds {line} to sys.path, outside the environment"
                        )


def build_venv(lock: Lock, env_dir: Path, base: Mapping[str, str], progress: Progress = quiet) -> list[str]:
    """Create a relocatable venv at ``env_dir`` with exactly the locked packages; returns removed interpreter links."""
    run_uv(
        ["venv", "--relocatable", "--no-project", "--python", base["path"], str(env_dir)],
        what=f"creating the venv for {lock.env_id}",
    )
    requirements = env_dir.parent / "requirements.lock"
    requirements.write_text(lock.requirements)
    progress(f"installing {len(lock.packages)} packages")
    try:
        run_uv(
            [
                "pip",
                "install",
                "--python",
                str(env_dir / "bin" / "python"),
                "--no-deps",
                "--require-hashes",
                "--link-mode",
                "copy",
                "--python-platform",
                lock.platform,
                "-r",
                str(requirements),
            ],
            what=f"installing the lock of {lock.env_id}",
        )
    finally:
        requirements.unlink()
    _refuse_editable(env_dir)
    # The interpreter links point at this builder's base interpreter; rehydration relinks them to
    # the node's own, so they are not packed.
    links = []
    for link in sorted((env_dir / "bin").iterdir()):
        if link.is_symlink() and link.name.startswith("python"):
            links.append(f"bin/{link.name}")
            link.unlink()
    lib64 = env_dir / "lib64"
    if lib64.is_symlink():
        lib64.unlink()
    return links


def _uv_version() -> str:
    return run_uv(["--version"], what="asking uv for its version").stdout.strip()


def build(
    spec: EnvSpec,
    store: str | None = None,
    *,
    storage_options: Mapping[str, Any] | None = None,
    base_python: str | None = None,
    lock: Lock | None = None,
    progress: Progress | None = None,
    workdir: str | Path | None = None,
) -> EnvRef:
    """Resolve, build, pack and store ``spec``; an environment already in the store is returned as is."""
    say = progress or quiet
    env_store = EnvStore.open(store, storage_options)
    if lock is None:
        say(f"resolving {spec.req_id[:12]}")
        lock = resolve(spec)
    env_id = lock.env_id
    if env_store.has_env(env_id):
        say(f"environment {env_id} is already in {env_store.url}")
        return env_store.ref(env_id)
    with tempfile.TemporaryDirectory(prefix="mlp-env-build-", dir=workdir) as tmp:
        env_dir = Path(tmp, "env")
        started = time.monotonic()
        if lock.kind == "conda":
            from env_builder.conda import build_conda

            say(f"building conda environment {env_id}")
            base, links = build_conda(spec, lock, env_dir, progress=say), []
        else:
            base = find_base_python(spec.python, base_python)
            say(f"building venv {env_id} on Python {base['version']}")
            links = build_venv(lock, env_dir, base, progress=say)
        built_s = time.monotonic() - started
        return publish_tree(spec, lock, env_dir, base, links, env_store, build_s=built_s, progress=say)


def publish_tree(
    spec: EnvSpec,
    lock: Lock,
    env_dir: Path,
    base: Mapping[str, str],
    interpreter_links: list[str],
    env_store: EnvStore,
    *,
    build_s: float | None = None,
    progress: Progress | None = None,
) -> EnvRef:
    """Pack a built environment tree, write its manifest and store both (atomically)."""
    say = progress or quiet
    env_id = lock.env_id
    archive_path = env_dir.parent / f"{env_dir.name}.tar.zst"
    say("packing")
    started = time.monotonic()
    packed = pack_tree(env_dir, archive_path, progress=byte_counter(progress, "packing", None))
    manifest = {
        "format": MANIFEST_FORMAT,
        "env_id": env_id,
        "req_id": spec.req_id,
        "kind": lock.kind,
        "spec": {**spec.to_dict(), "base_ref": spec.base_ref},
        "lock": lock.to_dict(),
        "archive": {
            "path": EnvStore.archive_key(env_id, packed.sha256),
            "format": "tar+zstd",
            "sha256": packed.sha256,
            "size": packed.size,
            "unpacked_size": packed.unpacked_size,
            "files": packed.files,
        },
        "base_interpreter": {k: base[k] for k in ("path", "version", "implementation") if k in base},
        "interpreter_links": interpreter_links,
        "created_at": utcnow().isoformat(),
        "builder": {
            "name": BUILDER_NAME,
            "uv": _uv_version(),
            "python": platform.python_version(),
            "host_platform": sys.platform,
            "build_s": None if build_s is None else round(build_s, 3),
            "pack_s": round(time.monotonic() - started, 3),
        },
    }
    say(f"storing {packed.size / 1e6:.1f} MB in {env_store.url}")
    try:
        created = env_store.put_env(env_id, str(archive_path), manifest, lock.lock_text(), progress=progress)
    finally:
        archive_path.unlink(missing_ok=True)
    # Another builder's manifest won: its archive is the one to refer to.
    return env_store.ref(env_id, manifest if created else None)


def alias(
    env: EnvRef | str,
    name: str,
    store: str | None = None,
    *,
    storage_options: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Point alias ``name`` (``team/project/name:tag``) at ``env`` (an EnvRef, env id or another alias)."""
    env_store = EnvStore.open(store, storage_options)
    env_id = env.id if isinstance(env, EnvRef) else env_store.resolve(env)
    return env_store.set_alias(parse_alias(name), env_id)
