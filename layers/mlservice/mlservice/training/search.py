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
SEARCH_FIELDS = ("search", "n_iter", "search_strategy", "async")
HALVING_FACTOR = 3  # successive halving keeps the best third of a round, on 3 times its rows
HALVING_MIN_ROWS = 30  # the fewest training rows a first-round fit gets


def strategy_of(req: TrainRequest) -> str:
    return req.search_strategy or ("random" if req.n_iter is not None else "grid")


def round_sizes(req: TrainRequest, candidates: int) -> list[int]:
    """Candidates in each round: one round of all of them, or for halving a third (rounded up) kept each round
    until at most two are left."""
    sizes = [candidates]
    if strategy_of(req) == "halving":
        while sizes[-1] > 2:
            sizes.append(math.ceil(sizes[-1] / HALVING_FACTOR))
    return sizes


def row_fraction(round_number: int, rounds: int) -> float:
    """The share of a fold's training rows a round fits on: the last round all of them."""
    return float(HALVING_FACTOR ** (round_number - (rounds - 1)))


def folds_of(req: TrainRequest) -> int:
    return req.cv or DEFAULT_FOLDS


def candidates(req: TrainRequest) -> list[dict[str, Any]]:
    """Every candidate's hyperparameters (the request's own `hyperparameters` with the searched ones set),
    validated against the algorithm; 400 invalid_search / invalid_hyperparameter when they cannot be searched."""
    search = req.search or {}
    if not search:
        raise bad_request("search must name at least one hyperparameter with a list of values", code="invalid_search")
    if strategy_of(req) == "random" and req.n_iter is None:
        raise bad_request("a random search needs n_iter, how many combinations to try", code="invalid_search")
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
    fits = sum(round_sizes(req, len(chosen))) * folds
    if fits > MAX_FITS:
        raise bad_request(
            f"{len(chosen)} candidates × {folds} folds need {fits} fits; at most {MAX_FITS}", code="invalid_search"
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


def score_fold(
    prepared: Any, hyperparameters: dict[str, Any], fold: int, folds: int, fraction: float = 1.0
) -> float:
    """The candidate's score on one fold of the training part: the splitter of metrics.cross_validation (so a
    search and a training's cv agree), the metric of metrics.scoring_for; fitted on `fraction` of the fold's
    training rows (a halving round's). Raises what the fit raises."""
    from sklearn.metrics import get_scorer
    from sklearn.model_selection import KFold, StratifiedKFold

    X, y = prepared.X_train, prepared.y_train
    params, _ = prepared.params_for(hyperparameters, folds)
    splitter: KFold | StratifiedKFold = KFold(folds, shuffle=True, random_state=prepared.random_state)
    if prepared.task == algorithms.CLASSIFICATION and np.unique(y, return_counts=True)[1].min() >= folds:
        splitter = StratifiedKFold(folds, shuffle=True, random_state=prepared.random_state)
    train_idx, valid_idx = list(splitter.split(X, y))[fold]
    if fraction < 1.0:
        keep = min(len(train_idx), max(HALVING_MIN_ROWS, math.ceil(fraction * len(train_idx))))
        train_idx = np.sort(np.random.default_rng(prepared.random_state).permutation(train_idx)[:keep])
    pipeline = prepared.pipeline(params)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        algorithms.fit_quietly(pipeline, X[train_idx], y[train_idx])
        score = float(get_scorer(metrics.scoring_for(prepared.task))(pipeline, X[valid_idx], y[valid_idx]))
    if not math.isfinite(score):
        raise ValueError(f"the score is {score}")
    return score


def members(sizes: Sequence[int], folds: int, scores: dict[tuple[int, int, int], dict]) -> list[list[int]]:
    """The candidates of each round whose predecessor is complete: round 0 all of them, each later one the best
    of the one before (by mean over folds, among those scored on every fold), as many as its size allows."""
    rounds = [list(range(sizes[0]))]
    for number in range(1, len(sizes)):
        previous = rounds[-1]
        if len([key for key in scores if key[0] == number - 1]) < len(previous) * folds:
            break  # the round before is still being scored
        means = {}
        for candidate in previous:
            found = [scores[(number - 1, candidate, j)].get("score") for j in range(folds)]
            if None not in found:
                means[candidate] = float(np.mean(found))
        ranked = sorted(means, key=lambda c: (-means[c], c))
        rounds.append(sorted(ranked[: sizes[number]]))
    return rounds


def _mean(values: Sequence[float | None]) -> float | None:
    """The mean over every fold, or None when a fold has no score (the candidate cannot go on)."""
    return None if None in values else float(np.mean(values))


def summarise(
    planned: Sequence[dict], folds: int, scores: dict[tuple[int, int, int], dict], metric: str, sizes: Sequence[int]
) -> dict:
    """Every candidate's fold scores, mean and std in the last round it reached (over the folds that succeeded)
    and its errors; `best` is the index of the highest mean among the last round's candidates scored on every
    fold (None when none was)."""
    rounds = members(sizes, folds, scores)
    results = []
    for i, hyperparameters in enumerate(planned):
        reached = max((r for r, members_of in enumerate(rounds) if i in members_of), default=0)
        found = [scores.get((reached, i, j), {}) for j in range(folds)]
        values = [f["score"] for f in found if "score" in f]
        errors = sorted({f["error"] for (r, c, _), f in scores.items() if c == i and "error" in f})
        results.append(
            {
                "hyperparameters": hyperparameters,
                "round": reached,
                "fold_scores": [f.get("score") for f in found],
                "mean": float(np.mean(values)) if values else None,
                "std": float(np.std(values)) if values else None,
                "errors": errors,
            }
        )
    last = rounds[-1] if len(rounds) == len(sizes) else []
    complete = [i for i in last if None not in results[i]["fold_scores"]]
    best = max(complete, key=lambda i: (results[i]["mean"], -i), default=None)
    summary = {"metric": metric, "cv_folds": folds, "candidates": results, "best": best}
    if len(sizes) > 1:
        summary["rounds"] = [
            {
                "round": r,
                "candidates": members_of,
                "row_fraction": round(row_fraction(r, len(sizes)), 4),
                "means": [_mean([scores.get((r, c, j), {}).get("score") for j in range(folds)]) for c in members_of],
            }
            for r, members_of in enumerate(rounds)
        ]
    return summary
