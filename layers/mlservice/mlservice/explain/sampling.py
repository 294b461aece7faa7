"""Model-agnostic Shapley values by permutation sampling over the raw input columns, against a background.

Any pipeline is explained through its output function alone (predict_proba, decision_function or predict on
rows_to_matrix rows), with the raw columns as players: a text column or a category is one player, as the
client sees it, whatever it becomes after encoding. The value estimated is the interventional Shapley value
against the background rows: an absent feature takes a background row's value.

One sample is a random order of the M features and one background row: starting from the background row, the
features are switched to the explained row's values in that order, and the output's change at each switch is
credited to the switched feature. The changes telescope, so every sample's credits add up to
f(x) − f(background row) exactly, and so does their mean: additivity holds to rounding whatever the number of
samples. Samples come in antithetic pairs (an order and its reverse, on the same background row), which cancels
most of the order noise of near-additive models; the standard error is computed over pairs, the independent
units. Pair j uses background row j mod B' with B' = min(background rows, pairs), the same rows for every
explained row, so the base value (mean output over the samples' background rows) is one number per output for
the whole request and equals the mean output over the first B' background rows when pairs is a multiple of B'.

A walk's endpoints are shared: f(x) once per explained row and f(b) once per background row, so a sample costs
M − 1 model rows. All intermediate rows of a batch go to the model in one call per chunk.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

Output = Callable[[np.ndarray], np.ndarray]  # rows (n, M) → (n, K) float64


@dataclass(frozen=True)
class SamplingResult:
    base: np.ndarray  # (K,)
    values: np.ndarray  # (rows, K): f(x), the walks' end
    phi: np.ndarray  # (rows, M, K)
    standard_errors: np.ndarray  # (rows, M, K)
    evaluations: int
    samples: int


def background_used(background_rows: int, samples: int) -> int:
    return min(background_rows, samples // 2)


def evaluations(rows: int, n_features: int, samples: int, background_rows: int) -> int:
    """Model rows one call evaluates: the M − 1 intermediate rows of every sample, f(x) per row, f(b) per
    background row used."""
    return rows * samples * max(n_features - 1, 0) + rows + background_used(background_rows, samples)


def evaluate(output: Output, matrix: np.ndarray, chunk_rows: int) -> np.ndarray:
    """output() over the rows in chunks, as one (n, K) float64 array."""
    parts = [
        np.asarray(output(matrix[start : start + chunk_rows]), dtype=np.float64)
        for start in range(0, len(matrix), chunk_rows)
    ]
    return np.concatenate(parts) if parts else np.zeros((0, 1))


def sampling_shapley(
    output: Output,
    matrix: np.ndarray,
    background: np.ndarray,
    samples: int,
    random_state: int,
    chunk_rows: int,
) -> SamplingResult:
    """Shapley values of every row of `matrix` (rows, M) with `samples` (even, ≥ 4) samples per row."""
    rows, m = matrix.shape
    pairs = samples // 2
    used = background_used(len(background), samples)
    base_rows = background[:used]
    f_background = evaluate(output, base_rows, chunk_rows)
    f_rows = evaluate(output, matrix, chunk_rows)
    k = f_background.shape[1]
    rng = np.random.default_rng(random_state)
    forward = rng.permuted(np.broadcast_to(np.arange(m), (rows, pairs, m)), axis=-1)
    orders = np.empty((rows, samples, m), dtype=np.intp)
    orders[:, 0::2], orders[:, 1::2] = forward, forward[..., ::-1]
    ranks = np.argsort(orders, axis=2)  # ranks[r, s, j]: when feature j is switched in sample s
    sample_background = np.repeat(np.arange(pairs) % used, 2)
    walk = np.empty((rows, samples, m + 1, k))
    walk[:, :, 0] = f_background[sample_background][None]
    walk[:, :, m] = f_rows[:, None]
    if m > 1:
        dtype = np.result_type(matrix.dtype, background.dtype)
        steps = np.arange(1, m)[None, :, None]
        units = max(1, chunk_rows // (m - 1))
        for start in range(0, rows * samples, units):
            unit = np.arange(start, min(start + units, rows * samples))
            r, s = unit // samples, unit % samples
            switched = ranks[r, s][:, None, :] < steps  # (u, M-1, M): after step t, ranks < t come from x
            hybrid = np.where(switched, matrix[r][:, None, :], base_rows[sample_background[s]][:, None, :])
            out = evaluate(output, hybrid.astype(dtype, copy=False).reshape(-1, m), chunk_rows)
            walk[r, s, 1:m] = out.reshape(len(unit), m - 1, k)
    changes = np.diff(walk, axis=2)  # changes[r, s, t]: credited to orders[r, s, t]
    per_sample = np.take_along_axis(changes, ranks[..., None], axis=2)  # (rows, samples, M, K) by feature
    phi = per_sample.mean(axis=1)
    pair_means = (per_sample[:, 0::2] + per_sample[:, 1::2]) / 2
    spread = pair_means.std(axis=1, ddof=1) if pairs > 1 else np.zeros_like(phi)
    return SamplingResult(
        base=f_background[sample_background].mean(axis=0),
        values=f_rows,
        phi=phi,
        standard_errors=spread / np.sqrt(pairs),
        evaluations=evaluations(rows, m, samples, len(background)),
        samples=samples,
    )


def without_token(text: str, token: str) -> str:
    """The text with every occurrence of the vocabulary term removed: case-insensitively, as whole words (the
    TF-IDF tokeniser lowercases and reads maximal runs of word characters)."""
    return re.sub(rf"(?<!\w){re.escape(token)}(?!\w)", "", text, flags=re.IGNORECASE)


def occlusion(
    output: Output, matrix: np.ndarray, column: int, tokens: list[list[str]], values: np.ndarray, chunk_rows: int
) -> list[np.ndarray]:
    """Per row, (len(tokens[r]), K): f(x) − f(x with that token removed from the text in `column`). `values`
    are the rows' own outputs, f(x)."""
    owners = [r for r, listed in enumerate(tokens) for _ in listed]
    if not owners:
        return [np.zeros((0, values.shape[1])) for _ in tokens]
    occluded = matrix[owners].copy()
    occluded[:, column] = [
        without_token(str(matrix[r, column]), token) for r, listed in enumerate(tokens) for token in listed
    ]
    changed = values[owners] - evaluate(output, occluded, chunk_rows)
    bounds = np.cumsum([0, *(len(listed) for listed in tokens)])
    return [changed[bounds[r] : bounds[r + 1]] for r in range(len(tokens))]
