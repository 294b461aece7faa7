"""POST /models/{model}/versions: train a new version."""

from __future__ import annotations

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.api_gateway import Router

from mlservice import keys, registry
from mlservice.api.schemas import TrainRequest
from mlservice.observability import logger, metrics

router = Router()


@router.post(
    "/models/<model>/versions",
    summary="Train a new version of a model",
    description="Fits one scikit-learn Pipeline (preprocessing included) on the given data, evaluates it on a "
    "holdout, stores it and returns its metadata. Synchronous: API Gateway allows 29 s.",
    tags=["training"],
    responses={201: {"description": "the new version's metadata"}},
)
def train_version(model: str, request: TrainRequest) -> Response[dict]:
    keys.validate_name(model, "model")  # before the fit, which may take many seconds
    from mlservice.training.trainer import train  # training imports stay off every other route's path

    artifact, metadata = train(request.model_dump(exclude_none=True))
    published = registry.publish_version(model, artifact, metadata)
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
    metrics.add_metric(name="ModelsTrained", unit="Count", value=1)
    return Response(status_code=201, content_type="application/json", body=published)
