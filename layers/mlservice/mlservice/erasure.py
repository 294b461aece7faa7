"""Erasing a model: every object written for it, every stored version of each, so nothing can be restored.

DELETE /models/{model} runs three steps, each safe to repeat (a retried or concurrent erasure simply
continues where the other stopped):

1. The registry document is marked `erasing` (compare-and-swap). From then on the model is invisible (404
   to predict, describe, batch) and refuses new versions and stage changes (409 `model_being_erased`). Stages
   still deployed make this a 409 `model_in_use` unless the caller asked to undeploy them (`?undeploy=true`).
   Stage history and version summaries leave the document at once.
2. Every object version and delete marker under the model's prefixes (keys.erasure_prefixes: registry,
   artifacts, metadata, batch inputs, outputs, errors and job state, Idempotency-Key records) is deleted by
   version id — in a versioned bucket an ordinary delete only hides an object behind a marker.
3. Last, every version of the registry document itself; then the prefixes are listed once more and anything a
   racing writer added is erased too.

Writers that may still be running hold the erasure at step 2: a training that reserved a version number less
than WRITER_LIFETIME_SECONDS ago can still write its artifact, an asynchronous training being fitted (started
less than WORKER_LIFETIME_SECONDS ago) too, and a batch job with a live lease can still write its output. Then the answer is 202 with `status: erasing` and Retry-After: what could be erased is
gone, the model is already invisible, and repeating the request finishes the job once they are done (they
cannot publish: the registry refuses them).
"""

from __future__ import annotations

import math
import time
from datetime import UTC, datetime

from mlservice import atomic, keys, registry, storage
from mlservice.atomic import Change, now_iso
from mlservice.audit import INTERNAL_ACTOR, Actor
from mlservice.errors import conflict, not_found

# TrainFunction's Timeout (60 s in template.yaml) plus a margin: a reservation older than this has no live
# writer left (tests/test_erasure.py checks the template against it).
WRITER_LIFETIME_SECONDS = 90
# TrainWorkerFunction's timeout plus a margin: how long an asynchronous training may still write after it started.
WORKER_LIFETIME_SECONDS = 960
# Passes of step 3: a writer racing the end of an erasure is erased by the next pass.
FINAL_PASSES = 3


def _seconds_since(iso: str) -> float:
    return time.time() - datetime.fromisoformat(iso.replace("Z", "+00:00")).astimezone(UTC).timestamp()


def _mark(model: str, undeploy: bool, actor: Actor) -> tuple[dict | None, list[str]]:
    """Step 1. Returns the document as written (None when the model has none) and the stages undeployed."""

    def change(document: dict | None) -> Change:
        if document is None or document.get("erasing"):
            return Change(None, (document, []))  # nothing to mark, or an earlier erasure began it: continue
        deployed = sorted(s for s, entry in document["stages"].items() if entry.get("version") is not None)
        if deployed and not undeploy:
            raise conflict(
                "model_in_use",
                f"model {model!r} is deployed to stage(s) {', '.join(deployed)}; undeploy them first, or erase "
                "with ?undeploy=true",
            )
        # Only what the erasure itself needs: the numbers (never reused while it runs) and the reservations of
        # trainings that may still be writing.
        pending = {n: e for n, e in document["versions"].items() if e["state"] in (registry.PENDING, registry.TRAINING)}
        marked = {
            "model": model,
            "next_version": document["next_version"],
            "versions": pending,
            "stages": {},
            "erasing": {"at": now_iso(), "by": actor.record()},
        }
        return Change(marked, (marked, deployed))

    return atomic.update(keys.registry_key(model), change, check=registry.check, what=f"model {model!r}")


def _busy(model: str, document: dict | None) -> tuple[int, int, float]:
    """Trainings that may still write, live batch jobs, and seconds until the last of them has ended."""
    waits: list[float] = []
    trainings = 0
    for entry in (document or {}).get("versions", {}).values():
        if entry["state"] == registry.PENDING:
            left = WRITER_LIFETIME_SECONDS - _seconds_since(entry["claimed_at"])
        elif entry["state"] == registry.TRAINING:  # an asynchronous training's worker may write until its timeout
            started = (entry.get("job") or {}).get("started_at") or entry["claimed_at"]
            left = WORKER_LIFETIME_SECONDS - _seconds_since(started)
        else:
            continue
        if left > 0:
            trainings += 1
            waits.append(left)
    jobs = 0
    now = time.time()
    for item in storage.list_keys(keys.erasure_prefixes(model)["batch_state"]):
        if item["Key"].endswith(("/lease.json", "/assembly.json")):
            found = storage.get_json(item["Key"])
            expires = (found[0] if found else {}).get("expires", 0)
            if expires > now:
                jobs += 1
                waits.append(expires - now)
    return trainings, jobs, max(waits, default=0.0)


def _sweep(model: str, skip: set[str], removed: dict[str, int]) -> int:
    """Delete every object version under the model's prefixes except the kinds in `skip` (and the registry
    document); add the counts to `removed`. Returns how many were deleted."""
    registry_key = keys.registry_key(model)
    total = 0
    for kind, prefix in keys.erasure_prefixes(model).items():
        if kind in skip:
            continue
        found = [
            item
            for item in storage.list_versions(prefix)
            if item["Key"] != registry_key and (kind != "batch_inputs" or keys.is_models_input(model, item["Key"]))
        ]
        storage.delete_versions(found)
        removed[kind] = removed.get(kind, 0) + len(found)
        total += len(found)
    return total


def erase_model(model: str, undeploy: bool = False, actor: Actor = INTERNAL_ACTOR) -> dict:
    """Erase a model (see the module docstring). Returns the report the API answers with (202)."""
    keys.validate_name(model, "model")
    document, undeployed = _mark(model, undeploy, actor)
    removed: dict[str, int] = {}
    trainings, jobs, wait = _busy(model, document)
    busy = trainings or jobs
    deleted = _sweep(model, {"batch_state"} if jobs else set(), removed)
    if not busy:
        for _ in range(FINAL_PASSES):
            found = [v for v in storage.list_versions(keys.registry_key(model)) if v["Key"] == keys.registry_key(model)]
            storage.delete_versions(found)
            removed["registry_and_versions"] = removed.get("registry_and_versions", 0) + len(found)
            deleted += len(found)
            if not _sweep(model, set(), removed):
                break
    if document is None and deleted == 0:
        raise not_found("model_not_found", f"model {model!r} does not exist (or nothing of it is left)")
    report = {
        "model": model,
        "status": "erasing" if busy else "erased",
        "undeployed_stages": undeployed,
        "removed": removed,
        "object_versions_removed": sum(removed.values()),
    }
    if busy:
        report["waiting_for"] = {"trainings": trainings, "batch_jobs": jobs}
        report["retry_after"] = max(1, math.ceil(wait))
    return report
