"""Precompute publish: this project's pipelined, verified publish against pymemcache's ``set_many``.

Starts its own memcached on free 127.0.0.1 ports (always stopped), builds N rows (20-byte
keys, ~48-byte msgpack values: an int, a float and a 31-character string) and, interleaved, several
samples of:

- ``ours``: ``publish(arrow_table, ...)`` end to end: key escaping, msgpack encoding, meta-command
  pipeline with every failure detected, sample read-back, metadata and the CAS pointer switch;
- ``set_many``: a pymemcache ``Client.set_many`` loop (10,000 keys a call) with replies checked
  (``noreply=False``, failed keys returned), values already serialized (not timed);
- ``set_many_noreply``: the same with ``noreply=True``: failures go unseen.

Each sample of each contender runs against a fresh memcached (started untimed, hash table sized for
N keys), so none pays for another's items. Prints medians with min-max spread, and CPU per key
(client and memcached), which other load on the machine disturbs far less than wall time.
Last line: ``bench: publish_keys_per_s=N vs_set_many=X`` (X = ours / checked set_many).
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.support.memcached import MemcachedProcess

SET_MANY_CHUNK = 10_000


def _rows(n: int) -> tuple[object, list[str], list[bytes]]:
    import msgpack
    import numpy as np
    import pyarrow as pa

    rng = np.random.default_rng(11)
    keys = [f"user:{i:015d}" for i in range(n)]
    views = rng.integers(100_000, 4_000_000_000, n)
    hours = rng.random(n) * 1000
    titles = [f"title-{i % 100_000:06d}-" + "x" * 18 for i in range(n)]
    table = pa.table({"user": keys, "views": views, "hours": hours, "title": titles})
    values = [
        msgpack.packb([int(v), float(h), t]) for v, h, t in zip(views.tolist(), hours.tolist(), titles, strict=True)
    ]
    return table, keys, values


def _cpu_seconds(pid: int) -> tuple[float, float]:
    """(this process's CPU seconds, the memcached process's), to compare work independently of machine load."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return usage.ru_utime + usage.ru_stime, (int(fields[11]) + int(fields[12])) / ticks


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="300k keys, 3 samples: under a minute")
    parser.add_argument("--keys", type=int, default=None, help="rows to publish (default 1M, --quick 300k)")
    parser.add_argument("--samples", type=int, default=None, help="samples per contender (default 5, --quick 3)")
    args = parser.parse_args()
    n = args.keys or (300_000 if args.quick else 1_000_000)
    samples = args.samples or (3 if args.quick else 5)

    from pymemcache.client.base import Client

    from airflow_provider_mlp.precompute import publish

    started = time.perf_counter()
    table, keys, values = _rows(n)
    value_bytes = statistics.mean(len(v) for v in values[:10_000])
    key_bytes = statistics.mean(len(k) for k in keys[:10_000])
    built = time.perf_counter() - started
    print(f"data: {n:,} rows, keys {key_bytes:.0f} B, values {value_bytes:.1f} B msgpack ({built:.1f}s to build)")

    # Every sample of every contender gets a fresh memcached (started and stopped untimed), its hash
    # table sized for n keys up front, so none of them pays for another's items, evictions or growth.
    hashpower = max(16, (n * 2).bit_length())
    memory_mb = max(256, n * 300 // 2**20)
    server_args = ("-t", "4", "-c", "4096", "-o", f"hashpower={hashpower}")

    def ours(server: MemcachedProcess) -> None:
        result = publish(
            table, key="user", values=["views", "hours", "title"], namespace="bench", servers=server.address
        )
        assert result.rows == n and result.switched

    def set_many(noreply: bool) -> Callable[[MemcachedProcess], None]:
        def run(server: MemcachedProcess) -> None:
            client = Client(("127.0.0.1", server.port), connect_timeout=2, timeout=30, no_delay=True)
            try:
                for start in range(0, n, SET_MANY_CHUNK):
                    chunk = dict(
                        zip(keys[start : start + SET_MANY_CHUNK], values[start : start + SET_MANY_CHUNK], strict=True)
                    )
                    failed = client.set_many(chunk, noreply=noreply)
                    if failed:
                        raise RuntimeError(f"set_many: {len(failed)} keys failed")
            finally:
                client.close()

        return run

    contenders: dict[str, Callable[[MemcachedProcess], None]] = {
        "ours": ours,
        "set_many": set_many(False),
        "set_many_noreply": set_many(True),
    }
    names = list(contenders)
    times: dict[str, list[float]] = {name: [] for name in names}
    cpu: dict[str, list[tuple[float, float]]] = {name: [] for name in names}
    with MemcachedProcess(memory_mb=memory_mb, args=server_args) as warm:
        ours(warm)  # untimed: first-use imports and allocations of this process
    for sample in range(samples):
        order = names[sample % len(names) :] + names[: sample % len(names)]  # rotate who goes first
        for name in order:
            with MemcachedProcess(memory_mb=memory_mb, args=server_args) as server:
                assert server.process is not None
                cpu_before = _cpu_seconds(server.process.pid)
                began = time.perf_counter()
                contenders[name](server)
                times[name].append(time.perf_counter() - began)
                cpu_after = _cpu_seconds(server.process.pid)
                cpu[name].append((cpu_after[0] - cpu_before[0], cpu_after[1] - cpu_before[1]))
        print(
            f"sample {sample + 1}/{samples}: " + "  ".join(f"{k} {n / times[k][-1]:,.0f}/s" for k in names), flush=True
        )

    print(f"{'contender':<18}{'median keys/s':>15}{'spread (min-max keys/s)':>30}{'median s':>10}")
    rates = {}
    for name in names:
        per_second = sorted(n / t for t in times[name])
        rates[name] = statistics.median(per_second)
        spread = f"{per_second[0]:,.0f} - {per_second[-1]:,.0f}"
        print(f"{name:<18}{rates[name]:>15,.0f}{spread:>30}{statistics.median(times[name]):>10.3f}")
    print("CPU per key (median; independent of other load on the machine):")
    for name in names:
        client = statistics.median(c for c, _ in cpu[name]) / n * 1e6
        served = statistics.median(m for _, m in cpu[name]) / n * 1e6
        print(f"  {name:<18} client {client:5.2f} us  memcached {served:5.2f} us  total {client + served:5.2f} us")
    checked, unchecked = rates["ours"] / rates["set_many"], rates["ours"] / rates["set_many_noreply"]
    print(f"ours vs set_many (checked): {checked:.2f}x; vs set_many noreply (unchecked): {unchecked:.2f}x")
    print(f"bench: publish_keys_per_s={rates['ours']:.0f} vs_set_many={rates['ours'] / rates['set_many']:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
