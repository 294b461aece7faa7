"""Loaded models kept warm across invocations of one container.

Two caches with different lifetimes: models are cached by (name, version) — a version's artifact never
changes, so there is nothing to invalidate — and stages resolve to versions through a short TTL, so a deploy
is seen within `STAGE_CACHE_TTL_SECONDS` without reloading any artifact. A cached version is re-checked for
existence on the same TTL, so a deleted version stops being served as promptly as a redeployed stage.
Loads of one version are serialised by a per-key lock: concurrent first requests download it once.
"""

from __future__ import annotations

import io
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

from mlservice import keys, registry, storage
from mlservice.errors import not_found
from mlservice.settings import get_settings


@dataclass
class LoadedModel:
    name: str
    version: int
    metadata: dict
    pipeline: Any
    checked_at: float = field(default_factory=time.monotonic)

    @property
    def features(self) -> list[dict]:
        return self.metadata["features"]

    @property
    def classes(self) -> list | None:
        return self.metadata.get("target", {}).get("classes")

    @property
    def is_classifier(self) -> bool:
        return self.metadata.get("task") == "classification"

    @property
    def has_probabilities(self) -> bool:
        return self.is_classifier and hasattr(self.pipeline, "predict_proba")


def _unpickle(data: bytes) -> Any:
    import joblib  # imported on first load, not at cold start of routes that never load a model

    return joblib.load(io.BytesIO(data))


class ModelCache:
    """A small LRU of loaded models plus a TTL map of stage → version."""

    def __init__(self) -> None:
        self._models: OrderedDict[tuple[str, int], LoadedModel] = OrderedDict()
        self._stages: dict[tuple[str, str], tuple[int, float]] = {}
        self._lock = threading.Lock()
        self._loading: dict[tuple[str, int], threading.Lock] = {}

    def clear(self) -> None:
        with self._lock:
            self._models.clear()
            self._stages.clear()

    def resolve_stage(self, model: str, stage: str) -> int:
        ttl = get_settings().stage_cache_ttl
        now = time.monotonic()
        with self._lock:
            cached = self._stages.get((model, stage))
        if cached and now - cached[1] < ttl:
            return cached[0]
        version = registry.resolve_stage(model, stage)
        with self._lock:
            self._stages[(model, stage)] = (version, now)
        return version

    def get(self, model: str, version: int) -> LoadedModel:
        settings = get_settings()
        key = (model, version)
        with self._lock:
            loaded = self._models.get(key)
            if loaded is not None:
                self._models.move_to_end(key)
        if loaded is not None:
            if time.monotonic() - loaded.checked_at < settings.stage_cache_ttl:
                return loaded
            if storage.exists(keys.metadata_key(model, version)):
                loaded.checked_at = time.monotonic()
                return loaded
            with self._lock:
                self._models.pop(key, None)
            raise not_found("version_not_found", f"model {model!r} has no version {version}")
        with self._lock:
            gate = self._loading.setdefault(key, threading.Lock())
        with gate:
            with self._lock:
                loaded = self._models.get(key)
            if loaded is None:
                data, metadata = registry.load_verified_artifact(model, version)
                loaded = LoadedModel(model, version, metadata, _unpickle(data))
                with self._lock:
                    self._models[key] = loaded
                    while len(self._models) > max(1, settings.model_cache_size):
                        self._models.popitem(last=False)
        return loaded


cache = ModelCache()
