"""BatchWorkerFunction: predicts one byte range of a large batch file per SQS message (fan-out)."""

import json

from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

from mlservice.batch import fanout
from mlservice.observability import logger, metrics

# Report failures per message (BatchSize 1 makes a failure the whole batch, which must not raise instead).
processor = BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)


def record_handler(record: SQSRecord) -> dict:
    result = fanout.process_part(json.loads(record.body))
    logger.info("batch part handled", extra={"job": result.get("job"), "status": result.get("status")})
    return result


@logger.inject_lambda_context(log_event=False)
@metrics.log_metrics
def handler(event: dict, context: object) -> dict:
    # failed messages are reported individually and redelivered by SQS; the others are deleted
    metrics.add_metric(name="BatchMessages", unit="Count", value=len(event.get("Records", [])))
    return process_partial_response(event=event, record_handler=record_handler, processor=processor, context=context)
