"""DELETE /models/{model}: every object written for a model, and every stored version of each, is gone
afterwards (checked by listing object versions in a versioned bucket); nothing of another model is touched;
a deployed model is refused unless undeployed; writers still running hold the erasure until they are done."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from conftest import BUCKET, s3_snapshot

from local.template import load_yaml
from mlservice import erasure, keys, registry
from mlservice.errors import ServiceError

TRAIN = {"algorithm": "logistic_regression", "data": {"dataset": "iris"}}
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def versioned(api, aws):
    aws.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
    return api


def _all_versions(s3, prefix: str = "") -> list[tuple[str, str]]:
    pages = s3.get_paginator("list_object_versions").paginate(Bucket=BUCKET, Prefix=prefix)
    return sorted(
        (item["Key"], item["VersionId"])
        for page in pages
        for item in [*page.get("Versions", []), *page.get("DeleteMarkers", [])]
    )


def _populate(api, s3, model: str) -> None:
    """A model with history in every place: two trainings (one keyed), deploys, a deleted version, batch
    inputs, outputs, errors and job state."""
    assert api.post(f"/models/{model}/versions", TRAIN, headers={"Idempotency-Key": f"{model}-1"}).status == 201
    assert api.post(f"/models/{model}/versions", TRAIN).status == 201
    assert api.post(f"/models/{model}/versions", TRAIN).status == 201
    assert api.put(f"/models/{model}/stages/production", {"version": 1}).status == 200
    assert api.put(f"/models/{model}/stages/production", {"version": 2}).status == 200
    assert api.delete(f"/models/{model}/versions/3").status == 204
    for key in (
        f"batch/input/{model}/day1.csv",
        f"batch/input/{model}@production/day2.csv",
        f"batch/output/{model}/day1.csv",
        f"batch/output/{model}/day1.csv.manifest.json",
        f"batch/errors/{model}/day1.csv.errors.jsonl",
        f"batch/state/{model}/{'a' * 32}/plan.json",
    ):
        s3.put_object(Bucket=BUCKET, Key=key, Body=b"rows of " + model.encode())
        s3.put_object(Bucket=BUCKET, Key=key, Body=b"rows again")  # a second stored version
    s3.delete_object(Bucket=BUCKET, Key=f"batch/output/{model}/day1.csv")  # a delete marker over both


def test_erasure_removes_every_object_version_of_the_model_and_nothing_else(versioned, aws):
    _populate(versioned, aws, "iris")
    _populate(versioned, aws, "iris-b")  # a name that starts like it: must survive
    before_other = [v for v in _all_versions(aws) if "iris-b" in v[0]]
    assert any(k.startswith("idempotency/iris/") for k, _ in _all_versions(aws))

    refused = versioned.delete("/models/iris")
    assert refused.status == 409 and refused.json()["error"]["code"] == "model_in_use"
    assert "production" in refused.json()["error"]["message"] and "undeploy=true" in refused.json()["error"]["message"]
    assert versioned.get("/models/iris").json()["stages"] == {"production": 2}

    erased = versioned.delete("/models/iris", query={"undeploy": "true"})
    assert erased.status == 202, erased.body
    report = erased.json()
    assert report["status"] == "erased" and report["undeployed_stages"] == ["production"]
    assert report["object_versions_removed"] == sum(report["removed"].values()) > 20
    assert report["removed"]["batch_inputs"] == 4 and report["removed"]["batch_outputs"] == 5

    left = _all_versions(aws)
    for prefix in keys.erasure_prefixes("iris").values():
        assert [k for k, _ in left if k.startswith(prefix) and not k.startswith(prefix.rstrip("/") + "-b")] == []
    assert [v for v in left if "iris-b" in v[0]] == before_other  # the other model is untouched
    assert versioned.get("/models/iris").status == 404
    assert versioned.post("/models/iris/predict", {"instances": [[1, 2, 3, 4]]}).status == 404
    assert [m["name"] for m in versioned.get("/models").json()["models"]] == ["iris-b"]
    again = versioned.delete("/models/iris")
    assert again.status == 404 and again.json()["error"]["code"] == "model_not_found"
    # The name can be used again, from version 1.
    assert versioned.post("/models/iris/versions", TRAIN).json()["version"] == 1


def test_erasing_an_undeployed_model_needs_no_flag_and_unknown_models_are_404(versioned, aws):
    assert versioned.post("/models/m1/versions", TRAIN).status == 201
    assert versioned.delete("/models/m1").status == 202
    assert _all_versions(aws, "models/m1/") == []
    missing = versioned.delete("/models/never")
    assert missing.status == 404 and missing.json()["error"]["code"] == "model_not_found"


@pytest.mark.parametrize(
    ("path", "query", "code"),
    [
        ("/models/Bad%20Name", None, "invalid_name"),
        ("/models/..", None, "invalid_name"),
        ("/models/iris", {"undeploy": "maybe"}, None),
    ],
)
def test_bad_erasure_requests_are_4xx_and_change_nothing(versioned, aws, path, query, code):
    assert versioned.post("/models/iris/versions", TRAIN).status == 201
    assert versioned.put("/models/iris/stages/production", {"version": 1}).status == 200
    before = s3_snapshot(aws)
    response = versioned.delete(path, query=query)
    assert 400 <= response.status < 500, response.body
    if code:
        assert response.json()["error"]["code"] == code
    assert s3_snapshot(aws) == before


def test_a_training_still_writing_holds_the_erasure_and_cannot_publish(versioned, aws, iris_model, monkeypatch):
    assert versioned.post("/models/iris/versions", TRAIN).status == 201
    reserved = registry._reserve("iris", "op:still-fitting")  # a training between reservation and publish
    first = versioned.delete("/models/iris")
    assert first.status == 202 and first.json()["status"] == "erasing"
    assert first.json()["waiting_for"] == {"trainings": 1, "batch_jobs": 0}
    assert 1 <= int(first.headers["Retry-After"]) <= erasure.WRITER_LIFETIME_SECONDS
    # Already invisible, and closed to new versions and deploys.
    assert versioned.get("/models/iris").status == 404
    refused = versioned.post("/models/iris/versions", TRAIN)
    assert refused.status == 409 and refused.json()["error"]["code"] == "model_being_erased"
    # The training goes on writing its artifact, but can never mark it ready.
    aws.put_object(Bucket=BUCKET, Key=keys.artifact_key("iris", reserved), Body=iris_model[0])
    with pytest.raises(ServiceError) as caught:
        registry.publish_version("iris", *iris_model, token="op:still-fitting")
    assert caught.value.code == "model_being_erased"

    monkeypatch.setattr(erasure, "WRITER_LIFETIME_SECONDS", 0)  # the writer's function has timed out
    final = versioned.delete("/models/iris")
    assert final.status == 202 and final.json()["status"] == "erased"
    assert _all_versions(aws, "models/iris/") == []


def test_a_live_batch_job_holds_the_erasure_until_its_lease_lapses(versioned, aws):
    assert versioned.post("/models/iris/versions", TRAIN).status == 201
    lease_key = f"batch/state/iris/{'b' * 32}/lease.json"
    aws.put_object(Bucket=BUCKET, Key=lease_key, Body=json.dumps({"owner": "x", "expires": time.time() + 30}))
    first = versioned.delete("/models/iris")
    assert first.json()["status"] == "erasing" and first.json()["waiting_for"]["batch_jobs"] == 1
    assert _all_versions(aws, lease_key) != []  # a live job's state is left to it
    aws.put_object(Bucket=BUCKET, Key=lease_key, Body=json.dumps({"owner": "x", "expires": time.time() - 1}))
    assert versioned.delete("/models/iris").json()["status"] == "erased"
    assert _all_versions(aws, "batch/state/iris/") == [] and _all_versions(aws, "models/iris/") == []


def test_an_interrupted_erasure_is_finished_by_the_next_request(versioned, aws, monkeypatch):
    _populate(versioned, aws, "iris")
    calls = {"n": 0}
    original = erasure.storage.delete_versions

    def fail_second(items):
        calls["n"] += 1
        if calls["n"] == 2:
            raise erasure.storage.StorageUnavailable("delete_objects", "InternalError")
        return original(items)

    monkeypatch.setattr(erasure.storage, "delete_versions", fail_second)
    broken = versioned.delete("/models/iris", query={"undeploy": "true"})
    assert broken.status == 503 and broken.headers.get("Retry-After")
    assert versioned.get("/models/iris").status == 404  # invisible from the first step on
    assert versioned.delete("/models/iris").json()["status"] == "erased"
    for prefix in keys.erasure_prefixes("iris").values():
        assert [k for k, _ in _all_versions(aws, prefix) if not k.startswith(prefix.rstrip("/") + "-")] == []


def test_the_writer_lifetime_outlasts_the_train_function():
    timeout = load_yaml(ROOT / "template.yaml")["Resources"]["TrainFunction"]["Properties"]["Timeout"]
    assert timeout < erasure.WRITER_LIFETIME_SECONDS
