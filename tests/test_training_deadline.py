"""A training is stopped at its deadline — cleanly: the client gets 504 `training_timeout`, nothing is
published, and no process is left behind — because the fit runs in a child process the service can kill."""

from __future__ import annotations

import os
import time

import pytest
from conftest import s3_snapshot

from mlservice.errors import ServiceError
from mlservice.training import deadline

SLOW = {
    "algorithm": "random_forest",
    "data": {"dataset": "digits"},
    "hyperparameters": {"n_estimators": 500, "max_depth": None},
    "cv": 10,
}


def _children() -> set[int]:
    """Child processes of this one (from /proc: works without psutil)."""
    mine = str(os.getpid())
    found = set()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as stat:
                    fields = stat.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if fields[1] == mine:
                found.add(int(entry))
    return found


def test_a_fit_past_its_deadline_is_504_and_publishes_nothing(api, aws, runtime, monkeypatch):
    monkeypatch.setitem(runtime.substitutions, "TRAINING_DEADLINE_SECONDS", "1")
    monkeypatch.setitem(runtime.substitutions, "TRAINING_BUDGET_SECONDS", "100000")  # let the estimate through
    before, children = s3_snapshot(aws), _children()
    started = time.monotonic()
    response = api.post("/models/slow/versions", SLOW)
    assert response.status == 504, response.body
    error = response.json()["error"]
    assert error["code"] == "training_timeout" and "nothing was published" in error["message"]
    assert time.monotonic() - started < 60  # stopped, not run to the end (the fit alone takes minutes)
    assert s3_snapshot(aws) == before
    assert api.get("/models/slow").status == 404
    assert _children() <= children  # the killed fit was reaped


def test_the_child_returns_results_and_errors_like_a_call():
    assert deadline.run(lambda: ("artifact", {"rows": 3}), 30) == ("artifact", {"rows": 3})
    with pytest.raises(ServiceError) as error:
        deadline.run(lambda: (_ for _ in ()).throw(ServiceError("training_failed", "no")), 30)
    assert (error.value.code, error.value.message) == ("training_failed", "no")
    with pytest.raises(deadline.ChildCrashed, match="ZeroDivisionError"):
        deadline.run(lambda: 1 / 0, 30)


def test_a_large_result_comes_back_whole():
    payload = os.urandom(20 * 1024 * 1024)
    assert deadline.run(lambda: payload, 60) == payload


def test_a_child_that_never_finishes_is_killed_at_the_deadline():
    children = _children()
    with pytest.raises(ServiceError) as error:
        deadline.run(lambda: time.sleep(600), 0.5, total=0.5)
    assert error.value.code == "training_timeout"
    assert _children() <= children


def test_a_fit_killed_for_memory_is_a_400_not_a_crash():
    """The kernel's out-of-memory killer sends SIGKILL to the biggest process: the fit, not the function."""

    def eat_memory_and_get_killed() -> None:
        os.kill(os.getpid(), 9)

    with pytest.raises(ServiceError) as error:
        deadline.run(eat_memory_and_get_killed, 30)
    assert error.value.code == "training_too_expensive" and "memory" in error.value.message
