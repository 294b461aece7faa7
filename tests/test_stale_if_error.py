"""A warm predict container keeps serving through an S3 outage from its last copy of the registry, says how old
that copy is, asks S3 again at most once per STAGE_CACHE_TTL_SECONDS (not on every request), and gives up
with 503 once the copy is older than STALE_IF_ERROR_SECONDS."""

from __future__ import annotations

import time

import pytest

from mlservice.errors import StorageUnavailable

ROW = [5.1, 3.5, 1.4, 0.2]


@pytest.fixture
def outage(api, runtime, iris_model, monkeypatch):
    from mlservice import registry

    registry.publish_version("iris", *iris_model)
    registry.set_stage("iris", "production", 1)
    monkeypatch.setitem(runtime.substitutions, "STAGE_CACHE_TTL_SECONDS", "0.5")
    monkeypatch.setitem(runtime.substitutions, "STALE_IF_ERROR_SECONDS", "3")
    assert api.post("/models/iris/predict", {"instances": [ROW]}).status == 200  # warm: model and registry cached
    reads = []

    def unavailable(key, quick=False):
        reads.append(quick)
        raise StorageUnavailable("get_object", "SlowDown")

    monkeypatch.setattr(registry.storage, "get_json", unavailable)
    return api, reads


def test_predictions_go_on_from_the_cached_registry_and_say_so(outage):
    api, reads = outage
    time.sleep(0.6)  # the copy is due for a re-read, which fails
    answers = [api.post("/models/iris/predict", {"instances": [ROW]}) for _ in range(5)]
    assert [a.status for a in answers] == [200] * 5
    assert all(float(a.headers["X-Registry-Stale-Seconds"]) >= 0 for a in answers)
    assert answers[0].json()["predictions"] == ["setosa"]
    assert reads == [True]  # one quick re-read for five requests, not five
    time.sleep(0.6)
    assert api.post("/models/iris/predict", {"instances": [ROW]}).status == 200
    assert reads == [True, True]  # asked again once the TTL passed


def test_after_stale_if_error_seconds_the_outage_is_a_503(outage):
    api, _ = outage
    time.sleep(3.1)
    response = api.post("/models/iris/predict", {"instances": [ROW]})
    assert response.status == 503 and response.json()["error"]["code"] == "storage_unavailable"
    assert int(response.headers["Retry-After"]) > 0
