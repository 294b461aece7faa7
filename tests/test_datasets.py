"""Datasets (POST /datasets …): created through the API, uploaded for real through the presigned URLs it hands
out (a moto S3 server on 127.0.0.1 that the service and urllib both talk to), profiled, trained on, erased."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import math
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from conftest import BUCKET, Api

from mlservice import dataset_profile, dataset_store

MiB = 1024 * 1024


@pytest.fixture(scope="module")
def s3_server() -> Iterator[Any]:
    from local.embedded_s3 import EmbeddedS3

    server = EmbeddedS3().start()
    yield server
    server.stop()


@pytest.fixture
def s3(s3_server: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """A real S3 endpoint (moto's server, in this process) with the service's versioned bucket; the service's
    clients point at it, so presigned URLs are usable with plain HTTP."""
    import boto3
    from moto.backends import get_backend

    from mlservice import storage

    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", s3_server.endpoint)
    storage.reset_client()
    client = boto3.client("s3", endpoint_url=s3_server.endpoint, region_name="us-east-1")
    client.create_bucket(Bucket=BUCKET)
    client.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
    yield client
    storage.reset_client()
    get_backend("s3").reset()


@pytest.fixture
def api(s3: Any, runtime: Any) -> Api:
    return Api(runtime)


def put(url: str, data: bytes) -> Any:
    """What `curl -X PUT --upload-file` does (an explicit binary Content-Type: urllib would otherwise send a
    form's, which moto's server then parses)."""
    request = urllib.request.Request(url, data=data, method="PUT", headers={"Content-Type": "application/octet-stream"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return response


def create(api: Api, data: bytes, data_format: str = "csv", gzipped: bool = False, **extra: Any) -> dict:
    response = api.post("/datasets", {"format": data_format, "gzip": gzipped, "bytes": len(data), **extra})
    assert response.status == 201, response.body
    return response.json()


def upload(api: Api, data: bytes, data_format: str = "csv", gzipped: bool = False, **extra: Any) -> str:
    created = create(api, data, data_format, gzipped, **extra)
    assert created["upload"]["method"] == "PUT" and created["upload"]["headers"] == {}
    put(created["upload"]["url"], data)
    return created["dataset_id"]


def versions(s3: Any, prefix: str) -> list[Any]:
    found = s3.list_object_versions(Bucket=BUCKET, Prefix=prefix)
    return [*found.get("Versions", []), *found.get("DeleteMarkers", [])]


def houses_csv(rows: int = 60) -> bytes:
    """rooms (numeric, two 'NA'), city (oslo, bergen, and 'tromso' in 2 rows: rarer than MIN_GROUP_SIZE), price."""
    lines = ["rooms,city,price"]
    for i in range(rows):
        city = "tromso" if i in (7, 40) else ("oslo" if i % 2 else "bergen")
        rooms = "NA" if i in (3, 30) else str(1 + i % 5)
        lines.append(f"{rooms},{city},{100 + 40 * (i % 5) + (i % 2) * 15 + i % 3}")
    return ("\n".join(lines) + "\n").encode()


# ---------------------------------------------------------------- the journey


def test_create_upload_profile_train_and_erase(api: Api, s3: Any) -> None:
    data = houses_csv()
    created = create(api, data, name="houses 2026-11")
    dataset_id = created["dataset_id"]
    assert len(dataset_id) == 32 and int(dataset_id, 16) >= 0 and dataset_id == dataset_id.lower()
    assert created["status"] == "awaiting_upload"
    upload_ = created["upload"]
    assert upload_["method"] == "PUT" and upload_["expires_in"] == 3600
    assert f"/datasets/{dataset_id}/data.csv" in upload_["url"] and "X-Amz-Signature=" in upload_["url"]
    assert "X-Amz-Algorithm=AWS4-HMAC-SHA256" in upload_["url"]

    waiting = api.get(f"/datasets/{dataset_id}").json()
    assert waiting["status"] == "awaiting_upload" and waiting["upload"]["method"] == "PUT"
    assert api.get("/datasets").json()["datasets"][0]["status"] == "awaiting_upload"

    put(upload_["url"], data)

    listed = api.get("/datasets").json()["datasets"]
    assert listed == [
        {
            "dataset_id": dataset_id,
            "name": "houses 2026-11",
            "status": "uploaded",
            "bytes": len(data),
            "created_at": listed[0]["created_at"],
        }
    ]
    described = api.get(f"/datasets/{dataset_id}")
    assert described.status == 200, described.body
    body = described.json()
    assert body["status"] == "uploaded"
    assert body["size"] == len(data) and body["bytes"] == len(data)
    assert body["sha256"] == hashlib.sha256(data).hexdigest()
    assert body["etag"] == hashlib.md5(data).hexdigest()  # a single PUT's ETag is its MD5
    assert body["columns"] == ["rooms", "city", "price"] and body["rows"] == 60
    assert body["created_by"]["principal"] == "local:unauthenticated"
    rooms, city, price = body["schema"]
    assert rooms["kind"] == "numeric" and rooms["missing"] == 2
    # 58 values and MIN_GROUP_SIZE 5: p5/p95 need 100 values (5 on each side of them), p25 … p75 have enough.
    assert rooms["percentiles"]["p5"] is None and rooms["percentiles"]["p95"] is None
    assert rooms["percentiles"]["p50"] == 3.0 and rooms["percentiles"]["p25"] is not None
    assert "percentiles_sample" not in rooms  # every value was kept
    assert city["kind"] == "categorical" and city["missing"] == 0
    assert city["categories"] == ["bergen", "oslo"] and city["category_counts"] == [29, 29]
    assert "tromso" not in json.dumps(body)  # in 2 rows: never published
    assert city["rare_rows"] == 2 and city["categories_complete"] is True
    assert price["kind"] == "numeric" and price["missing"] == 0
    assert body["min_group_size"] == 5

    # kept, keyed to the file: the second GET does not profile again
    assert api.get(f"/datasets/{dataset_id}").json()["profiled_at"] == body["profiled_at"]
    assert s3.head_object(Bucket=BUCKET, Key=f"datasets/{dataset_id}/profile.json")

    trained = api.post(
        "/models/houses/versions",
        {"algorithm": "linear_regression", "target": "price", "data": {"dataset_id": dataset_id}},
    )
    assert trained.status == 201, trained.body
    source = trained.json()["training"]["source"]
    assert source == {
        "type": "dataset_id",
        "dataset_id": dataset_id,
        "s3_key": f"datasets/{dataset_id}/data.csv",
        "bytes": len(data),
    }

    assert api.delete(f"/datasets/{dataset_id}").status == 204
    assert versions(s3, f"datasets/{dataset_id}/") == []
    assert api.get(f"/datasets/{dataset_id}").json()["error"]["code"] == "dataset_not_found"
    assert api.delete(f"/datasets/{dataset_id}").status == 404  # nothing left
    assert api.get("/datasets").json() == {"datasets": []}


def test_a_reupload_is_profiled_again(api: Api, s3: Any) -> None:
    first = houses_csv(60)
    created = create(api, first)
    put(created["upload"]["url"], first)
    dataset_id = created["dataset_id"]
    assert api.get(f"/datasets/{dataset_id}").json()["rows"] == 60
    second = houses_csv(80)
    put(api.get(f"/datasets/{dataset_id}").json().get("upload", created["upload"])["url"], second)
    again = api.get(f"/datasets/{dataset_id}").json()
    assert again["rows"] == 80 and again["sha256"] == hashlib.sha256(second).hexdigest()
    # erasing removes every version of the file and of the profile, not only the current ones
    assert len(versions(s3, f"datasets/{dataset_id}/")) == 5
    assert api.delete(f"/datasets/{dataset_id}").status == 204
    assert versions(s3, f"datasets/{dataset_id}/") == []


def test_gzip_csv_and_jsonl(api: Api, s3: Any) -> None:
    plain = houses_csv()
    packed = gzip.compress(plain, mtime=0)
    dataset_id = upload(api, packed, gzipped=True)
    body = api.get(f"/datasets/{dataset_id}").json()
    assert body["status"] == "uploaded" and body["s3_key"].endswith("/data.csv.gz")
    assert body["sha256"] == hashlib.sha256(packed).hexdigest() and body["size"] == len(packed)
    assert body["uncompressed_bytes"] == len(plain) and body["rows"] == 60

    records = [
        {"x": i % 7, "kind": "a" if i % 3 else "b", "note": None if i % 4 == 0 else "t", "y": i % 2} for i in range(50)
    ]
    records[5]["late"] = 1  # a column first seen on the sixth line: absent elsewhere, so missing there
    lines = ("\n".join(json.dumps(r) for r in records) + "\n").encode()
    for gzipped, data in ((False, lines), (True, gzip.compress(lines, mtime=0))):
        dataset_id = upload(api, data, "jsonl", gzipped)
        body = api.get(f"/datasets/{dataset_id}").json()
        assert body["status"] == "uploaded", body
        assert body["columns"] == ["x", "kind", "note", "y", "late"] and body["rows"] == 50
        by_name = {c["name"]: c for c in body["schema"]}
        assert by_name["x"]["kind"] == "numeric" and by_name["x"]["missing"] == 0
        assert by_name["kind"]["categories"] == ["a", "b"] and by_name["kind"]["category_counts"] == [33, 17]
        assert by_name["note"]["kind"] == "categorical" and by_name["note"]["missing"] == 13
        assert by_name["late"]["kind"] == "numeric" and by_name["late"]["missing"] == 49
        trained = api.post(
            "/models/jsonl-model/versions",
            {
                "algorithm": "decision_tree",
                "target": "y",
                "features": ["x", "kind"],
                "data": {"dataset_id": dataset_id},
            },
        )
        assert trained.status == 201, trained.body


BAD_FILES = {
    "declared gzip, is not": ("csv", True, b"a,b\n1,2\n", "not a valid gzip file"),
    "truncated gzip": ("csv", True, gzip.compress(b"a,b\n" + b"1,2\n" * 1000)[:40], "not a valid gzip file"),
    "gzip, declared plain": (
        "csv",
        False,
        gzip.compress(b"a,b\n1,2\n"),
        'it looks gzipped: create the dataset with "gzip": true',
    ),
    "latin-1": ("csv", False, b"city,n\n" + "tromsø,1\n".encode("latin-1"), "not UTF-8"),
    "empty": ("csv", False, b"\n\n", "needs a header row"),
    "header only": ("csv", False, b"a,b\n", "no rows"),
    "ragged": ("csv", False, b"a,b\n1,2\n3\n", "line 3 has 1 fields, the header has 2"),
    "repeated column": ("csv", False, b"a,a\n1,2\n", "names column 'a' twice"),
    "blank column name": ("csv", False, b"a, \n1,2\n", "invalid column name"),
    "unterminated quote": ("csv", False, b'a,b\n"1,2\n', "not valid CSV"),
    "not json": ("jsonl", False, b'{"a": 1}\n{nope\n', "line 2 is not JSON"),
    "not objects": ("jsonl", False, b"[1, 2]\n", "line 1 is not a JSON object"),
    "NaN": ("jsonl", False, b'{"a": NaN}\n', "NaN is not JSON"),
    "lone surrogate": ("jsonl", False, b'{"a": "\\ud800"}\n', "lone UTF-16 surrogate"),
    "deep": ("jsonl", False, b"[" * 100_000 + b"]" * 100_000 + b"\n", "nests too deeply"),
}


@pytest.mark.parametrize("case", BAD_FILES)
def test_a_file_that_cannot_be_trained_on_is_invalid_with_its_reason(api: Api, case: str) -> None:
    data_format, gzipped, data, reason = BAD_FILES[case]
    dataset_id = upload(api, data, data_format, gzipped)
    response = api.get(f"/datasets/{dataset_id}")
    assert response.status == 200, response.body
    body = response.json()
    assert body["status"] == "invalid" and reason in body["reason"], body
    assert "schema" not in body and "columns" not in body
    listed = api.get("/datasets").json()["datasets"]
    assert [d["status"] for d in listed] == ["uploaded"]  # the listing says only whether the file is there


def test_unknown_and_malformed_ids_are_404(api: Api, s3: Any) -> None:
    for dataset_id in ("0" * 32, "A" * 32, "x", "..", "%2e%2e", "0" * 33, "<script>"):
        for method, path, body in (
            ("GET", f"/datasets/{dataset_id}", None),
            ("DELETE", f"/datasets/{dataset_id}", None),
            ("POST", f"/datasets/{dataset_id}/complete", {"parts": [{"part_number": 1, "etag": "x"}]}),
        ):
            response = api.request(method, path, body)
            assert response.status == 404, (method, path, response.body)
            assert response.json()["error"]["code"] == "dataset_not_found"
    trained = api.post(
        "/models/m/versions", {"algorithm": "ridge", "target": "price", "data": {"dataset_id": "f" * 32}}
    )
    assert (trained.status, trained.json()["error"]["code"]) == (404, "dataset_not_found")
    bad = api.post("/models/m/versions", {"algorithm": "ridge", "target": "y", "data": {"dataset_id": "../x"}})
    assert (bad.status, bad.json()["error"]["code"]) == (404, "dataset_not_found")
    assert s3.list_objects_v2(Bucket=BUCKET).get("KeyCount") == 0


def test_training_before_the_upload_is_409(api: Api) -> None:
    created = create(api, houses_csv())
    trained = api.post(
        "/models/houses/versions",
        {"algorithm": "ridge", "target": "price", "data": {"dataset_id": created["dataset_id"]}},
    )
    assert trained.status == 409, trained.body
    assert trained.json()["error"]["code"] == "dataset_not_uploaded"


def test_a_dataset_too_large_for_the_functions_memory_is_413_before_it_is_read(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = houses_csv()
    dataset_id = upload(api, data)
    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128")
    from mlservice import storage

    read: list[int] = []  # the loader must not read the file's body
    monkeypatch.setattr(storage.ChunkReader, "read", lambda self, size=-1: read.append(size) or b"")
    trained = api.post(
        "/models/houses/versions",
        {"algorithm": "ridge", "target": "price", "data": {"dataset_id": dataset_id}},
    )
    assert trained.status == 413, trained.body
    error = trained.json()["error"]
    assert error["code"] == "dataset_too_large" and not read
    assert f"has {len(data)} bytes" in error["message"] and "128 MB" in error["message"]
    assert "MB of memory" in error["message"] and "AWS_LAMBDA_FUNCTION_MEMORY_SIZE" in error["message"]


def test_the_memory_estimate_uses_the_measured_uncompressed_size(monkeypatch: pytest.MonkeyPatch) -> None:
    from mlservice.errors import ServiceError
    from mlservice.training import datasets

    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "3008")
    fits = int((3008 * MiB - datasets.RUNTIME_BYTES) / datasets.MEMORY_PER_BYTE["csv"]) - 1000
    datasets.check_memory("datasets/a.csv", fits)
    with pytest.raises(ServiceError, match="needs about") as raised:
        datasets.check_memory("datasets/a.csv", fits + 2000)
    assert raised.value.code == "dataset_too_large" and raised.value.status == 413
    # a .gz file is assumed to expand GZIP_EXPANSION times, unless a profile measured it
    small = math.ceil(fits / datasets.GZIP_EXPANSION["csv"]) + 1000
    with pytest.raises(ServiceError):
        datasets.check_memory("datasets/a.csv.gz", small)
    datasets.check_memory("datasets/a.csv.gz", small, uncompressed=small * 2)
    # Lambda's own variable decides; TrainFunction's memory elsewhere
    monkeypatch.delenv("AWS_LAMBDA_FUNCTION_MEMORY_SIZE")
    assert datasets.function_memory_mb() == 3008


# ---------------------------------------------------------------- multipart


def test_multipart_upload_through_presigned_part_urls(api: Api, s3: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dataset_store, "PUT_MAX_BYTES", 1024)
    monkeypatch.setattr(dataset_store, "MIN_PART_BYTES", 5 * MiB)  # S3's smallest part
    monkeypatch.setattr(dataset_store, "PART_URLS", 1)  # to see more_parts
    rows = ["a,b,label"] + [f"{i % 97},{'xyz'[i % 3]},{i % 2}" for i in range(900_000)]
    data = ("\n".join(rows) + "\n").encode()
    assert 5 * MiB < len(data) < 10 * MiB
    created = create(api, data, name="two parts")
    dataset_id = created["dataset_id"]
    plan = created["upload"]
    assert plan["method"] == "multipart" and plan["part_size"] == 5 * MiB and plan["part_count"] == 2
    assert [p["part_number"] for p in plan["parts"]] == [1]
    assert plan["more_parts"] == f"GET /datasets/{dataset_id}?first_part=2"
    assert plan["complete"].startswith(f"POST /datasets/{dataset_id}/complete")
    second = api.get(f"/datasets/{dataset_id}", query={"first_part": "2"}).json()["upload"]["parts"]
    assert [p["part_number"] for p in second] == [2]

    etags = []
    for number, url in ((1, plan["parts"][0]["url"]), (2, second[0]["url"])):
        chunk = data[(number - 1) * plan["part_size"] : number * plan["part_size"]]
        etags.append(put(url, chunk).headers["ETag"])
    assert api.get(f"/datasets/{dataset_id}").json()["status"] == "awaiting_upload"  # not assembled yet

    wrong = api.post(f"/datasets/{dataset_id}/complete", {"parts": [{"part_number": 1, "etag": "0" * 32}]})
    assert (wrong.status, wrong.json()["error"]["code"]) == (400, "invalid_upload"), wrong.body
    unordered = api.post(
        f"/datasets/{dataset_id}/complete",
        {"parts": [{"part_number": 2, "etag": etags[1]}, {"part_number": 1, "etag": etags[0]}]},
    )
    assert (unordered.status, unordered.json()["error"]["code"]) == (400, "invalid_upload")

    parts = {"parts": [{"part_number": n, "etag": e} for n, e in enumerate(etags, start=1)]}
    done = api.post(f"/datasets/{dataset_id}/complete", parts)
    assert done.status == 200, done.body
    assert done.json()["status"] == "uploaded" and done.json()["size"] == len(data)
    again = api.post(f"/datasets/{dataset_id}/complete", parts)
    assert (again.status, again.json()) == (200, done.json())

    body = api.get(f"/datasets/{dataset_id}").json()
    assert body["status"] == "uploaded" and body["rows"] == 900_000
    assert body["sha256"] == hashlib.sha256(data).hexdigest() and body["etag"].endswith("-2")
    assert [c["kind"] for c in body["schema"]] == ["numeric", "categorical", "numeric"]


def test_deleting_an_unfinished_multipart_upload_aborts_it(api: Api, s3: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dataset_store, "PUT_MAX_BYTES", 10)
    created = create(api, b"a,b\n" + b"1,2\n" * 10)
    dataset_id = created["dataset_id"]
    put(created["upload"]["parts"][0]["url"], b"a,b\n" + b"1,2\n" * 10)
    assert len(s3.list_multipart_uploads(Bucket=BUCKET).get("Uploads", [])) == 1
    assert api.delete(f"/datasets/{dataset_id}").status == 204
    assert s3.list_multipart_uploads(Bucket=BUCKET).get("Uploads", []) == []
    assert versions(s3, f"datasets/{dataset_id}/") == []


def test_part_sizes_follow_s3s_limits(api: Api, s3: Any) -> None:
    assert dataset_store.part_size(6 * 1024**3) == 100 * MiB
    assert dataset_store.part_size(5 * 1024**4) == math.ceil(5 * 1024**4 / 10_000 / MiB) * MiB
    created = create(api, b"", bytes=5 * 1024**4)
    plan = created["upload"]
    assert plan["part_count"] <= 10_000 and plan["part_size"] % MiB == 0
    assert plan["part_size"] * plan["part_count"] >= 5 * 1024**4
    assert len(plan["parts"]) == 1000 and plan["more_parts"].endswith("?first_part=1001")


def test_a_put_dataset_has_nothing_to_complete(api: Api) -> None:
    created = create(api, b"a\n1\n")
    path = f"/datasets/{created['dataset_id']}/complete"
    parts = {"parts": [{"part_number": 1, "etag": "x"}]}
    assert api.post(path, parts).json() == {"dataset_id": created["dataset_id"], "status": "awaiting_upload"}
    put(created["upload"]["url"], b"a\n1\n")
    assert api.post(path, parts).json()["status"] == "uploaded"


# ---------------------------------------------------------------- requests


@pytest.mark.parametrize(
    "name",
    ["<script>alert(1)</script>", "../../models/iris", "Åse ☃ 数据", "x" * 128, "a b", "'; DROP TABLE datasets; --"],
)
def test_any_printable_name_is_kept_verbatim(api: Api, name: str) -> None:
    created = create(api, b"a\n1\n", name=name)
    assert api.get(f"/datasets/{created['dataset_id']}").json()["name"] == name
    assert api.get("/datasets").json()["datasets"][0]["name"] == name


@pytest.mark.parametrize(
    "body",
    [
        {"format": "csv", "bytes": 10, "name": ""},
        {"format": "csv", "bytes": 10, "name": "x" * 129},
        {"format": "csv", "bytes": 10, "name": "tab\there"},
        {"format": "csv", "bytes": 10, "name": "line\nbreak"},
        {"format": "csv", "bytes": 10, "name": "\u202egnp.exe"},  # a right-to-left override
        {"format": "csv", "bytes": 10, "name": "\x00"},
        {"format": "csv", "bytes": 10, "name": 5},
        {"format": "parquet", "bytes": 10},
        {"format": "CSV", "bytes": 10},
        {"format": "csv", "bytes": 0},
        {"format": "csv", "bytes": 5 * 1024**4 + 1},
        {"format": "csv", "bytes": "10"},
        {"format": "csv", "bytes": 1.5},
        {"format": "csv", "bytes": True},
        {"format": "csv", "bytes": 10, "gzip": "yes"},
        {"format": "csv"},
        {"bytes": 10},
        {"format": "csv", "bytes": 10, "s3_key": "models/iris/registry.json"},
        [],
    ],
)
def test_create_refuses_what_it_does_not_document(api: Api, s3: Any, body: Any) -> None:
    response = api.post("/datasets", body)
    assert response.status == 400, response.body
    assert response.json()["error"]["code"] == "invalid_request"
    assert s3.list_objects_v2(Bucket=BUCKET).get("KeyCount") == 0


def test_a_lone_surrogate_name_is_an_encoding_error(api: Api) -> None:
    response = api.post("/datasets", raw='{"format": "csv", "bytes": 3, "name": "\\ud800"}')
    assert (response.status, response.json()["error"]["code"]) == (400, "invalid_encoding")


def test_first_part_must_be_a_part_number(api: Api) -> None:
    created = create(api, b"a\n1\n")
    for value in ("0", "-1", "x", "10001"):
        response = api.get(f"/datasets/{created['dataset_id']}", query={"first_part": value})
        assert (response.status, response.json()["error"]["code"]) == (400, "invalid_request")


def test_profiling_more_than_a_request_can_is_said_not_attempted(api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    dataset_id = upload(api, houses_csv())
    monkeypatch.setattr(dataset_store, "PROFILE_MAX_BYTES", 100)
    body = api.get(f"/datasets/{dataset_id}").json()
    assert body["status"] == "profiling_too_large_for_a_request" and "not profiled within a request" in body["note"]
    assert body["size"] == len(houses_csv()) and "schema" not in body


# ---------------------------------------------------------------- the profile itself, bounded


def run_profile(data: bytes, data_format: str = "csv", deadline: float = math.inf, **kw: Any) -> dict:
    return dataset_profile.profile(
        io.BytesIO(data), data_format, False, min_group=5, max_columns=10_000, deadline=deadline, **kw
    )


def test_a_large_numeric_column_is_summarised_from_a_reservoir_sample(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dataset_profile, "RESERVOIR", 1000)
    monkeypatch.setattr(dataset_profile, "CHUNK_CELLS", 3000)
    data = ("x\n" + "\n".join(str(i) for i in range(100_000)) + "\n").encode()
    profile = run_profile(data)
    (x,) = profile["schema"]
    assert x["percentiles_sample"] == 1000 and profile["rows"] == 100_000
    # a uniform sample: its median is near the column's (49,999.5) and its tails near p5/p95
    assert abs(x["percentiles"]["p50"] - 50_000) < 5_000
    assert abs(x["percentiles"]["p5"] - 5_000) < 2_500 and abs(x["percentiles"]["p95"] - 95_000) < 2_500


def test_category_tracking_stops_at_its_cap_and_counts_stay_exact(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dataset_profile, "MAX_TRACKED", 3)
    monkeypatch.setattr(dataset_profile, "CHUNK_CELLS", 4)
    values = ["a"] * 6 + ["b"] * 5 + ["c"] * 2 + ["d"] * 9 + ["a"] * 3 + ["e"] * 7
    profile = run_profile(("v\n" + "\n".join(values) + "\n").encode())
    (v,) = profile["schema"]
    # a, b, c are tracked (first seen, in chunks of 4 rows); d and e came after the cap: absent, never guessed
    assert v["categories"] == ["a", "b"] and v["category_counts"] == [9, 5]
    assert v["categories_complete"] is False and v["rare_rows"] == len(values) - 14


def test_long_values_are_never_tracked() -> None:
    long_value = "y" * (dataset_profile.MAX_TRACKED_CHARS + 1)
    profile = run_profile(("v\n" + f"{long_value}\n" * 10 + "short\n" * 6).encode())
    (v,) = profile["schema"]
    assert v["categories"] == ["short"] and v["categories_complete"] is False


def test_the_kinds_follow_the_training_rule() -> None:
    from mlservice.training.preprocessing import infer_kind

    columns = {
        "plain": ["1", "2.5", "-3e2", "4"] * 3,
        "spelled_missing": ["1", "NA", "n/a", "", "nan", "None", "2"] * 2,
        "infinite": ["1", "inf", "2"] * 4,
        "word": ["1", "2", "three"] * 4,
        "underscore": ["1_000", "2", "3"] * 4,
        "empty": [""] * 12,
    }
    names = list(columns)
    rows = zip(*columns.values(), strict=False)
    data = (",".join(names) + "\n" + "\n".join(",".join(row) for row in rows) + "\n").encode()
    profile = run_profile(data)
    for entry in profile["schema"]:
        values = columns[entry["name"]][: profile["rows"]]
        assert entry["kind"] == infer_kind(values, entry["name"]), entry


def test_a_profile_past_its_deadline_stops(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dataset_profile, "CHUNK_CELLS", 10)
    profile = run_profile(b"x\n" + b"1\n" * 1000, deadline=0.0)
    assert profile["status"] == "profiling_too_large_for_a_request" and "profiling stopped" in profile["note"]


def test_too_many_columns_is_invalid() -> None:
    header = ",".join(f"c{i}" for i in range(30))
    profile = dataset_profile.profile(
        io.BytesIO(f"{header}\n".encode() + b"1," * 29 + b"1\n"),
        "csv",
        False,
        min_group=5,
        max_columns=20,
        deadline=math.inf,
    )
    assert profile["status"] == "invalid" and "more than 20 columns" in profile["reason"]


def test_a_file_without_line_breaks_is_not_read_into_memory(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dataset_profile, "MAX_LINE_CHARS", 1000)
    profile = run_profile(b'{"a": "' + b"x" * 5000 + b'"}\n', "jsonl")
    assert profile["status"] == "invalid" and "longer than 1000 characters" in profile["reason"]


def test_a_column_that_turns_categorical_late_reports_lower_bounds(monkeypatch: pytest.MonkeyPatch) -> None:
    """Once a numeric-looking column tracks its cap of values, its numeric blocks are not counted (the fast
    path); if a word then makes it categorical its counts are lower bounds, which keeps the rule safe."""
    monkeypatch.setattr(dataset_profile, "MAX_TRACKED", 3)
    monkeypatch.setattr(dataset_profile, "CHUNK_CELLS", 10)
    values = ["1", "2", "3"] * 10 + ["1"] * 10 + ["word"] * 6
    profile = run_profile(("v\n" + "\n".join(values) + "\n").encode())
    (v,) = profile["schema"]
    assert v["kind"] == "categorical" and v["missing"] == 0 and profile["rows"] == len(values)
    assert v["category_counts_are_lower_bounds"] is True and v["categories_complete"] is False
    counts = dict(zip(v["categories"], v["category_counts"], strict=True))
    # '1' is in 20 rows, but only its first block was counted before tracking was full: 4, under the rule
    assert counts == {} and "word" not in v["categories"]  # 'word' came after the cap
    assert v["rare_rows"] == len(values) - sum(v["category_counts"])


def test_a_profile_stopped_by_its_deadline_is_kept_unless_the_invocation_was_short(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(dataset_profile, "CHUNK_CELLS", 10)
    short = upload(api, houses_csv())
    with monkeypatch.context() as patch:  # the invocation has less time left than a profile gets
        patch.setattr(dataset_store, "PROFILE_MARGIN_SECONDS", 1000.0)
        assert api.get(f"/datasets/{short}").json()["status"] == "profiling_too_large_for_a_request"
    assert api.get(f"/datasets/{short}").json()["status"] == "uploaded"  # not kept: tried again

    slow = upload(api, houses_csv())
    with monkeypatch.context() as patch:  # the whole budget was not enough
        patch.setattr(dataset_store, "PROFILE_SECONDS", 0.0)
        body = api.get(f"/datasets/{slow}").json()
        assert body["status"] == "profiling_too_large_for_a_request" and "profiling stopped" in body["note"]
    assert api.get(f"/datasets/{slow}").json()["status"] == "profiling_too_large_for_a_request"  # kept
