"""Predictions from a loaded model, as JSON-ready values."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from mlservice import keys
from mlservice.errors import bad_request
from mlservice.serving.inputs import matrix_from_body
from mlservice.serving.model_cache import LoadedModel, cache
from mlservice.settings import get_settings

DEFAULT_STAGE = "production"


def json_values(array: np.ndarray) -> list:
    """numpy → Python lists; non-finite numbers (an overflowing regressor) become null rather than invalid JSON."""
    values = array.tolist()
    if array.dtype.kind == "f" and not np.isfinite(array).all():
        values = [v if math.isfinite(v) else None for v in values]
    return values


def select_model(model: str, stage: str | None, version: int | None) -> tuple[LoadedModel, str | None]:
    """The loaded model a request addresses: by version when given, else by stage (default production)."""
    keys.validate_name(model, "model")
    if version is not None and stage is not None:
        raise bad_request("give either stage or version, not both", code="invalid_request")
    if version is not None:
        return cache.get(model, keys.validate_version(version)), None
    stage = keys.validate_name(stage or DEFAULT_STAGE, "stage")
    return cache.get(model, cache.resolve_stage(model, stage)), stage


def predict_matrix(loaded: LoadedModel, matrix: np.ndarray, with_probabilities: bool = True) -> dict[str, Any]:
    result: dict[str, Any] = {"predictions": json_values(loaded.pipeline.predict(matrix))}
    if with_probabilities and loaded.has_probabilities:
        result["probabilities"] = loaded.pipeline.predict_proba(matrix).tolist()
        result["classes"] = loaded.classes
    return result


def predict(model: str, body: dict[str, Any], stage: str | None = None, version: int | None = None) -> dict[str, Any]:
    """Serve one predict request of the REST API."""
    loaded, stage = select_model(model, stage, version)
    matrix = matrix_from_body(body, loaded.features, get_settings().max_predict_rows)
    result = predict_matrix(loaded, matrix)
    result["model"] = {"name": loaded.name, "version": loaded.version, "stage": stage}
    return result
