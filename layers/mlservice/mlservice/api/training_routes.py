"""POST /models/{model}/versions: train a new version."""

from __future__ import annotations

import time

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.api_gateway import Router

from mlservice import audit, registry
from mlservice.api.idempotency import idempotent, is_keyed, request_token
from mlservice.api.schemas import IAM_SIGNED, ModelName
from mlservice.errors import ServiceError, bad_request
from mlservice.observability import logger, metrics
from mlservice.settings import get_settings
from mlservice.training.request import TrainRequest

router = Router()
# Left after the fit's deadline for publishing the version (the artifact and its metadata, two registry
# writes) and answering.
PUBLISH_SECONDS = 5.0


def _deadline() -> float:
    """The fit's deadline: TRAINING_DEADLINE_SECONDS, but never past the invocation's own end."""
    seconds = get_settings().training_deadline_seconds
    context = router.api_resolver.lambda_context
    if context is not None:
        seconds = min(seconds, context.get_remaining_time_in_millis() / 1000 - PUBLISH_SECONDS)
    return time.monotonic() + seconds


def _queued(model: str, token: str) -> Response[dict]:
    from mlservice.training import jobs

    body = router.current_event.json_body
    queued = jobs.enqueue(model, body, token, audit.from_event(router.current_event.raw_event))
    metrics.add_metric(name="TrainingsQueued", unit="Count", value=1)
    logger.info("training queued", extra={"model": model, "version": queued["version"], "status": queued["status"]})
    location = f"{router.api_resolver._get_base_path().rstrip('/')}/models/{model}/versions/{queued['version']}"
    return Response(status_code=202, content_type="application/json", body=queued, headers={"Location": location})


@router.post(
    "/models/<model>/versions",
    summary="Train a new version of a model",
    description="Fits one scikit-learn Pipeline (preprocessing included) on the given data, evaluates it on a "
    "holdout, stores it and returns its metadata (201). Synchronous, under a training deadline (504 when it "
    'passes, nothing published). With `"async": true`, or when the estimate exceeds the request\'s budget and a '
    "train queue exists, the training is queued instead: 202 {version, status: queued} and a Location to poll "
    "(GET .../versions/{v}: queued, training with progress, ready, or failed with the error).",
    tags=["training"],
    security=IAM_SIGNED,
    responses={201: {"description": "the new version's metadata"}, 202: {"description": "queued"}},
    middlewares=[idempotent],
)
def train_version(model: ModelName, request: TrainRequest) -> Response[dict]:
    from mlservice.training import jobs

    token = request_token(router.api_resolver)
    # A retry (same Idempotency-Key and request) of a training that published: answer with it, do not train.
    published = registry.find_by_token(model, token) if is_keyed(token) else None
    if published is None and request.search is not None:
        from mlservice.training import search

        search.candidates(request)  # refused now, before anything is queued, when malformed or over limits
        if not jobs.queue_url():
            raise bad_request("a search runs on the train queue, which this deployment lacks", code="invalid_search")
        return _queued(model, token)
    if published is None and (request.run_async or request.n_iter is not None):
        if request.n_iter is not None:
            raise bad_request("n_iter needs a search", code="invalid_search")
        return _queued(model, token)
    if published is None:
        from mlservice.training.trainer import train_model  # training imports stay off other routes' paths

        try:
            trained = train_model(request, _deadline())
        except ServiceError as error:
            if error.code == "training_too_expensive" and jobs.queue_url():
                return _queued(model, token)  # too long for a request: a worker has 15 minutes
            raise
        actor = audit.from_event(router.current_event.raw_event)
        published = registry.publish_version(
            model, trained.artifact, trained.metadata, token=token, actor=actor, onnx=trained.onnx
        )
        metrics.add_metric(name="ModelsTrained", unit="Count", value=1)
    logger.info(
        "trained",
        extra={
            "model": model,
            "version": published["version"],
            "algorithm": published.get("algorithm"),
            "rows": published.get("training", {}).get("rows"),
            "seconds": published.get("training", {}).get("seconds"),
        },
    )
    return Response(status_code=201, content_type="application/json", body=published)
