"""The dataset routes: create a dataset and upload its file straight to S3 through presigned URLs, complete a
multipart upload, list, describe (with the file's profile) and erase datasets (mlservice.dataset_store).

Management routes, IAM-authorised like the registry's. Creating takes no Idempotency-Key (a retried create
makes a second, empty dataset, which DELETE removes); completing and deleting are idempotent by nature.
"""

from __future__ import annotations

from typing import Annotated

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.api_gateway import Router
from aws_lambda_powertools.event_handler.openapi.params import Path, Query

from mlservice import audit, dataset_store
from mlservice.api.schemas import IAM_SIGNED
from mlservice.dataset_store import CompleteUpload, CreateDataset
from mlservice.observability import logger

router = Router()

# Any text: a malformed id names no dataset (404 dataset_not_found, from keys.validate_dataset_id).
DatasetId = Annotated[str, Path(description="the dataset's id: 32 lowercase hex digits")]
FirstPart = Annotated[
    int,
    Query(
        ge=1,
        le=dataset_store.MAX_PARTS,
        description="multipart uploads awaiting their file: the first part to presign URLs for (1000 at a time)",
    ),
]


def _seconds_left() -> float | None:
    """What a profile may take: the invocation's remaining time, less what the rest of the request needs."""
    context = router.api_resolver.lambda_context
    if context is None:
        return None
    return context.get_remaining_time_in_millis() / 1000 - dataset_store.PROFILE_MARGIN_SECONDS


@router.post(
    "/datasets",
    summary="Create a dataset: where to upload its file (presigned S3 URLs)",
    description="201 with the dataset's id and how to upload the file: one presigned PUT up to 5 GiB, else a "
    "multipart upload (part size, one presigned URL per part, then POST /datasets/{id}/complete). URLs expire "
    "after an hour; GET /datasets/{id} gives fresh ones while the file is awaited.",
    tags=["datasets"],
    security=IAM_SIGNED,
    responses={201: {"description": "the new dataset and how to upload its file"}},
)
def create_dataset(request: CreateDataset) -> Response[dict]:
    created = dataset_store.create(request, audit.from_event(router.current_event.raw_event))
    logger.info("dataset created", extra={"dataset_id": created["dataset_id"], "bytes": request.bytes})
    return Response(status_code=201, content_type="application/json", body=created)


@router.get("/datasets", summary="List datasets with their status", tags=["datasets"], security=IAM_SIGNED)
def list_datasets() -> dict:
    return {"datasets": dataset_store.list_datasets()}


@router.get(
    "/datasets/<dataset_id>",
    summary="A dataset: its record, and its profile once uploaded (fresh upload URLs before)",
    description="Once the file is uploaded: its size, ETag and SHA-256, columns, rows and a schema inferred in "
    "one streaming pass (kinds, missing counts, percentiles and categories under the MIN_GROUP_SIZE rule), "
    "computed on the first GET and kept. Status `invalid` with a reason for a file that cannot be trained on, "
    "`profiling_too_large_for_a_request` for one too large to profile within a request.",
    tags=["datasets"],
    security=IAM_SIGNED,
)
def get_dataset(dataset_id: DatasetId, first_part: FirstPart = 1) -> dict:
    return dataset_store.describe(dataset_id, first_part, _seconds_left())


@router.post(
    "/datasets/<dataset_id>/complete",
    summary="Complete a multipart upload from its parts' ETags (idempotent)",
    tags=["datasets"],
    security=IAM_SIGNED,
)
def complete_upload(dataset_id: DatasetId, request: CompleteUpload) -> dict:
    completed = dataset_store.complete(dataset_id, request)
    logger.info("dataset upload completed", extra={"dataset_id": dataset_id, "status": completed["status"]})
    return completed


@router.delete(
    "/datasets/<dataset_id>",
    summary="Erase a dataset: every stored version of its file, record and profile, and an unfinished upload",
    description="204; 404 when nothing of it is there. Idempotent by nature (a repeat finds nothing: 404).",
    tags=["datasets"],
    security=IAM_SIGNED,
    responses={204: {"description": "erased"}},
)
def delete_dataset(dataset_id: DatasetId) -> Response[None]:
    removed = dataset_store.delete(dataset_id)
    logger.info("dataset erased", extra={"dataset_id": dataset_id, "object_versions_removed": removed})
    return Response(status_code=204)
