"""An artifact made by other scikit-learn, numpy or joblib versions than the serving runtime's is refused at
deploy (409 incompatible_runtime, naming both versions and the fix) and, should it reach a loader anyway, is
never unpickled (500 artifact_incompatible) — including when only scikit-learn's own version stamp inside the
pickle tells."""

from __future__ import annotations

import io
import json

import joblib
import pytest
from conftest import BUCKET, s3_snapshot

from mlservice import keys, registry, runtime


def _publish(iris_model, **environment: str) -> int:
    artifact, metadata = iris_model
    skewed = {**metadata, "environment": {**metadata["environment"], **environment}}
    return registry.publish_version("iris", artifact, skewed)["version"]


def test_the_runtime_versions_are_the_installed_ones():
    import numpy
    import sklearn

    assert runtime.versions() == {
        "scikit-learn": sklearn.__version__,
        "numpy": numpy.__version__,
        "joblib": joblib.__version__,
    }


@pytest.mark.parametrize("library", ["scikit-learn", "numpy", "joblib"])
def test_deploying_a_version_from_another_runtime_is_409_naming_both_versions(api, aws, iris_model, library):
    version = _publish(iris_model, **{library: "0.0.1"})
    before = s3_snapshot(aws)
    response = api.put("/models/iris/stages/production", {"version": version})
    assert response.status == 409, response.body
    error = response.json()["error"]
    assert error["code"] == "incompatible_runtime"
    assert f"{library} 0.0.1" in error["message"] and runtime.versions()[library] in error["message"]
    assert "retrain" in error["message"]
    assert s3_snapshot(aws) == before


def test_a_rollback_onto_a_version_from_another_runtime_is_refused(api, iris_model):
    old = _publish(iris_model, **{"scikit-learn": "1.0.2"})
    current = _publish(iris_model)
    # Deployed when the runtime still matched (the registry is edited to stand for that past).
    assert api.put("/models/iris/stages/production", {"version": current}).status == 200
    document = registry._read("iris")
    document["stages"]["production"]["stack"].insert(0, old)
    registry.atomic.update(keys.registry_key("iris"), lambda _: registry.Change(document), what="test")
    response = api.post("/models/iris/stages/production/rollback")
    assert response.status == 409 and response.json()["error"]["code"] == "incompatible_runtime"
    assert api.get("/models/iris").json()["stages"] == {"production": current}


def _serve_directly(aws, version: int) -> None:
    """Point production at a version without the deploy route's check (as a hand-edited registry would)."""
    document = registry._read("iris")
    document["stages"]["production"] = {"version": version, "stack": [version], "history": []}
    aws.put_object(Bucket=BUCKET, Key=keys.registry_key("iris"), Body=json.dumps(document).encode())


def test_a_loader_never_unpickles_an_artifact_recorded_from_another_runtime(api, aws, iris_model, monkeypatch):
    version = _publish(iris_model, numpy="1.26.4")
    _serve_directly(aws, version)
    monkeypatch.setattr(joblib, "load", lambda *a, **k: pytest.fail("the artifact was unpickled"))
    response = api.post("/models/iris/predict", {"instances": [[5.1, 3.5, 1.4, 0.2]]})
    assert response.status == 500 and response.json()["error"]["code"] == "artifact_incompatible"
    assert "numpy 1.26.4" in response.json()["error"]["message"]


def test_scikit_learns_own_version_warning_is_an_error_not_a_served_model(api, aws, iris_model, monkeypatch):
    """The metadata says this runtime, but the pickle was stamped by another scikit-learn."""
    import sklearn.base

    artifact, metadata = iris_model
    pipeline = joblib.load(io.BytesIO(artifact))
    monkeypatch.setattr(sklearn.base, "__version__", "1.2.0")
    buffer = io.BytesIO()
    joblib.dump(pipeline, buffer)
    monkeypatch.undo()
    version = registry.publish_version("iris", buffer.getvalue(), metadata)["version"]
    _serve_directly(aws, version)
    response = api.post("/models/iris/predict", {"instances": [[5.1, 3.5, 1.4, 0.2]]})
    assert response.status == 500, response.body
    assert response.json()["error"]["code"] == "artifact_incompatible"
    assert "scikit-learn 1.2.0" in response.json()["error"]["message"]
