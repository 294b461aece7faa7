"""BatchPredictFunction: an object created under batch/input/ is predicted into batch/output/.

A failure (another run holds the job, the store is unavailable) is raised, not swallowed: Lambda retries the
event with backoff and, after the last retry, sends it to the template's failure queue (README: replaying).
"""

from urllib.parse import unquote_plus

from aws_lambda_powertools.utilities.data_classes import S3Event

from mlservice.batch import runner
from mlservice.observability import logger, metrics


@logger.inject_lambda_context(log_event=False)
@metrics.log_metrics
def handler(event: dict, context: object) -> dict:
    results = []
    for record in S3Event(event).records:
        obj = record.s3.get_object
        key = unquote_plus(obj.key)  # S3 event keys are URL-encoded
        result = runner.handle_object(key, obj.etag or "", obj.size or 0)
        logger.info(
            "batch object handled",
            extra={
                "key": key,
                "status": result.get("status"),
                "rows": result.get("rows"),
                "seconds": result.get("seconds"),
            },
        )
        metrics.add_metric(
            name="BatchRowsPredicted", unit="Count", value=(result.get("rows") or {}).get("predicted", 0)
        )
        results.append(result)
    return {"results": results}
