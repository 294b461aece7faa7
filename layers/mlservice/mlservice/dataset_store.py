"""Datasets: training files that clients upload straight to S3, through URLs the service presigns.

    POST /datasets                    a record (name, format, gzip, declared size) and where to upload the file:
                                      one presigned PUT up to PUT_MAX_BYTES (5 GiB, S3's limit for one PUT), else a
                                      multipart upload whose parts each get a presigned URL
    POST /datasets/{id}/complete      assembles a multipart upload from its parts' ETags (idempotent)
    GET  /datasets                    every dataset with its status
    GET  /datasets/{id}               the record; while awaiting its file, fresh upload URLs; once uploaded, its
                                      profile (mlservice.dataset_profile), computed on the first GET and kept,
                                      keyed to the file's ETag, so a re-upload is profiled again
    DELETE /datasets/{id}             every stored version of every object of the dataset, and an unfinished upload

A dataset lies under `datasets/{id}/` (mlservice.keys): `dataset.json` (written once, with a conditional write),
the file `data.csv[.gz]` / `data.jsonl[.gz]`, and `profile.json`. Its status is derived, never stored: the
file exists or it does not. Training reads the file with the loader of `{"s3_key"}` sources
(mlservice.training.datasets), which asks `training_source` here first.

Every S3 call goes through mlservice.storage (503 storage_unavailable when S3 fails).
"""

from __future__ import annotations

import secrets
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Literal

from pydantic import Field, field_validator

from mlservice import atomic, keys, storage
from mlservice.atomic import Change
from mlservice.audit import INTERNAL_ACTOR, Actor
from mlservice.errors import ObjectChanged, ServiceError, bad_request, conflict, not_found
from mlservice.fields import Body, coded
from mlservice.settings import get_settings

MiB = 1024 * 1024
GiB = 1024 * MiB
TiB = 1024 * GiB
MAX_BYTES = 5 * TiB  # S3's largest object
PUT_MAX_BYTES = 5 * GiB  # S3's largest single PUT; larger files are uploaded in parts
MIN_PART_BYTES = 100 * MiB
MAX_PARTS = 10_000  # S3's limit per multipart upload
URL_SECONDS = 3600
# Part URLs per response (each is ~1.5 KB with a session token; 10,000 of them would not fit Lambda's 6 MB).
PART_URLS = 1000
MAX_NAME = 128
# Files larger than this are not profiled within a request (neither are those the deadline stops): at the ~8 MB/s
# of CSV a CPU parses, DeployFunction's ~0.3 vCPU would need minutes (benchmarks/dataset_memory.py).
PROFILE_MAX_BYTES = 256 * MiB
# Seconds a GET may spend profiling, and what it keeps of the invocation's time for the rest of the request.
PROFILE_SECONDS = 20.0
PROFILE_MARGIN_SECONDS = 4.0
AWAITING, UPLOADED = "awaiting_upload", "uploaded"
CONTENT_TYPES = {"csv": "text/csv", "jsonl": "application/x-ndjson"}


class CreateDataset(Body):
    name: str | None = Field(
        None, description=f"shown in listings: 1 to {MAX_NAME} printable characters", examples=["houses 2026-11"]
    )
    format: Literal["csv", "jsonl"] = coded(
        "invalid_request", rule="'csv' (with a header row) or 'jsonl' (one JSON object per line)"
    )
    gzip: bool = coded("invalid_request", False, rule="true or false (the file is gzip-compressed)")
    bytes: int = coded(
        "invalid_request",
        ge=1,
        le=MAX_BYTES,
        rule=f"the file's size, an integer from 1 to {MAX_BYTES} (5 TiB)",
        description="the file's size in bytes: up to 5 GiB one PUT, above it a multipart upload",
    )

    @field_validator("name")
    @classmethod
    def _printable(cls, name: str | None) -> str | None:
        if name is not None and not (1 <= len(name) <= MAX_NAME and name.isprintable()):
            raise ValueError(
                f"must be 1 to {MAX_NAME} printable characters (no control, format or line-break characters)"
            )
        return name


class UploadedPart(Body):
    part_number: int = Field(ge=1, le=MAX_PARTS)
    etag: str = Field(min_length=1, max_length=200, description="the ETag header S3 answered the part's PUT with")


class CompleteUpload(Body):
    parts: list[UploadedPart] = Field(min_length=1, max_length=MAX_PARTS)


# ---------------------------------------------------------------- records


def _read_record(dataset_id: str) -> dict:
    found = storage.get_json(keys.dataset_record_key(dataset_id))
    if found is None:
        raise not_found("dataset_not_found", f"no dataset with id {dataset_id!r}")
    return found[0]


def _public(record: dict) -> dict:
    fields = ("dataset_id", "name", "format", "gzip", "bytes", "s3_key", "created_at", "created_by")
    return {name: record.get(name) for name in fields}


def part_size(size: int) -> int:
    """max(MIN_PART_BYTES, size / 10,000 rounded up to a whole MiB): at most MAX_PARTS parts."""
    per_part = _ceil_div(size, MAX_PARTS)
    return max(MIN_PART_BYTES, _ceil_div(per_part, MiB) * MiB)


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def _upload(record: dict, first_part: int = 1) -> dict:
    """How to upload the file now: presigned URLs, valid URL_SECONDS from now."""
    key, upload = record["s3_key"], record["upload"]
    if upload["method"] == "PUT":
        return {
            "method": "PUT",
            "url": storage.presigned_put(key, URL_SECONDS),
            "expires_in": URL_SECONDS,
            "headers": {},
        }
    count = upload["part_count"]
    first = min(max(1, first_part), count)
    last = min(count, first + PART_URLS - 1)
    answer: dict[str, Any] = {
        "method": "multipart",
        "upload_id": upload["upload_id"],
        "part_size": upload["part_size"],
        "part_count": count,
        "parts": [
            {"part_number": n, "url": storage.presigned_part(key, upload["upload_id"], n, URL_SECONDS)}
            for n in range(first, last + 1)
        ],
        "expires_in": URL_SECONDS,
        "headers": {},
        "complete": f'POST /datasets/{record["dataset_id"]}/complete with {{"parts": [{{"part_number", "etag"}}]}} '
        "(each part's ETag is the ETag header its PUT answered with)",
    }
    if last < count:
        answer["more_parts"] = f"GET /datasets/{record['dataset_id']}?first_part={last + 1}"
    return answer


def create(request: CreateDataset, actor: Actor = INTERNAL_ACTOR) -> dict:
    """A new dataset awaiting its file, and how to upload it (201)."""
    dataset_id = secrets.token_hex(16)
    key = keys.dataset_object_key(dataset_id, request.format, request.gzip)
    record: dict[str, Any] = {
        "dataset_id": dataset_id,
        "name": request.name,
        "format": request.format,
        "gzip": request.gzip,
        "bytes": request.bytes,
        "s3_key": key,
        "created_at": atomic.now_iso(),
        "created_by": actor.record(),
    }
    if request.bytes > PUT_MAX_BYTES:
        size = part_size(request.bytes)
        content_type = "application/gzip" if request.gzip else CONTENT_TYPES[request.format]
        upload_id = storage.create_multipart(key, content_type)
        record["upload"] = {
            "method": "multipart",
            "upload_id": upload_id,
            "part_size": size,
            "part_count": _ceil_div(request.bytes, size),
        }
    else:
        record["upload"] = {"method": "PUT"}

    def change(current: dict | None) -> Change:
        if current is None:
            return Change(record)
        if current == record:  # this request's own write, whose reply was lost
            return Change(None)
        raise ServiceError("internal_error", "a new dataset id collided with an existing one")

    try:
        atomic.update(keys.dataset_record_key(dataset_id), change, what=f"dataset {dataset_id}")
    except Exception:
        if record["upload"]["method"] == "multipart":
            storage.abort_multipart(key, record["upload"]["upload_id"])
        raise
    return {"dataset_id": dataset_id, "status": AWAITING, "upload": _upload(record)}


# ---------------------------------------------------------------- listing and describing


def list_datasets() -> list[dict]:
    """Every dataset (newest first): one listing of datasets/ and one read of each record."""
    found: dict[str, set[str]] = {}
    for item in storage.list_keys(keys.DATASETS):
        dataset_id = keys.dataset_id_from_key(item["Key"])
        if dataset_id is not None:
            found.setdefault(dataset_id, set()).add(item["Key"])
    ids = [i for i, objects in found.items() if keys.dataset_record_key(i) in objects]

    def summary(dataset_id: str) -> dict | None:
        got = storage.get_json(keys.dataset_record_key(dataset_id))
        if got is None:  # deleted since the listing
            return None
        record = got[0]
        status = UPLOADED if record.get("s3_key") in found[dataset_id] else AWAITING
        return {
            "dataset_id": dataset_id,
            "name": record.get("name"),
            "status": status,
            "bytes": record.get("bytes"),
            "created_at": record.get("created_at"),
        }

    if len(ids) <= 2:
        summaries = [summary(i) for i in ids]
    else:
        with ThreadPoolExecutor(max_workers=min(16, len(ids))) as pool:
            summaries = list(pool.map(summary, ids))
    datasets = [s for s in summaries if s is not None]
    return sorted(datasets, key=lambda s: (s["created_at"] or "", s["dataset_id"]), reverse=True)


def describe(dataset_id: str, first_part: int = 1, seconds: float | None = None) -> dict:
    """The dataset: its record and status; fresh upload URLs while it awaits its file (multipart: from part
    `first_part`, PART_URLS of them); its profile once uploaded, computed now if it has none (within `seconds`)."""
    keys.validate_dataset_id(dataset_id)
    record = _read_record(dataset_id)
    answer = _public(record)
    for _ in range(3):  # the file may be replaced while it is profiled: profile the new one
        head = storage.head(record["s3_key"])
        if head is None:
            return {"dataset_id": dataset_id, "status": AWAITING, **answer, "upload": _upload(record, first_part)}
        etag = str(head["ETag"]).strip('"')
        size = int(head["ContentLength"])
        try:
            found = _profile(dataset_id, record, etag, size, seconds)
        except ObjectChanged:
            continue
        except KeyError:  # deleted while it was being read
            return {"dataset_id": dataset_id, "status": AWAITING, **answer, "upload": _upload(record, first_part)}
        profile = {k: v for k, v in found.items() if k not in ("etag", "size", "status")}
        return {
            "dataset_id": dataset_id,
            "status": found["status"],
            **answer,
            "size": size,
            "etag": etag,
            **profile,
            "min_group_size": get_settings().min_group_size,
        }
    raise ServiceError("write_contention", "the dataset's file kept changing while it was read; retry", retry_after=1)


def _profile(dataset_id: str, record: dict, etag: str, size: int, seconds: float | None) -> dict:
    from mlservice import dataset_profile

    key = keys.dataset_profile_key(dataset_id)
    found = storage.get_json(key)
    if found is not None and found[0].get("etag") == etag:
        return found[0]
    if size > PROFILE_MAX_BYTES:
        return {
            "status": dataset_profile.TOO_LARGE,
            "note": f"the file has {size} bytes: files over {PROFILE_MAX_BYTES} bytes are not profiled within a "
            "request (yet); it can still be trained on within the training function's limits",
        }
    settings = get_settings()
    budget = min(PROFILE_SECONDS, seconds if seconds is not None else PROFILE_SECONDS)
    deadline = time.monotonic() + budget
    reader = storage.ChunkReader(record["s3_key"], if_match=etag)
    try:
        document = dataset_profile.profile(
            reader,
            record["format"],
            bool(record["gzip"]),
            min_group=settings.min_group_size,
            max_columns=settings.max_train_columns,
            deadline=deadline,
        )
    finally:
        reader.close()
    document = {**document, "etag": etag, "size": size, "profiled_at": atomic.now_iso()}
    if document["status"] == dataset_profile.TOO_LARGE and budget < PROFILE_SECONDS:
        return document  # stopped early for want of this invocation's time: the next GET tries again

    def change(current: dict | None) -> Change:
        if current is not None and current.get("etag") == etag:
            return Change(None, current)  # a concurrent GET profiled the same file first
        return Change(document, document)

    return atomic.update(key, change, what=f"the profile of dataset {dataset_id}")


# ---------------------------------------------------------------- completing and deleting


def complete(dataset_id: str, request: CompleteUpload) -> dict:
    """Assemble a multipart upload from its parts; the same answer when it was already assembled. For a
    dataset uploaded with one PUT there is nothing to assemble: the answer is its status."""
    keys.validate_dataset_id(dataset_id)
    record = _read_record(dataset_id)
    key, upload = record["s3_key"], record["upload"]
    if upload["method"] == "multipart":
        numbers = [p.part_number for p in request.parts]
        if numbers != sorted(set(numbers)):
            raise bad_request("parts must be listed once each, by ascending part_number", code="invalid_upload")
        parts = [{"PartNumber": p.part_number, "ETag": '"' + p.etag.strip('"') + '"'} for p in request.parts]
        try:
            storage.complete_multipart(key, upload["upload_id"], parts)
        except (KeyError, ValueError) as error:
            if storage.head(key) is None:  # not assembled before: the parts are wrong or the upload is gone
                reason = (
                    "the upload no longer exists (aborted, or older than the bucket keeps unfinished uploads); "
                    "create a new dataset"
                    if isinstance(error, KeyError)
                    else f"S3 refused the parts ({str(error)[:300]})"
                )
                raise bad_request(
                    f"cannot complete the upload of dataset {dataset_id!r}: {reason}", code="invalid_upload"
                ) from None
    head = storage.head(key)
    if head is None:
        return {"dataset_id": dataset_id, "status": AWAITING}
    return {
        "dataset_id": dataset_id,
        "status": UPLOADED,
        "size": int(head["ContentLength"]),
        "etag": str(head["ETag"]).strip('"'),
    }


# Passes of the erasure: an upload racing it (a PUT through a URL handed out before) is erased by the next one.
DELETE_PASSES = 3


def delete(dataset_id: str) -> int:
    """Erase every object version and delete marker under the dataset's prefix, after aborting an unfinished
    multipart upload. Returns how many versions were removed; 404 when nothing was there."""
    prefix = keys.dataset_prefix(dataset_id)
    found = storage.get_json(keys.dataset_record_key(dataset_id))
    record = found[0] if found else None
    if record is not None and record.get("upload", {}).get("method") == "multipart":
        storage.abort_multipart(record["s3_key"], record["upload"]["upload_id"])
    removed = 0
    for _ in range(DELETE_PASSES):
        versions = storage.list_versions(prefix)
        if not versions:
            break
        storage.delete_versions(versions)
        removed += len(versions)
    if record is None and removed == 0:
        raise not_found("dataset_not_found", f"no dataset with id {dataset_id!r}")
    return removed


# ---------------------------------------------------------------- training


def training_source(dataset_id: str) -> dict:
    """What training needs to know of a dataset before reading it: its key, size and ETag, and how many bytes
    it holds uncompressed when a profile of this very file says so. 404 for no such dataset, 409 before the
    file is uploaded."""
    keys.validate_dataset_id(dataset_id)
    record = _read_record(dataset_id)
    head = storage.head(record["s3_key"])
    if head is None:
        raise conflict(
            "dataset_not_uploaded",
            f"dataset {dataset_id!r} has no file yet: upload it through the URL POST /datasets answered with "
            "(GET /datasets/{id} gives fresh ones)",
        )
    etag = str(head["ETag"]).strip('"')
    profile = storage.get_json(keys.dataset_profile_key(dataset_id))
    uncompressed = None
    if profile is not None and profile[0].get("etag") == etag:
        uncompressed = profile[0].get("uncompressed_bytes")
    return {
        "s3_key": record["s3_key"],
        "bytes": int(head["ContentLength"]),
        "etag": etag,
        "uncompressed_bytes": uncompressed,
    }
