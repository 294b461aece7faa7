"""The registry routes: list and describe models and versions, delete versions, deploy, roll back, undeploy."""

from __future__ import annotations

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.api_gateway import Router

from mlservice import registry
from mlservice.api.schemas import DeployRequest, StageChange
from mlservice.observability import logger, metrics

router = Router()


@router.get("/models", summary="List models", tags=["registry"])
def list_models() -> dict:
    return {"models": registry.list_models()}


@router.get("/models/<model>", summary="Describe a model: versions, stages and stage history", tags=["registry"])
def describe_model(model: str) -> dict:
    return registry.describe_model(model)


@router.get("/models/<model>/versions/<version>", summary="A version's metadata", tags=["registry"])
def get_version(model: str, version: int) -> dict:
    return registry.get_version(model, version)


@router.delete(
    "/models/<model>/versions/<version>",
    summary="Delete a version (409 while a stage serves it)",
    tags=["registry"],
    responses={204: {"description": "deleted"}},
)
def delete_version(model: str, version: int) -> Response[None]:
    registry.delete_version(model, version)
    logger.info("version deleted", extra={"model": model, "version": version})
    return Response(status_code=204)


@router.put("/models/<model>/stages/<stage>", summary="Deploy: point a stage at a version", tags=["deployment"])
def deploy(model: str, stage: str, request: DeployRequest) -> StageChange:
    change = registry.set_stage(model, stage, request.version)
    if change["previous_version"] != change["version"]:  # re-deploying the served version changes nothing
        logger.info("stage deployed", extra=change | {"model": model})
        metrics.add_metric(name="Deployments", unit="Count", value=1)
    return StageChange(**change)


@router.post(
    "/models/<model>/stages/<stage>/rollback",
    summary="Return a stage to the version it served before (409 when none)",
    tags=["deployment"],
)
def rollback(model: str, stage: str) -> StageChange:
    change = registry.rollback_stage(model, stage)
    logger.info("stage rolled back", extra=change | {"model": model})
    return StageChange(**change)


@router.delete(
    "/models/<model>/stages/<stage>",
    summary="Undeploy: the stage serves nothing (its history stays; rollback restores it)",
    tags=["deployment"],
    responses={204: {"description": "undeployed"}},
)
def undeploy(model: str, stage: str) -> Response[None]:
    registry.clear_stage(model, stage)
    logger.info("stage undeployed", extra={"model": model, "stage": stage})
    return Response(status_code=204)
