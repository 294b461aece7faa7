"""Asynchronous training on moto: POST with "async" (or over the request's budget) queues the training, the
train worker is driven with the queued messages as Lambda's SQS event source would, and the version goes
queued → training → ready or failed. Redelivered messages, a worker that crashes mid-training, one that keeps
crashing, and a training whose data is wrong all end in exactly one outcome, published at most once."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any

import pytest
from conftest import BUCKET

from local.lambda_events import sqs_event

BODY = {"algorithm": "logistic_regression", "data": {"dataset": "iris"}, "async": True}


@pytest.fixture
def queue(api: Any, aws: Any, runtime: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict]:
    import boto3

    sqs = boto3.client("sqs", region_name="us-east-1")
    url = sqs.create_queue(QueueName="train-queue")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    monkeypatch.setitem(runtime.substitutions, "TrainQueue", url)
    yield {"sqs": sqs, "url": url, "arn": arn}


def _messages(queue: dict) -> list[dict]:
    found = queue["sqs"].receive_message(QueueUrl=queue["url"], MaxNumberOfMessages=10, WaitTimeSeconds=0)
    return found.get("Messages", [])


def _work(runtime: Any, queue: dict, message: dict) -> dict:
    """Deliver one message to the worker, as the event source mapping does; its batch response."""
    return runtime.invoke("TrainWorkerFunction", sqs_event(message, queue["arn"]))


def _versions(aws: Any, model: str) -> list[str]:
    listed = aws.list_objects_v2(Bucket=BUCKET, Prefix=f"models/{model}/versions/").get("Contents", [])
    return sorted(o["Key"] for o in listed if o["Key"].endswith("model.joblib"))


def test_a_queued_training_becomes_a_ready_version_once_even_when_its_message_comes_twice(
    api: Any, aws: Any, runtime: Any, queue: dict
) -> None:
    queued = api.post("/models/iris/versions", BODY)
    assert queued.status == 202, queued.body
    assert queued.json() == {"name": "iris", "version": 1, "status": "queued"}
    assert queued.headers["Location"].endswith("/models/iris/versions/1")
    status = api.get("/models/iris/versions/1").json()
    assert status["status"] == "queued" and status["attempts"] == 0
    assert api.put("/models/iris/stages/production", {"version": 1}).json()["error"]["code"] == "version_not_found"
    assert api.delete("/models/iris/versions/1").json()["error"]["code"] == "version_training"

    (message,) = _messages(queue)
    assert _work(runtime, queue, message) == {"batchItemFailures": []}
    ready = api.get("/models/iris/versions/1").json()
    assert ready["status"] == "ready" and ready["metrics"]["accuracy"] > 0.8
    assert ready["created_by"]["principal"] == "local:unauthenticated"

    assert _work(runtime, queue, message) == {"batchItemFailures": []}  # redelivered: nothing new
    assert _versions(aws, "iris") == ["models/iris/versions/0000000001/model.joblib"]
    assert api.get("/models/iris").json()["latest_version"] == 1
    assert api.put("/models/iris/stages/production", {"version": 1}).status == 200
    predicted = api.post("/models/iris/predict", {"instances": [[5.1, 3.5, 1.4, 0.2]]})
    assert predicted.json()["predictions"] == ["setosa"]


def test_a_worker_that_crashes_is_retried_and_one_that_keeps_crashing_fails_the_job(
    api: Any, aws: Any, runtime: Any, queue: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mlservice.training import trainer

    real = trainer.train_model

    def crash(*args: Any, **kwargs: Any) -> Any:
        raise MemoryError("the worker ran out of memory")

    assert api.post("/models/iris/versions", BODY).status == 202
    (message,) = _messages(queue)
    monkeypatch.setattr(trainer, "train_model", crash)
    failed = _work(runtime, queue, message)
    assert failed == {"batchItemFailures": [{"itemIdentifier": message["MessageId"]}]}  # SQS delivers it again
    status = api.get("/models/iris/versions/1").json()
    assert status["status"] == "training" and status["attempts"] == 1
    monkeypatch.setattr(trainer, "train_model", real)
    assert _work(runtime, queue, message) == {"batchItemFailures": []}
    done = api.get("/models/iris/versions/1").json()
    assert done["status"] == "ready" and _versions(aws, "iris") == ["models/iris/versions/0000000001/model.joblib"]

    assert api.post("/models/iris/versions", BODY | {"description": "second"}).json()["version"] == 2
    (second,) = _messages(queue)
    monkeypatch.setattr(trainer, "train_model", crash)
    for _ in range(3):
        assert _work(runtime, queue, second)["batchItemFailures"]
    assert _work(runtime, queue, second) == {"batchItemFailures": []}  # the 4th delivery gives up
    status = api.get("/models/iris/versions/2").json()
    assert status["status"] == "failed" and status["attempts"] == 4
    assert "stopped 3 times" in status["error"]["message"]
    jobs = api.get("/models/iris").json()["jobs"]
    assert [(j["version"], j["status"]) for j in jobs] == [(2, "failed")]
    assert api.delete("/models/iris/versions/2").status == 204  # a failed version can be deleted
    assert api.get("/models/iris/versions/2").status == 404


def test_a_training_the_request_gets_wrong_fails_with_its_error(api: Any, runtime: Any, queue: dict) -> None:
    body = {"algorithm": "logistic_regression", "data": {"dataset": "iris"}, "target": "nope", "async": True}
    assert api.post("/models/iris/versions", body).status == 202
    (message,) = _messages(queue)
    assert _work(runtime, queue, message) == {"batchItemFailures": []}
    status = api.get("/models/iris/versions/1").json()
    assert status["status"] == "failed" and status["error"]["code"] == "invalid_target"
    assert "nope" in status["error"]["message"]


def test_a_training_over_the_request_budget_is_queued_by_itself(
    api: Any, runtime: Any, queue: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(runtime.substitutions, "TRAINING_BUDGET_SECONDS", "0.000001")
    body = {"algorithm": "random_forest", "data": {"dataset": "iris"}}
    queued = api.post("/models/iris/versions", body)
    assert queued.status == 202 and queued.json()["status"] == "queued"
    (message,) = _messages(queue)
    assert _work(runtime, queue, message) == {"batchItemFailures": []}
    assert api.get("/models/iris/versions/1").json()["status"] == "ready"
    monkeypatch.setitem(runtime.substitutions, "TRAIN_QUEUE_URL", "")  # no queue: refused as before
    refused = api.post("/models/iris/versions", body)
    assert refused.status == 400 and refused.json()["error"]["code"] == "training_too_expensive"


def test_a_retried_async_request_with_its_idempotency_key_queues_nothing_new(
    api: Any, runtime: Any, queue: dict
) -> None:
    first = api.post("/models/iris/versions", BODY, headers={"Idempotency-Key": "nightly-1"})
    again = api.post("/models/iris/versions", BODY, headers={"Idempotency-Key": "nightly-1"})
    assert first.status == again.status == 202 and first.json() == again.json()
    assert again.headers.get("Idempotent-Replayed") == "true"
    assert len(_messages(queue)) == 1


def test_the_worker_drops_the_message_of_an_erased_model(api: Any, aws: Any, runtime: Any, queue: dict) -> None:
    assert api.post("/models/iris/versions", BODY).status == 202
    (message,) = _messages(queue)
    erased = api.delete("/models/iris")
    assert erased.status == 202, erased.body
    assert _work(runtime, queue, message) == {"batchItemFailures": []}
    assert aws.list_objects_v2(Bucket=BUCKET, Prefix="models/iris/").get("KeyCount") == 0


def test_an_erasure_waits_for_a_training_worker_that_may_still_write(
    api: Any, aws: Any, runtime: Any, queue: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mlservice.training import trainer

    assert api.post("/models/iris/versions", BODY).status == 202
    (message,) = _messages(queue)
    erasures = []
    real = trainer.train_model

    def erase_meanwhile(*args: Any, **kwargs: Any) -> Any:
        erasures.append(api.delete("/models/iris"))  # while this worker is fitting
        return real(*args, **kwargs)

    monkeypatch.setattr(trainer, "train_model", erase_meanwhile)
    _work(runtime, queue, message)
    waiting = erasures[0]
    assert waiting.status == 202 and waiting.json()["status"] == "erasing", waiting.body
    assert int(waiting.headers["Retry-After"]) > 800
    assert api.get("/models/iris/versions/1").status == 404  # invisible; the worker could not publish
    listed = aws.list_objects_v2(Bucket=BUCKET, Prefix="models/iris/versions/").get("Contents", [])
    assert not [o for o in listed if o["Key"].endswith("registry.json")]


def _drain(runtime: Any, queue: dict, limit: int = 200) -> list[dict]:
    """Deliver every queued message (and those they queue) to the worker until the queue is empty."""
    handled = []
    for _ in range(limit):
        batch = _messages(queue)
        if not batch:
            return handled
        for message in batch:
            response = _work(runtime, queue, message)
            if not response["batchItemFailures"]:
                queue["sqs"].delete_message(QueueUrl=queue["url"], ReceiptHandle=message["ReceiptHandle"])
            handled.append(message)
    raise AssertionError("the queue never emptied")


SEARCH = {
    "algorithm": "logistic_regression",
    "data": {"dataset": "breast_cancer"},
    "search": {"C": [0.001, 0.1, 10.0]},
    "cv": 3,
}


def test_a_grid_search_scores_every_candidate_on_every_fold_and_publishes_the_best(
    api: Any, aws: Any, runtime: Any, queue: dict
) -> None:
    queued = api.post("/models/cancer/versions", SEARCH)
    assert queued.status == 202, queued.body
    handled = _drain(runtime, queue)
    assert len(handled) == 1 + 3 * 3 + 1  # plan, 9 fits, one refit (later refit messages find it claimed)
    version = api.get("/models/cancer/versions/1").json()
    assert version["status"] == "ready", version
    search = version["search"]
    assert search["strategy"] == "grid" and search["metric"] == "accuracy" and search["cv_folds"] == 3
    assert [c["hyperparameters"]["C"] for c in search["candidates"]] == [0.001, 0.1, 10.0]
    assert all(len(c["fold_scores"]) == 3 and None not in c["fold_scores"] for c in search["candidates"])
    means = [c["mean"] for c in search["candidates"]]
    assert search["best"] == means.index(max(means))
    assert version["hyperparameters"]["C"] == search["candidates"][search["best"]]["hyperparameters"]["C"]
    assert _versions(aws, "cancer") == ["models/cancer/versions/0000000001/model.joblib"]


def test_a_redelivered_fold_and_a_failed_candidate(
    api: Any, runtime: Any, queue: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mlservice.training import search

    real = search.score_fold

    def fail_small_c(prepared: Any, hyperparameters: dict, fold: int, folds: int, fraction: float = 1.0) -> float:
        if hyperparameters["C"] == 0.001:
            raise ValueError("this candidate does not converge")
        return real(prepared, hyperparameters, fold, folds, fraction)

    monkeypatch.setattr(search, "score_fold", fail_small_c)
    assert api.post("/models/cancer/versions", SEARCH).status == 202
    (plan,) = _messages(queue)
    assert _work(runtime, queue, plan) == {"batchItemFailures": []}
    queue["sqs"].delete_message(QueueUrl=queue["url"], ReceiptHandle=plan["ReceiptHandle"])
    folds = _messages(queue)
    assert _work(runtime, queue, folds[0]) == {"batchItemFailures": []}
    assert _work(runtime, queue, folds[0]) == {"batchItemFailures": []}  # redelivered: scored once
    status = api.get("/models/cancer/versions/1").json()
    assert status["status"] == "training" and status["progress"]["step"] == 1 and status["progress"]["of"] == 9
    for message in folds:  # received above, so invisible to a new receive for a while: deliver them here
        assert _work(runtime, queue, message) == {"batchItemFailures": []}
        queue["sqs"].delete_message(QueueUrl=queue["url"], ReceiptHandle=message["ReceiptHandle"])
    _drain(runtime, queue)
    version = api.get("/models/cancer/versions/1").json()
    assert version["status"] == "ready"
    failed = version["search"]["candidates"][0]
    assert failed["mean"] is None and failed["errors"] == ["ValueError: this candidate does not converge"]
    assert version["search"]["best"] in (1, 2)


def test_a_search_whose_every_candidate_fails_ends_failed_with_the_reasons(
    api: Any, runtime: Any, queue: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mlservice.training import search

    def fail(*args: Any) -> float:
        raise ValueError("singular matrix")

    monkeypatch.setattr(search, "score_fold", fail)
    assert api.post("/models/cancer/versions", SEARCH).status == 202
    _drain(runtime, queue)
    version = api.get("/models/cancer/versions/1").json()
    assert version["status"] == "failed" and version["error"]["code"] == "training_failed"
    assert "every one of the 3 candidates failed" in version["error"]["message"]
    assert "singular matrix" in version["error"]["message"]


def test_a_random_search_and_the_search_limits(api: Any, runtime: Any, queue: dict) -> None:
    body = {
        "algorithm": "decision_tree",
        "data": {"dataset": "iris"},
        "search": {"max_depth": [1, 2, 3, 4, 5], "min_samples_leaf": [5, 10, 20]},
        "n_iter": 4,
        "cv": 2,
    }
    assert api.post("/models/flowers/versions", body).status == 202
    _drain(runtime, queue)
    version = api.get("/models/flowers/versions/1").json()
    assert version["status"] == "ready" and version["search"]["strategy"] == "random"
    assert len(version["search"]["candidates"]) == 4
    refused = [
        ({"search": {"max_depth": list(range(1, 21)), "min_samples_leaf": [5, 6, 7, 8]}}, "invalid_search"),  # 80 > 64
        ({"search": {"max_depth": []}}, "invalid_search"),
        ({"search": {"max_depth": [1, 2]}, "hyperparameters": {"max_depth": 3}}, "invalid_search"),
        ({"search": {"max_depth": [1, -2]}}, "invalid_hyperparameter"),
        ({"search": {"nope": [1]}}, "invalid_hyperparameter"),
        ({"search": {"max_depth": [1, 2]}, "n_iter": 64, "cv": 20, "hyperparameters": None}, None),
        ({"search": None, "n_iter": 3}, "invalid_search"),
        ({"search": {"max_depth": list(range(1, 21))}, "cv": 20}, "invalid_search"),  # 400 fits > 320
    ]
    for change, code in refused:
        response = api.post("/models/flowers/versions", {**body, "n_iter": None, "cv": None, **change})
        if code is None:
            assert response.status == 202, response.body
        else:
            assert (response.status, response.json().get("error", {}).get("code")) == (400, code), (
                change,
                response.body,
            )


def test_a_fold_whose_worker_keeps_stopping_is_recorded_failed_and_the_search_goes_on(
    api: Any, runtime: Any, queue: dict
) -> None:
    assert api.post("/models/cancer/versions", SEARCH).status == 202
    (plan,) = _messages(queue)
    _work(runtime, queue, plan)
    queue["sqs"].delete_message(QueueUrl=queue["url"], ReceiptHandle=plan["ReceiptHandle"])
    folds = _messages(queue)
    stuck = dict(folds[0], Attributes={"ApproximateReceiveCount": "4"})  # delivered after 3 stopped workers
    assert _work(runtime, queue, stuck) == {"batchItemFailures": []}
    for message in folds:
        _work(runtime, queue, message)
        queue["sqs"].delete_message(QueueUrl=queue["url"], ReceiptHandle=message["ReceiptHandle"])
    _drain(runtime, queue)
    version = api.get("/models/cancer/versions/1").json()
    assert version["status"] == "ready"
    stopped = [c for c in version["search"]["candidates"] if c["errors"]]
    assert len(stopped) == 1 and "stopped 3 times" in stopped[0]["errors"][0]
    assert version["search"]["best"] != version["search"]["candidates"].index(stopped[0])


def test_the_sample_worker_event_is_acknowledged(api: Any, runtime: Any, queue: dict) -> None:
    """events/train_worker_sqs.json names a training nobody queued: the worker drops it, it is not retried."""
    import json
    from pathlib import Path

    event = json.loads((Path(__file__).resolve().parent.parent / "events" / "train_worker_sqs.json").read_text())
    assert runtime.invoke("TrainWorkerFunction", event) == {"batchItemFailures": []}


def test_successive_halving_keeps_the_best_third_each_round_on_three_times_the_rows(
    api: Any, runtime: Any, queue: dict
) -> None:
    body = {
        "algorithm": "decision_tree",
        "data": {"dataset": "breast_cancer"},
        "search": {"max_depth": [1, 2, 3, 4, 5, 6, 8], "min_samples_leaf": [5, 40]},
        "search_strategy": "halving",
        "cv": 2,
    }
    assert api.post("/models/cancer/versions", body).status == 202
    handled = _drain(runtime, queue)
    version = api.get("/models/cancer/versions/1").json()
    assert version["status"] == "ready", version
    search = version["search"]
    rounds = search["rounds"]
    assert [len(r["candidates"]) for r in rounds] == [14, 5, 2]
    assert [r["row_fraction"] for r in rounds] == [round(1 / 9, 4), round(1 / 3, 4), 1.0]
    assert len(handled) >= 1 + (14 + 5 + 2) * 2 + 1
    for earlier, later in itertools.pairwise(rounds):
        assert set(later["candidates"]) <= set(earlier["candidates"])
        means = dict(zip(earlier["candidates"], earlier["means"], strict=True))
        kept = [means[c] for c in later["candidates"]]
        dropped = [m for c, m in means.items() if c not in later["candidates"] and m is not None]
        assert min(kept) >= max(dropped)  # the survivors are the best of the round before
    best = search["best"]
    assert best in rounds[-1]["candidates"] and search["candidates"][best]["round"] == 2
    assert version["hyperparameters"]["max_depth"] == search["candidates"][best]["hyperparameters"]["max_depth"]
    refused = api.post("/models/cancer/versions", {**body, "search_strategy": "random"})
    assert refused.json()["error"]["code"] == "invalid_search"  # random needs n_iter
