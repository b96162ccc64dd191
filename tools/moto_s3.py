"""moto's S3 server for the tests: one in a thread of the test process, a boto3 client and an Airflow
connection that reach it.

Shared by the unit tests of S3 delivery and the end-to-end ones (whose Airflow workers reach the server
over HTTP like any S3 endpoint). moto and boto3 are imported only when used: a venv without the
``[s3]`` extra can still import this module.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

#: moto accepts any credentials; these are what the tests' clients and Airflow stacks sign with.
FAKE_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "fake-key-id", "AWS_SECRET_ACCESS_KEY": "fake-secret"}
REGION = "us-east-1"


@contextlib.contextmanager
def moto_server() -> Iterator[str]:
    """moto's S3 server on a free port of 127.0.0.1, in a thread of this process, stopped on exit; its URL."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


def s3_client(endpoint: str, *, bucket: str | None = None) -> Any:
    """A boto3 S3 client on ``endpoint`` with :data:`FAKE_CREDENTIALS`, after creating ``bucket`` if given."""
    import boto3

    client = boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name=REGION,
        aws_access_key_id=FAKE_CREDENTIALS["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=FAKE_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
    )
    if bucket is not None:
        client.create_bucket(Bucket=bucket)
    return client


def aws_connection(endpoint: str) -> dict[str, Any]:
    """An Airflow ``aws`` connection whose S3 calls go to ``endpoint`` (credentials come from the environment)."""
    return {"conn_type": "aws", "extra": {"endpoint_url": endpoint, "region_name": REGION}}
