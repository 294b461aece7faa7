"""A model publishes nothing seen in fewer than MIN_GROUP_SIZE training rows (default 5): not in the training
response, the version's and model's descriptions, the listing, metadata.json, nor in the artifact itself.

Rare categories (missing included) become one shared token before the fit, TF-IDF keeps only terms of at
least MIN_GROUP_SIZE rows, numbers are summarised by percentiles with at least MIN_GROUP_SIZE rows on each
side, and a class that rare is refused (400 class_too_rare).
"""

from __future__ import annotations

import io
import json
import struct
import zlib
from typing import Any

import joblib
import numpy as np
import pytest
from conftest import BUCKET
from sklearn.model_selection import train_test_split

from mlservice.errors import ServiceError
from mlservice.features import RARE_CATEGORY, rows_to_matrix, rows_to_matrix_lenient
from mlservice.settings import get_settings
from mlservice.training.trainer import DEFAULT_TEST_SIZE, train

ROWS = 60
UNIQUE_EMAIL = "jane.unique-7f3a@example.org"
THREE_ROW_EMAIL = "trio-c41d@example.org"  # rare too: 3 rows < 5
FREQUENT_EMAILS = ["alice@example.com", "bob@example.com"]
UNIQUE_WORD = "zanzibarquux"
FREQUENT_WORD = "service"
UNIQUE_SALARY = 987654321.25
UNIQUE_SPEND = 123456789.75
UNIQUE_VALUES = [UNIQUE_EMAIL, THREE_ROW_EMAIL, UNIQUE_WORD, UNIQUE_SALARY, UNIQUE_SPEND]


def _training_rows() -> list[int]:
    """Row positions the trainer fits on (a regression split: not stratified, random_state 0)."""
    train_idx, _ = train_test_split(np.arange(ROWS), test_size=DEFAULT_TEST_SIZE, random_state=0)
    return sorted(int(i) for i in train_idx)


def _records() -> list[dict[str, Any]]:
    """A unique value in every column type, placed in the training part so the model did see it."""
    records = []
    for i in range(ROWS):
        records.append(
            {
                "email": FREQUENT_EMAILS[i % 2],
                "note": ["good service", "bad service", "slow service today"][i % 3],
                "salary": 30_000.0 + 500 * (i % 17),
                "spend": 100.0 + 3 * i + (20 if i % 2 else 0),
            }
        )
    fitted = _training_rows()
    unique, trio = fitted[0], fitted[1:4]
    records[unique].update(email=UNIQUE_EMAIL, note=f"good {UNIQUE_WORD} service", salary=UNIQUE_SALARY)
    records[unique]["spend"] = UNIQUE_SPEND
    for i in trio:
        records[i]["email"] = THREE_ROW_EMAIL
    return records


TRAIN_BODY = {"algorithm": "ridge", "target": "spend", "text_features": ["note"], "data": {"records": _records()}}


def _strings_of(value: Any) -> list[bytes]:
    """The spellings a value could have in JSON text or in a pickle (UTF-8 strings, numpy UTF-32 strings,
    a float's repr and its raw float64 bytes)."""
    if isinstance(value, float):
        return [repr(value).encode(), struct.pack("<d", value), struct.pack(">d", value)]
    return [value.encode(), value.encode("utf-32-le")]


def _leaks(blob: bytes) -> list[Any]:
    return [value for value in UNIQUE_VALUES if any(s in blob for s in _strings_of(value))]


@pytest.fixture
def trained(api: Any, aws: Any, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    monkeypatch.delenv("MIN_GROUP_SIZE", raising=False)
    created = api.post("/models/people/versions", TRAIN_BODY)
    assert created.status == 201, created.body
    return created.json()


def test_no_rare_value_is_published_anywhere_nor_kept_in_the_artifact(api: Any, aws: Any, trained: dict) -> None:
    assert api.put("/models/people/stages/production", {"version": 1}).status == 200
    answers = {
        "train response": json.dumps(trained).encode(),
        "GET version": api.get("/models/people/versions/1").body,
        "GET model": api.get("/models/people").body,
        "GET models": api.get("/models").body,
        "v2 metadata": api.get("/v2/models/people").body,
    }
    listed = aws.list_objects_v2(Bucket=BUCKET, Prefix="models/people/")["Contents"]
    metadata_key = next(o["Key"] for o in listed if o["Key"].endswith("/metadata.json"))
    answers["metadata.json"] = aws.get_object(Bucket=BUCKET, Key=metadata_key)["Body"].read()
    artifact = aws.get_object(Bucket=BUCKET, Key=trained["artifact"]["key"])["Body"].read()
    answers["artifact (decompressed pickle)"] = zlib.decompress(artifact)
    for where, blob in answers.items():
        blob = blob if isinstance(blob, bytes) else blob.encode()
        assert not _leaks(blob), f"{where} holds {_leaks(blob)}"

    # ...while what is frequent is there, so the checks above can fail
    for where in ("train response", "GET version", "metadata.json", "artifact (decompressed pickle)"):
        assert FREQUENT_EMAILS[0].encode() in answers[where], where
    assert FREQUENT_WORD.encode() in answers["artifact (decompressed pickle)"]
    assert UNIQUE_WORD.encode() not in answers["artifact (decompressed pickle)"]

    email = next(f for f in trained["features"] if f["name"] == "email")
    assert sorted(email["categories"]) == FREQUENT_EMAILS and email["rare_category"] == RARE_CATEGORY
    assert email["rare_rows"] == 4 and email["distinct"] == 4 and min(email["category_counts"]) >= 5
    salary = next(f for f in trained["features"] if f["name"] == "salary")
    assert not set(salary) & {"min", "max", "mean"} and not set(trained["target"]) & {"min", "max", "mean"}
    assert salary["percentiles"]["p50"] is not None and salary["percentiles"]["p95"] is None  # 48 rows < 100
    assert next(f for f in trained["features"] if f["name"] == "note")["terms"] == 5  # good bad service slow today


def test_a_rare_value_predicts_exactly_like_a_never_seen_one(api: Any, trained: dict) -> None:
    assert api.put("/models/people/stages/production", {"version": 1}).status == 200
    base = {"note": "good service", "salary": 40_000.0}
    rows = [
        {**base, "email": UNIQUE_EMAIL},
        {**base, "email": THREE_ROW_EMAIL},
        {**base, "email": "never.seen@example.net"},
        {**base, "email": None},  # missing in fewer than 5 training rows (none): the rare token too
        {**base, "email": FREQUENT_EMAILS[1]},
        {**base, "email": FREQUENT_EMAILS[1], "note": f"good service {UNIQUE_WORD}"},
        {**base, "email": FREQUENT_EMAILS[1], "note": "good service neverseenword"},
    ]
    predicted = api.post("/models/people/predict", {"instances": rows})
    assert predicted.status == 200, predicted.body
    values = predicted.json()["predictions"]
    assert values[0] == values[1] == values[2] == values[3]
    assert values[4] != values[0]  # a kept category is not the rare one: the comparison above can fail
    assert values[5] == values[6] == values[4]  # a rare word is no term: like an unseen word, ignored
    # the batch path builds its matrix with the same encoding
    features = trained["features"]
    names = [f["name"] for f in features]
    strict = rows_to_matrix([[row[n] for n in names] for row in rows[:4]], features)
    lenient, errors = rows_to_matrix_lenient([[row[n] for n in names] for row in rows[:4]], features)
    assert not errors and (lenient == strict).all()
    assert set(strict[:, names.index("email")].tolist()) == {RARE_CATEGORY}


def _classification(labels: list[str], **changes: Any) -> dict[str, Any]:
    rng = np.random.default_rng(3)
    rows = [[float(rng.normal()), ["x", "y"][i % 2], label] for i, label in enumerate(labels)]
    return {
        "algorithm": "logistic_regression",
        "target": "label",
        "data": {"columns": ["a", "b", "label"], "rows": rows},
        **changes,
    }


def test_a_class_in_fewer_than_min_group_size_training_rows_is_refused(api: Any, aws: Any) -> None:
    labels = ["common-a", "common-b"] * 28 + ["vip-member-x"] * 4
    refused = api.post("/models/classes/versions", _classification(labels))
    assert refused.status == 400, refused.body
    error = refused.json()["error"]
    assert error["code"] == "class_too_rare"
    assert "MIN_GROUP_SIZE (5)" in error["message"] and "1 of the 3 classes" in error["message"]
    assert b"vip-member-x" not in refused.body  # the refusal does not name the rare class either
    assert aws.list_objects_v2(Bucket=BUCKET, Prefix="models/classes/").get("KeyCount", 0) == 0

    # a class of exactly 5 rows, 4 of them in the training part after the stratified holdout: still refused
    labels = ["common-a", "common-b"] * 30 + ["vip-member-x"] * 5
    assert api.post("/models/classes/versions", _classification(labels)).json()["error"]["code"] == "class_too_rare"

    labels = ["common-a", "common-b"] * 30 + ["vip-member-x"] * 8  # 6-7 training rows
    created = api.post("/models/classes/versions", _classification(labels))
    assert created.status == 201, created.body
    target = created.json()["target"]
    assert target["classes"] == ["common-a", "common-b", "vip-member-x"] and min(target["class_counts"]) >= 5


def test_min_group_size_is_configurable_and_changes_what_is_published(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MIN_GROUP_SIZE", "3")
    _, metadata = train(TRAIN_BODY)
    email = next(f for f in metadata["features"] if f["name"] == "email")
    assert THREE_ROW_EMAIL in email["categories"] and UNIQUE_EMAIL not in email["categories"]
    assert email["rare_rows"] == 1
    assert metadata["preprocessing"]["categorical"].startswith("one-hot of the categories in at least 3 ")

    monkeypatch.setenv("MIN_GROUP_SIZE", "1")  # 1: nothing is rare
    _, metadata = train(TRAIN_BODY)
    email = next(f for f in metadata["features"] if f["name"] == "email")
    assert UNIQUE_EMAIL in email["categories"] and email["rare_rows"] == 0

    monkeypatch.setenv("MIN_GROUP_SIZE", "30")  # 48 training rows: only the two halves of email are kept
    _, metadata = train(TRAIN_BODY)
    by_name = {f["name"]: f for f in metadata["features"]}
    assert by_name["email"]["categories"] == [] and by_name["email"]["rare_rows"] == 48
    assert by_name["note"]["terms"] == 1  # "service", in every row
    assert set(by_name["salary"]["percentiles"].values()) == {None}  # p50 needs 60 rows here
    assert set(metadata["target"]["percentiles"].values()) == {None}

    for bad in ("0", "-1", "five"):
        monkeypatch.setenv("MIN_GROUP_SIZE", bad)
        with pytest.raises(ServiceError) as caught:
            get_settings()
        assert (caught.value.code, "MIN_GROUP_SIZE" in caught.value.message) == ("configuration_error", True)


def test_percentiles_need_min_group_size_rows_on_each_side() -> None:
    rows = [[float(i), 2.0 * i + (i % 3)] for i in range(125)]  # 100 training rows
    _, metadata = train(
        {"algorithm": "linear_regression", "target": "y", "data": {"columns": ["x", "y"], "rows": rows}}
    )
    x = metadata["features"][0]["percentiles"]
    assert list(x) == ["p5", "p25", "p50", "p75", "p95"] and None not in x.values()  # 100 × 5 % = 5 rows
    assert 0 < x["p5"] < x["p25"] < x["p50"] < x["p75"] < x["p95"] < 124
    _, metadata = train(
        {"algorithm": "linear_regression", "target": "y", "data": {"columns": ["x", "y"], "rows": rows[:30]}}
    )
    x = metadata["features"][0]["percentiles"]  # 24 training rows: p25/p75 have 6 rows beyond them, p5/p95 1
    assert x["p5"] is None and x["p95"] is None and None not in (x["p25"], x["p50"], x["p75"])
    assert metadata["target"]["percentiles"]["p5"] is None


def _text_request(notes: list[str]) -> dict[str, Any]:
    records = [{"note": note, "n": float(i % 7), "y": ["up", "down"][i % 2]} for i, note in enumerate(notes)]
    return {"algorithm": "logistic_regression", "target": "y", "text_features": ["note"], "data": {"records": records}}


def test_text_keeps_only_terms_of_min_group_size_rows() -> None:
    # "common" in every row, "pair<k>" in 2 rows each, "solo<i>" in one: only "common" is kept
    notes = [f"common pair{i // 2} solo{i}" for i in range(40)]
    artifact, metadata = train(_text_request(notes))
    vectorizer = joblib.load(io.BytesIO(artifact)).named_steps["preprocess"].named_transformers_["text_0"]
    assert vectorizer.min_df == 5 and set(vectorizer.vocabulary_) == {"common"}
    assert not hasattr(vectorizer, "stop_words_")  # no record of the pruned terms either
    assert metadata["features"][0]["terms"] == 1
    blob = zlib.decompress(artifact)
    assert b"common" in blob and b"pair1" not in blob and b"solo7" not in blob


def test_text_without_a_term_of_min_group_size_rows_is_a_clear_400(monkeypatch: pytest.MonkeyPatch) -> None:
    notes = [f"pair{i // 2} solo{i}" for i in range(40)]
    with pytest.raises(ServiceError) as caught:
        train(_text_request(notes))
    assert (caught.value.status, caught.value.code) == (400, "invalid_features")
    assert "'note'" in caught.value.message and "MIN_GROUP_SIZE" in caught.value.message
    assert "pair" not in caught.value.message and "solo" not in caught.value.message
    monkeypatch.setenv("MIN_GROUP_SIZE", "2")
    assert train(_text_request(notes))[1]["features"][0]["terms"] > 0


def test_the_rare_token_cannot_collide_with_a_clients_value() -> None:
    """A client's own "__rare__" (even spaced like the token) is an ordinary category, kept when frequent."""
    records = [{"c": ["__rare__", " __rare__ ", "plain"][i % 3], "x": float(i), "y": i % 2} for i in range(30)]
    records[0]["c"] = "solo-value"
    artifact, metadata = train({"algorithm": "logistic_regression", "target": "y", "data": {"records": records}})
    feature = metadata["features"][0]
    assert set(feature["categories"]) == {"__rare__", "plain"} and RARE_CATEGORY not in feature["categories"]
    matrix = rows_to_matrix([[" __rare__ ", 1.0], ["solo-value", 1.0], ["other", 1.0]], metadata["features"])
    assert matrix[:, 0].tolist() == ["__rare__", RARE_CATEGORY, RARE_CATEGORY]
    encoder = joblib.load(io.BytesIO(artifact)).named_steps["preprocess"].named_transformers_["categorical"]
    assert sorted(encoder.categories_[0].tolist()) == sorted(["__rare__", "plain", RARE_CATEGORY])


def test_missing_is_a_category_only_when_min_group_size_rows_miss_a_value() -> None:
    records = [{"c": ["a", "b", None][i % 3], "x": float(i), "y": i % 2} for i in range(30)]
    _, metadata = train({"algorithm": "logistic_regression", "target": "y", "data": {"records": records}})
    assert set(metadata["features"][0]["categories"]) == {"a", "b", ""}
    for record in records[5:]:
        record["c"] = record["c"] or "a"
    _, metadata = train({"algorithm": "logistic_regression", "target": "y", "data": {"records": records}})
    feature = metadata["features"][0]
    assert "" not in feature["categories"] and feature["missing"] >= 1
    assert rows_to_matrix([[None, 1.0]], metadata["features"])[0, 0] == RARE_CATEGORY


def test_a_schema_without_a_rare_token_passes_values_through() -> None:
    """Models trained before rare categories were pooled keep their old encoding."""
    old = [{"name": "c", "kind": "categorical", "missing": 0, "distinct": 2, "categories": ["a", "b"]}]
    assert rows_to_matrix([["zzz"], [None]], old)[:, 0].tolist() == ["zzz", ""]


@pytest.mark.parametrize(
    ("algorithm", "hyperparameters"),
    [
        ("decision_tree", {"min_samples_leaf": 1}),
        ("random_forest", {"n_estimators": 5, "bootstrap": False}),
        ("gradient_boosting", {"n_estimators": 5, "learning_rate": 1.0}),
        ("knn", {"n_neighbors": 1}),
    ],
)
def test_no_prediction_rests_on_fewer_rows_than_the_minimum_group(algorithm, hyperparameters):
    """A leaf or a neighbourhood of one row would answer with that row's own target: the leaf size and the
    neighbour count are raised to MIN_GROUP_SIZE (and the metadata says so)."""
    import io
    import random

    import joblib

    from mlservice.features import rows_to_matrix
    from mlservice.training.trainer import train

    draw = random.Random(7)
    rows = [[float(i), float(i % 7), round(draw.uniform(0, 1e6), 3)] for i in range(60)]
    artifact, metadata = train(
        {
            "algorithm": algorithm,
            "task": "regression",
            "target": "y",
            "hyperparameters": hyperparameters,
            "data": {"columns": ["a", "b", "y"], "rows": rows},
        }
    )
    name = "n_neighbors" if algorithm == "knn" else "min_samples_leaf"
    assert metadata["hyperparameters"][name] == 5
    assert any(f"{name} raised" in w and "MIN_GROUP_SIZE" in w for w in metadata["training"]["warnings"])
    pipeline = joblib.load(io.BytesIO(artifact))
    predicted = pipeline.predict(rows_to_matrix([r[:2] for r in rows], metadata["features"]))
    targets = {r[2] for r in rows}
    assert not any(round(float(p), 3) in targets for p in predicted), "a prediction equals one row's exact target"
