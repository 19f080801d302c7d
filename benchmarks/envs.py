"""Portable environments: pack, cold rehydrate and warm start against GNU tar + zstd, and uv install.

Builds a numpy + pandas + scikit-learn environment (``--quick``: numpy alone), then times, each
contender several times with the contenders interleaved (see ``_timing``): pack time and size
against ``tar -c | zstd -T0 -3`` of the same tree; cold rehydrate (fetch from a local store +
sha256 check + safe unpack + relink + ready) against ``zstd -d | tar -x`` and against ``uv pip
install`` of the same lock from a warm uv cache; the warm start (node cache hit, in a fresh
process) against a bare ``python -c pass``. Prints medians with min-max; ratios are taken within
each round. Needs the ``tar`` and ``zstd`` command-line tools.

Last line: ``bench: pack_vs_tar=R cold_vs_tar=R warm_s=S`` (R = median of our time / GNU tools'
time, S = median seconds of a warm start).
"""

from __future__ import annotations

import argparse
import functools
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

# benchmarks/ is on sys.path when a benchmark runs as a script.
from _timing import Samples, header, interleaved, timer

from env_builder.builder import build_venv, find_base_python, publish_tree
from env_builder.pack import pack_tree
from env_builder.rehydrate import ensure
from env_builder.resolve import resolve, run_uv
from env_builder.spec import EnvSpec
from env_builder.store import EnvStore

DATA = Path(__file__).resolve().parent / ".data" / "envs"
FULL = ["numpy", "pandas", "scikit-learn"]
QUICK = ["numpy"]
WARMUP = 1  # the first round reads the tree and the archive into the page cache


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
    parser.add_argument("--runs", type=int, default=None, help="rounds per step (default 7; warm start: 2 x + 1)")
    args = parser.parse_args()
    for tool in ("tar", "zstd"):
        if shutil.which(tool) is None:
            raise SystemExit(f"benchmarks/envs.py needs the '{tool}' command (apt-get install -y {tool})")
    rounds = args.runs or 7
    packages = QUICK if args.quick else FULL
    DATA.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="quick-" if args.quick else "full-", dir=DATA))
    try:
        return _run(work, packages, rounds)
    finally:
        subprocess.run(["chmod", "-R", "u+w", str(work)], check=False)
        shutil.rmtree(work, ignore_errors=True)


def _measured(
    step: Callable[[], object], who: int, cpu: list[float], reset: Callable[[], object] | None = None
) -> Callable[[], float]:
    """A sampler of ``step``'s wall seconds that also appends its CPU seconds (``who``: RUSAGE_SELF for
    work done in this process, RUSAGE_CHILDREN for a command) to ``cpu``, warm-up rounds included."""

    def sample() -> float:
        if reset is not None:
            reset()
        cpu_before, started = _cpu(who), time.perf_counter()
        step()
        wall = time.perf_counter() - started
        cpu.append(_cpu(who) - cpu_before)
        return wall

    return sample


def _line(label: str, wall: Samples, cpu: list[float], extra: str = "") -> str:
    kept = Samples(tuple(cpu[WARMUP:]))
    return f"  {label:34} {wall.format(3, 's'):24} cpu {kept.format(2, 's'):22}{extra}".rstrip()


def _run(work: Path, packages: list[str], rounds: int) -> int:
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

    # Each sample writes into a directory of its own and every tree is removed only at the end:
    # removing a tree right before a sample slows the next file creations on some filesystems.
    counter = iter(range(10**6))

    def fresh_dir(kind: str) -> Path:
        path = work / f"{kind}-{next(counter)}"
        path.mkdir()
        return path

    # CPU seconds (user + system, all threads or child processes) are printed beside wall times:
    # on a shared machine they show the work done even when wall times are noisy.
    sizes: dict[str, int] = {}

    def pack_ours() -> None:
        out = fresh_dir("pack") / "ours.tar.zst"
        pack_tree(tree, out)
        sizes["ours"] = out.stat().st_size

    def pack_gnu() -> None:
        out = fresh_dir("pack") / "gnu.tar.zst"
        subprocess.run(["bash", "-o", "pipefail", "-c", f"tar -C {tree} -cf - . | zstd -T0 -3 -q -o {out}"], check=True)
        sizes["gnu"] = out.stat().st_size

    cpu: dict[str, list[float]] = {"ours": [], "gnu": []}
    pack = interleaved(
        {
            "ours": _measured(pack_ours, resource.RUSAGE_SELF, cpu["ours"]),
            "gnu": _measured(pack_gnu, resource.RUSAGE_CHILDREN, cpu["gnu"]),
        },
        rounds,
        WARMUP,
    )
    pack_ratio = pack["ours"] / pack["gnu"]
    print(f"pack ({header(rounds, WARMUP)}):")
    print(_line("ours", pack["ours"], cpu["ours"], f"{sizes['ours'] / 1e6:.1f} MB"))
    print(_line("tar -c | zstd -T0 -3", pack["gnu"], cpu["gnu"], f"{sizes['gnu'] / 1e6:.1f} MB"))
    print(f"  {'ratio ours / tar':34} {pack_ratio.format(2)}")

    # Store it locally, then cold rehydrate (fetch + verify + unpack + relink + ready) vs zstd -d | tar -x
    # vs uv pip install of the same lock from a warm cache into a fresh venv (made untimed).
    store = EnvStore.open(str(work / "store"))
    ref = publish_tree(spec, lock, tree, base, links, store)
    archive = work / "store" / "envs" / f"{ref.id}.{ref.sha256}.tar.zst"
    lock_file = work / "requirements.lock"
    lock_file.write_text(lock.requirements)
    caches: list[Path] = []
    venvs: list[Path] = []

    def cold_ours() -> None:
        caches.append(fresh_dir("cache"))
        ensure(ref.id, store=store.url, cache_dir=caches[-1])

    def cold_gnu() -> None:
        untar = fresh_dir("untar")
        subprocess.run(["bash", "-o", "pipefail", "-c", f"zstd -d -q -c {archive} | tar -x -C {untar}"], check=True)

    def uv_venv() -> None:
        venvs.append(fresh_dir("uv") / "venv")
        run_uv(["venv", "--python", base["path"], str(venvs[-1])], what="benchmark venv")

    def uv_install() -> None:
        python = str(venvs[-1] / "bin" / "python")
        install = ["pip", "install", "--python", python, "--no-deps", "--require-hashes", "--link-mode", "copy"]
        run_uv([*install, "-r", str(lock_file)], what="benchmark install")

    cpu = {"ours": [], "gnu": [], "uv": []}
    cold = interleaved(
        {
            "ours": _measured(cold_ours, resource.RUSAGE_SELF, cpu["ours"]),
            "gnu": _measured(cold_gnu, resource.RUSAGE_CHILDREN, cpu["gnu"]),
            "uv": _measured(uv_install, resource.RUSAGE_CHILDREN, cpu["uv"], reset=uv_venv),
        },
        rounds,
        WARMUP,
    )
    cold_ratio = cold["ours"] / cold["gnu"]
    print(f"cold rehydrate ({header(rounds, WARMUP)}):")
    print(_line("ours", cold["ours"], cpu["ours"]))
    print(_line("zstd -d | tar -x", cold["gnu"], cpu["gnu"]))
    print(_line("uv pip install (warm cache, copy)", cold["uv"], cpu["uv"]))
    print(f"  {'ratio ours / tar':34} {cold_ratio.format(2)}")
    print(f"  {'ratio ours / uv pip install':34} {(cold['ours'] / cold['uv']).format(2)}")

    # Warm start: a fresh process that finds the env in the node cache (interpreter start included).
    probe = (
        "from env_builder.rehydrate import ensure; "
        f"ensure({ref.id!r}, store='/nonexistent-store', cache_dir={str(caches[-1])!r})"
    )
    warm_rounds = 2 * rounds + 1
    warm = interleaved(
        {
            "ours": timer(functools.partial(subprocess.run, [sys.executable, "-c", probe], check=True)),
            "bare": timer(functools.partial(subprocess.run, [sys.executable, "-c", "pass"], check=True)),
        },
        warm_rounds,
        WARMUP,
    )
    print(f"warm start, one process each ({header(warm_rounds, WARMUP)}):")
    print(f"  {'ours (node cache hit)':34} {warm['ours'].format(3, 's')}")
    print(f"  {'bare python -c pass':34} {warm['bare'].format(3, 's')}")
    print(
        f"bench: pack_vs_tar={pack_ratio.median:.2f} cold_vs_tar={cold_ratio.median:.2f} "
        f"warm_s={warm['ours'].median:.3f}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
