"""Idempotency-Key on the mutating routes: Powertools' idempotency utility with its records in the model bucket.

A client may send `Idempotency-Key: <1-255 printable ASCII characters>` with train, deploy, rollback,
undeploy and delete. The first request with a key runs and its response is kept for IDEMPOTENCY_TTL_SECONDS
(24 h); the same key with the same request (method, path, query and JSON body, whitespace and key order
aside) replays that response with `Idempotent-Replayed: true`; with a different request it is 422
`idempotency_key_reused`; while the first is still running, 409 `idempotency_key_in_progress`. Failed requests
are not kept: retrying them runs them again. Keys are scoped to the caller (its IAM principal, or API key
id), so two clients cannot collide. Records lie under the model's prefix, so erasing the model erases them.
Predict and infer only read, so they are always safe to retry and ignore the header. DELETE /models/{model}
(erasure) keeps no record: it is idempotent by nature, and a record would outlive what it erased.

Two layers make a retry safe even when this record is lost or late. Each mutation also carries a token
derived from the key (`request_token`), which the registry stores with the change it made: a retry whose
first attempt changed the registry but never saved its response here finds the change by its token and
answers with it instead of applying it again. And this record's own writes go through mlservice.atomic, so an
in-progress record whose write reply was lost is recognised by its owner (the invocation's request id).
"""

from __future__ import annotations

import hashlib
import json
import re
import time
import uuid
from typing import Any

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.api_gateway import ApiGatewayResolver
from aws_lambda_powertools.event_handler.middlewares import NextMiddleware
from aws_lambda_powertools.utilities.idempotency import IdempotencyConfig
from aws_lambda_powertools.utilities.idempotency.base import IdempotencyHandler
from aws_lambda_powertools.utilities.idempotency.exceptions import (
    IdempotencyAlreadyInProgressError,
    IdempotencyItemAlreadyExistsError,
    IdempotencyItemNotFoundError,
    IdempotencyPersistenceLayerError,
    IdempotencyValidationError,
)
from aws_lambda_powertools.utilities.idempotency.persistence.base import BasePersistenceLayer
from aws_lambda_powertools.utilities.idempotency.persistence.datarecord import DataRecord

from mlservice import atomic, audit, keys, storage
from mlservice.atomic import Change
from mlservice.errors import ServiceError, bad_request
from mlservice.observability import logger
from mlservice.settings import get_settings

HEADER = "idempotency-key"
REPLAYED_HEADER = "Idempotent-Replayed"
_KEY = re.compile(r"[\x21-\x7e]{1,255}")
TOKEN = "request_token"
KEYED = "key:"
REQUEST_ID = "request_id"
IN_PROGRESS_RETRY_AFTER = 2


class S3PersistenceLayer(BasePersistenceLayer):
    """Idempotency records as small JSON objects under idempotency/, written with mlservice.atomic like every
    other piece of shared state. `owner` is the request id of the invocation using it."""

    def __init__(self, owner: str, model: str) -> None:
        super().__init__()
        self.owner = owner
        self.model = model

    def _object_key(self, idempotency_key: str) -> str:
        # Under the model's prefix: a record holds its response (a version's metadata), which erasing the
        # model must erase too.
        return keys.idempotency_key(self.model, hashlib.sha256(idempotency_key.encode()).hexdigest())

    def _document(self, record: DataRecord) -> dict:
        return {
            "status": record._status,  # the stored status; `status` would report EXPIRED for an old record
            "expiry": record.expiry_timestamp,
            "in_progress_expiry_ms": record.in_progress_expiry_timestamp,
            "response": record.response_data,
            "payload_hash": record.payload_hash,
            "owner": self.owner,
        }

    @staticmethod
    def _record(idempotency_key: str, document: dict) -> DataRecord:
        return DataRecord(
            idempotency_key=idempotency_key,
            status=document["status"],
            expiry_timestamp=document.get("expiry"),
            in_progress_expiry_timestamp=document.get("in_progress_expiry_ms"),
            response_data=document.get("response") or "",
            payload_hash=document.get("payload_hash") or "",
        )

    def _get_record(self, idempotency_key: str) -> DataRecord:
        document, _ = atomic.read(self._object_key(idempotency_key))
        if document is None:
            raise IdempotencyItemNotFoundError
        return self._record(idempotency_key, document)

    def _put_record(self, data_record: DataRecord) -> None:
        now = time.time()

        def change(current: dict | None) -> Change:
            if current is not None and current.get("owner") != self.owner:
                expired = bool(current.get("expiry")) and now > current["expiry"]
                abandoned = (
                    current.get("status") == "INPROGRESS"
                    and current.get("in_progress_expiry_ms") is not None
                    and now * 1000 > current["in_progress_expiry_ms"]
                )
                if not (expired or abandoned):
                    raise IdempotencyItemAlreadyExistsError
            return Change(self._document(data_record))

        atomic.update(self._object_key(data_record.idempotency_key), change, what="an idempotency record")

    def _update_record(self, data_record: DataRecord) -> None:
        # Runs after the request succeeded: failing here must not turn its success into an error. If the
        # response cannot be stored, the in-progress record is removed instead, so that a retry runs the request
        # again — and the registry's token makes that run answer with the change already made.
        key = self._object_key(data_record.idempotency_key)
        try:
            atomic.update(key, lambda _: Change(self._document(data_record)), what="an idempotency record")
        except Exception as error:
            logger.warning("idempotency response not saved", extra={"error": type(error).__name__})
            self._delete_record(data_record)

    def _delete_record(self, data_record: DataRecord) -> None:
        # Runs after the request failed: keep the request's own error, not this one.
        try:
            storage.delete(self._object_key(data_record.idempotency_key))
        except Exception as error:
            logger.warning("idempotency record not removed", extra={"error": type(error).__name__})


def _canonical_body(app: ApiGatewayResolver) -> str:
    """The body as compared between requests: its JSON with sorted keys (parsed, and cached, by request
    validation), or as sent for a route that takes no body and so never parsed what it was given."""
    try:
        body = app.current_event.json_body
    except (ValueError, ServiceError):  # json.JSONDecodeError included
        return str(app.current_event.get("body"))
    if body is None:
        return ""
    return json.dumps(body, sort_keys=True, separators=(",", ":")) if isinstance(body, dict) else str(body)


def _request_id(app: ApiGatewayResolver) -> str:
    """Unique to this invocation (a replayed event file, as `sam local invoke` sends, is a new request)."""
    if REQUEST_ID not in app.context:
        app.append_context(**{REQUEST_ID: uuid.uuid4().hex})
    return str(app.context[REQUEST_ID])


def request_token(app: ApiGatewayResolver) -> str:
    """The token a mutation hands the registry: derived from the Idempotency-Key when there is one (so a retry
    of the request is recognised), else unique to this request (so a retried write within it is)."""
    return str(app.context.get(TOKEN) or f"req:{_request_id(app)}")


def is_keyed(token: str) -> bool:
    """Whether a token comes from an Idempotency-Key (and so can match an earlier request's change)."""
    return token.startswith(KEYED)


def _as_dict(response: Response) -> dict[str, Any]:
    body = response.body
    if isinstance(body, bytes):
        body = body.decode()
    return {
        "status": response.status_code,
        "content_type": response.content_type,
        "headers": dict(response.headers or {}),
        "body": body,
    }


def idempotent(app: ApiGatewayResolver, next_middleware: NextMiddleware) -> Response:
    """Route middleware for the mutating routes (see the module docstring)."""
    raw = app.current_event.headers.get(HEADER)
    if raw is None:
        return next_middleware(app)
    if not _KEY.fullmatch(raw):
        raise bad_request(
            "the Idempotency-Key header must be 1-255 printable ASCII characters without spaces",
            code="invalid_idempotency_key",
        )
    model = keys.validate_name(app.current_event.path_parameters.get("model"), "model")
    scoped = f"{audit.principal(app.current_event.raw_event)}\n{raw}"
    event = app.current_event
    request = {
        "method": event.http_method,
        "path": event.path,
        "query": sorted((event.get("multiValueQueryStringParameters") or {}).items()),
        "body": hashlib.sha256(_canonical_body(app).encode("utf-8", "surrogatepass")).hexdigest(),
    }
    data = {"key": scoped, "request": request}
    # The registry token names the key and the request: a key reused for another request (after its record
    # expired) must not find the first request's change.
    fingerprint = json.dumps(data, sort_keys=True, ensure_ascii=True)
    app.append_context(**{TOKEN: KEYED + hashlib.sha256(fingerprint.encode()).hexdigest()[:40]})
    replayed: dict[str, bool] = {}

    def mark_replayed(response: Any, _record: DataRecord) -> Any:
        replayed["yes"] = True
        return response

    config = IdempotencyConfig(
        event_key_jmespath="key",
        payload_validation_jmespath="request",
        raise_on_no_idempotency_key=True,
        expires_after_seconds=get_settings().idempotency_ttl_seconds,
        hash_function="sha256",
        response_hook=mark_replayed,
    )
    if app.lambda_context is not None:
        config.register_lambda_context(app.lambda_context)
    handler = IdempotencyHandler(
        function=lambda: _as_dict(next_middleware(app)),
        function_payload=data,
        config=config,
        persistence_store=S3PersistenceLayer(owner=_request_id(app), model=model),
        key_prefix="mlservice",
        function_args=(),
        function_kwargs={},
    )
    try:
        result = handler.handle()
    except IdempotencyValidationError:
        raise ServiceError(
            "idempotency_key_reused",
            "this Idempotency-Key was already used for a different request (method, path, query or body); "
            "use a new key for a new request",
        ) from None
    except IdempotencyAlreadyInProgressError:
        raise ServiceError(
            "idempotency_key_in_progress",
            "a request with this Idempotency-Key is still running; retry once it has finished",
            retry_after=IN_PROGRESS_RETRY_AFTER,
        ) from None
    except IdempotencyPersistenceLayerError as error:
        cause = error.__cause__
        if isinstance(cause, ServiceError):  # the store was unavailable (503) or too contended
            raise cause from None
        raise
    headers = {**result.get("headers", {}), **({REPLAYED_HEADER: "true"} if replayed else {})}
    return Response(
        status_code=result["status"], content_type=result["content_type"], body=result["body"], headers=headers
    )
