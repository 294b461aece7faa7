"""Serving a version that has no ONNX export, from a function that has no scikit-learn.

Batch prediction works the same way: BatchPredictFunction (slim) hands the S3 event of a file whose model
needs scikit-learn to BatchFallbackFunction (the batch handler on the full layer), asynchronously as S3 would,
after releasing the job's lease; that function predicts the whole file itself (it has no queue to fan out to).

The predict function runs on a slim layer (numpy + onnxruntime, no scikit-learn or scipy: a third of the cold
start and memory). A version whose pipeline did not convert to ONNX with parity is served by its pickled
scikit-learn pipeline, which only the full layer can load: the slim function hands such a request, unchanged,
to PredictFallbackFunction (the same handler code on the full layer) and returns its answer as its own. The
request costs one extra synchronous Lambda invocation; every other model never pays for it.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import os
from typing import Any

from mlservice.errors import ServiceError, StorageUnavailable

FUNCTION_VARIABLE = "PREDICT_FALLBACK_FUNCTION"
BATCH_FUNCTION_VARIABLE = "BATCH_FALLBACK_FUNCTION"


class NeedsScikitLearn(Exception):
    """This version can only be served by its scikit-learn pipeline, and this function cannot load one."""

    def __init__(self, model: str, version: int) -> None:
        super().__init__(f"version {version} of model {model!r} has no ONNX export and needs scikit-learn")
        self.model = model
        self.version = version


@functools.cache
def has_scikit_learn() -> bool:
    return importlib.util.find_spec("sklearn") is not None


def _function_name(variable: str, what: str) -> str:
    """The fallback function's name from the environment; 500 configuration_error when the template set none."""
    name = os.environ.get(variable)
    if not name:
        raise ServiceError(
            "configuration_error",
            f"{what} needs scikit-learn, which this function lacks, and no fallback function is configured",
        )
    return name


def forward(event: dict, context: Any) -> dict:
    """Invoke the fallback function with the request's event; its response is this request's response."""
    name = _function_name(FUNCTION_VARIABLE, "this version")
    from mlservice import storage

    try:
        reply = storage.lambda_client().invoke(FunctionName=name, Payload=json.dumps(event).encode())
    except Exception as error:
        reason = storage.unavailable_reason(error)
        if reason is None:
            raise
        # Throttled, 5xx or unreachable: like S3 trouble, a 503 with Retry-After (predicting is safe to repeat).
        raise StorageUnavailable("invoke the scikit-learn fallback", reason) from None
    payload = json.loads(reply["Payload"].read())
    if reply.get("FunctionError"):
        raise RuntimeError(f"the fallback function failed: {str(payload)[:300]}")
    return payload


def forward_batch(bucket: str, key: str, etag: str, size: int) -> None:
    """Hand one created object to the batch fallback function, as an S3 notification (asynchronous: Lambda
    retries it and sends its failure to the same failure queue). A repeated hand-over is harmless: the job's
    lease and manifest make a second run a duplicate."""
    from urllib.parse import quote_plus

    name = _function_name(BATCH_FUNCTION_VARIABLE, "this file's model")
    from mlservice import storage

    record = {
        "eventSource": "aws:s3",
        "eventName": "ObjectCreated:Put",
        "s3": {"bucket": {"name": bucket}, "object": {"key": quote_plus(key), "eTag": etag, "size": size}},
    }
    storage.lambda_client().invoke(
        FunctionName=name, InvocationType="Event", Payload=json.dumps({"Records": [record]}).encode()
    )
