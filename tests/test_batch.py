"""Batch prediction end to end on moto: a file lands under batch/input/, the S3 event reaches
BatchPredictFunction as deployed, and predictions, rejected rows and a manifest appear — or, for large files,
SQS messages that BatchWorkerFunction turns into parts and one assembled output."""

from __future__ import annotations

import csv
import gzip
import io
import json
import time

import pytest
from conftest import BUCKET

from local.lambda_events import s3_put_event, sqs_event
from mlservice import registry

NAMES = ["sepal_length_cm", "sepal_width_cm", "petal_length_cm", "petal_width_cm"]
ROWS = [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3], [5.9, 2.8, 4.3, 1.3]]
EXPECTED = ["setosa", "virginica", "versicolor"]
CLASSES = ["setosa", "versicolor", "virginica"]


@pytest.fixture
def batch(aws, runtime, iris_model):
    """iris v1 and v2 registered, production serving 1; the batch queue created; the runtime pointed at it."""
    import boto3

    sqs = boto3.client("sqs", region_name="us-east-1")
    queue_url = sqs.create_queue(QueueName="batch-queue")["QueueUrl"]
    registry.publish_version("iris", *iris_model)
    registry.publish_version("iris", *iris_model)
    registry.set_stage("iris", "production", 1)
    saved = dict(runtime.substitutions)
    runtime.substitutions.update(BatchQueue=queue_url)
    yield Batch(aws, sqs, queue_url, runtime)
    runtime.substitutions.clear()
    runtime.substitutions.update(saved)


class Batch:
    def __init__(self, s3, sqs, queue_url, runtime):
        self.s3, self.sqs, self.queue_url, self.runtime = s3, sqs, queue_url, runtime

    def put(self, key: str, body: bytes) -> dict:
        response = self.s3.put_object(Bucket=BUCKET, Key=key, Body=body)
        return s3_put_event(BUCKET, key, len(body), response["ETag"])

    def drop(self, key: str, body: bytes | str) -> dict:
        """Upload a file and deliver its S3 event to BatchPredictFunction; returns the function's result."""
        event = self.put(key, body.encode() if isinstance(body, str) else body)
        return self.deliver(event)

    def deliver(self, event: dict) -> dict:
        return self.runtime.invoke("BatchPredictFunction", event)["results"][0]

    def read(self, key: str) -> bytes:
        return self.s3.get_object(Bucket=BUCKET, Key=key)["Body"].read()

    def exists(self, key: str) -> bool:
        return self.s3.list_objects_v2(Bucket=BUCKET, Prefix=key).get("KeyCount", 0) > 0

    def manifest(self, model_path: str) -> dict:
        return json.loads(self.read(f"batch/output/{model_path}.manifest.json"))

    def drive_workers(self, fail_first: callable | None = None) -> list[dict]:
        """Deliver queued messages to BatchWorkerFunction one at a time, as the SQS event source would."""
        responses = []
        for _ in range(200):
            messages = self.sqs.receive_message(
                QueueUrl=self.queue_url, MaxNumberOfMessages=1, AttributeNames=["All"]
            ).get("Messages", [])
            if not messages:
                break
            message = messages[0]
            event = sqs_event(message, "arn:aws:sqs:us-east-1:123456789012:batch-queue")
            restore = fail_first(message) if fail_first else None
            response = self.runtime.invoke("BatchWorkerFunction", event)
            responses.append(response)
            if restore:
                restore()
            if response["batchItemFailures"]:
                self.sqs.change_message_visibility(
                    QueueUrl=self.queue_url, ReceiptHandle=message["ReceiptHandle"], VisibilityTimeout=0
                )  # SQS redelivers it
            else:
                self.sqs.delete_message(QueueUrl=self.queue_url, ReceiptHandle=message["ReceiptHandle"])
        return responses


def _csv(rows, header=("id", *NAMES), extra=lambda i: [f"r{i}"]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(header)
    for i, row in enumerate(rows):
        writer.writerow([*extra(i), *row])
    return out.getvalue()


def _read_csv(data: bytes) -> list[dict]:
    return list(csv.DictReader(io.StringIO(data.decode())))


def test_csv_rows_come_back_joined_with_predictions_in_order(batch):
    body = "id,petal_width_cm,petal_length_cm,sepal_width_cm,sepal_length_cm,note\n" + "".join(
        f'r{i},{r[3]},{r[2]},{r[1]},{r[0]},"keep, me"\n' for i, r in enumerate(ROWS)
    )
    manifest = batch.drop("batch/input/iris/day1/flowers.csv", body)
    assert manifest["status"] == "succeeded", manifest
    assert manifest["rows"] == {"in": 3, "predicted": 3, "rejected": 0}
    assert (manifest["model"], manifest["version"], manifest["stage"]) == ("iris", 1, "production")
    assert manifest["outputs"] == {"predictions": "batch/output/iris/day1/flowers.csv", "errors": None}
    assert batch.manifest("iris/day1/flowers.csv") == manifest
    rows = _read_csv(batch.read("batch/output/iris/day1/flowers.csv"))
    assert [r["id"] for r in rows] == ["r0", "r1", "r2"]
    assert [r["note"] for r in rows] == ["keep, me"] * 3
    assert [r["prediction"] for r in rows] == EXPECTED
    for r in rows:
        assert abs(sum(float(r[f"probability_{c}"]) for c in CLASSES) - 1) < 1e-9
    assert (
        batch.read("batch/output/iris/day1/flowers.csv")
        .decode()
        .splitlines()[1]
        .startswith('r0,0.2,1.4,3.5,5.1,"keep, me",setosa,')
    )


def test_json_lines_and_pinned_versions(batch):
    lines = "\n".join(json.dumps({"id": i, **dict(zip(NAMES, r, strict=True))}) for i, r in enumerate(ROWS)) + "\n"
    manifest = batch.drop("batch/input/iris@v2/flowers.jsonl", lines)
    assert manifest["status"] == "succeeded" and manifest["version"] == 2 and manifest["stage"] is None
    out = [json.loads(line) for line in batch.read("batch/output/iris/flowers.jsonl").decode().splitlines()]
    assert [o["id"] for o in out] == [0, 1, 2]
    assert [o["prediction"] for o in out] == EXPECTED
    assert set(out[0]["probabilities"]) == set(CLASSES)


def test_a_json_lines_record_with_a_lone_surrogate_escape_keeps_it(batch):
    """`"\\ud800"` parses to a string UTF-8 cannot hold: the output line keeps the record's own escape instead of
    failing the whole file."""
    lines = [
        json.dumps({"id": "\ud800" if i == 1 else f"r{i}", **dict(zip(NAMES, r, strict=True))})
        for i, r in enumerate(ROWS)
    ]
    manifest = batch.drop("batch/input/iris/odd.jsonl", "\n".join(lines) + "\n")
    assert manifest["status"] == "succeeded" and manifest["rows"]["predicted"] == 3, manifest
    out = batch.read("batch/output/iris/odd.jsonl").decode("utf-8").splitlines()
    assert '"id": "\\ud800"' in out[1] and json.loads(out[1])["prediction"] == EXPECTED[1]


@pytest.mark.parametrize("name", ["flowers.csv.gz", "flowers.jsonl.gz"])
def test_gzip_in_gzip_out(batch, name):
    if name.startswith("flowers.csv"):
        text = _csv(ROWS)
    else:
        text = "".join(json.dumps(dict(zip(NAMES, r, strict=True))) + "\n" for r in ROWS)
    manifest = batch.drop(f"batch/input/iris/{name}", gzip.compress(text.encode()))
    assert manifest["rows"]["predicted"] == 3, manifest
    out = gzip.decompress(batch.read(f"batch/output/iris/{name}")).decode()
    assert out.count("setosa") >= 1 and len(out.splitlines()) == (4 if ".csv" in name else 3)


def test_bad_rows_are_reported_with_line_numbers_and_the_rest_predicted(batch, runtime):
    body = (
        "id,sepal_length_cm,sepal_width_cm,petal_length_cm,petal_width_cm\n"
        "a,5.1,3.5,1.4,0.2\n"
        "b,abc,3.5,1.4,0.2\n"  # line 3: not a number
        "\n"  # line 4: blank, skipped
        "c,6.7,3.0,5.2\n"  # line 5: a field short
        "d,6.7,,5.2,2.3\n"  # line 6: empty cell = missing, imputed
        "e,inf,3.0,5.2,2.3\n"  # line 7: not finite
        "f,5.9,2.8,4.3,1.3\n"
    )
    runtime.substitutions["BATCH_CHUNK_ROWS"] = "2"  # the errors straddle chunks
    manifest = batch.drop("batch/input/iris/mixed.csv", body)
    assert manifest["rows"] == {"in": 6, "predicted": 3, "rejected": 3}, manifest
    assert [r["id"] for r in _read_csv(batch.read("batch/output/iris/mixed.csv"))] == ["a", "d", "f"]
    errors = [json.loads(line) for line in batch.read("batch/errors/iris/mixed.csv.errors.jsonl").splitlines()]
    assert [e["line"] for e in errors] == [3, 5, 7]
    assert "sepal_length_cm" in errors[0]["reason"] and "not a number" in errors[0]["reason"]
    assert "expected 5 fields" in errors[1]["reason"]
    assert "finite" in errors[2]["reason"] and errors[2]["record"] == "e,inf,3.0,5.2,2.3"
    assert manifest["outputs"]["errors"] == "batch/errors/iris/mixed.csv.errors.jsonl"


def test_header_only_gives_an_empty_output(batch):
    manifest = batch.drop("batch/input/iris/empty.csv", "id," + ",".join(NAMES) + "\n")
    assert manifest["status"] == "succeeded" and manifest["rows"] == {"in": 0, "predicted": 0, "rejected": 0}
    assert batch.read("batch/output/iris/empty.csv").decode().startswith("id,sepal_length_cm")


@pytest.mark.parametrize(
    ("key", "body", "code"),
    [
        ("batch/input/iris/none.csv", b"", "missing_header"),
        ("batch/input/ghost/a.csv", _csv(ROWS).encode(), "model_not_found"),
        ("batch/input/iris@staging/a.csv", _csv(ROWS).encode(), "stage_not_deployed"),
        ("batch/input/iris@v9/a.csv", _csv(ROWS).encode(), "version_not_found"),
        ("batch/input/iris/cols.csv", b"id,a,b\n1,2,3\n", "missing_features"),
        ("batch/input/iris/dup.csv", b"a,a,sepal_length_cm\n1,2,3\n", "invalid_header"),
        (
            "batch/input/iris/latin1.csv",
            _csv(ROWS * 3).encode() + "r9,5.1,3.5,1.4,0.2,caf\xe9\n".encode("latin-1"),
            "not_utf8",
        ),
        ("batch/input/iris/notgzip.csv.gz", b"plain text", "unreadable_gzip"),
        ("batch/input/iris/data.parquet", b"PAR1", "unsupported_format"),
        ("batch/input/Bad Model/a.csv", b"x\n", "invalid_name"),
    ],
    ids=lambda v: v if isinstance(v, str) and "/" not in v else None,
)
def test_an_unusable_file_gets_a_manifest_with_the_error_and_no_output(batch, runtime, key, body, code):
    runtime.substitutions["BATCH_CHUNK_ROWS"] = "2"  # the bad bytes come after chunks were already predicted
    manifest = batch.drop(key, body)
    assert manifest["status"] == "failed" and manifest["error"]["code"] == code, manifest
    assert manifest["outputs"] == {}
    relative = key[len("batch/input/") :].split("/", 1)
    model = relative[0].split("@")[0]
    if code != "invalid_name":
        assert batch.manifest(f"{model}/{relative[1]}")["error"]["code"] == code
        assert not batch.exists(f"batch/output/{model}/{relative[1]}" + "\x00")  # sanity of the helper
        assert [
            o["Key"]
            for o in batch.s3.list_objects_v2(Bucket=BUCKET, Prefix="batch/output/").get("Contents", [])
            if not o["Key"].endswith(".manifest.json")
        ] == []
    assert not batch.exists("batch/errors/")
    assert not batch.exists("batch/state/")


def test_a_redelivered_event_changes_nothing(batch):
    event = batch.put("batch/input/iris/once.csv", _csv(ROWS).encode())
    first = batch.deliver(event)
    before = batch.s3.head_object(Bucket=BUCKET, Key="batch/output/iris/once.csv")
    assert batch.deliver(event) == {"status": "duplicate", "manifest": "batch/output/iris/once.csv.manifest.json"}
    after = batch.s3.head_object(Bucket=BUCKET, Key="batch/output/iris/once.csv")
    assert (before["ETag"], before["LastModified"]) == (after["ETag"], after["LastModified"])
    assert batch.manifest("iris/once.csv") == first


def test_an_event_for_an_overwritten_object_is_left_to_the_newer_event(batch):
    stale = batch.put("batch/input/iris/moving.csv", _csv(ROWS).encode())
    batch.put("batch/input/iris/moving.csv", _csv(ROWS[:1]).encode())
    assert batch.deliver(stale)["status"] == "superseded"
    assert not batch.exists("batch/output/iris/moving.csv")


def test_a_large_file_fans_out_and_one_failed_part_is_retried(batch, runtime):
    rows = [ROWS[i % 3] for i in range(400)]
    body = _csv(rows)
    lines = body.splitlines(keepends=True)
    lines[150] = "r149,oops,3.5,1.4,0.2\n"  # a bad row deep inside a middle part
    body = "".join(lines)
    runtime.substitutions.update(BATCH_FANOUT_BYTES="2000", BATCH_PART_BYTES="1500", BATCH_CHUNK_ROWS="7")
    started = batch.drop("batch/input/iris/big.csv", body)
    assert started["status"] == "fanned_out" and started["parts"] > 3, started
    assert not batch.exists("batch/output/iris/big.csv")

    failed = {"done": False}

    def fail_second_message(message):
        """The input vanishes while one worker reads it (an S3 hiccup); it is back for the retry."""
        if failed["done"] or json.loads(message["Body"])["part"] != 1:
            return None
        failed["done"] = True
        saved = batch.read("batch/input/iris/big.csv")
        batch.s3.delete_object(Bucket=BUCKET, Key="batch/input/iris/big.csv")
        return lambda: batch.s3.put_object(Bucket=BUCKET, Key="batch/input/iris/big.csv", Body=saved)

    responses = batch.drive_workers(fail_second_message)
    assert failed["done"]
    assert sum(1 for r in responses if r["batchItemFailures"]) == 1
    assert len(responses) == started["parts"] + 1

    manifest = batch.manifest("iris/big.csv")
    assert manifest["status"] == "succeeded" and manifest["parts"] == started["parts"]
    assert manifest["rows"] == {"in": 400, "predicted": 399, "rejected": 1}
    out = _read_csv(batch.read("batch/output/iris/big.csv"))
    assert [r["id"] for r in out] == [f"r{i}" for i in range(400) if i != 149]
    assert [r["prediction"] for r in out[:3]] == EXPECTED
    errors = [json.loads(line) for line in batch.read("batch/errors/iris/big.csv.errors.jsonl").splitlines()]
    assert [e["line"] for e in errors] == [151]
    assert not batch.exists("batch/state/")  # bookkeeping is cleaned up
    # a late duplicate of any message changes nothing
    batch.sqs.send_message(QueueUrl=batch.queue_url, MessageBody=json.dumps({"job": started["job"], "part": 0}))
    assert batch.drive_workers()[0]["batchItemFailures"] == []
    assert batch.manifest("iris/big.csv") == manifest


def test_the_sample_events_work(batch):
    from pathlib import Path

    events = Path(__file__).resolve().parent.parent / "events"
    s3_event = json.loads((events / "batch_s3_put.json").read_text())
    key = s3_event["Records"][0]["s3"]["object"]["key"]
    response = batch.s3.put_object(Bucket=BUCKET, Key=key, Body=_csv(ROWS).encode())
    s3_event["Records"][0]["s3"]["bucket"]["name"] = BUCKET
    s3_event["Records"][0]["s3"]["object"]["eTag"] = response["ETag"].strip('"')
    assert batch.deliver(s3_event)["status"] == "succeeded"
    sqs_event = json.loads((events / "batch_worker_sqs.json").read_text())
    # a message for a job that does not exist (or finished long ago) is acknowledged, not retried forever
    assert batch.runtime.invoke("BatchWorkerFunction", sqs_event) == {"batchItemFailures": []}


def test_uploading_the_same_file_again_runs_it_again(batch):
    """A redelivered event is a duplicate; a new upload of the same bytes (after deploying the stage that was
    missing, say) is a new run, even though its ETag is the same."""
    body = _csv(ROWS).encode()
    failed = batch.drop("batch/input/iris@staging/retry.csv", body)
    assert failed["error"]["code"] == "stage_not_deployed"
    registry.set_stage("iris", "staging", 2)
    time.sleep(1.1)  # a new upload: S3's LastModified has one-second resolution
    again = batch.drop("batch/input/iris@staging/retry.csv", body)
    assert again["status"] == "succeeded" and again["version"] == 2, again
    assert again["input"]["etag"] == failed["input"]["etag"]


def test_a_live_run_fails_the_duplicate_and_a_dead_ones_lease_is_taken_over(batch):
    """While another run's lease is live the duplicate delivery fails (so Lambda retries it later, instead of
    reporting a success that predicted nothing); once the lease lapses — the run died — the retry takes the job
    over and produces the output."""
    from mlservice import keys
    from mlservice.batch import job as jobs

    key = "batch/input/iris/leased.csv"
    event = batch.put(key, _csv(ROWS).encode())
    head = batch.s3.head_object(Bucket=BUCKET, Key=key)
    job = jobs.job_id("iris", key, head["ETag"], jobs.revision_of(head))
    lease = {"owner": "another-run", "expires": time.time() + 600}
    batch.s3.put_object(Bucket=BUCKET, Key=keys.batch_lease_key(job), Body=json.dumps(lease).encode())
    with pytest.raises(jobs.LeaseHeld):
        batch.deliver(event)
    assert not batch.exists("batch/output/iris/leased.csv")
    lease["expires"] = time.time() - 1
    batch.s3.put_object(Bucket=BUCKET, Key=keys.batch_lease_key(job), Body=json.dumps(lease).encode())
    assert batch.deliver(event)["status"] == "succeeded"
    assert batch.exists("batch/output/iris/leased.csv")
    assert not batch.exists("batch/state/")  # the lease is released


def test_an_input_uploaded_again_while_its_job_runs_leaves_the_outputs_to_the_new_upload(batch, monkeypatch):
    """The old run must not overwrite (or mix into) what the new upload's job writes: it stops, superseded."""
    from mlservice.batch import runner

    key = "batch/input/iris/changing.csv"
    first = batch.put(key, _csv(ROWS[:1]).encode())
    newer: dict = {}
    original = runner.score_stream

    def upload_again_midway(*args, **kwargs):
        counts = original(*args, **kwargs)
        newer["event"] = batch.put(key, _csv(ROWS).encode())  # the user fixes the file while the job runs
        return counts

    monkeypatch.setattr(runner, "score_stream", upload_again_midway)
    assert batch.deliver(first) == {"status": "superseded", "key": key}
    monkeypatch.undo()
    assert not batch.exists("batch/output/iris/changing.csv")
    manifest = batch.deliver(newer["event"])
    assert manifest["status"] == "succeeded" and manifest["rows"]["predicted"] == 3
    assert len(_read_csv(batch.read("batch/output/iris/changing.csv"))) == 3
    assert not batch.exists("batch/state/")


def test_a_fanned_out_job_whose_input_changes_is_dropped_for_the_new_one(batch, runtime):
    runtime.substitutions.update(BATCH_FANOUT_BYTES="2000", BATCH_PART_BYTES="1500")
    key = "batch/input/iris/moving.csv"
    started = batch.drop(key, _csv([ROWS[i % 3] for i in range(300)]))
    assert started["status"] == "fanned_out"
    newer = batch.put(key, _csv([ROWS[i % 3] for i in range(200)]).encode())
    responses = batch.drive_workers()
    assert not any(r["batchItemFailures"] for r in responses)
    assert not batch.exists("batch/output/iris/moving.csv") and not batch.exists("batch/state/")
    assert batch.deliver(newer)["status"] == "fanned_out"
    batch.drive_workers()
    manifest = batch.manifest("iris/moving.csv")
    assert manifest["status"] == "succeeded" and manifest["rows"]["in"] == 200
    assert len(_read_csv(batch.read("batch/output/iris/moving.csv"))) == 200


def test_a_value_the_model_cannot_use_rejects_its_row_not_the_file(batch, runtime):
    """1e308 overflows the model's standard scaling: that row is rejected, the rest of its chunk predicted."""
    runtime.substitutions["BATCH_CHUNK_ROWS"] = "64"
    rows = [list(ROWS[i % 3]) for i in range(100)]
    rows[37][3] = 1e308
    manifest = batch.drop("batch/input/iris/huge.csv", _csv(rows))
    assert manifest["status"] == "succeeded" and manifest["rows"] == {"in": 100, "predicted": 99, "rejected": 1}
    errors = [json.loads(line) for line in batch.read("batch/errors/iris/huge.csv.errors.jsonl").splitlines()]
    assert [e["line"] for e in errors] == [39] and "too large" in errors[0]["reason"]
