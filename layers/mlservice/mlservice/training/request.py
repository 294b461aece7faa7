"""The training request: every field's type, range and error code, checked before any data is read.

This model is what POST /models/{model}/versions validates and what `trainer.train` takes, so the HTTP route
and a direct caller get the same answer for the same request. Checks that need the data (does the target
column exist?) or the algorithm's own rules (hyperparameter bounds) stay with the code that knows them.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import field_validator

from mlservice.fields import Body, coded
from mlservice.training.algorithms import ALGORITHMS, TASKS
from mlservice.training.datasets import DATA_FORMS, MAX_COLUMN_NAME, TrainingData

MAX_RANDOM_STATE = 2**32 - 1
MAX_DESCRIPTION = 1000
# Column-name lists longer than any table the service accepts (MAX_TRAIN_COLUMNS is checked against the data).
MAX_NAMES = 100_000


def _unique_names(names: list[str] | None) -> list[str] | None:
    """Linear: a set, not list.count per name (100,000 names must not take minutes to refuse)."""
    if names is None:
        return None
    seen: set[str] = set()
    repeated: list[str] = []
    for name in names:
        if not name or len(name) > MAX_COLUMN_NAME:
            raise ValueError(f"holds an empty name or one over {MAX_COLUMN_NAME} characters")
        if name in seen and name not in repeated:
            repeated.append(name)
        seen.add(name)
    if repeated:
        raise ValueError(f"names {', '.join(map(repr, repeated[:10]))} more than once")
    return names


class TrainRequest(Body):
    algorithm: Literal[tuple(ALGORITHMS)] = coded(  # type: ignore[valid-type]
        "invalid_algorithm", rule="one of " + ", ".join(ALGORITHMS), description="the estimator to fit"
    )
    task: Literal[TASKS] | None = coded(  # type: ignore[valid-type]
        "invalid_task", None, rule="'classification' or 'regression'", description="inferred from the target if absent"
    )
    hyperparameters: dict[str, Any] | None = coded(
        "invalid_hyperparameter",
        None,
        rule="an object of name → value",
        description="checked against the algorithm's whitelist, with bounds",
    )
    data: TrainingData = coded(
        "invalid_data",
        rule=f"an object with exactly one source: {DATA_FORMS}",
        description="the training data, one of five sources",
    )
    target: str | None = coded(
        "invalid_target",
        None,
        min_length=1,
        max_length=MAX_COLUMN_NAME,
        rule=f"a column name of 1 to {MAX_COLUMN_NAME} characters",
        description="the label column (not needed for bundled datasets)",
    )
    features: list[str] | None = coded(
        "invalid_features",
        None,
        max_length=MAX_NAMES,
        description="feature columns in order (default: all but the target)",
    )
    text_features: list[str] | None = coded(
        "invalid_features", None, max_length=MAX_NAMES, description="columns of free text (TF-IDF)"
    )
    test_size: float | None = coded(
        "invalid_test_size",
        None,
        ge=0.05,
        le=0.5,
        rule="a number from 0.05 to 0.5",
        description="holdout fraction (0.2)",
    )
    random_state: int | None = coded(
        "invalid_random_state",
        None,
        ge=0,
        le=MAX_RANDOM_STATE,
        rule=f"an integer from 0 to {MAX_RANDOM_STATE}",
        description="seed of the split and the estimator (0)",
    )
    cv: int | None = coded(
        "invalid_cv",
        None,
        ge=2,
        le=20,
        rule="an integer from 2 to 20 (the number of folds)",
        description="k-fold cross-validation on the training part",
    )
    description: str | None = coded(
        "invalid_description",
        None,
        max_length=MAX_DESCRIPTION,
        rule=f"a string of at most {MAX_DESCRIPTION} characters",
    )

    search: dict[str, list[Any]] | None = coded(
        "invalid_search",
        None,
        rule="an object of hyperparameter name → list of 1 to 20 values",
        description="a hyperparameter search: every combination (grid) or n_iter of them (random), each scored "
        "by cv-fold cross-validation (cv, default 3) on workers in parallel; the best is refitted as the version. "
        "Always asynchronous (202)",
    )
    n_iter: int | None = coded(
        "invalid_search",
        None,
        ge=1,
        le=64,
        rule="an integer from 1 to 64",
        description="random search: how many combinations of `search` to try",
    )
    search_strategy: Literal["grid", "random", "halving"] | None = coded(
        "invalid_search",
        None,
        description="grid (every combination; the default without n_iter), random (n_iter of them; the default "
        "with n_iter), or halving: successive halving of those candidates, each round on 3 times the rows of the "
        "one before and keeping the best third, the last round on the whole training part",
    )
    run_async: bool = coded(
        "invalid_request",
        False,
        alias="async",
        description="queue the training (202 and a Location to poll) instead of fitting within the request; "
        "also done, when a train queue exists, for a training estimated over the request's budget",
    )

    @field_validator("features", "text_features")
    @classmethod
    def _unique(cls, names: list[str] | None) -> list[str] | None:
        return _unique_names(names)
