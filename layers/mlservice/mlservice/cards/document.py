"""The content of a model card and of the front page, as data: what `?format=json` returns and what
mlservice.cards.render draws.

A card is assembled from what training stored with the version (its metadata, whose `evaluation` holds every
chart's data) and the registry document (digests, the stages serving the version, their history): two reads,
no computation and no scikit-learn. Everything in it was already privacy-filtered when it was stored
(mlservice.training.evaluation and preprocessing): no value of fewer than MIN_GROUP_SIZE training rows.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from mlservice import keys, registry, storage
from mlservice.errors import IntegrityError

# What the card shows of the metadata, as stored.
_COPIED = (
    "description",
    "algorithm",
    "task",
    "created_at",
    "created_by",
    "hyperparameters",
    "target",
    "features",
    "training",
    "metrics",
    "feature_importance",
    "evaluation",
    "serving",
    "environment",
    "preprocessing",
)


def _history_of(document: dict, version: int) -> list[dict]:
    """Every stage change that moved a stage to or away from this version, newest first."""
    changes = [
        {"stage": stage, **change}
        for stage, entry in document["stages"].items()
        for change in entry.get("history", [])
        if version in (change.get("from"), change.get("to"))
    ]
    return sorted(changes, key=lambda change: change.get("time") or "", reverse=True)


def card(model: str, version: int) -> dict[str, Any]:
    """The card of a ready version; 404 model_not_found / version_not_found like GET .../versions/{v}."""
    keys.validate_name(model, "model")
    keys.validate_version(version)
    document = registry.load(model)
    entry = registry.ready_entry(document, model, version)
    found = storage.get_json(keys.metadata_key(model, version))
    if found is None:
        registry.ready_entry(registry.load(model), model, version)  # deleted since: a 404
        raise IntegrityError(f"the metadata of model {model!r} version {version} is missing")
    metadata = found[0]
    path = f"/models/{quote(model)}"
    result: dict[str, Any] = {"model": model, "version": version, "status": entry.get("state")}
    result.update({name: metadata.get(name) for name in _COPIED})
    result["stages"] = sorted(name for name, e in document["stages"].items() if e.get("version") == version)
    result["digests"] = {
        "model.joblib": entry.get("sha256"),
        "model.onnx": entry.get("onnx_sha256"),
        "training data": (metadata.get("training") or {}).get("sha256"),
    }
    result["stage_history"] = _history_of(document, version)
    result["links"] = {
        "home": "/",
        "docs": "/docs",
        "json": f"{path}/versions/{version}/card?format=json",
        "version": f"{path}/versions/{version}",
        "predict": f"{path}/predict?version={version}",
        "explain": f"{path}/explain?version={version}",
    }
    return result


def models_overview() -> list[dict[str, Any]]:
    """Every visible model with its ready versions (newest first) and the stage each serves: the front page."""
    overview = [
        {
            "name": m["name"],
            "latest_version": m["latest_version"],
            "stages": m["stages"],
            "versions": list(reversed(m["versions"])),
        }
        for m in registry.described_models()
    ]
    return sorted(overview, key=lambda m: m["name"])
