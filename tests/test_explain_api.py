"""POST /models/{model}/explain through the deployed handlers: the same bodies, limits and stage/version
selection as predict, one additive contribution per input column, the documented errors."""

from __future__ import annotations

import math
from typing import Any

import pytest

NAMES = ["sepal_length_cm", "sepal_width_cm", "petal_length_cm", "petal_width_cm"]
ROWS = [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]]


def _additive(row: dict, tolerance: float) -> None:
    for k, output in enumerate(row["output_value"]):
        total = row["base_value"][k] + sum(c[k] for c in row["contributions"].values())
        assert math.isclose(total, output, abs_tol=tolerance), (total, output)


@pytest.fixture
def flowers(api: Any) -> None:
    for body in (
        {"algorithm": "logistic_regression", "data": {"dataset": "iris"}},
        {"algorithm": "decision_tree", "data": {"dataset": "iris"}},
    ):
        assert api.post("/models/flowers/versions", body).status == 201
    assert api.put("/models/flowers/stages/production", {"version": 1}).status == 200


def test_every_predict_body_format_is_explained_and_adds_up(api: Any, flowers: None) -> None:
    predicted = api.post("/models/flowers/predict", {"instances": ROWS}).json()
    bodies = [
        {"instances": ROWS},
        {"instances": [dict(zip(NAMES, r, strict=True)) for r in ROWS]},
        {"dataframe_split": {"columns": NAMES, "data": ROWS}},
        {"dataframe_records": [dict(zip(NAMES, r, strict=True)) for r in ROWS]},
    ]
    for body in bodies:
        response = api.post("/models/flowers/explain", body)
        assert response.status == 200, response.body
        result = response.json()
        assert result["model"] == {"name": "flowers", "version": 1, "stage": "production"}
        assert result["method"] == "permutation_sampling" and result["output"] == "probability"
        assert result["outputs"] == ["setosa", "versicolor", "virginica"]
        assert [r["prediction"] for r in result["rows"]] == predicted["predictions"]
        for row, probabilities in zip(result["rows"], predicted["probabilities"], strict=True):
            assert list(row["contributions"]) == NAMES
            assert row["output_value"] == pytest.approx(probabilities, abs=1e-6)
            assert set(row["standard_errors"]) == set(NAMES)
            _additive(row, result["tolerance"])


def test_a_pinned_version_and_the_exact_methods(api: Any, flowers: None) -> None:
    tree = api.post("/models/flowers/explain", {"instances": ROWS}, query={"version": "2"}).json()
    assert tree["model"] == {"name": "flowers", "version": 2, "stage": None}
    assert tree["method"] == "tree_path" and tree["evaluations"] == 0
    for row in tree["rows"]:
        _additive(row, tree["tolerance"])
    logit = api.post("/models/flowers/explain", {"instances": ROWS, "output": "decision"}).json()
    assert logit["method"] == "linear" and logit["output"] == "decision"
    for row in logit["rows"]:
        _additive(row, logit["tolerance"])


def test_the_documented_errors(api: Any, flowers: None, runtime: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    cases = [
        ("/models/nope/explain", {"instances": ROWS}, {}, 404, "model_not_found"),
        ("/models/flowers/explain", {"instances": ROWS}, {"stage": "staging"}, 404, "stage_not_deployed"),
        ("/models/flowers/explain", {"instances": ROWS}, {"version": "7"}, 404, "version_not_found"),
        (
            "/models/flowers/explain",
            {"instances": ROWS},
            {"version": "1", "stage": "production"},
            400,
            "invalid_request",
        ),
        ("/models/flowers/explain", {"instances": ROWS, "output": "value"}, {}, 400, "invalid_output"),
        ("/models/flowers/explain", {"instances": ROWS, "output": "logits"}, {}, 400, "invalid_output"),
        ("/models/flowers/explain", {"instances": [[1.0, 2.0]]}, {}, 400, "invalid_shape"),
        ("/models/flowers/explain", {"instances": [{"sepal_length_cm": 1.0}]}, {}, 400, "missing_features"),
        ("/models/flowers/explain", {"instances": [[1.0, 2.0, "x", 4.0]]}, {}, 400, "invalid_value"),
        ("/models/flowers/explain", {"rows": ROWS}, {}, 400, "invalid_request"),
        ("/models/flowers/explain", {"instances": []}, {}, 400, "invalid_shape"),
    ]
    for path, body, query, status, code in cases:
        response = api.post(path, body, query=query)
        assert (response.status, response.json()["error"]["code"]) == (status, code), (body, query, response.body)
    for body in (
        {"instances": [[1, 3, 3, 1.7976931348623157e308]]},  # overflows the model's scaling
        {"instances": [[5.1, 3.5, 1e308, 1e308]]},  # probabilities would not be numbers
        {"instances": [[5.1, 3.5, 1.4, -1e308]], "output": "decision"},  # nor the decision function
    ):
        refused = api.post("/models/flowers/explain", body)
        assert (refused.status, refused.json()["error"]["code"]) == (400, "invalid_value"), (body, refused.body)
    bad_json = api.post("/models/flowers/explain", raw='{"instances": [[NaN, 1, 2, 3]]}')
    assert (bad_json.status, bad_json.json()["error"]["code"]) == (400, "invalid_json")

    monkeypatch.setitem(runtime.substitutions, "MAX_PREDICT_ROWS", "3")
    too_many = api.post("/models/flowers/explain", {"instances": ROWS * 2})
    assert (too_many.status, too_many.json()["error"]["code"]) == (413, "payload_too_large")
    monkeypatch.setitem(runtime.substitutions, "MAX_PREDICT_ROWS", "10000")
    monkeypatch.setitem(runtime.substitutions, "EXPLAIN_MAX_EVALUATIONS", "2000")
    costly = api.post("/models/flowers/explain", {"instances": ROWS * 100})
    assert (costly.status, costly.json()["error"]["code"]) == (400, "explanation_too_expensive")
    assert "rows" in costly.json()["error"]["message"]
