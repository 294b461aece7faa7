"""The registry's guarantees: visible-when-complete versions, numbers never shared, stages never losing an
update, a complete history, no stage on a missing version, retried writes applied once, and artifacts that are
refused when their bytes do not match the digest the registry recorded."""

from __future__ import annotations

import io
import json
import pickle
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import joblib
import pytest
from conftest import BUCKET, s3_keys
from sklearn.linear_model import LogisticRegression

from mlservice import keys, registry
from mlservice.errors import ServiceError
from mlservice.serving.model_cache import cache

FEATURES = [{"name": "x", "kind": "numeric"}]


def _artifact() -> bytes:
    buffer = io.BytesIO()
    joblib.dump(LogisticRegression().fit([[0.0], [1.0], [2.0], [3.0]], [0, 0, 1, 1]), buffer)
    return buffer.getvalue()


def _publish(model: str = "m") -> dict:
    return registry.publish_version(
        model,
        _artifact(),
        {
            "algorithm": "logistic_regression",
            "task": "classification",
            "features": FEATURES,
            "target": {"name": "y", "classes": [0, 1]},
        },
    )


def test_versions_are_numbered_from_one_and_visible_with_complete_metadata(aws):
    first, second = _publish(), _publish()
    assert (first["version"], second["version"]) == (1, 2)
    meta = registry.get_version("m", 2)
    assert meta["artifact"]["key"] == keys.artifact_key("m", 2)
    assert meta["artifact"]["bytes"] == len(aws.get_object(Bucket=BUCKET, Key=meta["artifact"]["key"])["Body"].read())
    assert [v["version"] for v in registry.describe_model("m")["versions"]] == [1, 2]
    entry = json.loads(aws.get_object(Bucket=BUCKET, Key=keys.registry_key("m"))["Body"].read())["versions"]["2"]
    assert (entry["state"], entry["sha256"]) == ("ready", meta["artifact"]["sha256"])


def test_an_interrupted_training_is_invisible_and_its_number_never_reused(aws, monkeypatch):
    _publish()

    original = registry.storage.put_bytes

    def crash(key, *args, **kwargs):
        if key.endswith("model.joblib"):
            raise RuntimeError("killed while writing the artifact")
        return original(key, *args, **kwargs)

    monkeypatch.setattr(registry.storage, "put_bytes", crash)  # number reserved, artifact never written
    with pytest.raises(RuntimeError):
        _publish()
    monkeypatch.undo()
    assert [v["version"] for v in registry.describe_model("m")["versions"]] == [1]
    with pytest.raises(ServiceError) as error:
        registry.get_version("m", 2)
    assert error.value.code == "version_not_found"
    with pytest.raises(ServiceError) as error:
        registry.set_stage("m", "production", 2)
    assert error.value.code == "version_not_found"
    assert _publish()["version"] == 3


def test_a_retried_training_finds_its_version_instead_of_making_another(aws):
    first = registry.publish_version("m", _artifact(), {"features": FEATURES}, token="key:abc")
    again = registry.publish_version("m", _artifact(), {"features": FEATURES}, token="key:abc")
    assert first["version"] == again["version"] == 1
    assert [v["version"] for v in registry.describe_model("m")["versions"]] == [1]


def test_parallel_trainings_get_distinct_versions(aws, serialized_moto):
    with ThreadPoolExecutor(max_workers=8) as pool:
        versions = list(pool.map(lambda _: _publish()["version"], range(12)))
    assert sorted(versions) == list(range(1, 13))
    assert [v["version"] for v in registry.describe_model("m")["versions"]] == list(range(1, 13))


def test_parallel_deploys_leave_a_consistent_stage_and_complete_history(aws, serialized_moto):
    for _ in range(4):
        _publish()
    targets = [1, 2, 3, 4] * 4
    with ThreadPoolExecutor(max_workers=8) as pool:
        changes = list(pool.map(lambda v: registry.set_stage("m", "production", v), targets))
    document = registry.load("m")
    stage = document["stages"]["production"]
    # every change that was not a no-op is in the history, chained: each entry starts where the last ended
    recorded = [c for c in changes if c["previous_version"] != c["version"]]
    assert len(stage["history"]) == len(recorded)
    for before, after in zip(stage["history"], stage["history"][1:], strict=False):
        assert after["from"] == before["to"]
    assert stage["history"][-1]["to"] == stage["version"] == registry.resolve_stage(document, "production")


def test_deploy_rollback_undeploy(aws):
    for _ in range(3):
        _publish()
    assert registry.set_stage("m", "production", 1) == {"stage": "production", "version": 1, "previous_version": None}
    assert registry.set_stage("m", "production", 3)["previous_version"] == 1
    assert registry.rollback_stage("m", "production") == {"stage": "production", "version": 1, "previous_version": 3}
    with pytest.raises(ServiceError) as error:
        registry.rollback_stage("m", "production")
    assert (error.value.status, error.value.code) == (409, "no_previous_version")
    registry.clear_stage("m", "production")
    with pytest.raises(ServiceError) as error:
        registry.resolve_stage(registry.load("m"), "production")
    assert error.value.code == "stage_not_deployed"
    assert registry.rollback_stage("m", "production")["version"] == 1  # undo the undeploy
    history = registry.describe_model("m")["stage_history"]["production"]
    assert [(h["from"], h["to"], h["action"]) for h in history] == [
        (None, 1, "deploy"),
        (1, 3, "deploy"),
        (3, 1, "rollback"),
        (1, None, "undeploy"),
        (None, 1, "rollback"),
    ]


def test_a_deployed_version_cannot_be_deleted(aws):
    _publish()
    registry.set_stage("m", "staging", 1)
    with pytest.raises(ServiceError) as error:
        registry.delete_version("m", 1)
    assert (error.value.status, error.value.code) == (409, "version_in_use")
    assert "staging" in error.value.message
    registry.clear_stage("m", "staging")
    registry.delete_version("m", 1)
    with pytest.raises(ServiceError):
        registry.get_version("m", 1)
    assert not [k for k in s3_keys(aws) if k.startswith("models/m/versions/")]  # artifact and metadata gone


def test_a_write_that_landed_but_lost_its_reply_is_applied_once(aws, monkeypatch):
    """botocore retries a PutObject whose reply was lost; the retry meets its own first attempt's change."""
    for _ in range(4):
        _publish()
    for version in (1, 2, 3, 4):
        registry.set_stage("m", "production", version)
    original = registry.storage.put_json
    calls = {"n": 0}

    def lands_then_loses_reply(key, document, **kwargs):
        original(key, document, **kwargs)
        calls["n"] += 1
        if calls["n"] == 1:
            raise registry.storage.StorageUnavailable("put_object", "ConnectionClosedError")
        return "etag"

    monkeypatch.setattr(registry.storage, "put_json", lands_then_loses_reply)
    assert registry.rollback_stage("m", "production", token="t1") == {
        "stage": "production",
        "version": 3,
        "previous_version": 4,
    }
    monkeypatch.undo()
    assert registry.describe_model("m")["stages"] == {"production": 3}  # 4 → 3, not 4 → 3 → 2
    assert registry.rollback_stage("m", "production", token="t1")["version"] == 3  # the same request, again


def test_the_newest_tokens_are_remembered_and_old_ones_forgotten(aws, monkeypatch):
    """The document keeps the newest 100 tokens by time (its stored keys are sorted, so not in time order) and
    none older than IDEMPOTENCY_TTL_SECONDS."""
    for _ in range(3):
        _publish()
    for i in range(120):
        registry.set_stage("m", "production", 1 + i % 3, token=f"req:{i:03d}")
    moved = registry.set_stage("m", "production", 1, token="key:feedface")
    registry.set_stage("m", "production", 2, token="zzz:other-writer")
    assert registry.set_stage("m", "production", 1, token="key:feedface") == moved  # recognised, not redone
    assert registry.load("m")["stages"]["production"]["version"] == 2
    applied = registry.load("m")["applied"]
    assert len(applied) == 100 and "req:000" not in applied and "req:119" in applied
    monkeypatch.setenv("IDEMPOTENCY_TTL_SECONDS", "0")
    assert registry.set_stage("m", "production", 1, token="key:feedface")["previous_version"] == 2  # forgotten


def test_no_document_with_a_stage_on_a_missing_version_is_ever_written():
    document = {
        "model": "m",
        "next_version": 3,
        "versions": {"1": {"state": "deleted"}, "2": {"state": "ready"}},
        "stages": {"production": {"version": 1}},
    }
    with pytest.raises(RuntimeError, match="invariant"):
        registry.check(document)
    document["stages"]["production"]["version"] = 2
    registry.check(document)


class _Exploit:
    """A pickle that, if ever loaded, leaves a file behind."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.write_text, (self.marker, "unpickled"))


def test_a_tampered_artifact_is_refused_and_never_unpickled(aws, tmp_path):
    meta = _publish()
    marker = tmp_path / "pwned"
    aws.put_object(Bucket=BUCKET, Key=meta["artifact"]["key"], Body=pickle.dumps(_Exploit(marker)))
    cache.clear()
    with pytest.raises(ServiceError) as error:
        cache.select("m", None, 1)
    assert (error.value.status, error.value.code) == (500, "artifact_integrity")
    assert not marker.exists()


@pytest.mark.parametrize("name", ["../x", "A", "-x", "x" * 65, "modèle", "a/b", "", "a b"])
def test_hostile_names_are_rejected_before_any_key_is_built(aws, name):
    with pytest.raises(ServiceError) as error:
        registry.publish_version(name, b"x", {})
    assert (error.value.status, error.value.code) == (400, "invalid_name")
    assert "Contents" not in aws.list_objects_v2(Bucket=BUCKET)
