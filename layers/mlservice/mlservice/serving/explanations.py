"""POST /models/{model}/explain: why the selected model predicts what it does for each row sent.

The rows are read exactly as predict reads them (same formats, same row limit) and explained by the version's
scikit-learn pipeline, which holds what an explanation needs (coefficients, trees, the training background the
artifact carries); an ONNX export does not, so this runs only in a function with scikit-learn. How each
algorithm is explained, and the bound on the cost, are in mlservice.explain.explainer.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from mlservice.errors import ServiceError, bad_request
from mlservice.serving import predictor
from mlservice.serving.inputs import matrix_from_body
from mlservice.settings import get_settings


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)


def _overflow(where: str = "a row holds ") -> ServiceError:
    return bad_request(
        f"{where}a value too large for this model: its output (or its decision function) is not a number",
        code="invalid_value",
    )


def explain(model: str, stage: str | None, version: int | None, body: dict[str, Any]) -> tuple[dict, Any]:
    """(the JSON-ready response, the selection that chose the version)."""
    from mlservice.explain import explainer  # scikit-learn: this function has it, the slim one never gets here

    selection = predictor.select_model(model, stage, version, onnx_ok=False)
    loaded = selection.loaded
    settings = get_settings()
    matrix = matrix_from_body(body, loaded.features, settings.max_predict_rows)
    # What predict refuses (a value so large the model's own scaling overflows), explain refuses alike, first.
    predictor.run_model(loaded, matrix, loaded.has_probabilities)
    try:
        with np.errstate(over="ignore", invalid="ignore"):
            result = explainer.explain(
                loaded.runner.pipeline,
                matrix,
                loaded.features,
                loaded.metadata["task"],
                loaded.classes,
                output=body.get("output"),
                max_evaluations=settings.explain_max_evaluations,
            )
    except (ValueError, FloatingPointError, OverflowError):
        raise _overflow() from None  # a row mixed with a background row overflowed
    for number, row in enumerate(result["rows"]):
        if not all(_finite(v) for v in [*row["output_value"], *row["base_value"]]) or not all(
            _finite(v) for values in row["contributions"].values() for v in values
        ):
            raise _overflow(f"row {number} holds ")
    result["model"] = {"name": loaded.name, "version": loaded.version, "stage": selection.stage}
    return result, selection
