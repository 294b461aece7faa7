"""Bad input on every route gets the documented 4xx JSON error naming the problem — never a 500, never a
stack trace — and leaves the registry exactly as it was."""

from __future__ import annotations

import json

import pytest
from conftest import s3_snapshot

ROW = [5.1, 3.5, 1.4, 0.2]
NAMES = ["sepal_length_cm", "sepal_width_cm", "petal_length_cm", "petal_width_cm"]


@pytest.fixture
def seeded(api, iris_model):
    """Model iris with versions 1 and 2, production serving 1 and no earlier version to roll back to."""
    from mlservice import registry

    for _ in range(2):
        registry.publish_version("iris", *iris_model)
    registry.set_stage("iris", "production", 1)
    return api


def _case(method, path, body=None, *, raw=None, query=None, status, code, contains=""):
    return pytest.param(method, path, body, raw, query, status, code, contains, id=f"{method} {path} {code}")


CASES = [
    # training
    _case("POST", "/models/new/versions", raw="{", status=400, code="invalid_json"),
    _case("POST", "/models/new/versions", raw='{"algorithm": NaN}', status=400, code="invalid_json", contains="NaN"),
    _case("POST", "/models/new/versions", raw="", status=400, code="invalid_request"),
    _case("POST", "/models/new/versions", [1, 2], status=400, code="invalid_request"),
    _case(
        "POST",
        "/models/new/versions",
        {"data": {"dataset": "iris"}},
        status=400,
        code="invalid_algorithm",
        contains="algorithm is required",
    ),
    _case(
        "POST",
        "/models/new/versions",
        {"algorithm": "magic", "data": {"dataset": "iris"}},
        status=400,
        code="invalid_algorithm",
        contains="magic",
    ),
    _case(
        "POST",
        "/models/new/versions",
        {"algorithm": "ridge", "data": {"dataset": "iris"}, "test_size": "big"},
        status=400,
        code="invalid_test_size",
        contains="0.05 to 0.5",
    ),
    _case(
        "POST",
        "/models/new/versions",
        {"algorithm": "ridge", "data": {"dataset": "iris"}, "algoritm": "x"},
        status=400,
        code="invalid_request",
        contains="algoritm",
    ),
    _case(
        "POST",
        "/models/new/versions",
        {"algorithm": "random_forest", "data": {"dataset": "iris"}, "hyperparameters": {"n_estimators": 10**9}},
        status=400,
        code="invalid_hyperparameter",
        contains="n_estimators",
    ),
    _case(
        "POST",
        "/models/new/versions",
        {"algorithm": "random_forest", "data": {"dataset": "iris"}, "hyperparameters": {"n_jobs": 8}},
        status=400,
        code="invalid_hyperparameter",
        contains="n_jobs",
    ),
    _case(
        "POST",
        "/models/new/versions",
        {"algorithm": "linear_regression", "data": {"dataset": "iris"}, "task": "classification"},
        status=400,
        code="invalid_task",
    ),
    _case(
        "POST",
        "/models/new/versions",
        {"algorithm": "ridge", "data": {"columns": ["a", "y"], "rows": [[1, 2]] * 20}, "target": "nope"},
        status=400,
        code="invalid_target",
    ),
    _case(
        "POST",
        "/models/new/versions",
        raw='{"algorithm": "ridge", "target": "y", "data": {"columns": ["a", "y"], "rows": [[1e999, 2]'
        + "".join(f", [{i}, {2 * i + 1}]" for i in range(20))
        + "]}}",
        status=400,
        code="invalid_value",
        contains="row 0",
    ),
    _case(
        "POST",
        "/models/new/versions",
        {"algorithm": "ridge", "data": {"s3_key": "../secrets.csv"}, "target": "y"},
        status=400,
        code="invalid_data",
    ),
    _case(
        "POST",
        "/models/new/versions",
        {"algorithm": "ridge", "data": {"s3_key": "datasets/none.csv"}, "target": "y"},
        status=404,
        code="dataset_not_found",
    ),
    _case(
        "POST",
        "/models/../versions",
        {"algorithm": "ridge", "data": {"dataset": "iris"}},
        status=400,
        code="invalid_name",
    ),
    _case(
        "POST",
        "/models/" + "x" * 200 + "/versions",
        {"algorithm": "ridge", "data": {"dataset": "iris"}},
        status=400,
        code="invalid_name",
    ),
    _case(
        "POST",
        "/models/modèle/versions",
        {"algorithm": "ridge", "data": {"dataset": "iris"}},
        status=400,
        code="invalid_name",
    ),
    _case(
        "POST",
        "/models/Iris/versions",
        {"algorithm": "ridge", "data": {"dataset": "iris"}},
        status=400,
        code="invalid_name",
    ),
    # registry
    _case("GET", "/models/nope", status=404, code="model_not_found"),
    _case("GET", "/models/iris/versions/9", status=404, code="version_not_found"),
    _case("GET", "/models/iris/versions/abc", status=400, code="invalid_version", contains="'abc'"),
    _case("GET", "/models/iris/versions/0", status=400, code="invalid_version"),
    _case("DELETE", "/models/iris/versions/9", status=404, code="version_not_found"),
    _case("DELETE", "/models/iris/versions/1", status=409, code="version_in_use"),
    _case("PUT", "/models/iris/stages/production", {"version": 9}, status=404, code="version_not_found"),
    _case("PUT", "/models/iris/stages/production", {"version": "one"}, status=400, code="invalid_version"),
    _case("PUT", "/models/iris/stages/production", {"version": "1"}, status=400, code="invalid_version"),
    _case("PUT", "/models/iris/stages/production", {}, status=400, code="invalid_version", contains="version"),
    _case("PUT", "/models/iris/stages/production", {"version": -1}, status=400, code="invalid_version"),
    _case("PUT", "/models/iris/stages/production", {"version": 1, "x": 1}, status=400, code="invalid_request"),
    _case("PUT", "/models/iris/stages/production", raw="nope", status=400, code="invalid_json"),
    _case("PUT", "/models/iris/stages/Prod!", {"version": 1}, status=400, code="invalid_name"),
    _case("PUT", "/models/nope/stages/production", {"version": 1}, status=404, code="model_not_found"),
    _case("DELETE", "/models/nope/versions/1", status=404, code="model_not_found"),
    _case("GET", "/models/nope/versions/1", status=404, code="model_not_found"),
    _case("POST", "/models/nope/stages/production/rollback", status=404, code="model_not_found"),
    _case("POST", "/models/iris/stages/production/rollback", status=409, code="no_previous_version"),
    _case("POST", "/models/iris/stages/staging/rollback", status=404, code="stage_not_found"),
    _case("DELETE", "/models/iris/stages/staging", status=404, code="stage_not_deployed"),
    # prediction
    _case("POST", "/models/iris/predict", raw="[1,", status=400, code="invalid_json"),
    _case("POST", "/models/iris/predict", raw='{"instances": [[Infinity, 1, 2, 3]]}', status=400, code="invalid_json"),
    _case(
        "POST",
        "/models/iris/predict",
        raw='{"instances": [[1e999, 3.5, 1.4, 0.2]]}',
        status=400,
        code="invalid_value",
        contains="sepal_length_cm",
    ),
    _case("POST", "/models/iris/predict", {}, status=400, code="invalid_shape", contains="exactly one"),
    _case(
        "POST",
        "/models/iris/predict",
        {"instances": [ROW], "dataframe_records": [{}]},
        status=400,
        code="invalid_shape",
    ),
    _case("POST", "/models/iris/predict", {"instances": []}, status=400, code="invalid_shape"),
    _case("POST", "/models/iris/predict", {"instances": "rows"}, status=400, code="invalid_shape"),
    _case("POST", "/models/iris/predict", [ROW], status=400, code="invalid_request", contains="JSON object"),
    _case(
        "POST", "/models/iris/predict", {"instances": [ROW, [1, 2]]}, status=400, code="invalid_shape", contains="row 1"
    ),
    _case(
        "POST",
        "/models/iris/predict",
        {"instances": [ROW, [1, "wide", 3, 4]]},
        status=400,
        code="invalid_value",
        contains="row 1, feature 'sepal_width_cm'",
    ),
    _case("POST", "/models/iris/predict", {"instances": [[[1], 2, 3, 4]]}, status=400, code="invalid_value"),
    _case(
        "POST",
        "/models/iris/predict",
        {"instances": [{"sepal_length_cm": 1}]},
        status=400,
        code="missing_features",
        contains="petal_width_cm",
    ),
    _case(
        "POST",
        "/models/iris/predict",
        {"dataframe_split": {"columns": NAMES[:3], "data": [ROW[:3]]}},
        status=400,
        code="missing_features",
        contains="petal_width_cm",
    ),
    _case(
        "POST",
        "/models/iris/predict",
        {"dataframe_split": {"columns": NAMES, "data": [ROW[:3]]}},
        status=400,
        code="invalid_shape",
    ),
    _case("POST", "/models/iris/predict", {"instances": [ROW] * 10_001}, status=413, code="payload_too_large"),
    _case(
        "POST",
        "/models/iris/predict",
        {"instances": [ROW]},
        query={"stage": "staging"},
        status=404,
        code="stage_not_deployed",
    ),
    _case(
        "POST",
        "/models/iris/predict",
        {"instances": [ROW]},
        query={"version": "7"},
        status=404,
        code="version_not_found",
    ),
    _case(
        "POST",
        "/models/iris/predict",
        {"instances": [ROW]},
        query={"version": "x"},
        status=400,
        code="invalid_version",
        contains="'x'",
    ),
    _case(
        "POST",
        "/models/iris/predict",
        {"instances": [ROW]},
        query={"version": "1", "stage": "production"},
        status=400,
        code="invalid_request",
    ),
    _case(
        "POST",
        "/models/iris/predict",
        {"instances": [ROW]},
        query={"stage": "../prod"},
        status=400,
        code="invalid_name",
    ),
    _case("POST", "/models/ghost/predict", {"instances": [ROW]}, status=404, code="model_not_found"),
    _case(
        "POST",
        "/models/iris/predict",
        raw=json.dumps({"instances": [ROW] * 200_000}),
        status=413,
        code="payload_too_large",
    ),
    _case("GET", "/nowhere", status=404, code="route_not_found"),
]


@pytest.mark.parametrize(("method", "path", "body", "raw", "query", "status", "code", "contains"), CASES)
def test_bad_input_gets_a_documented_error_and_changes_nothing(
    seeded, aws, method, path, body, raw, query, status, code, contains
):
    before = s3_snapshot(aws)
    response = seeded.request(method, path, body, raw=raw, query=query)
    assert response.status == status, response.body
    error = response.json()["error"]
    assert error["code"] == code
    assert isinstance(error["message"], str) and error["message"]
    assert contains in error["message"]
    assert "Traceback" not in response.body.decode()
    assert s3_snapshot(aws) == before


def test_form_encoded_content_type_is_still_parsed_as_json(seeded):
    """curl -d sends application/x-www-form-urlencoded unless told otherwise."""
    response = seeded.request(
        "POST",
        "/models/iris/predict",
        raw=json.dumps({"instances": [ROW]}),
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert response.status == 200, response.body
