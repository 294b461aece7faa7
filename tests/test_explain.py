"""Per-prediction explanations (mlservice.explain): additivity for every algorithm and output, the exact methods
against hand and brute-force computations, the sampling engine against exact Shapley values, the cost bounds.

Pipelines are built with the trainer's own pieces (profile, rare-category pooling, preprocessor, estimator) on a
small synthetic table with a numeric, a categorical and a text column, without the training child process and
the ONNX export, and are shared by the whole module.
"""

from __future__ import annotations

import io
import itertools
import json
import math
import re
import warnings
from functools import cache
from typing import Any

import joblib
import numpy as np
import pytest

from mlservice.errors import ServiceError
from mlservice.explain import explainer, sampling, treeshap
from mlservice.features import pool_rare_categories, rows_to_matrix
from mlservice.training import algorithms, preprocessing

MIN_GROUP = 5
WORDS = ["alpha", "beta", "gamma", "delta", "omega", "sigma"]
FEATURES = [
    {"name": "a", "kind": "numeric"},
    {"name": "b", "kind": "numeric"},
    {"name": "color", "kind": "categorical"},
    {"name": "review", "kind": "text"},
]
NAMES = [f["name"] for f in FEATURES]
EXPLAINED = 12  # rows explained per model in the additivity test
# Every algorithm the service offers, per task: a new one is explained (and tested) from the day it is added.
CLASSIFIERS = [name for name, spec in algorithms.ALGORITHMS.items() if "classification" in spec.tasks]
REGRESSORS = [name for name, spec in algorithms.ALGORITHMS.items() if "regression" in spec.tasks]
SMALL = {"random_forest": {"n_estimators": 10}, "gradient_boosting": {"n_estimators": 20}}
# The documented method table (explainer's docstring): (algorithm, task, output) → method; the default output first.
METHODS = {
    ("ridge", "classification"): {"decision": "linear"},
    ("logistic_regression", "classification"): {"probability": "permutation_sampling", "decision": "linear"},
    ("svm", "classification"): {"probability": "permutation_sampling", "decision": "permutation_sampling"},
    ("knn", "classification"): {"probability": "permutation_sampling"},
    ("naive_bayes", "classification"): {"probability": "permutation_sampling"},
    ("decision_tree", "classification"): {"probability": "tree_path"},
    ("random_forest", "classification"): {"probability": "tree_path"},
    ("gradient_boosting", "classification"): {"probability": "permutation_sampling", "decision": "tree_path"},
    ("mlp", "classification"): {"probability": "permutation_sampling"},
    ("linear_regression", "regression"): {"value": "linear"},
    ("ridge", "regression"): {"value": "linear"},
    ("lasso", "regression"): {"value": "linear"},
    ("svm", "regression"): {"value": "permutation_sampling"},
    ("knn", "regression"): {"value": "permutation_sampling"},
    ("decision_tree", "regression"): {"value": "tree_path"},
    ("random_forest", "regression"): {"value": "tree_path"},
    ("gradient_boosting", "regression"): {"value": "tree_path"},
    ("mlp", "regression"): {"value": "permutation_sampling"},
}


# ---------------------------------------------------------------- data and models


@cache
def table() -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """200 rows: a (some missing), b, color (4 common categories, a few unique ones pooled as rare), review
    (1–4 words of six, some in capitals), and three targets that depend on every column."""
    rng = np.random.default_rng(0)
    rows, value = [], []
    for i in range(200):
        a, b = float(rng.normal()), float(rng.uniform(0, 10))
        color = ["red", "green", "blue", "violet"][rng.integers(4)] if i % 50 else f"unique{i}"
        words = " ".join(rng.choice(WORDS, size=int(rng.integers(1, 5))))
        y = a + 0.3 * b + 1.5 * (color == "red") + 2 * ("alpha" in words) - ("omega" in words)
        rows.append([None if i % 17 == 0 else a, b, color, words.upper() if i % 7 == 0 else words])
        value.append(y + rng.normal(scale=0.3))
    y = np.array(value)
    labels = np.array(["lo" if v < 2 else "mid" if v < 4 else "hi" for v in y], dtype=object)
    targets = {"regression": y, "multiclass": labels, "binary": np.where(labels == "hi", "yes", "no").astype(object)}
    return rows_to_matrix(rows, FEATURES), targets


@cache
def fitted(algorithm: str, target: str, params: tuple = (), columns: tuple[int, ...] = (0, 1, 2, 3)) -> tuple:
    """(pipeline, profile, pooled training matrix), built as trainer.train_model builds them."""
    X, targets = table()
    X = X[:, list(columns)]
    features = [FEATURES[j] for j in columns]
    if all(f["kind"] == "numeric" for f in features):
        X = X.astype(np.float64)  # what rows_to_matrix gives an all-numeric model
    task = "regression" if target == "regression" else "classification"
    spec = algorithms.ALGORITHMS[algorithm]
    hyper = algorithms.validate_hyperparameters(spec, task, dict(params) or SMALL.get(algorithm, {}))
    hyper, _ = algorithms.group_floor(spec, hyper, MIN_GROUP)
    profile = preprocessing.feature_profile(X, features, MIN_GROUP)
    X = pool_rare_categories(X.copy(), profile)
    preprocessor = preprocessing.build_preprocessor(
        profile, scale_numeric=spec.scale_numeric, dense=spec.needs_dense, min_group=MIN_GROUP
    )
    pipeline = preprocessing.build_pipeline(preprocessor, algorithms.build_estimator(spec, task, hyper, 0))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        algorithms.fit_quietly(pipeline, X, targets[target])
    explainer.attach_background(pipeline, X, 0, profile, MIN_GROUP)
    return pipeline, profile, X


def task_of(target: str) -> str:
    return "regression" if target == "regression" else "classification"


def explain(pipeline: Any, X: np.ndarray, profile: list, target: str, **kwargs: Any) -> dict:
    return explainer.explain(pipeline, X, profile, task_of(target), None, **kwargs)


def error_of(call: Any) -> ServiceError:
    with pytest.raises(ServiceError) as caught:
        call()
    return caught.value


def model_output(pipeline: Any, X: np.ndarray, output: str) -> np.ndarray:
    if output == "probability":
        return pipeline.predict_proba(X)
    if output == "decision":
        return pipeline.decision_function(X).reshape(len(X), -1)
    return pipeline.predict(X).reshape(len(X), -1)


def owners(profile: list[dict], pipeline: Any) -> np.ndarray:
    """The raw feature of every encoded column, from the preprocessing's documented layout: the numeric
    columns, then each categorical feature's kept categories plus the rare one, then each text's vocabulary."""
    owner = [j for j, f in enumerate(profile) if f["kind"] == "numeric"]
    owner += [j for j, f in enumerate(profile) if f["kind"] == "categorical" for _ in range(len(f["categories"]) + 1)]
    owner += [
        j for j, f in enumerate(profile) if f["kind"] == "text" for _ in range(preprocessing.text_terms(pipeline, j))
    ]
    return np.array(owner)


def dense(matrix: Any) -> np.ndarray:
    return matrix.toarray() if hasattr(matrix, "toarray") else np.asarray(matrix)


def totals(row: dict) -> np.ndarray:
    return np.array(row["base_value"]) + np.sum([c for c in row["contributions"].values()], axis=0)


# ---------------------------------------------------------------- every algorithm, every output


CASES = [(a, t) for a in CLASSIFIERS for t in ("multiclass", "binary")] + [(a, "regression") for a in REGRESSORS]


@pytest.mark.parametrize(("algorithm", "target"), CASES)
def test_every_method_is_additive_and_reports_the_model_outputs(algorithm: str, target: str) -> None:
    pipeline, profile, X = fitted(algorithm, target)
    rows = X[:EXPLAINED]
    table_methods = METHODS[(algorithm, task_of(target))]
    classes = list(pipeline.classes_) if target != "regression" else None
    for output, method in table_methods.items():
        result = explain(pipeline, rows, profile, target, output=output)
        json.dumps(result, allow_nan=False)
        assert (result["method"], result["output"]) == (method, output)
        expected = model_output(pipeline, rows, output)
        if output == "value":
            assert result["outputs"] == ["value"]
        elif output == "decision" and target == "binary":
            assert result["outputs"] == [classes[1]] and expected.shape[1] == 1
        else:
            assert result["outputs"] == classes
        assert result["max_additivity_error"] <= min(result["tolerance"], 1e-9)
        assert result["tolerance"] <= 1e-6 * (1 + np.abs(expected).max()) + 1e-15
        assert [r["prediction"] for r in result["rows"]] == pipeline.predict(rows).tolist()
        assert result["evaluations"] == 0 if method != "permutation_sampling" else result["evaluations"] > 0
        assert ("samples" in result) == (method == "permutation_sampling")
        assert result["token_method"] == ("occlusion" if method == "permutation_sampling" else "encoded")
        for r, row in enumerate(result["rows"]):
            assert list(row["contributions"]) == NAMES
            assert np.allclose(row["output_value"], expected[r], rtol=0, atol=1e-9)
            assert np.abs(totals(row) - row["output_value"]).max() <= result["max_additivity_error"] + 1e-15
            assert ("standard_errors" in row) == (method == "permutation_sampling")
            assert set(row["tokens"]) == {"review"}
    assert next(iter(table_methods)) == explain(pipeline, rows[:1], profile, target)["output"]  # the default


def test_an_all_numeric_float_matrix_is_explained_by_every_engine() -> None:
    for algorithm, target in [("mlp", "binary"), ("random_forest", "regression"), ("ridge", "regression")]:
        pipeline, profile, X = fitted(algorithm, target, columns=(0, 1))
        assert X.dtype == np.float64 and pipeline.explain_background_.dtype == np.float64
        result = explain(pipeline, X[:5], profile, target)
        assert result["max_additivity_error"] <= 1e-9 and "tokens" not in result["rows"][0]
        assert "token_method" not in result


def test_no_rows_is_an_empty_explanation() -> None:
    pipeline, profile, X = fitted("random_forest", "multiclass")
    result = explain(pipeline, X[:0], profile, "multiclass")
    assert result["rows"] == [] and result["max_additivity_error"] == 0.0


# ---------------------------------------------------------------- the exact linear method


@pytest.mark.parametrize(
    ("algorithm", "target", "output"),
    [
        ("linear_regression", "regression", "value"),
        ("ridge", "regression", "value"),
        ("lasso", "regression", "value"),
        ("ridge", "multiclass", "decision"),
        ("logistic_regression", "binary", "decision"),
        ("logistic_regression", "multiclass", "decision"),
    ],
)
def test_linear_contributions_are_coefficient_times_deviation_from_the_training_mean(
    algorithm: str, target: str, output: str
) -> None:
    pipeline, profile, X = fitted(algorithm, target)
    model = pipeline.named_steps["model"]
    encoded_train = dense(pipeline[:-1].transform(X))
    mean = encoded_train.mean(axis=0)
    assert np.allclose(pipeline.explain_encoded_mean_, mean, rtol=0, atol=1e-12)
    coef = np.atleast_2d(model.coef_)
    intercept = np.atleast_1d(model.intercept_)
    owner = owners(profile, pipeline)
    rows = X[:20]
    z = dense(pipeline[:-1].transform(rows))
    result = explain(pipeline, rows, profile, target, output=output)
    assert result["method"] == "linear"
    for r, row in enumerate(result["rows"]):
        for j, name in enumerate(NAMES):
            by_hand = [
                sum(coef[k, f] * (z[r, f] - mean[f]) for f in np.flatnonzero(owner == j)) for k in range(len(coef))
            ]
            assert row["contributions"][name] == pytest.approx(by_hand, rel=1e-9, abs=1e-9)
        assert row["base_value"] == pytest.approx(list(intercept + coef @ mean), rel=1e-9, abs=1e-9)


def test_linear_tokens_are_the_present_words_and_absent_ones_make_up_the_rest() -> None:
    """Only words present in the row are listed, largest first; the review column's contribution is their sum
    plus −coef × mean for every vocabulary word absent from the row."""
    pipeline, profile, X = fitted("ridge", "regression")
    vectorizer = pipeline.named_steps["preprocess"].named_transformers_["text_3"]
    vocabulary = vectorizer.vocabulary_
    start = pipeline.named_steps["preprocess"].output_indices_["text_3"].start
    coef, mean = pipeline.named_steps["model"].coef_, pipeline.explain_encoded_mean_
    result = explain(pipeline, X[:40], profile, "regression")
    assert result["token_method"] == "encoded"
    for row, text in zip(result["rows"], X[:40, 3], strict=True):
        listed = row["tokens"]["review"]
        present = set(re.findall(r"\w\w+", text.lower())) & set(vocabulary)
        assert {t["token"] for t in listed} == present and len(listed) <= explainer.SHOWN_TOKENS
        sizes = [abs(t["contribution"][0]) for t in listed]
        assert sizes == sorted(sizes, reverse=True)
        absent = sum(-coef[start + i] * mean[start + i] for word, i in vocabulary.items() if word not in present)
        shown = sum(t["contribution"][0] for t in listed)
        assert shown + absent == pytest.approx(row["contributions"]["review"][0], rel=1e-9, abs=1e-12)


# ---------------------------------------------------------------- TreeSHAP against brute force


def _expectation(tree: Any, x: np.ndarray, subset: set[int], proba: bool, node: int = 0) -> np.ndarray:
    """E[f(x) | x_S] path-dependently: follow x on features in S, else average the children by cover."""
    left, right = tree.children_left[node], tree.children_right[node]
    if left < 0:
        value = np.asarray(tree.value[node, 0], dtype=np.float64)
        return value / value.sum() if proba else value
    f = tree.feature[node]
    if f in subset:
        return _expectation(tree, x, subset, proba, left if np.float32(x[f]) <= tree.threshold[node] else right)
    cover = tree.weighted_n_node_samples
    both = cover[left] * _expectation(tree, x, subset, proba, left) + cover[right] * _expectation(
        tree, x, subset, proba, right
    )
    return both / cover[node]


def _brute_force(tree: Any, x: np.ndarray, proba: bool) -> dict[int, np.ndarray]:
    """Shapley values of every encoded feature the tree splits on, by enumerating every coalition."""
    players = sorted({int(f) for f in tree.feature if f >= 0})
    m = len(players)
    values: dict[int, np.ndarray] = {}
    for i in players:
        others = [p for p in players if p != i]
        total = 0.0
        for size in range(m):
            weight = math.factorial(size) * math.factorial(m - size - 1) / math.factorial(m)
            for subset in itertools.combinations(others, size):
                s = set(subset)
                total = total + weight * (_expectation(tree, x, s | {i}, proba) - _expectation(tree, x, s, proba))
        values[i] = np.asarray(total, dtype=np.float64)
    return values


@pytest.mark.parametrize(
    ("algorithm", "target", "params"),
    [
        ("decision_tree", "multiclass", (("max_depth", 4),)),
        ("decision_tree", "regression", (("max_depth", 4),)),
        ("random_forest", "multiclass", (("n_estimators", 3), ("max_depth", 3))),
        ("gradient_boosting", "regression", (("n_estimators", 4), ("max_depth", 2))),
    ],
)
def test_treeshap_equals_brute_force_path_dependent_shapley_values(algorithm: str, target: str, params: tuple) -> None:
    pipeline, profile, X = fitted(algorithm, target, params)
    model = pipeline.named_steps["model"]
    proba = target != "regression"
    if algorithm == "gradient_boosting":
        units = [(e.tree_, model.learning_rate) for e in model.estimators_[:, 0]]
        base = model.init_.constant_.ravel() + sum(s * _expectation(t, X[0], set(), False) for t, s in units)
    elif algorithm == "random_forest":
        units = [(e.tree_, 1 / len(model.estimators_)) for e in model.estimators_]
        base = sum(s * _expectation(t, X[0], set(), proba) for t, s in units)
    else:
        units = [(model.tree_, 1.0)]
        base = _expectation(model.tree_, X[0], set(), proba)
    owner = owners(profile, pipeline)
    vocabulary = pipeline.named_steps["preprocess"].named_transformers_["text_3"].get_feature_names_out()
    text_start = pipeline.named_steps["preprocess"].output_indices_["text_3"].start
    rows = X[:8]
    encoded = dense(pipeline[:-1].transform(rows))
    result = explain(pipeline, rows, profile, target)
    assert result["method"] == "tree_path"
    for r, row in enumerate(result["rows"]):
        per_encoded: dict[int, np.ndarray] = {}
        for tree, scale in units:
            for f, value in _brute_force(tree, encoded[r], proba).items():
                per_encoded[f] = per_encoded.get(f, 0) + scale * value
        assert row["base_value"] == pytest.approx(list(np.atleast_1d(base)), abs=1e-12)
        for j, name in enumerate(NAMES):
            expected = sum((v for f, v in per_encoded.items() if owner[f] == j), np.zeros(len(row["base_value"])))
            assert row["contributions"][name] == pytest.approx(list(expected), abs=1e-12)
        for token in row["tokens"]["review"]:
            column = text_start + list(vocabulary).index(token["token"])
            assert encoded[r, column] > 0  # present in the row
            assert token["contribution"] == pytest.approx(list(per_encoded[column]), abs=1e-12)


def test_rows_on_a_split_threshold_follow_the_tree_as_sklearn_does() -> None:
    """sklearn sends x left when float32(x) <= threshold: rows exactly on (and around) every threshold of the
    numeric column b must take the same path in TreeSHAP, or base + contributions would miss the output."""
    pipeline, profile, X = fitted("decision_tree", "regression")
    tree = pipeline.named_steps["model"].tree_
    b = pipeline.named_steps["preprocess"].output_indices_["numeric"].start + 1  # imputed b, unscaled
    thresholds = tree.threshold[tree.feature == b]
    assert len(thresholds) >= 3
    values = [v for t in thresholds for v in (t, np.nextafter(t, np.inf), np.nextafter(t, -np.inf), np.float32(t))]
    rows = np.repeat(X[:1], len(values), axis=0)
    rows[:, 1] = [float(v) for v in values]
    result = explain(pipeline, rows, profile, "regression")
    assert result["max_additivity_error"] <= 1e-9


def test_treeshap_handles_deep_trees_and_repeated_features_without_losing_precision() -> None:
    """A deep tree on few features repeats each many times along a path: merged players, long recurrences."""
    from sklearn.tree import DecisionTreeRegressor

    rng = np.random.default_rng(3)
    X = rng.normal(size=(3000, 3))
    y = np.sin(3 * X[:, 0]) * X[:, 1] + X[:, 2] ** 2
    tree = DecisionTreeRegressor(random_state=0).fit(X, y)  # fully grown: depth ~25
    assert tree.get_depth() > 20
    ensemble = treeshap.compile_ensemble([(tree.tree_, 1.0, 0)], 1)
    x = X[:50, ensemble.columns].astype(np.float32).astype(np.float64)
    phi, predicted = treeshap.shap_values(ensemble, x)
    assert np.abs(predicted[:, 0] - tree.predict(X[:50])).max() == 0
    assert np.abs(ensemble.expected + phi.sum(axis=1) - predicted).max() < 1e-12
    brute = _brute_force(tree.tree_, X[0], False)
    assert [brute[int(f)][0] for f in ensemble.columns] == pytest.approx(phi[0, :, 0], abs=1e-12)


# ---------------------------------------------------------------- permutation sampling


def _probability(pipeline: Any) -> Any:
    return lambda rows: pipeline.predict_proba(rows)


def test_sampling_a_linear_model_converges_to_the_exact_linear_values() -> None:
    """A linear regression through the sampling engine: every sample credits coef × (z(x) − z(b)) per column,
    so the estimate is the exact linear value against the background rows the samples used, and within a few
    standard errors of the exact value against the training mean."""
    pipeline, profile, X = fitted("linear_regression", "regression")
    rows, samples = X[:15], 64
    background = pipeline.explain_background_
    result = sampling.sampling_shapley(
        lambda m: pipeline.predict(m).reshape(-1, 1), rows, background, samples, random_state=1, chunk_rows=5000
    )
    assert result.values[:, 0] == pytest.approx(pipeline.predict(rows), abs=1e-12)
    assert result.evaluations == len(rows) * samples * 3 + len(rows) + sampling.background_used(
        len(background), samples
    )
    used = background[np.arange(samples // 2) % sampling.background_used(len(background), samples)]
    owner = owners(profile, pipeline)
    coef = pipeline.named_steps["model"].coef_
    z, z_background = dense(pipeline[:-1].transform(rows)), dense(pipeline[:-1].transform(used)).mean(axis=0)
    exact = explain(pipeline, rows, profile, "regression")
    assert result.base[0] == pytest.approx(pipeline.predict(used).mean(), abs=1e-12)
    for j, name in enumerate(NAMES):
        against_used = (coef * (z - z_background))[:, owner == j].sum(axis=1)
        assert result.phi[:, j, 0] == pytest.approx(against_used, abs=1e-9)
        against_mean = np.array([row["contributions"][name][0] for row in exact["rows"]])
        assert np.all(np.abs(result.phi[:, j, 0] - against_mean) <= 4 * result.standard_errors[:, j, 0] + 1e-9)


def _interventional_shapley(output: Any, x: np.ndarray, background: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Exact interventional Shapley values against background rows with the given weights: every coalition
    (x's values on the coalition, the background row's elsewhere), all hybrids evaluated in one call."""
    m = len(x)
    coalitions = [c for size in range(m + 1) for c in itertools.combinations(range(m), size)]
    hybrids = np.repeat(background[:, None, :], len(coalitions), axis=1)  # (B, coalitions, m)
    for c, coalition in enumerate(coalitions):
        hybrids[:, c, list(coalition)] = x[list(coalition)]
    values = output(hybrids.reshape(-1, m)).reshape(len(background), len(coalitions), -1)
    value = {coalition: weights @ values[:, c] for c, coalition in enumerate(coalitions)}
    phi = np.zeros((m, values.shape[2]))
    for i in range(m):
        for coalition in coalitions:
            if i not in coalition:
                s = len(coalition)
                w = math.factorial(s) * math.factorial(m - s - 1) / math.factorial(m)
                phi[i] += w * (value[tuple(sorted((*coalition, i)))] - value[coalition])
    return phi


def _background_weights(background: np.ndarray, samples: int) -> tuple[np.ndarray, np.ndarray]:
    used = sampling.background_used(len(background), samples)
    counts = np.bincount(np.arange(samples // 2) % used, minlength=used)
    return background[:used], counts / counts.sum()


def test_sampling_with_two_features_is_exact_thanks_to_antithetic_pairs() -> None:
    """With two players an order and its reverse are all the orders: the estimate is the exact Shapley value."""
    pipeline, _, X = fitted("mlp", "multiclass", columns=(0, 2))
    output = _probability(pipeline)
    samples = 16
    result = sampling.sampling_shapley(output, X[:6], pipeline.explain_background_, samples, 0, 5000)
    background, weights = _background_weights(pipeline.explain_background_, samples)
    for r in range(6):
        exact = _interventional_shapley(output, X[r], background, weights)
        assert result.phi[r] == pytest.approx(exact, abs=1e-12)
    assert result.base == pytest.approx(weights @ output(background), abs=1e-12)


def test_sampling_with_interactions_is_within_a_few_standard_errors_of_exact() -> None:
    pipeline, _, X = fitted("gradient_boosting", "multiclass", columns=(0, 1, 2))
    output = _probability(pipeline)
    samples = 128
    result = sampling.sampling_shapley(output, X[:5], pipeline.explain_background_, samples, 7, 50_000)
    background, weights = _background_weights(pipeline.explain_background_, samples)
    deviations = []
    for r in range(5):
        exact = _interventional_shapley(output, X[r], background, weights)
        deviations.append(np.abs(result.phi[r] - exact) / (result.standard_errors[r] + 1e-12))
        assert np.abs(result.phi[r] - exact).max() > 0  # really sampled, not enumerated
    assert np.max(deviations) < 4.5


def test_sampling_is_deterministic_for_a_random_state_and_varies_with_it() -> None:
    pipeline, profile, X = fitted("knn", "regression")
    first = explain(pipeline, X[:5], profile, "regression", random_state=3)
    assert explain(pipeline, X[:5], profile, "regression", random_state=3) == first
    assert explain(pipeline, X[:5], profile, "regression", random_state=4) != first


def test_occlusion_tokens_are_the_output_change_when_the_word_is_removed() -> None:
    pipeline, profile, X = fitted("mlp", "regression")
    result = explain(pipeline, X[:10], profile, "regression")
    assert result["token_method"] == "occlusion"
    checked = 0
    for r, row in enumerate(result["rows"]):
        for token in row["tokens"]["review"]:
            text = X[r, 3]
            assert token["token"] in text.lower().split()
            occluded = X[r : r + 1].copy()
            occluded[0, 3] = " ".join(w for w in text.split() if w.lower() != token["token"])
            change = pipeline.predict(X[r : r + 1])[0] - pipeline.predict(occluded)[0]
            assert token["contribution"][0] == pytest.approx(change, abs=1e-9)
            checked += 1
        vocabulary = pipeline.named_steps["preprocess"].named_transformers_["text_3"].vocabulary_
        present = set(X[r, 3].lower().split()) & set(vocabulary)  # fewer than OCCLUDED_TOKENS: all occluded
        assert {t["token"] for t in row["tokens"]["review"]} == present
    assert checked >= 10


def test_without_token_removes_whole_words_case_insensitively() -> None:
    assert sampling.without_token("Alpha alphabet ALPHA, beta_alpha alpha", "alpha") == " alphabet , beta_alpha "


# ---------------------------------------------------------------- outputs and cost bounds


@pytest.mark.parametrize(
    ("algorithm", "target", "output", "allowed"),
    [
        ("random_forest", "multiclass", "decision", "'probability'"),
        ("ridge", "regression", "probability", "'value'"),
        ("ridge", "binary", "probability", "'decision'"),
        ("knn", "multiclass", "value", "'probability'"),
    ],
)
def test_an_output_the_model_lacks_is_invalid_output(algorithm: str, target: str, output: str, allowed: str) -> None:
    pipeline, profile, X = fitted(algorithm, target)
    error = error_of(lambda: explain(pipeline, X[:2], profile, target, output=output))
    assert error.code == "invalid_output" and error.status == 400
    assert repr(output) in error.message and f"allowed: {allowed}" in error.message


def test_sampling_reduces_samples_to_fit_and_refuses_naming_the_rows_that_fit() -> None:
    pipeline, profile, X = fitted("svm", "multiclass")
    rows = X[:10]
    reduced = explain(pipeline, rows, profile, "multiclass", max_evaluations=1000)
    assert explainer.MIN_SAMPLES <= reduced["samples"] < 64 and reduced["samples"] % 2 == 0
    assert reduced["evaluations"] <= 1000 and reduced["max_additivity_error"] <= 1e-9
    error = error_of(lambda: explain(pipeline, X[:100], profile, "multiclass", max_evaluations=1000))
    assert error.code == "explanation_too_expensive" and error.status == 400
    at_most = int(re.search(r"at most (\d+) rows per request", error.message).group(1))
    assert "100 rows" in error.message and 0 < at_most < 100
    fits = explain(pipeline, X[:at_most], profile, "multiclass", max_evaluations=1000)
    assert fits["samples"] >= explainer.MIN_SAMPLES and fits["evaluations"] <= 1000


def test_tree_explanations_refuse_past_the_work_bound(monkeypatch: pytest.MonkeyPatch) -> None:
    pipeline, profile, X = fitted("random_forest", "regression")
    trees = [e.tree_ for e in pipeline.named_steps["model"].estimators_]
    per_row = treeshap.tree_work(trees)
    monkeypatch.setattr(explainer, "MAX_TREE_WORK", per_row * 7 + 1)
    assert len(explain(pipeline, X[:7], profile, "regression")["rows"]) == 7
    error = error_of(lambda: explain(pipeline, X[:8], profile, "regression"))
    assert error.code == "explanation_too_expensive" and "at most 7 rows per request" in error.message


def test_a_model_without_background_says_to_retrain() -> None:
    pipeline, profile, X = fitted("knn", "binary")
    copy = joblib.load(io.BytesIO(_dumped(pipeline)))
    del copy.explain_background_
    error = error_of(lambda: explain(copy, X[:2], profile, "binary"))
    assert error.status == 400 and "retrain" in error.message
    tree, tree_profile, _ = fitted("decision_tree", "binary")
    old = joblib.load(io.BytesIO(_dumped(tree)))
    del old.explain_background_, old.explain_encoded_mean_
    assert explain(old, X[:2], tree_profile, "binary")["method"] == "tree_path"  # trees need no background


def _dumped(pipeline: Any) -> bytes:
    buffer = io.BytesIO()
    joblib.dump(pipeline, buffer)
    return buffer.getvalue()


# ---------------------------------------------------------------- the background


def test_the_background_summarises_groups_of_training_rows_and_the_mean_covers_all_of_them() -> None:
    pipeline, profile, X = fitted("ridge", "regression")
    background = pipeline.explain_background_
    groups = len(X) // max(2 * MIN_GROUP, -(-len(X) // explainer.BACKGROUND_ROWS))
    assert background.shape == (min(groups, explainer.BACKGROUND_ROWS), X.shape[1]) and background.dtype == object
    training = {tuple(map(str, row)) for row in X}
    assert not any(tuple(map(str, row)) in training for row in background)  # summaries, not training rows
    for j, feature in enumerate(profile):
        column = background[:, j]
        if feature["kind"] == "numeric":
            values = X[:, j].astype(np.float64)
            assert np.nanmin(values) < min(column.astype(float)) and max(column.astype(float)) < np.nanmax(values)
        elif feature["kind"] == "categorical":
            assert set(column) <= {*feature["categories"], feature["rare_category"]}
    mean = pipeline.explain_encoded_mean_
    assert mean.dtype == np.float64 and mean.shape == (dense(pipeline[:-1].transform(X[:1])).shape[1],)
    small = X[:30]
    copy = joblib.load(io.BytesIO(_dumped(pipeline)))
    explainer.attach_background(copy, small, 5, profile, MIN_GROUP)
    assert len(copy.explain_background_) == 3  # 30 rows in groups of 10
    assert np.allclose(copy.explain_encoded_mean_, dense(copy[:-1].transform(small)).mean(axis=0), atol=1e-12)


def test_a_trained_artifact_is_explained(iris_model: tuple[bytes, dict]) -> None:
    artifact, metadata = iris_model
    pipeline = joblib.load(io.BytesIO(artifact))
    features, classes = metadata["features"], metadata["target"]["classes"]
    matrix = rows_to_matrix([[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]], features)
    for output, method in (("probability", "permutation_sampling"), ("decision", "linear")):
        result = explainer.explain(pipeline, matrix, features, "classification", classes, output=output)
        assert result["method"] == method and result["outputs"] == classes
        assert result["max_additivity_error"] <= 1e-9
