"""Exact Shapley values of a linear output: coefficient × (encoded value − training mean), summed per input.

For an output that is linear in the encoded columns z, f(z) = b + w·z, the interventional Shapley value of
encoded column k against a background whose mean is μ is w_k (z_k − μ_k), whatever the background's spread,
and a raw feature (one numeric column, the one-hot columns of a category, the TF-IDF columns of a text) is
credited the sum over the columns it produced, which is the Shapley value of the raw feature as one player
(the game is additive across features). The base value is b + w·μ. The mean is the training mean of the encoded
columns (explainer.attach_background), so the base value is the average output over the training rows.

A TF-IDF column of a word absent from the row still contributes −w_k μ_k (its training rows moved the mean):
token lists show present words only, so their sum is the text column's contribution minus those terms.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import sparse


def linear_terms(model: Any) -> tuple[np.ndarray, np.ndarray]:
    """(coef (K, F), intercept (K,)) of a fitted linear model: what its decision_function / predict computes
    as intercept + coef @ z (a binary classifier's single row is the decision for classes_[1])."""
    coef = np.atleast_2d(np.asarray(model.coef_, dtype=np.float64))
    intercept = np.broadcast_to(np.atleast_1d(np.asarray(model.intercept_, dtype=np.float64)), (len(coef),))
    return coef, np.array(intercept)


def _grouping(coef: np.ndarray, owner: np.ndarray, n_features: int) -> sparse.csr_matrix:
    """(F, M·K) matrix: encoded column f's coefficient for output k at (f, owner[f]·K + k)."""
    n_outputs, width = coef.shape
    columns = np.arange(width).repeat(n_outputs)
    outputs = np.tile(np.arange(n_outputs), width)
    return sparse.csr_matrix(
        (coef.T.ravel(), (columns, owner[columns] * n_outputs + outputs)), shape=(width, n_features * n_outputs)
    )


def linear_shap(
    encoded: Any, coef: np.ndarray, intercept: np.ndarray, mean: np.ndarray, owner: np.ndarray, n_features: int
) -> tuple[np.ndarray, np.ndarray]:
    """(base (K,), phi (rows, M, K)): per raw feature j, Σ over its encoded columns k of coef·(z_k − mean_k).

    `encoded` is preprocess.transform of the rows (dense or sparse), `owner[k]` the raw feature that produced
    encoded column k."""
    grouping = _grouping(coef, owner, n_features)
    raw = encoded @ grouping
    raw = raw.toarray() if sparse.issparse(raw) else np.asarray(raw)
    phi = (raw - mean @ grouping).reshape(len(raw), n_features, len(coef))
    return intercept + coef @ mean, phi


def token_contributions(coef: np.ndarray, mean: np.ndarray, columns: np.ndarray, values: np.ndarray) -> np.ndarray:
    """(len(columns), K) contributions of the encoded columns `columns` whose values in the row are `values`."""
    return (coef[:, columns] * (values - mean[columns])).T
