"""Which endpoint storage's clients use when template.yaml's AWS_ENDPOINT_URL_* are empty, as every deployed
function gets them (they are declared, empty, only so `sam local --env-vars` can fill them in).

botocore treats an empty `AWS_ENDPOINT_URL_<SERVICE>` as unset (EndpointConfigurationProvider skips falsy
values), and storage's cache key does the same (`or`), so the clients target the real AWS endpoints. No
network call: a client's endpoint is fixed when it is created (client.meta.endpoint_url).
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import boto3
import pytest

from mlservice import storage

ENDPOINT_VARIABLES = ("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL_SQS", "AWS_ENDPOINT_URL_LAMBDA")
CLIENTS = {
    "s3": lambda: storage.client(),
    "s3-quick": lambda: storage.client(quick=True),
    "sqs": storage.sqs_client,
    "lambda": storage.lambda_client,
}


@pytest.fixture(autouse=True)
def _fresh_clients() -> Iterator[None]:
    storage.reset_client()
    yield
    storage.reset_client()


def _aws_endpoint(service: str) -> str:
    """The endpoint botocore picks with no endpoint configured at all."""
    saved = {name: os.environ.pop(name) for name in [*ENDPOINT_VARIABLES, "AWS_ENDPOINT_URL"] if name in os.environ}
    try:
        return boto3.session.Session().client(service).meta.endpoint_url
    finally:
        os.environ.update(saved)


@pytest.mark.parametrize("kind", CLIENTS)
def test_empty_endpoint_variables_mean_the_real_aws_endpoints(kind: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    for name in ENDPOINT_VARIABLES:
        monkeypatch.setenv(name, "")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    assert not storage._clients, "clients are created on first use, never before"
    client = CLIENTS[kind]()
    service = client.meta.service_model.service_name
    assert client.meta.endpoint_url == _aws_endpoint(service)
    assert client.meta.endpoint_url.startswith("https://") and client.meta.endpoint_url.endswith(".amazonaws.com")
    if service != "s3":  # S3 in eu-west-1 may answer on the global name, the others are regional
        assert "eu-west-1" in client.meta.endpoint_url


def test_a_client_follows_its_endpoint_variable_from_empty_to_set_and_back(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", "")
    default = storage.client()
    assert storage.client() is default, "one cached client while nothing changes"
    assert default.meta.endpoint_url == _aws_endpoint("s3")

    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", "http://172.17.0.1:5000")
    local = storage.client()
    assert local.meta.endpoint_url == "http://172.17.0.1:5000"

    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", "")
    assert storage.client().meta.endpoint_url == _aws_endpoint("s3")


def test_an_empty_service_variable_leaves_the_global_endpoint_in_force(monkeypatch: pytest.MonkeyPatch) -> None:
    """As botocore resolves it: `AWS_ENDPOINT_URL_S3=""` is unset, so `AWS_ENDPOINT_URL` applies."""
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", "")
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:5001")
    assert storage.client().meta.endpoint_url == "http://127.0.0.1:5001"
