"""``mlp-env``: resolve, build, show, list, alias, fetch and gc environments from the command line.

Every command takes ``--json`` (one JSON document on stdout) and ``--store`` (default:
``MLP_ENV_STORE`` or the embedded store). Progress goes to stderr: timestamped lines, and on a
terminal a bar for each byte-heavy step (packing, uploading, downloading, extracting).
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


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--store", help="fsspec URL of the environment store (default: MLP_ENV_STORE)")
    parser.add_argument("--storage-options", type=_json_object, default=None, help="fsspec options as a JSON object")
    parser.add_argument("--json", action="store_true", help="print one JSON document on stdout")
    parser.add_argument("--quiet", action="store_true", help="no progress on stderr")


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
    show.add_argument("env", help="env id or alias")
    _common(show)

    listing = commands.add_parser("list", help="list stored environments and aliases")
    _common(listing)

    alias = commands.add_parser("alias", help="point an alias at an environment")
    alias.add_argument("env", help="env id or existing alias")
    alias.add_argument("name", help="team/project/name:tag (only latest, candidate, stable can move)")
    _common(alias)

    fetch = commands.add_parser("fetch", help="rehydrate an environment into the node cache")
    fetch.add_argument("env", help="env id or alias")
    fetch.add_argument("--cache-dir", help="node cache directory (default: MLP_ENV_CACHE_DIR)")
    fetch.add_argument("--base-python", help="interpreter to relink the environment to")
    fetch.add_argument("--verify", action="store_true", help="check a cache hit against the store's manifest")
    _common(fetch)

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
        text = f"{ref.id}  {ref.size / 1e6:.1f} MB  {ref.uri}"
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
            f"{manifest.get('base_interpreter', {}).get('version')}\narchive    {archive['size'] / 1e6:.1f} MB "
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
        lines = [
            f"{e['env_id'][:16]}  {e['size'] / 1e6:8.1f} MB  {e['created_at']}  {', '.join(e['aliases'])}" for e in envs
        ]
        return {"environments": envs}, "\n".join(lines) or "(no environments)"
    if args.command == "alias":
        from env_builder.builder import alias

        record = alias(args.env, args.name, args.store, storage_options=args.storage_options)
        return record, f"{record['alias']} -> {record['env_id']}"
    if args.command == "fetch":
        from env_builder.rehydrate import ensure

        env = ensure(
            args.env,
            store=args.store,
            storage_options=args.storage_options,
            cache_dir=args.cache_dir,
            base_python=args.base_python,
            progress=progress,
            verify=args.verify,
        )
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


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    progress = TerminalProgress(PROG, quiet=args.quiet)
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
