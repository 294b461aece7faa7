"""Request bodies and parameters of the REST API, as pydantic models and annotated types.

They are the request validation the routes use (built on mlservice.fields, so every violation gets its
documented code) and they give the OpenAPI document its shapes. The training request lives with the training
code (mlservice.training.request) because it names the algorithms, whose module imports scikit-learn, which
the predict path must not pay for.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from aws_lambda_powertools.event_handler.openapi.params import Path, Query
from pydantic import BaseModel

from mlservice import keys
from mlservice.fields import Body, coded

_NAME_RULE = "1-64 characters of a-z, 0-9, '_' and '-', starting with a letter or digit"
ModelName = Annotated[str, Path(pattern=keys.NAME_PATTERN, description=f"model name: {_NAME_RULE}")]
StageName = Annotated[str, Path(pattern=keys.NAME_PATTERN, description=f"stage name: {_NAME_RULE}")]
VersionNumber = Annotated[int, Path(ge=1, le=keys.MAX_VERSION, description="a version number (1, 2, ...)")]
StageQuery = Annotated[
    str | None, Query(pattern=keys.NAME_PATTERN, description="stage to serve from (default production)")
]
VersionQuery = Annotated[
    int | None, Query(ge=1, le=keys.MAX_VERSION, description="a version number, instead of a stage")
]

# Deployed, the management routes (training and registry) are IAM-authorised: the OpenAPI document says so per
# route, and everything else takes the API key (docs_routes declares both schemes).
IAM_SIGNED: list[dict[str, list[str]]] = [{"sigv4": []}]

UndeployQuery = Annotated[
    bool, Query(description="erase a model even while stages serve it (they are undeployed first)")
]


class DeployRequest(Body):
    version: int = coded("invalid_version", ge=1, le=keys.MAX_VERSION, description="the version the stage will serve")


class DataframeSplit(Body):
    columns: list[str]
    data: list[list[Any]]
    index: list[Any] | None = None


class PredictRequest(Body):
    """Exactly one of the fields; the last two are MLflow's scoring formats."""

    instances: list[Any] | None = coded(
        "invalid_shape", None, description="rows in feature order, or objects of feature values"
    )
    dataframe_split: DataframeSplit | None = coded("invalid_shape", None)
    dataframe_records: list[dict[str, Any]] | None = coded("invalid_shape", None)


class ExplainRequest(PredictRequest):
    """The rows as for predict, and which output to explain."""

    output: Literal["probability", "value", "decision"] | None = coded(
        "invalid_output",
        None,
        description="what the contributions add up to: class probabilities (classifiers' default), the value "
        "(regressors), or the decision function (log-odds) of a linear or boosted classifier, which linear and "
        "boosted models explain exactly",
    )


class StageChange(BaseModel):
    stage: str
    version: int | None
    previous_version: int | None
