"""The S3 layout, and the name rules that keep every key well-formed.

Keys are built only here and only from validated names, so a hostile name (`../x`, unicode, 200
characters) can never address anything outside its model's prefix.

    models/{model}/versions/{NNNNNNNNNN}/claim          version number reservation (conditional create)
    models/{model}/versions/{NNNNNNNNNN}/model.joblib   the artifact (written first)
    models/{model}/versions/{NNNNNNNNNN}/metadata.json  the metadata (written last: makes the version visible)
    models/{model}/stages/{stage}.json                  stage pointer and history (conditional update)
    datasets/...                                        training data uploaded by users
    batch/input/{model}[@stage|@vN]/...                 batch prediction inputs (trigger)
    batch/output/{model}/...                            batch prediction outputs and manifests
    batch/errors/{model}/...                            rejected rows
    batch/state/...                                     fan-out bookkeeping
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from mlservice.errors import bad_request

NAME_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,63}$"
_NAME = re.compile(NAME_PATTERN)
MODELS = "models/"
DATASETS = "datasets/"
VERSION_DIGITS = 10
MAX_VERSION = 10**VERSION_DIGITS - 1


def validate_name(value: object, what: str) -> str:
    """Return the name when it matches the documented pattern, else raise 400 `invalid_name`."""
    if not isinstance(value, str) or not _NAME.fullmatch(value):
        shown = repr(value)[:80]
        raise bad_request(
            f"{what} name {shown} is invalid: use 1-64 characters from a-z, 0-9, '_' and '-', "
            "starting with a letter or digit",
            code="invalid_name",
        )
    return value


def validate_version(value: object) -> int:
    """Versions are positive integers; anything else is a 400 naming it."""
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_VERSION:
        raise bad_request(f"version must be a positive integer, got {str(value)[:40]!r}", code="invalid_version")
    return value


def model_prefix(model: str) -> str:
    return f"{MODELS}{model}/"


def versions_prefix(model: str) -> str:
    return f"{MODELS}{model}/versions/"


def version_prefix(model: str, version: int) -> str:
    return f"{versions_prefix(model)}{version:0{VERSION_DIGITS}d}/"


def claim_key(model: str, version: int) -> str:
    return version_prefix(model, version) + "claim"


def artifact_key(model: str, version: int) -> str:
    return version_prefix(model, version) + "model.joblib"


def metadata_key(model: str, version: int) -> str:
    return version_prefix(model, version) + "metadata.json"


def stages_prefix(model: str) -> str:
    return f"{MODELS}{model}/stages/"


def stage_key(model: str, stage: str) -> str:
    return f"{stages_prefix(model)}{stage}.json"


def version_from_prefix(prefix: str) -> int | None:
    """`models/m/versions/0000000003/` → 3; None for anything that is not a version folder."""
    last = prefix.rstrip("/").rsplit("/", 1)[-1]
    return int(last) if len(last) == VERSION_DIGITS and last.isdigit() else None


def dataset_key(value: object) -> str:
    """A user-supplied training data key: must lie under datasets/ with a supported extension."""
    if not isinstance(value, str) or not value.startswith(DATASETS):
        raise bad_request("data.s3_key must be a key under 'datasets/' in the service's bucket", code="invalid_data")
    rest = value[len(DATASETS) :]
    parts = rest.split("/")
    if not rest or any(p in ("", ".", "..") for p in parts) or len(value) > 1024 or "\\" in value:
        raise bad_request(f"data.s3_key {value[:80]!r} is not a valid dataset key", code="invalid_data")
    if not value.lower().endswith((".csv", ".jsonl", ".csv.gz", ".jsonl.gz")):
        raise bad_request("data.s3_key must name a .csv or .jsonl file (optionally .gz)", code="invalid_data")
    return value


# ---------------------------------------------------------------- batch prediction

BATCH_INPUT = "batch/input/"
BATCH_OUTPUT = "batch/output/"
BATCH_ERRORS = "batch/errors/"
BATCH_STATE = "batch/state/"
_SELECTOR = re.compile(r"^(?P<model>[^@]+)(?:@(?:v(?P<version>\d+)|(?P<stage>[^@]+)))?$")


@dataclass(frozen=True)
class BatchInput:
    """What an input key asks for: batch/input/{model}[@stage|@vN]/{relative path}."""

    key: str
    model: str
    stage: str | None
    version: int | None
    relative: str

    @property
    def output_key(self) -> str:
        return f"{BATCH_OUTPUT}{self.model}/{self.relative}"

    @property
    def manifest_key(self) -> str:
        return f"{BATCH_OUTPUT}{self.model}/{self.relative}.manifest.json"

    @property
    def errors_key(self) -> str:
        return f"{BATCH_ERRORS}{self.model}/{self.relative}.errors.jsonl"


def parse_batch_input(key: str) -> BatchInput:
    """Split an input key into model, stage or version, and the path below them; 400 when malformed."""
    if not key.startswith(BATCH_INPUT):
        raise bad_request(f"{key[:200]!r} is not under {BATCH_INPUT}", code="invalid_batch_key")
    selector, _, relative = key[len(BATCH_INPUT) :].partition("/")
    found = _SELECTOR.fullmatch(selector)
    if not found or not relative or any(p in ("", ".", "..") for p in relative.split("/")):
        raise bad_request(
            f"batch input key {key[:200]!r} must look like batch/input/<model>[@<stage>|@v<N>]/<file>",
            code="invalid_batch_key",
        )
    model = validate_name(found["model"], "model")
    version = validate_version(int(found["version"])) if found["version"] else None
    stage = validate_name(found["stage"], "stage") if found["stage"] else None
    return BatchInput(key, model, stage, version, relative)


def batch_job_prefix(job_id: str) -> str:
    return f"{BATCH_STATE}{job_id}/"
