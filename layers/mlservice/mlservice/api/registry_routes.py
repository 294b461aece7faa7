"""The registry routes: list and describe models and versions, delete versions, deploy, roll back, undeploy.

The mutating routes take an Idempotency-Key and hand the registry the request's token, so a retried request
is answered from its first attempt instead of being applied twice (mlservice.api.idempotency).
"""

from __future__ import annotations

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.api_gateway import Router

from mlservice import registry
from mlservice.api.idempotency import idempotent, request_token
from mlservice.api.schemas import DeployRequest, ModelName, StageChange, StageName, VersionNumber
from mlservice.observability import logger, metrics

router = Router()


def _token() -> str:
    return request_token(router.api_resolver)


@router.get("/models", summary="List models", tags=["registry"])
def list_models() -> dict:
    return {"models": registry.list_models()}


@router.get("/models/<model>", summary="Describe a model: versions, stages and stage history", tags=["registry"])
def describe_model(model: ModelName) -> dict:
    return registry.describe_model(model)


@router.get("/models/<model>/versions/<version>", summary="A version's metadata", tags=["registry"])
def get_version(model: ModelName, version: VersionNumber) -> dict:
    return registry.get_version(model, version)


@router.delete(
    "/models/<model>/versions/<version>",
    summary="Delete a version (409 while a stage serves it)",
    tags=["registry"],
    responses={204: {"description": "deleted"}},
    middlewares=[idempotent],
)
def delete_version(model: ModelName, version: VersionNumber) -> Response[None]:
    registry.delete_version(model, version, token=_token())
    logger.info("version deleted", extra={"model": model, "version": version})
    return Response(status_code=204)


@router.put(
    "/models/<model>/stages/<stage>",
    summary="Deploy: point a stage at a version",
    tags=["deployment"],
    middlewares=[idempotent],
)
def deploy(model: ModelName, stage: StageName, request: DeployRequest) -> StageChange:
    change = registry.set_stage(model, stage, request.version, token=_token())
    if change["previous_version"] != change["version"]:  # re-deploying the served version changes nothing
        logger.info("stage deployed", extra=change | {"model": model})
        metrics.add_metric(name="Deployments", unit="Count", value=1)
    return StageChange(**change)


@router.post(
    "/models/<model>/stages/<stage>/rollback",
    summary="Return a stage to the version it served before (409 when none)",
    tags=["deployment"],
    middlewares=[idempotent],
)
def rollback(model: ModelName, stage: StageName) -> StageChange:
    change = registry.rollback_stage(model, stage, token=_token())
    logger.info("stage rolled back", extra=change | {"model": model})
    return StageChange(**change)


@router.delete(
    "/models/<model>/stages/<stage>",
    summary="Undeploy: the stage serves nothing (its history stays; rollback restores it)",
    tags=["deployment"],
    responses={204: {"description": "undeployed"}},
    middlewares=[idempotent],
)
def undeploy(model: ModelName, stage: StageName) -> Response[None]:
    registry.clear_stage(model, stage, token=_token())
    logger.info("stage undeployed", extra={"model": model, "stage": stage})
    return Response(status_code=204)
