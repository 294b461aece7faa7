"""Every registry change records who made it (the IAM principal API Gateway authenticated, the API key id,
or the local server's unauthenticated caller) and the request id, in the version metadata and in the stage
history that GET /models/{model} returns."""

from __future__ import annotations

TRAIN = {"algorithm": "logistic_regression", "data": {"dataset": "iris"}}
ALICE = "arn:aws:iam::123456789012:user/alice"
DEPLOYER = "arn:aws:sts::123456789012:assumed-role/deployer/ci-run-7"


def _who(arn: str) -> dict[str, str]:
    return {"userArn": arn, "user": "AIDAEXAMPLE", "accessKey": "ASIAEXAMPLE"}


def test_versions_and_stage_history_name_the_principal_and_request(api):
    trained = api.post("/models/iris/versions", TRAIN, identity=_who(ALICE))
    assert trained.status == 201
    created_by = trained.json()["created_by"]
    assert created_by["principal"] == ALICE and created_by["request_id"]
    assert api.get("/models/iris/versions/1").json()["created_by"] == created_by
    assert api.get("/models/iris").json()["versions"][0]["created_by"] == created_by

    assert api.put("/models/iris/stages/production", {"version": 1}, identity=_who(DEPLOYER)).status == 200
    assert api.delete("/models/iris/stages/production", identity=_who(ALICE)).status == 204
    assert api.post("/models/iris/stages/production/rollback", identity=_who(DEPLOYER)).status == 200
    history = api.get("/models/iris").json()["stage_history"]["production"]
    assert [(h["action"], h["by"]) for h in history] == [
        ("deploy", DEPLOYER),
        ("undeploy", ALICE),
        ("rollback", DEPLOYER),
    ]
    assert len({h["request_id"] for h in history}) == 3 and all(h["request_id"] for h in history)
    assert created_by["request_id"] not in {h["request_id"] for h in history}


def test_an_api_key_caller_and_the_unauthenticated_local_server_are_named_as_such(api):
    assert (
        api.post("/models/iris/versions", TRAIN, identity={"apiKeyId": "k9abc"}).json()["created_by"]["principal"]
        == "api-key:k9abc"
    )
    assert api.post("/models/iris/versions", TRAIN).json()["created_by"]["principal"] == "local:unauthenticated"


def test_the_caller_cannot_choose_the_recorded_principal(api):
    """Headers are the caller's; the identity is API Gateway's. A header claiming to be someone is ignored."""
    response = api.post("/models/iris/versions", TRAIN, headers={"userArn": ALICE, "X-Amz-User": ALICE})
    assert response.json()["created_by"]["principal"] == "local:unauthenticated"


def test_a_deleted_version_records_who_deleted_it(api, aws):
    import json

    from conftest import BUCKET

    from mlservice import keys

    assert api.post("/models/iris/versions", TRAIN).status == 201
    assert api.delete("/models/iris/versions/1", identity=_who(ALICE)).status == 204
    document = json.loads(aws.get_object(Bucket=BUCKET, Key=keys.registry_key("iris"))["Body"].read())
    assert document["versions"]["1"]["state"] == "deleted"
    assert document["versions"]["1"]["deleted_by"]["principal"] == ALICE
