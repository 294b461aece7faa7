"""GET / and GET /models/{model}/versions/{version}/card through the deployed handlers: what a person sees of
a model, from what training stored (charts' data included), with its provenance from the registry."""

from __future__ import annotations

import itertools
import json
import re
from typing import Any

import pytest

CHARTS_BINARY = {"confusion-matrix", "roc", "pr", "feature-importance", "partial-dependence-0"}
CHARTS_MULTICLASS = {"confusion-matrix", "feature-importance", "partial-dependence-0"}
CHARTS_REGRESSION = {"residuals", "predicted-vs-actual", "feature-importance", "partial-dependence-0"}


def _charts(html: str) -> set[str]:
    return set(re.findall(r'data-chart="([^"]+)"', html))


def _text(response: Any) -> str:
    return response.body.decode() if isinstance(response.body, bytes) else response.body


def _train(api: Any, model: str, body: dict) -> dict:
    created = api.post(f"/models/{model}/versions", body)
    assert created.status == 201, created.body
    return created.json()


@pytest.fixture
def cancer(api: Any) -> dict:
    return _train(
        api,
        "cancer",
        {
            "algorithm": "logistic_regression",
            "data": {"dataset": "breast_cancer"},
            "description": "Tumour <b>triage</b>",
        },
    )


def test_a_binary_classifier_card_holds_every_chart_and_its_provenance(api: Any, cancer: dict) -> None:
    assert api.put("/models/cancer/stages/production", {"version": 1}).status == 200
    response = api.get("/models/cancer/versions/1/card", query={"format": "json"})
    assert response.status == 200, response.body
    card = response.json()
    assert card["model"] == "cancer" and card["version"] == 1 and card["stages"] == ["production"]
    assert card["description"] == "Tumour <b>triage</b>"
    registry = api.get("/models/cancer").json()
    assert card["digests"]["model.joblib"] == cancer["artifact"]["sha256"]
    assert card["digests"]["model.onnx"] == cancer["serving"]["onnx"]["sha256"]
    assert card["digests"]["training data"] == cancer["training"]["sha256"]
    assert [(h["stage"], h["to"]) for h in card["stage_history"]] == [("production", 1)]
    assert card["stage_history"][0]["by"] == registry["stage_history"]["production"][0]["by"]

    evaluation = card["evaluation"]
    assert evaluation == cancer["evaluation"]  # stored at training: the card reads it, never recomputes
    matrix = evaluation["confusion_matrix"]
    assert matrix["labels"] == ["benign", "malignant"] and len(matrix["counts"]) == 2
    holdout = cancer["training"]["holdout_rows"]
    assert sum(c for row in matrix["counts"] for c in row if c is not None) <= holdout
    assert all(c is None or c == 0 or c >= 5 for row in matrix["counts"] for c in row)
    roc = evaluation["roc"]["points"]
    assert roc[0] == {"fpr": 0.0, "tpr": 0.0} and roc[-1] == {"fpr": 1.0, "tpr": 1.0}
    assert all(a["fpr"] <= b["fpr"] and a["tpr"] <= b["tpr"] for a, b in itertools.pairwise(roc))
    assert len(roc) <= 52 and evaluation["roc"]["auc"] == pytest.approx(cancer["metrics"]["roc_auc"])
    assert all(0 <= p["precision"] <= 1 for p in evaluation["pr"]["points"])
    pd = evaluation["partial_dependence"]
    top = [f["feature"] for f in cancer["feature_importance"] if f["feature"] in {p["feature"] for p in pd}]
    assert [p["feature"] for p in pd] == top[: len(pd)] and 1 <= len(pd) <= 3
    for entry in pd:
        assert entry["outputs"] == ["benign", "malignant"] and len(entry["values"]) == len(entry["grid"]) >= 2
        assert all(abs(sum(v) - 1) < 1e-4 for v in entry["values"])  # averaged probabilities

    page = api.get("/models/cancer/versions/1/card")
    assert page.status == 200
    assert page.headers["Content-Type"].startswith("text/html")
    csp = page.headers["Content-Security-Policy"]
    assert "default-src 'none'" in csp and "script-src" not in csp
    html = _text(page)
    assert CHARTS_BINARY | {f"partial-dependence-{i}" for i in range(len(pd))} <= _charts(html)
    assert "Tumour &lt;b&gt;triage&lt;/b&gt;" in html and "<b>triage" not in html
    assert cancer["artifact"]["sha256"] in html


def test_a_multiclass_and_a_regression_card(api: Any) -> None:
    _train(
        api,
        "flowers",
        {"algorithm": "random_forest", "data": {"dataset": "iris"}, "hyperparameters": {"n_estimators": 10}},
    )
    _train(api, "sugar", {"algorithm": "ridge", "data": {"dataset": "diabetes"}})
    flowers = api.get("/models/flowers/versions/1/card", query={"format": "json"}).json()
    assert flowers["evaluation"]["confusion_matrix"]["labels"] == ["setosa", "versicolor", "virginica"]
    assert "roc" not in flowers["evaluation"] and flowers["stages"] == [] and flowers["stage_history"] == []
    html = _text(api.get("/models/flowers/versions/1/card"))
    assert _charts(html) >= CHARTS_MULTICLASS and not {"roc", "pr", "residuals"} & _charts(html)

    sugar = api.get("/models/sugar/versions/1/card", query={"format": "json"}).json()
    residuals = sugar["evaluation"]["residuals"]["bins"]
    assert all(b["count"] is None or b["count"] == 0 or b["count"] >= 5 for b in residuals)
    assert all(a["high"] == b["low"] for a, b in itertools.pairwise(residuals))
    bins = sugar["evaluation"]["predicted_vs_actual"]["bins"]
    assert all(b["rows"] >= 20 for b in bins)
    assert [b["predicted"] for b in bins] == sorted(b["predicted"] for b in bins)
    html = _text(api.get("/models/sugar/versions/1/card"))
    assert _charts(html) >= CHARTS_REGRESSION and "confusion-matrix" not in _charts(html)


def test_the_front_page_lists_models_versions_and_stages_with_links(api: Any) -> None:
    empty = api.get("/")
    assert empty.status == 200 and empty.headers["Content-Type"].startswith("text/html")
    assert "No models yet" in _text(empty) and "Content-Security-Policy" in empty.headers
    _train(api, "flowers", {"algorithm": "logistic_regression", "data": {"dataset": "iris"}})
    _train(
        api, "flowers", {"algorithm": "logistic_regression", "data": {"dataset": "iris"}, "hyperparameters": {"C": 0.5}}
    )
    _train(api, "sugar", {"algorithm": "ridge", "data": {"dataset": "diabetes"}})
    assert api.put("/models/flowers/stages/production", {"version": 2}).status == 200
    assert api.put("/models/flowers/stages/staging", {"version": 1}).status == 200
    html = _text(api.get("/"))
    links = re.findall(r'href="([^"]+)"', html)
    for model, version in (("flowers", 1), ("flowers", 2), ("sugar", 1)):
        assert f"models/{model}/versions/{version}/card" in links
    assert "docs" in links
    assert "production" in html and "staging" in html
    assert not [link for link in links if link.startswith(("http:", "https:", "//"))]


def test_card_errors_are_the_documented_ones(api: Any, cancer: dict) -> None:
    cases = [
        ("/models/nope/versions/1/card", {}, 404, "model_not_found"),
        ("/models/cancer/versions/9/card", {}, 404, "version_not_found"),
        ("/models/cancer/versions/0/card", {}, 400, "invalid_version"),
        ("/models/Bad%20Name/versions/1/card", {}, 400, "invalid_name"),
        ("/models/cancer/versions/1/card", {"format": "xml"}, 400, "invalid_request"),
    ]
    for path, query, status, code in cases:
        response = api.get(path, query=query)
        assert (response.status, response.json()["error"]["code"]) == (status, code), (path, response.body)
    assert api.delete("/models/cancer/versions/1").status == 204
    assert api.get("/models/cancer/versions/1/card").status == 404


def test_the_card_of_the_privacy_dataset_shows_no_rare_value(api: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from test_privacy import TRAIN_BODY, _leaks

    monkeypatch.delenv("MIN_GROUP_SIZE", raising=False)
    assert api.post("/models/people/versions", TRAIN_BODY).status == 201
    for query in ({}, {"format": "json"}):
        body = api.get("/models/people/versions/1/card", query=query).body
        blob = body if isinstance(body, bytes) else body.encode()
        assert not _leaks(blob), _leaks(blob)
        assert b"alice@example.com" in blob  # a frequent value is shown: the check above can fail
    card = json.loads(api.get("/models/people/versions/1/card", query={"format": "json"}).body)
    assert card["evaluation"]["min_group_size"] == 5


def test_the_front_page_without_its_trailing_slash_redirects_so_relative_links_stay_in_the_stage(
    api: Any, runtime: Any
) -> None:
    from pathlib import Path

    event = json.loads((Path(__file__).resolve().parent.parent / "events" / "front_page.json").read_text())
    assert runtime.invoke("DeployFunction", event)["statusCode"] == 200  # at /v1/
    event["requestContext"]["path"] = "/v1"
    response = runtime.invoke("DeployFunction", event)
    assert response["statusCode"] == 308
    headers = response.get("headers") or {}
    location = headers.get("Location") or (response.get("multiValueHeaders") or {}).get("Location", [None])[0]
    assert location == "/v1/"
