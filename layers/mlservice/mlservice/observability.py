"""Powertools Logger, Tracer and Metrics, configured once and shared by every function.

Request bodies, feature values and predictions are never logged or traced: the Logger does not log events
and the Tracer does not capture responses.

The Tracer exists only where tracing is on, as Powertools itself decides (`Tracer._is_tracer_disabled`: off
with POWERTOOLS_TRACE_DISABLED=true, outside Lambda, under `sam local`). Creating one imports the X-Ray SDK,
120–140 ms of every cold start even when tracing is disabled; where it is off the handlers are not wrapped.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.logging import correlation_paths

SERVICE = os.environ.get("POWERTOOLS_SERVICE_NAME", "mlservice")
logger = Logger(service=SERVICE)
metrics = Metrics(namespace=os.environ.get("POWERTOOLS_METRICS_NAMESPACE", "ServerlessML"))
# Powertools' own test, made before a Tracer is built (a private static method of the pinned Powertools;
# tests/test_hot_path.py checks it still answers for the environments above).
tracing = not Tracer._is_tracer_disabled()
tracer: Tracer | None = Tracer(service=SERVICE) if tracing else None


def api_handler(route: Callable[[dict, Any], dict]) -> Callable[[dict, Any], dict]:
    """Wrap an API Gateway entry point with correlation ids, tracing (where on) and metrics."""

    @metrics.log_metrics
    def handler(event: dict, context: Any) -> dict:
        response = route(event, context)
        # one count per status class: errors by function without parsing logs
        metrics.add_metric(name=f"Responses{int(response['statusCode']) // 100}xx", unit="Count", value=1)
        return response

    if tracer is not None:
        handler = tracer.capture_lambda_handler(handler, capture_response=False)
    return logger.inject_lambda_context(
        handler, correlation_id_path=correlation_paths.API_GATEWAY_REST, log_event=False
    )
