"""Loaded models kept warm across invocations of one container, and the registry copies that route to them.

Two caches with different lifetimes. Models are cached by (name, version): a version's artifact never
changes (a cached model is still checked against the digest the registry records, which is free). Each model's registry document (stage pointers, which versions
are live, their digests) is re-read after `STAGE_CACHE_TTL_SECONDS`, so a deploy, rollback or delete reaches
every warm container within that time without reloading any artifact.

Stale-if-error: when the registry cannot be re-read because S3 is unavailable, the last copy keeps being used
for up to `STALE_IF_ERROR_SECONDS`, and the selection says how old it is (the API puts that in a response
header), so a short S3 outage does not take prediction down with it. Loads of one version are serialised by
a per-key lock: concurrent first requests download it once.
"""

from __future__ import annotations

import io
import threading
import time
import warnings
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from mlservice import registry, runtime
from mlservice.errors import IntegrityError, ServiceError, StorageUnavailable
from mlservice.serving import fallback, gc_policy
from mlservice.serving.runners import Runner, SklearnRunner
from mlservice.settings import get_settings

REGISTRY_COPIES = 256


@dataclass
class LoadedModel:
    name: str
    version: int
    metadata: dict
    runner: Runner
    sha256: str

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
        return self.runner.has_probabilities


@dataclass(frozen=True)
class Selection:
    """The model a request addresses, the stage it came through (None when pinned by version), the registry
    document that chose it, and how many seconds old that copy was when S3 could not be reached (None when it
    was fresh)."""

    loaded: LoadedModel
    stage: str | None
    registry: dict
    stale_seconds: float | None


def _unpickle(model: str, version: int, data: bytes, environment: dict | None) -> Any:
    """The pipeline, only when it was made by this runtime's library versions (mlservice.runtime): checked
    from the recorded environment before unpickling, and by scikit-learn's own version stamp during it."""
    runtime.refuse_load(model, version, environment)
    import joblib  # imported on first load, not at cold start of routes that never load a model
    from sklearn.exceptions import InconsistentVersionWarning

    with warnings.catch_warnings():
        warnings.simplefilter("error", InconsistentVersionWarning)
        try:
            return joblib.load(io.BytesIO(data))
        except InconsistentVersionWarning as warning:
            found = (
                f"scikit-learn {warning.original_sklearn_version} (this runtime has {warning.current_sklearn_version})"
            )
            raise runtime.ArtifactIncompatible(model, version, found) from None


def _runner(model: str, version: int, entry: dict, onnx_ok: bool = True) -> tuple[dict, Runner]:
    """The version's metadata and the runner that serves it: its ONNX export where it has one (onnxruntime, no
    scikit-learn), else its pickled pipeline — which a function without scikit-learn hands to its fallback.
    `onnx_ok=False` always loads the pipeline (explanations read its coefficients and trees)."""
    if entry.get("onnx_sha256") and onnx_ok:
        from mlservice.serving.onnx_runner import OnnxRunner  # onnxruntime: imported on the first load

        data, metadata = registry.load_verified_artifact(model, version, entry, onnx=True)
        return metadata, OnnxRunner(
            data, metadata["features"], metadata["task"], metadata.get("target", {}).get("classes")
        )
    if not fallback.has_scikit_learn():
        raise fallback.NeedsScikitLearn(model, version)
    data, metadata = registry.load_verified_artifact(model, version, entry)
    environment = entry.get("environment") or metadata.get("environment")
    pipeline = _unpickle(model, version, data, environment)
    return metadata, SklearnRunner(pipeline, metadata.get("task") == "classification")


class ModelCache:
    """A small LRU of loaded models plus a TTL copy of each model's registry document."""

    def __init__(self) -> None:
        # (model, version, whether an ONNX export may serve it) → the loaded model
        self._models: OrderedDict[tuple[str, int, bool], LoadedModel] = OrderedDict()
        # model → (document, when it was read, when S3 was last asked): a failed re-read is not retried on
        # every request, only once per TTL, while the copy ages.
        self._registries: OrderedDict[str, tuple[dict, float, float]] = OrderedDict()
        self._lock = threading.Lock()
        self._loading: dict[tuple[str, int, bool], threading.Lock] = {}

    def clear(self) -> None:
        with self._lock:
            self._models.clear()
            self._registries.clear()

    def _copy(self, model: str, fresh: bool = False) -> tuple[dict, float | None, bool]:
        """The model's registry document; the age of the copy used when S3 failed (else None); and whether it
        was read just now. `fresh` re-reads it even within the TTL."""
        settings = get_settings()
        now = time.monotonic()
        with self._lock:
            cached = self._registries.get(model)
        usable = cached is not None and now - cached[1] < settings.stale_if_error_seconds
        if cached is not None and now - cached[2] < settings.stage_cache_ttl and not fresh:
            document, read_at, asked_at = cached
            if read_at == asked_at:
                return document, None, False
            if usable:  # S3 failed on the last re-read, less than a TTL ago: do not ask again yet
                return document, now - read_at, False
        try:
            document = registry.load(model, quick=usable)
        except StorageUnavailable:
            if not usable:
                raise
            with self._lock:
                self._registries[model] = (cached[0], cached[1], now)
            return cached[0], now - cached[1], False
        self._remember(model, (document, now, now))
        return document, None, True

    def _remember(self, model: str, copy: tuple[dict, float, float]) -> None:
        with self._lock:
            self._registries[model] = copy
            self._registries.move_to_end(model)
            while len(self._registries) > REGISTRY_COPIES:
                self._registries.popitem(last=False)

    def select(self, model: str, stage: str | None, version: int | None, onnx_ok: bool = True) -> Selection:
        """The loaded model for a stage (or a pinned version) of a model, as its registry says now; with
        `onnx_ok=False` its scikit-learn pipeline even when an ONNX export exists.

        A copy is trusted only for what it finds: when a cached one names no such stage or version (a new
        deployment), or points at a version whose artifact is gone (deleted since the copy was read), the
        registry is read again at once and that answer stands: 404 if the version was deleted, 500
        artifact_integrity if the registry still says it is there."""
        document, stale, fresh = self._copy(model)
        reread = False
        while True:
            try:
                served = version if version is not None else registry.resolve_stage(document, str(stage))
                entry = registry.ready_entry(document, model, served)
                return Selection(self._load(model, served, entry, onnx_ok), stage, document, stale)
            except ServiceError as error:
                # An artifact that is gone may have been deleted since even a fresh copy was read.
                outdated = isinstance(error, IntegrityError) or (error.status == 404 and not fresh)
                if reread or stale is not None or not outdated:
                    raise
                reread = True
                document, stale, fresh = self._copy(model, fresh=True)

    def _load(self, model: str, version: int, entry: dict, onnx_ok: bool = True) -> LoadedModel:
        key = (model, version, onnx_ok)
        with self._lock:
            loaded = self._models.get(key)
            if loaded is not None and loaded.sha256 == entry["sha256"]:
                self._models.move_to_end(key)
                return loaded
            gate = self._loading.setdefault(key, threading.Lock())
        with gate:
            with self._lock:
                loaded = self._models.get(key)
            if loaded is None or loaded.sha256 != entry["sha256"]:
                loaded = LoadedModel(model, version, *_runner(model, version, entry, onnx_ok), entry["sha256"])
                with self._lock:
                    self._models[key] = loaded
                    while len(self._models) > max(1, get_settings().model_cache_size):
                        self._models.popitem(last=False)
                gc_policy.after_model_loaded()  # the model lives as long as the container: out of the GC's scans
        return loaded


cache = ModelCache()
