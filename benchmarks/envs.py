"""Portable environments: pack, cold rehydrate and warm start against GNU tar + zstd, and uv install.

Builds a numpy + pandas + scikit-learn environment (``--quick``: numpy alone), then from one run
prints pack time and size against ``tar -c | zstd -T0 -3`` of the same tree, cold rehydrate
(fetch from a local store + sha256 check + safe unpack + relink + ready) against
``zstd -d | tar -x``, the warm start (node cache hit, in a fresh process), and ``uv pip install``
of the same lock from a warm uv cache. Needs the ``tar`` and ``zstd`` command-line tools.

Last line: ``bench: pack_vs_tar=R cold_vs_tar=R warm_s=S`` (R = our time / GNU tools' time).
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from env_builder.builder import build_venv, find_base_python, publish_tree
from env_builder.pack import pack_tree
from env_builder.rehydrate import ensure
from env_builder.resolve import resolve, run_uv
from env_builder.spec import EnvSpec
from env_builder.store import EnvStore

DATA = Path(__file__).resolve().parent / ".data" / "envs"
FULL = ["numpy", "pandas", "scikit-learn"]
QUICK = ["numpy"]


def _best(runs: int, step: Callable[[], None], reset: Callable[[], None] | None = None) -> float:
    """Best wall time of ``runs`` runs of ``step`` (``reset`` runs untimed before each)."""
    times = []
    for _ in range(runs):
        if reset is not None:
            reset()
        started = time.perf_counter()
        step()
        times.append(time.perf_counter() - started)
    return min(times)


def _cpu(who: int) -> float:
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime


def _tree_size(root: Path) -> tuple[int, int]:
    files = size = 0
    for dirpath, _dirs, names in os.walk(root):
        for name in names:
            path = os.path.join(dirpath, name)
            if not os.path.islink(path):
                files += 1
                size += os.path.getsize(path)
    return files, size


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="numpy alone; finishes in under a minute")
    parser.add_argument("--runs", type=int, default=None, help="timed runs per step (best is kept)")
    args = parser.parse_args()
    for tool in ("tar", "zstd"):
        if shutil.which(tool) is None:
            raise SystemExit(f"benchmarks/envs.py needs the '{tool}' command (apt-get install -y {tool})")
    runs = args.runs or (3 if args.quick else 5)
    packages = QUICK if args.quick else FULL
    DATA.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="quick-" if args.quick else "full-", dir=DATA))
    try:
        return _run(work, packages, runs)
    finally:
        subprocess.run(["chmod", "-R", "u+w", str(work)], check=False)
        shutil.rmtree(work, ignore_errors=True)


def _run(work: Path, packages: list[str], runs: int) -> int:
    python = f"{sys.version_info.major}.{sys.version_info.minor}"
    spec = EnvSpec(python=python, pip=packages)
    started = time.perf_counter()
    lock = resolve(spec)
    print(
        f"resolve: {len(lock.packages)} packages in {time.perf_counter() - started:.2f}s: "
        + ", ".join(f"{n}=={v}" for n, v in lock.packages)
    )
    base = find_base_python(python)
    tree = work / "tree" / "env"
    tree.parent.mkdir(parents=True)
    started = time.perf_counter()
    links = build_venv(lock, tree, base)  # also warms uv's cache for the install timing below
    print(f"build: venv in {time.perf_counter() - started:.2f}s")
    files, unpacked = _tree_size(tree)
    print(f"tree: {files} files, {unpacked / 1e6:.1f} MB")

    # uv pip install of the same lock from a warm cache, into a fresh venv.
    lock_file = work / "requirements.lock"
    lock_file.write_text(lock.requirements)
    venv = work / "uv-venv"

    def uv_install() -> None:
        run_uv(
            [
                "pip",
                "install",
                "--python",
                str(venv / "bin" / "python"),
                "--no-deps",
                "--require-hashes",
                "--link-mode",
                "copy",
                "-r",
                str(lock_file),
            ],
            what="benchmark install",
        )

    def uv_reset() -> None:
        if venv.exists():
            shutil.rmtree(venv)
        run_uv(["venv", "--python", base["path"], str(venv)], what="benchmark venv")

    uv_s = _best(runs, uv_install, uv_reset)
    print(f"uv pip install (warm cache, link-mode copy): {uv_s:.3f}s")

    # Each timed run writes into a directory of its own, ours and GNU's alternating, and every
    # tree is removed only at the end: removing a tree right before a run slows the next file
    # creations on some filesystems and would favour whichever side ran later.
    counter = iter(range(10**6))

    def fresh_dir(kind: str) -> Path:
        path = work / f"{kind}-{next(counter)}"
        path.mkdir()
        return path

    # CPU seconds (user + system, all threads or child processes) are printed beside wall times:
    # on a shared machine they show the work done even when wall times are noisy.
    ours_pack, gnu_pack, ours_cpu, gnu_cpu = [], [], [], []
    for _ in range(runs):
        out = fresh_dir("pack") / "ours.tar.zst"
        cpu, started = _cpu(resource.RUSAGE_SELF), time.perf_counter()
        pack_tree(tree, out)
        ours_pack.append(time.perf_counter() - started)
        ours_cpu.append(_cpu(resource.RUSAGE_SELF) - cpu)
        ours_size = out.stat().st_size
        gnu = fresh_dir("pack") / "gnu.tar.zst"
        cpu, started = _cpu(resource.RUSAGE_CHILDREN), time.perf_counter()
        subprocess.run(["bash", "-o", "pipefail", "-c", f"tar -C {tree} -cf - . | zstd -T0 -3 -q -o {gnu}"], check=True)
        gnu_pack.append(time.perf_counter() - started)
        gnu_cpu.append(_cpu(resource.RUSAGE_CHILDREN) - cpu)
        gnu_size = gnu.stat().st_size
    pack_s, tar_pack_s = min(ours_pack), min(gnu_pack)
    print(
        f"pack: ours {pack_s:.3f}s (cpu {min(ours_cpu):.2f}s) {ours_size / 1e6:.1f} MB | tar -c | zstd -T0 -3 "
        f"{tar_pack_s:.3f}s (cpu {min(gnu_cpu):.2f}s) {gnu_size / 1e6:.1f} MB | ratio {pack_s / tar_pack_s:.2f}"
    )

    # Store it locally, then cold rehydrate (fetch + verify + unpack + relink + ready) vs zstd -d | tar -x.
    store = EnvStore.open(str(work / "store"))
    ref = publish_tree(spec, lock, tree, base, links, store)
    archive = work / "store" / "envs" / f"{ref.id}.{ref.sha256}.tar.zst"
    ours_cold, gnu_cold, ours_cpu, gnu_cpu = [], [], [], []
    for _ in range(runs):
        cache = fresh_dir("cache")
        cpu, started = _cpu(resource.RUSAGE_SELF), time.perf_counter()
        ensure(ref.id, store=store.url, cache_dir=cache)
        ours_cold.append(time.perf_counter() - started)
        ours_cpu.append(_cpu(resource.RUSAGE_SELF) - cpu)
        untar = fresh_dir("untar")
        cpu, started = _cpu(resource.RUSAGE_CHILDREN), time.perf_counter()
        subprocess.run(["bash", "-o", "pipefail", "-c", f"zstd -d -q -c {archive} | tar -x -C {untar}"], check=True)
        gnu_cold.append(time.perf_counter() - started)
        gnu_cpu.append(_cpu(resource.RUSAGE_CHILDREN) - cpu)
    cold_s, tar_cold_s = min(ours_cold), min(gnu_cold)
    print(
        f"cold rehydrate: ours {cold_s:.3f}s (cpu {min(ours_cpu):.2f}s) | zstd -d | tar -x {tar_cold_s:.3f}s "
        f"(cpu {min(gnu_cpu):.2f}s) | ratio {cold_s / tar_cold_s:.2f}"
    )

    # Warm start: a fresh process that finds the env in the node cache (interpreter start included).
    probe = (
        "from env_builder.rehydrate import ensure; "
        f"ensure({ref.id!r}, store='/nonexistent-store', cache_dir={str(cache)!r})"
    )
    warm = []
    for _ in range(7):
        started = time.perf_counter()
        subprocess.run([sys.executable, "-c", probe], check=True)
        warm.append(time.perf_counter() - started)
    warm_s = statistics.median(warm)
    baseline = []
    for _ in range(7):
        started = time.perf_counter()
        subprocess.run([sys.executable, "-c", "pass"], check=True)
        baseline.append(time.perf_counter() - started)
    print(
        f"warm start: {warm_s:.3f}s per process (median of 7; a bare 'python -c pass' takes "
        f"{statistics.median(baseline):.3f}s)"
    )
    print(f"bench: pack_vs_tar={pack_s / tar_pack_s:.2f} cold_vs_tar={cold_s / tar_cold_s:.2f} warm_s={warm_s:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
