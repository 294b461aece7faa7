"""What a model card's charts show, computed once at training and stored in the version's metadata.

A card then costs one read, never a recomputation (the card is served by a function without scikit-learn).
Every figure here is an aggregate of at least MIN_GROUP_SIZE rows, by the same rule as the rest of the
metadata, so no chart singles out one row:

- confusion matrix: a cell counting 1 … MIN_GROUP_SIZE − 1 holdout rows is null (shown as "<5"); 0 is shown;
- ROC and PR curves: one point per cut of at least MIN_GROUP_SIZE rows down the ranking of scores (never one
  per row), and no thresholds (they would be individual rows' scores);
- residuals: bins between percentiles that have MIN_GROUP_SIZE rows beyond them (the tails are counted in the
  outer bins), a bin of fewer rows is null;
- predicted vs actual: bins of at least 4 × MIN_GROUP_SIZE rows ranked by prediction, summarised by medians and
  quartiles (each with MIN_GROUP_SIZE rows on either side), never a mean (one extreme row would move it);
- partial dependence: average outputs over a sample of training rows, at percentiles of the feature that have
  MIN_GROUP_SIZE rows on each side, or at its kept categories (each seen in MIN_GROUP_SIZE rows).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
from sklearn import metrics as skm

from mlservice.features import CATEGORICAL, NUMERIC
from mlservice.training.metrics import finite

CLASSIFICATION = "classification"
CURVE_POINTS = 50  # at most this many cuts on a ROC or PR curve
RESIDUAL_BINS = 12
PREDICTED_BINS = 20
PD_FEATURES = 3  # partial dependence for the most important features
PD_ROWS = 300  # training rows averaged over
PD_PERCENTILES = (5, 15, 25, 35, 45, 55, 65, 75, 85, 95)
PD_MAX_CATEGORIES = 12
CONFUSION_MAX_CLASSES = 30  # beyond that a matrix is unreadable; the metrics stay


def _labels(values: Sequence[Any]) -> list[Any]:
    return [v.item() if isinstance(v, np.generic) else v for v in values]


def _round(value: float) -> float:
    return float(f"{value:.6g}")


def confusion_matrix(y: np.ndarray, predicted: np.ndarray, classes: np.ndarray, min_group: int) -> dict | None:
    if len(classes) > CONFUSION_MAX_CLASSES:
        return None
    counts = skm.confusion_matrix(y, predicted, labels=classes)
    shown = [[int(c) if c == 0 or c >= min_group else None for c in row] for row in counts.tolist()]
    return {"labels": _labels(classes), "counts": shown}


def _cuts(n: int, min_group: int) -> list[int]:
    """Numbers of top-ranked rows at which a curve gets a point: multiples of a step of at least min_group."""
    step = max(min_group, math.ceil(n / CURVE_POINTS))
    cuts = list(range(0, n, step))
    if n - cuts[-1] < min_group and len(cuts) > 1:
        cuts.pop()  # the last cut before n would be a group of fewer rows
    return [*cuts, n]


def binary_curves(scores: np.ndarray, positive: np.ndarray, positive_class: Any, min_group: int) -> dict:
    """ROC and precision-recall points at cuts of the descending score ranking."""
    order = np.argsort(-scores, kind="stable")
    hits = np.concatenate([[0], np.cumsum(positive[order])])
    total_pos = int(positive.sum())
    total_neg = len(positive) - total_pos
    roc, pr = [], []
    for k in _cuts(len(scores), min_group):
        tp = int(hits[k])
        fp = k - tp
        roc.append({"fpr": _round(fp / total_neg), "tpr": _round(tp / total_pos)})
        if k:
            pr.append({"recall": _round(tp / total_pos), "precision": _round(tp / k)})
    label = positive_class.item() if isinstance(positive_class, np.generic) else positive_class
    return {
        "roc": {"positive_class": label, "auc": finite(skm.roc_auc_score(positive, scores)), "points": roc},
        "pr": {
            "positive_class": label,
            "average_precision": finite(skm.average_precision_score(positive, scores)),
            "points": pr,
        },
    }


def _safe_percentile(values: np.ndarray, q: float, min_group: int) -> float | None:
    if len(values) * min(q, 100 - q) < 100 * min_group:
        return None
    return float(np.percentile(values, q))


def residual_histogram(residuals: np.ndarray, min_group: int) -> dict | None:
    n = len(residuals)
    q = max(2.5, 100 * min_group / n) if n else 100
    if q >= 25:
        return None
    low, high = np.percentile(residuals, q), np.percentile(residuals, 100 - q)
    if not high > low:
        return None
    edges = np.linspace(low, high, RESIDUAL_BINS + 1)
    placed = np.clip(np.searchsorted(edges, residuals, side="right") - 1, 0, RESIDUAL_BINS - 1)
    counts = np.bincount(placed, minlength=RESIDUAL_BINS)
    return {
        "tails_in_outer_bins": True,
        "bins": [
            {
                "low": _round(edges[i]),
                "high": _round(edges[i + 1]),
                "count": int(c) if c == 0 or c >= min_group else None,
            }
            for i, c in enumerate(counts.tolist())
        ],
    }


def predicted_vs_actual(predicted: np.ndarray, actual: np.ndarray, min_group: int) -> dict | None:
    n = len(predicted)
    size = max(4 * min_group, math.ceil(n / PREDICTED_BINS))
    if n < size:
        return None
    order = np.argsort(predicted, kind="stable")
    count = n // size
    bins = []
    for part in np.array_split(order, count):  # every part has at least `size` rows
        p, a = predicted[part], actual[part]
        bins.append(
            {
                "predicted": _round(np.median(p)),
                "actual": _round(np.median(a)),
                "actual_p25": _round(np.percentile(a, 25)),
                "actual_p75": _round(np.percentile(a, 75)),
                "rows": len(part),
            }
        )
    return {"bins": bins}


def _outputs_of(pipeline: Any, X: np.ndarray, task: str, classes: np.ndarray | None) -> np.ndarray:
    """Average-able outputs: class probabilities (or the share of each predicted class when the model has no
    probabilities), or the predicted value."""
    if task == CLASSIFICATION:
        if hasattr(pipeline, "predict_proba"):
            return np.asarray(pipeline.predict_proba(X), dtype=np.float64)
        predicted = pipeline.predict(X)
        return (predicted[:, None] == classes[None, :]).astype(np.float64)
    return np.asarray(pipeline.predict(X), dtype=np.float64).reshape(-1, 1)


def partial_dependence(
    pipeline: Any,
    X_train: np.ndarray,
    profile: Sequence[dict],
    importance: Sequence[dict],
    task: str,
    classes: np.ndarray | None,
    min_group: int,
    random_state: int,
) -> list[dict]:
    """Average model output as one feature varies over its grid, the others as in the training rows."""
    positions = {f["name"]: j for j, f in enumerate(profile)}
    chosen = [
        item["feature"] for item in importance if profile[positions[item["feature"]]]["kind"] in (NUMERIC, CATEGORICAL)
    ][:PD_FEATURES]
    if len(X_train) > PD_ROWS:
        picked = np.sort(np.random.default_rng(random_state).choice(len(X_train), PD_ROWS, replace=False))
        sample = X_train[picked]
    else:
        sample = X_train
    outputs = _labels(classes) if task == CLASSIFICATION else ["value"]
    result = []
    for name in chosen:
        j = positions[name]
        feature = profile[j]
        if feature["kind"] == NUMERIC:
            column = X_train[:, j].astype(np.float64)
            present = column[~np.isnan(column)]
            grid = sorted(
                {_round(p) for q in PD_PERCENTILES if (p := _safe_percentile(present, q, min_group)) is not None}
            )
            values: list[Any] = grid
        else:
            values = list(feature["categories"][:PD_MAX_CATEGORIES])
            if feature.get("rare_rows", 0) >= min_group:
                values.append(feature["rare_category"])
        if len(values) < 2:
            continue
        averaged = []
        stacked = np.concatenate([sample] * len(values))
        for i, value in enumerate(values):
            stacked[i * len(sample) : (i + 1) * len(sample), j] = value
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore")
            out = _outputs_of(pipeline, stacked, task, classes)
        for i in range(len(values)):
            part = out[i * len(sample) : (i + 1) * len(sample)]
            averaged.append([_round(v) for v in part.mean(axis=0).tolist()])
        if not all(math.isfinite(v) for row in averaged for v in row):
            continue
        result.append(
            {"feature": name, "kind": feature["kind"], "grid": values, "outputs": outputs, "values": averaged}
        )
    return result


def evaluate(
    pipeline: Any,
    X_train: np.ndarray,
    X_test: np.ndarray,
    y_test: np.ndarray,
    profile: Sequence[dict],
    importance: Sequence[dict],
    task: str,
    min_group: int,
    random_state: int,
) -> dict[str, Any]:
    """The `evaluation` section of a version's metadata: what the card's charts draw."""
    result: dict[str, Any] = {"min_group_size": min_group, "holdout_rows": len(y_test)}
    classes = np.asarray(pipeline.classes_) if task == CLASSIFICATION else None
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        if task == CLASSIFICATION:
            predicted = pipeline.predict(X_test)
            result["confusion_matrix"] = confusion_matrix(y_test, predicted, classes, min_group)
            positive = y_test == classes[1] if len(classes) == 2 else None
            if positive is not None and 0 < positive.sum() < len(positive):
                if hasattr(pipeline, "predict_proba"):
                    scores = np.asarray(pipeline.predict_proba(X_test), dtype=np.float64)[:, 1]
                else:
                    scores = np.asarray(pipeline.decision_function(X_test), dtype=np.float64).reshape(len(X_test), -1)[
                        :, -1
                    ]
                if np.isfinite(scores).all():
                    result.update(binary_curves(scores, positive, classes[1], min_group))
        else:
            predicted = np.asarray(pipeline.predict(X_test), dtype=np.float64)
            if np.isfinite(predicted).all():
                result["residuals"] = residual_histogram(y_test - predicted, min_group)
                result["predicted_vs_actual"] = predicted_vs_actual(predicted, y_test, min_group)
    result["partial_dependence"] = partial_dependence(
        pipeline, X_train, profile, importance, task, classes, min_group, random_state
    )
    return result
