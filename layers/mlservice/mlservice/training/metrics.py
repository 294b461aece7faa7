"""How good the fitted pipeline is: holdout metrics, cross-validation and permutation importance.

Everything returned is JSON-ready: a metric that is undefined on this holdout (ROC AUC with one class
present, R² of a single row) is null rather than NaN, because the metadata is stored and served as strict
JSON. Metric warnings are silenced here: an undefined metric is reported as null, which says the same.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
from sklearn import metrics as skm
from sklearn.base import clone
from sklearn.inspection import permutation_importance
from sklearn.model_selection import KFold, StratifiedKFold, cross_val_score

CLASSIFICATION = "classification"
IMPORTANCE_MAX_ROWS = 2000
# Shuffles per feature, spread over a fixed budget so wide tables stay affordable.
IMPORTANCE_BUDGET = 200
IMPORTANCE_MAX_REPEATS = 5


def finite(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def scoring_for(task: str) -> str:
    """The one score used for cross-validation and permutation importance."""
    return "accuracy" if task == CLASSIFICATION else "r2"


def classification_metrics(pipeline: Any, X: np.ndarray, y: np.ndarray) -> dict[str, float | None]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        predicted = pipeline.predict(X)
        result: dict[str, float | None] = {
            "accuracy": finite(skm.accuracy_score(y, predicted)),
            "balanced_accuracy": finite(skm.balanced_accuracy_score(y, predicted)),
            "f1_macro": finite(skm.f1_score(y, predicted, average="macro", zero_division=0)),
            "precision_macro": finite(skm.precision_score(y, predicted, average="macro", zero_division=0)),
            "recall_macro": finite(skm.recall_score(y, predicted, average="macro", zero_division=0)),
            "log_loss": None,
            "roc_auc": None,
        }
        classes = pipeline.classes_
        # A class seen only in the holdout (possible when stratifying was impossible) has no probability column.
        known = bool(np.isin(y, classes).all())
        every_class = known and len(np.unique(y)) == len(classes) >= 2
        if hasattr(pipeline, "predict_proba"):
            proba = pipeline.predict_proba(X)
            if known and len(classes) >= 2:
                result["log_loss"] = finite(skm.log_loss(y, proba, labels=classes))
            if every_class:
                if len(classes) == 2:
                    result["roc_auc"] = finite(skm.roc_auc_score(y == classes[1], proba[:, 1]))
                else:
                    result["roc_auc"] = finite(
                        skm.roc_auc_score(y, proba, multi_class="ovr", average="macro", labels=classes)
                    )
        elif every_class and len(classes) == 2 and hasattr(pipeline, "decision_function"):
            result["roc_auc"] = finite(skm.roc_auc_score(y == classes[1], pipeline.decision_function(X)))
    return result


def regression_metrics(pipeline: Any, X: np.ndarray, y: np.ndarray) -> dict[str, float | None]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        predicted = np.asarray(pipeline.predict(X), dtype=np.float64)
        if not np.isfinite(predicted).all():  # an overflowing model: its errors are not numbers
            return {"r2": None, "rmse": None, "mae": None}
        return {
            "r2": finite(skm.r2_score(y, predicted)) if len(y) >= 2 else None,
            "rmse": finite(math.sqrt(skm.mean_squared_error(y, predicted))),
            "mae": finite(skm.mean_absolute_error(y, predicted)),
        }


def smallest_fold_train_rows(rows: int, folds: int) -> int:
    """Rows in the training part of the smallest k-fold split (the held-out fold is at most ceil(rows/k))."""
    return rows - math.ceil(rows / folds)


def cross_validation(
    pipeline: Any, X: np.ndarray, y: np.ndarray, task: str, folds: int, random_state: int
) -> dict[str, Any]:
    """k-fold scores of an unfitted copy of the pipeline on the training part; stratified when every class
    has at least k members."""
    splitter: KFold | StratifiedKFold = KFold(folds, shuffle=True, random_state=random_state)
    if task == CLASSIFICATION and np.unique(y, return_counts=True)[1].min() >= folds:
        splitter = StratifiedKFold(folds, shuffle=True, random_state=random_state)
    metric = scoring_for(task)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        scores = cross_val_score(clone(pipeline), X, y, cv=splitter, scoring=metric, n_jobs=1, error_score=np.nan)
    valid = scores[np.isfinite(scores)]
    return {
        "cv_metric": metric,
        "cv_folds": folds,
        "cv_mean": finite(valid.mean()) if len(valid) else None,
        "cv_std": finite(valid.std()) if len(valid) else None,
        "cv_failed_folds": int(len(scores) - len(valid)),
    }


def feature_importance(
    pipeline: Any, X: np.ndarray, y: np.ndarray, features: Sequence[dict], task: str, random_state: int
) -> list[dict[str, Any]]:
    """Permutation importance of each original feature on (a sample of) the holdout, largest first."""
    if len(y) > IMPORTANCE_MAX_ROWS:
        picked = np.sort(np.random.default_rng(random_state).choice(len(y), IMPORTANCE_MAX_ROWS, replace=False))
        X, y = X[picked], y[picked]
    repeats = max(1, min(IMPORTANCE_MAX_REPEATS, IMPORTANCE_BUDGET // max(1, len(features))))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = permutation_importance(
            pipeline, X, y, scoring=scoring_for(task), n_repeats=repeats, random_state=random_state, n_jobs=1
        )
    ranked = [
        {
            "feature": feature["name"],
            "importance_mean": finite(mean),
            "importance_std": finite(std),
        }
        for feature, mean, std in zip(features, result.importances_mean, result.importances_std, strict=True)
    ]
    ranked.sort(key=lambda item: (item["importance_mean"] is None, -(item["importance_mean"] or 0.0)))
    return ranked
