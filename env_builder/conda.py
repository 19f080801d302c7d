"""Conda environments: solve and install with py-rattler, pack with conda-pack.

Resolution pins every package to its channel URL and sha256 (the lock); the build re-solves with
exact pins, checks the result against the lock, installs into a prefix whose path depends only
on the env id (so that the files conda-pack records, and hence the archive, are the same on every
build on this host), and lets conda-pack lay the environment out (``format="no-archive"``) with
its ``conda-unpack`` script; our deterministic packer then makes the archive. At rehydration,
``conda-unpack`` rewrites the build prefix to wherever the environment landed.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from env_builder.concurrency import file_lock
from env_builder.errors import BuildError, ResolutionError
from env_builder.lock import Lock
from env_builder.progress import Progress
from env_builder.spec import EnvSpec

_CONDA_EXTENSIONS = (".conda", ".tar.bz2")
_PLACEHOLD = ("_placehold" * 13)[:128]


def conda_available() -> bool:
    """Whether a conda-compatible installer (py-rattler) and conda-pack can be used here."""
    try:
        import conda_pack  # noqa: F401
        import rattler  # noqa: F401
    except ImportError:
        return False
    return True


def _require() -> None:
    """py-rattler and conda-pack are the ``conda`` extra; neither conda, mamba nor micromamba is used."""
    from airflow_provider_mlp.extras import require

    require("rattler", feature="conda environments")
    require("conda_pack", feature="conda environments")


def current_subdir() -> str:
    import rattler

    return str(rattler.Subdir.current())


def _channels(spec: EnvSpec) -> list[str]:
    if not spec.channels:
        raise ResolutionError(f"conda packages {list(spec.conda)} need at least one channel (EnvSpec.channels)")
    return [c if "://" in c or not os.path.isabs(c) else Path(c).as_uri() for c in spec.channels]


def _solve(spec: EnvSpec, specs: list[str], subdir: str) -> list[Any]:
    import rattler

    platforms: list[Any] = [subdir, "noarch"]
    try:
        return asyncio.run(rattler.solve(_channels(spec), specs, platforms=platforms))
    except Exception as exc:  # rattler raises its own exception types (SolverError, FetchRepoDataError, ...)
        message = " ".join(str(exc).split())
        raise ResolutionError(
            f"cannot resolve conda packages {specs} from channels {list(spec.channels)} for {subdir}: {message}"
        ) from None


def _record_line(record: Any) -> str:
    return f"{record.url}#{record.sha256.hex()}"


def resolve_conda(spec: EnvSpec, *, target_platform: str | None = None) -> Lock:
    """Lock a conda spec: each package's URL and sha256, in the solver's (install) order."""
    _require()
    if spec.pip:
        raise ResolutionError(
            f"pip packages {list(spec.pip)} in a conda environment are not supported yet; "
            "use a pip environment or conda packages only"
        )
    subdir = target_platform or spec.platform or current_subdir()
    records = _solve(spec, list(spec.conda), subdir)
    records.sort(key=lambda r: r.name.normalized)
    lines = tuple(_record_line(r) for r in records)
    packages = tuple((r.name.normalized, str(r.version)) for r in records)
    return Lock(
        kind="conda",
        python=spec.python,
        platform=subdir,
        requirements="",
        packages=(),
        conda=lines,
        conda_packages=packages,
    )


def _pins(lock: Lock) -> list[str]:
    pins = []
    for line, (name, version) in zip(lock.conda, lock.conda_packages, strict=True):
        file_name = line.split("#", 1)[0].rsplit("/", 1)[1]
        stem = next((file_name[: -len(ext)] for ext in _CONDA_EXTENSIONS if file_name.endswith(ext)), file_name)
        build = stem[len(name) + len(version) + 2 :]
        pins.append(f"{name} =={version} {build}")
    return pins


def build_conda(spec: EnvSpec, lock: Lock, env_dir: Path, progress: Progress) -> dict[str, str]:
    """Install the locked packages and lay the environment out at ``env_dir`` with conda-pack."""
    _require()
    import conda_pack
    import rattler

    records = _solve(spec, _pins(lock), lock.platform)
    solved = sorted(_record_line(r) for r in records)
    if solved != sorted(lock.conda):
        missing = sorted(set(lock.conda) - set(solved))
        raise BuildError(
            f"the channels {list(spec.channels)} changed since {lock.env_id} was resolved: "
            f"{missing or sorted(set(solved) - set(lock.conda))} no longer match the lock; resolve again"
        )
    from airflow_provider_mlp.config import settings

    home = settings().home
    # The prefix path ends up inside the packed files (conda-unpack rewrites it later), so it must
    # not be random: one path per env id, serialized between concurrent builders on this host.
    # It is also long, as conda-build's own build prefixes are: conda-unpack can only rewrite a
    # prefix inside binary files to one no longer than it was (it pads with NUL bytes).
    root = Path(tempfile.gettempdir()) / "mlp-conda-build"
    prefix = root / lock.env_id / _PLACEHOLD
    with file_lock(root / f"{lock.env_id}.lock"):
        if prefix.exists():
            shutil.rmtree(prefix)
        progress(f"installing {len(records)} conda packages")
        try:
            try:
                asyncio.run(
                    rattler.install(records, prefix, cache_dir=home / "cache" / "conda-pkgs", show_progress=False)
                )
            except Exception as exc:  # rattler raises its own exception types (InstallerError, IoError, ...)
                raise BuildError(
                    f"installing the conda packages of {lock.env_id} failed: {type(exc).__name__}: {exc}"
                ) from exc
            before = {entry.name for entry in os.scandir(prefix)}
            progress("laying the environment out with conda-pack")
            try:
                conda_pack.pack(prefix=str(prefix), output=str(env_dir), format="no-archive", force=True)
            except conda_pack.CondaPackException as exc:
                raise BuildError(f"conda-pack cannot pack {lock.env_id}: {exc}") from None
        finally:
            shutil.rmtree(prefix.parent, ignore_errors=True)
    # conda-pack moves its (empty) temporary archive file into a no-archive output directory.
    for entry in os.scandir(env_dir):
        if entry.name.startswith("tmp") and entry.name not in before and entry.is_file() and not entry.stat().st_size:
            os.unlink(entry.path)
    python = next(iter(sorted(env_dir.glob("bin/python3.*"))), None)
    return {"path": str(prefix), "version": spec.python, "implementation": "conda", "python": str(python or "")}
