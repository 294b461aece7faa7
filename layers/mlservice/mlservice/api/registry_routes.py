"""The registry routes: list and describe models and versions, delete versions, deploy, roll back, undeploy,
erase a model.

The mutating routes take an Idempotency-Key and hand the registry the request's token, so a retried request
is answered from its first attempt instead of being applied twice (mlservice.api.idempotency), and the
caller's identity, which the registry records with the change (mlservice.audit).
"""

from __future__ import annotations

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.api_gateway import Router

from mlservice import audit, erasure, registry
from mlservice.api.idempotency import idempotent, request_token
from mlservice.api.schemas import (
    IAM_SIGNED,
    DeployRequest,
    ModelName,
    StageChange,
    StageName,
    UndeployQuery,
    VersionNumber,
)
from mlservice.observability import logger, metrics

router = Router()


def _token() -> str:
    return request_token(router.api_resolver)


def _actor() -> audit.Actor:
    return audit.from_event(router.current_event.raw_event)


@router.get("/models", summary="List models", tags=["registry"], security=IAM_SIGNED)
def list_models() -> dict:
    return {"models": registry.list_models()}


@router.get(
    "/models/<model>",
    summary="Describe a model: versions, stages and stage history",
    tags=["registry"],
    security=IAM_SIGNED,
)
def describe_model(model: ModelName) -> dict:
    return registry.describe_model(model)


@router.delete(
    "/models/<model>",
    summary="Erase a model: every version, artifact, stage, history record and batch file, beyond recovery",
    description="409 model_in_use while a stage is deployed, unless ?undeploy=true. 202 with a report of what "
    "was removed; `status: erasing` with Retry-After while a training or batch job may still write (repeat the "
    "request to finish). Every stored version of every object is deleted, so nothing can be restored. "
    "Idempotent by nature (a repeat finishes an unfinished erasure; 404 once nothing is left), so it keeps "
    "no Idempotency-Key record.",
    tags=["registry"],
    security=IAM_SIGNED,
    responses={202: {"description": "what was removed"}},
)
def erase_model(model: ModelName, undeploy: UndeployQuery = False) -> Response[dict]:
    report = erasure.erase_model(model, undeploy=undeploy, actor=_actor())
    logger.info(
        "model erased" if report["status"] == "erased" else "model erasure waiting",
        extra={"model": model, "object_versions_removed": report["object_versions_removed"]},
    )
    headers = {"Retry-After": str(report["retry_after"])} if "retry_after" in report else None
    return Response(status_code=202, content_type="application/json", body=report, headers=headers)


@router.get(
    "/models/<model>/versions/<version>",
    summary="A version's metadata",
    tags=["registry"],
    security=IAM_SIGNED,
)
def get_version(model: ModelName, version: VersionNumber) -> dict:
    return registry.get_version(model, version)


@router.delete(
    "/models/<model>/versions/<version>",
    summary="Delete a version (409 while a stage serves it)",
    tags=["registry"],
    security=IAM_SIGNED,
    responses={204: {"description": "deleted"}},
    middlewares=[idempotent],
)
def delete_version(model: ModelName, version: VersionNumber) -> Response[None]:
    registry.delete_version(model, version, token=_token(), actor=_actor())
    logger.info("version deleted", extra={"model": model, "version": version})
    return Response(status_code=204)


@router.put(
    "/models/<model>/stages/<stage>",
    summary="Deploy: point a stage at a version",
    tags=["deployment"],
    security=IAM_SIGNED,
    middlewares=[idempotent],
)
def deploy(model: ModelName, stage: StageName, request: DeployRequest) -> StageChange:
    change = registry.set_stage(model, stage, request.version, token=_token(), actor=_actor())
    if change["previous_version"] != change["version"]:  # re-deploying the served version changes nothing
        logger.info("stage deployed", extra=change | {"model": model})
        metrics.add_metric(name="Deployments", unit="Count", value=1)
    return StageChange(**change)


@router.post(
    "/models/<model>/stages/<stage>/rollback",
    summary="Return a stage to the version it served before (409 when none)",
    tags=["deployment"],
    security=IAM_SIGNED,
    middlewares=[idempotent],
)
def rollback(model: ModelName, stage: StageName) -> StageChange:
    change = registry.rollback_stage(model, stage, token=_token(), actor=_actor())
    logger.info("stage rolled back", extra=change | {"model": model})
    return StageChange(**change)


@router.delete(
    "/models/<model>/stages/<stage>",
    summary="Undeploy: the stage serves nothing (its history stays; rollback restores it)",
    tags=["deployment"],
    security=IAM_SIGNED,
    responses={204: {"description": "undeployed"}},
    middlewares=[idempotent],
)
def undeploy(model: ModelName, stage: StageName) -> Response[None]:
    registry.clear_stage(model, stage, token=_token(), actor=_actor())
    logger.info("stage undeployed", extra={"model": model, "stage": stage})
    return Response(status_code=204)
