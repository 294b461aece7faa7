"""The feature schema, and the one encoding of raw values into a model's input matrix.

Training and serving both go through `rows_to_matrix`, so a value means the same thing when a model is
fitted and when it predicts: numbers (or numeric strings) for numeric features with null as missing,
strings for categorical features with null or "" as the missing category, free text for text features.
A categorical feature trained by this version of the service names the categories its model knows
(`categories`, each seen in at least MIN_GROUP_SIZE training rows) and the token every other value becomes
(`rare_category`): a rare training value and a never-seen one are then the same input to the model, and the
model holds no rare value. Only numpy is imported here: this module is on the predict path.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from mlservice.errors import ServiceError, bad_request
from mlservice.text import shown

NUMERIC, CATEGORICAL, TEXT = "numeric", "categorical", "text"
MISSING_CATEGORY = ""
# What every category outside a feature's `categories` becomes. `category()` strips whitespace, so no input
# value can equal it: a client's own "__rare__" stays a category of its own.
RARE_CATEGORY = " __rare__"
# Spellings of "no value" in delimited text files (CSV); JSON has null for that.
MISSING_STRINGS = frozenset({"", "na", "n/a", "nan", "null", "none"})


def _number(value: Any, row: int, name: str) -> float:
    if value is None:
        return math.nan
    if isinstance(value, (int, float)):  # bool included: true/false are 1/0
        try:
            number = float(value)
        except OverflowError:
            number = math.inf
    elif isinstance(value, str):
        stripped = value.strip()
        if stripped.lower() in MISSING_STRINGS:
            return math.nan
        try:
            number = float(stripped)
        except ValueError:
            raise bad_request(
                f"row {row}, feature {name!r}: {shown(value, 40)} is not a number", code="invalid_value"
            ) from None
    else:
        raise bad_request(f"row {row}, feature {name!r}: {shown(value, 40)} is not a number", code="invalid_value")
    if not math.isfinite(number):  # inf, or an integer too large for a float
        raise bad_request(
            f"row {row}, feature {name!r}: {shown(value, 40)} is not a finite number (use null for a missing value)",
            code="invalid_value",
        )
    return number


def category(value: Any) -> str:
    """The category string of a raw value: 3, 3.0 and "3" are one category; null and "" are missing."""
    if value is None:
        return MISSING_CATEGORY
    if isinstance(value, float):
        if not math.isfinite(value):
            return MISSING_CATEGORY
        if value.is_integer():
            return str(int(value))
    if isinstance(value, (dict, list)):
        raise TypeError("nested value")
    return str(value).strip()


def known_categories(feature: dict) -> tuple[frozenset[str], str] | None:
    """(the categories the model knows, the token for all others) of a categorical feature, or None for a
    schema without them (a model trained before rare categories were pooled: every value passes through)."""
    token = feature.get("rare_category")
    if feature.get("kind") != CATEGORICAL or not isinstance(token, str):
        return None
    return frozenset(feature.get("categories") or ()), token


def pool_rare_categories(matrix: np.ndarray, features: Sequence[dict]) -> np.ndarray:
    """The matrix with every category a feature does not know replaced by its rare token (in place)."""
    for j, feature in enumerate(features):
        known = known_categories(feature)
        if known is not None and len(matrix):
            kept, token = known
            column = np.empty(len(matrix), dtype=object)
            column[:] = [value if value in kept else token for value in matrix[:, j].tolist()]
            matrix[:, j] = column
    return matrix


def _text(value: Any) -> str:
    return "" if value is None else str(value)


def _check_shape(rows: Sequence[Any], width: int) -> None:
    for index, row in enumerate(rows):
        if not isinstance(row, (list, tuple)):
            raise bad_request(
                f"row {index} must be a list of {width} values, got {shown(row, 40)}", code="invalid_shape"
            )
        if len(row) != width:
            raise bad_request(
                f"row {index} has {len(row)} values, expected {width} (one per feature)", code="invalid_shape"
            )


def _numeric_column(values: Sequence[Any], name: str, errors: dict[int, str] | None) -> np.ndarray:
    try:
        column = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError, OverflowError):
        column = None
    if column is not None and column.ndim == 1 and not np.isinf(column).any():
        return column
    out = np.empty(len(values), dtype=np.float64)
    for i, value in enumerate(values):
        try:
            out[i] = _number(value, i, name)
        except ServiceError as error:
            if errors is None:
                raise
            errors.setdefault(i, error.message)
            out[i] = math.nan
    return out


def _encode(rows: Sequence[Sequence[Any]], features: Sequence[dict], errors: dict[int, str] | None) -> np.ndarray:
    """The one encoding. With `errors` None the first bad value raises; otherwise bad rows are recorded there
    (row index → reason) and encoding goes on, which is what batch prediction needs."""
    width = len(features)
    kinds = [f["kind"] for f in features]
    all_numeric = all(kind == NUMERIC for kind in kinds)
    if all_numeric:
        try:
            matrix = np.asarray(rows, dtype=np.float64)
            if matrix.ndim == 2 and matrix.shape[1] == width and not np.isinf(matrix).any():
                return matrix
        except (TypeError, ValueError, OverflowError):
            pass
    _check_shape(rows, width)
    columns = list(zip(*rows, strict=True)) if rows else [() for _ in features]
    out = np.empty((len(rows), width), dtype=np.float64 if all_numeric else object)
    for j, (feature, values) in enumerate(zip(features, columns, strict=True)):
        name, kind = feature["name"], feature["kind"]
        if kind == NUMERIC:
            out[:, j] = _numeric_column(values, name, errors)
            continue
        for i, value in enumerate(values):
            if isinstance(value, (dict, list)):
                message = f"row {i}, feature {name!r}: expected {'a category' if kind == CATEGORICAL else 'text'}, got {shown(value, 40)}"
                if errors is None:
                    raise bad_request(message, code="invalid_value")
                errors.setdefault(i, message)
                value = None
            out[i, j] = category(value) if kind == CATEGORICAL else _text(value)
    return pool_rare_categories(out, features)


def rows_to_matrix(rows: Sequence[Sequence[Any]], features: Sequence[dict]) -> np.ndarray:
    """Encode rows (values in feature order) into the matrix the model pipeline takes.

    All-numeric models get a float64 matrix (the fast path: one numpy conversion); models with
    categorical or text features get an object matrix holding floats, category strings and texts.
    Raises 400 naming the row and feature of the first bad value.
    """
    return _encode(rows, features, None)


def rows_to_matrix_lenient(
    rows: Sequence[Sequence[Any]], features: Sequence[dict]
) -> tuple[np.ndarray, dict[int, str]]:
    """Like rows_to_matrix, but a bad value rejects only its row: returns the matrix of every row (bad rows
    hold placeholders) and {row index: reason} for the rejected ones."""
    errors: dict[int, str] = {}
    return _encode(rows, features, errors), errors


def records_to_rows(records: Sequence[Any], names: Sequence[str], what: str = "row") -> list[list[Any]]:
    """Order each record's values by feature; extra fields are ignored, missing ones are a 400."""
    rows = []
    for index, record in enumerate(records):
        if not isinstance(record, dict):
            raise bad_request(
                f"{what} {index} must be an object of feature values, got {shown(record, 40)}", code="invalid_shape"
            )
        try:
            rows.append([record[name] for name in names])
        except KeyError:
            missing = [name for name in names if name not in record]
            raise bad_request(
                f"{what} {index} is missing feature(s): {', '.join(missing[:20])}", code="missing_features"
            ) from None
    return rows


def columns_to_rows(columns: Sequence[Any], data: Sequence[Any], names: Sequence[str]) -> list[list[Any]]:
    """Reorder column-split data (MLflow's dataframe_split) into feature order."""
    if not isinstance(columns, list) or not all(isinstance(c, str) for c in columns):
        raise bad_request("columns must be a list of column names", code="invalid_shape")
    if len(set(columns)) != len(columns):
        raise bad_request("columns contains duplicate names", code="invalid_shape")
    missing = [name for name in names if name not in columns]
    if missing:
        raise bad_request(f"missing feature(s): {', '.join(missing[:20])}", code="missing_features")
    if not isinstance(data, list):
        raise bad_request("data must be a list of rows", code="invalid_shape")
    _check_shape(data, len(columns))
    position = {name: i for i, name in enumerate(columns)}
    order = [position[name] for name in names]
    if order == list(range(len(columns))):
        return data
    return [[row[i] for i in order] for row in data]
