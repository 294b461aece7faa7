"""The template's non-HTTP triggers, locally: S3 events and SQS event sources, against the embedded S3.

For each function with an S3 event, the embedded bucket gets a notification configuration (the event's
prefix filter, read from the template) delivering to a local queue; for each SQS event source, a local queue
stands in for the template's queue. A pump thread long-polls those queues and invokes the functions with the
events Lambda would pass, deleting a message on success and letting it be redelivered on failure, up to each
queue's maxReceiveCount in the template, as SQS and Lambda's event source mapping do. An S3 event that still fails after the function's EventInvokeConfig retries goes, as Lambda's destination record, to the
local stand-in of its OnFailure queue.
"""

from __future__ import annotations

import json
import sys
import threading
import time
import uuid
from dataclasses import dataclass

from local.lambda_events import sqs_event
from local.runtime import LocalLambda

MAX_RECEIVES = 3


@dataclass
class _Source:
    queue_url: str
    function: str
    kind: str  # "s3" (message body is an S3 event) or "sqs" (wrap the message in an SQS event)
    arn: str
    attempts: int = MAX_RECEIVES
    failure_queue_url: str | None = None


def destination_record(function: str, event: dict, error: str, attempts: int) -> dict:
    """What Lambda sends to an asynchronous invocation's OnFailure destination: the event is requestPayload."""
    return {
        "version": "1.0",
        "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime()),
        "requestContext": {
            "requestId": str(uuid.uuid4()),
            "functionArn": f"arn:aws:lambda:us-east-1:123456789012:function:{function}:$LATEST",
            "condition": "RetriesExhausted",
            "approximateInvokeCount": attempts,
        },
        "requestPayload": event,
        "responseContext": {"statusCode": 200, "executedVersion": "$LATEST", "functionError": "Unhandled"},
        "responsePayload": {"errorMessage": error},
    }


class EventPump:
    def __init__(self, runtime: LocalLambda, endpoint: str, bucket: str, region: str = "us-east-1") -> None:
        import boto3

        self.runtime = runtime
        self.bucket = bucket
        self.region = region
        self.sqs = boto3.client("sqs", endpoint_url=endpoint, region_name=region)
        self.s3 = boto3.client("s3", endpoint_url=endpoint, region_name=region)
        self.sources: list[_Source] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _queue(self, name: str) -> tuple[str, str]:
        url = self.sqs.create_queue(QueueName=name)["QueueUrl"]
        arn = self.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        return url, arn

    def configure(self) -> dict[str, str]:
        """Create the queues and the bucket notifications; returns substitutions (queue logical id → URL)."""
        substitutions: dict[str, str] = {}
        notifications = []
        for function in self.runtime.template.functions.values():
            for props in function.events_of_type("SQS").values():
                queue = props["Queue"]
                logical_id = queue["Fn::GetAtt"][0] if isinstance(queue, dict) else str(queue)
                url, arn = self._queue(logical_id)
                substitutions[logical_id] = url
                # The queue's own maxReceiveCount, as SQS applies it before moving a message to its dead-letter queue.
                redrive = (self.runtime.template.resources.get(logical_id, {}).get("Properties") or {}).get(
                    "RedrivePolicy"
                ) or {}
                attempts = int(redrive.get("maxReceiveCount", MAX_RECEIVES))
                self.sources.append(_Source(url, function.name, "sqs", arn, attempts))
            invoke_config = function.properties.get("EventInvokeConfig") or {}
            on_failure = (invoke_config.get("DestinationConfig") or {}).get("OnFailure") or {}
            failure_queue = None
            if on_failure.get("Type") == "SQS":
                logical_id = on_failure["Destination"]["Fn::GetAtt"][0]
                failure_queue, _ = self._queue(logical_id)
                substitutions[logical_id] = failure_queue
            attempts = 1 + int(invoke_config.get("MaximumRetryAttempts", 2))
            for name, props in function.events_of_type("S3").items():
                url, arn = self._queue(f"{function.name}-{name}")
                self.sources.append(_Source(url, function.name, "s3", arn, attempts, failure_queue))
                rules = props.get("Filter", {}).get("S3Key", {}).get("Rules", [])
                events = props["Events"] if isinstance(props["Events"], list) else [props["Events"]]
                notifications.append(
                    {
                        "QueueArn": arn,
                        "Events": events,
                        "Filter": {"Key": {"FilterRules": [{"Name": r["Name"], "Value": r["Value"]} for r in rules]}},
                    }
                )
        if notifications:
            self.s3.put_bucket_notification_configuration(
                Bucket=self.bucket, NotificationConfiguration={"QueueConfigurations": notifications}
            )
        return substitutions

    def start(self) -> EventPump:
        self._thread = threading.Thread(target=self._run, name="event-pump", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stop.is_set():
            idle = True
            for source in self.sources:
                try:
                    messages = self.sqs.receive_message(
                        QueueUrl=source.queue_url,
                        MaxNumberOfMessages=1,
                        WaitTimeSeconds=0,
                        AttributeNames=["All"],
                    ).get("Messages", [])
                except Exception as error:  # the embedded S3 is shutting down
                    if not self._stop.is_set():
                        print(f"event pump: {error}", file=sys.stderr)
                    continue
                for message in messages:
                    idle = False
                    self._deliver(source, message)
            if idle:
                self._stop.wait(0.2)

    def _deliver(self, source: _Source, message: dict) -> None:
        receives = int(message.get("Attributes", {}).get("ApproximateReceiveCount", "1"))
        error_text = ""
        event: dict = {}
        try:
            if source.kind == "s3":
                event = json.loads(message["Body"])
                if "Records" not in event:  # S3's "s3:TestEvent" when notifications are configured
                    self._delete(source, message)
                    return
                self.runtime.invoke(source.function, event)
                ok = True
            else:
                event = sqs_event(message, source.arn, self.region)
                ok = not self.runtime.invoke(source.function, event).get("batchItemFailures")
        except Exception as error:
            error_text = f"{type(error).__name__}: {error}"
            print(f"{source.function} failed: {error_text}", file=sys.stderr)
            ok = False
        if ok or receives >= source.attempts:
            if not ok:
                print(f"{source.function}: giving up on a message after {receives} attempts", file=sys.stderr)
                if source.failure_queue_url:
                    record = destination_record(source.function, event, error_text, receives)
                    self.sqs.send_message(QueueUrl=source.failure_queue_url, MessageBody=json.dumps(record))
            self._delete(source, message)
        else:
            self.sqs.change_message_visibility(
                QueueUrl=source.queue_url, ReceiptHandle=message["ReceiptHandle"], VisibilityTimeout=0
            )

    def _delete(self, source: _Source, message: dict) -> None:
        self.sqs.delete_message(QueueUrl=source.queue_url, ReceiptHandle=message["ReceiptHandle"])
