"""Every file in events/ works against the deployed handlers (as `sam local invoke -e` would use it), in the
order of the story the files tell, each handled by the function template.yaml routes it to."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from local.lambda_events import api_event
from local.template import Template

EVENTS = Path(__file__).resolve().parent.parent / "events"
STORY = [
    "train.json",
    "train.json",
    "list_models.json",
    "create_dataset.json",
    "list_datasets.json",
    "get_dataset.json",
    "complete_dataset.json",
    "describe_model.json",
    "get_version.json",
    "deploy.json",
    "predict.json",
    "predict_records.json",
    "get_openapi.json",
    "docs.json",
    "v2_health_live.json",
    "v2_health_ready.json",
    "v2_server_metadata.json",
    "v2_model_metadata.json",
    "v2_model_version_metadata.json",
    "v2_model_ready.json",
    "v2_model_version_ready.json",
    "v2_infer.json",
    "v2_version_infer.json",
    "explain.json",
    "front_page.json",
    "model_card.json",
    "<deploy version 2>",
    "rollback.json",
    "undeploy.json",
    "delete_version.json",
    "<check the story so far>",
    "delete_model.json",
    "delete_dataset.json",
]
# The dataset id in events/*dataset*.json. The story creates a dataset of its own (create_dataset.json), whose id
# replaces this one in the events after it.
EVENT_DATASET_ID = "3d7f0c2a9b8e4f1d6a5c0b9e8d7f6a5b"


CHECKS: dict[str, Callable[[], None]] = {}


def story_event(name: str) -> dict:
    """An events/ file, or the one event the story builds: deploying version 2 so a rollback has somewhere to go."""
    if name.startswith("<"):
        return api_event(
            "PUT",
            "/models/iris/stages/production",
            "/models/{model}/stages/{stage}",
            {"model": "iris", "stage": "production"},
            body=json.dumps({"version": 2}),
        )
    return json.loads((EVENTS / name).read_text())


def function_for(template: Template, event: dict) -> str:
    """The function template.yaml routes an API event to (the event's resource must be a template route)."""
    found = template.find_route(event["httpMethod"], event["path"])
    assert found, f"{event['httpMethod']} {event['path']} is not a template route"
    route, _ = found
    assert route.resource == event["resource"], f"{event['resource']} is not a template route"
    return route.function


def run_story(template: Template, invoke: Callable[[str, dict], dict], context: Callable[[], str] = str) -> None:
    """Every event of the story, in order, through `invoke` (in process or in a container): each answers 2xx."""
    created: dict[str, str] = {}
    for name in STORY:
        if name in CHECKS:
            CHECKS[name]()
            continue
        if name.startswith("<check"):
            continue
        event = story_event(name)
        if created:
            event = json.loads(json.dumps(event).replace(EVENT_DATASET_ID, created["dataset_id"]))
        response = invoke(function_for(template, event), event)
        assert 200 <= response["statusCode"] < 300, (name, response.get("body"), context())
        if response["statusCode"] != 204 and name not in ("docs.json", "front_page.json", "model_card.json"):
            json.loads(response["body"])
        if name == "create_dataset.json":
            created["dataset_id"] = json.loads(response["body"])["dataset_id"]


def test_the_story_covers_every_event_file():
    assert {p.name for p in EVENTS.glob("*.json") if "httpMethod" in json.loads(p.read_text())} <= set(STORY)


def test_every_event_file_succeeds_in_story_order(api, runtime, aws, monkeypatch):
    def so_far() -> None:
        assert api.get("/models/iris/versions/1").status == 404  # delete_version.json removed it
        described = api.get("/models/iris").json()
        assert described["versions"][0]["version"] == 2
        # The management events are IAM-signed: the principal is in the audit trail.
        principal = "arn:aws:sts::123456789012:assumed-role/mlservice-deployer/alice"
        assert described["versions"][0]["created_by"]["principal"] == principal
        assert {h["by"] for h in described["stage_history"]["production"]} == {principal, "local:unauthenticated"}

    monkeypatch.setitem(CHECKS, "<check the story so far>", so_far)
    run_story(runtime.template, runtime.invoke)
    assert api.get("/models/iris").status == 404  # delete_model.json erased it
    assert aws.list_objects_v2(Bucket="test-models", Prefix="models/iris/").get("KeyCount") == 0
    assert api.get("/datasets").json() == {"datasets": []}  # delete_dataset.json erased the story's dataset
    assert aws.list_objects_v2(Bucket="test-models", Prefix="datasets/").get("KeyCount") == 0
