"""POST /models/{model}/predict: online predictions from a stage or a pinned version."""

from __future__ import annotations

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.api_gateway import Router

from mlservice.api.schemas import ModelName, PredictRequest, StageQuery, VersionQuery
from mlservice.observability import metrics
from mlservice.serving import predictor
from mlservice.serving.model_cache import Selection

router = Router()
# Set when the registry could not be re-read (S3 unavailable) and an older copy chose the model: its age.
STALE_HEADER = "X-Registry-Stale-Seconds"


def stale_headers(selection: Selection) -> dict[str, str] | None:
    if selection.stale_seconds is None:
        return None
    return {STALE_HEADER: str(round(selection.stale_seconds))}


@router.post(
    "/models/<model>/predict",
    summary="Predict with the model a stage serves (default production) or a given version",
    tags=["prediction"],
)
def predict(
    model: ModelName, request: PredictRequest, stage: StageQuery = None, version: VersionQuery = None
) -> Response[dict]:
    # `request` has checked the body's shape; the rows themselves are read from the already-parsed body rather
    # than copied out of the model again (up to 10,000 rows on the hot path).
    body = {k: v for k, v in router.current_event.json_body.items() if v is not None}
    selection = predictor.select_model(model, stage, version)
    result = predictor.predict(selection, body)
    metrics.add_metric(name="PredictedRows", unit="Count", value=len(result["predictions"]))
    return Response(status_code=200, content_type="application/json", body=result, headers=stale_headers(selection))
