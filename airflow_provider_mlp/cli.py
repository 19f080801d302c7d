"""The ``mlp`` command: ``mlp demo`` runs the project's main job on embedded defaults;
``mlp settings`` prints where everything lives; ``mlp example-dags`` prints the example DAGs' folder;
``mlp cache`` shows and switches precomputed cache versions; ``mlp airflow up|down`` runs a local Airflow;
``mlp events publish`` sends an asset event to Airflow's REST API."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from airflow_provider_mlp.config import settings
from airflow_provider_mlp.precompute import cli as cache_cli


def _settings_json() -> str:
    resolved = vars(settings())
    shown = {
        key: list(value) if isinstance(value, tuple) else (None if value is None else str(value))
        for key, value in resolved.items()
    }
    return json.dumps(shown, indent=2)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="mlp", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    demo_parser = sub.add_parser("demo", help="run the main job on embedded defaults")
    demo_parser.add_argument("--dags-folder", type=Path, default=None)
    demo_parser.add_argument("--rows", type=int, default=200_000, help="rows of the sample table")
    demo_parser.add_argument(
        "--scale",
        type=float,
        default=1.0,
        help="multiply the generated data (1: 200,000 events and title pairs, 400,000 plays)",
    )
    demo_parser.add_argument(
        "--serve",
        action="store_true",
        help="keep the content-performance lookup service and Streamlit app running at the end (until Ctrl-C)",
    )
    sub.add_parser("settings", help="print the resolved settings as JSON")
    sub.add_parser("example-dags", help="print the folder of the example DAGs shipped with the provider")
    from airflow_provider_mlp import airflow_local
    from airflow_provider_mlp.events import cli as events_cli

    cache_cli.add_parser(sub)
    airflow_local.add_arguments(sub.add_parser("airflow", help="start or stop a local Airflow on 127.0.0.1"))
    events_cli.add_arguments(sub.add_parser("events", help="publish asset events to Airflow"))
    args = parser.parse_args(argv)
    if args.command == "cache":
        return cache_cli.run(args)
    if args.command == "airflow":
        return airflow_local.run_command(args)
    if args.command == "events":
        return events_cli.run_command(args)
    if args.command == "demo":
        from airflow_provider_mlp.demo.runner import demo

        return demo(args.dags_folder, args.rows, scale=args.scale, serve=args.serve)
    if args.command == "example-dags":
        from airflow_provider_mlp.demo.runner import example_dags_folder

        print(example_dags_folder())
        return 0
    print(_settings_json())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
