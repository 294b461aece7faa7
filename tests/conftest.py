"""Shared fixtures: a moto-backed bucket, the template's functions loaded as deployed, and an API client."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from typing import Any

import pytest
from sam_support import layer_python313, sam_bin, sam_build_dir  # noqa: F401

BUCKET = "test-models"

# Never reach real AWS from a test, whatever the developer's shell has configured.
for _name in [n for n in os.environ if n.startswith("AWS_")]:
    del os.environ[_name]
os.environ.update(
    AWS_DEFAULT_REGION="us-east-1",
    AWS_ACCESS_KEY_ID="testing",
    AWS_SECRET_ACCESS_KEY="testing",
    AWS_SECURITY_TOKEN="testing",
    AWS_SESSION_TOKEN="testing",
    MODEL_BUCKET=BUCKET,
    POWERTOOLS_METRICS_NAMESPACE="ServerlessML",
    POWERTOOLS_TRACE_DISABLED="true",
)


@pytest.fixture(autouse=True)
def _restore_environment() -> Iterator[None]:
    saved = dict(os.environ)
    yield
    os.environ.clear()
    os.environ.update(saved)


@pytest.fixture
def aws() -> Iterator[Any]:
    """moto around the whole test, the service's bucket created, every cache empty."""
    from moto import mock_aws

    from mlservice import storage
    from mlservice.serving.model_cache import cache

    with mock_aws():
        storage.reset_client()
        cache.clear()
        import boto3

        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket=BUCKET)
        yield s3
        storage.reset_client()
        cache.clear()


class Api:
    """An HTTP-shaped client over the template's functions (API Gateway proxy events, in process)."""

    def __init__(self, runtime: Any) -> None:
        self.runtime = runtime

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        raw: str | bytes | None = None,
        query: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
        identity: dict[str, str] | None = None,
    ) -> Any:
        payload = raw if raw is not None else (json.dumps(body) if body is not None else None)
        response = self.runtime.http(
            method,
            path,
            query={k: [str(v)] for k, v in (query or {}).items()},
            headers={"Content-Type": ["application/json"], **{k: [v] for k, v in (headers or {}).items()}},
            body=payload,
            identity=identity,
        )
        return response

    def get(self, path: str, **kw: Any) -> Any:
        return self.request("GET", path, **kw)

    def post(self, path: str, body: Any = None, **kw: Any) -> Any:
        return self.request("POST", path, body, **kw)

    def put(self, path: str, body: Any = None, **kw: Any) -> Any:
        return self.request("PUT", path, body, **kw)

    def delete(self, path: str, **kw: Any) -> Any:
        return self.request("DELETE", path, **kw)


@pytest.fixture(scope="session")
def iris_model() -> tuple[bytes, dict]:
    """A logistic regression on iris, trained once per session: (artifact bytes, metadata)."""
    from mlservice.training.trainer import train

    return train({"algorithm": "logistic_regression", "data": {"dataset": "iris"}})


@pytest.fixture(scope="session")
def runtime() -> Any:
    from local.runtime import LocalLambda

    return LocalLambda(substitutions={"MODEL_BUCKET": BUCKET, "ModelBucket": BUCKET})


@pytest.fixture
def api(aws: Any, runtime: Any) -> Api:
    return Api(runtime)


@pytest.fixture
def serialized_moto() -> Iterator[None]:
    """In-process moto checks a write's condition and then writes without a lock, so two threads can both
    'win' a conditional write, which real S3 never allows. Serialising moto's request handling restores S3's
    atomicity; the service's code still runs fully concurrently up to each request."""
    import threading

    from moto.core.botocore_stubber import BotocoreStubber

    lock = threading.Lock()
    original = BotocoreStubber.process_request

    def locked(self: Any, *args: Any, **kwargs: Any) -> Any:
        with lock:
            return original(self, *args, **kwargs)

    BotocoreStubber.process_request = locked  # type: ignore[method-assign]
    yield
    BotocoreStubber.process_request = original  # type: ignore[method-assign]


def s3_keys(s3: Any) -> list[str]:
    return sorted(s3_snapshot(s3))


def s3_snapshot(s3: Any) -> dict[str, str]:
    """Every key in the bucket with its ETag: compared before and after bad requests."""
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET)
    return {o["Key"]: o["ETag"] for page in pages for o in page.get("Contents", [])}
