"""``mlp events publish <asset-uri> --payload '{...}'``: announce an asset event from a shell or another system."""

from __future__ import annotations

import json
import os
import sys
from typing import Any

from airflow_provider_mlp.events.publish import DEFAULT_URL, AirflowApi, PublishError, publish_event
from airflow_provider_mlp.events.schema import ENV_BUILT, ICEBERG_SNAPSHOT, MODEL_PUBLISHED, EventPayloadError

SCHEMAS = {schema.name: schema for schema in (ICEBERG_SNAPSHOT, MODEL_PUBLISHED, ENV_BUILT)}


def add_arguments(parser: Any) -> None:
    sub = parser.add_subparsers(dest="events_command", required=True)
    publish = sub.add_parser("publish", help="post an asset event to Airflow's REST API (/api/v2/assets/events)")
    publish.add_argument("uri", help="asset URI, e.g. mlp://model/ranker or iceberg://mlp/sales/orders")
    publish.add_argument("--payload", default="{}", help="the event's extra as a JSON object")
    publish.add_argument(
        "--event", choices=sorted(SCHEMAS), default=None, help="check the payload against this event's schema"
    )
    publish.add_argument("--producer", default=None, help="who sends it (default: $USER@mlp-cli)")
    publish.add_argument("--partition-key", default=None)
    publish.add_argument("--url", default=None, help=f"Airflow API URL (default: $MLP_AIRFLOW_URL or {DEFAULT_URL})")
    publish.add_argument(
        "--token", default=None, help="API token (default: $MLP_AIRFLOW_TOKEN, else one from /auth/token)"
    )
    publish.add_argument("--attempts", type=int, default=5, help="tries for transient failures (default 5)")


def run_command(args: Any) -> int:
    try:
        payload = json.loads(args.payload)
    except ValueError as exc:
        print(f"mlp events publish: --payload is not JSON: {exc}", file=sys.stderr)
        return 2
    if not isinstance(payload, dict):
        print(f"mlp events publish: --payload must be a JSON object, got {type(payload).__name__}", file=sys.stderr)
        return 2
    try:
        if args.event:
            producer = args.producer or f"{os.environ.get('USER', 'someone')}@mlp-cli"
            payload = SCHEMAS[args.event].envelope(producer, **payload)
        api = AirflowApi(
            args.url or os.environ.get("MLP_AIRFLOW_URL") or DEFAULT_URL,
            token=args.token or os.environ.get("MLP_AIRFLOW_TOKEN") or None,
            username=os.environ.get("MLP_AIRFLOW_USERNAME") or None,
            password=os.environ.get("MLP_AIRFLOW_PASSWORD") or None,
            attempts=args.attempts,
        )
        event = publish_event(args.uri, payload, api=api, partition_key=args.partition_key)
    except (PublishError, EventPayloadError, ValueError) as exc:
        print(f"mlp events publish: {exc}", file=sys.stderr)
        return 1
    print(json.dumps({"id": event.get("id"), "uri": event.get("uri"), "timestamp": event.get("timestamp")}))
    return 0
