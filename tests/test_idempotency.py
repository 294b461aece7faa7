"""Idempotency-Key on the mutating routes: a retried request is answered from its first attempt and applied
once; a key reused for another request is refused; and even when the stored response is lost, the registry
recognises the retry by its token."""

from __future__ import annotations

import json
import time

import pytest
from conftest import BUCKET, s3_keys

from local.lambda_events import api_event

TRAIN = {"algorithm": "logistic_regression", "data": {"dataset": "iris"}}


@pytest.fixture
def seeded(api, iris_model):
    """iris versions 1-3, production deployed 1 → 2 → 3."""
    from mlservice import registry

    for version in (1, 2, 3):
        registry.publish_version("iris", *iris_model)
        registry.set_stage("iris", "production", version)
    return api


def _key(value: str) -> dict[str, str]:
    return {"Idempotency-Key": value}


def test_a_retried_training_replays_its_first_response_and_makes_one_version(seeded):
    first = seeded.post("/models/iris/versions", TRAIN, headers=_key("train-1"))
    again = seeded.post("/models/iris/versions", TRAIN, headers=_key("train-1"))
    assert first.status == again.status == 201
    assert again.json() == first.json() and first.json()["version"] == 4
    assert again.headers.get("Idempotent-Replayed") == "true" and "Idempotent-Replayed" not in first.headers
    assert [v["version"] for v in seeded.get("/models/iris").json()["versions"]] == [1, 2, 3, 4]


def test_a_retried_rollback_moves_the_stage_once(seeded):
    first = seeded.post("/models/iris/stages/production/rollback", headers=_key("rb"))
    again = seeded.post("/models/iris/stages/production/rollback", headers=_key("rb"))
    assert first.json() == again.json() == {"stage": "production", "version": 2, "previous_version": 3}
    assert seeded.get("/models/iris").json()["stages"] == {"production": 2}
    assert seeded.post("/models/iris/stages/production/rollback", headers=_key("rb-2")).json()["version"] == 1


def test_a_key_reused_for_another_request_is_422(seeded):
    assert seeded.put("/models/iris/stages/staging", {"version": 1}, headers=_key("k")).status == 200
    for method, path, body in [
        ("PUT", "/models/iris/stages/staging", {"version": 2}),  # another body
        ("PUT", "/models/iris/stages/canary", {"version": 1}),  # another path
        ("DELETE", "/models/iris/stages/staging", None),  # another route
    ]:
        response = seeded.request(method, path, body, headers=_key("k"))
        assert response.status == 422, (path, response.body)
        assert response.json()["error"]["code"] == "idempotency_key_reused"
    assert seeded.get("/models/iris").json()["stages"] == {"production": 3, "staging": 1}


def test_the_same_json_spelled_differently_is_the_same_request(seeded):
    assert seeded.put("/models/iris/stages/qa", raw='{"version":1}', headers=_key("spelling")).status == 200
    again = seeded.put("/models/iris/stages/qa", raw='{ "version" : 1 }', headers=_key("spelling"))
    assert again.status == 200 and again.headers.get("Idempotent-Replayed") == "true"


@pytest.mark.parametrize("value", ["", " ", "x" * 256, "clé", "a b"])
def test_a_malformed_key_is_400(seeded, value):
    response = seeded.put("/models/iris/stages/qa", {"version": 1}, headers=_key(value))
    assert response.status == 400 and response.json()["error"]["code"] == "invalid_idempotency_key"


def test_a_failed_request_is_not_kept_and_runs_again(seeded, iris_model):
    from mlservice import registry

    missing = seeded.put("/models/iris/stages/qa", {"version": 4}, headers=_key("later"))
    assert missing.status == 404
    registry.publish_version("iris", *iris_model)
    assert seeded.put("/models/iris/stages/qa", {"version": 4}, headers=_key("later")).status == 200


def test_a_lost_response_record_still_finds_the_training_by_its_token(seeded, aws):
    """The registry stores the key's token with the version: a retry whose stored response is gone (or was never
    saved: the store failed after the version was published) answers with that version, not a new one."""
    first = seeded.post("/models/iris/versions", TRAIN, headers=_key("lost"))
    for key in [k for k in s3_keys(aws) if k.startswith("idempotency/")]:
        aws.delete_object(Bucket=BUCKET, Key=key)
    again = seeded.post("/models/iris/versions", TRAIN, headers=_key("lost"))
    assert again.status == 201 and again.json()["version"] == first.json()["version"] == 4
    assert seeded.get("/models/iris").json()["latest_version"] == 4


def test_keys_are_scoped_to_the_caller(seeded, runtime):
    """Two clients (API keys) choosing the same key do not see each other's responses."""

    def deploy(api_key_id: str, stage: str) -> dict:
        event = api_event(
            "PUT",
            f"/models/iris/stages/{stage}",
            "/models/{model}/stages/{stage}",
            {"model": "iris", "stage": stage},
            headers={"Idempotency-Key": ["shared"]},
            body=json.dumps({"version": 1}),
        )
        event["requestContext"]["identity"]["apiKeyId"] = api_key_id
        return runtime.invoke("DeployFunction", event)

    assert deploy("client-a", "a")["statusCode"] == 200
    assert deploy("client-b", "b")["statusCode"] == 200  # the same key, another caller, another request
    assert deploy("client-a", "b")["statusCode"] == 422


class _Killed(BaseException):
    """The container dies mid-request (a timeout, a crash): no cleanup code runs."""


def test_a_request_still_running_makes_its_retry_wait_until_its_invocation_ends(seeded, runtime, monkeypatch):
    """Another container is still on the request: its retry gets 409 with Retry-After, not a second run; once
    the first invocation's time is up (it died), the key runs again."""
    from local.lambda_events import LambdaContext
    from mlservice import registry

    def deploy(context=None) -> dict:
        event = api_event(
            "PUT",
            "/models/iris/stages/qa",
            "/models/{model}/stages/{stage}",
            {"model": "iris", "stage": "qa"},
            headers={"Idempotency-Key": ["slow"]},
            body=json.dumps({"version": 1}),
        )
        return runtime.invoke("DeployFunction", event, context)

    def killed(*args, **kwargs):
        raise _Killed

    monkeypatch.setattr(registry, "set_stage", killed)
    with pytest.raises(_Killed):
        deploy(LambdaContext(function_name="DeployFunction", timeout_seconds=1.0))
    monkeypatch.undo()
    busy = deploy()
    assert busy["statusCode"] == 409, busy["body"]
    assert json.loads(busy["body"])["error"]["code"] == "idempotency_key_in_progress"
    headers = {**{k: v[-1] for k, v in (busy.get("multiValueHeaders") or {}).items()}, **(busy.get("headers") or {})}
    assert int(headers["Retry-After"]) > 0
    time.sleep(1.2)  # the dead invocation's time is up
    assert deploy()["statusCode"] == 200
    assert seeded.get("/models/iris").json()["stages"]["qa"] == 1


def _forget_the_stored_responses(aws) -> None:
    """What S3's lifecycle does to idempotency records after IDEMPOTENCY_TTL_SECONDS."""
    for key in [k for k in s3_keys(aws) if k.startswith("idempotency/")]:
        aws.delete_object(Bucket=BUCKET, Key=key)


def test_a_key_reused_for_another_request_after_its_record_expired_runs_that_request(seeded, aws):
    assert seeded.put("/models/iris/stages/qa", {"version": 1}, headers=_key("K")).json()["version"] == 1
    _forget_the_stored_responses(aws)
    again = seeded.put("/models/iris/stages/qa", {"version": 3}, headers=_key("K"))
    assert again.status == 200 and again.json() == {"stage": "qa", "version": 3, "previous_version": 1}
    first = seeded.post("/models/wine/versions", TRAIN | {"data": {"dataset": "wine"}}, headers=_key("T"))
    _forget_the_stored_responses(aws)
    other = seeded.post(
        "/models/wine/versions", {"algorithm": "decision_tree", "data": {"dataset": "wine"}}, headers=_key("T")
    )
    assert other.status == 201 and other.json()["algorithm"] == "decision_tree"
    assert (first.json()["version"], other.json()["version"]) == (1, 2)


def test_a_retried_training_whose_version_was_deleted_since_makes_a_new_one(seeded, aws):
    first = seeded.post("/models/iris/versions", TRAIN, headers=_key("D"))
    assert seeded.delete(f"/models/iris/versions/{first.json()['version']}").status == 204
    _forget_the_stored_responses(aws)
    again = seeded.post("/models/iris/versions", TRAIN, headers=_key("D"))
    assert again.status == 201 and again.json()["version"] == first.json()["version"] + 1
    assert seeded.get(f"/models/iris/versions/{again.json()['version']}").status == 200


def test_predictions_ignore_the_header(seeded):
    """Predict only reads: retrying it is always safe, so no response is stored for it."""
    body = {"instances": [[5.1, 3.5, 1.4, 0.2]]}
    assert seeded.post("/models/iris/predict", body, headers=_key("p")).status == 200
    assert seeded.post("/models/iris/predict", {"instances": [[6.7, 3.0, 5.2, 2.3]]}, headers=_key("p")).status == 200
