"""Pair similarity and Iceberg bucketing: this project's native kernels against rapidfuzz, pyiceberg, polars.

Data: N pairs of 15-25 character strings, the right side ~2 random edits (substitution, insertion,
deletion) away from the left, as pyarrow string columns; 10M longs and 10M strings for bucket[16]
(--quick: 200k pairs, 1M values). Generated once under benchmarks/.data/.

Timed, in one run:
- Jaro-Winkler and normalized Levenshtein pairs/s with this project's kernels at threads=1 and 2;
- rapidfuzz ``process.cpdist`` (workers=2) from the same Arrow columns, conversion to Python lists
  included, and from ready Python lists;
- bucket[16] with this project's kernel (threads=2), pyiceberg's transform (pyiceberg-core's
  Arrow transform when installed, else pyiceberg's per-value transform on a sample) and polars'
  ``Series.hash``.

Every contender is timed several times, the contenders of a section interleaved (see ``_timing``);
medians are printed with min-max, and a speed ratio is taken within each round.

The last line is ``bench: jw_pairs_per_s=N jw_vs_rapidfuzz_arrow=X jw_vs_rapidfuzz_lists=X
lev_vs_rapidfuzz_arrow=X bucket_vs_pyiceberg=X`` where N is the median of our Jaro-Winkler pairs/s
(2 threads) and X the median of our speed (2 threads) over theirs.
"""

from __future__ import annotations

import argparse
import functools
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

# benchmarks/ is on sys.path when a benchmark runs as a script.
from _timing import Samples, header, interleaved, timer

DATA_DIR = Path(__file__).resolve().parent / ".data"
ALPHABET = "abcdefghijklmnopqrstuvwxyz     "
ROUNDS = 11
WARMUP = 1  # first calls load the native library and start its thread pool


def _edit(text: str, rng: random.Random, edits: int) -> str:
    chars = list(text)
    for _ in range(edits):
        op = rng.randrange(3)
        position = rng.randrange(len(chars) + (op == 1))
        if op == 0 and chars:
            chars[min(position, len(chars) - 1)] = rng.choice(ALPHABET)
        elif op == 1:
            chars.insert(position, rng.choice(ALPHABET))
        elif len(chars) > 1:
            del chars[min(position, len(chars) - 1)]
    return "".join(chars)


def pairs_table(n_pairs: int) -> Any:
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = DATA_DIR / f"similarity_pairs_{n_pairs}.parquet"
    if path.exists():
        return pq.read_table(path)
    rng = random.Random(20240611)
    lefts = ["".join(rng.choices(ALPHABET, k=rng.randint(15, 25))) for _ in range(n_pairs)]
    rights = [_edit(text, rng, 2) for text in lefts]
    table = pa.table({"left": pa.array(lefts, type=pa.string()), "right": pa.array(rights, type=pa.string())})
    DATA_DIR.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(".tmp")
    pq.write_table(table, temporary)
    temporary.replace(path)
    return table


def bucket_columns(n_values: int) -> tuple[Any, Any]:
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    rng = np.random.default_rng(7)
    longs = pa.array(rng.integers(-(2**62), 2**62, size=n_values, dtype=np.int64))
    # Strings of 6-19 characters: "user-" and a number.
    strings = pc.binary_join_element_wise("user-", pc.cast(pc.abs(pc.divide(longs, 1 << 20)), pa.string()), "")
    return longs, strings.cast(pa.string())


def _rate(times: Samples, n: int) -> Samples:
    """Millions of items per second, sample by sample."""
    return times.map(lambda seconds: n / seconds / 1e6)


def run_similarity(table: Any, rounds: int) -> dict[str, float]:
    from rapidfuzz import process
    from rapidfuzz.distance import JaroWinkler, Levenshtein

    from airflow_provider_mlp.kernels import jaro_winkler_similarity, levenshtein_similarity

    left = table.column("left").combine_chunks()
    right = table.column("right").combine_chunks()
    n = len(left)
    lefts, rights = left.to_pylist(), right.to_pylist()
    results: dict[str, float] = {}
    metrics = (
        ("jw", jaro_winkler_similarity, JaroWinkler.similarity),
        ("lev", levenshtein_similarity, Levenshtein.normalized_similarity),
    )
    for name, kernel, scorer in metrics:

        def from_arrow(scorer: Any = scorer) -> Any:
            return process.cpdist(left.to_pylist(), right.to_pylist(), scorer=scorer, workers=2)

        times = interleaved(
            {
                "ours  threads=1": timer(functools.partial(kernel, left, right, threads=1)),
                "ours  threads=2": timer(functools.partial(kernel, left, right, threads=2)),
                "rapidfuzz cpdist workers=2, from Arrow": timer(from_arrow),
                "rapidfuzz cpdist workers=2, from lists": timer(
                    functools.partial(process.cpdist, lefts, rights, scorer=scorer, workers=2)
                ),
            },
            rounds,
            WARMUP,
        )
        for label, samples in times.items():
            print(f"  {name:3} {label:46} {_rate(samples, n).format(2, 'M pairs/s')}")
        ours = times["ours  threads=2"]
        for source in ("Arrow", "lists"):
            # Our speed over theirs: their time over ours, within each round.
            ratio = times[f"rapidfuzz cpdist workers=2, from {source}"] / ours
            results[f"{name}_vs_rapidfuzz_{source.lower()}"] = ratio.median
            print(f"  {name:3} {f'speed ours (threads=2) / rapidfuzz from {source}':46} {ratio.format(2)}")
        results[f"{name}_pairs_per_s"] = _rate(ours, n).median * 1e6
    # Same scores, so that the comparison is between equal work.
    import numpy as np
    import pyarrow as pa

    sample = slice(0, min(n, 20_000))
    ours_scores = np.asarray(pa.array(jaro_winkler_similarity(left[sample], right[sample])).to_numpy())
    theirs = process.cpdist(lefts[sample], rights[sample], scorer=JaroWinkler.similarity)
    assert np.allclose(ours_scores, theirs, atol=1e-9), "Jaro-Winkler scores differ from rapidfuzz"
    return results


def pyiceberg_bucket_sampler(column: Any, source_type: Any, sample_size: int) -> tuple[Callable[[], float], str]:
    """A sampler of pyiceberg's bucket[16] on ``column`` (seconds for the whole column): the Arrow
    transform when pyiceberg-core is there, else the per-value transform timed on a sample."""
    from pyiceberg.transforms import BucketTransform

    transform: Any = BucketTransform(16)
    try:
        arrow_transform = transform.pyarrow_transform(source_type)
        arrow_transform(column.slice(0, 10))
    except Exception:  # pyiceberg-core (an optional extra) is not installed
        per_value = transform.transform(source_type)
        values = column.slice(0, sample_size).to_pylist()
        on_sample = timer(lambda: [per_value(v) for v in values])
        scale = len(column) / len(values)
        return (lambda: on_sample() * scale), f"per-value transform, timed on {len(values):,} values"
    return timer(functools.partial(arrow_transform, column)), "pyiceberg-core Arrow transform"


def run_bucket(n_values: int, rounds: int) -> dict[str, float]:
    import polars as pl
    from pyiceberg.types import LongType, StringType

    from airflow_provider_mlp.kernels import iceberg_bucket

    longs, strings = bucket_columns(n_values)
    samplers: dict[str, Callable[[], float]] = {}
    labels: dict[str, str] = {}
    methods: list[str] = []
    for name, column, source_type in (("longs", longs, LongType()), ("strings", strings, StringType())):
        for threads in (1, 2):
            key = f"{name} ours threads={threads}"
            samplers[key] = timer(functools.partial(iceberg_bucket, column, 16, threads=threads))
            labels[key] = f"bucket[16] {name:7} ours threads={threads}"
        sampler, how = pyiceberg_bucket_sampler(column, source_type, sample_size=min(n_values, 200_000))
        samplers[f"{name} pyiceberg"] = sampler
        labels[f"{name} pyiceberg"] = f"bucket[16] {name:7} pyiceberg"
        methods.append(f"pyiceberg on {name}: {how}")
        samplers[f"{name} polars"] = timer(pl.Series(column).hash)
        labels[f"{name} polars"] = f"hash       {name:7} polars Series.hash"
    # Both columns in one section: the ratio below adds their times up within each round.
    times = interleaved(samplers, rounds, WARMUP)
    print("".join(f"  {method}\n" for method in methods), end="")
    for key, samples in times.items():
        print(f"  {labels[key]:53} {_rate(samples, n_values).format(2, 'M values/s')}")
    ours = times["longs ours threads=2"] + times["strings ours threads=2"]
    ratio = (times["longs pyiceberg"] + times["strings pyiceberg"]) / ours
    print(f"  {'speed ours (threads=2) / pyiceberg, longs and strings':53} {ratio.format(2)}")
    return {"bucket_vs_pyiceberg": ratio.median}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="200k pairs and 1M values: well under a minute")
    parser.add_argument("--runs", type=int, default=ROUNDS, help=f"rounds per section (default {ROUNDS})")
    args = parser.parse_args()
    n_pairs = 200_000 if args.quick else 1_000_000
    n_values = 1_000_000 if args.quick else 10_000_000

    print(f"similarity: {n_pairs:,} pairs of 15-25 character strings, ~2 edits apart ({header(args.runs, WARMUP)})")
    similarity = run_similarity(pairs_table(n_pairs), args.runs)
    print(f"bucket: {n_values:,} longs and {n_values:,} strings ({header(args.runs, WARMUP)})")
    bucket = run_bucket(n_values, args.runs)

    results = {
        "jw_vs_rapidfuzz_arrow": similarity["jw_vs_rapidfuzz_arrow"],
        "jw_vs_rapidfuzz_lists": similarity["jw_vs_rapidfuzz_lists"],
        "lev_vs_rapidfuzz_arrow": similarity["lev_vs_rapidfuzz_arrow"],
        "bucket_vs_pyiceberg": bucket["bucket_vs_pyiceberg"],
    }
    print(
        f"bench: jw_pairs_per_s={similarity['jw_pairs_per_s']:.0f} "
        + " ".join(f"{key}={value:.2f}" for key, value in results.items())
    )


if __name__ == "__main__":
    main()
