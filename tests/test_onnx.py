"""The ONNX export: every algorithm, task and feature mix is exported at training, parity-checked, and served by
onnxruntime (OnnxRunner) with scikit-learn's labels and, within the documented tolerances, its probabilities
and values — on new rows with unseen and rare categories, missing values and non-ASCII text. A model that
does not convert is served from joblib with the reason. The runner imports neither scikit-learn nor scipy.
"""

from __future__ import annotations

import io
import json
import random
import re
import subprocess
import sys
import time
import unicodedata
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import onnx
import onnxruntime
import pytest

from mlservice.features import rows_to_matrix
from mlservice.serving.onnx_runner import OnnxRunner, feeds
from mlservice.training import algorithms, onnx_export, preprocessing
from mlservice.training.trainer import TrainedModel, train, train_model

LAYER = Path(__file__).resolve().parents[1] / "layers" / "mlservice"
CLASSES = ["alpha", "beta", "gamma"]
MIXES = {
    "numeric": ["num", "num2"],
    "categorical": ["cat", "cat2"],
    "text": ["text"],
    "mixed": ["num", "cat", "text", "num2"],
}
# Small models: the file runs in well under a minute.
SMALL = {
    "random_forest": {"n_estimators": 10},
    "gradient_boosting": {"n_estimators": 15},
    "mlp": {"hidden_layer_sizes": [16], "max_iter": 300},
}
CASES = [
    (name, task, mix) for name, algorithm in algorithms.ALGORITHMS.items() for task in algorithm.tasks for mix in MIXES
]
WORDS = [["great café", "love it"], ["awful Straße", "hate it"], ["meh", "ok fine"]]


@pytest.fixture(scope="module", autouse=True)
def _one_openmp_thread() -> Any:
    """scikit-learn's kNN runs OpenMP threads, and GNU OpenMP hangs in a process forked from one that has run
    them: this process checks kNN pipelines, then the trainer forks its fit (mlservice.training.deadline).
    One thread makes no pool. (The export's own child limits itself: see the test after the fallbacks.)"""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1, user_api="openmp"):
        yield


@pytest.fixture(autouse=True)
def _settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODEL_BUCKET", "onnx-tests")
    for name in ("MAX_TRAIN_ROWS", "MAX_TRAIN_CELLS", "MIN_GROUP_SIZE", "TRAINING_DEADLINE_SECONDS"):
        monkeypatch.delenv(name, raising=False)


def records(n: int, task: str, seed: int = 0) -> list[dict[str, Any]]:
    """Rows whose class (or value) follows every feature, with missing numbers, missing and one-off categories
    and text in several scripts and cases."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        k = rng.randrange(3)
        out.append(
            {
                "num": None if rng.random() < 0.15 else round(rng.gauss(k, 0.7), 3),
                "num2": round(rng.random() * 10 + 2 * k, 2) if rng.random() > 0.05 else "NA",
                "cat": rng.choice([["red", "green"], ["blue", "green"], ["red", "teal"]][k])
                if rng.random() > 0.12
                else rng.choice([None, f"once-{i}"]),
                "cat2": rng.choice([["s", "m"], ["m", "l"], ["l", "xl"]][k]),
                "text": f"{rng.choice(WORDS[k])} {rng.choice(['x', 'Yy', 'ZZ', 'ÉCOLE'])}",
                "y": CLASSES[k] if task == "classification" else round(k * 10 + rng.random() * 3, 3),
            }
        )
    return out


# Prediction rows the training never saw: unseen and one-off categories, every spelling of missing, extreme
# but finite numbers, empty and one-letter text, other scripts and cases (str.lower, not the locale's).
SPECIAL_ROWS = [
    {"num": None, "num2": None, "cat": "never-seen", "cat2": None, "text": ""},
    {"num": "NA", "num2": 1e6, "cat": "once-3", "cat2": "", "text": "a"},
    {"num": -3.5, "num2": 0, "cat": None, "cat2": "xl", "text": "GREAT CAFÉ Love IT"},
    {"num": 1e-30, "num2": -1e5, "cat": "", "cat2": "m", "text": "İstanbul ΣΑΣ straße HATE"},
    {"num": 2, "num2": 3.25, "cat": "teal", "cat2": "l", "text": "emoji 😀 ok_fine ok-fine 2024"},
]


def new_rows(features: list[dict]) -> list[list[Any]]:
    names = [f["name"] for f in features]
    rows = [[record[name] for name in names] for record in records(60, "classification", seed=99)]
    return rows + [[record[name] for name in names] for record in SPECIAL_ROWS]


_trained: dict[tuple[str, str, str], TrainedModel] = {}


def trained(name: str, task: str, mix: str) -> TrainedModel:
    """Each case trained once per session, through the trainer's public entry point."""
    key = (name, task, mix)
    if key not in _trained:
        body = {
            "algorithm": name,
            "task": task,
            "target": "y",
            "features": MIXES[mix],
            "hyperparameters": SMALL.get(name, {}),
            "data": {"records": records(90, task)},
        }
        if "text" in MIXES[mix]:
            body["text_features"] = ["text"]
        _trained[key] = train_model(body)
    return _trained[key]


def pipeline_of(model: TrainedModel) -> Any:
    return joblib.load(io.BytesIO(model.artifact))


def runner_of(model: TrainedModel) -> OnnxRunner:
    metadata = model.metadata
    return OnnxRunner(model.onnx, metadata["features"], metadata["task"], metadata["target"].get("classes"))


def assert_same_outputs(model: TrainedModel, matrix: np.ndarray) -> dict[str, Any]:
    """OnnxRunner (onnxruntime) against the scikit-learn pipeline on `matrix`, by the export's own criteria
    (onnx_export.compare_outputs), and with scikit-learn's types."""
    pipeline, runner = pipeline_of(model), runner_of(model)
    task = model.metadata["task"]
    got, got_proba = runner.outputs(matrix, with_probabilities=True)
    verdict = onnx_export.compare_outputs(pipeline, task, matrix, got, got_proba)
    assert verdict["passed"], verdict
    expected = pipeline.predict(matrix)
    assert got.shape == expected.shape
    if task != "classification":
        assert got.dtype == np.float64
        return verdict
    # The same JSON element types as scikit-learn's labels: str, int or bool.
    assert [type(v) for v in got.tolist()] == [type(v) for v in expected.tolist()]
    assert runner.has_probabilities == hasattr(pipeline, "predict_proba")
    if runner.has_probabilities:
        assert got_proba.dtype == np.float64 and got_proba.shape == (len(matrix), len(pipeline.classes_))
    else:
        assert got_proba is None
    return verdict


# ------------------------------------------------------------------ every algorithm, task and feature mix


@pytest.mark.parametrize(("name", "task", "mix"), CASES, ids=[f"{n}-{t[:3]}-{m}" for n, t, m in CASES])
def test_every_model_is_exported_checked_and_served_like_scikit_learn(name: str, task: str, mix: str) -> None:
    model = trained(name, task, mix)
    serving = model.metadata["serving"]
    assert serving["format"] == "onnx", serving
    assert model.onnx is not None
    assert serving["onnx"]["bytes"] == len(model.onnx)
    assert serving["onnx"]["sha256"] == onnx_export.hashlib.sha256(model.onnx).hexdigest()
    features = model.metadata["features"]
    assert [i["name"] for i in serving["onnx"]["inputs"]] == [f"f{j}" for j in range(len(features))]
    assert [i["feature"] for i in serving["onnx"]["inputs"]] == MIXES[mix]
    outputs = [o["name"] for o in serving["onnx"]["outputs"]]
    if task == "classification":
        assert outputs == (["label"] if name == "ridge" else ["label", "probabilities"])
    else:
        assert outputs == ["variable"]

    parity = serving["parity"]
    assert parity["passed"] and parity["rows"] == model.metadata["training"]["holdout_rows"]
    if task == "classification":
        # Every differing label is on a tied row (equal best probabilities, or equidistant k-th neighbours).
        differing = round((1 - parity["label_agreement"]) * parity["rows"])
        assert differing <= parity["tied_rows_differing"] + (1 - onnx_export.LABEL_AGREEMENT) * parity["rows"]
        if name != "ridge":
            assert parity["max_abs_probability_diff"] <= onnx_export.PROBABILITY_TOLERANCE
    else:
        assert parity["tolerance"]["relative"] == onnx_export.REGRESSION_RTOL
        assert parity["max_abs_diff"] < 1e-3 and parity["max_rel_diff"] < 1e-3  # targets of 0 to 33 here
    json.dumps(model.metadata, allow_nan=False)  # the report is strict JSON

    # onnxruntime on rows the model never saw, and on the training data itself.
    assert_same_outputs(model, rows_to_matrix(new_rows(features), features))
    assert_same_outputs(model, rows_to_matrix([[r[f["name"]] for f in features] for r in records(90, task)], features))


@pytest.mark.parametrize(
    ("params", "mixes"),
    [({}, ("categorical", "mixed")), ({"metric": "manhattan"}, ("categorical", "mixed")), ({"p": 3}, ("numeric",))],
    ids=["euclidean", "manhattan", "minkowski-3"],  # scikit-learn fits minkowski p=3 on dense input only
)
@pytest.mark.parametrize("task", ["classification", "regression"])
def test_knn_metrics_and_tied_neighbours(params: dict, mixes: tuple[str, ...], task: str) -> None:
    """Categories alone make many training rows equidistant: where the k-th neighbour is tied, any choice
    among the tied rows is kNN's answer (scikit-learn's depends on rounding), and the export's must be one."""
    for mix in mixes:
        model = train_model(
            {
                "algorithm": "knn",
                "task": task,
                "target": "y",
                "features": MIXES[mix],
                "hyperparameters": params,
                "data": {"records": records(90, task)},
                **({"text_features": ["text"]} if "text" in MIXES[mix] else {}),
            }
        )
        serving = model.metadata["serving"]
        assert serving["format"] == "onnx", serving
        features = model.metadata["features"]
        verdict = assert_same_outputs(model, rows_to_matrix(new_rows(features), features))
        if mix == "categorical":
            assert verdict.get("neighbour_tied_rows", 0) > 0  # the case this test is about


@pytest.mark.parametrize(
    ("params", "reason"),
    [
        ({"weights": "distance"}, "skl2onnx exports kNN's distance weights as uniform ones (weights 'distance')"),
        ({"metric": "chebyshev"}, "conversion failed: NotImplementedError: metric='chebyshev' is not implemented."),
    ],
)
def test_knn_settings_skl2onnx_gets_wrong_are_served_from_joblib(params: dict, reason: str) -> None:
    body = {"algorithm": "knn", "target": "y", "features": MIXES["numeric"], "hyperparameters": params}
    model = train_model({**body, "data": {"records": records(90, "classification")}})
    assert model.onnx is None
    assert model.metadata["serving"]["format"] == "joblib"
    assert model.metadata["serving"]["reason"] == reason


def test_knn_runs_in_batches_of_the_rows_its_metadata_names() -> None:
    """A kNN export computes a [rows, training rows] distance matrix at once: the runner splits batches."""
    model = trained("knn", "classification", "mixed")
    rows = onnx_export.BATCH_BYTES // (8 * model.metadata["training"]["rows"])
    assert model.metadata["serving"]["onnx"]["batch_rows"] == rows
    runner = runner_of(model)
    assert runner.batch_rows == rows
    assert runner_of(trained("logistic_regression", "classification", "mixed")).batch_rows is None
    features = model.metadata["features"]
    matrix = rows_to_matrix(new_rows(features), features)
    whole = runner.outputs(matrix, with_probabilities=True)
    runner.batch_rows = 7
    split = runner.outputs(matrix, with_probabilities=True)
    assert split[0].tolist() == whole[0].tolist()
    np.testing.assert_array_equal(split[1], whole[1])


def test_every_float64_estimator_runs_in_onnxruntime() -> None:
    """The float64 retry (and naive Bayes' first try) only for estimators whose float64 export onnxruntime
    runs: each converted in float64 and run here."""
    seen = set()
    for name, task, mix in CASES:
        if mix != "mixed":
            continue
        model = trained(name, task, mix)
        pipeline = pipeline_of(model)
        core = onnx_export.algorithms_core(pipeline.named_steps["model"])
        if type(core).__name__ not in onnx_export.FLOAT64_ESTIMATORS:
            continue
        seen.add(type(core).__name__)
        features = model.metadata["features"]
        data = onnx_export.convert(pipeline, features, task, onnx_export.FLOAT64).SerializeToString()
        runner = OnnxRunner(data, features, task, model.metadata["target"].get("classes"))
        matrix = rows_to_matrix(new_rows(features), features)
        labels, proba = runner.outputs(matrix, with_probabilities=True)
        assert onnx_export.compare_outputs(pipeline, task, matrix, labels, proba)["passed"]
    assert seen == onnx_export.FLOAT64_ESTIMATORS


def test_naive_bayes_on_one_hot_columns_is_exported_in_float64() -> None:
    serving = trained("naive_bayes", "classification", "categorical").metadata["serving"]
    assert serving["onnx"]["precision"] == "float64"
    assert trained("logistic_regression", "classification", "mixed").metadata["serving"]["onnx"]["precision"] == (
        "float32"
    )


def test_the_export_holds_no_rare_category_or_word() -> None:
    """Like the joblib artifact: categories and terms of fewer than MIN_GROUP_SIZE training rows are not in it."""
    rows = [
        {
            "c": ["plain", "other"][i % 2] if i % 10 else f"solo-cat-{i}",
            "note": f"common pair{i // 2} solo{i}",
            "y": ["u", "d"][i % 2],
        }
        for i in range(60)
    ]
    model = train_model(
        {"algorithm": "logistic_regression", "target": "y", "text_features": ["note"], "data": {"records": rows}}
    )
    assert model.onnx is not None
    assert b"plain" in model.onnx and b"common" in model.onnx
    assert b"solo-cat" not in model.onnx and b"pair1" not in model.onnx and b"solo7" not in model.onnx


# ------------------------------------------------------------------ labels, probabilities, shapes


@pytest.mark.parametrize(
    ("labels", "kind"), [([0, 1, 2], int), ([True, False], bool), (["no", "yes"], str)], ids=["int", "bool", "str"]
)
@pytest.mark.parametrize("name", ["logistic_regression", "random_forest", "svm"])
def test_labels_have_scikit_learns_types(labels: list, kind: type, name: str) -> None:
    rng = random.Random(1)
    rows = []
    for i in range(80):
        label = labels[i % len(labels)]
        rows.append({"x": rng.gauss(labels.index(label), 0.5), "c": rng.choice(["a", "b"]), "y": label})
    model = train_model(
        {
            "algorithm": name,
            "target": "y",
            "data": {"records": rows},
            **({"hyperparameters": SMALL[name]} if name in SMALL else {}),
        }
    )
    assert model.metadata["serving"]["format"] == "onnx", model.metadata["serving"]
    features = model.metadata["features"]
    matrix = rows_to_matrix([[r["x"], r["c"]] for r in rows], features)
    got, _ = runner_of(model).outputs(matrix, with_probabilities=False)
    assert all(type(v) is kind for v in got.tolist())
    assert_same_outputs(model, matrix)


def test_an_empty_batch_and_probabilities_on_request() -> None:
    model = trained("logistic_regression", "classification", "mixed")
    runner, features = runner_of(model), model.metadata["features"]
    labels, proba = runner.outputs(rows_to_matrix([], features), with_probabilities=True)
    assert labels.shape == (0,) and proba.shape == (0, 3)
    labels, proba = runner.outputs(rows_to_matrix(new_rows(features)[:3], features), with_probabilities=False)
    assert proba is None and len(labels) == 3


def test_a_number_beyond_float32_is_a_value_error_not_infinity() -> None:
    """The predictor turns ValueError into 400 invalid_value, as for scikit-learn's float32 trees."""
    model = trained("random_forest", "classification", "mixed")
    features = model.metadata["features"]
    row = {"num": 1e39, "num2": 1, "cat": "red", "text": "love it"}
    with pytest.raises(ValueError):
        runner_of(model).outputs(rows_to_matrix([[row[f["name"]] for f in features]], features), False)


def test_text_is_lowercased_by_the_runner_not_by_a_locale_dependent_operator() -> None:
    model = trained("logistic_regression", "classification", "text")
    ops = {node.op_type for node in onnx.load_from_string(model.onnx).graph.node}
    assert "Tokenizer" in ops and "StringNormalizer" not in ops
    (text_input,) = model.metadata["serving"]["onnx"]["inputs"]
    assert text_input["lowercase"] is True
    inputs = feeds(np.array([["ÉCOLE İstanbul"]], dtype=object), model.metadata["features"])
    assert inputs["f0"].tolist() == [["ÉCOLE İstanbul".lower()]]


def test_onnx_tokenizer_finds_scikit_learns_words_for_every_assigned_code_point() -> None:
    """The Tokenizer pattern is RE2's spelling of scikit-learn's (?u)\\b\\w\\w+\\b: checked on every code
    point Python's Unicode database assigns, inside a word, between words and doubled."""
    from onnx import TensorProto, helper

    node = helper.make_node(
        "Tokenizer",
        ["x"],
        ["y"],
        domain="com.microsoft",
        mark=0,
        mincharnum=1,
        pad_value="#",
        tokenexp=onnx_export.ONNX_TOKEN_PATTERN,
    )
    graph = helper.make_graph(
        [node],
        "tokenizer",
        [helper.make_tensor_value_info("x", TensorProto.STRING, [None])],
        [helper.make_tensor_value_info("y", TensorProto.STRING, None)],
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 18), helper.make_opsetid("com.microsoft", 1)]
    )
    session = onnxruntime.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    pattern = re.compile(preprocessing.TOKEN_PATTERN)
    assigned = [
        chr(c) for c in range(0x20, 0x110000) if unicodedata.category(chr(c)) not in ("Cn", "Cs") and chr(c) != "#"
    ]
    texts = np.array([f"ab{c}cd {c}{c} x{c}" for c in assigned], dtype=object)
    differing = []
    for start in range(0, len(texts), 50_000):
        chunk = texts[start : start + 50_000]
        (tokens,) = session.run(None, {"x": chunk})
        for text, row in zip(chunk.tolist(), tokens.tolist(), strict=True):
            if sorted(t for t in row if len(t) >= 2) != sorted(pattern.findall(text)):
                differing.append(text)
    assert not differing, [hex(ord(t[2])) for t in differing[:20]]


# ------------------------------------------------------------------ falling back to joblib


def test_a_model_that_does_not_convert_is_served_from_joblib_with_the_reason(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("no converter for this estimator")

    monkeypatch.setattr(onnx_export, "convert", refuse)  # the training's forked children inherit it
    model = train_model({"algorithm": "logistic_regression", "data": {"dataset": "iris"}})
    assert model.onnx is None
    serving = model.metadata["serving"]
    assert serving["format"] == "joblib"
    assert serving["reason"] == "conversion failed: RuntimeError: no converter for this estimator"
    artifact, metadata = train({"algorithm": "logistic_regression", "data": {"dataset": "iris"}})
    assert metadata["serving"]["format"] == "joblib" and artifact  # train() keeps its (artifact, metadata)


def test_a_parity_failure_is_served_from_joblib_with_the_figures(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(onnx_export, "REGRESSION_RTOL", 0.0)
    monkeypatch.setattr(onnx_export, "REGRESSION_ATOL", 0.0)
    model = train_model({"algorithm": "mlp", "data": {"dataset": "diabetes"}, "hyperparameters": {"max_iter": 50}})
    serving = model.metadata["serving"]
    assert model.onnx is None and serving["format"] == "joblib"
    assert serving["reason"].startswith("parity check failed: values differ by up to")
    assert serving["parity"]["passed"] is False and serving["parity"]["max_abs_diff"] > 0


def test_an_export_over_the_size_cap_is_served_from_joblib(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(onnx_export, "MAX_ONNX_BYTES", 2000)
    model = train_model(
        {"algorithm": "random_forest", "data": {"dataset": "iris"}, "hyperparameters": {"n_estimators": 5}}
    )
    assert model.onnx is None
    assert model.metadata["serving"]["reason"].endswith("over the 2,000-byte cap (MAX_ONNX_BYTES)")


def test_an_export_is_stopped_at_its_time_and_the_training_still_succeeds(monkeypatch: pytest.MonkeyPatch) -> None:
    def slow(*args: Any, **kwargs: Any) -> Any:
        time.sleep(60)

    model = trained("logistic_regression", "classification", "numeric")
    features = model.metadata["features"]
    matrix = rows_to_matrix(new_rows(features), features)
    monkeypatch.setattr(onnx_export, "export", slow)
    started = time.monotonic()
    onnx_bytes, report = onnx_export.export_within(pipeline_of(model), features, "classification", matrix, 2.5)
    assert time.monotonic() - started < 5
    assert onnx_bytes is None
    assert report["format"] == "joblib"
    assert report["reason"] == "the ONNX export did not finish within the 1.5 s left"
    report = onnx_export.export_within(pipeline_of(model), features, "classification", matrix, 1.2)[1]
    assert report["reason"] == "no time was left before the training deadline to export the model to ONNX"


def test_the_export_child_survives_openmp_threads_in_its_parent() -> None:
    """The training's child has run kNN with OpenMP threads when it forks the export: the export's child
    runs scikit-learn with one OpenMP thread, or GNU OpenMP would hang it until its time is up."""
    from threadpoolctl import threadpool_limits

    rng = np.random.default_rng(0)
    features = [{"name": f"x{j}", "kind": "numeric"} for j in range(30)]
    X, y = rng.random((4000, 30)), rng.integers(0, 2, 4000)
    algorithm = algorithms.ALGORITHMS["knn"]
    preprocessor = preprocessing.build_preprocessor(features, scale_numeric=True, dense=False, min_group=5)
    pipeline = preprocessing.build_pipeline(
        preprocessor, algorithms.build_estimator(algorithm, "classification", {}, 0)
    ).fit(X, y)
    with threadpool_limits(limits=2, user_api="openmp"):
        pipeline.predict_proba(X[:2000])  # a pool of OpenMP threads in this process
        started = time.monotonic()
        onnx_bytes, report = onnx_export.export_within(pipeline, features, "classification", X[:2000], 20.0)
    assert report["format"] == "onnx" and onnx_bytes, report
    assert time.monotonic() - started < 10


# ------------------------------------------------------------------ the reference implementations


BINARY_ROWS = [[1.0, 2.0], [7.0, None], [12.0, 4.0], [None, None], [3.0, 1.0]]


def binary_model(name: str, hyperparameters: dict) -> TrainedModel:
    rows = [{"x": float(i % 13) + (i % 2), "z": float(i % 5), "y": ["no", "yes"][i % 2]} for i in range(80)]
    return train_model(
        {"algorithm": name, "target": "y", "hyperparameters": hyperparameters, "data": {"records": rows}}
    )


def _reference_and_onnxruntime(proto: Any, inputs: dict[str, np.ndarray]) -> tuple[list, list]:
    from onnx.reference import ReferenceEvaluator

    ours = ReferenceEvaluator(proto, new_ops=list(onnx_export.reference_operators())).run(None, inputs)
    served = onnxruntime.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    return ours, served.run(None, inputs)


def _assert_same(ours: list, served: list) -> None:
    for a, b in zip(ours, served, strict=True):
        if np.asarray(b).dtype.kind == "f":
            np.testing.assert_allclose(np.asarray(a, dtype=np.float64), b, rtol=1e-5, atol=1e-5)
        else:
            assert np.asarray(a).tolist() == np.asarray(b).tolist()


def test_the_parity_checks_operators_compute_what_onnxruntime_computes() -> None:
    """The operators check_parity implements itself (Tokenizer, CDist, tree ensembles, SVMClassifier) give
    onnxruntime's outputs on real exports — including where onnx's own reference does not: two classes
    scored in one column (gradient boosting), string labels of a two-class SVM, three-class SVM coupling."""
    models = [
        trained(name, task, mix)
        for name in ("random_forest", "gradient_boosting", "knn", "svm")
        for task in ("classification", "regression")
        for mix in ("numeric", "mixed")
    ]
    models += [
        binary_model("gradient_boosting", {"n_estimators": 10, "loss": "exponential"}),
        binary_model("gradient_boosting", {"n_estimators": 10}),
        binary_model("random_forest", {"n_estimators": 10}),
        binary_model("svm", {}),
    ]
    for model in models:
        assert model.onnx is not None, model.metadata["serving"]
        features = model.metadata["features"]
        inputs = feeds(rows_to_matrix(new_rows(features) if len(features) > 2 else BINARY_ROWS, features), features)
        _assert_same(*_reference_and_onnxruntime(onnx.load_from_string(model.onnx), inputs))


@pytest.mark.parametrize("weights", [[0.3, 0.8], [-0.7, 0.4], [-0.2, -0.6]], ids=["positive", "mixed", "negative"])
@pytest.mark.parametrize("post_transform", ["NONE", "LOGISTIC"])
@pytest.mark.parametrize("base_values", [None, [0.1]], ids=["no-base", "base"])
def test_one_column_tree_scores_follow_onnxruntime(weights: list, post_transform: str, base_values: Any) -> None:
    from onnx import TensorProto, helper

    attributes = {
        "nodes_treeids": [0, 0, 0],
        "nodes_nodeids": [0, 1, 2],
        "nodes_featureids": [0, 0, 0],
        "nodes_values": [0.5, 0.0, 0.0],
        "nodes_modes": ["BRANCH_LEQ", "LEAF", "LEAF"],
        "nodes_truenodeids": [1, 0, 0],
        "nodes_falsenodeids": [2, 0, 0],
        "class_treeids": [0, 0],
        "class_nodeids": [1, 2],
        "class_ids": [0, 0],
        "class_weights": weights,
        "classlabels_strings": ["no", "yes"],
        "post_transform": post_transform,
        **({"base_values": base_values} if base_values else {}),
    }
    node = helper.make_node(
        "TreeEnsembleClassifier", ["X"], ["label", "probabilities"], domain="ai.onnx.ml", **attributes
    )
    graph = helper.make_graph(
        [node],
        "trees",
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, [None, 1])],
        [
            helper.make_tensor_value_info("label", TensorProto.STRING, [None]),
            helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, [None, 2]),
        ],
    )
    opsets = [helper.make_opsetid("", 18), helper.make_opsetid("ai.onnx.ml", 3)]
    proto = helper.make_model(graph, opset_imports=opsets)
    _assert_same(*_reference_and_onnxruntime(proto, {"X": np.array([[0.0], [1.0], [np.nan]], dtype=np.float32)}))


# ------------------------------------------------------------------ no scikit-learn on the predict path

SCRIPT = """
import json, sys
sys.path.insert(0, {layer!r})
from mlservice.features import rows_to_matrix
from mlservice.serving.onnx_runner import OnnxRunner
metadata = json.load(open({metadata!r}))
runner = OnnxRunner(open({onnx!r}, "rb").read(), metadata["features"], metadata["task"], metadata["target"]["classes"])
labels, probabilities = runner.outputs(rows_to_matrix(json.load(open({rows!r})), metadata["features"]), True)
loaded = sorted({{m.split(".")[0] for m in sys.modules}} & {{"sklearn", "scipy", "joblib", "skl2onnx", "onnx"}})
assert "onnxruntime" in sys.modules
print(json.dumps({{"labels": labels.tolist(), "probabilities": probabilities.tolist(), "loaded": loaded}}))
"""


def test_the_runner_imports_neither_scikit_learn_nor_scipy(tmp_path: Path) -> None:
    model = trained("gradient_boosting", "classification", "mixed")
    features = model.metadata["features"]
    rows = new_rows(features)
    (tmp_path / "model.onnx").write_bytes(model.onnx)
    (tmp_path / "metadata.json").write_text(json.dumps(model.metadata))
    (tmp_path / "rows.json").write_text(json.dumps(rows))
    script = SCRIPT.format(
        layer=str(LAYER),
        metadata=str(tmp_path / "metadata.json"),
        onnx=str(tmp_path / "model.onnx"),
        rows=str(tmp_path / "rows.json"),
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    answer = json.loads(result.stdout.strip().splitlines()[-1])
    assert answer["loaded"] == []
    pipeline = pipeline_of(model)
    matrix = rows_to_matrix(rows, features)
    assert answer["labels"] == pipeline.predict(matrix).tolist()
    assert np.abs(np.asarray(answer["probabilities"]) - pipeline.predict_proba(matrix)).max() <= 1e-4
