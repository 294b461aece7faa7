"""One way to build a function's API: Powertools' resolver with validation, the documented error shape,
strict JSON, and the payload limit checked before anything is parsed.

Every error leaves as `{"error": {"code", "message"}}` (the Open Inference Protocol routes under /v2 use that
protocol's `{"error": "<message>"}` instead). Unexpected exceptions are logged with their stack trace and
answered with a 500 that reveals nothing.
"""

from __future__ import annotations

import json
from typing import Any

from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response
from aws_lambda_powertools.event_handler.api_gateway import Router
from aws_lambda_powertools.event_handler.openapi.exceptions import RequestValidationError

from mlservice.errors import ServiceError, too_large
from mlservice.observability import logger
from mlservice.settings import get_settings

V2_PREFIX = "/v2"


def _reject_constant(name: str) -> Any:
    # json.loads accepts NaN and Infinity, which are not JSON; refuse them where they are parsed.
    raise json.JSONDecodeError(f"{name} is not valid JSON (use null for a missing value)", name, 0)


def strict_json_loads(text: str | bytes) -> Any:
    return json.loads(text, parse_constant=_reject_constant)


def _dumps(body: Any) -> str:
    return json.dumps(body, separators=(",", ":"), allow_nan=False)


def error_response(status: int, code: str, message: str, path: str = "") -> Response:
    """The documented error body, or the V2 protocol's flat one for /v2 routes."""
    body: dict = {"error": message} if path.startswith(V2_PREFIX) else {"error": {"code": code, "message": message}}
    return Response(status_code=status, content_type="application/json", body=_dumps(body))


def _describe_validation(errors: list[dict]) -> tuple[str, str]:
    first = errors[0] if errors else {}
    loc = [str(p) for p in first.get("loc", ())]
    if first.get("type") == "json_invalid":
        detail = (first.get("ctx") or {}).get("error", "malformed JSON")
        return "invalid_json", f"request body is not valid JSON: {detail}"
    if loc and loc[0] == "body" and len(loc) == 1 and first.get("type") == "missing":
        return "invalid_request", "request body is required"
    where = ".".join(loc[1:]) if len(loc) > 1 else (loc[0] if loc else "request")
    section = {"body": "body field", "path": "path parameter", "query": "query parameter"}.get(
        loc[0] if loc else "", ""
    )
    message = f"{section} {where!r}: {first.get('msg', 'is invalid')}".strip()
    if len(errors) > 1:
        message += f" (and {len(errors) - 1} more problem(s))"
    return "invalid_request", message


def make_resolver(*routers: Router) -> APIGatewayRestResolver:
    """A validating resolver serving the given routers, with every error mapped to the documented shape."""
    app = APIGatewayRestResolver(enable_validation=True, json_body_deserializer=strict_json_loads, serializer=_dumps)
    for router in routers:
        app.include_router(router)

    @app.exception_handler(ServiceError)
    def _service_error(error: ServiceError) -> Response:
        if error.status >= 500:
            logger.error("request failed", extra={"code": error.code, "error_message": error.message})
        return error_response(error.status, error.code, error.message, app.current_event.path)

    @app.exception_handler(RequestValidationError)
    def _validation_error(error: RequestValidationError) -> Response:
        code, message = _describe_validation(list(error.errors()))
        return error_response(400, code, message, app.current_event.path)

    @app.not_found
    def _no_route(_: Exception) -> Response:
        event = app.current_event
        return error_response(404, "route_not_found", f"no route for {event.http_method} {event.path}", event.path)

    @app.exception_handler(Exception)
    def _unexpected(error: Exception) -> Response:
        logger.exception("unhandled error")
        return error_response(
            500, "internal_error", "internal error; the request id is in the logs", app.current_event.path
        )

    return app


def _header_names(headers: dict | None, name: str) -> list[str]:
    return [k for k in (headers or {}) if k.lower() == name]


def prepare_event(event: dict) -> dict:
    """Normalise what API Gateway hands over before routing.

    Bodies are parsed as JSON whatever Content-Type the client sent (curl's -d sends form encoding, and
    Open Inference Protocol clients send none), so the header is rewritten rather than trusted.
    """
    if event.get("body") is None:
        return event
    event = dict(event)
    for field in ("headers", "multiValueHeaders"):
        headers = dict(event.get(field) or {})
        for key in _header_names(headers, "content-type"):
            del headers[key]
        headers["content-type"] = ["application/json"] if field == "multiValueHeaders" else "application/json"
        event[field] = headers
    return event


def body_size(event: dict) -> int:
    body = event.get("body") or ""
    size = len(body) if isinstance(body, str) else 0
    return size * 3 // 4 if event.get("isBase64Encoded") else size


def resolve(app: APIGatewayRestResolver, event: dict, context: Any) -> dict:
    """Route one API Gateway event, refusing oversized bodies with 413 before parsing them."""
    limit = get_settings().max_body_bytes
    if body_size(event) > limit:
        path = event.get("path") or ""
        hint = (
            "upload the data under datasets/ and pass data.s3_key"
            if path.endswith("/versions")
            else "use batch prediction (drop a file under batch/input/) for bulk data"
        )
        error = too_large(f"request body exceeds {limit} bytes; {hint}")
        response = error_response(error.status, error.code, error.message, path)
        return {
            "statusCode": response.status_code,
            "headers": {"Content-Type": "application/json"},
            "body": response.body,
            "isBase64Encoded": False,
        }
    return app.resolve(prepare_event(event), context)
