"""Predictions from a loaded model, as JSON-ready values."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from mlservice import keys
from mlservice.errors import bad_request
from mlservice.serving.inputs import matrix_from_body
from mlservice.serving.model_cache import LoadedModel, Selection, cache
from mlservice.settings import get_settings

DEFAULT_STAGE = "production"


def json_values(array: np.ndarray) -> list:
    """numpy → Python lists; non-finite numbers (an overflowing regressor) become null rather than invalid JSON."""
    values = array.tolist()
    if array.dtype.kind == "f" and not np.isfinite(array).all():
        values = [v if math.isfinite(v) else None for v in values]
    return values


def select_model(model: str, stage: str | None, version: int | None, onnx_ok: bool = True) -> Selection:
    """The loaded model a request addresses: by version when given, else by stage (default production); with
    `onnx_ok=False` its scikit-learn pipeline even when it has an ONNX export."""
    keys.validate_name(model, "model")
    if version is not None and stage is not None:
        raise bad_request("give either stage or version, not both", code="invalid_request")
    if version is not None:
        return cache.select(model, None, keys.validate_version(version), onnx_ok)
    return cache.select(model, keys.validate_name(stage or DEFAULT_STAGE, "stage"), None, onnx_ok)


def run_model(
    loaded: LoadedModel, matrix: np.ndarray, with_probabilities: bool
) -> tuple[np.ndarray, np.ndarray | None]:
    """Predictions (and probabilities) of a matrix of finite values, or 400 `invalid_value` when the model
    cannot use them: a value far beyond what it was trained on overflows in its scaling (1e308 becomes inf,
    which scikit-learn refuses) or turns its probabilities into NaN."""
    try:
        with np.errstate(over="ignore", invalid="ignore"):
            predictions, probabilities = loaded.runner.outputs(matrix, with_probabilities)
    except (ValueError, FloatingPointError, OverflowError):
        raise bad_request(
            "a value is too large for this model: it overflows in the model's own scaling", code="invalid_value"
        ) from None
    if probabilities is not None and not np.isfinite(probabilities).all():
        row = int(np.flatnonzero(~np.isfinite(probabilities).all(axis=1))[0])
        raise bad_request(
            f"row {row} holds a value too large for this model: its probabilities are not numbers",
            code="invalid_value",
        )
    return predictions, probabilities


def predict_matrix(loaded: LoadedModel, matrix: np.ndarray, with_probabilities: bool = True) -> dict[str, Any]:
    predictions, probabilities = run_model(loaded, matrix, with_probabilities)
    result: dict[str, Any] = {"predictions": json_values(predictions)}
    if probabilities is not None:
        result["probabilities"] = probabilities.tolist()
        result["classes"] = loaded.classes
    return result


def predict(selection: Selection, body: dict[str, Any]) -> dict[str, Any]:
    """Serve one predict request of the REST API with the selected model."""
    loaded = selection.loaded
    matrix = matrix_from_body(body, loaded.features, get_settings().max_predict_rows)
    result = predict_matrix(loaded, matrix)
    result["model"] = {"name": loaded.name, "version": loaded.version, "stage": selection.stage}
    return result
