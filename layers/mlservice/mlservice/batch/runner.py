"""Handling one created input object: skip it, predict it in this invocation, or fan it out.

A file that cannot be used at all (unknown model, no header, not UTF-8, wrong columns) gets a manifest naming
the error and no output. Everything that makes a repeated or concurrent delivery harmless — the job's
identity, lease and manifest — is in mlservice.batch.job.
"""

from __future__ import annotations

import time

from mlservice import keys, storage
from mlservice.batch import job as jobs
from mlservice.batch.formats import file_format
from mlservice.batch.output import Results
from mlservice.batch.scoring import score_stream
from mlservice.errors import ObjectChanged, ServiceError
from mlservice.serving import fallback
from mlservice.serving.predictor import select_model
from mlservice.settings import get_settings

PART_BYTES = 8 * 1024 * 1024


def handle_object(key: str, etag: str, size: int) -> dict:
    """Run (or skip, or fan out) the job for one created object. Returns the manifest or a status record.

    Raises LeaseHeld when another live run holds the job, and lets storage failures through: the invocation
    then fails and Lambda retries the event (and, after its last retry, sends it to the failure queue).
    """
    started = time.time()
    try:
        spec = keys.parse_batch_input(key)
    except ServiceError as error:
        return jobs.fail(None, key, etag, size, started, error)
    head = storage.head(key)
    if head is None or head["ETag"].strip('"') != etag.strip('"'):
        return {"status": "superseded", "key": key}  # a newer upload's own event will handle it
    revision = jobs.revision_of(head)
    if jobs.already_done(spec, etag, revision):
        return {"status": "duplicate", "manifest": spec.manifest_key}
    job = jobs.job_id(spec.model, key, etag, revision)
    try:
        with jobs.Lease(keys.batch_lease_key(job)).held() as lease:
            if jobs.already_done(spec, etag, revision):  # finished by the run whose lease this one waited out
                return {"status": "duplicate", "manifest": spec.manifest_key}
            return _run(spec, key, etag, size, revision, job, started, lease)
    except ObjectChanged:
        return {"status": "superseded", "key": key}  # uploaded again while it ran: the newer job writes
    except fallback.NeedsScikitLearn:
        # The version has no ONNX export and this (slim) function no scikit-learn: the lease is released,
        # the full-layer batch function takes the file.
        fallback.forward_batch(get_settings().bucket, key, etag, size)
        return {"status": "forwarded", "key": key}


def _run(
    spec: keys.BatchInput, key: str, etag: str, size: int, revision: str, job: str, started: float, lease: jobs.Lease
) -> dict:
    """The job itself, under its lease: predict the file into its outputs (or fan it out), then the manifest."""
    try:
        fmt, compressed = file_format(key)
        selection = select_model(spec.model, spec.stage, spec.version)
    except ServiceError as error:
        if error.status >= 500:
            raise  # the store failed: retry, do not record the file as unusable
        return jobs.fail(spec, key, etag, size, started, error, revision=revision)
    loaded, stage = selection.loaded, selection.stage
    settings = get_settings()
    if size > settings.batch_fanout_bytes and not compressed and settings.batch_queue_url:
        from mlservice.batch import fanout

        return fanout.start(spec, etag, size, fmt, loaded, stage, started, job, revision)
    results = Results(spec.output_key, spec.errors_key, fmt, compressed, PART_BYTES)
    try:
        with results.discarded_on_failure():
            stream = storage.open_stream(key, if_match=etag)["Body"]
            counts, _ = score_stream(stream, fmt, compressed, loaded, results.output, results.errors)
            lease.check()  # taken over while this run worked: the other run writes the output
            jobs.check_current(key, etag)
            outputs = results.complete()
    except ServiceError as error:
        if error.status >= 500:
            raise
        return jobs.fail(spec, key, etag, size, started, error, version=loaded.version, stage=stage, revision=revision)
    document = jobs.manifest(
        spec,
        key,
        etag,
        size,
        started,
        version=loaded.version,
        stage=stage,
        counts=counts,
        outputs=outputs,
        revision=revision,
    )
    return jobs.write_manifest(key, spec, document)
