"""A tiny local conda channel, made for real: conda-package-handling builds the packages and
py-rattler indexes them (conda channels on the internet are out of reach in tests)."""

from __future__ import annotations

import asyncio
import hashlib
import json
import shutil
from pathlib import Path

# conda's standard build-prefix placeholder: installers replace it in "text" files.
PLACEHOLDER = "/opt/anaconda1anaconda2anaconda3"


def _make_package(
    channel: Path,
    work: Path,
    name: str,
    version: str,
    files: dict[str, str],
    depends: tuple[str, ...] = (),
    prefix_files: tuple[str, ...] = (),
) -> None:
    import conda_package_handling.api as cph

    src = work / f"{name}-{version}"
    shutil.rmtree(src, ignore_errors=True)
    for rel, text in files.items():
        path = src / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        if rel.startswith("bin/"):
            path.chmod(0o755)
    info = src / "info"
    info.mkdir(parents=True)
    index = {
        "name": name,
        "version": version,
        "build": "0",
        "build_number": 0,
        "depends": list(depends),
        "subdir": "noarch",
        "noarch": "generic",
        "timestamp": 1700000000000,
        "license": "MIT",
    }
    (info / "index.json").write_text(json.dumps(index))
    (info / "files").write_text("".join(f"{rel}\n" for rel in sorted(files)))
    paths = []
    for rel in sorted(files):
        data = (src / rel).read_bytes()
        entry: dict[str, object] = {
            "_path": rel,
            "path_type": "hardlink",
            "sha256": hashlib.sha256(data).hexdigest(),
            "size_in_bytes": len(data),
        }
        if rel in prefix_files:
            entry.update(file_mode="text", prefix_placeholder=PLACEHOLDER)
        paths.append(entry)
    (info / "paths.json").write_text(json.dumps({"paths": paths, "paths_version": 1}))
    if prefix_files:
        (info / "has_prefix").write_text("".join(f"{PLACEHOLDER} text {rel}\n" for rel in prefix_files))
    out = channel / "noarch"
    out.mkdir(parents=True, exist_ok=True)
    file_list = sorted(str(p.relative_to(src)) for p in src.rglob("*") if p.is_file())
    cph.create(str(src), file_list, f"{name}-{version}-0.conda", out_folder=str(out))


def build_channel(root: Path) -> Path:
    """mlp-base 1.0 and 2.0, and mlp-greeter 1.0 (needs mlp-base >=1; its script embeds the prefix)."""
    import rattler.index

    channel = root / "channel"
    work = root / "package-sources"
    _make_package(channel, work, "mlp-base", "1.0", {"share/mlp-base/version.txt": "1.0\n"})
    _make_package(channel, work, "mlp-base", "2.0", {"share/mlp-base/version.txt": "2.0\n"})
    greet = f"#!/bin/sh\necho prefix={PLACEHOLDER}\ncat {PLACEHOLDER}/share/mlp-base/version.txt\n"
    _make_package(
        channel,
        work,
        "mlp-greeter",
        "1.0",
        {"bin/mlp-greet": greet},
        depends=("mlp-base >=1",),
        prefix_files=("bin/mlp-greet",),
    )
    (channel / "linux-64").mkdir(exist_ok=True)
    asyncio.run(rattler.index.index_fs(channel))
    return channel
