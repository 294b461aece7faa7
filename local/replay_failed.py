"""Send batch events that failed after Lambda's retries back to BatchPredictFunction.

Lambda puts each such event, wrapped in its destination record (the event is `requestPayload`), on the
template's BatchFailedEventsQueue. Replaying one is safe whatever happened since: a job that finished in the
meantime answers "duplicate", one still running fails again (and comes back here), and a file that was
overwritten answers "superseded".

    python -m local.replay_failed --queue-url "$FAILED_QUEUE_URL" --function-name "$BATCH_FUNCTION"

Each message is deleted once its event was handed to the function (an asynchronous invoke, as S3 does);
`--dry-run` only counts the waiting events. boto3 reads credentials and region as usual, and
AWS_ENDPOINT_URL_LAMBDA to reach `sam local start-lambda`.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import unquote_plus


def failed_events(sqs: Any, queue_url: str) -> Iterator[tuple[dict, str]]:
    """(original S3 event, receipt handle) for each message on the failure queue, until it is empty."""
    while True:
        messages = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=1).get(
            "Messages", []
        )
        if not messages:
            return
        for message in messages:
            record = json.loads(message["Body"])
            yield record.get("requestPayload", record), message["ReceiptHandle"]


def replay(sqs: Any, queue_url: str, invoke: Callable[[dict], None]) -> list[str]:
    """Hand every failed event to `invoke`, deleting its message once that succeeded; returns the input keys."""
    keys = []
    for event, receipt in failed_events(sqs, queue_url):
        invoke(event)
        sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=receipt)
        # S3 event keys are URL-encoded
        keys.extend(unquote_plus(r.get("s3", {}).get("object", {}).get("key", "?")) for r in event.get("Records", []))
    return keys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--queue-url", required=True, help="the stack's BatchFailedEventsQueueUrl output")
    parser.add_argument("--function-name", required=True, help="BatchPredictFunction's name (or ARN)")
    parser.add_argument("--dry-run", action="store_true", help="list the failed inputs, change nothing")
    args = parser.parse_args(argv)
    import boto3

    sqs = boto3.client("sqs")
    if args.dry_run:
        attributes = sqs.get_queue_attributes(QueueUrl=args.queue_url, AttributeNames=["ApproximateNumberOfMessages"])
        print(f"{attributes['Attributes']['ApproximateNumberOfMessages']} failed event(s) waiting")
        return 0
    lambda_client = boto3.client("lambda")

    def invoke(event: dict) -> None:
        lambda_client.invoke(FunctionName=args.function_name, InvocationType="Event", Payload=json.dumps(event))

    for key in replay(sqs, args.queue_url, invoke):
        print(f"replayed {key}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
