"""Powertools Logger, Tracer and Metrics, configured once and shared by every function.

Request bodies, feature values and predictions are never logged or traced: the Logger does not log events
and the Tracer does not capture responses.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.logging import correlation_paths

logger = Logger(service=os.environ.get("POWERTOOLS_SERVICE_NAME", "mlservice"))
tracer = Tracer(service=os.environ.get("POWERTOOLS_SERVICE_NAME", "mlservice"))
metrics = Metrics(namespace=os.environ.get("POWERTOOLS_METRICS_NAMESPACE", "ServerlessML"))


def api_handler(route: Callable[[dict, Any], dict]) -> Callable[[dict, Any], dict]:
    """Wrap an API Gateway entry point with correlation ids, tracing and metrics."""

    @logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST, log_event=False)
    @tracer.capture_lambda_handler(capture_response=False)
    @metrics.log_metrics
    def handler(event: dict, context: Any) -> dict:
        response = route(event, context)
        # one count per status class: errors by function without parsing logs
        metrics.add_metric(name=f"Responses{int(response['statusCode']) // 100}xx", unit="Count", value=1)
        return response

    return handler
