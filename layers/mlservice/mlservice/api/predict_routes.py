"""POST /models/{model}/predict: online predictions from a stage or a pinned version."""

from __future__ import annotations

from typing import Annotated

from aws_lambda_powertools.event_handler.api_gateway import Router
from aws_lambda_powertools.event_handler.openapi.params import Query

from mlservice.api.schemas import PredictRequest
from mlservice.observability import metrics
from mlservice.serving import predictor

router = Router()


@router.post(
    "/models/<model>/predict",
    summary="Predict with the model a stage serves (default production) or a given version",
    tags=["prediction"],
)
def predict(
    model: str,
    request: PredictRequest,
    stage: Annotated[str | None, Query(description="stage to serve from (default production)")] = None,
    version: Annotated[int | None, Query(description="a version number, instead of a stage")] = None,
) -> dict:
    result = predictor.predict(model, request.model_dump(exclude_none=True), stage=stage, version=version)
    metrics.add_metric(name="PredictedRows", unit="Count", value=len(result["predictions"]))
    return result
