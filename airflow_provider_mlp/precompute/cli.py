"""``mlp cache``: a namespace's versions, its current pointer, and rollback.

::

    mlp cache versions content-perf [--servers h:p,h:p] [--json]
    mlp cache current content-perf
    mlp cache rollback content-perf [--to 12]
    mlp cache get content-perf 42 US

Servers default to ``MLP_MEMCACHED_SERVERS`` / ``[mlp] memcached_servers``.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from airflow_provider_mlp.errors import MlpError


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``cache`` command to an ``argparse`` subparsers object."""
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "cache",
        help="precompute cache: versions, current pointer, rollback",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    actions = parser.add_subparsers(dest="cache_command", required=True)

    def common(sub: argparse.ArgumentParser) -> argparse.ArgumentParser:
        sub.add_argument("namespace", help="the cache namespace")
        sub.add_argument("--servers", default=None, help="host:port[,host:port...] (default: the settings')")
        sub.add_argument("--json", action="store_true", help="print JSON")
        return sub

    common(actions.add_parser("versions", help="the retained versions, newest first"))
    common(actions.add_parser("current", help="the current version's metadata"))
    rollback = common(actions.add_parser("rollback", help="switch to the previous version (or --to)"))
    rollback.add_argument("--to", default=None, help="version number (seq) or tag to switch to")
    get = common(actions.add_parser("get", help="look keys up in the current version"))
    get.add_argument("key", nargs="+", help="the key's value(s), one per key column")
    return parser


def run(args: argparse.Namespace) -> int:
    """Run ``mlp cache ...``; returns the exit code (1 with a message on a refused action)."""
    from airflow_provider_mlp.precompute.namespace import CacheNamespace

    try:
        with CacheNamespace(args.namespace, args.servers) as ns:
            if args.cache_command == "versions":
                _show_versions(ns.versions(), args.json, args.namespace)
            elif args.cache_command == "current":
                _show(ns.current(), args.json)
            elif args.cache_command == "rollback":
                doc = ns.rollback(args.to)
                meta = ns.metadata(doc["current"]) or {}
                if args.json:
                    print(json.dumps({"current": doc["current"], "seq": meta.get("seq"), "pointer": doc}, indent=2))
                else:
                    print(f"namespace {args.namespace}: now serving version {meta.get('seq')} ({doc['current']})")
            elif args.cache_command == "get":
                return _get(ns, args)
    except MlpError as exc:
        print(f"mlp cache: {exc}", file=sys.stderr)
        return 1
    return 0


def _show_versions(versions: list[dict[str, Any]], as_json: bool, namespace: str) -> None:
    if as_json:
        print(json.dumps(versions, indent=2, default=str))
        return
    if not versions:
        print(f"namespace {namespace}: no versions")
        return
    print(f"{'':2}{'seq':>6}  {'tag':<14}{'published (UTC)':<22}{'rows':>12}  source")
    for v in versions:
        source = v.get("source") or {}
        origin = source.get("table") or source.get("kind", "?")
        if source.get("snapshot_id") is not None:
            origin += f"@{source['snapshot_id']}"
        if v.get("dag_id"):
            origin += f"  dag {v['dag_id']} run {v.get('run_id')}"
        if not v.get("metadata_found", True):
            origin += "  (metadata missing)"
        mark = "* " if v.get("current") else "  "
        print(f"{mark}{v['seq']:>6}  {v['tag']:<14}{v.get('published_at', ''):<22}{v.get('rows', 0):>12}  {origin}")


def _show(meta: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print(json.dumps(meta, indent=2, default=str))
        return
    source = meta.get("source") or {}
    lines = {
        "namespace": meta.get("namespace"),
        "version": f"{meta.get('seq')} ({meta.get('tag')})",
        "published": meta.get("published_at"),
        "rows": meta.get("row_count"),
        "source": " ".join(f"{k}={v}" for k, v in source.items() if v is not None),
        "dag / run": f"{meta.get('dag_id')} / {meta.get('run_id')}",
        "key": ", ".join(meta.get("key_columns", [])),
        "values": ", ".join(meta.get("value_columns", [])),
        "servers": ", ".join(meta.get("servers", [])),
    }
    for name, value in lines.items():
        print(f"{name:>10}: {value}")


def _get(ns: Any, args: argparse.Namespace) -> int:
    from airflow_provider_mlp.precompute.reader import CacheReader

    reader = CacheReader(args.namespace, options=ns.options)
    try:
        kinds = reader.version["key_kinds"]
        if len(args.key) != len(kinds):
            print(
                f"mlp cache: namespace {args.namespace} has {len(kinds)} key column(s); got {len(args.key)}",
                file=sys.stderr,
            )
            return 2
        parts = tuple(_parse_component(v, kind) for v, kind in zip(args.key, kinds, strict=True))
        value = reader.get(parts[0] if len(parts) == 1 else parts)
    finally:
        reader.close()
    if value is None:
        print(f"mlp cache: key not found in namespace {args.namespace}", file=sys.stderr)
        return 1
    print(json.dumps(value, indent=None if not args.json else 2, default=str))
    return 0


def _parse_component(text: str, kind: str) -> Any:
    from airflow_provider_mlp.precompute.errors import CacheInputError

    if kind == "int":
        if not text.lstrip("-").isdigit():
            raise CacheInputError(f"key {text!r}: the key column holds integers")
        return int(text)
    if kind == "binary":
        return text.encode()
    if kind == "date":
        from datetime import date

        try:
            return date.fromisoformat(text)
        except ValueError:
            raise CacheInputError(f"key {text!r}: the key column holds dates (YYYY-MM-DD)") from None
    return text
