"""The events Lambda receives, built from plain requests: API Gateway REST proxy (v1) events, S3 and SQS
notifications, and a Lambda context. The local server and the tests use these, so both exercise the
handlers exactly as API Gateway and S3 would."""

from __future__ import annotations

import base64
import time
import uuid
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote_plus

STAGE = "v1"


def api_event(
    method: str,
    path: str,
    resource: str,
    path_parameters: dict[str, str] | None = None,
    query: dict[str, list[str]] | None = None,
    headers: dict[str, list[str]] | None = None,
    body: bytes | str | None = None,
    source_ip: str = "127.0.0.1",
    identity: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """An API Gateway REST proxy event, as the service's API would deliver it (stage v1, no base path).
    `identity`: what API Gateway adds to requestContext.identity after authenticating the caller (userArn for
    SigV4, apiKeyId for an API key); the local server authenticates nobody and adds none."""
    headers = headers or {}
    query = query or {}
    is_binary = False
    if isinstance(body, bytes):
        try:
            body = body.decode("utf-8")
        except UnicodeDecodeError:
            body, is_binary = base64.b64encode(body).decode(), True
    now = time.time()
    return {
        "resource": resource,
        "path": path,
        "httpMethod": method.upper(),
        "headers": {k: v[-1] for k, v in headers.items()} or None,
        "multiValueHeaders": headers or None,
        "queryStringParameters": {k: v[-1] for k, v in query.items()} or None,
        "multiValueQueryStringParameters": query or None,
        "pathParameters": path_parameters or None,
        "stageVariables": None,
        "requestContext": {
            "resourceId": "local",
            "resourcePath": resource,
            "httpMethod": method.upper(),
            "extendedRequestId": uuid.uuid4().hex[:16],
            "requestTime": time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(now)),
            "path": path,
            "accountId": "123456789012",
            "protocol": "HTTP/1.1",
            "stage": STAGE,
            "domainPrefix": "localhost",
            "requestTimeEpoch": int(now * 1000),
            "requestId": str(uuid.uuid4()),
            "identity": {
                "sourceIp": source_ip,
                "userAgent": (headers.get("User-Agent") or [""])[-1],
                **(identity or {}),
            },
            "domainName": "localhost",
            "apiId": "local",
        },
        "body": body,
        "isBase64Encoded": is_binary,
    }


def s3_put_event(bucket: str, key: str, size: int, etag: str, sequencer: str = "0") -> dict[str, Any]:
    """An S3 ObjectCreated:Put notification for one object (its key URL-encoded, as S3 sends it)."""
    return {
        "Records": [
            {
                "eventVersion": "2.1",
                "eventSource": "aws:s3",
                "awsRegion": "us-east-1",
                "eventTime": time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime()),
                "eventName": "ObjectCreated:Put",
                "s3": {
                    "s3SchemaVersion": "1.0",
                    "bucket": {"name": bucket, "arn": f"arn:aws:s3:::{bucket}"},
                    "object": {
                        "key": quote_plus(key, safe="/"),
                        "size": size,
                        "eTag": etag.strip('"'),
                        "sequencer": sequencer,
                    },
                },
            }
        ]
    }


def sqs_event(message: dict, queue_arn: str, region: str = "us-east-1") -> dict[str, Any]:
    """The event an SQS event source mapping delivers for one message received with all attributes."""
    return {
        "Records": [
            {
                "messageId": message["MessageId"],
                "receiptHandle": message["ReceiptHandle"],
                "body": message["Body"],
                "attributes": message.get("Attributes", {}),
                "messageAttributes": {},
                "md5OfBody": message["MD5OfBody"],
                "eventSource": "aws:sqs",
                "eventSourceARN": queue_arn,
                "awsRegion": region,
            }
        ]
    }


@dataclass
class LambdaContext:
    """Enough of Lambda's context object for Powertools and for deadline checks."""

    function_name: str = "local"
    memory_limit_in_mb: int = 2048
    timeout_seconds: float = 900.0
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    function_version: str = "$LATEST"
    _started: float = field(default_factory=time.monotonic)

    @property
    def invoked_function_arn(self) -> str:
        return f"arn:aws:lambda:us-east-1:123456789012:function:{self.function_name}"

    @property
    def log_group_name(self) -> str:
        return f"/aws/lambda/{self.function_name}"

    @property
    def log_stream_name(self) -> str:
        return "local"

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self.timeout_seconds - (time.monotonic() - self._started)) * 1000))
