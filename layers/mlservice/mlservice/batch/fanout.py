"""Large batch files, split across workers: SQS carries one message per line-aligned byte range.

The coordinator (the S3-triggered function, holding the job's lease) reads only the header and a few bytes
around each boundary, creates the job's plan once, queues one message per range and then marks the plan
queued; a redelivered event finds the plan and, if the messages may not all have been sent, sends them again
(duplicates are harmless). Each worker predicts its range into part objects, then records the part in the
job's progress; every worker that sees the set complete assembles the parts, in order, into the output and
writes the manifest, under an assembly lease (so one at a time, and a crashed assembly is redone by the next
delivery). A worker that fails leaves its message to SQS, which redelivers it (after the queue's
maxReceiveCount, into the dead-letter queue); a redelivered message for a finished part changes nothing, and
one for a finished job finds no plan.

Compressed files are not split (a gzip stream cannot be entered mid-way) and are predicted by one function.
Files above the threshold must have one record per line (no quoted newlines), which is checked per part:
a record broken across a boundary is rejected with its line, never silently merged.
"""

from __future__ import annotations

import json
from typing import Any

from mlservice import keys, storage
from mlservice.batch import job as jobs
from mlservice.batch.formats import CSV
from mlservice.batch.output import Counts, OutputFile, Results
from mlservice.batch.scoring import score_stream
from mlservice.errors import ObjectChanged, ServiceError
from mlservice.serving.model_cache import LoadedModel, cache
from mlservice.settings import get_settings

PROBE_BYTES = 64 * 1024
PART_BYTES = 8 * 1024 * 1024


def _next_newline(key: str, etag: str, offset: int, size: int) -> int:
    """The offset just after the first newline at or after `offset` (or the end of the object)."""
    while offset < size:
        end = min(size - 1, offset + PROBE_BYTES - 1)
        block = storage.open_stream(key, (offset, end), if_match=etag)["Body"].read()
        found = block.find(b"\n")
        if found >= 0:
            return offset + found + 1
        offset = end + 1
    return size


def line_ranges(key: str, etag: str, size: int, part_bytes: int) -> list[tuple[int, int]]:
    """Inclusive byte ranges of about `part_bytes`, each ending just after a newline."""
    ranges: list[tuple[int, int]] = []
    start = 0
    while start < size:
        cut = _next_newline(key, etag, start + part_bytes, size) if start + part_bytes < size else size
        ranges.append((start, cut - 1))
        start = cut
    return ranges


def _header(key: str, etag: str, size: int) -> str | None:
    """The CSV header record (the first line), which every part after the first needs."""
    end = _next_newline(key, etag, 0, size)
    if end == 0:
        return None
    text = storage.open_stream(key, (0, end - 1), if_match=etag)["Body"].read().decode("utf-8", errors="replace")
    return text.lstrip("\ufeff").rstrip("\r\n")


def start(
    spec: keys.BatchInput,
    etag: str,
    size: int,
    fmt: str,
    loaded: LoadedModel,
    stage: str | None,
    started: float,
    job: str,
    revision: str,
) -> dict:
    """Plan the ranges and queue one message per range (again, when a crash may have cut the sending short)."""
    settings = get_settings()
    plan = jobs.read_plan(job)
    if plan is None:
        ranges = line_ranges(spec.key, etag, size, settings.batch_part_bytes)
        plan = jobs.create_plan(
            job,
            {
                "job": job,
                "input": {"key": spec.key, "etag": etag.strip('"'), "bytes": size, "revision": revision},
                "model": spec.model,
                "version": loaded.version,
                "stage": stage,
                "format": fmt,
                "ranges": ranges,
                "started": started,
                "header": _header(spec.key, etag, size) if fmt == CSV else None,
            },
        )
    parts = len(plan["ranges"])
    if not plan["queued"]:
        storage.send_messages(settings.batch_queue_url, [json.dumps({"job": job, "part": i}) for i in range(parts)])
        jobs.mark_queued(job)
    return {"status": "fanned_out", "job": job, "parts": parts}


def process_part(message: dict[str, Any]) -> dict:
    """Predict one range (an SQS message's work) and, if it was the last, assemble the job. A job whose input
    was uploaded again meanwhile is dropped (the newer upload's job writes the outputs)."""
    job, part = str(message["job"]), int(message["part"])
    plan = jobs.read_plan(job)
    if plan is None:
        return {"status": "finished", "job": job}  # the job completed and its state was cleaned up
    try:
        return _process_part(job, part, plan)
    except ObjectChanged:
        jobs.finish(job)
        return {"status": "superseded", "job": job}


def _process_part(job: str, part: int, plan: dict) -> dict:
    total = len(plan["ranges"])
    if not storage.exists(keys.batch_part_key(job, part, "json")):
        try:
            loaded = cache.select(plan["model"], None, plan["version"]).loaded
        except ServiceError as error:
            if error.status >= 500:
                raise  # the store failed: SQS redelivers the message
            return _abandon(job, plan, error)  # the version was deleted while the job ran
        start_byte, end_byte = plan["ranges"][part]
        body = storage.open_stream(plan["input"]["key"], (start_byte, end_byte), if_match=plan["input"]["etag"])["Body"]
        results = Results(
            keys.batch_part_key(job, part, "out"),
            keys.batch_part_key(job, part, "errors"),
            plan["format"],
            False,
            PART_BYTES,
        )
        header = None if part == 0 else plan.get("header")
        with results.discarded_on_failure():
            counts, header_record = score_stream(
                body,
                plan["format"],
                False,
                loaded,
                results.output,
                results.errors,
                header_record=header,
                write_header=part == 0,
            )
            results.complete()
        storage.put_json(keys.batch_part_key(job, part, "json"), {**counts.__dict__, "header": header_record})
    if jobs.record_part(job, part, total):
        return assemble(job, plan)
    return {"status": "part_done", "job": job, "part": part}


def _abandon(job: str, plan: dict, error: ServiceError) -> dict:
    """End a job that can no longer succeed with a failed manifest naming why (every later message finds the
    job finished), instead of leaving its messages to fail into the dead-letter queue."""
    input_ = plan["input"]
    spec = keys.parse_batch_input(input_["key"])
    document = jobs.fail(
        spec,
        input_["key"],
        input_["etag"],
        input_["bytes"],
        plan["started"],
        error,
        version=plan["version"],
        stage=plan["stage"],
        parts=len(plan["ranges"]),
        revision=input_["revision"],
    )
    jobs.finish(job)
    return document


def _stream_copy(key: str, sink: OutputFile) -> None:
    body = storage.open_stream(key)["Body"]
    while block := body.read(PART_BYTES):
        sink.write_bytes(block)


def assemble(job: str, plan: dict) -> dict:
    """Concatenate the parts in order into the output (and the rejected rows, with absolute line numbers),
    write the manifest, and remove the job's state. One assembler at a time, under a lease; another
    delivery meeting it fails and is retried by SQS."""
    input_ = plan["input"]
    spec = keys.parse_batch_input(input_["key"])
    with jobs.Lease(keys.batch_assembly_lease_key(job)).held() as lease:
        if jobs.already_done(spec, input_["etag"], input_["revision"]):  # assembled before a crash in cleanup
            jobs.finish(job)
            return {"status": "finished", "job": job}
        results = Results(spec.output_key, spec.errors_key, plan["format"], False, PART_BYTES)
        totals = Counts()
        offset = 0
        with results.discarded_on_failure():
            for part in range(len(plan["ranges"])):
                counts = storage.get_json(keys.batch_part_key(job, part, "json"))[0]
                _stream_copy(keys.batch_part_key(job, part, "out"), results.output)
                if storage.exists(keys.batch_part_key(job, part, "errors")):
                    body = storage.open_stream(keys.batch_part_key(job, part, "errors"))["Body"]
                    rejected = [json.loads(line) for line in body.iter_lines() if line]
                    results.errors.add(rejected, offset if part else 0)
                offset += counts["lines"]
                totals.add(Counts(counts["rows_in"], counts["predicted"], counts["rejected"], counts["lines"]))
            lease.check()
            jobs.check_current(input_["key"], input_["etag"])
            outputs = results.complete()
        document = jobs.manifest(
            spec,
            input_["key"],
            input_["etag"],
            input_["bytes"],
            plan["started"],
            version=plan["version"],
            stage=plan["stage"],
            counts=totals,
            outputs=outputs,
            parts=len(plan["ranges"]),
            revision=input_["revision"],
        )
        jobs.write_manifest(input_["key"], spec, document)
        jobs.finish(job)
        return document
