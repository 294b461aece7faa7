"""The algorithms a client may train, and the hyperparameters each accepts.

Hyperparameters arrive from the network, so each algorithm has an explicit whitelist with bounds rather than
passing a dict through to scikit-learn: a bound keeps one request from occupying a Lambda for its whole
timeout (n_estimators=10**6) or its memory, and a whitelist keeps process-level knobs (n_jobs, verbose,
warm_start) out of clients' hands. Defaults are scikit-learn's except where noted.
"""

from __future__ import annotations

import importlib
import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mlservice.errors import bad_request

CLASSIFICATION, REGRESSION = "classification", "regression"
TASKS = (CLASSIFICATION, REGRESSION)


class _Invalid(Exception):
    """A value outside its spec; the caller turns it into a 400 naming the hyperparameter."""


# ---------------------------------------------------------------- value specs


class Spec:
    def check(self, value: Any) -> Any:
        raise NotImplementedError

    def describe(self) -> str:
        raise NotImplementedError


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


@dataclass(frozen=True)
class Int(Spec):
    low: int
    high: int

    def check(self, value: Any) -> int:
        if not _is_int(value) or not self.low <= value <= self.high:
            raise _Invalid
        return value

    def describe(self) -> str:
        return f"an integer from {self.low} to {self.high}"


@dataclass(frozen=True)
class Float(Spec):
    low: float
    high: float
    low_open: bool = False
    high_open: bool = False

    def check(self, value: Any) -> float:
        if not _is_number(value):
            raise _Invalid
        try:
            number = float(value)  # an integer of hundreds of digits does not fit a float
        except OverflowError:
            raise _Invalid from None
        if not math.isfinite(number):
            raise _Invalid
        above = number > self.low if self.low_open else number >= self.low
        below = number < self.high if self.high_open else number <= self.high
        if not (above and below):
            raise _Invalid
        return number

    def describe(self) -> str:
        left = "(" if self.low_open else "["
        right = ")" if self.high_open else "]"
        return f"a number in {left}{_num(self.low)}, {_num(self.high)}{right}"


@dataclass(frozen=True)
class Choice(Spec):
    values: tuple[Any, ...]

    def check(self, value: Any) -> Any:
        # Compare type as well: True == 1 and 1 == 1.0 must not let a boolean pass for an integer choice.
        for choice in self.values:
            if type(value) is type(choice) and value == choice:
                return value
        raise _Invalid

    def describe(self) -> str:
        return "one of " + ", ".join(_json_repr(v) for v in self.values)


@dataclass(frozen=True)
class Bool(Spec):
    def check(self, value: Any) -> bool:
        if not isinstance(value, bool):
            raise _Invalid
        return value

    def describe(self) -> str:
        return "true or false"


@dataclass(frozen=True)
class IntList(Spec):
    min_length: int
    max_length: int
    low: int
    high: int

    def check(self, value: Any) -> tuple[int, ...]:
        if not isinstance(value, list) or not self.min_length <= len(value) <= self.max_length:
            raise _Invalid
        if not all(_is_int(v) and self.low <= v <= self.high for v in value):
            raise _Invalid
        return tuple(value)

    def describe(self) -> str:
        return f"a list of {self.min_length} to {self.max_length} integers, each from {self.low} to {self.high}"


@dataclass(frozen=True)
class AnyOf(Spec):
    options: tuple[Spec, ...]

    def check(self, value: Any) -> Any:
        for option in self.options:
            try:
                return option.check(value)
            except _Invalid:
                continue
        raise _Invalid

    def describe(self) -> str:
        return " or ".join(option.describe() for option in self.options)


@dataclass(frozen=True)
class Null(Spec):
    def check(self, value: Any) -> None:
        if value is not None:
            raise _Invalid

    def describe(self) -> str:
        return "null"


def nullable(spec: Spec) -> Spec:
    return AnyOf((spec, Null()))


def _num(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def _json_repr(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    return repr(value) if isinstance(value, str) else str(value)


# ---------------------------------------------------------------- algorithms


@dataclass(frozen=True)
class Param:
    """A hyperparameter's spec per task it applies to (criterion and loss take different values per task)."""

    specs: dict[str, Spec]


def both(spec: Spec) -> Param:
    return Param({CLASSIFICATION: spec, REGRESSION: spec})


def only(task: str, spec: Spec) -> Param:
    return Param({task: spec})


@dataclass(frozen=True)
class Algorithm:
    name: str
    # task → "module.Class" of the scikit-learn estimator: named, not imported, so that validating a request
    # (and the OpenAPI document the slim predict function builds from it) never imports scikit-learn.
    estimator_paths: dict[str, str]
    params: dict[str, Param]
    scale_numeric: bool = False
    needs_dense: bool = False
    # Regressors whose defaults assume a target of unit scale (C, epsilon, initial weights): they are fitted on
    # the standardised target and predict in the original units (TransformedTargetRegressor).
    scale_target: bool = False
    # Defaults that differ from scikit-learn's, applied before the client's values.
    defaults: dict[str, Any] = field(default_factory=dict)

    @property
    def tasks(self) -> tuple[str, ...]:
        return tuple(task for task in TASKS if task in self.estimator_paths)

    @property
    def estimators(self) -> dict[str, Callable[..., Any]]:
        """task → the estimator class, imported on first use."""
        return {task: _load_class(path) for task, path in self.estimator_paths.items()}

    def params_for(self, task: str | None) -> dict[str, Param]:
        """The hyperparameters of one task, or of any task the algorithm does when the task is not known yet."""
        tasks = self.tasks if task is None else (task,)
        return {name: p for name, p in self.params.items() if any(t in p.specs for t in tasks)}


_TOL = Float(0.0, 1.0, low_open=True)
_MAX_ITER = Int(1, 5000)
_CLASS_WEIGHT = only(CLASSIFICATION, nullable(Choice(("balanced",))))
_MAX_DEPTH = nullable(Int(1, 100))
_MAX_FEATURES = AnyOf((Null(), Choice(("sqrt", "log2")), Int(1, 100_000), Float(0.0, 1.0, low_open=True)))

_TREE_PARAMS: dict[str, Param] = {
    "criterion": Param(
        {
            CLASSIFICATION: Choice(("gini", "entropy", "log_loss")),
            REGRESSION: Choice(("squared_error", "friedman_mse", "absolute_error", "poisson")),
        }
    ),
    "max_depth": both(_MAX_DEPTH),
    "min_samples_split": both(Int(2, 100_000)),
    "min_samples_leaf": both(Int(1, 100_000)),
    "max_features": both(_MAX_FEATURES),
    "max_leaf_nodes": both(nullable(Int(2, 100_000))),
    "min_impurity_decrease": both(Float(0.0, 1e6)),
    "ccp_alpha": both(Float(0.0, 1e6)),
    "class_weight": _CLASS_WEIGHT,
}

ALGORITHMS: dict[str, Algorithm] = {
    "linear_regression": Algorithm(
        "linear_regression",
        {REGRESSION: "sklearn.linear_model.LinearRegression"},
        {"fit_intercept": both(Bool()), "positive": both(Bool())},
        scale_numeric=True,
    ),
    "ridge": Algorithm(
        "ridge",
        {CLASSIFICATION: "sklearn.linear_model.RidgeClassifier", REGRESSION: "sklearn.linear_model.Ridge"},
        {
            "alpha": both(Float(0.0, 1e6)),
            "fit_intercept": both(Bool()),
            # "svd" is left out: it refuses the sparse matrices that one-hot and TF-IDF columns produce.
            "solver": both(Choice(("auto", "cholesky", "lsqr", "sparse_cg", "sag", "saga"))),
            "max_iter": both(nullable(_MAX_ITER)),
            "tol": both(_TOL),
            "class_weight": _CLASS_WEIGHT,
        },
        scale_numeric=True,
    ),
    "lasso": Algorithm(
        "lasso",
        {REGRESSION: "sklearn.linear_model.Lasso"},
        {
            "alpha": both(Float(0.0, 1e6, low_open=True)),
            "fit_intercept": both(Bool()),
            "max_iter": both(_MAX_ITER),
            "tol": both(_TOL),
            "positive": both(Bool()),
            "selection": both(Choice(("cyclic", "random"))),
        },
        scale_numeric=True,
    ),
    "logistic_regression": Algorithm(
        "logistic_regression",
        {CLASSIFICATION: "sklearn.linear_model.LogisticRegression"},
        {
            "C": both(Float(0.0, 1e6, low_open=True)),
            "l1_ratio": both(Float(0.0, 1.0)),
            # liblinear is left out: it refuses more than two classes since scikit-learn 1.8.
            "solver": both(Choice(("lbfgs", "newton-cg", "newton-cholesky", "sag", "saga"))),
            "max_iter": both(_MAX_ITER),
            "tol": both(_TOL),
            "fit_intercept": both(Bool()),
            "class_weight": _CLASS_WEIGHT,
        },
        scale_numeric=True,
        defaults={"max_iter": 1000},  # 100 stops short on ordinary data and only warns
    ),
    "svm": Algorithm(
        "svm",
        {CLASSIFICATION: "sklearn.svm.SVC", REGRESSION: "sklearn.svm.SVR"},
        {
            "C": both(Float(0.0, 1e6, low_open=True)),
            "kernel": both(Choice(("linear", "rbf", "poly", "sigmoid"))),
            "degree": both(Int(1, 10)),
            "gamma": both(AnyOf((Choice(("scale", "auto")), Float(0.0, 1e3, low_open=True)))),
            "coef0": both(Float(-1e3, 1e3)),
            "tol": both(_TOL),
            "shrinking": both(Bool()),
            "max_iter": both(AnyOf((Choice((-1,)), Int(1, 10_000_000)))),
            "epsilon": only(REGRESSION, Float(0.0, 1e6)),
            "class_weight": _CLASS_WEIGHT,
        },
        scale_numeric=True,
        scale_target=True,
    ),
    "knn": Algorithm(
        "knn",
        {CLASSIFICATION: "sklearn.neighbors.KNeighborsClassifier", REGRESSION: "sklearn.neighbors.KNeighborsRegressor"},
        {
            "n_neighbors": both(Int(1, 200)),
            "weights": both(Choice(("uniform", "distance"))),
            "p": both(Int(1, 10)),
            "metric": both(Choice(("minkowski", "euclidean", "manhattan", "chebyshev"))),
            "algorithm": both(Choice(("auto", "ball_tree", "kd_tree", "brute"))),
            "leaf_size": both(Int(1, 1000)),
        },
        scale_numeric=True,
    ),
    "naive_bayes": Algorithm(
        "naive_bayes",
        {CLASSIFICATION: "sklearn.naive_bayes.GaussianNB"},
        {"var_smoothing": both(Float(0.0, 1.0, low_open=True))},
        needs_dense=True,
    ),
    "decision_tree": Algorithm(
        "decision_tree",
        {CLASSIFICATION: "sklearn.tree.DecisionTreeClassifier", REGRESSION: "sklearn.tree.DecisionTreeRegressor"},
        {**_TREE_PARAMS, "splitter": both(Choice(("best", "random")))},
    ),
    "random_forest": Algorithm(
        "random_forest",
        {
            CLASSIFICATION: "sklearn.ensemble.RandomForestClassifier",
            REGRESSION: "sklearn.ensemble.RandomForestRegressor",
        },
        {
            "n_estimators": both(Int(1, 500)),
            **_TREE_PARAMS,
            "bootstrap": both(Bool()),
            "max_samples": both(nullable(Float(0.0, 1.0, low_open=True))),
        },
    ),
    "gradient_boosting": Algorithm(
        "gradient_boosting",
        {
            CLASSIFICATION: "sklearn.ensemble.GradientBoostingClassifier",
            REGRESSION: "sklearn.ensemble.GradientBoostingRegressor",
        },
        {
            "n_estimators": both(Int(1, 500)),
            "learning_rate": both(Float(0.0, 10.0, low_open=True)),
            "max_depth": both(_MAX_DEPTH),
            "subsample": both(Float(0.0, 1.0, low_open=True)),
            "min_samples_split": both(Int(2, 100_000)),
            "min_samples_leaf": both(Int(1, 100_000)),
            "max_features": both(_MAX_FEATURES),
            "max_leaf_nodes": both(nullable(Int(2, 100_000))),
            "min_impurity_decrease": both(Float(0.0, 1e6)),
            "ccp_alpha": both(Float(0.0, 1e6)),
            "n_iter_no_change": both(nullable(Int(1, 500))),
            "validation_fraction": both(Float(0.0, 1.0, low_open=True, high_open=True)),
            "tol": both(_TOL),
            "loss": Param(
                {
                    CLASSIFICATION: Choice(("log_loss", "exponential")),
                    REGRESSION: Choice(("squared_error", "absolute_error", "huber", "quantile")),
                }
            ),
            # The quantile of loss 'quantile' and 'huber'.
            "alpha": only(REGRESSION, Float(0.0, 1.0, low_open=True, high_open=True)),
        },
    ),
    "mlp": Algorithm(
        "mlp",
        {CLASSIFICATION: "sklearn.neural_network.MLPClassifier", REGRESSION: "sklearn.neural_network.MLPRegressor"},
        {
            "hidden_layer_sizes": both(IntList(1, 5, 1, 1024)),
            "activation": both(Choice(("identity", "logistic", "tanh", "relu"))),
            "solver": both(Choice(("lbfgs", "sgd", "adam"))),
            "alpha": both(Float(0.0, 1e3)),
            "batch_size": both(AnyOf((Choice(("auto",)), Int(1, 100_000)))),
            "learning_rate": both(Choice(("constant", "invscaling", "adaptive"))),
            "learning_rate_init": both(Float(0.0, 1.0, low_open=True)),
            "max_iter": both(_MAX_ITER),
            "tol": both(_TOL),
            "momentum": both(Float(0.0, 1.0)),
            "early_stopping": both(Bool()),
            "validation_fraction": both(Float(0.0, 1.0, low_open=True, high_open=True)),
            "n_iter_no_change": both(Int(1, 1000)),
        },
        scale_numeric=True,
        scale_target=True,
    ),
}
# Set by the service, never by the client; named in the error so the refusal does not read like a typo.
_RESERVED = {
    "n_jobs": "training always uses one core (Lambda has no /dev/shm for worker processes)",
    "random_state": "use the request's top-level random_state field",
    "verbose": "training output is not shown",
    "warm_start": "each training starts from scratch",
    "probability": "probabilities are always enabled for svm classifiers",
}


def check_task(algorithm: Algorithm, task: str, inferred: str | None = None) -> None:
    """Refuse an algorithm/task pair; `inferred` explains where the task came from when the client gave none."""
    if task in algorithm.tasks:
        return
    supported = " and ".join(algorithm.tasks)
    if inferred:
        raise bad_request(
            f"algorithm {algorithm.name!r} does {supported} only, but the target looks like {task} ({inferred}); "
            'set "task" if that is wrong, or choose another algorithm',
            code="invalid_task",
        )
    raise bad_request(f"algorithm {algorithm.name!r} does {supported} only, not {task}", code="invalid_task")


def allowed_names(algorithm: Algorithm, task: str | None) -> list[str]:
    return sorted(algorithm.params_for(task))


def validate_hyperparameters(algorithm: Algorithm, task: str | None, raw: Any) -> dict[str, Any]:
    """The client's hyperparameters, checked; with task None only the names are checked (task still unknown)."""
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise bad_request("hyperparameters must be an object of name → value", code="invalid_hyperparameter")
    allowed = allowed_names(algorithm, task)
    checked: dict[str, Any] = {}
    for name, value in raw.items():
        if name in _RESERVED:
            raise bad_request(
                f"hyperparameter {name!r} cannot be set: {_RESERVED[name]}", code="invalid_hyperparameter"
            )
        param = algorithm.params_for(task).get(name)
        if param is None:
            where = f"{algorithm.name} ({task})" if task else algorithm.name
            raise bad_request(
                f"unknown hyperparameter {str(name)[:60]!r} for {where}; allowed: {', '.join(allowed) or 'none'}",
                code="invalid_hyperparameter",
            )
        if task is None:
            continue
        spec = param.specs[task]
        try:
            checked[name] = spec.check(value)
        except _Invalid:
            shown = repr(value)
            shown = shown if len(shown) <= 60 else shown[:57] + "..."
            raise bad_request(
                f"hyperparameter {name!r} of {algorithm.name} must be {spec.describe()}, got {shown}",
                code="invalid_hyperparameter",
            ) from None
    return checked


@dataclass(frozen=True)
class FitContext:
    """What the data tells about which hyperparameter combinations can work."""

    smallest_fit_rows: int  # the training part of the smallest cross-validation fold (= train_rows without cv)
    n_classes: int | None
    y: np.ndarray


def _conflict(message: str) -> None:
    raise bad_request(message, code="invalid_hyperparameter")


# Hyperparameters that set how many training rows one prediction rests on: a leaf (trees and boosting) or a
# neighbourhood (kNN) of a single row answers with that row's own target.
GROUP_FLOORS = {
    "decision_tree": "min_samples_leaf",
    "random_forest": "min_samples_leaf",
    "gradient_boosting": "min_samples_leaf",
    "knn": "n_neighbors",
}


def group_floor(algorithm: Algorithm, params: dict[str, Any], min_group: int) -> tuple[dict[str, Any], list[str]]:
    """Raise the leaf size (trees, forests, boosting) or the neighbour count (kNN) to MIN_GROUP_SIZE, so that
    no prediction rests on fewer training rows than may be singled out (with bootstrap, a forest's leaf may
    hold repeats of fewer distinct rows). Returns the params and a note for each value raised."""
    name = GROUP_FLOORS.get(algorithm.name)
    if name is None or min_group <= 1:
        return params, []
    asked = params.get(name)
    if asked is not None and asked >= min_group:
        return params, []
    note = (
        f"{name} raised from {asked if asked is not None else 'the default'} to {min_group} (MIN_GROUP_SIZE): "
        "no prediction may rest on fewer training rows"
    )
    return {**params, name: min_group}, [note]


def check_combination(algorithm: Algorithm, task: str, params: dict[str, Any], context: FitContext) -> dict[str, Any]:
    """Catch the combinations scikit-learn would reject mid-fit, with a message naming the fix; returns params
    with the choices those rules imply (an elastic-net logistic regression needs the saga solver)."""
    params = dict(params)
    name = algorithm.name
    if name == "logistic_regression" and params.get("l1_ratio", 0.0) > 0:
        solver = params.setdefault("solver", "saga")
        if solver != "saga":
            _conflict(f"logistic_regression with l1_ratio > 0 needs solver 'saga', got {solver!r}")
    if name == "knn":
        k = params.get("n_neighbors", 5)
        if k > context.smallest_fit_rows:
            default = "" if "n_neighbors" in params else " (the default)"
            _conflict(
                f"n_neighbors {k}{default} exceeds the {context.smallest_fit_rows} rows a model is fitted on; "
                f"set n_neighbors to at most {context.smallest_fit_rows}"
            )
    if name == "gradient_boosting" and params.get("loss") == "exponential" and (context.n_classes or 0) > 2:
        _conflict("gradient_boosting loss 'exponential' needs exactly two classes")
    poisson = params.get("criterion") == "poisson" and task == REGRESSION
    if poisson and ((context.y < 0).any() or context.y.sum() <= 0):
        _conflict("criterion 'poisson' needs a non-negative target with a positive sum")
    if name == "random_forest" and params.get("max_samples") is not None and params.get("bootstrap") is False:
        _conflict("max_samples needs bootstrap true")
    return params


def _load_class(path: str) -> Callable[..., Any]:
    module, _, name = path.rpartition(".")
    return getattr(importlib.import_module(module), name)


def build_estimator(algorithm: Algorithm, task: str, params: dict[str, Any], random_state: int) -> Any:
    """The unfitted estimator with the service's fixed settings (one core, the request's seed)."""
    cls = algorithm.estimators[task]
    kwargs: dict[str, Any] = {**algorithm.defaults, **params}
    accepted = cls().get_params(deep=False)
    if "random_state" in accepted:
        kwargs["random_state"] = random_state
    # LogisticRegression's n_jobs does nothing since scikit-learn 1.8 and warns when set.
    if "n_jobs" in accepted and cls.__name__ != "LogisticRegression":
        kwargs["n_jobs"] = 1
    if algorithm.name == "svm" and task == CLASSIFICATION:
        kwargs["probability"] = True
    estimator = cls(**kwargs)
    if task == REGRESSION and algorithm.scale_target:
        from sklearn.compose import TransformedTargetRegressor
        from sklearn.preprocessing import StandardScaler

        return TransformedTargetRegressor(regressor=estimator, transformer=StandardScaler())
    return estimator


def core_estimator(model: Any) -> Any:
    """The algorithm's own estimator inside a target-scaling wrapper, if any."""
    from sklearn.compose import TransformedTargetRegressor

    if isinstance(model, TransformedTargetRegressor):
        return model.regressor_ if hasattr(model, "regressor_") else model.regressor
    return model


def fit_quietly(estimator: Any, *args: Any) -> Any:
    """fit, without scikit-learn 1.9's deprecation notice for SVC(probability=True), which the service relies on."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*`probability` parameter was deprecated.*", category=FutureWarning)
        return estimator.fit(*args)


def effective_params(estimator: Any) -> dict[str, Any]:
    """Every parameter the fitted estimator used, as JSON values (parameters scikit-learn marks deprecated and
    which the service leaves unset are omitted)."""
    return {
        name: json_value(value)
        for name, value in sorted(estimator.get_params(deep=False).items())
        if not (isinstance(value, str) and value == "deprecated")
    }


def json_value(value: Any) -> Any:
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, (np.bool_,)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): json_value(v) for k, v in value.items()}
    if isinstance(value, (Sequence, np.ndarray)):
        return [json_value(v) for v in value]
    return str(value)
