"""One way to build a function's API: Powertools' REST resolver with the service's request rules and its one
error shape.

- Request content (mlservice.api.content) is enforced where Powertools reads the body, so it applies before
  validation looks at a single field: the body is JSON whatever Content-Type was sent, over MAX_BODY_BYTES is
  413, non-UTF-8 or lone surrogates are 400 `invalid_encoding`, malformed, NaN, over-long numbers or over-deep
  nesting are 400 `invalid_json`.
- Validation is pydantic's (mlservice.fields maps its errors to the documented codes).
- Every error leaves as `{"error": {"code", "message"}}` (the Open Inference Protocol routes under /v2 use that
  protocol's `{"error": "<message>"}`), with `Retry-After` on the ones to retry (503, 409 in progress).
  Unexpected exceptions are logged with their stack trace and answered with a 500 that reveals nothing.

- Route arguments are never formatted into a log message (see `quiet_route_arguments`).

A function's handler is then `api_handler(make_resolver(<its routers>).resolve)`: no glue of its own.
"""

from __future__ import annotations

import base64
import json
import re
from functools import cached_property
from typing import Any

import orjson
from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response
from aws_lambda_powertools.event_handler.api_gateway import Router
from aws_lambda_powertools.event_handler.middlewares import NextMiddleware
from aws_lambda_powertools.event_handler.openapi.exceptions import RequestValidationError
from aws_lambda_powertools.utilities.data_classes import APIGatewayProxyEvent

from mlservice import fields
from mlservice.api import content
from mlservice.errors import ServiceError
from mlservice.observability import logger
from mlservice.serving import fallback

V2_PREFIX = "/v2"


def _dumps(body: Any) -> str:
    """Compact JSON. orjson writes a 10,000-row prediction in 0.7 ms where the standard library takes 17 ms (a
    fifth of such a request); what orjson refuses (integers beyond 64 bits, keys that are not strings) goes the
    standard library's way. Non-finite floats, which the service turns into null before answering, would be
    null here too."""
    try:
        return orjson.dumps(body).decode()
    except TypeError:
        return json.dumps(body, separators=(",", ":"), allow_nan=False)


def error_response(error: ServiceError, path: str = "") -> Response:
    """The documented error body (or the V2 protocol's flat one for /v2 routes), with Retry-After if set."""
    body: dict = {"error": error.message} if path.startswith(V2_PREFIX) else error.to_body()
    headers = {"Retry-After": str(error.retry_after)} if error.retry_after is not None else None
    return Response(status_code=error.status, content_type="application/json", body=_dumps(body), headers=headers)


class RequestEvent(APIGatewayProxyEvent):
    """An API Gateway proxy event whose body is decoded under the service's content rules."""

    @cached_property
    def decoded_body(self) -> str | None:
        return content.body_text(self.body, bool(self.is_base64_encoded), self.path, self.headers)


def _as_json(event: dict) -> dict:
    """The event with a JSON Content-Type whenever it has a body: the body is parsed as JSON whatever was sent."""
    if event.get("body") is None:
        return event
    event = dict(event)
    for field in ("headers", "multiValueHeaders"):
        headers = {k: v for k, v in (event.get(field) or {}).items() if k.lower() != "content-type"}
        headers["content-type"] = ["application/json"] if field == "multiValueHeaders" else "application/json"
        event[field] = headers
    return event


class RouteArguments(dict):
    """A route's validated arguments, whose repr names them without their values."""

    def __repr__(self) -> str:
        return "{" + ", ".join(f"{name!r}: ..." for name in self) + "}"


def quiet_route_arguments(app: APIGatewayRestResolver, next_middleware: NextMiddleware) -> Response:
    """Hand the route its validated arguments in a RouteArguments.

    Powertools 3.37 (pinned) calls every route through `_registered_api_adapter`, which runs
    `logger.debug(f"Calling API Route Handler: {route_args}")`: the f-string is built before `debug` can see the
    level, so every request paid for the repr of its whole pydantic body (29 % of a 10,000-row predict) and a
    debug log would have held users' feature values. A log level, a filter or a no-op `debug` cannot prevent
    an argument from being built; a cheap repr does. Request validation stores the arguments in
    `app.context["_route_args"]` and the adapter reads them from there; resolver middlewares run in between.
    tests/test_hot_path.py pins both ends."""
    arguments = app.context.get("_route_args")
    if isinstance(arguments, dict):
        app.context["_route_args"] = RouteArguments(arguments)
    return next_middleware(app)


class Resolver(APIGatewayRestResolver):
    """APIGatewayRestResolver whose events decode their bodies by the service's content rules.

    `_to_proxy_event` and `_compile_regex` are the hooks Powertools' own resolvers override (to choose their
    event class, to match trailing slashes); the version of Powertools is pinned, and every test that sends a
    request goes through here. Responses are gzipped by API Gateway itself (the template's
    MinimumCompressionSize), not here: no Lambda CPU, and request bodies need not travel base64-encoded."""

    def _to_proxy_event(self, event: dict) -> APIGatewayProxyEvent:
        return RequestEvent(_as_json(event), self._json_body_deserializer)

    @staticmethod
    def _compile_regex(rule: str, base_regex: str = "^{}/*$") -> re.Pattern:
        """A path parameter is anything between two slashes, as API Gateway routes it. Powertools' own pattern
        leaves out characters such as '"', '#' or an emoji, which would turn `/models/a"b` into a 404 for an
        unknown route; this way the parameter's validation answers, with its documented 400 `invalid_name`."""
        return re.compile(base_regex.format(re.sub(r"<(\w+)>", r"(?P<\1>[^/]+)", rule)))


def make_resolver(*routers: Router) -> Resolver:
    """A validating resolver serving the given routers, with every error mapped to the documented shape."""
    app = Resolver(enable_validation=True, json_body_deserializer=content.parse_json, serializer=_dumps)
    app.use([quiet_route_arguments])
    for router in routers:
        app.include_router(router)

    @app.exception_handler(ServiceError)
    def _service_error(error: ServiceError) -> Response:
        if error.status >= 500:
            logger.error("request failed", extra={"code": error.code, "error_message": error.message})
        return error_response(error, app.current_event.path)

    @app.exception_handler(RequestValidationError)
    def _validation_error(error: RequestValidationError) -> Response:
        return error_response(fields.service_error(list(error.errors())), app.current_event.path)

    @app.not_found
    def _no_route(_: Exception) -> Response:
        event = app.current_event
        missing = ServiceError("route_not_found", f"no route for {event.http_method} {event.path}")
        return error_response(missing, event.path)

    @app.exception_handler(fallback.NeedsScikitLearn)
    def _to_the_fallback(_: fallback.NeedsScikitLearn) -> Response:
        """A version without an ONNX export, in a function without scikit-learn: the fallback function answers
        the same event (mlservice.serving.fallback), and its answer is this one."""
        answer = fallback.forward(app.current_event.raw_event, app.lambda_context)
        body = answer.get("body") or ""
        if answer.get("isBase64Encoded"):
            body = base64.b64decode(body)
        headers = {k: v[-1] for k, v in (answer.get("multiValueHeaders") or {}).items()}
        headers.update(answer.get("headers") or {})
        return Response(status_code=int(answer["statusCode"]), body=body, headers=headers)

    @app.exception_handler(Exception)
    def _unexpected(error: Exception) -> Response:
        logger.exception("unhandled error")
        internal = ServiceError("internal_error", "internal error; the request id is in the logs")
        return error_response(internal, app.current_event.path)

    return app
