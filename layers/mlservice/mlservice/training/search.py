"""Hyperparameter search fanned out over the train queue: which candidates, one fold's score, the result.

A search request (`"search": {"C": [0.1, 1, 10], ...}` with `"cv": k`, or `"n_iter": n` for a random sample of
the combinations) is planned once, from the request alone, so it is refused before anything is queued when it is
malformed or over its limits. Each candidate × fold is then one SQS message (mlservice.training.jobs): its
worker reads the data exactly as a training does (trainer.prepare: the same holdout is kept out of the search),
fits the candidate on the fold's training part and scores it on the rest with the service's one metric
(accuracy or R²), and stores the score as its own object, created once (a redelivered message finds it). When
every score is in, one refit fits the best candidate on the whole training part and publishes it as the
version, every candidate's scores in its metadata.
"""

from __future__ import annotations

import itertools
import math
import random
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np

from mlservice.errors import ServiceError, bad_request
from mlservice.training import algorithms, metrics
from mlservice.training.request import TrainRequest

MAX_VALUES = 20  # values per searched hyperparameter
MAX_CANDIDATES = 64
MAX_FITS = 320  # candidates × folds
DEFAULT_FOLDS = 3
# Hyperparameters in a search request that are the search itself, not the model's.
SEARCH_FIELDS = ("search", "n_iter", "async")


def folds_of(req: TrainRequest) -> int:
    return req.cv or DEFAULT_FOLDS


def candidates(req: TrainRequest) -> list[dict[str, Any]]:
    """Every candidate's hyperparameters (the request's own `hyperparameters` with the searched ones set),
    validated against the algorithm; 400 invalid_search / invalid_hyperparameter when they cannot be searched."""
    search = req.search or {}
    if not search:
        raise bad_request("search must name at least one hyperparameter with a list of values", code="invalid_search")
    if req.n_iter is not None and not search:
        raise bad_request("n_iter needs a search", code="invalid_search")
    names = sorted(search)
    for name in names:
        values = search[name]
        if not 1 <= len(values) <= MAX_VALUES:
            raise bad_request(
                f"search {name!r} has {len(values)} values; give 1 to {MAX_VALUES}", code="invalid_search"
            )
        if name in (req.hyperparameters or {}):
            raise bad_request(f"{name!r} is both searched and fixed in hyperparameters", code="invalid_search")
    sizes = [len(search[name]) for name in names]
    combinations = math.prod(sizes)
    if req.n_iter is None:
        if combinations > MAX_CANDIDATES:
            raise bad_request(
                f"the grid has {combinations} combinations; at most {MAX_CANDIDATES}: search fewer values, or "
                f"give n_iter for a random sample of them",
                code="invalid_search",
            )
        chosen = list(itertools.product(*(range(size) for size in sizes)))
    else:
        count = min(req.n_iter, combinations)
        picks = random.Random(0 if req.random_state is None else req.random_state).sample(range(combinations), count)
        chosen = [tuple(np.unravel_index(pick, sizes)) for pick in sorted(picks)]
    folds = folds_of(req)
    if len(chosen) * folds > MAX_FITS:
        raise bad_request(
            f"{len(chosen)} candidates × {folds} folds = {len(chosen) * folds} fits; at most {MAX_FITS}",
            code="invalid_search",
        )
    algorithm = algorithms.ALGORITHMS[req.algorithm]
    planned = []
    for combo in chosen:
        hyperparameters = {**(req.hyperparameters or {})}
        hyperparameters.update({name: search[name][int(i)] for name, i in zip(names, combo, strict=True)})
        _validate(algorithm, req.task, hyperparameters)
        planned.append(hyperparameters)
    return planned


def _validate(algorithm: algorithms.Algorithm, task: str | None, hyperparameters: dict[str, Any]) -> None:
    """Before the data says which task it is, a value must fit at least one of the algorithm's tasks (the fold
    workers check it against the real one, and report a candidate that does not fit it as failed)."""
    if task is not None:
        algorithms.validate_hyperparameters(algorithm, task, hyperparameters)
        return
    algorithms.validate_hyperparameters(algorithm, None, hyperparameters)  # the names
    errors = []
    for candidate_task in algorithm.tasks:
        try:
            algorithms.validate_hyperparameters(algorithm, candidate_task, hyperparameters)
            return
        except ServiceError as error:
            errors.append(error)
    raise errors[0]


def score_fold(prepared: Any, hyperparameters: dict[str, Any], fold: int, folds: int) -> float:
    """The candidate's score on one fold of the training part: the splitter of metrics.cross_validation (so a
    search and a training's cv agree), the metric of metrics.scoring_for. Raises what the fit raises."""
    from sklearn.metrics import get_scorer
    from sklearn.model_selection import KFold, StratifiedKFold

    X, y = prepared.X_train, prepared.y_train
    params, _ = prepared.params_for(hyperparameters, folds)
    splitter: KFold | StratifiedKFold = KFold(folds, shuffle=True, random_state=prepared.random_state)
    if prepared.task == algorithms.CLASSIFICATION and np.unique(y, return_counts=True)[1].min() >= folds:
        splitter = StratifiedKFold(folds, shuffle=True, random_state=prepared.random_state)
    train_idx, valid_idx = list(splitter.split(X, y))[fold]
    pipeline = prepared.pipeline(params)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        algorithms.fit_quietly(pipeline, X[train_idx], y[train_idx])
        score = float(get_scorer(metrics.scoring_for(prepared.task))(pipeline, X[valid_idx], y[valid_idx]))
    if not math.isfinite(score):
        raise ValueError(f"the score is {score}")
    return score


def summarise(planned: Sequence[dict], folds: int, scores: dict[tuple[int, int], dict], metric: str) -> dict:
    """Every candidate's fold scores, mean and std (over the folds that succeeded) and errors; `best` is the
    index of the highest mean among candidates with every fold scored (None when none has)."""
    results = []
    for i, hyperparameters in enumerate(planned):
        found = [scores.get((i, j), {}) for j in range(folds)]
        values = [f["score"] for f in found if "score" in f]
        errors = sorted({f["error"] for f in found if "error" in f})
        results.append(
            {
                "hyperparameters": hyperparameters,
                "fold_scores": [f.get("score") for f in found],
                "mean": float(np.mean(values)) if values else None,
                "std": float(np.std(values)) if values else None,
                "errors": errors,
            }
        )
    complete = [i for i, r in enumerate(results) if len([s for s in r["fold_scores"] if s is not None]) == folds]
    best = max(complete, key=lambda i: results[i]["mean"], default=None)
    return {"metric": metric, "cv_folds": folds, "candidates": results, "best": best}
