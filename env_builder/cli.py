"""``mlp-env``: resolve, build, show, list, alias, fetch, run and gc environments from the command line.

Every command takes ``--store`` (default: ``MLP_ENV_STORE`` or the embedded store) and, but
``run``, ``--json`` (one JSON document on stdout). An environment is named by its id, a unique
prefix of it (at least 6 hex digits, as ``list`` prints them) or an alias. Progress goes to
stderr: timestamped lines, and on a terminal a bar for each byte-heavy step (packing, uploading,
downloading, extracting).

``mlp-env run ENV -- CMD [ARGS...]`` exits with the command's exit status (128 + N when signal N
ended it); like ``env`` and ``docker run``, 125 means mlp-env itself failed (say, an unknown
environment), 126 that the command could not be executed and 127 that it was not found.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import sys
from collections.abc import Sequence
from typing import Any

from env_builder.errors import EnvBuilderError, EnvNotFoundError, StoreError
from env_builder.progress import TerminalProgress
from env_builder.refs import parse_alias

PROG = "mlp-env"


def _json_object(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not JSON: {exc}") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"expected a JSON object, got {type(value).__name__}")
    return value


def _positive_days(text: str) -> float:
    try:
        days = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of days") from None
    # Zero is allowed (every unaliased env goes; uploads in flight are kept by the store's minimum
    # orphan age); huge values would overflow a timedelta.
    if not math.isfinite(days) or not 0 <= days <= 36500:
        raise argparse.ArgumentTypeError(f"{text!r}: expected a number of days from 0 to 36500")
    return days


# Exit statuses of ``run`` when no command ran, as ``env`` and ``docker run`` use them.
EXIT_RUN_FAILED = 125
EXIT_CANNOT_EXECUTE = 126
EXIT_NOT_FOUND = 127
ENV_HELP = "env id, unique id prefix (6+ hex digits) or alias"
RUN_USAGE = f"{PROG} run [options] ENV -- CMD [ARGS...]"
# Sizes below this are printed in kB: a 17 kB archive is not "0.0 MB".
_KB_BELOW = 100_000


def _common(parser: argparse.ArgumentParser, *, json_output: bool = True) -> None:
    parser.add_argument("--store", help="fsspec URL of the environment store (default: MLP_ENV_STORE)")
    parser.add_argument("--storage-options", type=_json_object, default=None, help="fsspec options as a JSON object")
    if json_output:
        parser.add_argument("--json", action="store_true", help="print one JSON document on stdout")
    parser.add_argument("--quiet", action="store_true", help="no progress on stderr")


def _fetch_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--cache-dir", help="node cache directory (default: MLP_ENV_CACHE_DIR)")
    parser.add_argument("--base-python", help="interpreter to relink the environment to")
    parser.add_argument("--verify", action="store_true", help="check a cache hit against the store's manifest")


def format_size(size: int) -> str:
    """``17.2 kB`` below 0.1 MB, else ``3.4 MB``."""
    return f"{size / 1e3:.1f} kB" if size < _KB_BELOW else f"{size / 1e6:.1f} MB"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]], right: frozenset[int] = frozenset()) -> str:
    """Columns two spaces apart, each as wide as its widest cell; ``right`` ones aligned right."""
    widths = [max(len(row[i]) for row in (header, *rows)) for i in range(len(header))]
    lines = []
    for row in (header, *rows):
        cells = [c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True))]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)


def _spec_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("packages", nargs="*", help="pip requirements, e.g. 'pandas>=2' six")
    parser.add_argument("--python", help="Python version, 3.X (default: this interpreter's)")
    parser.add_argument("-r", "--requirements", help="a requirements.txt")
    parser.add_argument("--environment-yml", help="a conda environment.yml")
    parser.add_argument("--pyproject", help="a pyproject.toml ([project].dependencies)")
    parser.add_argument("--extends", help="alias or env id whose locked packages the new env starts from")
    parser.add_argument("--conda", action="append", default=[], help="a conda package (repeatable)")
    parser.add_argument("--channel", action="append", default=[], help="a conda channel (repeatable)")
    parser.add_argument("--platform", help="uv --python-platform target (default: this host)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROG, description="Portable execution environments.")
    commands = parser.add_subparsers(dest="command", required=True)

    resolve = commands.add_parser("resolve", help="lock a spec and print its req id, env id and pins")
    _spec_options(resolve)
    _common(resolve)

    build = commands.add_parser("build", help="resolve, build, pack and store an environment")
    _spec_options(build)
    build.add_argument("--alias", help="then point this alias (team/project/name:tag) at it")
    build.add_argument("--base-python", help="base interpreter to build against (default: uv python find)")
    _common(build)

    show = commands.add_parser("show", help="print an environment's manifest")
    show.add_argument("env", help=ENV_HELP)
    _common(show)

    listing = commands.add_parser("list", help="list stored environments and aliases")
    _common(listing)

    alias = commands.add_parser("alias", help="point an alias at an environment")
    alias.add_argument("env", help=ENV_HELP)
    alias.add_argument("name", help="team/project/name:tag (only latest, candidate, stable can move)")
    _common(alias)

    fetch = commands.add_parser("fetch", help="rehydrate an environment into the node cache")
    fetch.add_argument("env", help=ENV_HELP)
    _fetch_options(fetch)
    _common(fetch)

    run = commands.add_parser(
        "run",
        help="rehydrate an environment and run a command inside it",
        usage=RUN_USAGE,
        description="Rehydrate ENV into the node cache and run CMD with its bin/ first on PATH and VIRTUAL_ENV "
        "(CONDA_PREFIX for a conda env) set; exit with CMD's exit status (125: mlp-env failed, 126: CMD cannot "
        "be executed, 127: CMD not found).",
    )
    run.add_argument("env", help=ENV_HELP)
    _fetch_options(run)
    _common(run, json_output=False)

    gc = commands.add_parser("gc", help="delete environments no alias references, older than the retention")
    gc.add_argument("--retention-days", type=_positive_days, default=30.0, help="keep anything younger (default 30)")
    gc.add_argument("--dry-run", action="store_true", help="only list what would be deleted")
    _common(gc)
    return parser


def _spec_from(args: argparse.Namespace) -> Any:
    from env_builder.errors import SpecError
    from env_builder.spec import EnvSpec, running_python

    sources = [s for s in (args.requirements, args.environment_yml, args.pyproject, args.extends) if s]
    if len(sources) > 1:
        raise SpecError("give at most one of --requirements, --environment-yml, --pyproject, --extends")
    python = args.python or running_python()
    if args.extends:
        return EnvSpec.extending(
            args.extends, pip=args.packages, conda=args.conda, store=args.store, storage_options=args.storage_options
        )
    if args.requirements:
        base = EnvSpec.from_requirements(args.requirements, python=python)
    elif args.environment_yml:
        base = EnvSpec.from_environment_yml(args.environment_yml)
    elif args.pyproject:
        base = EnvSpec.from_pyproject(args.pyproject, python=args.python)
    else:
        return EnvSpec(
            python=python, pip=args.packages, conda=args.conda, channels=args.channel, platform=args.platform
        )
    return EnvSpec(
        python=base.python,
        pip=[*base.pip, *args.packages],
        conda=[*base.conda, *args.conda],
        channels=[*base.channels, *args.channel],
        platform=args.platform,
    )


def _store(args: argparse.Namespace) -> Any:
    from env_builder.store import EnvStore

    return EnvStore.open(args.store, args.storage_options)


def _run(args: argparse.Namespace, progress: TerminalProgress) -> tuple[Any, str]:
    """Run one command; returns (JSON-able result, human-readable text)."""
    if args.command == "resolve":
        from env_builder.resolve import resolve

        spec = _spec_from(args)
        progress(f"resolving {len(spec.pip) + len(spec.conda)} requirements")
        lock = resolve(spec)
        result = {"req_id": spec.req_id, "env_id": lock.env_id, "spec": spec.to_dict(), "lock": lock.to_dict()}
        pins = "\n".join(f"  {name}=={version}" for name, version in (*lock.packages, *lock.conda_packages))
        return result, f"req_id {spec.req_id}\nenv_id {lock.env_id}\n{pins}"
    if args.command == "build":
        from env_builder.builder import alias, build

        spec = _spec_from(args)
        if args.alias:
            parse_alias(args.alias)  # a bad name is refused before the build, not after it
        ref = build(
            spec, args.store, storage_options=args.storage_options, base_python=args.base_python, progress=progress
        )
        result = ref.to_dict()
        text = f"{ref.id}  {format_size(ref.size)}  {ref.uri}"
        if args.alias:
            record = alias(ref, args.alias, args.store, storage_options=args.storage_options)
            result["alias"] = record["alias"]
            text += f"\nalias {record['alias']} -> {ref.id}"
        return result, text
    if args.command == "show":
        store = _store(args)
        env_id = store.resolve(args.env)
        manifest = store.manifest(env_id)
        aliases = [str(a) for a, target in store.list_aliases() if target == env_id]
        manifest["aliases"] = aliases
        lock = manifest.get("lock", {})
        pins = ", ".join(f"{n}=={v}" for n, v in [*lock.get("packages", []), *lock.get("conda_packages", [])])
        archive = manifest["archive"]
        text = (
            f"env_id     {env_id}\nkind       {manifest.get('kind')}\npython     "
            f"{manifest.get('base_interpreter', {}).get('version')}\narchive    {format_size(archive['size'])} "
            f"(sha256 {archive['sha256']})\ncreated    {manifest.get('created_at')}\naliases    "
            f"{', '.join(aliases) or '-'}\npackages   {pins}"
        )
        return manifest, text
    if args.command == "list":
        store = _store(args)
        aliases = store.list_aliases()
        envs = []
        for env_id in store.list_envs():
            try:
                manifest = store.manifest(env_id)
            except EnvNotFoundError:
                continue  # deleted since it was listed
            except StoreError as exc:
                progress(f"skipping {env_id}: {exc}")
                continue
            envs.append(
                {
                    "env_id": env_id,
                    "size": manifest["archive"]["size"],
                    "created_at": manifest.get("created_at"),
                    "aliases": [str(a) for a, target in aliases if target == env_id],
                }
            )
        if not envs:
            return {"environments": envs}, "(no environments)"
        rows = [
            [e["env_id"][:16], format_size(e["size"]), str(e["created_at"]), ", ".join(e["aliases"]) or "-"]
            for e in envs
        ]
        return {"environments": envs}, _table(["ENV ID", "SIZE", "CREATED", "ALIASES"], rows, right=frozenset({1}))
    if args.command == "alias":
        from env_builder.builder import alias

        record = alias(args.env, args.name, args.store, storage_options=args.storage_options)
        return record, f"{record['alias']} -> {record['env_id']}"
    if args.command == "fetch":
        env = _fetch(args, progress)
        result = {"env_id": env.env_id, "path": str(env.path), "python": str(env.python), "sha256": env.sha256}
        return result, str(env.path)
    if args.command == "gc":
        store = _store(args)
        removed = store.gc(dt.timedelta(days=args.retention_days), dry_run=args.dry_run)
        verb = "would remove" if args.dry_run else "removed"
        return {"removed": removed, "dry_run": args.dry_run}, f"{verb} {len(removed)} environments" + "".join(
            f"\n  {env_id}" for env_id in removed
        )
    raise AssertionError(args.command)


def _fetch(args: argparse.Namespace, progress: TerminalProgress) -> Any:
    from env_builder.rehydrate import ensure

    return ensure(
        args.env,
        store=args.store,
        storage_options=args.storage_options,
        cache_dir=args.cache_dir,
        base_python=args.base_python,
        progress=progress,
        verify=args.verify,
    )


def _run_command(args: argparse.Namespace, command: list[str], progress: TerminalProgress) -> int:
    """``mlp-env run``: rehydrate, then run ``command`` inside the environment; its exit status."""
    import signal
    import subprocess

    try:
        env = _fetch(args, progress)
    except EnvBuilderError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return EXIT_RUN_FAILED
    try:
        # Looked up on the activated PATH: the environment's bin/ first.
        child = subprocess.Popen(command, env=env.environ())
    except FileNotFoundError:
        print(f"{PROG}: error: {command[0]}: command not found in {env.bin_dir} or on PATH", file=sys.stderr)
        return EXIT_NOT_FOUND
    except OSError as exc:
        print(f"{PROG}: error: cannot execute {command[0]}: {exc.strerror or exc}", file=sys.stderr)
        return EXIT_CANNOT_EXECUTE
    # A terminal's Ctrl-C reaches the child by itself (same process group): mlp-env only waits for
    # it. A SIGTERM or SIGHUP sent to mlp-env alone (a task being killed) is passed on. Installed
    # once the child runs: an ignored SIGINT would be inherited by it.
    handlers = {signal.SIGINT: signal.SIG_IGN, **dict.fromkeys((signal.SIGTERM, signal.SIGHUP), _forward_to(child))}
    previous = {}
    try:
        for signum, handler in handlers.items():
            previous[signum] = signal.signal(signum, handler)
    except ValueError:
        pass  # not the main thread: signals stay as they are
    try:
        returncode = child.wait()
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    return 128 - returncode if returncode < 0 else returncode


def _forward_to(child: Any) -> Any:
    def forward(signum: int, _frame: Any) -> None:
        child.send_signal(signum)

    return forward


def _split_run_command(argv: list[str]) -> tuple[list[str], list[str] | None]:
    """``run ... -- CMD ARGS``: the options before ``--`` are mlp-env's, everything after is the command."""
    if argv[:1] != ["run"] or "--" not in argv:
        return argv, None
    cut = argv.index("--")
    return argv[:cut], argv[cut + 1 :]


def main(argv: Sequence[str] | None = None) -> int:
    own, command = _split_run_command(list(sys.argv[1:] if argv is None else argv))
    parser = build_parser()
    args = parser.parse_args(own)
    progress = TerminalProgress(PROG, quiet=args.quiet)
    if args.command == "run":
        if not command:
            parser.error(f"run needs a command after '--': {RUN_USAGE}")
        return _run_command(args, command, progress)
    try:
        result, text = _run(args, progress)
    except EnvBuilderError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        if args.json:
            print(json.dumps({"error": str(exc), "type": type(exc).__name__}))
        return 1
    print(json.dumps(result, indent=2, sort_keys=True) if args.json else text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
