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
    # `request` has checked the body's shape; the rows themselves are read from the already-parsed body rather
    # than copied out of the model again (up to 10,000 rows on the hot path).
    body = {k: v for k, v in router.current_event.json_body.items() if v is not None}
    result = predictor.predict(model, body, stage=stage, version=version)
    metrics.add_metric(name="PredictedRows", unit="Count", value=len(result["predictions"]))
    return result
