"""How a loaded model computes its outputs: one small interface, one engine per artifact format.

A runner turns the feature matrix `mlservice.features.rows_to_matrix` builds (floats, and strings for
categorical and text features) into labels or values and, for classifiers that have them, class
probabilities. `SklearnRunner` calls the unpickled scikit-learn pipeline (the path that needs scikit-learn);
`mlservice.serving.onnx_runner.OnnxRunner` runs the version's ONNX export with onnxruntime (the path the slim
predict function takes).
"""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np


class Runner(Protocol):
    has_probabilities: bool

    def outputs(self, matrix: np.ndarray, with_probabilities: bool) -> tuple[np.ndarray, np.ndarray | None]:
        """(labels or values, probabilities or None) for every row of `matrix`."""
        ...


class SklearnRunner:
    """The unpickled scikit-learn pipeline."""

    def __init__(self, pipeline: Any, is_classifier: bool) -> None:
        self.pipeline = pipeline
        self.has_probabilities = is_classifier and hasattr(pipeline, "predict_proba")

    def outputs(self, matrix: np.ndarray, with_probabilities: bool) -> tuple[np.ndarray, np.ndarray | None]:
        predictions = self.pipeline.predict(matrix)
        probabilities = self.pipeline.predict_proba(matrix) if with_probabilities and self.has_probabilities else None
        return predictions, probabilities
