"""Limits and defaults, read from the environment in one place.

Read on every call rather than cached at import: the values are a handful of dictionary lookups, and tests
and the local server change the environment between requests.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from mlservice.errors import ServiceError


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw in (None, ""):
        return default
    try:
        return int(raw)
    except ValueError:
        raise ServiceError("configuration_error", f"environment variable {name} must be an integer") from None


def _env_float(name: str, default: float) -> float:
    raw = os.environ.get(name)
    if raw in (None, ""):
        return default
    try:
        return float(raw)
    except ValueError:
        raise ServiceError("configuration_error", f"environment variable {name} must be a number") from None


@dataclass(frozen=True)
class Settings:
    """Everything tunable, with the defaults the template documents."""

    bucket: str
    stage_cache_ttl: float
    model_cache_size: int
    max_predict_rows: int
    max_body_bytes: int
    max_train_rows: int
    max_train_cells: int
    batch_chunk_rows: int
    batch_fanout_bytes: int
    batch_part_bytes: int
    batch_queue_url: str
    batch_lease_seconds: float
    stale_if_error_seconds: float
    max_train_columns: int
    max_dataset_bytes: int
    max_json_depth: int
    training_deadline_seconds: float
    training_budget_seconds: float
    idempotency_ttl_seconds: int
    min_group_size: int
    explain_max_evaluations: int


def get_settings() -> Settings:
    """The settings in force now; raises a clear error when the bucket is not configured."""
    bucket = os.environ.get("MODEL_BUCKET", "")
    if not bucket:
        raise ServiceError("configuration_error", "environment variable MODEL_BUCKET is not set")
    return Settings(
        bucket=bucket,
        stage_cache_ttl=_env_float("STAGE_CACHE_TTL_SECONDS", 5.0),
        model_cache_size=_env_int("MODEL_CACHE_SIZE", 8),
        max_predict_rows=_env_int("MAX_PREDICT_ROWS", 10_000),
        # API Gateway accepts 10 MB and Lambda's synchronous payload is 6 MB; refuse earlier with a clear 413.
        max_body_bytes=_env_int("MAX_BODY_BYTES", 6 * 1024 * 1024),
        max_train_rows=_env_int("MAX_TRAIN_ROWS", 1_000_000),
        max_train_cells=_env_int("MAX_TRAIN_CELLS", 20_000_000),
        batch_chunk_rows=_env_int("BATCH_CHUNK_ROWS", 10_000),
        batch_fanout_bytes=_env_int("BATCH_FANOUT_BYTES", 256 * 1024 * 1024),
        batch_part_bytes=_env_int("BATCH_PART_BYTES", 128 * 1024 * 1024),
        batch_queue_url=os.environ.get("BATCH_QUEUE_URL", ""),
        # A running batch job renews its lease every third of this; a killed run's lease lapses within it, so
        # Lambda's next retry (after about a minute) takes the job over.
        batch_lease_seconds=_env_float("BATCH_LEASE_SECONDS", 60.0),
        # How long a warm predict container keeps serving its cached registry (stage pointers, live versions)
        # when S3 cannot be reached to re-check it.
        stale_if_error_seconds=_env_float("STALE_IF_ERROR_SECONDS", 300.0),
        max_train_columns=_env_int("MAX_TRAIN_COLUMNS", 10_000),
        max_dataset_bytes=_env_int("MAX_DATASET_BYTES", 256 * 1024 * 1024),
        max_json_depth=_env_int("MAX_JSON_DEPTH", 32),
        # Under API Gateway's 29 s integration timeout, so the client gets the service's own 504 (and nothing
        # is published) rather than API Gateway's while the fit goes on.
        training_deadline_seconds=_env_float("TRAINING_DEADLINE_SECONDS", 22.0),
        # Requests whose estimated training time exceeds this are refused before fitting.
        training_budget_seconds=_env_float("TRAINING_BUDGET_SECONDS", 20.0),
        idempotency_ttl_seconds=_env_int("IDEMPOTENCY_TTL_SECONDS", 24 * 3600),
        # No value seen in fewer training rows than this is published or kept in an artifact: rarer categories
        # share one token, rarer words are left out, numbers are summarised by percentiles with at least this
        # many rows on each side, and a rarer class is refused (see the README, "What a model publishes").
        min_group_size=_min_group_size(),
        # Model rows one explain request may evaluate (model-agnostic explanations cost rows × samples ×
        # (features + 1)); beyond it the request is refused naming how many rows fit.
        explain_max_evaluations=_env_int("EXPLAIN_MAX_EVALUATIONS", 200_000),
    )


def _min_group_size() -> int:
    value = _env_int("MIN_GROUP_SIZE", 5)
    if value < 1:
        raise ServiceError("configuration_error", "environment variable MIN_GROUP_SIZE must be at least 1")
    return value
