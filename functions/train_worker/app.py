"""TrainWorkerFunction: fits the trainings queued on the train queue, one message at a time (mlservice.training.jobs)."""

import json

from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

from mlservice.observability import logger, metrics
from mlservice.training import jobs

# Report failures per message: a failed one is delivered again by SQS (up to maxReceiveCount, then the DLQ).
processor = BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)
_context: dict = {}


def record_handler(record: SQSRecord) -> dict:
    context = _context.get("lambda")
    seconds_left = context.get_remaining_time_in_millis() / 1000 if context is not None else None
    receives = int((record.raw_event.get("attributes") or {}).get("ApproximateReceiveCount") or 1)
    result = jobs.work(json.loads(record.body), seconds_left, receives)
    logger.info("training job handled", extra=result)
    return result


@logger.inject_lambda_context(log_event=False)
@metrics.log_metrics
def handler(event: dict, context: object) -> dict:
    _context["lambda"] = context
    metrics.add_metric(name="TrainingJobs", unit="Count", value=len(event.get("Records", [])))
    return process_partial_response(event=event, record_handler=record_handler, processor=processor, context=context)
