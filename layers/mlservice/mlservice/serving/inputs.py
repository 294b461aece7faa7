"""The predict request formats, turned into a model's input matrix.

Accepted, exactly one per request: `instances` as rows in feature order or as objects keyed by feature,
MLflow's `dataframe_split` and `dataframe_records`. Extra fields are ignored (as MLflow does), missing
features are a 400 naming them, and more rows than the limit is a 413.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from mlservice.errors import bad_request, too_large
from mlservice.features import columns_to_rows, records_to_rows, rows_to_matrix

FORMATS = ("instances", "dataframe_split", "dataframe_records")


def check_row_count(count: int, limit: int) -> None:
    if count > limit:
        raise too_large(f"{count} rows exceed the limit of {limit} per request; use batch prediction for bulk data")
    if count == 0:
        raise bad_request("the request contains no rows", code="invalid_shape")


def rows_from_body(body: dict[str, Any], features: Sequence[dict], max_rows: int) -> list:
    """The rows of a predict body, in feature order (values not yet checked)."""
    present = [name for name in FORMATS if body.get(name) is not None]
    if len(present) != 1:
        raise bad_request(
            "the body must contain exactly one of "
            + ", ".join(FORMATS)
            + (f" (got {', '.join(present)})" if present else ""),
            code="invalid_shape",
        )
    names = [f["name"] for f in features]
    kind = present[0]
    if kind == "dataframe_split":
        split = body["dataframe_split"]
        data = split.get("data") if isinstance(split, dict) else None
        check_row_count(len(data) if isinstance(data, list) else 0, max_rows)
        return columns_to_rows(split.get("columns"), data, names)
    items = body[kind]
    if not isinstance(items, list):
        raise bad_request(f"{kind} must be a list", code="invalid_shape")
    check_row_count(len(items), max_rows)
    if kind == "dataframe_records" or isinstance(items[0], dict):
        return records_to_rows(items, names)
    if len(names) == 1 and not isinstance(items[0], (list, tuple)):
        return [[value] for value in items]  # a single-feature model may take a flat list of values
    return items


def matrix_from_body(body: dict[str, Any], features: Sequence[dict], max_rows: int) -> np.ndarray:
    return rows_to_matrix(rows_from_body(body, features, max_rows), features)
