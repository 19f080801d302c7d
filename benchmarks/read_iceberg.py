"""Read an Iceberg table: this package's reader vs pyiceberg ``scan().to_arrow()`` vs polars ``scan_iceberg``.

Generates (once, cached under benchmarks/.data/) a table of ~30M rows in 20 zstd Parquet files:
an int, a float, a 15-25 character string and a 2,000-value string. Each contender runs in its own
subprocess, so that its peak RSS is its own. Cases: full scan, 2-column projection, a 10 %-selective
filter, a streaming full scan (peak RSS), and the full scan over a local S3-protocol server.

polars plans its scans with its own Iceberg planner (the polars-iceberg package, in the dev extra),
as polars recommends; without it, polars warns that its planning through pyiceberg is slower.

Each round runs every contender once per case, interleaved in a rotating order, each in a fresh
process that reads ``--inner`` times: its first read (what a mapped task pays) and its best are kept.
Ratios are taken within a round, then their median.

Usage: python benchmarks/read_iceberg.py [--quick] [--repeat N] [--inner N] [--no-s3] [--profile]
The last line is ``bench: full_vs_pyiceberg=R full_vs_polars=R filter_vs_pyiceberg=R rss_vs_pyiceberg=R
s3_vs_pyiceberg=R projection_vs_polars=R filter_vs_polars=R first_full_vs_polars=R ...`` (ours / theirs,
best of ``--inner`` unless named ``first_``; lower is better); ``views_...`` are ours read with
``string_view=True`` (strings as views, as polars holds them, instead of pyiceberg's large strings);
``..._vs_polars_large`` compare with polars' scan exported with large strings, the types ours returns.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _timing import Samples, header, interleaved

ROOT = Path(__file__).resolve().parent
DATA = ROOT / ".data"
FULL = {"rows": 30_000_000, "files": 20}
QUICK = {"rows": 2_000_000, "files": 20}
IDENTIFIER = "bench.reads"
FILTER = "value < 0.1"
PROJECTION = ["id", "category"]


def _catalog_props(directory: Path) -> dict[str, str]:
    return {
        "name": "bench",
        "type": "sql",
        "uri": f"sqlite:///{directory / 'catalog.db'}",
        "warehouse": (directory / "warehouse").as_uri(),
    }


def _generate_file(rows: int, seed: int) -> Any:
    import numpy as np
    import pyarrow as pa

    rng = np.random.default_rng(seed)
    lengths = rng.integers(15, 26, rows)
    offsets = np.zeros(rows + 1, dtype=np.int32)
    np.cumsum(lengths, out=offsets[1:])
    chars = rng.integers(97, 123, int(offsets[-1]), dtype=np.uint8)
    name = pa.StringArray.from_buffers(rows, pa.py_buffer(offsets), pa.py_buffer(chars))
    vocabulary = pa.array([f"category-{i:04d}" for i in range(2000)])
    category = vocabulary.take(pa.array(rng.integers(0, 2000, rows)))
    return pa.table(
        {
            "id": pa.array(np.arange(seed * rows, (seed + 1) * rows, dtype=np.int64)),
            "value": pa.array(rng.random(rows)),
            "name": name,
            "category": category,
        }
    )


def ensure_table(size: dict[str, int]) -> Path:
    """Create the table once per size; later runs reuse it."""
    directory = DATA / f"read_iceberg-{size['rows']}x{size['files']}"
    done = directory / "READY"
    if done.exists():
        return directory
    import shutil

    import pyarrow.parquet as pq
    from pyiceberg.catalog import load_catalog
    from pyiceberg.schema import Schema
    from pyiceberg.types import DoubleType, LongType, NestedField, StringType

    shutil.rmtree(directory, ignore_errors=True)
    (directory / "warehouse").mkdir(parents=True)
    props = _catalog_props(directory)
    catalog = load_catalog(props.pop("name"), **props)
    catalog.create_namespace("bench")
    schema = Schema(
        NestedField(1, "id", LongType(), required=False),
        NestedField(2, "value", DoubleType(), required=False),
        NestedField(3, "name", StringType(), required=False),
        NestedField(4, "category", StringType(), required=False),
    )
    table = catalog.create_table(IDENTIFIER, schema=schema)
    per_file = size["rows"] // size["files"]
    paths = []
    for index in range(size["files"]):
        path = f"{table.location()}/data/part-{index:03d}.parquet"
        local = path.removeprefix("file://")
        Path(local).parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(_generate_file(per_file, index), local, compression="zstd", row_group_size=1 << 20)
        paths.append(path)
        print(f"generated {index + 1}/{size['files']} files", file=sys.stderr)
    table.add_files(paths)
    done.write_text("ok")
    return directory


# -- workers: one contender, one case, in its own process ------------------------------------------


def _load(props: dict[str, str]) -> Any:
    from pyiceberg.catalog import load_catalog

    props = dict(props)
    return load_catalog(props.pop("name"), **props).load_table(IDENTIFIER)


def _run_case(contender: str, case: str, props: dict[str, str], table: Any) -> int:
    rows = 0
    if contender in OURS:
        from airflow_provider_mlp.fastdata import Table

        # The catalog the others' pre-loaded table came from: every contender gets its catalog before
        # the clock starts (ours still loads the table's metadata inside the timed read; theirs do not).
        decoder = "pyarrow" if contender == "ours_pyarrow" else "auto"
        ours = Table(IDENTIFIER, catalog=table.catalog, decoder=decoder)
        if case == "stream":
            for batch in ours.read_batches(batch_rows=65_536):
                rows += batch.num_rows
            return rows
        columns = PROJECTION if case == "projection" else None
        row_filter = FILTER if case == "filter" else None
        return ours.read(columns=columns, row_filter=row_filter, string_view=contender == "ours_views").num_rows
    if contender == "pyiceberg":
        scan_args: dict[str, Any] = {}
        if case == "projection":
            scan_args["selected_fields"] = tuple(PROJECTION)
        if case == "filter":
            scan_args["row_filter"] = FILTER
        if case == "stream":
            for batch in table.scan(**scan_args).to_arrow_batch_reader():
                rows += batch.num_rows
            return rows
        return int(table.scan(**scan_args).to_arrow().num_rows)
    if contender in POLARS:
        import polars as pl

        frame = pl.scan_iceberg(table)
        if case == "projection":
            frame = frame.select(PROJECTION)
        if case == "filter":
            frame = frame.filter(pl.col("value") < 0.1)
        if contender == "polars_large":
            # polars giving what pyiceberg's schema (and ours by default) has: large strings.
            return int(frame.collect().to_arrow(compat_level=pl.CompatLevel.oldest()).num_rows)
        return int(frame.collect().height)
    raise ValueError(contender)


def worker(contender: str, cases: list[str], props: dict[str, str], inner: int = 1) -> list[dict[str, Any]]:
    """Run each of ``cases`` ``inner`` times in this process, in order: the first run of a case (a
    fresh process's, as a mapped task's) and the best; peak RSS is the process's so far."""
    import resource

    table = _load(props)
    # One-time module imports are not part of a read: pay them for every contender before timing
    # (where bytecode is not cached, as under PYTHONDONTWRITEBYTECODE, an import also compiles).
    import importlib.util

    import pyiceberg.io.pyarrow

    if importlib.util.find_spec("pyiceberg.avro.decoder_fast") is not None:
        import pyiceberg.avro.decoder_fast  # noqa: F401  (every contender's planning reads manifests)
    if contender in OURS:
        import fsspec.implementations.local  # noqa: F401
        import pyarrow.acero  # noqa: F401

        import airflow_provider_mlp.fastdata.native_decode
        import airflow_provider_mlp.fastdata.planning
        import airflow_provider_mlp.fastdata.reader
        import airflow_provider_mlp.fastdata.table
        import airflow_provider_mlp.kernels  # noqa: F401
        from airflow_provider_mlp.fastdata.polars_decode import polars_installed

        if contender != "ours_pyarrow" and polars_installed():
            import polars  # the decoder ours uses when it is installed
    elif contender in POLARS:
        import polars  # noqa: F401
    results = []
    for case in cases:
        walls = []
        first_cost: dict[str, float] = {}
        before = resource.getrusage(resource.RUSAGE_SELF)
        for index in range(inner):
            started = time.perf_counter()
            rows = _run_case(contender, case, props, table)
            walls.append(time.perf_counter() - started)
            if index == 0:
                # The first read's CPU and page faults: where a fresh process's read goes beyond decoding.
                after = resource.getrusage(resource.RUSAGE_SELF)
                first_cost = {
                    "user_s": after.ru_utime - before.ru_utime,
                    "sys_s": after.ru_stime - before.ru_stime,
                    "minor_faults": after.ru_minflt - before.ru_minflt,
                }
        peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        results.append(
            {
                "contender": contender,
                "case": case,
                "wall_s": walls[0],
                "best_s": min(walls),
                "rows": rows,
                "peak_rss_mib": peak_mib,
                **first_cost,
            }
        )
    return results


def run_worker(
    contender: str, cases: list[str], props: dict[str, str], env: dict[str, str] | None = None, inner: int = 1
) -> list[dict[str, Any]]:
    command = [sys.executable, __file__, "--worker", contender, ",".join(cases), json.dumps(props), str(inner)]
    proc = subprocess.run(command, capture_output=True, text=True, env=env or dict(os.environ), check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"{contender}/{cases} failed:\n{proc.stderr[-4000:]}")
    return list(json.loads(proc.stdout.strip().splitlines()[-1]))


def best(
    contender: str, cases: list[str], props: dict[str, str], repeat: int, env: dict[str, str] | None = None
) -> dict[str, dict[str, Any]]:
    """Best wall time of ``repeat`` runs per case (cases run together in one process per run)."""
    runs = [run_worker(contender, cases, props, env) for _ in range(repeat)]
    out = {}
    for index, case in enumerate(cases):
        results = [run[index] for run in runs]
        result = dict(min(results, key=lambda r: r["wall_s"]))
        result["peak_rss_mib"] = max(r["peak_rss_mib"] for r in results)
        shared = " (process shared with earlier cases)" if index else ""
        print(
            f"{case:10s} {contender:9s} wall={result['wall_s']:7.3f}s rss={result['peak_rss_mib']:8.1f}MiB "
            f"rows={result['rows']}{shared}",
            flush=True,
        )
        out[case] = result
    return out


# ours_views: ours with string_view=True, strings as views as polars holds them (pyiceberg's schema
# has large strings, which polars never builds: the one thing ours does that polars does not).
# polars_large: polars' scan exported with large strings, the types ours returns by default.
CONTENDERS = ("ours", "ours_views", "pyiceberg", "polars", "polars_large")
OURS = ("ours", "ours_views", "ours_pyarrow")
POLARS = ("polars", "polars_large")


def compare(
    case: str, props: dict[str, str], rounds: int, inner: int, contenders: tuple[str, ...] = CONTENDERS
) -> dict[str, dict[str, Samples]]:
    """``rounds`` rounds, the contenders interleaved in a rotating order, each in a fresh process that
    reads ``inner`` times: per contender the samples of its first read and of its best."""
    collected: dict[str, list[dict[str, Any]]] = {name: [] for name in contenders}

    def sampler(name: str) -> Any:
        def sample() -> float:
            (result,) = run_worker(name, [case], props, inner=inner)
            collected[name].append(result)
            return float(result["wall_s"])

        return sample

    interleaved({name: sampler(name) for name in contenders}, rounds)
    out: dict[str, dict[str, Samples]] = {}
    for name, results in collected.items():
        out[name] = {
            "first": Samples(tuple(r["wall_s"] for r in results)),
            "best": Samples(tuple(r["best_s"] for r in results)),
            "rss": Samples(tuple(r["peak_rss_mib"] for r in results)),
        }
        rows = {r["rows"] for r in results}
        user, system, faults = (
            Samples(tuple(float(r[key]) for r in results)) for key in ("user_s", "sys_s", "minor_faults")
        )
        print(
            f"{case:10s} {name:12s} first {out[name]['first'].format()} s  best of {inner} "
            f"{out[name]['best'].format()} s  rows={','.join(map(str, sorted(rows)))}\n"
            f"{'':10s} {'':12s} first read's CPU: user {user.format(2)} s, system {system.format(2)} s, "
            f"{faults.median / 1000:.0f}k minor page faults",
            flush=True,
        )
    return out


def s3_props(server: Any, directory: Path) -> dict[str, str]:
    """Copy the cached table's data files to the S3 server and register them in a fresh catalog there."""
    import s3fs
    from pyiceberg.catalog import load_catalog

    bucket = "bench"
    server.create_bucket(bucket)
    local = _load(_catalog_props(directory))
    s3_dir = directory / "s3-catalog"
    import shutil

    shutil.rmtree(s3_dir, ignore_errors=True)
    s3_dir.mkdir()
    props = {
        "name": "bench_s3",
        "type": "sql",
        "uri": f"sqlite:///{s3_dir / 'catalog.db'}",
        "warehouse": f"s3://{bucket}/warehouse",
        **server.pyiceberg_properties(),
    }
    catalog = load_catalog("bench_s3", **{k: v for k, v in props.items() if k != "name"})
    catalog.create_namespace("bench")
    table = catalog.create_table(IDENTIFIER, schema=local.schema())
    fs = s3fs.S3FileSystem(**server.storage_options())
    paths = []
    for task in local.scan().plan_files():
        source = task.file.file_path.removeprefix("file://")
        target = f"{bucket}/data/{Path(source).name}"
        fs.put_file(source, target)
        paths.append(f"s3://{target}")
    table.add_files(sorted(paths))
    return props


def profile(props: dict[str, str]) -> None:
    """Where the time goes: one file decoded by each reader, and each column decoded by Arrow alone."""
    import pyarrow.parquet as pq
    from pyiceberg.expressions import AlwaysTrue
    from pyiceberg.io.pyarrow import ArrowScan

    import airflow_provider_mlp.fastdata.reader as reader
    from airflow_provider_mlp.fastdata import Table

    table = _load(props)
    ours = Table(IDENTIFIER, catalog=props)
    plan, parts = ours._read_plan(None, None, None, None, None, ())
    task = parts[0][0]
    opened = reader.open_parts(plan, parts[:1])[0][0]
    scan = ArrowScan(table.metadata, table.io, table.schema(), AlwaysTrue())
    local = task.file.file_path.removeprefix("file://")

    def best_of(fn: Any, times: int = 5) -> float:
        runs = []
        for _ in range(times):
            started = time.perf_counter()
            fn()
            runs.append(time.perf_counter() - started)
        return min(runs)

    rows = task.file.record_count
    print(f"profile: one file, {rows:,} rows, {task.file.file_size_in_bytes / 2**20:.1f} MiB, best of 5:")
    groups = range(opened.parquet.num_row_groups)
    for name, fn in (
        ("ours (row groups, decode+project)", lambda: [reader.read_row_group(opened, rg) for rg in groups]),
        (
            "pyiceberg (_task_to_record_batches)",
            lambda: list(scan._record_batches_from_scan_tasks_and_deletes([task], {})),
        ),
        ("arrow alone (pq.read_table)", lambda: pq.read_table(local)),
    ):
        print(f"profile:   {name:38s} {best_of(fn):.3f}s")
    _profile_columns(opened, local, best_of)
    _profile_string_representations(local, best_of)


def _profile_columns(opened: Any, local: str, best_of: Any) -> None:
    """Each column of one file decoded alone: by Arrow and by this package's native kernel (one
    thread each), and by polars (its threads) into its own representation (views for strings)."""
    import polars as pl
    import pyarrow as pa
    import pyarrow.parquet as pq

    from airflow_provider_mlp.fastdata.native_decode import decode_chunk

    print("profile: each column of that file: Arrow (one thread), native kernel (one thread), polars (its threads):")
    source = pa.memory_map(local).read_buffer()
    groups = range(opened.parquet.num_row_groups)
    for name in opened.columns:
        arrow = best_of(lambda c=name: pq.read_table(local, columns=[c], use_threads=False))
        frame = pl.scan_parquet(local).select(name)
        polars = best_of(lambda f=frame: f.collect())
        line = f"profile:   {name:10s} Arrow {arrow:.3f}s"
        column = opened.native_columns.get(name)
        if column is not None:

            def kernel(column: Any = column) -> None:
                for rg in groups:
                    decode_chunk(source, opened.parquet.row_group(rg).column(column.leaf), column)

            line += f"; kernel to {column.arrow_type} {best_of(kernel):.3f}s"
        print(f"{line}; polars {polars:.3f}s")


def _profile_string_representations(local: str, best_of: Any) -> None:
    """What pyiceberg's large strings cost over polars' views: each string column of one file decoded
    by polars into views (its own representation), then converted to large strings (what the default
    read returns), against Arrow's decode straight into large strings; and the bytes each holds."""
    import polars as pl
    import pyarrow as pa
    import pyarrow.parquet as pq

    print("profile: string columns of that file, polars views vs large strings (polars' threads):")
    schema = pq.read_schema(local)
    for column in [f.name for f in schema if pa.types.is_string(f.type) or pa.types.is_large_string(f.type)]:
        frame = pl.scan_parquet(local).select(column)
        views = frame.collect().to_arrow(compat_level=pl.CompatLevel.newest())
        large = frame.collect().to_arrow(compat_level=pl.CompatLevel.oldest())
        decode = best_of(lambda f=frame: f.collect())
        to_views = best_of(lambda f=frame: f.collect().to_arrow(compat_level=pl.CompatLevel.newest()))
        to_large = best_of(lambda f=frame: f.collect().to_arrow(compat_level=pl.CompatLevel.oldest()))
        arrow = best_of(lambda c=column: pq.read_table(local, columns=[c], use_threads=False))
        print(
            f"profile:   {column:10s} polars decode {decode:.3f}s; decode and export as views {to_views:.3f}s "
            f"({views.nbytes / 2**20:.0f} MiB), as large strings {to_large:.3f}s ({large.nbytes / 2**20:.0f} MiB); "
            f"Arrow to large strings, one thread {arrow:.3f}s"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--quick", action="store_true", help="a 2M-row table: the whole run in under a minute")
    parser.add_argument("--repeat", type=int, default=1, help="rounds per case (fresh processes, interleaved)")
    parser.add_argument("--inner", type=int, default=3, help="reads per process (first and best are reported)")
    parser.add_argument("--no-s3", action="store_true", help="skip the S3-protocol case")
    parser.add_argument("--profile", action="store_true", help="also show where the decode time goes")
    parser.add_argument(
        "--cases", default="full,projection,filter", help="comma-separated subset of full,projection,filter"
    )
    parser.add_argument(
        "--pyarrow-decoder",
        action="store_true",
        help="also run ours with Arrow's Parquet decoder (ours_pyarrow) when polars' is the default",
    )
    parser.add_argument("--worker", nargs=4, metavar=("CONTENDER", "CASE", "PROPS", "INNER"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        contender, cases, props, inner = args.worker
        print(json.dumps(worker(contender, cases.split(","), json.loads(props), int(inner))))
        return

    size = QUICK if args.quick else FULL
    directory = ensure_table(size)
    props = _catalog_props(directory)
    print(f"table: {size['rows']:,} rows in {size['files']} files at {directory.name}; filter {FILTER!r}", flush=True)
    import importlib.util

    planner = "polars-iceberg" if importlib.util.find_spec("polars_iceberg") else "pyiceberg (polars-iceberg missing)"
    print(f"polars plans its scans with {planner}", flush=True)
    results: dict[tuple[str, str], dict] = {}
    rounds = max(1, args.repeat)
    print(header(rounds) + f"; each sample a fresh process reading {args.inner} times", flush=True)
    timed: dict[str, dict[str, dict[str, Samples]]] = {}
    cases = [case for case in ("full", "projection", "filter") if case in args.cases.split(",")]
    contenders = CONTENDERS + (("ours_pyarrow",) if args.pyarrow_decoder else ())
    for case in cases:
        timed[case] = compare(case, props, rounds, args.inner, contenders)
    if "full" in timed:
        for contender in ("ours", "pyiceberg"):
            results[("stream", contender)] = best(contender, ["stream"], props, args.repeat)["stream"]
    s3_ratio = float("nan")
    s3_samples: Samples | None = None
    if not args.no_s3:
        sys.path.insert(0, str(ROOT.parent))
        from tests.support.s3_server import CREDENTIALS, running_s3_server

        env = {**os.environ, **CREDENTIALS}
        os.environ.update(CREDENTIALS)
        with running_s3_server() as server:
            remote = s3_props(server, directory)

            def s3_sampler(name: str) -> Any:
                def sample() -> float:
                    (result,) = run_worker(name, ["full"], remote, env)
                    return float(result["wall_s"])

                return sample

            # One untimed scan first: the server's first reads of its freshly uploaded objects take
            # longer than later ones (measured: 2.8-4.2 s whoever ran it, against 1.3-2.8 s), and
            # would land on whichever contender the first round starts with.
            for name in ("ours", "pyiceberg"):
                s3_sampler(name)()
            # Interleaved, rotating rounds: a slow phase of the machine favours neither contender;
            # the ratio is taken within each round.
            s3 = interleaved({name: s3_sampler(name) for name in ("ours", "pyiceberg")}, max(2, rounds))
            for name, samples in s3.items():
                print(f"s3 full    {name:12s} {samples.format()} s", flush=True)
            s3_samples = s3["ours"] / s3["pyiceberg"]
            s3_ratio = s3_samples.median

    def ratio(case: str, other: str, which: str = "best", mine: str = "ours") -> Samples:
        return timed[case][mine][which] / timed[case][other][which]

    if args.profile:
        profile(props)
    print("ratios (ours / theirs within each round, median (min-max); lower is better):")
    for case in timed:
        for which in ("first", "best"):
            decoders = ""
            if args.pyarrow_decoder:
                decoders = f"  vs ours_pyarrow {ratio(case, 'ours_pyarrow', which).format(2)}"
            print(
                f"  {case:10s} {which:5s} vs pyiceberg {ratio(case, 'pyiceberg', which).format(2)}"
                f"  vs polars {ratio(case, 'polars', which).format(2)}{decoders}"
                f"  (string_view=True vs polars {ratio(case, 'polars', which, 'ours_views').format(2)};"
                f" both with large strings: vs polars_large {ratio(case, 'polars_large', which).format(2)})"
            )
    rss = float("nan")
    if "full" in timed:
        # The streaming read's peak against the smallest peak of pyiceberg's in-memory full scan.
        rss = results[("stream", "ours")]["peak_rss_mib"] / timed["full"]["pyiceberg"]["rss"].low
    print(f"  streaming peak RSS vs pyiceberg to_arrow {rss:.2f}")
    print(f"  s3 full scan vs pyiceberg {s3_samples.format(2) if s3_samples is not None else 'nan'}")

    def key(case: str, other: str, which: str = "best", mine: str = "ours") -> str:
        return f"{ratio(case, other, which, mine).median:.2f}" if case in timed else "nan"

    print(
        f"bench: full_vs_pyiceberg={key('full', 'pyiceberg')} full_vs_polars={key('full', 'polars')} "
        f"filter_vs_pyiceberg={key('filter', 'pyiceberg')} rss_vs_pyiceberg={rss:.2f} "
        f"s3_vs_pyiceberg={s3_ratio:.2f} projection_vs_polars={key('projection', 'polars')} "
        f"filter_vs_polars={key('filter', 'polars')} first_full_vs_polars={key('full', 'polars', 'first')} "
        f"first_projection_vs_polars={key('projection', 'polars', 'first')} "
        f"first_filter_vs_polars={key('filter', 'polars', 'first')} "
        f"first_filter_vs_pyiceberg={key('filter', 'pyiceberg', 'first')} "
        f"views_full_vs_polars={key('full', 'polars', mine='ours_views')} "
        f"views_projection_vs_polars={key('projection', 'polars', mine='ours_views')} "
        f"views_filter_vs_polars={key('filter', 'polars', mine='ours_views')} "
        f"first_views_full_vs_polars={key('full', 'polars', 'first', 'ours_views')} "
        f"first_views_projection_vs_polars={key('projection', 'polars', 'first', 'ours_views')} "
        f"full_vs_polars_large={key('full', 'polars_large')} "
        f"projection_vs_polars_large={key('projection', 'polars_large')} "
        f"filter_vs_polars_large={key('filter', 'polars_large')}"
    )


if __name__ == "__main__":
    main()
