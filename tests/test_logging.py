"""Logs carry what operators need (route outcome, model, version, row counts) and never the users' data."""

from __future__ import annotations


def test_request_payloads_never_reach_the_logs(api, capsys):
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
    logs = capsys.readouterr().out
    assert '"model":"private"' in logs  # the handlers do log, as structured JSON
    for secret in (marker_city, str(marker_value), "not-a-number-77e1"):
        assert secret not in logs
