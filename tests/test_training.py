"""Training: every algorithm, every data source, the metadata contract, and the documented 400/404/413s.

The artifact is also loaded in a fresh interpreter that never imports mlservice.training, the way the
serving functions load it.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import math
import os
import random
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pytest
from moto import mock_aws

from mlservice import storage
from mlservice.errors import ServiceError
from mlservice.features import rows_to_matrix
from mlservice.training.trainer import train

BUCKET = "training-tests"
LAYER = Path(__file__).resolve().parents[1] / "layers" / "mlservice"
CLASSIFIERS = [
    "ridge",
    "logistic_regression",
    "svm",
    "knn",
    "naive_bayes",
    "decision_tree",
    "random_forest",
    "gradient_boosting",
    "mlp",
]
REGRESSORS = [
    "linear_regression",
    "ridge",
    "lasso",
    "svm",
    "knn",
    "decision_tree",
    "random_forest",
    "gradient_boosting",
    "mlp",
]
# Small ensembles where the number of trees is not what a test is about.
FAST = {"random_forest": {"n_estimators": 25}, "gradient_boosting": {"n_estimators": 30}}
METADATA_FIELDS = {
    "algorithm",
    "task",
    "hyperparameters",
    "features",
    "target",
    "metrics",
    "feature_importance",
    "training",
    "environment",
    "description",
}


@pytest.fixture(autouse=True)
def _settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODEL_BUCKET", BUCKET)
    for name in ("MAX_TRAIN_ROWS", "MAX_TRAIN_CELLS"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def s3(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """An empty moto bucket; objects are written through storage, like the service writes them."""
    storage.reset_client()
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    for name in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_REGION"):
        monkeypatch.delenv(name, raising=False)
    with mock_aws():
        storage.client().create_bucket(Bucket=BUCKET)
        yield
    storage.reset_client()


def error_of(request: Any) -> ServiceError:
    with pytest.raises(ServiceError) as caught:
        train(request)
    return caught.value


def mixed_records(n: int = 80, seed: int = 0) -> list[dict]:
    """Numbers (some as strings), categories (one numeric-looking), free text, and every spelling of missing."""
    rng = random.Random(seed)
    words = {"good": "great excellent love it", "bad": "awful terrible hate it"}
    records = []
    for _ in range(n):
        label = rng.choice(["good", "bad"])
        records.append(
            {
                "age": rng.choice([None, rng.randint(18, 80), str(rng.randint(18, 80)), "NA"]),
                "color": rng.choice(["red", "green", None, "", 3]),
                "review": f"{words[label]} {rng.choice(['meh', 'fine'])}" if rng.random() > 0.1 else None,
                "score": round(rng.random() * 10 + (4 if label == "good" else 0), 3),
                "label": label,
            }
        )
    records[3]["label"] = None  # dropped, and counted
    records[7]["label"] = None
    return records


def numeric_rows(n: int = 60, seed: int = 1) -> tuple[list[str], list[list[Any]]]:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 3))
    y = (X[:, 0] + 0.5 * X[:, 1] > 0).astype(int)
    return ["a", "b", "c", "y"], [[*map(float, x), int(t)] for x, t in zip(X, y, strict=True)]


def assert_json_safe(metadata: dict) -> None:
    json.dumps(metadata, allow_nan=False)  # raises on NaN/inf and on non-JSON types


# ---------------------------------------------------------------- algorithms


@pytest.mark.parametrize("algorithm", CLASSIFIERS)
def test_every_classifier_learns_iris(algorithm: str) -> None:
    artifact, metadata = train(
        {"algorithm": algorithm, "data": {"dataset": "iris"}, "hyperparameters": FAST.get(algorithm, {})}
    )
    assert_json_safe(metadata)
    assert metadata["task"] == "classification"
    assert metadata["target"]["classes"] == ["setosa", "versicolor", "virginica"]
    # RidgeClassifier is a least-squares linear classifier: versicolor is not linearly separable for it, and
    # it scores 0.8-0.97 on iris depending on the split, so it gets a lower bar than the others.
    assert metadata["metrics"]["accuracy"] >= (0.75 if algorithm == "ridge" else 0.9)
    assert set(metadata["metrics"]) >= {
        "accuracy",
        "balanced_accuracy",
        "f1_macro",
        "precision_macro",
        "recall_macro",
        "log_loss",
        "roc_auc",
    }
    pipeline = joblib.load(io.BytesIO(artifact))
    matrix = rows_to_matrix([[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]], metadata["features"])
    assert matrix.dtype == np.float64
    assert pipeline.predict(matrix).tolist() == ["setosa", "virginica"]
    if algorithm == "ridge":
        assert metadata["metrics"]["log_loss"] is None  # no probabilities: undefined, not invented
    else:
        assert pipeline.predict_proba(matrix).shape == (2, 3)
        assert 0 <= metadata["metrics"]["log_loss"] < 1.5
        assert metadata["metrics"]["roc_auc"] >= 0.9


@pytest.mark.parametrize("algorithm", REGRESSORS)
def test_every_regressor_fits_diabetes(algorithm: str) -> None:
    artifact, metadata = train(
        {"algorithm": algorithm, "data": {"dataset": "diabetes"}, "hyperparameters": FAST.get(algorithm, {})}
    )
    assert_json_safe(metadata)
    assert metadata["task"] == "regression"
    assert "classes" not in metadata["target"]
    scores = metadata["metrics"]
    assert set(scores) == {"r2", "rmse", "mae"}
    assert all(isinstance(scores[k], float) and math.isfinite(scores[k]) for k in scores)
    assert 0 < scores["mae"] <= scores["rmse"] < 150  # the target's standard deviation is about 77
    assert scores["r2"] > (0.3 if algorithm in ("linear_regression", "ridge", "lasso") else -0.5)
    pipeline = joblib.load(io.BytesIO(artifact))
    assert np.isfinite(pipeline.predict(np.zeros((2, 10)))).all()


def test_hyperparameters_are_applied_and_reported_with_the_service_settings() -> None:
    _, metadata = train(
        {
            "algorithm": "random_forest",
            "data": {"dataset": "iris"},
            "hyperparameters": {"n_estimators": 7, "max_depth": 3, "criterion": "entropy", "class_weight": "balanced"},
            "random_state": 42,
        }
    )
    params = metadata["hyperparameters"]
    assert params["n_estimators"] == 7 and params["max_depth"] == 3 and params["criterion"] == "entropy"
    assert params["class_weight"] == "balanced"
    assert params["n_jobs"] == 1 and params["random_state"] == 42
    assert params["min_samples_leaf"] == 5  # the default 1, raised to MIN_GROUP_SIZE, is reported too
    assert any("min_samples_leaf raised from the default to 5" in w for w in metadata["training"]["warnings"])


def test_elastic_net_logistic_regression_gets_the_saga_solver() -> None:
    _, metadata = train(
        {"algorithm": "logistic_regression", "data": {"dataset": "iris"}, "hyperparameters": {"l1_ratio": 0.5, "C": 10}}
    )
    assert metadata["hyperparameters"]["solver"] == "saga"
    assert metadata["hyperparameters"]["l1_ratio"] == 0.5


def test_mlp_hidden_layer_sizes_list_is_accepted() -> None:
    _, metadata = train(
        {
            "algorithm": "mlp",
            "data": {"dataset": "iris"},
            "hyperparameters": {"hidden_layer_sizes": [16, 8], "max_iter": 300},
        }
    )
    assert metadata["hyperparameters"]["hidden_layer_sizes"] == [16, 8]


def test_training_is_deterministic_for_a_random_state() -> None:
    request = {"algorithm": "decision_tree", "data": {"dataset": "wine"}, "random_state": 7}
    first, second = train(request)[1], train(request)[1]
    assert first["metrics"] == second["metrics"]
    assert first["training"]["sha256"] == second["training"]["sha256"]


# ---------------------------------------------------------------- metadata


def test_metadata_has_every_documented_field() -> None:
    _, metadata = train(
        {
            "algorithm": "logistic_regression",
            "data": {"records": mixed_records()},
            "target": "label",
            "text_features": ["review"],
            "cv": 3,
            "test_size": 0.25,
            "random_state": 3,
            "description": "reviews → sentiment",
        }
    )
    assert_json_safe(metadata)
    assert set(metadata) >= METADATA_FIELDS
    assert not set(metadata) & {"name", "version", "artifact", "created_at"}  # the registry adds those
    assert metadata["algorithm"] == "logistic_regression"
    assert metadata["description"] == "reviews → sentiment"
    assert metadata["target"]["name"] == "label" and metadata["target"]["classes"] == ["bad", "good"]
    assert sum(metadata["target"]["class_counts"]) == metadata["training"]["rows"] == 58

    by_name = {f["name"]: f for f in metadata["features"]}
    assert [f["name"] for f in metadata["features"]] == ["age", "color", "review", "score"]
    assert {n: f["kind"] for n, f in by_name.items()} == {
        "age": "numeric",
        "color": "categorical",
        "review": "text",
        "score": "numeric",
    }
    age = by_name["age"]
    assert age["missing"] > 0 and not set(age) & {"min", "max", "mean"}  # percentiles only, never extremes
    assert 18 <= age["percentiles"]["p25"] <= age["percentiles"]["p50"] <= age["percentiles"]["p75"] <= 80
    color = by_name["color"]
    # 3 and "3" are one category; "" is missing, a category of its own since at least 5 rows miss a value
    assert set(color["categories"]) == {"red", "green", "3", ""}
    assert color["missing"] >= 5 and color["distinct"] == 3
    assert min(color["category_counts"]) >= 5 and sum(color["category_counts"]) == metadata["training"]["rows"]
    assert by_name["review"]["missing"] > 0

    scores = metadata["metrics"]
    assert scores["cv_metric"] == "accuracy" and scores["cv_folds"] == 3
    assert 0 <= scores["cv_mean"] <= 1 and scores["cv_std"] >= 0
    importance = metadata["feature_importance"]
    assert {item["feature"] for item in importance} == set(by_name)
    means = [item["importance_mean"] for item in importance]
    assert means == sorted(means, reverse=True)
    assert importance[0]["feature"] == "review"

    training = metadata["training"]
    assert training["rows"] + training["holdout_rows"] == 78
    assert training["holdout_rows"] == 20  # ceil(0.25 × 78)
    assert training["dropped_rows_missing_target"] == 2
    assert len(training["sha256"]) == 64 and training["seconds"] >= 0
    assert set(metadata["environment"]) == {"python", "scikit-learn", "numpy", "joblib"}


def test_sha256_is_of_the_canonical_json_of_the_training_table() -> None:
    columns, rows = numeric_rows(20)
    rows[5][3] = None  # a dropped row is not part of the training table
    _, metadata = train({"algorithm": "naive_bayes", "data": {"columns": columns, "rows": rows}, "target": "y"})
    kept = [row for row in rows if row[3] is not None]
    canonical = json.dumps({"columns": columns, "rows": kept}, separators=(",", ":"), ensure_ascii=False)
    assert metadata["training"]["sha256"] == hashlib.sha256(canonical.encode()).hexdigest()


def test_metrics_stay_strict_json_when_undefined() -> None:
    # 10 rows with a 0.05 holdout: one holdout row, so R² and the importances' spread are undefined.
    rows = [[float(i), float(i) * 2.5 + (i % 3)] for i in range(10)]
    _, metadata = train(
        {
            "algorithm": "linear_regression",
            "data": {"columns": ["x", "y"], "rows": rows},
            "target": "y",
            "test_size": 0.05,
        }
    )
    assert_json_safe(metadata)
    assert metadata["training"]["holdout_rows"] == 1
    assert metadata["metrics"]["r2"] is None
    assert metadata["metrics"]["rmse"] is not None


# ---------------------------------------------------------------- encoding shared with serving


def test_mixed_records_predict_on_rows_to_matrix_with_unknowns_and_nulls() -> None:
    artifact, metadata = train(
        {
            "algorithm": "random_forest",
            "data": {"records": mixed_records()},
            "target": "label",
            "text_features": ["review"],
            "hyperparameters": {"n_estimators": 20},
        }
    )
    pipeline = joblib.load(io.BytesIO(artifact))
    rows = [
        [None, "purple", "love it, great", 12.5],  # unknown category, missing number
        ["33", None, None, None],  # numeric string, every other value missing
        ["NA", "", "awful", "1.5"],
    ]
    matrix = rows_to_matrix(rows, metadata["features"])
    assert matrix.dtype == object
    assert pipeline.predict(matrix).tolist()[0] == "good"
    proba = pipeline.predict_proba(matrix)
    assert proba.shape == (3, 2) and np.allclose(proba.sum(axis=1), 1)
    assert list(pipeline.classes_) == metadata["target"]["classes"]


@pytest.mark.parametrize("algorithm", ["naive_bayes", "gradient_boosting", "svm", "knn", "mlp", "ridge"])
def test_mixed_features_train_with_each_preprocessing_path(algorithm: str) -> None:
    artifact, metadata = train(
        {
            "algorithm": algorithm,
            "data": {"records": mixed_records()},
            "target": "label",
            "text_features": ["review"],
            "hyperparameters": FAST.get(algorithm, {}),
        }
    )
    assert metadata["metrics"]["accuracy"] >= 0.7
    pipeline = joblib.load(io.BytesIO(artifact))
    assert len(pipeline.predict(rows_to_matrix([[40, "blue", "hate it", 2.0]], metadata["features"]))) == 1


def test_regression_on_mixed_features_with_string_numbers() -> None:
    rng = random.Random(4)
    records = []
    for _ in range(60):
        size, city = rng.uniform(30, 200), rng.choice(["paris", "lyon", "nice"])
        price = size * (3 if city == "paris" else 1.5) + rng.uniform(-5, 5)
        records.append({"size": f"{size:.1f}", "city": city, "price": f"{price:.2f}"})
    _, metadata = train({"algorithm": "ridge", "data": {"records": records}, "target": "price"})
    assert metadata["task"] == "regression"  # numeric strings are numbers, with many distinct values
    assert metadata["metrics"]["r2"] > 0.8
    assert metadata["hyperparameters"]["alpha"] == 1.0


def test_integer_labels_are_classes_and_stay_integers() -> None:
    columns, rows = numeric_rows()
    _, metadata = train({"algorithm": "logistic_regression", "data": {"columns": columns, "rows": rows}, "target": "y"})
    assert metadata["task"] == "classification"
    assert metadata["target"]["classes"] == [0, 1]


def test_a_class_with_one_member_disables_stratification(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MIN_GROUP_SIZE", "1")  # a class this rare is otherwise refused (tests/test_privacy.py)
    columns, rows = numeric_rows(40)
    rows[0][3] = 2  # a third class seen once
    _, metadata = train({"algorithm": "decision_tree", "data": {"columns": columns, "rows": rows}, "target": "y"})
    assert metadata["training"]["stratified"] is False
    assert_json_safe(metadata)


# ---------------------------------------------------------------- data sources


def test_columns_and_rows_with_csv_like_strings() -> None:
    columns, rows = numeric_rows()
    as_text = [[str(v) for v in row] for row in rows]
    as_text[2][0] = ""  # missing number
    _, metadata = train({"algorithm": "knn", "data": {"columns": columns, "rows": as_text}, "target": "y"})
    assert [f["kind"] for f in metadata["features"]] == ["numeric"] * 3
    assert metadata["target"]["classes"] == [0, 1]
    assert metadata["training"]["source"] == {"type": "inline", "format": "columns"}


def test_features_select_and_order_columns() -> None:
    _, metadata = train(
        {"algorithm": "naive_bayes", "data": {"dataset": "iris"}, "features": ["petal_width_cm", "petal_length_cm"]}
    )
    assert [f["name"] for f in metadata["features"]] == ["petal_width_cm", "petal_length_cm"]
    assert metadata["metrics"]["accuracy"] >= 0.9


def _csv_bytes(records: list[dict]) -> bytes:
    names = list(records[0])
    lines = [",".join(names)]
    for record in records:
        lines.append(",".join("" if record[n] is None else f'"{record[n]}"' for n in names))
    return ("\n".join(lines) + "\n").encode()


def _jsonl_bytes(records: list[dict]) -> bytes:
    return "".join(json.dumps(r) + "\n" for r in records).encode()


@pytest.mark.parametrize(
    "key", ["datasets/reviews.csv", "datasets/reviews.jsonl", "datasets/a/reviews.csv.gz", "datasets/reviews.jsonl.gz"]
)
@pytest.mark.usefixtures("s3")
def test_s3_datasets(key: str) -> None:
    records = mixed_records()
    body = _csv_bytes(records) if ".csv" in key else _jsonl_bytes(records)
    if key.endswith(".gz"):
        body = gzip.compress(body)
    storage.put_bytes(key, body)
    artifact, metadata = train(
        {"algorithm": "logistic_regression", "data": {"s3_key": key}, "target": "label", "text_features": ["review"]}
    )
    assert metadata["training"]["source"]["s3_key"] == key
    assert metadata["training"]["dropped_rows_missing_target"] == 2
    assert metadata["target"]["classes"] == ["bad", "good"]
    kinds = {f["name"]: f["kind"] for f in metadata["features"]}
    assert kinds == {"age": "numeric", "color": "categorical", "review": "text", "score": "numeric"}
    pipeline = joblib.load(io.BytesIO(artifact))
    assert pipeline.predict(rows_to_matrix([["41", "red", "terrible", "1.0"]], metadata["features"])).tolist() == [
        "bad"
    ]


@pytest.mark.usefixtures("s3")
def test_s3_csv_with_bom_crlf_and_quoted_newlines() -> None:
    columns, rows = numeric_rows(30)
    lines = ['"note","' + '","'.join(columns) + '"']
    lines += [f'"line one\nline two",{",".join(str(v) for v in row)}' for row in rows]
    storage.put_bytes("datasets/x.csv", ("\ufeff" + "\r\n".join(lines) + "\r\n").encode())
    _, metadata = train(
        {"algorithm": "naive_bayes", "data": {"s3_key": "datasets/x.csv"}, "target": "y", "features": ["a", "b", "c"]}
    )
    assert metadata["training"]["rows"] + metadata["training"]["holdout_rows"] == 30


@pytest.mark.usefixtures("s3")
def test_s3_dataset_not_found() -> None:
    error = error_of({"algorithm": "knn", "data": {"s3_key": "datasets/missing.csv"}, "target": "y"})
    assert (error.status, error.code) == (404, "dataset_not_found")
    assert "datasets/missing.csv" in error.message


@pytest.mark.parametrize(
    ("key", "body", "fragment"),
    [
        ("datasets/latin1.csv", "a,y\nélan,1\n".encode("latin-1"), "UTF-8"),
        ("datasets/broken.csv.gz", b"not gzip at all", "gzip"),
        ("datasets/bad.jsonl", b'{"a": 1}\n{"a": \n', "line 2"),
        ("datasets/ragged.csv", b"a,b,y\n1,2,3\n1,2\n", "line 3"),
        ("datasets/empty.csv", b"", "header"),
    ],
)
@pytest.mark.usefixtures("s3")
def test_s3_unreadable_files_are_400(key: str, body: bytes, fragment: str) -> None:
    storage.put_bytes(key, body)
    error = error_of({"algorithm": "knn", "data": {"s3_key": key}, "target": "y"})
    assert (error.status, error.code) == (400, "invalid_data")
    assert fragment in error.message


@pytest.mark.parametrize(
    "key", ["models/m/versions/0000000001/model.joblib", "datasets/../x.csv", "datasets/x.parquet"]
)
def test_s3_keys_outside_datasets_are_refused(key: str) -> None:
    error = error_of({"algorithm": "knn", "data": {"s3_key": key}, "target": "y"})
    assert (error.status, error.code) == (400, "invalid_data")


@pytest.mark.parametrize(
    ("dataset", "first_feature", "classes"),
    [
        ("iris", "sepal_length_cm", ["setosa", "versicolor", "virginica"]),
        ("wine", "alcohol", ["class_0", "class_1", "class_2"]),
        ("breast_cancer", "mean_radius", ["benign", "malignant"]),
        ("digits", "pixel_0_0", list(range(10))),
        ("diabetes", "age", None),
    ],
)
def test_bundled_datasets(dataset: str, first_feature: str, classes: list | None) -> None:
    algorithm = "naive_bayes" if classes else "linear_regression"
    _, metadata = train({"algorithm": algorithm, "data": {"dataset": dataset}})
    names = [f["name"] for f in metadata["features"]]
    assert names[0] == first_feature and "target" not in names
    assert all(name == name.lower() and " " not in name and "(" not in name for name in names)
    assert metadata["target"]["name"] == "target"
    assert metadata["target"].get("classes") == classes
    assert metadata["training"]["source"] == {"type": "dataset", "dataset": dataset}
    if dataset == "wine":
        assert "od280_od315_of_diluted_wines" in names


def test_bundled_dataset_with_another_target_column() -> None:
    _, metadata = train({"algorithm": "ridge", "data": {"dataset": "iris"}, "target": "petal_width_cm"})
    assert metadata["task"] == "regression"
    assert "target" in [f["name"] for f in metadata["features"]]  # the species is now a categorical feature
    assert metadata["metrics"]["r2"] > 0.8


# ---------------------------------------------------------------- artifact in a serving-like process


def test_artifact_loads_and_predicts_without_the_training_package(tmp_path: Path) -> None:
    mixed, mixed_meta = train(
        {"algorithm": "svm", "data": {"records": mixed_records()}, "target": "label", "text_features": ["review"]}
    )
    numeric, numeric_meta = train(
        {"algorithm": "gradient_boosting", "data": {"dataset": "iris"}, "hyperparameters": {"n_estimators": 20}}
    )
    for name, artifact, metadata in (("mixed", mixed, mixed_meta), ("numeric", numeric, numeric_meta)):
        (tmp_path / f"{name}.joblib").write_bytes(artifact)
        (tmp_path / f"{name}.json").write_text(json.dumps(metadata))
    script = """
import json, sys
from collections.abc import Iterator
from pathlib import Path
import joblib
from mlservice.features import rows_to_matrix
folder = Path(sys.argv[1])
out = {}
for name, rows in (("mixed", [[None, "purple", "love it", 9.0]]), ("numeric", [[5.1, 3.5, 1.4, 0.2]])):
    metadata = json.loads((folder / f"{name}.json").read_text())
    pipeline = joblib.load(folder / f"{name}.joblib")
    matrix = rows_to_matrix(rows, metadata["features"])
    out[name] = {"prediction": pipeline.predict(matrix).tolist(), "proba": pipeline.predict_proba(matrix).tolist()}
out["training_imported"] = any(m.startswith("mlservice.training") for m in sys.modules)
print(json.dumps(out))
"""
    env = {**os.environ, "PYTHONPATH": str(LAYER)}
    done = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path)], capture_output=True, text=True, env=env, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["training_imported"] is False
    assert result["mixed"]["prediction"] == ["good"] and len(result["mixed"]["proba"][0]) == 2
    assert result["numeric"]["prediction"] == ["setosa"] and len(result["numeric"]["proba"][0]) == 3


# ---------------------------------------------------------------- refusals


def _inline(n: int = 60, **changes: Any) -> dict:
    columns, rows = numeric_rows(n)
    request: dict[str, Any] = {"algorithm": "knn", "data": {"columns": columns, "rows": rows}, "target": "y"}
    request.update(changes)
    return request


def _with_cell(row: int, column: int, value: Any, **changes: Any) -> dict:
    request = _inline(**changes)
    request["data"]["rows"][row][column] = value
    return request


IRIS = {"dataset": "iris"}


@pytest.mark.parametrize(
    ("request_body", "code", "fragments"),
    [
        (["not", "an", "object"], "invalid_request", ["JSON object"]),
        ({"data": IRIS}, "invalid_algorithm", ["algorithm is required"]),
        ({"algorithm": "xgboost", "data": IRIS}, "invalid_algorithm", ["'xgboost'", "random_forest"]),
        ({"algorithm": "knn", "data": IRIS, "epochs": 3}, "invalid_request", ["'epochs'"]),
        ({"algorithm": "knn", "data": IRIS, "task": "clustering"}, "invalid_task", ["'clustering'"]),
        (
            {"algorithm": "linear_regression", "data": IRIS, "task": "classification"},
            "invalid_task",
            ["linear_regression", "regression only"],
        ),
        (
            {"algorithm": "naive_bayes", "data": {"dataset": "diabetes"}},
            "invalid_task",
            ["naive_bayes", "classification only", "regression"],
        ),
        ({"algorithm": "lasso", "data": IRIS}, "invalid_task", ["lasso", "regression only"]),
        (
            {"algorithm": "random_forest", "data": IRIS, "hyperparameters": {"n_trees": 5}},
            "invalid_hyperparameter",
            ["'n_trees'", "allowed", "n_estimators"],
        ),
        (
            {"algorithm": "random_forest", "data": IRIS, "hyperparameters": {"n_estimators": 100000}},
            "invalid_hyperparameter",
            ["'n_estimators'", "from 1 to 500", "100000"],
        ),
        (
            {"algorithm": "random_forest", "data": IRIS, "hyperparameters": {"n_estimators": True}},
            "invalid_hyperparameter",
            ["'n_estimators'"],
        ),
        (
            {"algorithm": "decision_tree", "data": IRIS, "hyperparameters": {"max_depth": "deep"}},
            "invalid_hyperparameter",
            ["'max_depth'", "null"],
        ),
        ({"algorithm": "svm", "data": IRIS, "hyperparameters": {"C": 0}}, "invalid_hyperparameter", ["'C'", "(0"]),
        (
            {"algorithm": "mlp", "data": IRIS, "hyperparameters": {"hidden_layer_sizes": [10, 0]}},
            "invalid_hyperparameter",
            ["'hidden_layer_sizes'", "1 to 1024"],
        ),
        (
            {"algorithm": "mlp", "data": IRIS, "hyperparameters": {"max_iter": 100000}},
            "invalid_hyperparameter",
            ["'max_iter'", "5000"],
        ),
        (
            {"algorithm": "decision_tree", "data": IRIS, "hyperparameters": {"criterion": "squared_error"}},
            "invalid_hyperparameter",
            ["'criterion'", "gini"],
        ),
        (
            {"algorithm": "ridge", "data": {"dataset": "diabetes"}, "hyperparameters": {"class_weight": "balanced"}},
            "invalid_hyperparameter",
            ["'class_weight'", "regression"],
        ),
        (
            {"algorithm": "random_forest", "data": IRIS, "hyperparameters": {"n_jobs": 4}},
            "invalid_hyperparameter",
            ["'n_jobs'", "one core"],
        ),
        (
            {"algorithm": "random_forest", "data": IRIS, "hyperparameters": {"random_state": 4}},
            "invalid_hyperparameter",
            ["random_state", "top-level"],
        ),
        (
            {"algorithm": "mlp", "data": IRIS, "hyperparameters": {"warm_start": True}},
            "invalid_hyperparameter",
            ["'warm_start'"],
        ),
        (
            {"algorithm": "logistic_regression", "data": IRIS, "hyperparameters": {"l1_ratio": 1.0, "solver": "lbfgs"}},
            "invalid_hyperparameter",
            ["saga"],
        ),
        ({"algorithm": "knn", "data": IRIS, "hyperparameters": "fast"}, "invalid_hyperparameter", ["object"]),
        ({"algorithm": "knn", "data": {"dataset": "iris", "records": []}}, "invalid_data", ["exactly one"]),
        ({"algorithm": "knn", "data": {}}, "invalid_data", ["exactly one"]),
        ({"algorithm": "knn", "data": {"columns": ["a"]}, "target": "a"}, "invalid_data", ["data.rows"]),
        ({"algorithm": "knn", "data": {"dataset": "mnist"}}, "invalid_data", ["'mnist'", "iris"]),
        ({"algorithm": "knn", "data": {"records": [{"a": 1}, 5]}, "target": "a"}, "invalid_data", ["data.records[1]"]),
        ({"algorithm": "knn"}, "invalid_data", ["data is required"]),
        ({"algorithm": "knn", "data": IRIS, "test_size": 0.9}, "invalid_test_size", ["0.05", "0.5"]),
        ({"algorithm": "knn", "data": IRIS, "cv": 1}, "invalid_cv", ["2", "20"]),
        ({"algorithm": "knn", "data": IRIS, "random_state": -1}, "invalid_random_state", ["random_state"]),
        ({"algorithm": "knn", "data": IRIS, "description": "x" * 1001}, "invalid_description", ["1000"]),
        (
            {"algorithm": "knn", "data": IRIS, "features": ["petal_width_cm", "wingspan"]},
            "invalid_features",
            ["'wingspan'", "petal_length_cm"],
        ),
        ({"algorithm": "knn", "data": IRIS, "features": ["target"]}, "invalid_features", ["'target'"]),
        ({"algorithm": "knn", "data": IRIS, "features": ["a", "a"]}, "invalid_features", ["'a'"]),
        (
            {"algorithm": "knn", "data": IRIS, "features": ["sepal_width_cm"], "text_features": ["sepal_length_cm"]},
            "invalid_features",
            ["'sepal_length_cm'"],
        ),
        ({"algorithm": "knn", "data": IRIS, "target": "species"}, "invalid_target", ["'species'", "sepal_length_cm"]),
        ({"algorithm": "knn", "data": IRIS, "task": "regression"}, "invalid_target", ["numeric", "'setosa'"]),
    ],
)
def test_invalid_requests_are_400(request_body: Any, code: str, fragments: list[str]) -> None:
    error = error_of(request_body)
    assert (error.status, error.code) == (400, code), error.message
    for fragment in fragments:
        assert fragment in error.message


@pytest.mark.parametrize(
    ("request_body", "code", "fragments"),
    [
        (_inline(target=None), "invalid_target", ["target is required"]),
        (_inline(target="label"), "invalid_target", ["'label'", "'a'"]),
        (_with_cell(4, 1, float("nan")), "invalid_value", ["row 4", "'b'", "null"]),
        (_with_cell(6, 2, float("inf")), "invalid_value", ["row 6", "'c'"]),
        (_with_cell(2, 3, float("nan")), "invalid_target", ["row 2", "'y'"]),
        (_with_cell(3, 0, {"nested": 1}), "invalid_value", ["row 3", "'a'"]),
        (_with_cell(1, 3, 0.5, task="classification"), "invalid_target", ["non-integer", "0.5"]),
        (_inline(hyperparameters={"n_neighbors": 200}), "invalid_hyperparameter", ["n_neighbors", "rows"]),
        # 30 training rows; with 20 folds a fold's model is fitted on 28
        (
            _inline(hyperparameters={"n_neighbors": 29}, cv=20, test_size=0.5),
            "invalid_hyperparameter",
            ["n_neighbors 29", "28 rows"],
        ),
        (_inline(20, cv=20, test_size=0.5, algorithm="naive_bayes"), "invalid_cv", ["exceeds", "10 training rows"]),
    ],
)
def test_invalid_data_is_400(request_body: dict, code: str, fragments: list[str]) -> None:
    error = error_of(request_body)
    assert (error.status, error.code) == (400, code), error.message
    for fragment in fragments:
        assert fragment in error.message


def test_rows_of_the_wrong_length_are_400() -> None:
    request = _inline()
    request["data"]["rows"][5] = [1.0, 2.0]
    error = error_of(request)
    assert (error.code, "data.rows[5]" in error.message) == ("invalid_data", True)


def test_too_few_rows_after_dropping_missing_targets() -> None:
    columns, rows = numeric_rows(12)
    for row in rows[:4]:
        row[3] = None
    error = error_of({"algorithm": "knn", "data": {"columns": columns, "rows": rows}, "target": "y"})
    assert (error.status, error.code) == (400, "invalid_data")
    assert "at least 10" in error.message and "4 dropped" in error.message


def test_a_single_class_is_400() -> None:
    columns, rows = numeric_rows()
    for row in rows:
        row[3] = "same"
    error = error_of({"algorithm": "knn", "data": {"columns": columns, "rows": rows}, "target": "y"})
    assert (error.status, error.code) == (400, "invalid_target")
    assert "two classes" in error.message


def test_a_text_feature_without_words_is_400() -> None:
    records = mixed_records()
    for record in records:
        record["review"] = "!"
    error = error_of({"algorithm": "knn", "data": {"records": records}, "target": "label", "text_features": ["review"]})
    assert (error.status, error.code) == (400, "invalid_features")
    assert "'review'" in error.message


def test_too_many_rows_is_413(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MAX_TRAIN_ROWS", "100")
    error = error_of({"algorithm": "knn", "data": IRIS})
    assert (error.status, error.code) == (413, "payload_too_large")
    assert "100 rows" in error.message
    error = error_of({"algorithm": "knn", "data": {"records": mixed_records(101)}, "target": "label"})
    assert error.status == 413
    assert train({"algorithm": "knn", "data": {"records": mixed_records(100)}, "target": "label"})[1]


def test_too_many_cells_is_413(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MAX_TRAIN_CELLS", "100")
    error = error_of(_inline())  # 60 rows × 4 columns
    assert (error.status, error.code) == (413, "payload_too_large")
    assert "cells" in error.message


@pytest.mark.usefixtures("s3")
def test_too_many_rows_in_s3_csv_is_413(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MAX_TRAIN_ROWS", "20")
    storage.put_bytes("datasets/big.csv", _csv_bytes(mixed_records(50)))
    error = error_of({"algorithm": "knn", "data": {"s3_key": "datasets/big.csv"}, "target": "label"})
    assert (error.status, error.code) == (413, "payload_too_large")
