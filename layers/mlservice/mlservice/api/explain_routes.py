"""POST /models/{model}/explain: per-row, per-feature contributions to the selected model's output."""

from __future__ import annotations

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.api_gateway import Router

from mlservice.api.predict_routes import stale_headers
from mlservice.api.schemas import ExplainRequest, ModelName, StageQuery, VersionQuery
from mlservice.observability import metrics

router = Router()


@router.post(
    "/models/<model>/explain",
    summary="Explain predictions: a base value and one additive contribution per input feature, per row",
    description="Same body formats, row limit and stage/version selection as predict. For every row: the "
    "prediction, the model's output (class probabilities, the value, or with output=decision the decision "
    "function), a base value (the average output over the training data) and one contribution per input column "
    "(text columns also list their top tokens), with base + Σ contributions = output within `tolerance`. "
    "Linear models and trees are explained exactly (coefficient × (x − mean); path-dependent TreeSHAP); other "
    "models by permutation-sampling Shapley values against a training background, with standard errors. "
    "400 explanation_too_expensive names how many rows fit in one request.",
    tags=["prediction"],
)
def explain(
    model: ModelName, request: ExplainRequest, stage: StageQuery = None, version: VersionQuery = None
) -> Response[dict]:
    from mlservice.serving import explanations  # scikit-learn stays out of the import of every other route

    body = {k: v for k, v in router.current_event.json_body.items() if v is not None}
    result, selection = explanations.explain(model, stage, version, body)
    metrics.add_metric(name="ExplainedRows", unit="Count", value=len(result["rows"]))
    return Response(status_code=200, content_type="application/json", body=result, headers=stale_headers(selection))
