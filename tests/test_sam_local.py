"""The built functions in Lambda containers: `sam local invoke`, `sam local start-lambda` and `sam local start-api`
run the session's `sam build` against a moto S3 server, so the handlers, the layer and the events are checked
the way Lambda runs them (see ../shared/sam-local/README.md for the local Lambda image and the Docker daemon).

A function container does not share this machine's loopback; it reaches this machine at the docker0 bridge
address, so the moto server listens there. SAM CLI hands a function only the environment variables its template
declares (`--env-vars` and the shell can override those, never add new ones), so template.yaml's Globals declare
`AWS_ENDPOINT_URL_S3` / `_SQS` / `_LAMBDA` empty (the real AWS endpoints) and the tests run the *built* template
as it is, with one `--env-vars` file shaped like events/local-env.json (`{"Parameters": {...}}`, which applies to
every function): the moto server's real address and a per-test MODEL_BUCKET.

Every sam process runs in a session of its own and is stopped (SIGTERM, which SAM answers by removing its warm
containers, then SIGKILL); any container still carrying a test's bucket name is removed as well.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config
from sam_support import sam_env
from test_events import run_story

from local.lambda_events import api_event
from local.template import Template, load_yaml

pytestmark = [pytest.mark.sam, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[1]
EVENTS = ROOT / "events"
TEMPLATE = Template(ROOT / "template.yaml")
# Where ../shared/sam-local/setup.sh starts its private dockerd; an exported DOCKER_HOST wins.
SETUP_DOCKER_HOST = "unix:///tmp/sam-local/docker.sock"
LAMBDA_IMAGE = "public.ecr.aws/lambda/python:3.13-x86_64"
SETUP_HINT = "run ../shared/sam-local/setup.sh and export the DOCKER_HOST it prints"
# The README's `--env-vars` file; each test writes a copy with its own bucket and the moto server's port.
LOCAL_ENV = EVENTS / "local-env.json"
ENDPOINT_VARIABLES = ("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL_SQS", "AWS_ENDPOINT_URL_LAMBDA")
# A cold TrainFunction container imports scikit-learn and fits a model; SAM may first build the layer image.
INVOKE_TIMEOUT = 240
SERVICE_START_TIMEOUT = 240
SETOSA_ROW = [5.1, 3.5, 1.4, 0.2]
API_KEY_HEADER = {"x-api-key": "local-example-api-key-000000000000000000"}


# --- the machine: Docker, the image, the bridge -------------------------------------------------------------


@pytest.fixture(scope="session")
def docker_env() -> dict[str, str]:
    """The environment for docker and sam: fake AWS credentials and the Docker daemon that has the Lambda image."""
    if shutil.which("docker") is None:
        pytest.skip(f"no docker CLI on PATH ({SETUP_HINT})")
    host = os.environ.get("DOCKER_HOST") or SETUP_DOCKER_HOST
    env = sam_env(DOCKER_HOST=host)
    info = subprocess.run(["docker", "info"], env=env, capture_output=True, text=True, timeout=60)
    if info.returncode != 0:
        pytest.skip(f"Docker does not answer `docker info` at DOCKER_HOST={host} ({SETUP_HINT})")
    image = subprocess.run(["docker", "image", "inspect", LAMBDA_IMAGE], env=env, capture_output=True, timeout=60)
    if image.returncode != 0:
        pytest.skip(f"the local Lambda image {LAMBDA_IMAGE} is missing at DOCKER_HOST={host} ({SETUP_HINT})")
    return env


@pytest.fixture(scope="session")
def bridge_ip(docker_env: dict[str, str]) -> str:
    """This machine's address on docker0: the one address both the tests and the function containers reach."""
    try:
        shown = subprocess.run(
            ["ip", "-4", "-o", "addr", "show", "docker0"], capture_output=True, text=True, timeout=30
        )
    except OSError:
        pytest.skip("the `ip` command is missing: cannot find the docker0 bridge address")
    fields = shown.stdout.split()
    if shown.returncode != 0 or "inet" not in fields:
        pytest.skip(f"no IPv4 address on docker0, so function containers cannot reach a local S3 ({SETUP_HINT})")
    return fields[fields.index("inet") + 1].split("/")[0]


# --- processes ------------------------------------------------------------------------------------------------


def _free_port(host: str) -> int:
    with socket.socket() as probe:
        probe.bind((host, 0))
        return probe.getsockname()[1]


def _log_tail(log: Path, chars: int = 6000) -> str:
    return log.read_text(errors="replace")[-chars:] if log.exists() else ""


def _wait_for_port(process: subprocess.Popen, host: str, port: int, timeout: float, log: Path) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"{process.args[:4]} exited with {process.returncode}:\n{_log_tail(log)}")
        try:
            with socket.create_connection((host, port), timeout=1):
                return
        except OSError:
            time.sleep(0.5)
    pytest.fail(f"{process.args[:4]} did not listen on {host}:{port} within {timeout:.0f} s:\n{_log_tail(log)}")


def _stop(process: subprocess.Popen) -> None:
    """SIGTERM to the process group (SAM then removes its warm containers), SIGKILL if that takes too long."""
    for sig, grace in ((signal.SIGTERM, 60), (signal.SIGKILL, 30)):
        if process.poll() is not None:
            break
        with suppress(ProcessLookupError):
            os.killpg(process.pid, sig)
        with suppress(subprocess.TimeoutExpired):
            process.wait(timeout=grace)
    # Anything of the group that outlived its leader (the group keeps the leader's pid as its id).
    with suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)


@contextmanager
def _running(command: list[str], env: dict[str, str], log: Path, host: str, port: int) -> Iterator[None]:
    """A server process in a session of its own, listening on host:port for the duration of the block."""
    with log.open("wb") as output:
        process = subprocess.Popen(
            command, env=env, stdin=subprocess.DEVNULL, stdout=output, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        _wait_for_port(process, host, port, SERVICE_START_TIMEOUT, log)
        yield
    finally:
        _stop(process)


def _remove_containers(env: dict[str, str], bucket: str) -> list[str]:
    """Remove any SAM Lambda container still configured with this test's bucket; the ids removed."""
    listed = subprocess.run(
        ["docker", "ps", "-aq", "--filter", "label=sam.cli.container.type=lambda"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    leftovers = []
    for container in listed.stdout.split():
        inspected = subprocess.run(
            ["docker", "inspect", "--format", "{{json .Config.Env}}", container],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        if inspected.returncode == 0 and f"MODEL_BUCKET={bucket}" in json.loads(inspected.stdout or "[]"):
            subprocess.run(["docker", "rm", "-f", container], env=env, capture_output=True, timeout=120)
            leftovers.append(container)
    return leftovers


# --- S3 and the function configuration ------------------------------------------------------------------------


class S3Server:
    """A moto server on the bridge address, one bucket per test."""

    def __init__(self, endpoint: str) -> None:
        self.endpoint = endpoint
        self.client = boto3.client(
            "s3",
            endpoint_url=endpoint,
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )

    def new_bucket(self) -> str:
        bucket = f"sam-local-{uuid.uuid4().hex[:12]}"
        self.client.create_bucket(Bucket=bucket)
        self.client.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
        return bucket

    def keys(self, bucket: str) -> list[str]:
        pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=bucket)
        return [o["Key"] for page in pages for o in page.get("Contents", [])]


@pytest.fixture(scope="module")
def s3_server(bridge_ip: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    port = _free_port(bridge_ip)
    log = tmp_path_factory.mktemp("moto") / "moto.log"
    # sys.executable is the dev venv's python (make test), which has moto[server].
    command = [sys.executable, "-m", "moto.server", "-H", bridge_ip, "-p", str(port)]
    with _running(command, sam_env(), log, bridge_ip, port):
        yield S3Server(f"http://{bridge_ip}:{port}")


@pytest.fixture(scope="module")
def built_template(docker_env: dict[str, str], sam_build_dir: Path) -> Path:
    """The session's built template, used as it is (`sam build` keeps the empty endpoint declarations)."""
    path = sam_build_dir / "template.yaml"
    variables = load_yaml(path)["Globals"]["Function"]["Environment"]["Variables"]
    assert {name: variables.get(name) for name in ENDPOINT_VARIABLES} == dict.fromkeys(ENDPOINT_VARIABLES, "")
    return path


def _env_vars_file(directory: Path, bucket: str, endpoint: str) -> Path:
    """events/local-env.json with the test's bucket and the moto server's real address for every endpoint it sets."""
    document = json.loads(LOCAL_ENV.read_text())
    assert set(document) == {"Parameters"}, f"{LOCAL_ENV.name}: one set of variables for every function"
    values = document["Parameters"]
    assert {"MODEL_BUCKET", "AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL_SQS"} <= set(values), LOCAL_ENV.name
    values.update({name: endpoint for name in values if name.startswith("AWS_ENDPOINT_URL")}, MODEL_BUCKET=bucket)
    path = directory / f"env-vars-{bucket}.json"
    path.write_text(json.dumps(document, indent=2))
    return path


@pytest.fixture
def bucket_config(s3_server: S3Server, docker_env: dict[str, str], tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A fresh bucket and the `--env-vars` file naming it; afterwards no container of this test is left."""
    bucket = s3_server.new_bucket()
    yield bucket, _env_vars_file(tmp_path, bucket, s3_server.endpoint)
    leftovers = _remove_containers(docker_env, bucket)
    assert not leftovers, f"sam left containers behind (removed now): {leftovers}"


def _event(name: str) -> dict[str, Any]:
    return json.loads((EVENTS / name).read_text())


# --- sam local invoke -----------------------------------------------------------------------------------------


def _sam_invoke(
    sam_bin: Path, env: dict[str, str], template: Path, env_vars: Path, function: str, event: str | Path
) -> dict[str, Any]:
    result = subprocess.run(
        [
            str(sam_bin),
            "local",
            "invoke",
            function,
            "--event",
            str(event if isinstance(event, Path) else EVENTS / event),
            "--template",
            str(template),
            "--env-vars",
            str(env_vars),
            "--skip-pull-image",
        ],
        cwd=template.parent,
        env=env,
        capture_output=True,
        text=True,
        timeout=INVOKE_TIMEOUT,
    )
    assert result.returncode == 0, f"sam local invoke {function} failed:\n{result.stdout}\n{result.stderr[-6000:]}"
    lines = result.stdout.strip().splitlines()
    assert lines, f"sam local invoke {function} printed no response:\n{result.stderr[-6000:]}"
    return json.loads(lines[-1])


def test_sam_local_invoke_train_and_health(
    sam_bin: Path,
    docker_env: dict[str, str],
    built_template: Path,
    bucket_config: tuple[str, Path],
    s3_server: S3Server,
) -> None:
    bucket, env_vars = bucket_config

    live = _sam_invoke(sam_bin, docker_env, built_template, env_vars, "PredictFunction", "v2_health_live.json")
    assert live["statusCode"] == 200, live
    assert json.loads(live["body"]) == {"live": True}

    trained = _sam_invoke(sam_bin, docker_env, built_template, env_vars, "TrainFunction", "train.json")
    assert trained["statusCode"] == 201, trained
    body = json.loads(trained["body"])
    assert (body["name"], body["version"], body["task"]) == ("iris", 1, "classification")
    assert body["metrics"]["accuracy"] >= 0.9
    # The container wrote to the moto server, in the bucket --env-vars named.
    assert body["artifact"]["key"] in s3_server.keys(bucket)


def test_sam_local_invoke_batch_prediction_with_the_sample_s3_event(
    sam_bin: Path,
    docker_env: dict[str, str],
    built_template: Path,
    bucket_config: tuple[str, Path],
    s3_server: S3Server,
    tmp_path: Path,
) -> None:
    bucket, env_vars = bucket_config
    assert (
        _sam_invoke(sam_bin, docker_env, built_template, env_vars, "TrainFunction", "train.json")["statusCode"] == 201
    )
    assert (
        _sam_invoke(sam_bin, docker_env, built_template, env_vars, "DeployFunction", "deploy.json")["statusCode"] == 200
    )
    event = _event("batch_s3_put.json")
    obj = event["Records"][0]["s3"]["object"]
    body = b"id,sepal_length_cm,sepal_width_cm,petal_length_cm,petal_width_cm\na,5.1,3.5,1.4,0.2\nb,6.7,3.0,5.2,2.3\n"
    etag = s3_server.client.put_object(Bucket=bucket, Key=obj["key"], Body=body)["ETag"]
    event["Records"][0]["s3"]["bucket"]["name"] = bucket
    obj.update(eTag=etag.strip('"'), size=len(body))
    path = tmp_path / "batch_s3_put.json"
    path.write_text(json.dumps(event))
    result = _sam_invoke(sam_bin, docker_env, built_template, env_vars, "BatchPredictFunction", path)
    (manifest,) = result["results"]
    assert manifest["status"] == "succeeded" and manifest["rows"]["predicted"] == 2, manifest
    output_key = manifest["outputs"]["predictions"]
    output = s3_server.client.get_object(Bucket=bucket, Key=output_key)["Body"].read().decode()
    assert [line.split(",")[5] for line in output.splitlines()[1:]] == ["setosa", "virginica"]


# --- sam local start-lambda: the whole story of events/ -------------------------------------------------------


def _sam_service_command(sam_bin: Path, service: str, template: Path, env_vars: Path, port: int) -> list[str]:
    """`sam local start-lambda` / `start-api` on 127.0.0.1:port, each function's container kept warm.

    LAZY, not EAGER: with EAGER, SAM CLI 1.170 creates the containers in parallel threads that each build their
    own warm runtime, and the container registered in a discarded runtime is never removed on shutdown (seen
    here: one of three containers left running after SIGTERM). LAZY starts each on first use, as fast here.
    """
    return [
        str(sam_bin),
        "local",
        service,
        "--template",
        str(template),
        "--env-vars",
        str(env_vars),
        "--skip-pull-image",
        "--warm-containers",
        "LAZY",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
    ]


def test_sam_local_start_lambda_runs_the_event_story(
    sam_bin: Path,
    docker_env: dict[str, str],
    built_template: Path,
    bucket_config: tuple[str, Path],
    tmp_path: Path,
) -> None:
    _, env_vars = bucket_config
    port = _free_port("127.0.0.1")
    command = _sam_service_command(sam_bin, "start-lambda", built_template, env_vars, port)
    lambda_client = boto3.client(
        "lambda",
        endpoint_url=f"http://127.0.0.1:{port}",
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        config=Config(read_timeout=INVOKE_TIMEOUT, connect_timeout=10, retries={"total_max_attempts": 1}),
    )

    def invoke(function: str, event: dict[str, Any]) -> dict[str, Any]:
        reply = lambda_client.invoke(FunctionName=function, Payload=json.dumps(event).encode())
        payload = json.loads(reply["Payload"].read())
        assert "FunctionError" not in reply, (function, payload)
        return payload

    log = tmp_path / "start-lambda.log"
    with _running(command, docker_env, log, "127.0.0.1", port):
        run_story(TEMPLATE, invoke, lambda: _log_tail(log, 3000))
        # delete_model.json, the story's last event, erased the model.
        described = invoke("DeployFunction", api_event("GET", "/models/iris", "/models/{model}", {"model": "iris"}))
        assert described["statusCode"] == 404, described
        assert json.loads(described["body"])["error"]["code"] == "model_not_found"


# --- sam local start-api: HTTP through SAM's API Gateway emulation ------------------------------------------


def _http(method: str, url: str, body: Any = None) -> tuple[int, Any]:
    data = json.dumps(body).encode() if body is not None else None
    headers = {"Content-Type": "application/json", "Accept": "application/json", **API_KEY_HEADER}
    request = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=INVOKE_TIMEOUT) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode(errors="replace")


def test_sam_local_start_api_trains_deploys_and_predicts(
    sam_bin: Path,
    docker_env: dict[str, str],
    built_template: Path,
    bucket_config: tuple[str, Path],
    tmp_path: Path,
) -> None:
    _, env_vars = bucket_config
    port = _free_port("127.0.0.1")
    command = _sam_service_command(sam_bin, "start-api", built_template, env_vars, port)
    base = f"http://127.0.0.1:{port}"
    log = tmp_path / "start-api.log"
    with _running(command, docker_env, log, "127.0.0.1", port):
        status, trained = _http("POST", f"{base}/models/iris/versions", json.loads(_event("train.json")["body"]))
        assert status == 201, (trained, _log_tail(log, 3000))
        assert trained["version"] == 1

        status, deployed = _http("PUT", f"{base}/models/iris/stages/production", {"version": 1})
        assert status == 200, (deployed, _log_tail(log, 3000))
        assert deployed == {"stage": "production", "version": 1, "previous_version": None}

        status, predicted = _http(
            "POST", f"{base}/models/iris/predict?stage=production", {"instances": [SETOSA_ROW, [6.7, 3.0, 5.2, 2.3]]}
        )
        assert status == 200, (predicted, _log_tail(log, 3000))
        assert predicted["predictions"] == ["setosa", "virginica"]
        assert predicted["model"] == {"name": "iris", "version": 1, "stage": "production"}
