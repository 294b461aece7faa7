"""The model registry: one JSON document per model holding its versions and stages.

`models/{model}/registry.json` is changed only through `mlservice.atomic.update` (compare-and-swap with S3
conditional writes, retried from a fresh read, each change tagged with the request's token so a write whose
reply was lost is never applied twice):

    {"model": "iris", "next_version": 4,
     "versions": {"1": {"state": "ready", "sha256": "...", "bytes": 1234, "token": "...", "created_at": "...",
                        "created_by": {"principal": "arn:...", "request_id": "..."}, "environment": {...},
                        "algorithm": "...", "task": "...", "metrics": {...}, "description": null},
                  "2": {"state": "pending", "token": "...", "claimed_at": "..."},
                  "3": {"state": "deleted", "deleted_at": "...", "deleted_by": {...}}},
     "stages": {"production": {"version": 1, "stack": [2, 1], "updated_at": "...",
                               "history": [{"time", "from", "to", "action", "by", "request_id"}, ...]}},
     "applied": {"<token>": {"result": ..., "at": "..."}},
     "erasing": {"at": "...", "by": {...}}}            <- only while DELETE /models/{model} runs

An asynchronous training's version is `queued`, then `training` (with its progress), then `ready` or `failed`
(with the error); those are visible (GET .../versions/{v} shows them) but never deployable.
A version is `pending` while its artifact is being written (its number is reserved, it is visible nowhere),
`ready` once the artifact and metadata are complete in S3 and their digest is recorded here, and `deleted`
after a delete (a tombstone: numbers are never handed out twice). Every change records who made it
(mlservice.audit). A model being erased (`erasing`) is invisible and refuses every change but the erasure.

THE INVARIANT: every stage serves either nothing or a `ready` version. It holds by construction: publishing,
deploying, rolling back, undeploying and deleting all change this one document atomically, and `check` runs
on every document before it is written, so no interleaving of concurrent requests can leave a stage pointing
at a version that another request deleted.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from mlservice import atomic, keys, runtime, storage
from mlservice.atomic import Change, now_iso
from mlservice.audit import INTERNAL_ACTOR, Actor
from mlservice.errors import IntegrityError, ServiceError, conflict, not_found

HISTORY_LIMIT = 1000
PENDING, READY, DELETED = "pending", "ready", "deleted"
# Asynchronous trainings (mlservice.training.jobs): visible from the moment they are queued, never deployable.
QUEUED, TRAINING, FAILED = "queued", "training", "failed"
IN_PROGRESS = (QUEUED, TRAINING)
# A job taken this many times without finishing (its worker ran out of time or memory each time) has failed.
MAX_JOB_ATTEMPTS = 3
SUMMARY_FIELDS = ("algorithm", "task", "metrics", "description")


def new_token() -> str:
    """A token for a registry change made outside an API request (tests, scripts)."""
    return f"op:{uuid.uuid4().hex}"


def check(document: dict) -> None:
    """The invariant, enforced on every document before it is written (a failure here is a bug, hence 500)."""
    versions = document["versions"]
    for stage, entry in document["stages"].items():
        served = entry.get("version")
        if served is not None and versions.get(str(served), {}).get("state") != READY:
            raise RuntimeError(
                f"registry invariant broken: stage {stage!r} would serve version {served} "
                f"in state {versions.get(str(served), {}).get('state')!r}"
            )
    if any(int(v) >= document["next_version"] for v in versions):
        raise RuntimeError("registry invariant broken: a version at or above next_version")


def _update(model: str, change: Callable[[dict | None], Change], token: str | None) -> Any:
    """Change the model's document. `token` None: the change recognises its own earlier write by content."""
    return atomic.update(keys.registry_key(model), change, token=token, check=check, what=f"model {model!r}")


def _read(model: str, quick: bool = False) -> dict | None:
    """The model's registry document as stored, or None."""
    found = storage.get_json(keys.registry_key(model), quick=quick)
    return found[0] if found else None


def load(model: str, quick: bool = False) -> dict:
    """The registry document of a model; 404 `model_not_found` when it has none (or nothing ever published).
    `quick`: read with short timeouts, for a caller that has a copy to fall back on."""
    keys.validate_name(model, "model")
    document = _read(model, quick)
    if document is None or not _visible(document):
        raise _model_missing(model)
    return document


def _visible(document: dict) -> bool:
    """A model exists once one of its versions was published or one of its stages was ever deployed, and
    until its erasure begins."""
    if document.get("erasing"):
        return False
    return bool(document["stages"]) or any(v["state"] != PENDING for v in document["versions"].values())


def _refuse_if_erasing(document: dict | None, model: str) -> None:
    if document is not None and document.get("erasing"):
        raise conflict("model_being_erased", f"model {model!r} is being erased; nothing can be added to it")


def _model_missing(model: str) -> ServiceError:
    return not_found("model_not_found", f"model {model!r} does not exist")


def ready_entry(document: dict, model: str, version: int) -> dict:
    entry = document["versions"].get(str(version))
    if entry is None or entry["state"] != READY:
        raise not_found("version_not_found", f"model {model!r} has no version {version}")
    return entry


# ---------------------------------------------------------------- versions


def _empty(model: str) -> dict:
    return {"model": model, "next_version": 1, "versions": {}, "stages": {}}


def find_by_token(model: str, token: str) -> dict | None:
    """The metadata of the version a training with this token published within IDEMPOTENCY_TTL_SECONDS (a
    retried training), if any: a version deleted since is not found, and an older one is not this request's."""
    keys.validate_name(model, "model")
    document = _read(model)
    cutoff = atomic.cutoff()
    for number, entry in (document or _empty(model))["versions"].items():
        if entry.get("token") == token and entry["state"] == READY and entry["created_at"] >= cutoff:
            return get_version(model, int(number))
    return None


def _reserve(model: str, token: str) -> int:
    """A number for the training with this token: its own pending one when it is a retry (found by content, so
    a reply lost here, or a deletion since, can never hand back a number that is no longer this training's)."""

    def change(document: dict | None) -> Change:
        _refuse_if_erasing(document, model)
        document = document or _empty(model)
        for number, entry in document["versions"].items():
            if entry.get("token") == token and entry["state"] in (PENDING, *IN_PROGRESS):
                return Change(None, int(number))  # a retried training (or its job's worker) resumes its number
        number = document["next_version"]
        document["next_version"] = number + 1
        document["versions"][str(number)] = {"state": PENDING, "token": token, "claimed_at": now_iso()}
        return Change(document, number)

    return _update(model, change, None)


def reserve_job(model: str, token: str, actor: Actor) -> tuple[int, str]:
    """The version of the asynchronous training with this token, reserved `queued` by whichever comes first —
    the request or the worker that received its message — and (number, state) as it stands. Idempotent by
    token: every later call finds the same number."""

    def change(document: dict | None) -> Change:
        _refuse_if_erasing(document, model)
        document = document or _empty(model)
        for number, entry in document["versions"].items():
            if entry.get("token") == token and entry["state"] != PENDING:
                return Change(None, (int(number), entry["state"]))
        number = document["next_version"]
        document["next_version"] = number + 1
        document["versions"][str(number)] = {
            "state": QUEUED,
            "token": token,
            "claimed_at": now_iso(),
            "created_by": actor.record(),
            "job": {"attempts": 0},
        }
        return Change(document, (number, QUEUED))

    number, state = _update(model, change, None)
    return int(number), state


def change_job(model: str, version: int, token: str, apply: Callable[[dict], str | None]) -> str | None:
    """Change an asynchronous training's entry in place with `apply(entry)`, while it is queued or training
    and still this token's; returns what `apply` returns, or None when the job is over (ready, failed, deleted,
    erased), which a worker takes as "nothing left to do"."""

    def change(document: dict | None) -> Change:
        entry = (document or {}).get("versions", {}).get(str(version))
        if document is None or document.get("erasing") or not entry or entry.get("token") != token:
            return Change(None, None)
        if entry["state"] not in IN_PROGRESS:
            return Change(None, None)
        result = apply(entry)
        return Change(document, result)

    return _update(model, change, new_token())  # a lost reply is recognised, never applied twice


def publish_version(
    model: str,
    artifact: bytes,
    metadata: dict[str, Any],
    artifact_format: str = "joblib",
    token: str | None = None,
    actor: Actor = INTERNAL_ACTOR,
    onnx: bytes | None = None,
) -> dict:
    """Store a trained model as the model's next version and return its complete metadata.

    Three steps, each safe to repeat: reserve a number (pending), write the artifact (and its ONNX export,
    when there is one: the file the slim predict function serves) and the metadata under it, then mark it ready
    with their digests. A training retried with the same token finds its version (or its
    reservation) instead of making another one. A crash between the steps leaves a pending number that is
    visible nowhere and never reused.
    """
    keys.validate_name(model, "model")
    token = token or new_token()
    published = find_by_token(model, token)
    if published is not None:
        return published
    version = _reserve(model, token)
    artifact_key = keys.artifact_key(model, version)
    digest = storage.sha256_hex(artifact)
    complete = {
        **metadata,
        "name": model,
        "version": version,
        "artifact": {"key": artifact_key, "sha256": digest, "bytes": len(artifact), "format": artifact_format},
        "status": READY,
        "created_at": now_iso(),
        "created_by": actor.record(),
    }
    if onnx is not None:
        onnx_key = keys.onnx_key(model, version)
        complete["serving"] = {
            **complete.get("serving", {}),
            "format": "onnx",
            "onnx": {
                **complete.get("serving", {}).get("onnx", {}),
                "key": onnx_key,
                "sha256": storage.sha256_hex(onnx),
                "bytes": len(onnx),
            },
        }
        storage.put_bytes(onnx_key, onnx)
    storage.put_bytes(artifact_key, artifact)
    storage.put_json(keys.metadata_key(model, version), complete)
    summary = {name: complete.get(name) for name in SUMMARY_FIELDS}

    def change(document: dict | None) -> Change:
        entry = (document or _empty(model))["versions"].get(str(version), {})
        if entry.get("token") == token and entry.get("state") == READY:
            return Change(None, version)  # this write landed already (its reply was lost)
        _refuse_if_erasing(document, model)
        if entry.get("token") != token or entry.get("state") not in (PENDING, *IN_PROGRESS):
            raise RuntimeError(f"version {version} of {model!r} is no longer this training's reservation")
        document["versions"][str(version)] = {
            "state": READY,
            "token": token,
            "sha256": digest,
            "bytes": len(artifact),
            "created_at": complete["created_at"],
            "created_by": complete["created_by"],
            "environment": complete.get("environment"),
            **({"onnx_sha256": complete["serving"]["onnx"]["sha256"]} if onnx is not None else {}),
            **summary,
        }
        return Change(document, version)

    _update(model, change, None)
    return complete


def job_status(model: str, number: int, entry: dict) -> dict:
    """What GET .../versions/{v} shows of an asynchronous training that is not ready: its state, progress
    (step k of n, seconds elapsed) and, once failed, the error."""
    job = entry.get("job") or {}
    shown = {
        "name": model,
        "version": number,
        "status": entry["state"],
        "created_at": entry.get("claimed_at"),
        "created_by": entry.get("created_by"),
        "attempts": job.get("attempts", 0),
    }
    for name in ("started_at", "progress", "error", "finished_at"):
        if job.get(name) is not None:
            shown[name] = job[name]
    return shown


def get_version(model: str, version: int) -> dict:
    """The metadata of one ready version, or the status of an asynchronous training (queued, training,
    failed); 404 `version_not_found` when it does not exist (or was deleted)."""
    keys.validate_version(version)
    document = load(model)
    entry = document["versions"].get(str(version))
    if entry is not None and entry["state"] in (*IN_PROGRESS, FAILED):
        return job_status(model, version, entry)
    ready_entry(document, model, version)
    found = storage.get_json(keys.metadata_key(model, version))
    if found is None:
        ready_entry(load(model), model, version)  # deleted since the registry was read: that is a 404
        raise IntegrityError(f"the metadata of model {model!r} version {version} is missing")
    return found[0]


def ready_versions(document: dict) -> list[int]:
    return sorted(int(v) for v, entry in document["versions"].items() if entry["state"] == READY)


def summarize(number: int, entry: dict) -> dict:
    """The short form of a version used in listings."""
    return {
        "version": number,
        "algorithm": entry.get("algorithm"),
        "task": entry.get("task"),
        "metrics": entry.get("metrics") or {},
        "created_at": entry.get("created_at"),
        "created_by": entry.get("created_by"),
        "description": entry.get("description"),
        "artifact_bytes": entry.get("bytes"),
    }


def delete_version(model: str, version: int, token: str | None = None, actor: Actor = INTERNAL_ACTOR) -> None:
    """Remove a version no stage serves: the registry first (it disappears atomically, and a concurrent deploy
    of it either lands before — then this is 409 — or fails with 404), then its objects."""
    keys.validate_version(version)
    keys.validate_name(model, "model")

    def change(document: dict | None) -> Change:
        if document is None or not _visible(document):
            raise _model_missing(model)
        state = document["versions"].get(str(version), {}).get("state")
        if state in IN_PROGRESS:
            raise conflict(
                "version_training",
                f"version {version} of model {model!r} is {state}; delete it once it is ready or failed",
            )
        if state != FAILED:
            ready_entry(document, model, version)
        in_use = sorted(stage for stage, entry in document["stages"].items() if entry.get("version") == version)
        if in_use:
            raise conflict(
                "version_in_use",
                f"version {version} of model {model!r} is deployed to stage(s) {', '.join(in_use)}; undeploy it first",
            )
        document["versions"][str(version)] = {"state": DELETED, "deleted_at": now_iso(), "deleted_by": actor.record()}
        return Change(document, version)

    try:
        _update(model, change, token or new_token())
    except ServiceError as error:
        # A delete retried after its objects failed to go: the registry already says deleted, so finish the
        # job before answering that the version is gone.
        document = _read(model) if error.code == "version_not_found" else None
        if document and document["versions"].get(str(version), {}).get("state") == DELETED:
            _remove_objects(model, version)
        raise
    _remove_objects(model, version)


def _remove_objects(model: str, version: int) -> None:
    storage.delete(keys.metadata_key(model, version))
    storage.delete(keys.onnx_key(model, version))
    storage.delete(keys.artifact_key(model, version))


def load_verified_artifact(model: str, version: int, entry: dict, onnx: bool = False) -> tuple[bytes, dict]:
    """The artifact's bytes (its ONNX export with `onnx`) and metadata, after checking the bytes against the
    SHA-256 the registry recorded (`entry` is the version's registry entry: the digest is trusted from there,
    not from the metadata file)."""
    key = keys.onnx_key(model, version) if onnx else keys.artifact_key(model, version)
    what = "ONNX export" if onnx else "artifact"
    data = storage.get_bytes(key)
    if data is None:
        raise IntegrityError(f"the {what} of model {model!r} version {version} is missing")
    if storage.sha256_hex(data) != entry.get("onnx_sha256" if onnx else "sha256"):
        raise IntegrityError(
            f"the {what} of model {model!r} version {version} does not match its recorded SHA-256; refusing to load it"
        )
    found = storage.get_json(keys.metadata_key(model, version))
    if found is None:
        raise IntegrityError(f"the metadata of model {model!r} version {version} is missing")
    return data, found[0]


# ---------------------------------------------------------------- stages


def resolve_stage(document: dict, stage: str) -> int:
    """The version a stage serves in this registry document; 404 `stage_not_deployed` when it serves none."""
    served = document["stages"].get(stage, {}).get("version")
    if served is None:
        raise not_found("stage_not_deployed", f"stage {stage!r} of model {document['model']!r} is not deployed")
    return int(served)


def _stage_change(model: str, stage: str, token: str | None, apply: Callable[[dict, dict], Change]) -> Any:
    """Change one stage of a model: `apply(document, stage_entry)` edits the entry in place."""
    keys.validate_name(model, "model")
    keys.validate_name(stage, "stage")

    def change(document: dict | None) -> Change:
        if document is None or not _visible(document):
            raise _model_missing(model)
        return apply(document, document["stages"].get(stage) or {"version": None, "stack": [], "history": []})

    return _update(model, change, token or new_token())


def _record(document: dict, stage: str, entry: dict, to: int | None, action: str, actor: Actor) -> None:
    change = {"time": now_iso(), "from": entry.get("version"), "to": to, "action": action}
    entry["history"] = [*entry["history"], {**change, "by": actor.principal, "request_id": actor.request_id}]
    entry["history"] = entry["history"][-HISTORY_LIMIT:]
    entry["stack"] = entry["stack"][-HISTORY_LIMIT:]
    entry["version"] = to
    entry["updated_at"] = now_iso()
    document["stages"][stage] = entry


def set_stage(model: str, stage: str, version: int, token: str | None = None, actor: Actor = INTERNAL_ACTOR) -> dict:
    """Point a stage at a ready version (deploy). Returns the stage, the version and the one it replaced.
    A version trained with other library versions than this runtime's is refused (mlservice.runtime)."""
    keys.validate_version(version)

    def apply(document: dict, entry: dict) -> Change:
        runtime.refuse_deploy(model, version, ready_entry(document, model, version).get("environment"))
        result = {"stage": stage, "version": version, "previous_version": entry.get("version")}
        if entry.get("version") == version:
            return Change(None, result)
        entry["stack"] = [*entry["stack"], version]
        _record(document, stage, entry, version, "deploy", actor)
        return Change(document, result)

    return _stage_change(model, stage, token, apply)


def rollback_stage(model: str, stage: str, token: str | None = None, actor: Actor = INTERNAL_ACTOR) -> dict:
    """Return a stage to the version it served before its last change; 409 when there is none."""

    def apply(document: dict, entry: dict) -> Change:
        if stage not in document["stages"]:
            raise not_found("stage_not_found", f"model {model!r} has no stage {stage!r}")
        stack = list(entry["stack"])
        if stack:
            stack.pop()  # the version (or undeploy) in effect now
        while stack and stack[-1] is not None and document["versions"].get(str(stack[-1]), {}).get("state") != READY:
            stack.pop()  # versions deleted since cannot be restored
        if not stack:
            raise conflict("no_previous_version", f"stage {stage!r} of model {model!r} has no previous version")
        if stack[-1] is not None:
            runtime.refuse_deploy(model, stack[-1], document["versions"][str(stack[-1])].get("environment"))
        result = {"stage": stage, "version": stack[-1], "previous_version": entry.get("version")}
        entry["stack"] = stack
        _record(document, stage, entry, stack[-1], "rollback", actor)
        return Change(document, result)

    return _stage_change(model, stage, token, apply)


def clear_stage(model: str, stage: str, token: str | None = None, actor: Actor = INTERNAL_ACTOR) -> dict:
    """Undeploy: the stage serves nothing, its history remains (and a rollback restores it)."""

    def apply(document: dict, entry: dict) -> Change:
        if entry.get("version") is None:
            raise not_found("stage_not_deployed", f"stage {stage!r} of model {model!r} is not deployed")
        result = {"stage": stage, "version": None, "previous_version": entry["version"]}
        entry["stack"] = [*entry["stack"], None]
        _record(document, stage, entry, None, "undeploy", actor)
        return Change(document, result)

    return _stage_change(model, stage, token, apply)


# ---------------------------------------------------------------- models


def describe(document: dict) -> dict:
    versions = [summarize(v, document["versions"][str(v)]) for v in ready_versions(document)]
    stages = document["stages"]
    return {
        "name": document["model"],
        "latest_version": versions[-1]["version"] if versions else None,
        "versions": versions,
        "stages": {name: e["version"] for name, e in sorted(stages.items()) if e.get("version") is not None},
        "stage_history": {name: e["history"] for name, e in sorted(stages.items())},
        "jobs": [
            job_status(document["model"], int(n), e)
            for n, e in sorted(document["versions"].items(), key=lambda item: int(item[0]))
            if e["state"] in (*IN_PROGRESS, FAILED)
        ],
    }


def describe_model(model: str) -> dict:
    return describe(load(model))


def described_models() -> list[dict]:
    """`describe` of every visible model, read in parallel (a listing of many models is many small GETs)."""
    names = [n for n in (keys.model_from_prefix(p) for p in storage.list_folders(keys.MODELS)) if n]

    def fetch(name: str) -> dict | None:
        document = _read(name)
        return describe(document) if document is not None and _visible(document) else None

    if len(names) <= 2:
        fetched = [fetch(n) for n in names]
    else:
        with ThreadPoolExecutor(max_workers=min(8, len(names))) as pool:
            fetched = list(pool.map(fetch, names))
    return [m for m in fetched if m is not None]


def list_models() -> list[dict]:
    return [
        {"name": m["name"], "latest_version": m["latest_version"], "stages": m["stages"]} for m in described_models()
    ]
