"""A batch event whose run keeps failing is not lost: after Lambda's retries (the template's EventInvokeConfig)
it lands in the failure queue as Lambda's destination record, and `local.replay_failed` sends it back once the
cause is fixed — here through make run's machinery: an embedded S3 whose bucket notifications feed the
functions, as deployed."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import unquote_plus

import pytest

from local.replay_failed import replay

BUCKET = "failures"
HEADER = "id,sepal_length_cm,sepal_width_cm,petal_length_cm,petal_width_cm\n"


@pytest.fixture
def local_service(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    import boto3

    from local.embedded_s3 import EmbeddedS3
    from local.runtime import LocalLambda
    from local.triggers import EventPump
    from mlservice import storage
    from mlservice.serving.model_cache import cache

    s3_server = EmbeddedS3().start()
    for name, value in {
        "AWS_ENDPOINT_URL_S3": s3_server.endpoint,
        "AWS_ENDPOINT_URL_SQS": s3_server.endpoint,
        "MODEL_BUCKET": BUCKET,
    }.items():
        monkeypatch.setenv(name, value)
    storage.reset_client()
    cache.clear()
    s3 = boto3.client("s3", endpoint_url=s3_server.endpoint)
    s3.create_bucket(Bucket=BUCKET)
    runtime = LocalLambda(substitutions={"MODEL_BUCKET": BUCKET, "ModelBucket": BUCKET})
    pump = EventPump(runtime, s3_server.endpoint, BUCKET)
    runtime.substitutions.update(pump.configure())
    pump.start()
    yield s3, pump, runtime
    pump.stop()
    s3_server.stop()
    storage.reset_client()
    cache.clear()


def _wait(condition: Any, seconds: float = 60) -> Any:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        found = condition()
        if found:
            return found
        time.sleep(0.2)
    raise AssertionError("timed out")


def test_a_failing_batch_event_reaches_the_failure_queue_and_replays(local_service, iris_model):
    from mlservice import keys, registry

    s3, pump, runtime = local_service
    registry.publish_version("iris", *iris_model)
    registry.set_stage("iris", "production", 1)
    artifact_key = keys.artifact_key("iris", 1)
    original = s3.get_object(Bucket=BUCKET, Key=artifact_key)["Body"].read()
    s3.put_object(Bucket=BUCKET, Key=artifact_key, Body=b"not the artifact the registry recorded")
    failure_queue = runtime.substitutions["BatchFailedEventsQueue"]

    s3.put_object(Bucket=BUCKET, Key="batch/input/iris/day.csv", Body=HEADER + "a,5.1,3.5,1.4,0.2\n")
    messages = _wait(lambda: pump.sqs.receive_message(QueueUrl=failure_queue).get("Messages"))
    record = json.loads(messages[0]["Body"])
    assert record["requestContext"]["condition"] == "RetriesExhausted"
    assert record["requestContext"]["approximateInvokeCount"] == 3  # the first try and MaximumRetryAttempts 2
    assert unquote_plus(record["requestPayload"]["Records"][0]["s3"]["object"]["key"]) == "batch/input/iris/day.csv"
    assert not s3.list_objects_v2(Bucket=BUCKET, Prefix="batch/").get("Contents", [])[1:]  # only the input
    pump.sqs.change_message_visibility(
        QueueUrl=failure_queue, ReceiptHandle=messages[0]["ReceiptHandle"], VisibilityTimeout=0
    )

    s3.put_object(Bucket=BUCKET, Key=artifact_key, Body=original)  # the cause is fixed
    replayed = replay(pump.sqs, failure_queue, lambda event: runtime.invoke("BatchPredictFunction", event))
    assert replayed == ["batch/input/iris/day.csv"]
    manifest = json.loads(s3.get_object(Bucket=BUCKET, Key="batch/output/iris/day.csv.manifest.json")["Body"].read())
    assert manifest["status"] == "succeeded" and manifest["rows"]["predicted"] == 1
    assert not pump.sqs.receive_message(QueueUrl=failure_queue).get("Messages")  # replayed messages are removed
