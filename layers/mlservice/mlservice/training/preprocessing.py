"""From raw columns to the model's input: feature kinds, the target, the preprocessing steps, the profile.

The pickled pipeline starts at the matrix `mlservice.features.rows_to_matrix` builds, so its preprocessing
must consist of scikit-learn classes only (serving unpickles without this package) and address columns by
integer position (no pandas). Categorical missing values arrive as the "" category and numeric ones as NaN,
which is why the steps here are an imputer for numbers and a one-hot encoder.

Nothing seen in fewer than MIN_GROUP_SIZE training rows reaches the artifact or the metadata: the profile
keeps only categories seen that often (the others, and every value unseen in training, become one shared
token before the encoder sees them, whose categories are given explicitly), TF-IDF keeps only terms of at
least that many rows, and numbers are summarised by percentiles with at least that many rows on either side.

The pipeline is also exported to ONNX (onnx_export), which is what the slim predict function serves, so each
step is one that skl2onnx converts exactly with a float32 input per numeric column and a string input per
categorical or text column: the median imputer (a float32 Imputer), the one-hot encoder with its categories
given, and TF-IDF with scikit-learn's default word tokenisation, spelled out as TOKEN_PATTERN (the export
gives onnxruntime's Tokenizer the RE2 pattern that matches the same words; see onnx_export).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from sklearn.compose import ColumnTransformer
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from mlservice.errors import bad_request
from mlservice.features import (
    CATEGORICAL,
    MISSING_CATEGORY,
    MISSING_STRINGS,
    NUMERIC,
    RARE_CATEGORY,
    TEXT,
    category,
)
from mlservice.text import shown

CLASSIFICATION, REGRESSION = "classification", "regression"
TFIDF_MAX_FEATURES = 5000
# scikit-learn's default: words are maximal runs of two or more Unicode word characters (letters, digits, _),
# after Python's str.lower. onnx_export.ONNX_TOKEN_PATTERN is its RE2 twin; change both or neither.
TOKEN_PATTERN = r"(?u)\b\w\w+\b"
# One-hot columns per feature, the rare token's included: beyond the most frequent ONE_HOT_MAX_CATEGORIES - 1
# categories the others share the rare token's column too, so an id-like column cannot become a million columns.
ONE_HOT_MAX_CATEGORIES = 1000
# The percentiles a numeric summary publishes. Each is null unless at least MIN_GROUP_SIZE rows lie on each
# side of it (p50 needs 2 × MIN_GROUP_SIZE values, p25/p75 4 ×, p5/p95 20 ×): never an extreme, never one row.
PERCENTILES = (5, 25, 50, 75, 95)
# Integer targets with at most this many distinct values (and fewer than half the rows) are class labels.
MAX_INFERRED_CLASSES = 20
_EXACT_INTEGERS = 2.0**53


def _not_finite(row: int, column: str, value: Any, code: str) -> None:
    raise bad_request(
        f"row {row}, column {column!r}: {shown(value, 40)} is not allowed; use null for a missing value", code=code
    )


def _numeric_string(value: str) -> bool | None:
    """True for a number, None for a spelling of missing, False otherwise."""
    stripped = value.strip()
    if stripped.lower() in MISSING_STRINGS:
        return None
    try:
        return math.isfinite(float(stripped))
    except ValueError:
        return False


# ---------------------------------------------------------------- features


def infer_kind(values: Sequence[Any], name: str) -> str:
    """numeric when every non-missing value is a number or a numeric string, else categorical.

    A column with no value at all is categorical: it then accepts anything at predict time. Non-finite floats
    (NaN from a lenient JSON parser) are refused: null is the one spelling of missing in JSON.
    """
    try:
        column = np.asarray(values, dtype=np.float64)  # None → NaN; numbers and numeric strings parse
    except (TypeError, ValueError, OverflowError):
        column = None
    if column is not None and column.ndim == 1 and not np.isinf(column).any():
        gaps = np.flatnonzero(np.isnan(column))
        for i in gaps:
            value = values[i]
            if isinstance(value, float):
                _not_finite(int(i), name, value, "invalid_value")
            if isinstance(value, str) and _numeric_string(value) is not None:
                column = None  # "nan"-like spellings are missing; anything else falls to the slow path
                break
        else:
            return NUMERIC if len(gaps) < len(values) else CATEGORICAL
    numeric, seen = True, False
    for i, value in enumerate(values):
        if isinstance(value, float) and not math.isfinite(value):
            _not_finite(i, name, value, "invalid_value")
        if not numeric or value is None:
            continue
        if isinstance(value, (bool, int, float)):
            if isinstance(value, int) and abs(value) > 1e300:
                _too_big(i, name, value, "invalid_value")
            seen = True
        elif isinstance(value, str):
            parsed = _numeric_string(value)
            if parsed is False:
                numeric = False
            seen = seen or parsed is True
        else:
            numeric = False
    return NUMERIC if numeric and seen else CATEGORICAL


def check_finite(values: Sequence[Any], name: str) -> None:
    for i, value in enumerate(values):
        if isinstance(value, float) and not math.isfinite(value):
            _not_finite(i, name, value, "invalid_value")


def check_text_has_words(matrix: np.ndarray, features: Sequence[dict], min_group: int) -> None:
    """TF-IDF keeps only terms found in at least `min_group` training rows and cannot fit a column left
    without any: say which column instead of 'After pruning, no terms remain'. Stops at the first such term."""
    analyzer = TfidfVectorizer(token_pattern=TOKEN_PATTERN).build_analyzer()
    for j, feature in enumerate(features):
        if feature["kind"] != TEXT:
            continue
        rows_with: Counter[str] = Counter()
        for text in matrix[:, j]:
            terms = set(analyzer(text))
            rows_with.update(terms)
            if any(rows_with[term] >= min_group for term in terms):
                break
        else:
            if not rows_with:
                raise bad_request(
                    f"text feature {feature['name']!r} has no words in the training rows", code="invalid_features"
                )
            raise bad_request(
                f"text feature {feature['name']!r} has no word found in at least {min_group} training rows "
                f"(MIN_GROUP_SIZE): rarer words are left out of a model, so this column would have no terms",
                code="invalid_features",
            )


def build_preprocessor(
    features: Sequence[dict], *, scale_numeric: bool, dense: bool, min_group: int
) -> ColumnTransformer:
    """One ColumnTransformer over the rows_to_matrix layout, addressing columns by position. `features` is
    the profile (feature_profile): the encoder's categories are each feature's kept ones plus the rare token,
    which is all it ever sees (rows_to_matrix pools the others into the token)."""
    numeric = [j for j, f in enumerate(features) if f["kind"] == NUMERIC]
    categorical = [j for j, f in enumerate(features) if f["kind"] == CATEGORICAL]
    steps: list[tuple[str, Any, Any]] = []
    if numeric:
        imputer = SimpleImputer(strategy="median", keep_empty_features=True)
        steps.append(("numeric", make_pipeline(imputer, StandardScaler()) if scale_numeric else imputer, numeric))
    if categorical:
        categories = [_encoder_categories(features[j]) for j in categorical]
        encoder = OneHotEncoder(categories=categories, handle_unknown="ignore")
        steps.append(("categorical", encoder, categorical))
    for j, feature in enumerate(features):
        if feature["kind"] == TEXT:
            # A scalar column index hands the vectorizer a 1-D array of strings, which is what it takes. An
            # integer min_df counts rows: a term of fewer rows is not in the vocabulary.
            vectorizer = TfidfVectorizer(max_features=TFIDF_MAX_FEATURES, min_df=min_group, token_pattern=TOKEN_PATTERN)
            steps.append((f"text_{j}", vectorizer, j))
    return ColumnTransformer(steps, remainder="drop", sparse_threshold=0.0 if dense else 0.3, n_jobs=1)


def _encoder_categories(feature: dict) -> np.ndarray:
    categories = np.empty(len(feature["categories"]) + 1, dtype=object)
    categories[:] = [*sorted(feature["categories"]), feature["rare_category"]]
    return categories


def forget_pruned_terms(pipeline: Pipeline) -> None:
    """Drop what a fitted TfidfVectorizer remembers of the terms it left out (`stop_words_`, which older
    scikit-learn versions keep and document as safe to delete before pickling)."""
    for _, transformer, _ in pipeline.named_steps["preprocess"].transformers_:
        if isinstance(transformer, TfidfVectorizer) and hasattr(transformer, "stop_words_"):
            del transformer.stop_words_


def text_terms(pipeline: Pipeline, position: int) -> int:
    """How many terms the fitted TF-IDF of the text feature at `position` kept."""
    return len(pipeline.named_steps["preprocess"].named_transformers_[f"text_{position}"].vocabulary_)


def build_pipeline(preprocessor: ColumnTransformer, estimator: Any) -> Pipeline:
    return Pipeline([("preprocess", preprocessor), ("model", estimator)])


def _finite(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None


def percentiles(values: np.ndarray, min_group: int) -> dict[str, float | None]:
    """p5 … p95 of finite values; each null unless at least `min_group` values lie at or below it and at least
    `min_group` at or above it (numpy's linear interpolation), so none is an extreme or a tiny set's member."""
    summary: dict[str, float | None] = {}
    for q in PERCENTILES:
        enough = len(values) * min(q, 100 - q) >= 100 * min_group
        summary[f"p{q}"] = _finite(np.percentile(values, q)) if enough else None
    return summary


def feature_profile(matrix: np.ndarray, features: Sequence[dict], min_group: int) -> list[dict]:
    """The schema serving needs (name, kind, and a categorical feature's kept categories and rare token) plus
    what the training rows looked like, per feature, with nothing seen in fewer than `min_group` rows."""
    profile = []
    for j, feature in enumerate(features):
        entry: dict[str, Any] = {"name": feature["name"], "kind": feature["kind"]}
        column = matrix[:, j]
        if feature["kind"] == NUMERIC:
            numbers = column.astype(np.float64)
            present = numbers[~np.isnan(numbers)]
            entry["missing"] = int(len(numbers) - len(present))
            entry["percentiles"] = percentiles(present, min_group)
        elif feature["kind"] == CATEGORICAL:
            counts = Counter(column.tolist())
            entry["missing"] = counts.get(MISSING_CATEGORY, 0)
            entry["distinct"] = len(counts) - (MISSING_CATEGORY in counts)
            # The missing category "" is kept like any other: a category of its own only when that many rows
            # miss a value, else missing values share the rare token.
            ranked = sorted(
                ((value, count) for value, count in counts.items() if count >= min_group),
                key=lambda item: (-item[1], item[0]),
            )[: ONE_HOT_MAX_CATEGORIES - 1]
            entry["categories"] = [value for value, _ in ranked]
            entry["category_counts"] = [count for _, count in ranked]
            entry["rare_category"] = RARE_CATEGORY
            entry["rare_rows"] = len(column) - sum(entry["category_counts"])
        else:
            entry["missing"] = int(sum(1 for text in column if not str(text).strip()))
        profile.append(entry)
    return profile


# ---------------------------------------------------------------- target


@dataclass
class Target:
    """The label column after dropping missing values: kept row positions and their values."""

    name: str
    keep: list[int]
    values: list[Any]  # floats when numeric, else bools or category strings
    numeric: bool
    dropped: int

    def infer_task(self) -> tuple[str, str]:
        """The task the values suggest, with the reason (shown when the algorithm cannot do it)."""
        if not self.numeric:
            return CLASSIFICATION, "its values are labels, not numbers"
        distinct = set(self.values)
        integers = all(v.is_integer() and abs(v) <= _EXACT_INTEGERS for v in distinct)
        if integers and len(distinct) <= MAX_INFERRED_CLASSES and len(distinct) < len(self.values) / 2:
            return CLASSIFICATION, f"integers with {len(distinct)} distinct values"
        return REGRESSION, f"numbers with {len(distinct)} distinct values"

    def array(self, task: str) -> np.ndarray:
        """y for the task: int, bool or str class labels, or float64 values; 400 when the values do not fit."""
        if task == REGRESSION:
            if not self.numeric:
                position = next(i for i, v in enumerate(self.values) if not isinstance(v, float))
                raise bad_request(
                    f"task regression needs a numeric target, but target {self.name!r} has "
                    f"{shown(self.values[position], 40)} in row {self.keep[position]}",
                    code="invalid_target",
                )
            return np.asarray(self.values, dtype=np.float64)
        if self.numeric:
            for position, v in enumerate(self.values):
                if not (v.is_integer() and abs(v) <= _EXACT_INTEGERS):
                    raise bad_request(
                        f"task classification needs class labels, but target {self.name!r} has the non-integer "
                        f"number {v!r} in row {self.keep[position]}; use task regression or string labels",
                        code="invalid_target",
                    )
            return np.asarray([int(v) for v in self.values], dtype=np.int64)
        if all(isinstance(v, bool) for v in self.values):
            return np.asarray(self.values, dtype=bool)
        labels = np.empty(len(self.values), dtype=object)
        labels[:] = [v if isinstance(v, str) else category(v) for v in self.values]
        return labels


def scan_target(values: Sequence[Any], name: str) -> Target:
    """Find missing targets and decide whether the column is numeric (numbers or numeric strings)."""
    numeric = True
    for i, value in enumerate(values):
        if value is None:
            continue
        if isinstance(value, float) and not math.isfinite(value):
            _not_finite(i, name, value, "invalid_target")
        if isinstance(value, (dict, list)):
            raise bad_request(
                f"row {i}, target {name!r}: {shown(value, 40)} is not a label or number", code="invalid_target"
            )
        if isinstance(value, int) and not isinstance(value, bool) and abs(value) > 1e300:
            _too_big(i, name, value, "invalid_target")
        if numeric and (isinstance(value, bool) or (isinstance(value, str) and _numeric_string(value) is False)):
            numeric = False
    keep: list[int] = []
    kept: list[Any] = []
    for i, value in enumerate(values):
        if numeric:
            if value is None or (isinstance(value, str) and _numeric_string(value) is None):
                continue
            kept.append(float(value))
        else:
            if value is None or (not isinstance(value, bool) and category(value) == MISSING_CATEGORY):
                continue
            kept.append(value if isinstance(value, bool) else category(value))
        keep.append(i)
    return Target(name, keep, kept, numeric, len(values) - len(keep))


def json_labels(classes: np.ndarray) -> list[Any]:
    """Class labels as JSON-native values (numpy ints and bools become Python ones)."""
    return [v.item() if isinstance(v, np.generic) else v for v in classes.tolist()]


def _too_big(row: int, column: str, value: int, code: str) -> None:
    raise bad_request(f"row {row}, column {column!r}: {shown(value, 40)} is too large for a number", code=code)
