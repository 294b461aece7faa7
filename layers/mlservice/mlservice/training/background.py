"""The background rows model-agnostic explanations compare against, without keeping any training row.

Sampling Shapley values measure each feature against "typical" inputs. A sample of real training rows would
put those rows (their exact numbers, their free text) into the artifact, which by the service's rule holds no
value seen in fewer than MIN_GROUP_SIZE rows. So each background row is a summary of a random group of at least
2 × MIN_GROUP_SIZE training rows: per numeric column the group's median (at least MIN_GROUP_SIZE rows on each
side, the rule percentiles follow), per categorical column its most frequent (already pooled) category, per text
column the vocabulary terms found in at least half of the group's rows. Groups are random, so the rows still
spread over the data; their number is capped at BACKGROUND_ROWS (each ~n / 32 rows on large data).
"""

from __future__ import annotations

import re
import warnings
from collections import Counter
from collections.abc import Sequence

import numpy as np

from mlservice.features import CATEGORICAL, NUMERIC, TEXT

BACKGROUND_ROWS = 32  # explainer.BACKGROUND_ROWS
_WORD = re.compile(r"(?u)\b\w\w+\b")  # preprocessing.TOKEN_PATTERN: the words TF-IDF sees


def _common_terms(texts: Sequence[str], vocabulary: set[str] | None) -> str:
    counts: Counter[str] = Counter()
    for text in texts:
        counts.update({word for word in _WORD.findall(str(text).lower()) if vocabulary is None or word in vocabulary})
    return " ".join(sorted(word for word, n in counts.items() if 2 * n >= len(texts)))


def summary_rows(
    X_train: np.ndarray,
    features: Sequence[dict],
    vocabularies: dict[int, set[str]],
    min_group: int,
    random_state: int,
) -> np.ndarray:
    """Up to BACKGROUND_ROWS rows (rows_to_matrix layout), each summarising a random group of at least
    2 × min_group training rows. `vocabularies` maps a text column's position to its TF-IDF terms."""
    n = len(X_train)
    size = max(2 * min_group, -(-n // BACKGROUND_ROWS))
    groups = max(1, n // size)
    order = np.random.default_rng(random_state).permutation(n)
    rows = np.empty((groups, X_train.shape[1]), dtype=object)
    numeric = [j for j, f in enumerate(features) if f["kind"] == NUMERIC]
    others = [j for j, f in enumerate(features) if f["kind"] != NUMERIC]
    # Converted once: wide tables have thousands of numeric columns, each group then takes one vectorised median.
    numbers = X_train[:, numeric].astype(np.float64) if numeric else None
    median = np.nanmedian if numbers is not None and np.isnan(numbers).any() else np.median  # 10× apart
    for g, members in enumerate(np.array_split(order, groups)):
        part = X_train[members][:, others] if others else None
        if numbers is not None:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)  # an all-missing column: NaN, imputed later
                rows[g, numeric] = median(numbers[members], axis=0)
        for k, j in enumerate(others):
            kind = features[j]["kind"]
            if kind == CATEGORICAL:
                rows[g, j] = Counter(part[:, k].tolist()).most_common(1)[0][0]
            elif kind == TEXT:
                rows[g, j] = _common_terms(part[:, k].tolist(), vocabularies.get(j))
            else:
                raise ValueError(f"unknown feature kind {kind!r}")
    return rows
