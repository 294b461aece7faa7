"""The Open Inference Protocol v2 routes through the deployed handlers: metadata, readiness, inference in
both input layouts, and the protocol's `{"error": "..."}` body for every bad request."""

from __future__ import annotations

import pytest

ROWS = [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]]
NAMES = ["sepal_length_cm", "sepal_width_cm", "petal_length_cm", "petal_width_cm"]


@pytest.fixture
def v2(api, iris_model):
    from mlservice import registry

    registry.publish_version("iris", *iris_model)
    registry.publish_version("iris", *iris_model)
    registry.set_stage("iris", "production", 2)
    return api


def _tensor(data, shape, datatype="FP64", name="input-0"):
    return {"name": name, "shape": shape, "datatype": datatype, "data": data}


def test_health_and_server_metadata(v2):
    assert v2.get("/v2/health/live").json() == {"live": True}
    assert v2.get("/v2/health/ready").json() == {"ready": True}
    meta = v2.get("/v2").json()
    assert meta["name"] == "serverless-ml" and "version" in meta and meta["extensions"] == []


def test_model_metadata_describes_inputs_and_outputs(v2):
    meta = v2.get("/v2/models/iris").json()
    assert meta["name"] == "iris" and meta["versions"] == ["1", "2"] and meta["platform"] == "sklearn"
    assert meta["inputs"] == [{"name": "input-0", "datatype": "FP64", "shape": [-1, 4]}]
    assert meta["outputs"] == [
        {"name": "predict", "datatype": "BYTES", "shape": [-1]},
        {"name": "predict_proba", "datatype": "FP64", "shape": [-1, 3]},
    ]
    assert v2.get("/v2/models/iris/versions/1").status == 200


def test_readiness_follows_the_registry(v2):
    assert v2.get("/v2/models/iris/ready").json() == {"name": "iris", "ready": True}
    assert v2.get("/v2/models/iris/versions/1/ready").status == 200
    missing = v2.get("/v2/models/iris/versions/9/ready")
    assert missing.status == 404 and "9" in missing.json()["error"]
    assert v2.get("/v2/models/ghost/ready").status == 404


@pytest.mark.parametrize(
    "inputs",
    [
        [_tensor([v for r in ROWS for v in r], [2, 4])],
        [_tensor(ROWS, [2, 4])],
        [_tensor([r[i] for r in ROWS], [2], name=n) for i, n in enumerate(NAMES)],
        [_tensor([[r[i]] for r in ROWS], [2, 1], "FP32", name=n) for i, n in enumerate(NAMES)],
    ],
    ids=["flat", "nested", "per-feature", "per-feature-column"],
)
def test_infer_in_either_layout(v2, inputs):
    response = v2.post("/v2/models/iris/infer", {"id": "req-7", "inputs": inputs})
    assert response.status == 200, response.body
    body = response.json()
    assert body["model_name"] == "iris" and body["model_version"] == "2" and body["id"] == "req-7"
    assert body["outputs"] == [{"name": "predict", "datatype": "BYTES", "shape": [2], "data": ["setosa", "virginica"]}]


def test_probabilities_when_asked_and_version_pinning(v2):
    body = v2.post(
        "/v2/models/iris/versions/1/infer", {"inputs": [_tensor(ROWS, [2, 4])], "outputs": [{"name": "predict_proba"}]}
    ).json()
    assert body["model_version"] == "1"
    (proba,) = body["outputs"]
    assert proba["name"] == "predict_proba" and proba["shape"] == [2, 3] and len(proba["data"]) == 6
    assert abs(sum(proba["data"][:3]) - 1) < 1e-9


@pytest.mark.parametrize(
    ("path", "body", "status", "fragment"),
    [
        ("/v2/models/iris/infer", {"inputs": [_tensor([1.0, 2.0, 3.0], [2, 4])]}, 400, "needs 8 elements"),
        ("/v2/models/iris/infer", {"inputs": [_tensor([1.0] * 6, [2, 3])]}, 400, "must be [N, 4]"),
        ("/v2/models/iris/infer", {"inputs": [_tensor([1.0] * 8, [2, 4], "FP99")]}, 400, "unsupported datatype"),
        ("/v2/models/iris/infer", {"inputs": [_tensor(["a"] * 8, [2, 4])]}, 400, "holds numbers"),
        ("/v2/models/iris/infer", {"inputs": [_tensor([1.5] * 8, [2, 4], "INT64")]}, 400, "holds integers"),
        (
            "/v2/models/iris/infer",
            {"inputs": [_tensor([1.0] * 8, [2, 4])], "outputs": [{"name": "logits"}]},
            400,
            "unknown output",
        ),
        ("/v2/models/iris/infer", {"inputs": [_tensor([1.0], [1], name=NAMES[0])]}, 400, "missing input"),
        ("/v2/models/iris/infer", {"inputs": []}, 400, "inputs"),
        ("/v2/models/iris/infer", {"inputs": [{"name": "x", "shape": [1, 4]}]}, 400, "data"),
        ("/v2/models/iris/infer", {"inputs": [_tensor([1.0] * 4 * 10_001, [10_001, 4])]}, 413, "limit"),
        ("/v2/models/ghost/infer", {"inputs": [_tensor([1.0] * 4, [1, 4])]}, 404, "ghost"),
        ("/v2/models/iris/versions/x/infer", {"inputs": [_tensor([1.0] * 4, [1, 4])]}, 400, "version"),
        ("/v2/models/iris/versions/5/infer", {"inputs": [_tensor([1.0] * 4, [1, 4])]}, 404, "version 5"),
        ("/v2/models/Bad!/infer", {"inputs": [_tensor([1.0] * 4, [1, 4])]}, 400, "invalid"),
    ],
)
def test_bad_requests_get_the_protocols_error_body(v2, path, body, status, fragment):
    response = v2.post(path, body)
    assert response.status == status, response.body
    error = response.json()["error"]
    assert isinstance(error, str) and fragment in error


def test_malformed_json_gets_the_protocols_error_body(v2):
    response = v2.post("/v2/models/iris/infer", raw="{not json")
    assert response.status == 400 and isinstance(response.json()["error"], str)
