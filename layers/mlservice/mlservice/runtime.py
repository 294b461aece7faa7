"""The library versions this function runs with, and whether an artifact was made by the same ones.

A pickle is code: unpickled by another scikit-learn (or numpy, or joblib) it may load with silently different
behaviour, or not at all. scikit-learn itself only warns (InconsistentVersionWarning) — on stderr, where no
client sees it. So every version records the versions it was trained with (metadata `environment`, copied
into its registry entry), a deploy refuses a version whose versions differ from the serving runtime's
(409 `incompatible_runtime`), and the loader refuses to unpickle one that got past that (500
`artifact_incompatible`), turning scikit-learn's warning into that error as well.

The versions are read from the installed distributions' metadata, not by importing the libraries, so the
registry function (which never imports scikit-learn) can check a deploy at no cost.
"""

from __future__ import annotations

import functools
from importlib import metadata

from mlservice.errors import ServiceError

# The libraries whose version changes what an unpickled pipeline is. Python's own version is recorded too,
# but pickles are portable across it.
PINNED = ("scikit-learn", "numpy", "joblib")


@functools.cache
def versions() -> dict[str, str]:
    """The serving runtime's version of each pinned library."""
    return {name: metadata.version(name) for name in PINNED}


def differences(environment: dict | None) -> list[str]:
    """`library trained-version → runtime-version` for every pinned library whose recorded version differs.
    A version recorded without an environment (made outside the service) has nothing to compare: [] —
    scikit-learn's own check at unpickling still applies."""
    if not environment:
        return []
    runtime = versions()
    return [
        f"{name} {environment.get(name)} (this runtime has {runtime[name]})"
        for name in PINNED
        if environment.get(name) != runtime[name]
    ]


def refuse_deploy(model: str, version: int, environment: dict | None) -> None:
    """409 `incompatible_runtime` when the version was trained with other library versions."""
    found = differences(environment)
    if found:
        raise ServiceError(
            "incompatible_runtime",
            f"version {version} of model {model!r} was trained with {', '.join(found)}; it cannot be served "
            "safely by this runtime: retrain it (POST /models/{model}/versions) and deploy the new version",
        )


def refuse_load(model: str, version: int, environment: dict | None) -> None:
    """500 `artifact_incompatible` for an artifact from another runtime that reached a loader anyway."""
    found = differences(environment)
    if found:
        raise ArtifactIncompatible(model, version, ", ".join(found))


class ArtifactIncompatible(ServiceError):
    """An artifact made by other library versions than this runtime's: it is not unpickled."""

    def __init__(self, model: str, version: int, found: str) -> None:
        super().__init__(
            "artifact_incompatible",
            f"version {version} of model {model!r} was made with {found}; it was not loaded. Retrain it",
        )
