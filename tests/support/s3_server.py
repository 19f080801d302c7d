"""A real S3-protocol server on 127.0.0.1 for tests and benchmarks: moto in server mode,
run as its own process so that the code under test talks HTTP to it like to any S3 endpoint."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}


@dataclass(frozen=True)
class S3Server:
    endpoint_url: str

    def storage_options(self) -> dict[str, object]:
        """fsspec/s3fs options for this server."""
        return {
            "key": CREDENTIALS["AWS_ACCESS_KEY_ID"],
            "secret": CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
            "client_kwargs": {"endpoint_url": self.endpoint_url, "region_name": CREDENTIALS["AWS_DEFAULT_REGION"]},
        }

    def object_store_connection(self, url: str) -> str:
        """An ``mlp_object_store`` connection (as ``AIRFLOW_CONN_*`` JSON) to ``url`` on this server."""
        import json

        return json.dumps(
            {
                "conn_type": "mlp_object_store",
                "login": CREDENTIALS["AWS_ACCESS_KEY_ID"],
                "password": CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
                "extra": {
                    "url": url,
                    "endpoint_url": self.endpoint_url,
                    "storage_options": {"client_kwargs": {"region_name": CREDENTIALS["AWS_DEFAULT_REGION"]}},
                },
            }
        )

    def pyiceberg_properties(self) -> dict[str, str]:
        """pyiceberg FileIO properties for this server."""
        return {
            "s3.endpoint": self.endpoint_url,
            "s3.access-key-id": CREDENTIALS["AWS_ACCESS_KEY_ID"],
            "s3.secret-access-key": CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
            "s3.region": CREDENTIALS["AWS_DEFAULT_REGION"],
        }

    def create_bucket(self, name: str) -> None:
        import boto3

        client = boto3.client(
            "s3",
            endpoint_url=self.endpoint_url,
            aws_access_key_id=CREDENTIALS["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
            region_name=CREDENTIALS["AWS_DEFAULT_REGION"],
        )
        existing = {b["Name"] for b in client.list_buckets().get("Buckets", [])}
        if name not in existing:
            client.create_bucket(Bucket=name)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def running_s3_server() -> Iterator[S3Server]:
    port = _free_port()
    env = {**os.environ, **CREDENTIALS}
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"{url}/moto-api/", timeout=1):
                    break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"moto S3 server did not start on {url}") from None
                time.sleep(0.1)
        yield S3Server(endpoint_url=url)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
