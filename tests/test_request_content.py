"""Hostile request content gets a documented 4xx naming the problem, on every kind of route, and leaves the
bucket as it was: bodies nested thousands deep, integers of thousands of digits, lone UTF-16 surrogates,
bytes that are not UTF-8 (what tritonclient's binary mode sends), JSON that is not an object, and training
data whose size or shape would make validation itself expensive."""

from __future__ import annotations

import base64
import json

import pytest
from conftest import BUCKET, s3_snapshot

from local.lambda_events import api_event

ROW = [5.1, 3.5, 1.4, 0.2]
DEEP = "[" * 5000 + "]" * 5000
BIG_INT = "9" * 5000
ROUTES = [
    ("POST", "/models/new/versions"),
    ("PUT", "/models/iris/stages/production"),
    ("POST", "/models/iris/predict"),
    ("POST", "/v2/models/iris/infer"),
]


@pytest.fixture
def seeded(api, iris_model):
    from mlservice import registry

    registry.publish_version("iris", *iris_model)
    registry.set_stage("iris", "production", 1)
    return api


def _error(response) -> tuple[int, str, str]:
    """(status, code or None for /v2, message) of an error response."""
    body = response.json()
    if isinstance(body["error"], str):
        return response.status, None, body["error"]
    return response.status, body["error"]["code"], body["error"]["message"]


def _send(api, method: str, path: str, raw: str | bytes, headers: dict | None = None):
    return api.request(method, path, raw=raw, headers=headers)


@pytest.mark.parametrize(("method", "path"), ROUTES, ids=[p for _, p in ROUTES])
@pytest.mark.parametrize(
    ("raw", "code", "fragment"),
    [
        (DEEP, "invalid_json", "nests deeper"),
        ('{"a":' * 40 + "1" + "}" * 40, "invalid_json", "nests deeper"),
        ('{"version": ' + BIG_INT + "}", "invalid_json", "too long"),
        ('{"x": "\\ud800"}', "invalid_encoding", "surrogate"),
        ('{"\\udfff": 1}', "invalid_encoding", "surrogate"),
        (b"\xff\xfe{\x00", "invalid_encoding", "UTF-8"),
    ],
    ids=["deep-array", "deep-object", "5000-digits", "lone-surrogate", "surrogate-key", "not-utf8"],
)
def test_hostile_bodies_get_a_documented_400_and_change_nothing(seeded, aws, method, path, raw, code, fragment):
    before = s3_snapshot(aws)
    response = _send(seeded, method, path, raw)
    status, got_code, message = _error(response)
    assert status == 400, response.body
    assert got_code in (code, None)  # /v2 bodies carry only the message
    assert fragment in message
    assert "Traceback" not in response.body.decode()
    assert s3_snapshot(aws) == before


def test_a_surrogate_pair_is_text_not_an_error(seeded):
    """An escaped emoji is a high and a low surrogate together: valid UTF-16, valid text."""
    response = seeded.post("/models/iris/predict", raw='{"instances": [[5.1, 3.5, 1.4, 0.2]], "x": "\\ud83d\\ude00"}')
    assert response.status == 400 and response.json()["error"]["code"] == "invalid_request"  # unknown field x only


def test_a_json_list_as_the_predict_body_is_a_400(seeded):
    response = seeded.post("/models/iris/predict", [ROW])
    assert response.status == 400
    assert response.json()["error"] == {"code": "invalid_request", "message": response.json()["error"]["message"]}
    assert "JSON object" in response.json()["error"]["message"]


def test_tritonclient_binary_tensors_are_named_in_the_400(seeded, runtime):
    """tritonclient's binary_data=True sends a JSON header followed by raw tensor bytes."""
    header = json.dumps({"inputs": [{"name": "input-0", "shape": [1, 4], "datatype": "FP32"}]}).encode()
    body = header + b"\x00\x00\xa0@\x00\x00`@\xff\xff\xff\xff"
    event = api_event(
        "POST",
        "/v2/models/iris/infer",
        "/v2/models/{model}/infer",
        {"model": "iris"},
        headers={"Inference-Header-Content-Length": [str(len(header))]},
        body=body,
    )
    assert event["isBase64Encoded"]
    response = runtime.invoke("PredictFunction", event)
    assert response["statusCode"] == 400
    message = json.loads(response["body"])["error"]
    assert "binary tensor data extension is not supported" in message


def test_base64_bodies_that_are_utf8_json_are_parsed(seeded, runtime):
    """API Gateway base64-encodes bodies of binary media types; the JSON inside is still the request."""
    event = api_event(
        "POST",
        "/models/iris/predict",
        "/models/{model}/predict",
        {"model": "iris"},
        body=json.dumps({"instances": [ROW]}),
    )
    event["body"], event["isBase64Encoded"] = base64.b64encode(event["body"].encode()).decode(), True
    response = runtime.invoke("PredictFunction", event)
    assert response["statusCode"] == 200, response["body"]


@pytest.mark.parametrize(
    ("data", "target", "fragment"),
    [
        ({"columns": ["a", "y"], "rows": [["\ud800", 1]] * 12}, "y", "surrogate"),
        ({"columns": ["a", "y"], "rows": [[1, "\udc00"]] * 12}, "y", "surrogate"),
        ({"columns": ["\ud800", "y"], "rows": [[1, 1]] * 12}, "y", "surrogate"),
        ({"s3_key": "datasets/\ud800.csv"}, "y", "surrogate"),
    ],
    ids=["category", "label", "column-name", "s3-key"],
)
def test_lone_surrogates_in_training_data_are_invalid_encoding(seeded, aws, data, target, fragment):
    before = s3_snapshot(aws)
    raw = json.dumps({"algorithm": "decision_tree", "data": data, "target": target})  # ensure_ascii: \ud800 escapes
    response = seeded.post("/models/new/versions", raw=raw)
    assert response.status == 400, response.body
    assert response.json()["error"]["code"] == "invalid_encoding"
    assert fragment in response.json()["error"]["message"]
    assert s3_snapshot(aws) == before


def test_a_lone_surrogate_in_an_uploaded_json_lines_dataset_is_invalid_encoding(seeded, aws):
    lines = "".join(json.dumps({"x": i, "y": "\ud800" if i == 5 else "a" if i % 2 else "b"}) + "\n" for i in range(20))
    aws.put_object(Bucket=BUCKET, Key="datasets/odd.jsonl", Body=lines.encode())
    response = seeded.post(
        "/models/odd/versions", {"algorithm": "decision_tree", "data": {"s3_key": "datasets/odd.jsonl"}, "target": "y"}
    )
    assert response.status == 400 and response.json()["error"]["code"] == "invalid_encoding"
    assert "line 6" in response.json()["error"]["message"]


def test_naive_bayes_on_constant_columns_is_a_training_failure_not_a_crash(seeded, aws):
    before = s3_snapshot(aws)
    rows = [[1.0, 2.0, "a" if i % 2 else "b"] for i in range(30)]
    response = seeded.post(
        "/models/flat/versions",
        {"algorithm": "naive_bayes", "data": {"columns": ["x1", "x2", "y"], "rows": rows}, "target": "y"},
    )
    assert response.status == 400, response.body
    assert response.json()["error"]["code"] == "training_failed"
    assert "constant" in response.json()["error"]["message"]
    assert s3_snapshot(aws) == before


def test_a_hundred_thousand_feature_names_are_refused_without_quadratic_work(seeded):
    """Was 128 s before its 400 (list.count per name); every check over names is now a set or dict lookup."""
    names = [f"f{i}" for i in range(100_000)]
    response = seeded.post(
        "/models/wide/versions",
        {
            "algorithm": "ridge",
            "data": {"columns": ["a", "y"], "rows": [[1, 2]] * 20},
            "target": "y",
            "features": names,
        },
    )
    assert response.status == 400 and response.json()["error"]["code"] == "invalid_features"
    repeated = seeded.post(
        "/models/wide/versions",
        {"algorithm": "ridge", "data": {"dataset": "iris"}, "features": [*names[:-1], "f0"]},
    )
    assert repeated.status == 400 and "'f0'" in repeated.json()["error"]["message"]


def test_a_million_column_csv_is_refused_at_its_header(seeded, aws):
    """MAX_TRAIN_COLUMNS is checked when the header is read, before any row is built (was > 400 s)."""
    header = ",".join(f"c{i}" for i in range(1_000_000)) + "\n"
    aws.put_object(Bucket=BUCKET, Key="datasets/wide.csv", Body=(header + ",".join(["1"] * 1_000_000) + "\n").encode())
    response = seeded.post("/models/wide/versions", {"algorithm": "ridge", "data": {"s3_key": "datasets/wide.csv"}})
    assert response.status == 413, response.body
    assert "MAX_TRAIN_COLUMNS" in response.json()["error"]["message"]


def test_a_dataset_over_its_byte_limit_is_refused_before_it_is_downloaded(seeded, aws, monkeypatch):
    monkeypatch.setenv("MAX_DATASET_BYTES", "1000")
    aws.put_object(Bucket=BUCKET, Key="datasets/big.csv", Body=b"a,y\n" + b"1,2\n" * 1000)
    response = seeded.post("/models/big/versions", {"algorithm": "ridge", "data": {"s3_key": "datasets/big.csv"}})
    assert response.status == 413 and "MAX_DATASET_BYTES" in response.json()["error"]["message"]


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"algorithm": "ridge", "data": {"dataset": "iris"}, "cv": "3"}, "invalid_cv"),
        ({"algorithm": "ridge", "data": {"dataset": "iris"}, "task": "clustering"}, "invalid_task"),
        ({"algorithm": "ridge", "data": {"dataset": "iris"}, "random_state": True}, "invalid_random_state"),
        ({"algorithm": "ridge", "data": {"dataset": "iris"}, "test_size": "0.2"}, "invalid_test_size"),
    ],
    ids=["cv-string", "unknown-task", "bool-seed", "string-test-size"],
)
def test_http_and_direct_calls_give_the_same_answer(seeded, body, code):
    """One validation (the pydantic request model) for both ways in: `"cv": "3"` was 201 over HTTP but 400
    when train() was called directly."""
    from mlservice.errors import ServiceError
    from mlservice.training.trainer import train

    response = seeded.post("/models/same/versions", body)
    assert response.status == 400 and response.json()["error"]["code"] == code
    with pytest.raises(ServiceError) as direct:
        train(body)
    assert direct.value.code == code and direct.value.message == response.json()["error"]["message"]


@pytest.mark.parametrize("version", ["x", "0", "-1", "1e3", "99999999999"])
def test_every_bad_version_in_a_path_is_invalid_version(seeded, version):
    for method, path in [("GET", f"/models/iris/versions/{version}"), ("DELETE", f"/models/iris/versions/{version}")]:
        response = seeded.request(method, path)
        assert response.status == 400 and response.json()["error"]["code"] == "invalid_version", (path, response.body)
    response = seeded.post("/models/iris/predict", {"instances": [ROW]}, query={"version": version})
    assert response.json()["error"]["code"] == "invalid_version"
