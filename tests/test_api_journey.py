"""The whole journey through the deployed handlers: train → list → describe → deploy → predict in every body
format → rollback → undeploy → delete, each call an API Gateway event routed by template.yaml."""

from __future__ import annotations

import math

import pytest

IRIS_ROWS = [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3], [5.9, 2.8, 4.3, 1.3]]
NAMES = ["sepal_length_cm", "sepal_width_cm", "petal_length_cm", "petal_width_cm"]


@pytest.fixture
def fresh_stages(runtime):
    """Stage lookups uncached, so each deploy is visible to the very next request."""
    saved = dict(runtime.substitutions)
    runtime.substitutions["STAGE_CACHE_TTL_SECONDS"] = "0"
    yield
    runtime.substitutions.clear()
    runtime.substitutions.update(saved)


def _check_iris_prediction(body: dict, version: int, stage: str | None) -> None:
    assert body["model"] == {"name": "iris", "version": version, "stage": stage}
    assert body["predictions"] == ["setosa", "virginica", "versicolor"]
    assert body["classes"] == ["setosa", "versicolor", "virginica"]
    for row in body["probabilities"]:
        assert math.isclose(sum(row), 1.0, abs_tol=1e-9)


def test_train_deploy_predict_rollback_undeploy(api, fresh_stages):
    created = api.post(
        "/models/iris/versions",
        {"algorithm": "logistic_regression", "data": {"dataset": "iris"}, "description": "baseline"},
    )
    assert created.status == 201, created.body
    v1 = created.json()
    assert v1["version"] == 1 and v1["name"] == "iris" and v1["task"] == "classification"
    assert v1["metrics"]["accuracy"] >= 0.9
    assert [f["name"] for f in v1["features"]] == NAMES
    assert len(v1["artifact"]["sha256"]) == 64

    assert api.get("/models").json() == {"models": [{"name": "iris", "latest_version": 1, "stages": {}}]}
    assert api.get("/models/iris/versions/1").json() == v1

    deployed = api.put("/models/iris/stages/production", {"version": 1})
    assert deployed.status == 200, deployed.body
    assert deployed.json() == {"stage": "production", "version": 1, "previous_version": None}

    bodies = [
        {"instances": IRIS_ROWS},
        {"instances": [dict(zip(NAMES, row, strict=True)) | {"id": i} for i, row in enumerate(IRIS_ROWS)]},
        {"dataframe_split": {"columns": list(reversed(NAMES)), "data": [list(reversed(r)) for r in IRIS_ROWS]}},
        {"dataframe_records": [dict(zip(NAMES, row, strict=True)) for row in IRIS_ROWS]},
    ]
    for body in bodies:
        response = api.post("/models/iris/predict", body)
        assert response.status == 200, response.body
        _check_iris_prediction(response.json(), 1, "production")

    pinned = api.post("/models/iris/predict", {"instances": IRIS_ROWS}, query={"version": "1"})
    _check_iris_prediction(pinned.json(), 1, None)

    v2 = api.post(
        "/models/iris/versions",
        {"algorithm": "random_forest", "data": {"dataset": "iris"}, "hyperparameters": {"n_estimators": 20}},
    ).json()
    assert v2["version"] == 2
    assert api.put("/models/iris/stages/production", {"version": 2}).json()["previous_version"] == 1
    assert api.post("/models/iris/predict", {"instances": IRIS_ROWS}).json()["model"]["version"] == 2

    described = api.get("/models/iris").json()
    assert described["stages"] == {"production": 2}
    assert [v["version"] for v in described["versions"]] == [1, 2]
    assert [(h["from"], h["to"]) for h in described["stage_history"]["production"]] == [(None, 1), (1, 2)]

    rolled = api.post("/models/iris/stages/production/rollback")
    assert rolled.json() == {"stage": "production", "version": 1, "previous_version": 2}
    _check_iris_prediction(api.post("/models/iris/predict", {"instances": IRIS_ROWS}).json(), 1, "production")

    in_use = api.delete("/models/iris/versions/1")
    assert in_use.status == 409 and in_use.json()["error"]["code"] == "version_in_use"
    assert api.delete("/models/iris/versions/2").status == 204
    assert api.get("/models/iris/versions/2").status == 404

    assert api.delete("/models/iris/stages/production").status == 204
    gone = api.post("/models/iris/predict", {"instances": IRIS_ROWS})
    assert gone.status == 404 and gone.json()["error"]["code"] == "stage_not_deployed"
    assert api.get("/models").json()["models"] == [{"name": "iris", "latest_version": 1, "stages": {}}]


def test_mixed_tabular_data_needs_no_preprocessing(api, fresh_stages):
    records = [
        {
            "age": 20 + i % 40,
            "city": ["paris", "lyon", "nice"][i % 3],
            "note": ["great value", "too slow", None][i % 3],
            "income": None if i % 7 == 0 else 1000 + 37 * i,
            "bought": "yes" if i % 3 == 0 else "no",
        }
        for i in range(90)
    ]
    created = api.post(
        "/models/shop/versions",
        {"algorithm": "random_forest", "data": {"records": records}, "target": "bought", "text_features": ["note"]},
    )
    assert created.status == 201, created.body
    kinds = {f["name"]: f["kind"] for f in created.json()["features"]}
    assert kinds == {"age": "numeric", "city": "categorical", "note": "text", "income": "numeric"}
    api.put("/models/shop/stages/production", {"version": 1})
    response = api.post(
        "/models/shop/predict",
        {
            "instances": [
                {"age": 30, "city": "paris", "note": "great value", "income": None},
                {"age": 41, "city": "marseille", "note": None, "income": 2000},  # an unseen city is ignored
            ]
        },
    )
    assert response.status == 200, response.body
    assert set(response.json()["predictions"]) <= {"yes", "no"}


def test_a_deploy_is_seen_within_the_stage_ttl(api, runtime):
    for _ in range(2):
        api.post("/models/iris/versions", {"algorithm": "logistic_regression", "data": {"dataset": "iris"}})
    api.put("/models/iris/stages/production", {"version": 1})
    assert api.post("/models/iris/predict", {"instances": IRIS_ROWS}).json()["model"]["version"] == 1
    api.put("/models/iris/stages/production", {"version": 2})
    # within the default 5 s TTL the cached stage still answers; with the TTL elapsed the new version serves
    assert api.post("/models/iris/predict", {"instances": IRIS_ROWS}).json()["model"]["version"] == 1
    runtime.substitutions["STAGE_CACHE_TTL_SECONDS"] = "0"
    try:
        assert api.post("/models/iris/predict", {"instances": IRIS_ROWS}).json()["model"]["version"] == 2
    finally:
        del runtime.substitutions["STAGE_CACHE_TTL_SECONDS"]
