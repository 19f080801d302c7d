"""Obtain nanoarrow's C sources for the native build, from the pinned sdist, verified by sha256.

nanoarrow's C sources are not committed. The build takes them from the ``nanoarrow`` sdist on
the package index configured for pip (its archive carries the C tree under
``subprojects/arrow-nanoarrow``), checks the archive's sha256 against the pin below, and caches
the archive so that later builds work offline.

Lookup order for the archive:

1. ``MLP_NANOARROW_SDIST``: a path to an already downloaded ``nanoarrow-<version>.tar.gz``;
2. the cache directory (``MLP_NANOARROW_CACHE``, default ``~/.cache/airflow-provider-mlp``);
3. ``pip download --no-deps --no-binary nanoarrow nanoarrow==<version>`` into that cache.

This module runs at build time only, with the standard library.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

NANOARROW_VERSION = "0.9.0"
NANOARROW_SDIST_SHA256 = "1ce15bbed8532839347faa78824c5dbd3769bff60661003e34c6fba5dd881bd3"
# The prefix every nanoarrow symbol gets in our extension, so that it never clashes with
# another copy of nanoarrow loaded in the same process (the nanoarrow Python package, say).
NANOARROW_NAMESPACE = "MlpNanoarrow"

_SDIST_NAME = f"nanoarrow-{NANOARROW_VERSION}.tar.gz"
_C_TREE = f"nanoarrow-{NANOARROW_VERSION}/subprojects/arrow-nanoarrow/src/nanoarrow/"
# The parts of nanoarrow's C library the extension compiles: core types, arrays, schemas, streams.
_C_SOURCES = ("common/array.c", "common/schema.c", "common/utils.c", "common/array_stream.c")
_HEADERS = (
    "nanoarrow.h",
    "common/inline_types.h",
    "common/inline_array.h",
    "common/inline_buffer.h",
    "nanoarrow_config.h.in",
)


class NanoarrowSourceError(RuntimeError):
    """The nanoarrow sdist is missing, cannot be downloaded, or does not match its pinned sha256."""


def cache_dir() -> Path:
    configured = os.environ.get("MLP_NANOARROW_CACHE")
    if configured:
        return Path(configured)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "airflow-provider-mlp"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _verified(path: Path) -> Path:
    actual = _sha256(path)
    if actual != NANOARROW_SDIST_SHA256:
        raise NanoarrowSourceError(
            f"nanoarrow sdist {path} has sha256 {actual}, expected {NANOARROW_SDIST_SHA256} "
            f"(nanoarrow=={NANOARROW_VERSION}); delete it and build again, or point "
            "MLP_NANOARROW_SDIST at the genuine archive"
        )
    return path


def _pip_download(target: Path) -> None:
    target.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target) as tmp:
        # Inside pip's isolated build environment PYTHONPATH and friends point at the build
        # prefix, which has no pip; the interpreter's own environment has it.
        env = {k: v for k, v in os.environ.items() if k not in {"PYTHONPATH", "PYTHONNOUSERSITE", "PYTHONHOME"}}
        commands = [[sys.executable, "-m", "pip"], ["pip"], ["pip3"]]
        errors = []
        for pip in commands:
            if pip[0] != sys.executable and shutil.which(pip[0]) is None:
                continue
            cmd = [
                *pip,
                "download",
                "--no-deps",
                "--no-binary",
                "nanoarrow",
                "--dest",
                tmp,
                f"nanoarrow=={NANOARROW_VERSION}",
            ]
            proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
            downloaded = Path(tmp) / _SDIST_NAME
            if proc.returncode == 0 and downloaded.exists():
                _verified(downloaded)
                os.replace(downloaded, target / _SDIST_NAME)
                return
            errors.append(f"{' '.join(cmd)} -> exit {proc.returncode}: {proc.stderr.strip()[-800:]}")
        raise NanoarrowSourceError(
            f"could not download the nanoarrow=={NANOARROW_VERSION} sdist with pip; "
            f"set MLP_NANOARROW_SDIST to a local {_SDIST_NAME}. Tried:\n" + "\n".join(errors)
        )


def sdist_path() -> Path:
    """Return the verified sdist, downloading it into the cache when needed."""
    explicit = os.environ.get("MLP_NANOARROW_SDIST")
    if explicit:
        path = Path(explicit)
        if not path.is_file():
            raise NanoarrowSourceError(f"MLP_NANOARROW_SDIST={explicit} is not a file")
        return _verified(path)
    cached = cache_dir() / _SDIST_NAME
    if not cached.exists():
        _pip_download(cache_dir())
    return _verified(cached)


def extract_sources(dest: Path) -> tuple[list[str], list[str]]:
    """Unpack nanoarrow's C library into ``dest``; return (C source files, include dirs)."""
    archive = sdist_path()
    root = dest / "nanoarrow-src"
    header_dir = root / "nanoarrow"
    stamp = root / ".sha256"
    if not (stamp.exists() and stamp.read_text() == NANOARROW_SDIST_SHA256):
        if root.exists():
            shutil.rmtree(root)
        header_dir.mkdir(parents=True)
        with tarfile.open(archive, "r:gz") as tar:
            for rel in (*_C_SOURCES, *_HEADERS):
                member = tar.getmember(_C_TREE + rel)
                extracted = tar.extractfile(member)
                if extracted is None:
                    raise NanoarrowSourceError(f"{archive} has no regular file {_C_TREE + rel}")
                out = header_dir / rel
                out.parent.mkdir(parents=True, exist_ok=True)
                out.write_bytes(extracted.read())
        major, minor, patch = NANOARROW_VERSION.split(".")
        template = (header_dir / "nanoarrow_config.h.in").read_text()
        config = (
            template.replace("@NANOARROW_VERSION_MAJOR@", major)
            .replace("@NANOARROW_VERSION_MINOR@", minor)
            .replace("@NANOARROW_VERSION_PATCH@", patch)
            .replace("@NANOARROW_VERSION@", NANOARROW_VERSION)
            .replace("@NANOARROW_NAMESPACE_DEFINE@", f"#define NANOARROW_NAMESPACE {NANOARROW_NAMESPACE}")
        )
        (header_dir / "nanoarrow_config.h").write_text(config)
        stamp.write_text(NANOARROW_SDIST_SHA256)
    sources = [str(header_dir / rel) for rel in _C_SOURCES]
    return sources, [str(root)]


if __name__ == "__main__":
    print(sdist_path())
