"""Train one model version from a request body: validate, load, encode, fit, evaluate, serialise.

`train` is the only entry point. It takes the validated TrainRequest (or a dict it validates the same way the
API does), reads and checks the data in this process, estimates the cost and refuses what would not fit the
budget, then fits a single scikit-learn Pipeline on the rows_to_matrix encoding that serving also uses — in a
child process stopped at the training deadline — evaluates it on a holdout the model never saw, and returns
the joblib bytes plus the metadata the registry stores with them. The artifact is fitted on the training part
only, so the metrics describe exactly the model that is served.

Neither holds a value seen in fewer than MIN_GROUP_SIZE training rows (see preprocessing): rare categories
are pooled into one token before the fit, rare words are left out, numbers are published as percentiles,
and a class that rare is refused (`class_too_rare`), since every class is published and predicted.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import platform
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import joblib
import numpy as np
import sklearn
from sklearn.model_selection import train_test_split

from mlservice import fields
from mlservice.errors import bad_request
from mlservice.explain import explainer
from mlservice.features import CATEGORICAL, TEXT, pool_rare_categories, rows_to_matrix
from mlservice.settings import get_settings
from mlservice.training import algorithms, budget, evaluation, metrics, onnx_export, preprocessing
from mlservice.training import deadline as deadline_runner
from mlservice.training.algorithms import CLASSIFICATION, Algorithm
from mlservice.training.datasets import Table, load_table
from mlservice.training.request import TrainRequest

MIN_ROWS = 10
DEFAULT_TEST_SIZE = 0.2
MAX_WARNINGS = 10
_HASH_CHUNK_ROWS = 10_000


def _listed(names: Sequence[str], limit: int = 30) -> str:
    shown = ", ".join(repr(n) for n in names[:limit])
    return shown + (f", ... ({len(names)} in all)" if len(names) > limit else "")


def _resolve_columns(request: TrainRequest, table: Table) -> tuple[str, list[str]]:
    """Target and feature columns, checked against the table with sets and dicts: linear in the names."""
    target = request.target or table.default_target
    if target is None:
        raise bad_request("target is required: the name of the column to predict", code="invalid_target")
    if not table.has(target):
        raise bad_request(
            f"target column {target!r} is not in the data; columns are: {_listed(table.columns)}",
            code="invalid_target",
        )
    if request.features is None:
        features = [c for c in table.columns if c != target]
        if not features:
            raise bad_request("the data has no column besides the target to learn from", code="invalid_features")
    else:
        features = request.features
        if not features:
            raise bad_request("features must name at least one column", code="invalid_features")
        if target in features:
            raise bad_request(f"the target {target!r} cannot also be a feature", code="invalid_features")
        unknown = [f for f in features if not table.has(f)]
        if unknown:
            raise bad_request(
                f"unknown feature(s) {_listed(unknown, 10)}; columns are: {_listed(table.columns)}",
                code="invalid_features",
            )
    chosen = set(features)
    stray = [t for t in request.text_features or () if t not in chosen]
    if stray:
        raise bad_request(
            f"text_features {_listed(stray, 10)} must also be features (columns used by the model)",
            code="invalid_features",
        )
    return target, features


def _resolve_task(request: TrainRequest, algorithm: Algorithm, table: Table, target: preprocessing.Target) -> str:
    if request.task is not None:
        return request.task  # already checked against the algorithm
    if target.name == table.default_target and table.default_task:
        task, reason = table.default_task, f"the bundled dataset {table.source.get('dataset')!r}"
    else:
        task, reason = target.infer_task()
    algorithms.check_task(algorithm, task, inferred=reason)
    return task


def table_sha256(names: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """sha256 of json.dumps({"columns": names, "rows": rows}, separators=(",", ":"), ensure_ascii=False),
    computed in chunks so the whole document never exists as one string."""
    digest = hashlib.sha256()

    def dumps(value: Any) -> str:
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False, default=str)

    digest.update(('{"columns":' + dumps(list(names)) + ',"rows":[').encode())
    for start in range(0, len(rows), _HASH_CHUNK_ROWS):
        chunk = dumps(list(rows[start : start + _HASH_CHUNK_ROWS]))[1:-1]
        digest.update((b"," if start else b"") + chunk.encode())
    digest.update(b"]}")
    return digest.hexdigest()


def _stratify(task: str, y: np.ndarray, test_size: float) -> np.ndarray | None:
    """y when a stratified split is possible: every class twice, and room for every class on both sides."""
    if task != CLASSIFICATION:
        return None
    counts = np.unique(y, return_counts=True)[1]
    n_test = math.ceil(test_size * len(y))
    n_train = len(y) - n_test
    if counts.min() < 2 or n_test < len(counts) or n_train < len(counts):
        return None
    return y


def _warning_texts(caught: Sequence[warnings.WarningMessage]) -> list[str]:
    texts: list[str] = []
    for item in caught:
        if "`probability` parameter was deprecated" in str(item.message):
            continue  # the service's own choice, not news for the client
        text = f"{item.category.__name__}: {str(item.message).strip().splitlines()[0][:300]}"
        if text not in texts:
            texts.append(text)
    return texts[:MAX_WARNINGS]


def _check_classes(y: np.ndarray, y_train: np.ndarray, target_name: str, min_group: int) -> None:
    """Every class is published (metadata, every prediction): refuse one of fewer than `min_group` training
    rows, without naming it. A class found only in the holdout counts as 0 training rows."""
    labels = np.unique(y)
    in_training = dict(zip(*np.unique(y_train, return_counts=True), strict=True))
    counts = [int(in_training.get(label, 0)) for label in labels]
    rare = sum(count < min_group for count in counts)
    if rare:
        raise bad_request(
            f"{rare} of the {len(labels)} classes of target {target_name!r} have fewer than {min_group} rows in the "
            f"training part (the rarest has {min(counts)} of {len(y_train)} training rows, after holding out "
            f"test_size): a model publishes its classes, so each needs at least MIN_GROUP_SIZE ({min_group}) "
            "training rows; add rows, merge rare classes into one, or drop their rows",
            code="class_too_rare",
        )


def _preprocessing_summary(algorithm: Algorithm, task: str, features: Sequence[dict], min_group: int) -> dict[str, Any]:
    kinds = {f["kind"] for f in features}
    summary: dict[str, Any] = {}
    if "numeric" in kinds:
        summary["numeric"] = "median imputation" + (" + standard scaling" if algorithm.scale_numeric else "")
    if "categorical" in kinds:
        summary["categorical"] = (
            f"one-hot of the categories in at least {min_group} training rows (at most "
            f"{preprocessing.ONE_HOT_MAX_CATEGORIES - 1}); every other value, unseen ones included, is one "
            "shared rare category"
        )
    if TEXT in kinds:
        summary["text"] = (
            f"TF-IDF of the terms in at least {min_group} training rows (at most "
            f"{preprocessing.TFIDF_MAX_FEATURES} per feature)"
        )
    summary["dense"] = algorithm.needs_dense
    summary["target_standardised"] = task != CLASSIFICATION and algorithm.scale_target
    return summary


def _serialise(pipeline: Any) -> bytes:
    buffer = io.BytesIO()
    joblib.dump(pipeline, buffer, compress=3)
    return buffer.getvalue()


def _expanded_width(features: Sequence[dict]) -> int:
    """Columns after preprocessing, for the cost estimate: one per number, one per kept category plus the rare
    one, up to the TF-IDF vocabulary cap per text column."""
    width = 0
    for feature in features:
        if feature["kind"] == CATEGORICAL:
            width += len(feature["categories"]) + 1
        elif feature["kind"] == TEXT:
            width += preprocessing.TFIDF_MAX_FEATURES
        else:
            width += 1
    return width


def _check_outputs(pipeline: Any, X: np.ndarray, algorithm: Algorithm, task: str) -> None:
    """A fit that 'succeeds' but predicts NaN (naive Bayes on columns without variance, a diverged MLP) is a
    model nobody can use: refuse it with the reason instead of storing it."""
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        outputs = [pipeline.predict_proba(X)] if hasattr(pipeline, "predict_proba") and task == CLASSIFICATION else []
        if task != CLASSIFICATION:
            outputs.append(np.asarray(pipeline.predict(X), dtype=np.float64))
    if any(not np.isfinite(np.asarray(out, dtype=np.float64)).all() for out in outputs):
        hint = " (every feature is constant in the training rows)" if algorithm.name == "naive_bayes" else ""
        raise bad_request(
            f"{algorithm.name} could not be fitted to this data: it predicts non-finite values{hint}",
            code="training_failed",
        )


@dataclass(frozen=True)
class TrainedModel:
    """What a training produces: the joblib artifact, the metadata (without name/version) and the ONNX export
    (None when the model is served by scikit-learn; `metadata["serving"]` says which, and why)."""

    artifact: bytes
    metadata: dict[str, Any]
    onnx: bytes | None


def train(request: TrainRequest | dict, deadline: float | None = None) -> tuple[bytes, dict[str, Any]]:
    """`train_model` without the ONNX bytes: (joblib artifact, metadata). The metadata's `serving` still
    reports the export."""
    trained = train_model(request, deadline)
    return trained.artifact, trained.metadata


@dataclass
class Prepared:
    """A training request's data, read, checked, split and encoded exactly as the fit sees it: what a full
    training and each fold of a distributed search (mlservice.training.search) start from."""

    algorithm: Algorithm
    task: str
    min_group: int
    random_state: int
    test_size: float
    table: Table
    target: preprocessing.Target
    target_name: str
    features: list[dict]
    profile: list[dict]
    n_classes: int | None
    stratify: np.ndarray | None
    digest: str
    X_train: np.ndarray
    X_test: np.ndarray
    y_train: np.ndarray
    y_test: np.ndarray

    def params_for(self, hyperparameters: dict | None, cv: int | None) -> tuple[dict[str, Any], list[str]]:
        """The estimator's parameters for these hyperparameters: validated, raised to the group floor and
        checked against the data (a fit on cv-fold training parts when cv is given); plus the floor's notes."""
        params = algorithms.validate_hyperparameters(self.algorithm, self.task, hyperparameters)
        if cv is not None and cv > len(self.y_train):
            raise bad_request(f"cv {cv} exceeds the {len(self.y_train)} training rows", code="invalid_cv")
        context = algorithms.FitContext(
            smallest_fit_rows=metrics.smallest_fold_train_rows(len(self.y_train), cv) if cv else len(self.y_train),
            n_classes=self.n_classes,
            y=self.y_train,
        )
        params, floor_notes = algorithms.group_floor(self.algorithm, params, self.min_group)
        return algorithms.check_combination(self.algorithm, self.task, params, context), floor_notes

    def pipeline(self, params: dict[str, Any]) -> Any:
        """An unfitted Pipeline of the service's preprocessing and the estimator with these parameters."""
        estimator = algorithms.build_estimator(self.algorithm, self.task, params, self.random_state)
        preprocessor = preprocessing.build_preprocessor(
            self.profile,
            scale_numeric=self.algorithm.scale_numeric,
            dense=self.algorithm.needs_dense,
            min_group=self.min_group,
        )
        return preprocessing.build_pipeline(preprocessor, estimator)


def prepare(req: TrainRequest, settings: Any) -> Prepared:
    """Read the request's data and turn it into the training and holdout matrices (400s for what is wrong)."""
    min_group = settings.min_group_size
    algorithm = algorithms.ALGORITHMS[req.algorithm]
    if req.task is not None:
        algorithms.check_task(algorithm, req.task)
    algorithms.validate_hyperparameters(algorithm, req.task, req.hyperparameters)  # fail before reading data
    test_size = DEFAULT_TEST_SIZE if req.test_size is None else req.test_size
    random_state = 0 if req.random_state is None else req.random_state

    table = load_table(req.data, settings)
    target_name, feature_names = _resolve_columns(req, table)
    target_position = table.index(target_name)
    target = preprocessing.scan_target([row[target_position] for row in table.rows], target_name)
    if len(target.keep) < MIN_ROWS:
        dropped = f" ({target.dropped} dropped for a missing target)" if target.dropped else ""
        raise bad_request(
            f"training needs at least {MIN_ROWS} rows with a target value, got {len(target.keep)}{dropped}",
            code="invalid_data",
        )
    task = _resolve_task(req, algorithm, table, target)
    y = target.array(task)
    n_classes = None
    if task == CLASSIFICATION:
        n_classes = len(np.unique(y))
        if n_classes < 2:
            raise bad_request(
                f"classification needs at least two classes; target {target_name!r} has only {y[0]!r}",
                code="invalid_target",
            )
    algorithms.validate_hyperparameters(algorithm, task, req.hyperparameters)

    # Encode every row (row numbers in errors then match the client's data), then keep those with a target.
    positions = [table.index(name) for name in feature_names]
    rows = [[row[p] for p in positions] for row in table.rows]
    text = set(req.text_features or ())
    features: list[dict[str, str]] = []
    for name, values in zip(feature_names, zip(*rows, strict=True), strict=True):
        if name in text:
            preprocessing.check_finite(values, name)
            features.append({"name": name, "kind": TEXT})
        else:
            features.append({"name": name, "kind": preprocessing.infer_kind(values, name)})
    X = rows_to_matrix(rows, features)[target.keep]
    digest = table_sha256(
        [*feature_names, target_name], [[*rows[i], table.rows[i][target_position]] for i in target.keep]
    )
    del rows

    stratify = _stratify(task, y, test_size)
    train_idx, test_idx = train_test_split(
        np.arange(len(y)), test_size=test_size, random_state=random_state, stratify=stratify
    )
    X_train, X_test, y_train, y_test = X[train_idx], X[test_idx], y[train_idx], y[test_idx]
    if task == CLASSIFICATION and len(np.unique(y_train)) < 2:
        raise bad_request(
            "the training part holds a single class; add rows of the other classes", code="invalid_target"
        )
    preprocessing.check_text_has_words(X_train, features, min_group)
    if task == CLASSIFICATION:
        _check_classes(y, y_train, target_name, min_group)
    # The schema with each categorical feature's kept categories, measured on the rows the model is fitted on;
    # both parts then go through the same pooling serving applies to every request.
    profile = preprocessing.feature_profile(X_train, features, min_group)
    X_train, X_test = pool_rare_categories(X_train, profile), pool_rare_categories(X_test, profile)
    return Prepared(
        algorithm,
        task,
        min_group,
        random_state,
        test_size,
        table,
        target,
        target_name,
        features,
        profile,
        n_classes,
        stratify,
        digest,
        X_train,
        X_test,
        y_train,
        y_test,
    )


def train_model(
    request: TrainRequest | dict,
    deadline: float | None = None,
    *,
    budget_seconds: float | None = None,
    progress: Callable[[int, int, float], None] | None = None,
) -> TrainedModel:
    """Fit the requested model; returns the joblib bytes of one fitted Pipeline, the metadata without
    name/version, and the pipeline's ONNX export when it converts and passes its parity check
    (mlservice.training.onnx_export; the metadata's `serving` reports either way).

    `budget_seconds` replaces TRAINING_BUDGET_SECONDS (the train worker's is longer); `progress(step, of,
    elapsed)` is told when the fit starts and ends (the train worker records it).
    `deadline` is a time.monotonic() instant (default: TRAINING_DEADLINE_SECONDS from now): the fit runs in a
    child process that is stopped there; the export runs after it, bounded by what is left. Raises
    ServiceError: 400 for any invalid field or data (and `training_too_expensive` when the estimate exceeds
    TRAINING_BUDGET_SECONDS), 404 dataset_not_found, 413 payload_too_large, 504 training_timeout.
    """
    started = time.perf_counter()
    settings = get_settings()
    if deadline is None:
        deadline = time.monotonic() + settings.training_deadline_seconds
    req = fields.parse(TrainRequest, request)
    prepared = prepare(req, settings)
    algorithm, task, min_group, random_state = (
        prepared.algorithm,
        prepared.task,
        prepared.min_group,
        prepared.random_state,
    )
    features, profile, n_classes, target, target_name = (
        prepared.features,
        prepared.profile,
        prepared.n_classes,
        prepared.target,
        prepared.target_name,
    )
    X_train, X_test, y_train, y_test = prepared.X_train, prepared.X_test, prepared.y_train, prepared.y_test
    params, floor_notes = prepared.params_for(req.hyperparameters, req.cv)
    test_size, stratify, digest, table = prepared.test_size, prepared.stratify, prepared.digest, prepared.table
    cost = budget.estimate(
        algorithm.name,
        task,
        params,
        train_rows=len(y_train),
        holdout_rows=len(y_test),
        width=_expanded_width(profile),
        n_features=len(features),
        n_classes=n_classes,
        cv=req.cv,
    )
    budget.check(cost, settings.training_budget_seconds if budget_seconds is None else budget_seconds)

    def fit_and_describe() -> TrainedModel:
        pipeline = prepared.pipeline(params)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                algorithms.fit_quietly(pipeline, X_train, y_train)
            # A data/parameter combination scikit-learn refuses that no rule caught: ValueError mostly; TypeError
            # and LinAlgError when a solver gives up on a singular system (ridge's cholesky falls back to an SVD
            # that refuses sparse input).
            except (ValueError, TypeError, np.linalg.LinAlgError) as error:
                raise bad_request(
                    f"{algorithm.name} could not be fitted to this data: {str(error).splitlines()[0][:300]}",
                    code="training_failed",
                ) from None
        preprocessing.forget_pruned_terms(pipeline)
        _check_outputs(pipeline, X_train[: min(len(X_train), 1000)], algorithm, task)

        if task == CLASSIFICATION:
            scores = metrics.classification_metrics(pipeline, X_test, y_test)
        else:
            scores = metrics.regression_metrics(pipeline, X_test, y_test)
        if req.cv is not None:
            scores.update(metrics.cross_validation(pipeline, X_train, y_train, task, req.cv, random_state))
        importance = metrics.feature_importance(pipeline, X_test, y_test, features, task, random_state)
        charts = evaluation.evaluate(
            pipeline, X_train, X_test, y_test, profile, importance, task, min_group, random_state
        )

        target_info: dict[str, Any] = {"name": target_name}
        if task == CLASSIFICATION:
            classes = pipeline.classes_
            target_info["classes"] = preprocessing.json_labels(classes)
            target_info["class_counts"] = [int((y_train == c).sum()) for c in classes]
        else:
            target_info["percentiles"] = preprocessing.percentiles(y_train, min_group)
        published = [
            {**f, "terms": preprocessing.text_terms(pipeline, j)} if f["kind"] == TEXT else f
            for j, f in enumerate(profile)
        ]

        # After the ONNX-independent evaluation, before pickling: the explainer's background rides in the
        # artifact (digest-checked, never served), not in the published metadata.
        explainer.attach_background(pipeline, X_train, random_state, profile, min_group)
        artifact = _serialise(pipeline)
        # In this child, so the deadline bounds it; it forks its own, stopped before the deadline, so an export
        # that runs long costs the ONNX file, not the training.
        onnx, serving = onnx_export.export_within(pipeline, published, task, X_test, deadline - time.monotonic())
        metadata: dict[str, Any] = {
            "algorithm": algorithm.name,
            "task": task,
            "hyperparameters": algorithms.effective_params(algorithms.core_estimator(pipeline.named_steps["model"])),
            "features": published,
            "target": target_info,
            "metrics": scores,
            "feature_importance": importance,
            "evaluation": charts,
            "preprocessing": _preprocessing_summary(algorithm, task, features, min_group),
            "training": {
                "rows": len(y_train),
                "holdout_rows": len(y_test),
                "dropped_rows_missing_target": target.dropped,
                "test_size": test_size,
                "random_state": random_state,
                "stratified": stratify is not None,
                "source": table.source,
                "sha256": digest,
                "warnings": floor_notes + _warning_texts(caught),
                "estimated_seconds": round(cost.seconds, 3),
                "seconds": round(time.perf_counter() - started, 3),
            },
            "environment": {
                "python": platform.python_version(),
                "scikit-learn": sklearn.__version__,
                "numpy": np.__version__,
                "joblib": joblib.__version__,
            },
            "description": req.description,
            "serving": serving,
        }
        return TrainedModel(artifact, metadata, onnx)

    total = settings.training_deadline_seconds if budget_seconds is None else deadline - time.monotonic()
    onnx_export.preload()  # once per process, not in every forked child
    if progress is not None:
        progress(0, 1, time.perf_counter() - started)
    trained = deadline_runner.run(fit_and_describe, deadline - time.monotonic(), total=total)
    if progress is not None:
        progress(1, 1, time.perf_counter() - started)
    return trained
