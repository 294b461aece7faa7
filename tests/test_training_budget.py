"""The training-cost estimate: what a client relies on when the service refuses (or accepts) a training.

No fitting here: `budget.estimate` is arithmetic, and these tests pin its behaviour on the shapes that matter —
cheap default trainings pass, clearly expensive ones are refused with a message naming the knob to turn, and the
cost grows with what drives it. The absolute seconds come from benchmarks/training_cost.py.
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from mlservice.errors import ServiceError
from mlservice.training import algorithms, budget

BUDGET = 20.0
CLS, REG = "classification", "regression"


def shape(
    rows: int, features: int, classes: int | None = 3, *, width: int | None = None, cv: int | None = None
) -> dict:
    """estimate()'s keyword arguments for a table of `rows` rows split 80/20 like the service's default."""
    holdout = -(-rows // 5)
    return {
        "train_rows": rows - holdout,
        "holdout_rows": holdout,
        "width": width or features,
        "n_features": features,
        "n_classes": classes,
        "cv": cv,
    }


IRIS = shape(150, 4, 3)
DIABETES = shape(442, 10, None)


def est(algorithm: str, task: str, params: dict[str, Any] | None = None, **kw: Any) -> budget.Estimate:
    return budget.estimate(algorithm, task, params or {}, **kw)


def refusal(estimate: budget.Estimate) -> ServiceError:
    with pytest.raises(ServiceError) as caught:
        budget.check(estimate, BUDGET)
    assert caught.value.status == 400
    assert caught.value.code == "training_too_expensive"
    return caught.value


# ------------------------------------------------------------------ cheap trainings are accepted

CLASSIFIERS = tuple(name for name, a in algorithms.ALGORITHMS.items() if algorithms.CLASSIFICATION in a.tasks)
REGRESSORS = tuple(name for name, a in algorithms.ALGORITHMS.items() if algorithms.REGRESSION in a.tasks)


@pytest.mark.parametrize("algorithm", CLASSIFIERS)
def test_every_classifier_with_defaults_on_iris_is_cheap(algorithm: str) -> None:
    estimate = est(algorithm, CLS, **IRIS)
    assert estimate.seconds < 2.0  # all of them measure under 0.5 s
    budget.check(estimate, BUDGET)


@pytest.mark.parametrize("algorithm", REGRESSORS)
def test_every_regressor_with_defaults_on_diabetes_is_cheap(algorithm: str) -> None:
    estimate = est(algorithm, REG, **DIABETES)
    assert estimate.seconds < 2.0
    budget.check(estimate, BUDGET)


@pytest.mark.parametrize(
    "algorithm",
    (
        "logistic_regression",
        "ridge",
        "naive_bayes",
        "decision_tree",
        "random_forest",
        "gradient_boosting",
        "svm",
        "knn",
        "mlp",
    ),
)
@pytest.mark.parametrize("rows, features", [(1000, 10), (2000, 20)])
def test_defaults_on_small_tables_pass(algorithm: str, rows: int, features: int) -> None:
    budget.check(est(algorithm, CLS, **shape(rows, features, 2)), BUDGET)


@pytest.mark.parametrize(
    "algorithm, task",
    [
        ("logistic_regression", CLS),
        ("ridge", CLS),
        ("ridge", REG),
        ("linear_regression", REG),
        ("lasso", REG),
        ("naive_bayes", CLS),
        ("decision_tree", CLS),
        ("decision_tree", REG),
        ("random_forest", CLS),
        ("random_forest", REG),
    ],
)
def test_linear_models_trees_and_forests_on_10k_by_20_pass(algorithm: str, task: str) -> None:
    """10,000 rows × 20 columns: linear models take ~1 s, a forest 5-15 s."""
    budget.check(est(algorithm, task, **shape(10_000, 20, 3 if task == CLS else None)), BUDGET)


def test_one_hot_and_text_columns_do_not_make_cheap_trainings_expensive() -> None:
    """Width counts every one-hot column and 5000 TF-IDF terms per text column; boosting's shallow trees skip the
    empty ones, so 2k rows with a text column measure under 1 s."""
    text = shape(2000, 6, 2, width=5005)
    for algorithm in ("logistic_regression", "ridge", "naive_bayes", "random_forest", "gradient_boosting", "svm"):
        budget.check(est(algorithm, CLS, **text), BUDGET)
    categorical = shape(5000, 15, 4, width=110)
    for algorithm in ("logistic_regression", "random_forest", "gradient_boosting", "knn", "mlp", "decision_tree"):
        budget.check(est(algorithm, CLS, **categorical), BUDGET)


# ------------------------------------------------------------------ expensive trainings are refused


def test_boosting_many_deep_trees_with_many_folds_is_refused_naming_them() -> None:
    params = {"n_estimators": 500, "max_depth": 100}
    error = refusal(est("gradient_boosting", CLS, params, **shape(2000, 20, 3, cv=20)))
    assert "n_estimators (500)" in error.message
    assert "cv (20)" in error.message
    assert "exceeds the 20 s budget" in error.message


def test_boosting_bounds_on_iris_cost_what_they_measure() -> None:
    """n_estimators=500, max_depth=100, cv=20 on iris measures 9-11 s (21 fits of 1500 trees, but 120 rows cannot
    grow deep trees and the later ones are stumps): inside the 20 s budget, so it is not refused; the estimate
    (~15 s) names cv and n_estimators as what drives it."""
    estimate = est("gradient_boosting", CLS, {"n_estimators": 500, "max_depth": 100}, **shape(150, 4, 3, cv=20))
    assert 5.0 < estimate.seconds < BUDGET
    assert estimate.knobs[:2] == ("cv", "n_estimators")
    budget.check(estimate, BUDGET)


def test_wide_deep_mlp_with_many_epochs_is_refused_on_more_than_toy_data() -> None:
    params = {"hidden_layer_sizes": [1024] * 5, "max_iter": 5000}
    estimate = est("mlp", CLS, params, **shape(2000, 20, 3))
    error = refusal(estimate)
    assert estimate.knobs[0] == "hidden_layer_sizes"
    assert "hidden_layer_sizes ([1024]×5)" in error.message


def test_wide_deep_mlp_on_iris_is_estimated_from_measured_epochs() -> None:
    """(1024,)*5 on iris stops after 40-80 adam epochs of ~0.1 s, then compresses ~130 MB of weights and adam
    moments: 12-14 s measured, inside the budget. max_iter=5000 is not what it costs; the network's width is."""
    estimate = est("mlp", CLS, {"hidden_layer_sizes": [1024] * 5, "max_iter": 5000}, **IRIS)
    assert 5.0 < estimate.seconds < BUDGET
    assert estimate.knobs[0] == "hidden_layer_sizes"
    budget.check(estimate, BUDGET)


def test_mlp_lbfgs_runs_to_max_iter_on_regression() -> None:
    """lbfgs does not stop early on regression targets: max_iter is the cost, and it is named."""
    params = {"solver": "lbfgs", "hidden_layer_sizes": [512, 512], "max_iter": 5000}
    estimate = est("mlp", REG, params, **shape(5000, 20, None))
    error = refusal(estimate)
    assert "max_iter (5000)" in error.message


def test_high_degree_poly_svm_with_large_c_is_refused_naming_c() -> None:
    params = {"kernel": "poly", "degree": 10, "C": 1000.0}
    error = refusal(est("svm", CLS, params, **shape(10_000, 20, 2)))
    assert "C (1000)" in error.message


def test_poly_svm_on_iris_is_cheap_whatever_the_degree_and_c() -> None:
    """libsvm on 120 rows converges in milliseconds: degree 10 with 20 folds measures 0.3-0.4 s, and 1 s with
    C=1e6. Refusing it would refuse a training that takes a second."""
    for c in (1.0, 1e6):
        estimate = est("svm", CLS, {"kernel": "poly", "degree": 10, "C": c}, **shape(150, 4, 3, cv=20))
        assert estimate.seconds < 3.0
        budget.check(estimate, BUDGET)


def test_svm_on_many_rows_is_refused_naming_rows() -> None:
    """Kernel SVMs grow as rows^1.9 and each prediction visits every support vector: 20k rows is over a minute."""
    error = refusal(est("svm", CLS, {}, **shape(20_000, 30, 3)))
    assert "train on fewer rows (now 16,000)" in error.message


def test_knn_prediction_cost_is_what_refuses_it() -> None:
    """kNN fits nothing; permutation importance predicts 2000 rows against every training row 151 times."""
    estimate = est("knn", CLS, {}, **shape(50_000, 30, 3))
    refusal(estimate)
    assert estimate.knobs[0] == "rows"
    assert est("knn", CLS, {}, **shape(50_000, 30, 3)).seconds > 2 * est("knn", CLS, {}, **shape(25_000, 30, 3)).seconds


def test_forest_of_many_trees_on_large_data_names_n_estimators() -> None:
    error = refusal(est("random_forest", REG, {"n_estimators": 500}, **shape(40_000, 30, None)))
    assert "n_estimators (500)" in error.message


# ------------------------------------------------------------------ the cost follows its drivers


@pytest.mark.parametrize("algorithm", CLASSIFIERS)
def test_cost_grows_with_rows(algorithm: str) -> None:
    small, large = est(algorithm, CLS, **shape(2000, 20, 3)), est(algorithm, CLS, **shape(20_000, 20, 3))
    assert large.seconds > 2 * small.seconds


@pytest.mark.parametrize("algorithm", ("random_forest", "gradient_boosting"))
def test_cost_grows_with_n_estimators(algorithm: str) -> None:
    seconds = [est(algorithm, CLS, {"n_estimators": n}, **shape(5000, 20, 3)).seconds for n in (10, 100, 400)]
    assert seconds[0] < seconds[1] < seconds[2]
    assert seconds[2] > 3 * seconds[1] * 0.8


@pytest.mark.parametrize("algorithm", CLASSIFIERS)
def test_cost_grows_with_cv(algorithm: str) -> None:
    seconds = [est(algorithm, CLS, **shape(5000, 20, 3, cv=cv)).seconds for cv in (None, 5, 20)]
    assert seconds[0] < seconds[1] < seconds[2]


def test_depth_only_costs_what_the_data_allows() -> None:
    """max_depth=100 on 1000 rows costs about what a fully grown tree costs: the data stops it at ~log2(rows)."""
    deep = est("gradient_boosting", CLS, {"max_depth": 100}, **shape(1000, 10, 2)).seconds
    unlimited = est("gradient_boosting", CLS, {"max_depth": None}, **shape(1000, 10, 2)).seconds
    shallow = est("gradient_boosting", CLS, {"max_depth": 3}, **shape(1000, 10, 2)).seconds
    assert deep == pytest.approx(unlimited, rel=0.01)
    assert shallow < deep


def test_boosting_pays_per_class_forests_do_not() -> None:
    two = est("gradient_boosting", CLS, **shape(5000, 20, 2)).seconds
    ten = est("gradient_boosting", CLS, **shape(5000, 20, 10)).seconds
    assert ten > 5 * two
    forest_two = est("random_forest", CLS, **shape(5000, 20, 2)).seconds
    forest_ten = est("random_forest", CLS, **shape(5000, 20, 10)).seconds
    assert forest_ten < 2 * forest_two


def test_a_large_max_iter_alone_does_not_refuse_linear_models() -> None:
    """lbfgs and coordinate descent stop after tens of iterations whatever max_iter allows."""
    for algorithm, task in (("logistic_regression", CLS), ("lasso", REG)):
        cheap = est(algorithm, task, {"max_iter": 100}, **shape(20_000, 30, 3 if task == CLS else None))
        bound = est(algorithm, task, {"max_iter": 5000}, **shape(20_000, 30, 3 if task == CLS else None))
        assert bound.seconds < 2 * cheap.seconds
        budget.check(bound, BUDGET)


def test_mlp_cost_follows_the_layer_products() -> None:
    narrow = est("mlp", CLS, {"hidden_layer_sizes": [64, 64]}, **shape(5000, 20, 3)).seconds
    wide = est("mlp", CLS, {"hidden_layer_sizes": [512, 512]}, **shape(5000, 20, 3)).seconds
    assert wide > 5 * narrow


# ------------------------------------------------------------------ the message


def test_message_names_values_and_the_estimate() -> None:
    estimate = est("gradient_boosting", CLS, {"n_estimators": 500, "max_depth": 12}, **shape(20_000, 30, 5, cv=10))
    error = refusal(estimate)
    assert error.message.startswith(f"estimated {estimate.seconds:.0f} s of training exceeds the 20 s budget; reduce ")
    assert "n_estimators (500)" in error.message and "cv (10)" in error.message
    assert error.message.endswith("or train on fewer rows (now 16,000)")


def test_check_accepts_what_fits_and_names_rows_when_nothing_else_helps() -> None:
    budget.check(budget.Estimate(19.9, ("rows",)), BUDGET)
    error = refusal(budget.Estimate(25.0, ("rows",)))
    assert error.message == "estimated 25 s of training exceeds the 20 s budget; train on fewer rows"


def test_knobs_are_client_names_most_influential_first() -> None:
    estimate = est("random_forest", CLS, {"n_estimators": 500, "max_depth": None}, **shape(20_000, 30, 3, cv=5))
    assert set(estimate.knobs) <= {"n_estimators", "max_depth", "max_features", "cv", "rows", "features"}
    # Five more fits of the whole forest, and every tree predicting 151 importance shuffles: both beat the rows.
    assert set(estimate.knobs[:2]) == {"cv", "n_estimators"}


def test_estimating_is_instant() -> None:
    started = time.perf_counter()
    for algorithm in CLASSIFIERS:
        est(algorithm, CLS, **shape(100_000, 50, 5, cv=10))
    assert time.perf_counter() - started < 0.2
