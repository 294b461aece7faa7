"""The model registry: versions, stages and their history, all in S3 with atomic writes.

Why conditional writes and not a database: S3 is the one store every function already has, and since
2024 it supports `IfNoneMatch="*"` (create only if absent) and `IfMatch=<etag>` (replace only if
unchanged). Version numbers are claimed with the first, so parallel trainings never share a number;
stage documents are read-modify-written with the second, so parallel deploys never lose an update.
A version becomes visible only when its metadata exists, and the metadata is written after the artifact,
so a reader never sees a version whose artifact is missing or partial.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

from mlservice import keys, storage
from mlservice.errors import IntegrityError, ServiceError, WriteConflict, conflict, not_found

MAX_ATTEMPTS = 60
HISTORY_LIMIT = 1000


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _backoff(attempt: int) -> None:
    time.sleep(random.uniform(0, min(0.2, 0.005 * 2**attempt)))


def _contention(what: str) -> ServiceError:
    return ServiceError(503, "write_contention", f"too many concurrent writers on {what}; retry the request")


# ---------------------------------------------------------------- versions


def _claimed_versions(model: str) -> list[int]:
    found = (keys.version_from_prefix(p) for p in storage.list_folders(keys.versions_prefix(model)))
    return sorted(v for v in found if v is not None)


def _claim_next_version(model: str) -> int:
    """Reserve the next free version number with a create-only-if-absent write."""
    claimed = _claimed_versions(model)
    candidate = (claimed[-1] if claimed else 0) + 1
    for attempt in range(MAX_ATTEMPTS):
        try:
            storage.put_json(keys.claim_key(model, candidate), {"claimed_at": now_iso()}, if_none_match=True)
            return candidate
        except WriteConflict:
            candidate += 1
            if attempt % 8 == 7:  # many racers: re-list rather than walk one number at a time
                claimed = _claimed_versions(model)
                candidate = max(candidate, (claimed[-1] if claimed else 0) + 1)
    raise _contention(f"model {model!r}")


def publish_version(model: str, artifact: bytes, metadata: dict[str, Any], artifact_format: str = "joblib") -> dict:
    """Store a trained model as the next version and return its complete metadata."""
    keys.validate_name(model, "model")
    version = _claim_next_version(model)
    artifact_key = keys.artifact_key(model, version)
    storage.put_bytes(artifact_key, artifact)
    complete = {
        **metadata,
        "name": model,
        "version": version,
        "artifact": {
            "key": artifact_key,
            "sha256": storage.sha256_hex(artifact),
            "bytes": len(artifact),
            "format": artifact_format,
        },
        "created_at": now_iso(),
    }
    storage.put_json(keys.metadata_key(model, version), complete, if_none_match=True)
    return complete


def get_version(model: str, version: int) -> dict:
    """The metadata of one version; 404 `version_not_found` when it does not exist (or was deleted)."""
    keys.validate_name(model, "model")
    keys.validate_version(version)
    found = storage.get_json(keys.metadata_key(model, version))
    if found is None:
        raise not_found("version_not_found", f"model {model!r} has no version {version}")
    return found[0]


def visible_versions(model: str) -> list[int]:
    versions = []
    for obj in storage.list_keys(keys.versions_prefix(model)):
        if obj["Key"].endswith("/metadata.json"):
            version = keys.version_from_prefix(obj["Key"].rsplit("/", 1)[0])
            if version is not None:
                versions.append(version)
    return sorted(versions)


def summarize(metadata: dict) -> dict:
    """The short form of a version used in listings."""
    return {
        "version": metadata["version"],
        "algorithm": metadata.get("algorithm"),
        "task": metadata.get("task"),
        "metrics": metadata.get("metrics", {}),
        "created_at": metadata.get("created_at"),
        "description": metadata.get("description"),
        "artifact_bytes": metadata.get("artifact", {}).get("bytes"),
    }


def _fetch_all(items: list, fetch: Callable[[Any], Any]) -> list:
    if len(items) <= 2:
        return [fetch(i) for i in items]
    with ThreadPoolExecutor(max_workers=min(8, len(items))) as pool:
        return list(pool.map(fetch, items))


def list_version_summaries(model: str) -> list[dict]:
    def fetch(version: int) -> dict | None:
        found = storage.get_json(keys.metadata_key(model, version))
        return summarize(found[0]) if found else None

    return [s for s in _fetch_all(visible_versions(model), fetch) if s is not None]


def delete_version(model: str, version: int) -> None:
    """Remove a version that no stage serves: metadata first (it disappears), then the artifact.

    The claim stays behind as a tombstone so the number is never handed out again. Known gap: the in-use check
    and the delete are two steps, so a deploy of this very version landing between them would point a stage at
    a deleted version (predict then answers 404 version_not_found, and a rollback skips it); closing it needs a
    per-version lock object, left for when deletes and deploys of one version really race.
    """
    get_version(model, version)
    in_use = sorted(stage for stage, v in deployed_stages(model).items() if v == version)
    if in_use:
        raise conflict(
            "version_in_use",
            f"version {version} of model {model!r} is deployed to stage(s) {', '.join(in_use)}; undeploy it first",
        )
    storage.delete(keys.metadata_key(model, version))
    storage.delete(keys.artifact_key(model, version))


def load_verified_artifact(model: str, version: int) -> tuple[bytes, dict]:
    """The artifact's bytes and metadata, after checking the bytes against the recorded SHA-256."""
    metadata = get_version(model, version)
    artifact = metadata.get("artifact", {})
    data = storage.get_bytes(artifact.get("key", keys.artifact_key(model, version)))
    if data is None:
        raise IntegrityError(f"the artifact of model {model!r} version {version} is missing")
    if storage.sha256_hex(data) != artifact.get("sha256"):
        raise IntegrityError(
            f"the artifact of model {model!r} version {version} does not match its recorded SHA-256; refusing to load it"
        )
    return data, metadata


# ---------------------------------------------------------------- stages


def _stage_names(model: str) -> list[str]:
    names = []
    for obj in storage.list_keys(keys.stages_prefix(model)):
        name = obj["Key"].rsplit("/", 1)[-1]
        if name.endswith(".json"):
            names.append(name[: -len(".json")])
    return sorted(names)


def get_stage_document(model: str, stage: str) -> dict | None:
    found = storage.get_json(keys.stage_key(model, stage))
    return found[0] if found else None


def _stage_documents(model: str) -> dict[str, dict]:
    names = _stage_names(model)
    docs = _fetch_all(names, lambda name: get_stage_document(model, name))
    return {name: doc for name, doc in zip(names, docs, strict=True) if doc is not None}


def deployed_stages(model: str) -> dict[str, int]:
    """stage → version for every stage currently serving a version."""
    return {name: doc["version"] for name, doc in _stage_documents(model).items() if doc.get("version") is not None}


def resolve_stage(model: str, stage: str) -> int:
    """The version a stage serves; 404 `stage_not_deployed` when it serves none."""
    keys.validate_name(model, "model")
    keys.validate_name(stage, "stage")
    doc = get_stage_document(model, stage)
    if doc is None or doc.get("version") is None:
        if doc is None and not storage.has_prefix(keys.model_prefix(model)):
            raise not_found("model_not_found", f"model {model!r} does not exist")
        raise not_found("stage_not_deployed", f"stage {stage!r} of model {model!r} is not deployed")
    return int(doc["version"])


def _update_stage(model: str, stage: str, change: Callable[[dict], dict | None]) -> dict:
    """Read-modify-write the stage document with `IfMatch`, retrying when another writer got there first.

    `change` gets a copy of the current document and returns the new one (or None for "no change").
    """
    for attempt in range(MAX_ATTEMPTS):
        found = storage.get_json(keys.stage_key(model, stage))
        current, etag = found if found else ({"stage": stage, "version": None, "stack": [], "history": []}, None)
        updated = change({**current, "stack": list(current["stack"]), "history": list(current["history"])})
        if updated is None:
            return current
        updated["history"] = updated["history"][-HISTORY_LIMIT:]
        updated["stack"] = updated["stack"][-HISTORY_LIMIT:]
        updated["updated_at"] = now_iso()
        try:
            if etag is None:
                storage.put_json(keys.stage_key(model, stage), updated, if_none_match=True)
            else:
                storage.put_json(keys.stage_key(model, stage), updated, if_match=etag)
            return updated
        except WriteConflict:
            _backoff(attempt)
    raise _contention(f"stage {stage!r} of model {model!r}")


def _record(doc: dict, to: int | None, action: str) -> dict:
    doc["history"].append({"time": now_iso(), "from": doc.get("version"), "to": to, "action": action})
    doc["version"] = to
    return doc


def set_stage(model: str, stage: str, version: int) -> dict:
    """Point a stage at a version (deploy). Returns the stage, the version and the one it replaced."""
    keys.validate_name(model, "model")
    keys.validate_name(stage, "stage")
    get_version(model, version)
    previous: dict[str, int | None] = {}

    def change(doc: dict) -> dict | None:
        previous["version"] = doc.get("version")
        if doc.get("version") == version:
            return None
        doc["stack"].append(version)
        return _record(doc, version, "deploy")

    _update_stage(model, stage, change)
    return {"stage": stage, "version": version, "previous_version": previous["version"]}


def rollback_stage(model: str, stage: str) -> dict:
    """Return a stage to the version it served before its last change; 409 when there is none."""
    keys.validate_name(model, "model")
    keys.validate_name(stage, "stage")
    if get_stage_document(model, stage) is None:
        raise not_found("stage_not_found", f"model {model!r} has no stage {stage!r}")
    existing = set(visible_versions(model))
    previous: dict[str, int | None] = {}

    def change(doc: dict) -> dict:
        stack = doc["stack"]
        previous["version"] = doc.get("version")
        if stack:
            stack.pop()  # the version (or undeploy) in effect now
        while stack and stack[-1] is not None and stack[-1] not in existing:
            stack.pop()  # versions deleted since cannot be restored
        if not stack:
            raise conflict("no_previous_version", f"stage {stage!r} of model {model!r} has no previous version")
        return _record(doc, stack[-1], "rollback")

    updated = _update_stage(model, stage, change)
    return {"stage": stage, "version": updated["version"], "previous_version": previous["version"]}


def clear_stage(model: str, stage: str) -> None:
    """Undeploy: the stage serves nothing, its history remains (and a rollback restores it)."""
    keys.validate_name(model, "model")
    keys.validate_name(stage, "stage")
    doc = get_stage_document(model, stage)
    if doc is None or doc.get("version") is None:
        raise not_found("stage_not_deployed", f"stage {stage!r} of model {model!r} is not deployed")

    def change(doc: dict) -> dict | None:
        if doc.get("version") is None:
            return None
        doc["stack"].append(None)
        return _record(doc, None, "undeploy")

    _update_stage(model, stage, change)


# ---------------------------------------------------------------- models


def describe_model(model: str) -> dict:
    keys.validate_name(model, "model")
    versions = list_version_summaries(model)
    stages = _stage_documents(model)
    if not versions and not stages:
        raise not_found("model_not_found", f"model {model!r} does not exist")
    return {
        "name": model,
        "latest_version": versions[-1]["version"] if versions else None,
        "versions": versions,
        "stages": {name: doc["version"] for name, doc in stages.items() if doc.get("version") is not None},
        "stage_history": {name: doc["history"] for name, doc in stages.items()},
    }


def list_models() -> list[dict]:
    names = [p[len(keys.MODELS) :].rstrip("/") for p in storage.list_folders(keys.MODELS)]

    def fetch(name: str) -> dict | None:
        versions = visible_versions(name)
        stages = deployed_stages(name)
        if not versions and not stages:
            return None
        return {"name": name, "latest_version": versions[-1] if versions else None, "stages": stages}

    return [m for m in _fetch_all(names, fetch) if m is not None]
