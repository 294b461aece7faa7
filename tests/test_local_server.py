"""`make run` over real HTTP: the journey with curl-equivalent requests, boto3 against the embedded S3, a
real Open Inference Protocol client, and clean shutdown on SIGINT and SIGTERM."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
ROWS = [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Server:
    process: subprocess.Popen
    url: str
    port: int
    s3_endpoint: str
    bucket: str
    output: list[str]

    def s3(self) -> object:
        """boto3 pointed at the embedded S3, as a user's `aws --endpoint-url` would be."""
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.s3_endpoint,
            region_name="us-east-1",
            aws_access_key_id="local",
            aws_secret_access_key="local",
        )

    def call(self, method: str, path: str, body: object = None, content_type: str | None = None) -> tuple[int, object]:
        data = None if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
        request = urllib.request.Request(self.url + path, data=data, method=method)
        if content_type:
            request.add_header("Content-Type", content_type)
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                raw = response.read()
                return response.status, json.loads(raw) if raw else None
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read())


def start_server(port: int | None = None, extra_env: dict | None = None) -> Server:
    port = port or free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_") and k != "MODEL_BUCKET"}
    env.update(PORT=str(port), PYTHONUNBUFFERED="1", **(extra_env or {}))
    process = subprocess.Popen(
        ["make", "--no-print-directory", "run"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    output: list[str] = []
    deadline = time.monotonic() + 60
    s3_endpoint = bucket = ""
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            break
        output.append(line)
        if line.startswith("S3: "):
            parts = line.split()
            s3_endpoint, bucket = parts[1], parts[3]
        if "Try:" in line:
            return Server(process, f"http://127.0.0.1:{port}", port, s3_endpoint, bucket, output)
    process.kill()
    raise AssertionError("make run did not start:\n" + "".join(output))


def stop_server(server: Server, sig: int = signal.SIGINT) -> None:
    os.killpg(server.process.pid, sig)  # what Ctrl-C does: the whole foreground process group
    try:
        server.process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        # local/server.py prints every thread's stack on SIGUSR1: show what the stop is stuck on
        os.killpg(server.process.pid, signal.SIGUSR1)
        time.sleep(2)
        os.killpg(server.process.pid, signal.SIGKILL)
        rest = server.process.stdout.read()
        raise AssertionError(f"make run did not stop within 30 s of {sig!r}; its stacks:\n{rest}") from None


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
        return True
    except ProcessLookupError:
        return False


def port_free(port: int) -> bool:
    """Whether nothing listens on the port any more. SO_REUSEADDR, as every server sets it: a closed
    connection's TIME_WAIT (which the kernel keeps for a minute) must not count as a leaked listener."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    running = start_server()
    yield running
    if running.process.poll() is None:
        stop_server(running)


def test_journey_over_http(server):
    status, body = server.call(
        "POST", "/models/iris/versions", {"algorithm": "logistic_regression", "data": {"dataset": "iris"}}
    )
    assert status == 201, body
    version = body["version"]
    assert server.call("GET", "/models")[1]["models"][0]["name"] == "iris"
    assert server.call("GET", "/models/iris")[0] == 200
    assert server.call("GET", f"/models/iris/versions/{version}")[1]["metrics"]["accuracy"] >= 0.9
    # curl -d sends form encoding; the body is still JSON
    status, body = server.call(
        "PUT",
        "/models/iris/stages/production",
        b'{"version": %d}' % version,
        content_type="application/x-www-form-urlencoded",
    )
    assert status == 200, body
    status, body = server.call("POST", "/models/iris/predict", {"instances": ROWS})
    assert status == 200 and body["predictions"] == ["setosa", "virginica"]
    status, body = server.call("POST", "/models/iris/predict", b"{bad")
    assert status == 400 and body["error"]["code"] == "invalid_json"
    status, body = server.call("GET", "/openapi.json")
    assert status == 200 and "/models/{model}/predict" in body["paths"]
    status, body = server.call(
        "POST", "/models/iris/versions", {"algorithm": "decision_tree", "data": {"dataset": "iris"}}
    )
    assert status == 201 and body["version"] == version + 1
    assert (
        server.call("PUT", "/models/iris/stages/production", {"version": version + 1})[1]["previous_version"] == version
    )
    status, body = server.call(
        "POST",
        f"/models/iris/predict?version={version + 1}",
        {
            "dataframe_records": [
                dict(
                    zip(
                        ["sepal_length_cm", "sepal_width_cm", "petal_length_cm", "petal_width_cm"], ROWS[0], strict=True
                    )
                )
            ]
        },
    )
    assert status == 200 and body["model"]["version"] == version + 1 and body["predictions"] == ["setosa"]
    assert server.call("POST", "/models/iris/stages/production/rollback")[1]["version"] == version
    assert server.call("DELETE", "/models/iris/stages/production")[0] == 204
    assert server.call("GET", "/models/iris")[1]["stages"] == {}
    assert server.call("DELETE", f"/models/iris/versions/{version + 1}")[0] == 204
    assert server.call("GET", f"/models/iris/versions/{version + 1}")[0] == 404


def _outward_address() -> str | None:
    """This machine's address on its default route (no packet is sent), if it has one beyond loopback."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("10.255.255.255", 1))
            address = probe.getsockname()[0]
        except OSError:
            return None
    return None if address.startswith("127.") else address


def test_the_server_says_it_is_unauthenticated_and_listens_on_loopback_only(server):
    banner = "".join(server.output)
    assert "No authentication" in banner and "local:unauthenticated" in banner
    assert "running at http://127.0.0.1:" in banner
    outward = _outward_address()
    if outward is not None:  # reachable from this machine only
        with socket.socket() as s, pytest.raises(OSError):
            s.settimeout(2)
            s.connect((outward, server.port))


def test_artifacts_land_in_the_embedded_s3(server):
    server.call("POST", "/models/wine/versions", {"algorithm": "decision_tree", "data": {"dataset": "wine"}})
    s3 = server.s3()
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=server.bucket, Prefix="models/wine/")["Contents"]]
    assert "models/wine/versions/0000000001/model.joblib" in keys
    assert "models/wine/versions/0000000001/metadata.json" in keys


def test_a_real_open_inference_client(server):
    import numpy as np
    import tritonclient.http as httpclient
    from tritonclient.utils import InferenceServerException

    server.call("POST", "/models/flower/versions", {"algorithm": "logistic_regression", "data": {"dataset": "iris"}})
    server.call("PUT", "/models/flower/stages/production", {"version": 1})
    client = httpclient.InferenceServerClient(url=f"127.0.0.1:{server.port}")
    assert client.is_server_live() and client.is_server_ready()
    assert client.is_model_ready("flower")
    metadata = client.get_model_metadata("flower")
    assert metadata["inputs"][0]["shape"] == [-1, 4]
    tensor = httpclient.InferInput("input-0", [2, 4], "FP64")
    tensor.set_data_from_numpy(np.array(ROWS, dtype=np.float64), binary_data=False)
    outputs = [
        httpclient.InferRequestedOutput("predict", binary_data=False),
        httpclient.InferRequestedOutput("predict_proba", binary_data=False),
    ]
    result = client.infer("flower", [tensor], outputs=outputs, request_id="r1")
    assert [p.decode() if isinstance(p, bytes) else p for p in result.as_numpy("predict")] == ["setosa", "virginica"]
    assert result.as_numpy("predict_proba").shape == (2, 3)
    bad = httpclient.InferInput("input-0", [1, 3], "FP64")
    bad.set_data_from_numpy(np.array([[1.0, 2.0, 3.0]]), binary_data=False)
    with pytest.raises(InferenceServerException, match=r"\[N, 4\]"):
        client.infer("flower", [bad])
    assert not client.is_model_ready("nothing-here")


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_two_instances_start_and_stop_cleanly(sig):
    first, second = start_server(), start_server()
    try:
        assert first.call("GET", "/v2/health/ready")[0] == 200
        assert second.call("GET", "/v2/health/ready")[0] == 200
        assert first.s3_endpoint != second.s3_endpoint
    finally:
        for running in (first, second):
            stop_server(running, sig)
    for running in (first, second):
        assert running.process.returncode is not None
        deadline = time.monotonic() + 10
        while group_alive(running.process.pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not group_alive(running.process.pid), "processes left behind"
        assert port_free(running.port)
        s3_port = int(running.s3_endpoint.rsplit(":", 1)[1])
        assert port_free(s3_port)


def test_a_busy_port_is_reported_not_hidden():
    first = start_server()
    try:
        env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_") and k != "MODEL_BUCKET"}
        clash = subprocess.run(
            ["make", "--no-print-directory", "run"],
            cwd=ROOT,
            env={**env, "PORT": str(first.port)},
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert clash.returncode != 0
        assert f"port {first.port} is in use" in (clash.stdout + clash.stderr).lower()
    finally:
        stop_server(first)


def test_a_file_dropped_into_the_embedded_s3_is_predicted(server):
    """What `aws s3 cp flowers.csv s3://<bucket>/batch/input/flower/ --endpoint-url <S3>` does."""
    server.call("POST", "/models/petals/versions", {"algorithm": "logistic_regression", "data": {"dataset": "iris"}})
    server.call("PUT", "/models/petals/stages/production", {"version": 1})
    s3 = server.s3()
    header = "id,sepal_length_cm,sepal_width_cm,petal_length_cm,petal_width_cm\n"
    s3.put_object(
        Bucket=server.bucket, Key="batch/input/petals/today.csv", Body=header + "a,5.1,3.5,1.4,0.2\nb,6.7,3.0,5.2,2.3\n"
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        found = s3.list_objects_v2(Bucket=server.bucket, Prefix="batch/output/petals/today.csv.manifest.json")
        if found.get("KeyCount"):
            break
        time.sleep(0.2)
    manifest = json.loads(
        s3.get_object(Bucket=server.bucket, Key="batch/output/petals/today.csv.manifest.json")["Body"].read()
    )
    assert manifest["status"] == "succeeded" and manifest["rows"]["predicted"] == 2
    output = s3.get_object(Bucket=server.bucket, Key="batch/output/petals/today.csv")["Body"].read().decode()
    assert output.splitlines()[1].startswith("a,5.1,3.5,1.4,0.2,setosa,")


def test_template_settings_can_be_overridden_from_the_shell():
    running = start_server(extra_env={"MAX_PREDICT_ROWS": "1"})
    try:
        running.call("POST", "/models/tiny/versions", {"algorithm": "logistic_regression", "data": {"dataset": "iris"}})
        running.call("PUT", "/models/tiny/stages/production", {"version": 1})
        status, body = running.call("POST", "/models/tiny/predict", {"instances": ROWS})
        assert status == 413 and body["error"]["code"] == "payload_too_large"
    finally:
        stop_server(running)


def test_the_templates_empty_endpoints_never_replace_the_local_one(monkeypatch):
    """template.yaml declares AWS_ENDPOINT_URL_S3/SQS/LAMBDA empty (for `sam local --env-vars`). An invocation
    puts the function's template environment into this process; those empty values must not blank the
    endpoint make run (or a test) set for its embedded S3, or the functions would go to real AWS."""
    from local.lambda_events import api_event
    from local.runtime import LocalLambda
    from local.template import Template

    declared = Template().globals["Environment"]["Variables"]
    assert declared["AWS_ENDPOINT_URL_S3"] == declared["AWS_ENDPOINT_URL_SQS"] == ""
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", "http://127.0.0.1:9")
    monkeypatch.setenv("AWS_ENDPOINT_URL_SQS", "http://127.0.0.1:9")
    runtime = LocalLambda(substitutions={"MODEL_BUCKET": "b", "ModelBucket": "b"})
    for name in runtime.template.functions:
        assert not [k for k in runtime.environment(name) if k.startswith("AWS_ENDPOINT_URL")], name
    live = runtime.invoke("PredictFunction", api_event("GET", "/v2/health/live", "/v2/health/live", {}))
    assert live["statusCode"] == 200
    assert os.environ["AWS_ENDPOINT_URL_S3"] == os.environ["AWS_ENDPOINT_URL_SQS"] == "http://127.0.0.1:9"
    # make run's shell overrides (local/server.py) still set an endpoint explicitly
    overridden = LocalLambda(substitutions={"AWS_ENDPOINT_URL_S3": "http://127.0.0.1:8"})
    assert overridden.environment("TrainFunction")["AWS_ENDPOINT_URL_S3"] == "http://127.0.0.1:8"


def test_an_asynchronous_training_is_fitted_by_the_local_worker(server):
    """`make run` runs the train worker on its embedded queue: queued → ready without AWS."""
    status, queued = server.call(
        "POST", "/models/later/versions", {"algorithm": "random_forest", "data": {"dataset": "iris"}, "async": True}
    )
    assert status == 202 and queued["status"] == "queued", queued
    deadline = time.monotonic() + 60
    seen = set()
    while time.monotonic() < deadline:
        status, version = server.call("GET", f"/models/later/versions/{queued['version']}")
        seen.add(version["status"])
        if version["status"] in ("ready", "failed"):
            break
        time.sleep(0.2)
    assert version["status"] == "ready", version
    assert seen <= {"queued", "training", "ready"}
