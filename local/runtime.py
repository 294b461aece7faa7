"""Run the template's functions in this process, as API Gateway and Lambda would.

An HTTP request is matched against the template's routes, turned into the REST proxy event API Gateway
would send, and handed to the function's handler loaded from its CodeUri with the layer on the path and the
environment the template gives it. The tests and `make run` share this, so what is tested is what is served.
"""

from __future__ import annotations

import base64
import gzip
import json
import os
import threading
from dataclasses import dataclass
from typing import Any

from local.lambda_events import LambdaContext, api_event
from local.template import Template, load_handler


@dataclass
class HttpResponse:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class LocalLambda:
    """The template's functions, invocable by name or through HTTP-shaped calls.

    Invocations run one at a time, as each Lambda sandbox runs one request at a time: Powertools keeps the
    current request on class attributes (the resolver's event and context, the metrics buffer), so two
    invocations sharing this process concurrently would read each other's requests."""

    def __init__(self, template: Template | None = None, substitutions: dict[str, str] | None = None) -> None:
        self.template = template or Template()
        self.substitutions = substitutions or {}
        self._handlers: dict[str, Any] = {}
        self._one_at_a_time = threading.RLock()

    def environment(self, function_name: str) -> dict[str, str]:
        return self.template.resolve_environment(self.template.functions[function_name], self.substitutions)

    def invoke(self, function_name: str, event: dict, context: LambdaContext | None = None) -> Any:
        """Call a function's handler with its template environment in force."""
        function = self.template.functions[function_name]
        with self._one_at_a_time:
            os.environ.update(self.environment(function_name))
            handler = self._handlers.get(function_name)
            if handler is None:
                handler = self._handlers[function_name] = load_handler(function, self.template)
            timeout = float(function.properties.get("Timeout", self.template.globals.get("Timeout", 3)))
            memory = int(function.properties.get("MemorySize", self.template.globals.get("MemorySize", 128)))
            context = context or LambdaContext(
                function_name=function_name, timeout_seconds=timeout, memory_limit_in_mb=memory
            )
            return handler(event, context)

    def http(
        self,
        method: str,
        path: str,
        *,
        query: dict[str, list[str]] | None = None,
        headers: dict[str, list[str]] | None = None,
        body: bytes | str | None = None,
        identity: dict[str, Any] | None = None,
    ) -> HttpResponse:
        """Serve one request through the template's routes, the way API Gateway's proxy integration does
        (`identity`: the caller API Gateway would have authenticated, see lambda_events.api_event)."""
        found = self.template.find_route(method, path)
        if found is None:
            message = {"error": {"code": "route_not_found", "message": f"no route for {method.upper()} {path}"}}
            return HttpResponse(404, {"Content-Type": "application/json"}, json.dumps(message).encode())
        route, params = found
        event = api_event(method, path, route.resource, params, query, headers, body, identity=identity)
        result = self.invoke(route.function, event)
        raw = result.get("body") or ""
        payload = base64.b64decode(raw) if result.get("isBase64Encoded") else raw.encode("utf-8")
        response_headers = {k: v[-1] for k, v in (result.get("multiValueHeaders") or {}).items()}
        response_headers.update(result.get("headers") or {})
        accepted = ",".join(v for k, vs in (headers or {}).items() if k.lower() == "accept-encoding" for v in vs)
        threshold = self.template.minimum_compression_size
        if "gzip" in accepted.lower() and threshold is not None and len(payload) >= threshold:
            # What API Gateway does with the template's MinimumCompressionSize (mlservice never gzips itself).
            payload = gzip.compress(payload, compresslevel=6)
            response_headers["Content-Encoding"] = "gzip"
        return HttpResponse(int(result["statusCode"]), response_headers, payload)
