"""The typed errors of the service, and the one catalogue of error codes.

Every failure a client can cause or observe is a ServiceError carrying a stable snake_case code from CODES,
which fixes its HTTP status; the API layer turns it into the documented JSON body in one place. Anything else
that escapes is a bug and becomes a 500 `internal_error` without details. CODES is what the README's table,
the OpenAPI document and the fuzz tests are checked against, so a code cannot be used without being
documented.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Code:
    status: int
    meaning: str


CODES: dict[str, Code] = {
    # 400: the request itself is wrong
    "invalid_json": Code(400, "the body is not JSON (or nests deeper / holds longer numbers than allowed)"),
    "invalid_encoding": Code(400, "the body is not UTF-8, or a string holds a lone surrogate"),
    "invalid_request": Code(400, "structure: unknown or missing field, wrong type, both stage and version"),
    "invalid_idempotency_key": Code(400, "the Idempotency-Key header is empty, too long or not printable ASCII"),
    "invalid_name": Code(400, "a model or stage name outside the name rule (keys.NAME_PATTERN)"),
    "invalid_version": Code(400, "a version that is not a positive integer"),
    "invalid_algorithm": Code(400, "training: an algorithm the service does not offer"),
    "invalid_task": Code(400, "training: a task other than classification/regression, or one the algorithm lacks"),
    "invalid_hyperparameter": Code(400, "training: an unknown, reserved or out-of-range hyperparameter"),
    "invalid_data": Code(400, "training: a malformed data source or table"),
    "invalid_target": Code(400, "training: a missing, unknown or unusable target column"),
    "invalid_features": Code(400, "training: unknown, repeated or unusable feature columns"),
    "invalid_test_size": Code(400, "training: test_size outside its range"),
    "invalid_random_state": Code(400, "training: random_state outside its range"),
    "invalid_cv": Code(400, "training: cv outside its range or above the training rows"),
    "invalid_description": Code(400, "training: a description longer than allowed"),
    "invalid_search": Code(400, "training: a search that is malformed, over its limits, or has no train queue"),
    "invalid_value": Code(400, "a feature value that does not fit its feature (row and feature named)"),
    "training_failed": Code(400, "scikit-learn could not fit the algorithm to this data"),
    "training_too_expensive": Code(400, "the estimated training time exceeds the budget (the knob to turn is named)"),
    "class_too_rare": Code(400, "training: a class of fewer training rows than MIN_GROUP_SIZE (it would be published)"),
    "invalid_shape": Code(400, "predicting: rows of the wrong shape, or not exactly one input format"),
    "missing_features": Code(400, "predicting: rows lacking feature columns"),
    "invalid_output": Code(400, "explaining: an output the model does not have (probability, value, decision)"),
    "explanation_too_expensive": Code(400, "explaining: more model evaluations than allowed (the row limit is named)"),
    # batch manifests only (files, not HTTP requests)
    "invalid_batch_key": Code(400, "batch: an input key not shaped batch/input/<model>[@stage|@vN]/<file>"),
    "unsupported_format": Code(400, "batch: a file that is not .csv or .jsonl (optionally .gz)"),
    "not_utf8": Code(400, "batch: a line that is not UTF-8"),
    "unreadable_gzip": Code(400, "batch: a .gz file that is not gzip"),
    "missing_header": Code(400, "batch: a CSV file without a header row"),
    "invalid_header": Code(400, "batch: a CSV header repeating a column"),
    # datasets
    "invalid_upload": Code(400, "datasets: completing a multipart upload with parts S3 does not have"),
    # 404
    "model_not_found": Code(404, "no model of that name"),
    "version_not_found": Code(404, "the model has no such version (or it was deleted)"),
    "stage_not_found": Code(404, "the model has no such stage"),
    "stage_not_deployed": Code(404, "the stage serves no version"),
    "dataset_not_found": Code(404, "no training data at that S3 key, or no dataset of that id"),
    "route_not_found": Code(404, "no such route (make run only: deployed, API Gateway answers)"),
    # 409
    "version_in_use": Code(409, "deleting a version a stage serves"),
    "version_training": Code(409, "deleting a version whose asynchronous training is queued or running"),
    "no_previous_version": Code(409, "rolling back a stage with no earlier version"),
    "idempotency_key_in_progress": Code(409, "a request with this Idempotency-Key is still running; retry later"),
    "model_in_use": Code(409, "erasing a model a stage still serves (add ?undeploy=true)"),
    "model_being_erased": Code(409, "training or deploying a model while it is being erased"),
    "dataset_not_uploaded": Code(409, "training on a dataset whose file has not been uploaded yet"),
    "incompatible_runtime": Code(409, "deploying a version trained with other scikit-learn/numpy/joblib versions"),
    # 413
    "payload_too_large": Code(413, "body, rows, columns or cells over their limits"),
    "dataset_too_large": Code(413, "training data whose estimated memory exceeds the training function's"),
    # 422
    "idempotency_key_reused": Code(422, "an Idempotency-Key already used for a different request"),
    # 500
    "internal_error": Code(500, "a bug; details only in the logs"),
    "artifact_integrity": Code(500, "an artifact missing or not matching the SHA-256 the registry recorded"),
    "artifact_incompatible": Code(500, "an artifact made by other library versions than the runtime's: not loaded"),
    "configuration_error": Code(500, "the function's environment is wrong"),
    # 503
    "storage_unavailable": Code(503, "S3 failed or timed out; retry after Retry-After seconds"),
    "write_contention": Code(503, "too many concurrent writers on one registry object; retry"),
    "not_ready": Code(503, "/v2/health/ready: the model store does not answer"),
    # 504
    "training_timeout": Code(504, "the fit did not finish within the training deadline; nothing was published"),
}


class ServiceError(Exception):
    """An error with a catalogued code (which fixes the HTTP status) and a sentence naming the problem.

    `retry_after` (seconds) becomes a Retry-After header: set for the errors a client should simply retry.
    """

    def __init__(self, code: str, message: str, *, retry_after: int | None = None) -> None:
        super().__init__(message)
        self.status = CODES[code].status  # KeyError for an uncatalogued code: a bug caught by the tests
        self.code = code
        self.message = message
        self.retry_after = retry_after

    def to_body(self) -> dict:
        return {"error": {"code": self.code, "message": self.message}}


def bad_request(message: str, code: str = "invalid_request") -> ServiceError:
    return ServiceError(code, message)


def not_found(code: str, message: str) -> ServiceError:
    return ServiceError(code, message)


def conflict(code: str, message: str) -> ServiceError:
    return ServiceError(code, message)


def too_large(message: str) -> ServiceError:
    return ServiceError("payload_too_large", message)


class StorageUnavailable(ServiceError):
    """S3 (or SQS) failed, throttled or timed out after botocore's own retries: 503 with Retry-After.

    For a write the outcome is unknown — it may have been applied — which is why every write is made safe
    to repeat (see mlservice.atomic)."""

    RETRY_AFTER = 2

    def __init__(self, operation: str, reason: str) -> None:
        super().__init__(
            "storage_unavailable",
            f"the model store is unavailable ({operation}: {reason}); retry in a few seconds",
            retry_after=self.RETRY_AFTER,
        )


class WriteConflict(Exception):
    """A conditional S3 write lost a race (PreconditionFailed); the caller re-reads and retries."""


class ObjectChanged(Exception):
    """An object read under `IfMatch` was replaced since (a batch input uploaded again): the work on the old
    one is superseded by the new one's own job."""


class IntegrityError(ServiceError):
    """An artifact's bytes do not match the digest the registry recorded: it is never unpickled."""

    def __init__(self, message: str) -> None:
        super().__init__("artifact_integrity", message)
