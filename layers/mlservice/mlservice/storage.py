"""S3 access (and the batch queue's SQS): the only module that talks to boto3.

The client is created lazily on first use (never at import), so moto's mocks are always in place before a
client exists and nothing can reach real AWS by accident. boto3 honours `AWS_ENDPOINT_URL_S3` /
`AWS_ENDPOINT_URL` by itself, which is how the local service and `sam local` point at an embedded S3.
Conditional writes (`IfNoneMatch="*"`, `IfMatch=<etag>`) are what make shared state safe under concurrency;
`mlservice.atomic` builds every read-modify-write on them.

Failures: botocore retries throttling, 5xx answers, timeouts and dropped connections itself (standard mode,
3 attempts; `AWS_MAX_ATTEMPTS` changes that). What still fails after those retries leaves this module's calls
as `StorageUnavailable` (503 `storage_unavailable` with Retry-After), never as a raw botocore error: the client
is told to retry, and callers that write know the outcome is unknown. (Streaming bodies handed to the batch code,
and its multipart uploads, may still raise botocore's errors mid-transfer: any exception fails a batch
invocation, which Lambda or SQS then retries.)
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import io
import json
import os
import queue
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, NoReturn, TypeVar

from mlservice.errors import ObjectChanged, ServiceError, StorageUnavailable, WriteConflict
from mlservice.settings import get_settings

T = TypeVar("T")

_lock = threading.Lock()
_clients: dict[tuple[str, str], tuple[tuple, Any]] = {}
# botocore settings per kind of call (see _client_for): (attempts or None for botocore's default, connect, read).
_PROFILES: dict[str, tuple[int | None, int, int]] = {
    "default": (None, 3, 8),
    "quick": (2, 1, 2),
    "invoke": (2, 3, 28),
    "presign": (None, 3, 8),
}


def _client_for(service: str, profile: str = "default") -> Any:
    """A process-wide client per service, rebuilt when its endpoint or the region changes (tests, local server).

    boto3 reads `AWS_ENDPOINT_URL_<SERVICE>` / `AWS_ENDPOINT_URL` itself; they are part of the cache key only so
    that a changed endpoint gets a new client. Timeouts are short — a stalled connection fails after 3 s, a
    stalled transfer after 8 s without a byte, each retried by botocore (3 attempts unless AWS_MAX_ATTEMPTS says
    otherwise) — so a hung S3 surfaces as a 503 inside API Gateway's 29 s, not after botocore's 60 s default.
    `quick` is for reads that have something to fall back on (predict's cached registry): 1 s and 2 s, two
    attempts, so an outage costs a request a few seconds at most before the fallback answers. `invoke` is for
    the synchronous Lambda invocation of predict's scikit-learn fallback, which may take API Gateway's whole
    29 s (and is harmless to repeat).
    """
    key = (
        service,
        profile,
        os.environ.get(f"AWS_ENDPOINT_URL_{service.upper()}") or os.environ.get("AWS_ENDPOINT_URL"),
        os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION"),
    )
    with _lock:
        cached = _clients.get(key[:2])
        if cached is None or cached[0] != key:
            import boto3
            from botocore.config import Config

            attempts, connect, read = _PROFILES[profile]
            retries = {"mode": "standard", **({"max_attempts": attempts} if attempts else {})}
            config = Config(retries=retries, max_pool_connections=32, connect_timeout=connect, read_timeout=read)
            extra: dict[str, Any] = {}
            if profile == "presign":
                config, extra = _presigning(config, endpoint=key[2], region=key[3])
            cached = _clients[key[:2]] = (key, boto3.session.Session().client(service, config=config, **extra))
        return cached[1]


def _presigning(config: Any, endpoint: str | None, region: str | None) -> tuple[Any, dict[str, Any]]:
    """The presigning client's settings: SigV4 (botocore presigns S3 URLs with SigV2 unless told, which SSE-KMS
    objects refuse) and, on AWS, the bucket's regional endpoint: a URL for the global one is redirected for a
    new bucket outside us-east-1, and a presigned request cannot follow the redirect."""
    from botocore.config import Config

    if endpoint or not region:  # another S3 (make run, tests): its own address, path-style
        return config.merge(Config(signature_version="s3v4")), {}
    suffix = "amazonaws.com.cn" if region.startswith("cn-") else "amazonaws.com"
    virtual = Config(signature_version="s3v4", s3={"addressing_style": "virtual"})
    return config.merge(virtual), {"endpoint_url": f"https://s3.{region}.{suffix}"}


def client(quick: bool = False) -> Any:
    """The S3 client (`quick`: the one with short timeouts, for reads with a fallback)."""
    return _client_for("s3", "quick" if quick else "default")


def sqs_client() -> Any:
    """The batch queue's client (AWS_ENDPOINT_URL_SQS for a local queue)."""
    return _client_for("sqs")


def lambda_client() -> Any:
    """The client the slim functions hand work to their scikit-learn fallbacks with (mlservice.serving.fallback)."""
    return _client_for("lambda", "invoke")


def reset_client() -> None:
    """Forget the cached clients (tests start each moto context with fresh ones)."""
    with _lock:
        _clients.clear()


def _bucket() -> str:
    return get_settings().bucket


def _is(error: Exception, *codes: str) -> bool:
    response = getattr(error, "response", None) or {}
    code = str(response.get("Error", {}).get("Code", ""))
    status = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    return code in codes or str(status) in codes


_THROTTLED = {
    "SlowDown",
    "Throttling",
    "ThrottlingException",
    "RequestThrottled",
    "RequestThrottledException",
    "TooManyRequestsException",
    "RequestLimitExceeded",
    "RequestTimeout",
    "RequestTimeoutException",
    "InternalError",
    "InternalFailure",
    "ServiceUnavailable",
    # Lambda's refusals to run a function now (the scikit-learn fallbacks' invocations)
    "ResourceNotReadyException",
    "EC2ThrottledException",
}


def unavailable_reason(error: BaseException) -> str | None:
    """Why a storage call failed transiently (throttled, 5xx, timeout, connection), or None for other errors."""
    from botocore.exceptions import ClientError, HTTPClientError
    from botocore.exceptions import ConnectionError as BotoConnectionError

    if isinstance(error, (BotoConnectionError, HTTPClientError)):
        return type(error).__name__
    if isinstance(error, ClientError):
        code = str(error.response.get("Error", {}).get("Code", ""))
        status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0
        if code in _THROTTLED or int(status) >= 500:
            return code or f"HTTP {status}"
    return None


def _reraise(error: Exception, operation: str) -> NoReturn:
    """Raise `error` again, as StorageUnavailable when it is a transient AWS failure."""
    passed_on = (ServiceError, WriteConflict, ObjectChanged, KeyError)
    reason = None if isinstance(error, passed_on) else unavailable_reason(error)
    if reason:
        raise StorageUnavailable(operation, reason) from None
    raise error


def _storage_call(operation: str) -> Callable[[Callable[..., T]], Callable[..., T]]:
    """Turn a transient AWS failure escaping the decorated call into StorageUnavailable."""

    def decorate(function: Callable[..., T]) -> Callable[..., T]:
        @functools.wraps(function)
        def call(*args: Any, **kwargs: Any) -> T:
            try:
                return function(*args, **kwargs)
            except Exception as error:
                _reraise(error, operation)

        return call

    return decorate


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@_storage_call("get_object")
def get_bytes(key: str) -> bytes | None:
    """The object's bytes, or None when it does not exist."""
    try:
        return client().get_object(Bucket=_bucket(), Key=key)["Body"].read()
    except Exception as error:
        if _is(error, "NoSuchKey", "404"):
            return None
        raise


@_storage_call("get_object")
def get_json(key: str, quick: bool = False) -> tuple[Any, str] | None:
    """The parsed JSON document and its ETag (for a later `IfMatch`), or None when absent."""
    try:
        response = client(quick).get_object(Bucket=_bucket(), Key=key)
    except Exception as error:
        if _is(error, "NoSuchKey", "404"):
            return None
        raise
    return json.loads(response["Body"].read()), response["ETag"]


@_storage_call("head_object")
def exists(key: str) -> bool:
    try:
        client().head_object(Bucket=_bucket(), Key=key)
        return True
    except Exception as error:
        if _is(error, "NoSuchKey", "404", "NotFound"):
            return False
        raise


@_storage_call("head_object")
def head(key: str) -> dict | None:
    """Size, ETag and metadata of an object, or None when absent."""
    try:
        return client().head_object(Bucket=_bucket(), Key=key)
    except Exception as error:
        if _is(error, "NoSuchKey", "404", "NotFound"):
            return None
        raise


@_storage_call("put_object")
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


@_storage_call("delete_object")
def delete(key: str) -> None:
    client().delete_object(Bucket=_bucket(), Key=key)


def list_keys(prefix: str) -> Iterator[dict]:
    """Every object under a prefix (key, size, etag), following pagination."""
    paginator = client().get_paginator("list_objects_v2")
    pages = iter(paginator.paginate(Bucket=_bucket(), Prefix=prefix))
    while True:
        try:
            page = next(pages)
        except StopIteration:
            return
        except Exception as error:
            _reraise(error, "list_objects")
        yield from page.get("Contents", [])


@_storage_call("list_objects")
def has_prefix(prefix: str) -> bool:
    """Whether any object exists under a prefix (one cheap list call)."""
    return client().list_objects_v2(Bucket=_bucket(), Prefix=prefix, MaxKeys=1).get("KeyCount", 0) > 0


@_storage_call("list_objects")
def list_folders(prefix: str) -> list[str]:
    """The immediate 'sub-folders' of a prefix (common prefixes with '/' as delimiter)."""
    paginator = client().get_paginator("list_objects_v2")
    folders: list[str] = []
    for page in paginator.paginate(Bucket=_bucket(), Prefix=prefix, Delimiter="/"):
        folders.extend(p["Prefix"] for p in page.get("CommonPrefixes", []))
    return folders


@_storage_call("get_object")
def open_stream(key: str, byte_range: tuple[int, int] | None = None, if_match: str | None = None) -> Any:
    """A streaming body for the object (or an inclusive byte range of it); raises KeyError when absent and, with
    `if_match` (an ETag), ObjectChanged when the object is no longer that one."""
    kwargs: dict[str, Any] = {"Bucket": _bucket(), "Key": key}
    if byte_range is not None:
        kwargs["Range"] = f"bytes={byte_range[0]}-{byte_range[1]}"
    if if_match is not None:
        kwargs["IfMatch"] = '"' + if_match.strip('"') + '"'
    try:
        return client().get_object(**kwargs)
    except Exception as error:
        if _is(error, "NoSuchKey", "404"):
            raise KeyError(key) from None
        if if_match is not None and _is(error, "PreconditionFailed", "412"):
            raise ObjectChanged(key) from None
        raise


class ChunkReader(io.RawIOBase):
    """An S3 object as a read-only file, downloaded as it is read. A transient failure in the middle of the
    download is StorageUnavailable, like the failure of any other storage call."""

    def __init__(self, key: str, if_match: str | None = None) -> None:
        """Raises KeyError when the object does not exist (ObjectChanged, with `if_match`, when it is no longer
        that version); `size` is its length in bytes, `etag` its ETag."""
        super().__init__()
        response = open_stream(key, if_match=if_match)
        self._body = response["Body"]
        self.size = int(response["ContentLength"])
        self.etag = str(response.get("ETag", "")).strip('"')

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._body.close()
        super().close()

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        try:
            return self._body.read(None if size is None or size < 0 else size)
        except Exception as error:
            _reraise(error, "get_object")

    def readinto(self, buffer: Any) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)


UPLOAD_CONCURRENCY = 2


class MultipartWriter:
    """Stream bytes into one S3 object through a multipart upload, in parts of `part_bytes`.

    Nothing is visible at the key until `close()` completes the upload, so a failed or abandoned run leaves no
    partial output; `abort()` discards what was uploaded. Up to UPLOAD_CONCURRENCY parts upload in the background while
    the caller produces the next, so memory is bounded by a few parts and the upload overlaps the computing.
    """

    def __init__(self, key: str, content_type: str = "application/octet-stream", part_bytes: int = 8 * 1024 * 1024):
        self.key = key
        self.content_type = content_type
        self.part_bytes = max(part_bytes, 5 * 1024 * 1024)  # S3's minimum for every part but the last
        self._buffer = bytearray()
        self._parts: list[dict] = []
        self._upload_id: str | None = None
        self._pool: ThreadPoolExecutor | None = None
        self._in_flight: list[Future] = []

    def write(self, data: bytes) -> None:
        self._buffer += data
        if len(self._buffer) >= self.part_bytes:
            self._send(bytes(self._buffer))
            self._buffer.clear()

    def _send(self, data: bytes) -> None:
        if self._upload_id is None:
            self._upload_id = client().create_multipart_upload(
                Bucket=_bucket(), Key=self.key, ContentType=self.content_type
            )["UploadId"]
            self._pool = ThreadPoolExecutor(max_workers=UPLOAD_CONCURRENCY, thread_name_prefix="upload")
        while len(self._in_flight) >= UPLOAD_CONCURRENCY:
            self._in_flight.pop(0).result()  # re-raises an upload's failure here, in the caller's thread
        number = len(self._parts) + 1
        self._parts.append({"PartNumber": number})
        self._in_flight.append(self._pool.submit(self._upload_part, number, data))

    def _upload_part(self, number: int, data: bytes) -> None:
        response = client().upload_part(
            Bucket=_bucket(), Key=self.key, UploadId=self._upload_id, PartNumber=number, Body=data
        )
        self._parts[number - 1]["ETag"] = response["ETag"]

    def _wait(self) -> None:
        while self._in_flight:
            self._in_flight.pop(0).result()

    def close(self) -> None:
        if self._upload_id is None:  # small enough for one plain write
            put_bytes(self.key, bytes(self._buffer), content_type=self.content_type)
            return
        if self._buffer:
            self._send(bytes(self._buffer))
            self._buffer.clear()
        self._wait()
        client().complete_multipart_upload(
            Bucket=_bucket(), Key=self.key, UploadId=self._upload_id, MultipartUpload={"Parts": self._parts}
        )
        self._upload_id = None  # complete: nothing is left to abort
        self._shutdown()

    def abort(self) -> None:
        """Throw the upload away. Never raises: it runs while another error is on its way out, which must not be
        masked; an upload S3 did not abort is removed by the bucket's lifecycle rule after 7 days."""
        try:
            if self._upload_id is not None:
                with contextlib.suppress(Exception):
                    self._wait()
                with contextlib.suppress(Exception):
                    client().abort_multipart_upload(Bucket=_bucket(), Key=self.key, UploadId=self._upload_id)
                self._upload_id = None
        finally:
            self._shutdown()
            self._buffer.clear()

    def _shutdown(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None


class Prefetcher:
    """A read-ahead wrapper for a streaming body: a background thread keeps up to `depth` blocks downloaded
    while the caller computes on the previous ones, so network time overlaps CPU time. `read(n)` behaves like
    a file's (b"" at the end); an error in the download thread surfaces in the caller's next read."""

    _END = object()

    def __init__(self, body: Any, block_bytes: int = 1024 * 1024, depth: int = 4) -> None:
        self._queue: queue.Queue = queue.Queue(maxsize=depth)
        self._pending = b""
        self._done = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._fill, args=(body, block_bytes), name="prefetch", daemon=True)
        self._thread.start()

    def _fill(self, body: Any, block_bytes: int) -> None:
        try:
            while not self._stop.is_set():
                block = body.read(block_bytes)
                self._put(block if block else self._END)
                if not block:
                    return
        except BaseException as error:  # handed to the reader, who raises it
            self._put(error)

    def _put(self, item: Any) -> None:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def read(self, size: int = -1) -> bytes:
        while not self._done and (size < 0 or len(self._pending) < size):
            item = self._queue.get()
            if item is self._END:
                self._done = True
            elif isinstance(item, BaseException):
                self._done = True
                raise item
            else:
                self._pending += item
        if size < 0:
            size = len(self._pending)
        data, self._pending = self._pending[:size], self._pending[size:]
        return data

    def close(self) -> None:
        self._stop.set()


@_storage_call("delete_objects")
def delete_prefix(prefix: str) -> None:
    """Remove every object under a prefix (bookkeeping that has served its purpose)."""
    batch: list[dict] = []
    for obj in list_keys(prefix):
        batch.append({"Key": obj["Key"]})
        if len(batch) == 1000:
            client().delete_objects(Bucket=_bucket(), Delete={"Objects": batch, "Quiet": True})
            batch = []
    if batch:
        client().delete_objects(Bucket=_bucket(), Delete={"Objects": batch, "Quiet": True})


@_storage_call("list_object_versions")
def list_versions(prefix: str) -> list[dict]:
    """Every stored version and delete marker under a prefix, as {"Key", "VersionId"} (an unversioned bucket
    lists each object once, with VersionId "null")."""
    paginator = client().get_paginator("list_object_versions")
    found: list[dict] = []
    for page in paginator.paginate(Bucket=_bucket(), Prefix=prefix):
        for item in [*page.get("Versions", []), *page.get("DeleteMarkers", [])]:
            found.append({"Key": item["Key"], "VersionId": item["VersionId"]})
    return found


@_storage_call("delete_objects")
def delete_versions(items: list[dict]) -> None:
    """Remove the given object versions for good (nothing can restore them). S3 reports refusals per object
    in a successful reply: a transient one is StorageUnavailable, any other an error, never a silent skip."""
    for start in range(0, len(items), 1000):
        chunk = items[start : start + 1000]
        response = client().delete_objects(Bucket=_bucket(), Delete={"Objects": chunk, "Quiet": True})
        errors = response.get("Errors") or []
        if errors:
            codes = {str(e.get("Code")) for e in errors}
            if codes & _THROTTLED:
                raise StorageUnavailable("delete_objects", sorted(codes & _THROTTLED)[0])
            raise RuntimeError(f"S3 refused to delete {len(errors)} object version(s): {sorted(codes)}")


@_storage_call("send_message")
def send_messages(queue_url: str, bodies: list[str]) -> None:
    """Send messages in batches of ten; any message SQS refuses is an error, never a silent drop."""
    for start in range(0, len(bodies), 10):
        entries = [{"Id": str(i), "MessageBody": body} for i, body in enumerate(bodies[start : start + 10])]
        response = sqs_client().send_message_batch(QueueUrl=queue_url, Entries=entries)
        if response.get("Failed"):
            raise RuntimeError(f"SQS refused {len(response['Failed'])} message(s): {response['Failed'][0]}")


# ---------------------------------------------------------------- uploads by clients (datasets)


def presigned_put(key: str, expires: int) -> str:
    """A URL through which a client PUTs one object at `key` (with this function's permissions) until it
    expires. Signing is local: no request is made."""
    return _client_for("s3", "presign").generate_presigned_url(
        "put_object", Params={"Bucket": _bucket(), "Key": key}, ExpiresIn=expires
    )


def presigned_part(key: str, upload_id: str, part_number: int, expires: int) -> str:
    """A URL through which a client PUTs one part of a multipart upload."""
    params = {"Bucket": _bucket(), "Key": key, "UploadId": upload_id, "PartNumber": part_number}
    return _client_for("s3", "presign").generate_presigned_url("upload_part", Params=params, ExpiresIn=expires)


@_storage_call("create_multipart_upload")
def create_multipart(key: str, content_type: str = "application/octet-stream") -> str:
    """Start a multipart upload at `key`; returns its upload id."""
    return client().create_multipart_upload(Bucket=_bucket(), Key=key, ContentType=content_type)["UploadId"]


@_storage_call("complete_multipart_upload")
def complete_multipart(key: str, upload_id: str, parts: list[dict]) -> str:
    """Assemble an upload from its parts ({"PartNumber", "ETag"}, ascending); returns the object's ETag.

    Raises KeyError when S3 knows no such upload (aborted, or completed some time ago) and ValueError
    ("<S3 code>: <message>") when S3 refuses the parts (a missing or wrong ETag, a part under 5 MiB)."""
    try:
        response = client().complete_multipart_upload(
            Bucket=_bucket(), Key=key, UploadId=upload_id, MultipartUpload={"Parts": parts}
        )
    except Exception as error:
        if _is(error, "NoSuchUpload"):
            raise KeyError(key) from None
        if _is(error, "InvalidPart", "InvalidPartOrder", "EntityTooSmall", "MalformedXML", "InvalidRequest"):
            detail = getattr(error, "response", {}).get("Error", {})
            raise ValueError(f"{detail.get('Code')}: {detail.get('Message') or 'refused'}") from None
        raise
    return response["ETag"]


@_storage_call("abort_multipart_upload")
def abort_multipart(key: str, upload_id: str) -> bool:
    """Discard an unfinished multipart upload and its parts; False when there was none to abort."""
    try:
        client().abort_multipart_upload(Bucket=_bucket(), Key=key, UploadId=upload_id)
        return True
    except Exception as error:
        if _is(error, "NoSuchUpload", "404"):
            return False
        raise
