"""Request bodies of the REST API, as pydantic models.

They give the OpenAPI document its shapes and catch structural mistakes (a misspelt field, a string where
a list belongs) with a 400 naming the field. Semantic checks — algorithm names, hyperparameter bounds, feature
values — stay with the code that knows the model, so there is one place for each rule.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TrainRequest(_Body):
    algorithm: str = Field(
        description="linear_regression, ridge, lasso, logistic_regression, svm, knn, naive_bayes, "
        "decision_tree, random_forest, gradient_boosting or mlp"
    )
    task: Literal["classification", "regression"] | None = Field(None, description="inferred from the target if absent")
    hyperparameters: dict[str, Any] | None = Field(None, description="checked against the estimator, with bounds")
    data: dict[str, Any] = Field(description='exactly one of {"columns","rows"}, {"records"}, {"s3_key"}, {"dataset"}')
    target: str | None = Field(None, description="the label column (not needed for bundled datasets)")
    features: list[str] | None = Field(None, description="the feature columns, in order (default: all but target)")
    text_features: list[str] | None = Field(None, description="columns of free text (TF-IDF)")
    test_size: float | None = Field(None, description="holdout fraction, default 0.2")
    random_state: int | None = Field(None, description="seed for the split and the estimator, default 0")
    cv: int | None = Field(None, description="k for k-fold cross-validation on the training part")
    description: str | None = Field(None, max_length=1000)


class DeployRequest(_Body):
    version: int = Field(ge=1, description="the version the stage will serve")


class DataframeSplit(_Body):
    columns: list[str]
    data: list[list[Any]]
    index: list[Any] | None = None


class PredictRequest(_Body):
    """Exactly one of the fields; the last two are MLflow's scoring formats."""

    instances: list[Any] | None = Field(None, description="rows in feature order, or objects of feature values")
    dataframe_split: DataframeSplit | None = None
    dataframe_records: list[dict[str, Any]] | None = None


class StageChange(BaseModel):
    stage: str
    version: int | None
    previous_version: int | None
