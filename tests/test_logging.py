"""Logs carry what operators need (route outcome, model, version, row counts) and never the users' data."""

from __future__ import annotations

import io
import logging

import pytest


@pytest.fixture
def lambda_logs(api):
    """Everything the functions log (Powertools' JSON lines), as CloudWatch would receive it."""
    from mlservice.observability import logger  # noqa: F401 - the Logger owns the handlers swapped below

    buffer = io.StringIO()
    handlers = [h for h in logging.getLogger("mlservice").handlers if isinstance(h, logging.StreamHandler)]
    assert handlers, "the service logger has no stream handler"
    previous = [h.setStream(buffer) for h in handlers]
    yield buffer
    for handler, stream in zip(handlers, previous, strict=True):
        handler.setStream(stream)


def test_request_payloads_never_reach_the_logs(api, lambda_logs, capsys):
    marker_city, marker_value = "city-5f2e9c-secret", 987654.321
    records = [{"x": float(i), "city": marker_city if i % 2 else "other", "y": i % 2} for i in range(40)]
    created = api.post(
        "/models/private/versions", {"algorithm": "logistic_regression", "target": "y", "data": {"records": records}}
    )
    assert created.status == 201, created.body
    api.put("/models/private/stages/production", {"version": 1})
    predicted = api.post("/models/private/predict", {"instances": [{"x": marker_value, "city": marker_city}]})
    assert predicted.status == 200
    bad = api.post("/models/private/predict", {"instances": [{"x": "not-a-number-77e1", "city": marker_city}]})
    assert bad.status == 400
    logs = lambda_logs.getvalue() + capsys.readouterr().out  # log lines, and the metrics printed as EMF
    assert '"model":"private"' in logs  # the handlers do log, as structured JSON
    for secret in (marker_city, str(marker_value), "not-a-number-77e1"):
        assert secret not in logs
