"""POST /models/{model}/explain: why the selected model predicts what it does for each row sent.

The rows are read exactly as predict reads them (same formats, same row limit) and explained by the version's
scikit-learn pipeline, which holds what an explanation needs (coefficients, trees, the training background the
artifact carries); an ONNX export does not, so this runs only in a function with scikit-learn. How each
algorithm is explained, and the bound on the cost, are in mlservice.explain.explainer.
"""

from __future__ import annotations

from typing import Any

from mlservice.serving import predictor
from mlservice.serving.inputs import matrix_from_body
from mlservice.serving.model_cache import cache
from mlservice.settings import get_settings


def explain(model: str, stage: str | None, version: int | None, body: dict[str, Any]) -> tuple[dict, Any]:
    """(the JSON-ready response, the selection that chose the version)."""
    from mlservice.explain import explainer  # scikit-learn: this function has it, the slim one never gets here

    predictor.select_model(model, stage, version)  # validates names and the stage/version choice
    if version is not None:
        selection = cache.select(model, None, version, onnx_ok=False)
    else:
        selection = cache.select(model, stage or predictor.DEFAULT_STAGE, None, onnx_ok=False)
    loaded = selection.loaded
    settings = get_settings()
    matrix = matrix_from_body(body, loaded.features, settings.max_predict_rows)
    result = explainer.explain(
        loaded.runner.pipeline,
        matrix,
        loaded.features,
        loaded.metadata["task"],
        loaded.classes,
        output=body.get("output"),
        max_evaluations=settings.explain_max_evaluations,
    )
    result["model"] = {"name": loaded.name, "version": loaded.version, "stage": selection.stage}
    return result, selection
