"""How a loaded model computes its outputs: one small interface, one engine per artifact format.

A runner turns the feature matrix `mlservice.features.rows_to_matrix` builds (floats, and strings for
categorical and text features) into labels or values and, for classifiers that have them, class
probabilities. `SklearnRunner` calls the unpickled scikit-learn pipeline (the path that needs scikit-learn);
`mlservice.serving.onnx_runner.OnnxRunner` runs the version's ONNX export with onnxruntime (the path the slim
predict function takes).
"""

from __future__ import annotations

import importlib.util
import sys
from typing import Any, Protocol

import numpy as np


class Runner(Protocol):
    has_probabilities: bool

    def outputs(self, matrix: np.ndarray, with_probabilities: bool) -> tuple[np.ndarray, np.ndarray | None]:
        """(labels or values, probabilities or None) for every row of `matrix`."""
        ...


class _PandasAbsent:
    """A `sys.meta_path` finder that fails `import pandas` at once, in a process where pandas is not installed.

    scikit-learn 1.9's `is_pandas_na` runs `from pandas import NA` inside every input check of `predict` and
    `predict_proba` (14 times per call for the service's pipelines). Without pandas each attempt fails only after
    searching every `sys.path` entry: ~0.8 ms, 38 % of a warm 1-row request. This finder, first on
    `sys.meta_path`, raises the same ModuleNotFoundError the search would end with, without searching.

    `sys.modules["pandas"] = None` would fail the import as fast but breaks scikit-learn: its `is_pandas_df`
    reads `sys.modules["pandas"]` and expects a module or a KeyError (None → AttributeError in every predict).
    The one difference the finder makes: `importlib.util.find_spec("pandas")` raises instead of returning None
    (nothing in the layer asks). It is installed only when pandas cannot be found at all, so a layer that ships
    pandas is never affected."""

    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> None:
        if fullname == "pandas":
            raise ModuleNotFoundError("No module named 'pandas'", name="pandas")
        return None


def _fail_fast_without_pandas() -> None:
    if any(isinstance(finder, _PandasAbsent) for finder in sys.meta_path) or "pandas" in sys.modules:
        return
    if importlib.util.find_spec("pandas") is None:
        sys.meta_path.insert(0, _PandasAbsent())


# How `predict` relates to `predict_proba` for each classifier the service trains, read from scikit-learn 1.9's
# source (the runtime refuses artifacts of any other version, mlservice.runtime), by the pipeline's final
# estimator class:
# - SAME: `predict` returns classes_[argmax(predict_proba)], ties included. The forest's `predict` is that very
#   code; a tree's `predict` takes the argmax of the same array `predict_proba` returns; an MLP's `predict_proba`
#   is its `predict`'s output (binary: [1 - p, p] against predict's p > 0.5); uniform kNN counts neighbours in
#   both, and both take the lowest class index of a tie.
# - MONOTONE: `predict` takes the argmax of scores (decision function, raw predictions, joint log-likelihood)
#   that `predict_proba` maps through a softmax, a sigmoid or exp, which never reverse an order but can round two
#   scores to one probability. A row whose highest probability is unique has predict's label; when any row's top
#   probability is tied, the labels come from `predict` itself (essentially never: it needs scores within a
#   rounding error).
# - Anything else calls both: SVC's `predict` uses its decision function, its `predict_proba` a separately
#   fitted calibration (1 of 569 breast_cancer rows differ), and distance-weighted kNN sums its weights in
#   another order in each; an estimator not listed is not assumed to be either.
SAME, MONOTONE, SEPARATE = "same", "monotone", "separate"
_LABELS_FROM_PROBABILITIES = {
    "RandomForestClassifier": SAME,
    "DecisionTreeClassifier": SAME,
    "MLPClassifier": SAME,
    "KNeighborsClassifier": SAME,  # weights="uniform" only, see labels_from_probabilities
    "LogisticRegression": MONOTONE,
    "GaussianNB": MONOTONE,
    "GradientBoostingClassifier": MONOTONE,
}


def labels_from_probabilities(pipeline: Any) -> str:
    """SAME, MONOTONE or SEPARATE (see above) for a fitted pipeline, by its final estimator's exact class."""
    estimator = pipeline.steps[-1][1] if hasattr(pipeline, "steps") else pipeline
    cls = type(estimator)
    if not cls.__module__.startswith("sklearn."):
        return SEPARATE
    relation = _LABELS_FROM_PROBABILITIES.get(cls.__name__, SEPARATE)
    if cls.__name__ == "KNeighborsClassifier" and getattr(estimator, "weights", None) != "uniform":
        return SEPARATE
    return relation


class SklearnRunner:
    """The unpickled scikit-learn pipeline, run once per request where its labels follow from its probabilities."""

    def __init__(self, pipeline: Any, is_classifier: bool) -> None:
        _fail_fast_without_pandas()
        self.pipeline = pipeline
        self.has_probabilities = is_classifier and hasattr(pipeline, "predict_proba")
        self.relation = labels_from_probabilities(pipeline) if self.has_probabilities else SEPARATE
        self._classes = np.asarray(pipeline.classes_) if self.relation != SEPARATE else None

    def outputs(self, matrix: np.ndarray, with_probabilities: bool) -> tuple[np.ndarray, np.ndarray | None]:
        if not (with_probabilities and self.has_probabilities):
            return self.pipeline.predict(matrix), None
        if self.relation == SEPARATE:
            return self.pipeline.predict(matrix), self.pipeline.predict_proba(matrix)
        probabilities = self.pipeline.predict_proba(matrix)
        if self.relation == MONOTONE and _top_tied(probabilities):
            return self.pipeline.predict(matrix), probabilities
        return self._classes.take(probabilities.argmax(axis=1)), probabilities


def _top_tied(probabilities: np.ndarray) -> bool:
    """Whether any row's highest probability is shared by two classes."""
    if probabilities.shape[1] < 2:
        return False
    top_two = np.partition(probabilities, -2, axis=1)[:, -2:]
    return bool((top_two[:, 0] == top_two[:, 1]).any())
