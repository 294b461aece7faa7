"""S3 access: the only module that talks to boto3.

The client is created lazily on first use (never at import), so moto's mocks are always in place before a
client exists and nothing can reach real AWS by accident. boto3 honours `AWS_ENDPOINT_URL_S3` /
`AWS_ENDPOINT_URL` by itself, which is how the local service and `sam local` point at an embedded S3.
Conditional writes (`IfNoneMatch="*"`, `IfMatch=<etag>`) are what make the registry safe under concurrency.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from collections.abc import Iterator
from typing import Any

from mlservice.errors import WriteConflict
from mlservice.settings import get_settings

_lock = threading.Lock()
_client: Any = None
_client_key: tuple | None = None


def client() -> Any:
    """The process-wide S3 client, rebuilt when the endpoint or region changes (tests, local server)."""
    global _client, _client_key
    key = (
        os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL"),
        os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION"),
    )
    with _lock:
        if _client is None or _client_key != key:
            import boto3
            from botocore.config import Config

            _client = boto3.session.Session().client(
                "s3", config=Config(retries={"max_attempts": 3, "mode": "standard"}, max_pool_connections=32)
            )
            _client_key = key
        return _client


def reset_client() -> None:
    """Forget the cached client (tests start each moto context with a fresh one)."""
    global _client, _client_key
    with _lock:
        _client = None
        _client_key = None


def _bucket() -> str:
    return get_settings().bucket


def _is(error: Exception, *codes: str) -> bool:
    response = getattr(error, "response", None) or {}
    code = str(response.get("Error", {}).get("Code", ""))
    status = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    return code in codes or str(status) in codes


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def get_bytes(key: str) -> bytes | None:
    """The object's bytes, or None when it does not exist."""
    try:
        return client().get_object(Bucket=_bucket(), Key=key)["Body"].read()
    except Exception as error:
        if _is(error, "NoSuchKey", "404"):
            return None
        raise


def get_json(key: str) -> tuple[Any, str] | None:
    """The parsed JSON document and its ETag (for a later `IfMatch`), or None when absent."""
    try:
        response = client().get_object(Bucket=_bucket(), Key=key)
    except Exception as error:
        if _is(error, "NoSuchKey", "404"):
            return None
        raise
    return json.loads(response["Body"].read()), response["ETag"]


def exists(key: str) -> bool:
    try:
        client().head_object(Bucket=_bucket(), Key=key)
        return True
    except Exception as error:
        if _is(error, "NoSuchKey", "404", "NotFound"):
            return False
        raise


def head(key: str) -> dict | None:
    """Size, ETag and metadata of an object, or None when absent."""
    try:
        return client().head_object(Bucket=_bucket(), Key=key)
    except Exception as error:
        if _is(error, "NoSuchKey", "404", "NotFound"):
            return None
        raise


def put_bytes(
    key: str,
    data: bytes,
    *,
    content_type: str = "application/octet-stream",
    if_none_match: bool = False,
    if_match: str | None = None,
) -> str:
    """Write an object, optionally only if absent or unchanged; returns the new ETag.

    Raises WriteConflict when the condition fails, so callers can re-read and retry.
    """
    kwargs: dict[str, Any] = {"Bucket": _bucket(), "Key": key, "Body": data, "ContentType": content_type}
    if if_none_match:
        kwargs["IfNoneMatch"] = "*"
    if if_match is not None:
        kwargs["IfMatch"] = if_match
    try:
        return client().put_object(**kwargs)["ETag"]
    except Exception as error:
        # 409 ConditionalRequestConflict: a concurrent conditional write to the same key is in flight.
        if _is(error, "PreconditionFailed", "412", "ConditionalRequestConflict", "409"):
            raise WriteConflict(key) from None
        if if_match is not None and _is(error, "NoSuchKey", "404"):
            raise WriteConflict(key) from None
        raise


def put_json(key: str, document: Any, *, if_none_match: bool = False, if_match: str | None = None) -> str:
    body = json.dumps(document, separators=(",", ":"), sort_keys=True).encode()
    return put_bytes(key, body, content_type="application/json", if_none_match=if_none_match, if_match=if_match)


def delete(key: str) -> None:
    client().delete_object(Bucket=_bucket(), Key=key)


def list_keys(prefix: str) -> Iterator[dict]:
    """Every object under a prefix (key, size, etag), following pagination."""
    paginator = client().get_paginator("list_objects_v2")
    for page in paginator.paginate(Bucket=_bucket(), Prefix=prefix):
        yield from page.get("Contents", [])


def has_prefix(prefix: str) -> bool:
    """Whether any object exists under a prefix (one cheap list call)."""
    return client().list_objects_v2(Bucket=_bucket(), Prefix=prefix, MaxKeys=1).get("KeyCount", 0) > 0


def list_folders(prefix: str) -> list[str]:
    """The immediate 'sub-folders' of a prefix (common prefixes with '/' as delimiter)."""
    paginator = client().get_paginator("list_objects_v2")
    folders: list[str] = []
    for page in paginator.paginate(Bucket=_bucket(), Prefix=prefix, Delimiter="/"):
        folders.extend(p["Prefix"] for p in page.get("CommonPrefixes", []))
    return folders


def open_stream(key: str, byte_range: tuple[int, int] | None = None) -> Any:
    """A streaming body for the object (or an inclusive byte range of it); raises KeyError when absent."""
    kwargs: dict[str, Any] = {"Bucket": _bucket(), "Key": key}
    if byte_range is not None:
        kwargs["Range"] = f"bytes={byte_range[0]}-{byte_range[1]}"
    try:
        return client().get_object(**kwargs)
    except Exception as error:
        if _is(error, "NoSuchKey", "404"):
            raise KeyError(key) from None
        raise
