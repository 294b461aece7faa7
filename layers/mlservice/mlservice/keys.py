"""The S3 layout, and the name rules that keep every key well-formed.

Every key the service reads or writes is built here, and only from validated names, so a hostile name
(`../x`, unicode, 200 characters) can never address anything outside its model's prefix.

    models/{model}/registry.json                        versions, their states and digests, stages, history
                                                        (one document, changed only by compare-and-swap)
    models/{model}/versions/{NNNNNNNNNN}/model.joblib   a version's artifact (the scikit-learn pipeline)
    models/{model}/versions/{NNNNNNNNNN}/model.onnx     its ONNX export, when it converted with parity
    models/{model}/versions/{NNNNNNNNNN}/metadata.json  a version's full metadata
    datasets/{id}/dataset.json                          a dataset created by POST /datasets: name, format, upload
    datasets/{id}/data.csv[.gz] | data.jsonl[.gz]       its file, uploaded by the client through presigned URLs
    datasets/{id}/profile.json                          its profile (schema, digests), keyed to the file's ETag
    datasets/...                                        other training data uploaded by users
    batch/input/{model}[@stage|@vN]/...                 batch prediction inputs (trigger)
    batch/output/{model}/...                            batch prediction outputs and manifests
    batch/errors/{model}/...                            rejected rows
    batch/state/{model}/{job}/...                       a batch job's lease, plan, progress and parts
    idempotency/{model}/{sha256}.json                   Idempotency-Key records (24 h)

Everything written for a model lies under a prefix naming it (`erasure_prefixes`), which is what lets
DELETE /models/{model} find and erase all of it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from mlservice.errors import ServiceError, bad_request

NAME_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,63}$"
_NAME = re.compile(NAME_PATTERN)
MODELS = "models/"
DATASETS = "datasets/"
VERSION_DIGITS = 10
MAX_VERSION = 10**VERSION_DIGITS - 1


def name_error(value: object, what: str) -> ServiceError:
    """400 `invalid_name` for a model or stage name outside the pattern (the one wording of that rule)."""
    shown = repr(value)[:80] if isinstance(value, str) else type(value).__name__
    return bad_request(
        f"{what} name {shown} is invalid: use 1-64 characters from a-z, 0-9, '_' and '-', "
        "starting with a letter or digit",
        code="invalid_name",
    )


def version_error(value: object) -> ServiceError:
    """400 `invalid_version` (the one wording of that rule, for path, query and body alike)."""
    shown = repr(value)[:40] if isinstance(value, str) else repr(str(value)[:40])
    return bad_request(f"version must be a positive integer up to {MAX_VERSION}, got {shown}", code="invalid_version")


def validate_name(value: object, what: str) -> str:
    """Return the name when it matches the documented pattern, else raise 400 `invalid_name`."""
    if not isinstance(value, str) or not _NAME.fullmatch(value):
        raise name_error(value, what)
    return value


def validate_version(value: object) -> int:
    """Versions are positive integers; anything else is a 400 naming it."""
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_VERSION:
        raise version_error(value)
    return value


def versions_prefix(model: str) -> str:
    return f"{MODELS}{model}/versions/"


def version_prefix(model: str, version: int) -> str:
    return f"{versions_prefix(model)}{version:0{VERSION_DIGITS}d}/"


def registry_key(model: str) -> str:
    return f"{MODELS}{model}/registry.json"


def artifact_key(model: str, version: int) -> str:
    return version_prefix(model, version) + "model.joblib"


def onnx_key(model: str, version: int) -> str:
    return version_prefix(model, version) + "model.onnx"


def metadata_key(model: str, version: int) -> str:
    return version_prefix(model, version) + "metadata.json"


def _job_name(token: str) -> str:
    import hashlib

    return hashlib.sha256(token.encode()).hexdigest()[:32]


def job_request_key(model: str, token: str) -> str:
    """The stored request of an asynchronous training, named by a digest of its token (known before the
    version number is), under the model's prefix so an erasure removes it."""
    return f"{MODELS}{model}/jobs/{_job_name(token)}.json"


def job_scores_prefix(model: str, token: str) -> str:
    """Where a search's candidate × fold scores are collected, one object each."""
    return f"{MODELS}{model}/jobs/{_job_name(token)}/scores/"


def job_score_key(model: str, token: str, candidate: int, fold: int, round_number: int = 0) -> str:
    return f"{job_scores_prefix(model, token)}{round_number}-{candidate:03d}-{fold:02d}.json"


def job_prepared_key(model: str, token: str) -> str:
    """A search's training part, read and encoded once by its planning step for every fold."""
    return f"{MODELS}{model}/jobs/{_job_name(token)}/prepared.joblib"


def job_refit_key(model: str, token: str) -> str:
    """The claim of the one worker refitting a search's best candidate."""
    return f"{MODELS}{model}/jobs/{_job_name(token)}/refit.json"


def model_from_prefix(prefix: str) -> str | None:
    """`models/iris/` → iris; None for a folder whose name is not a valid model name."""
    name = prefix[len(MODELS) :].rstrip("/")
    return name if _NAME.fullmatch(name) else None


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


# ---------------------------------------------------------------- datasets (POST /datasets)

DATASET_ID_PATTERN = r"^[0-9a-f]{32}$"
_DATASET_ID = re.compile(DATASET_ID_PATTERN)
DATASET_FORMATS = ("csv", "jsonl")


def validate_dataset_id(value: object) -> str:
    """A dataset id is 32 lowercase hex digits; anything else names no dataset (404 `dataset_not_found`)."""
    if not isinstance(value, str) or not _DATASET_ID.fullmatch(value):
        shown = repr(value)[:80] if isinstance(value, str) else type(value).__name__
        raise ServiceError("dataset_not_found", f"no dataset with id {shown}: ids are 32 lowercase hex digits")
    return value


def dataset_prefix(dataset_id: str) -> str:
    """Everything of one dataset lies under this prefix (which is what DELETE /datasets/{id} erases)."""
    return f"{DATASETS}{validate_dataset_id(dataset_id)}/"


def dataset_record_key(dataset_id: str) -> str:
    return dataset_prefix(dataset_id) + "dataset.json"


def dataset_object_key(dataset_id: str, data_format: str, gzipped: bool) -> str:
    """The dataset's file: `data.csv`, `data.jsonl`, with `.gz` when gzipped (what the training loader reads)."""
    if data_format not in DATASET_FORMATS:
        raise ValueError(f"{data_format!r} is not a dataset format")
    return f"{dataset_prefix(dataset_id)}data.{data_format}{'.gz' if gzipped else ''}"


def dataset_profile_key(dataset_id: str) -> str:
    return dataset_prefix(dataset_id) + "profile.json"


def dataset_id_from_key(key: str) -> str | None:
    """`datasets/{id}/...` → id; None for any other key under datasets/."""
    folder, _, rest = key[len(DATASETS) :].partition("/") if key.startswith(DATASETS) else ("", "", "")
    return folder if rest and _DATASET_ID.fullmatch(folder) else None


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


_JOB = re.compile(NAME_PATTERN[1:-1] + r"/[0-9a-f]{32}")


def batch_job_id(model: str, digest: str) -> str:
    """A batch job's id, `{model}/{32 hex}`: its state lies under the model's prefix, so erasing the model
    erases it."""
    return f"{validate_name(model, 'model')}/{digest[:32]}"


def batch_job_prefix(job_id: str) -> str:
    if not _JOB.fullmatch(job_id):
        raise ValueError(f"{job_id[:80]!r} is not a batch job id")
    return f"{BATCH_STATE}{job_id}/"


def batch_lease_key(job_id: str) -> str:
    return batch_job_prefix(job_id) + "lease.json"


def batch_plan_key(job_id: str) -> str:
    return batch_job_prefix(job_id) + "plan.json"


def batch_progress_key(job_id: str) -> str:
    return batch_job_prefix(job_id) + "progress.json"


def batch_assembly_lease_key(job_id: str) -> str:
    return batch_job_prefix(job_id) + "assembly.json"


def batch_part_key(job_id: str, part: int, kind: str) -> str:
    """A fanned-out range's output (`out`), rejected rows (`errors`) or counts (`json`)."""
    return f"{batch_job_prefix(job_id)}parts/{part:05d}.{kind}"


def invalid_batch_manifest_key(key: str) -> str:
    """Where the manifest of an input whose key names no valid model goes."""
    return BATCH_OUTPUT + "_invalid/" + key[len(BATCH_INPUT) :] + ".manifest.json"


# ---------------------------------------------------------------- idempotency

IDEMPOTENCY = "idempotency/"


def idempotency_key(model: str, hashed: str) -> str:
    """The record of one Idempotency-Key on a route of `model` (already hashed with its caller, so the key is
    opaque and fixed-size)."""
    if not re.fullmatch(r"[0-9a-f]{64}", hashed):
        raise ValueError("an idempotency record key is a sha256 hex digest")
    return f"{IDEMPOTENCY}{validate_name(model, 'model')}/{hashed}.json"


# ---------------------------------------------------------------- erasure


def erasure_prefixes(model: str) -> dict[str, str]:
    """Every prefix holding objects written for a model, by what they are. `batch_inputs` is a prefix of the
    model's own inputs (`{model}/...`, `{model}@stage/...`) but also of longer names: see `is_models_input`."""
    validate_name(model, "model")
    return {
        "registry_and_versions": f"{MODELS}{model}/",
        "batch_inputs": f"{BATCH_INPUT}{model}",
        "batch_outputs": f"{BATCH_OUTPUT}{model}/",
        "batch_errors": f"{BATCH_ERRORS}{model}/",
        "batch_state": f"{BATCH_STATE}{model}/",
        "idempotency_records": f"{IDEMPOTENCY}{model}/",
    }


def is_models_input(model: str, key: str) -> bool:
    """Whether a key under batch/input/ asks for this model (and not for one whose name merely starts so)."""
    return key.startswith((f"{BATCH_INPUT}{model}/", f"{BATCH_INPUT}{model}@"))
