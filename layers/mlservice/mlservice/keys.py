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
