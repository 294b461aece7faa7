"""`make run`: the whole service on http://127.0.0.1:3000 with no AWS account and no Docker.

Every route of template.yaml is served by its function's handler (the same code Lambda runs), each HTTP
request turned into the API Gateway REST proxy event Lambda would receive. S3 is an embedded moto server
unless MODEL_BUCKET is set together with real credentials or AWS_ENDPOINT_URL_S3, in which case that S3 is used.
Environment: PORT (default 3000), HOST (default 127.0.0.1), MODEL_BUCKET, AWS_ENDPOINT_URL_S3.
"""

from __future__ import annotations

import faulthandler
import os
import signal
import sys
import threading
from typing import Any

from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

from local.embedded_s3 import EmbeddedS3
from local.runtime import LocalLambda
from local.triggers import EventPump

LOCAL_BUCKET = "mlservice-local"


class ApiGatewayApp:
    """A WSGI application doing API Gateway's job: route, build the proxy event, invoke, answer."""

    def __init__(self, runtime: LocalLambda) -> None:
        self.runtime = runtime

    def __call__(self, environ: dict, start_response: Any) -> Any:
        request = Request(environ)
        try:
            result = self.runtime.http(
                request.method,
                request.path,
                query={k: request.args.getlist(k) for k in request.args},
                headers={k: [v] for k, v in request.headers.items()},
                body=request.get_data() if request.content_length or request.method in ("POST", "PUT") else None,
            )
            response = Response(result.body, status=result.status, headers=result.headers)
        except Exception as error:  # a crash in a handler's import, say: answer like API Gateway does (502)
            print(f"function error: {type(error).__name__}: {error}", file=sys.stderr)
            response = Response(b'{"message": "Internal server error"}', status=502, content_type="application/json")
        return response(environ, start_response)


def _shell_overrides() -> dict[str, str]:
    """Variables the template gives the functions, overridden from the shell (MAX_PREDICT_ROWS=1 make run)."""
    from local.template import Template

    declared = {name for fn in Template().functions.values() for name in fn.environment}
    return {name: os.environ[name] for name in declared if name in os.environ}


def _use_real_s3() -> bool:
    has_credentials = bool(os.environ.get("AWS_ACCESS_KEY_ID") or os.environ.get("AWS_PROFILE"))
    return bool(os.environ.get("MODEL_BUCKET")) and (bool(os.environ.get("AWS_ENDPOINT_URL_S3")) or has_credentials)


def _prepare_storage() -> tuple[str, str, EmbeddedS3 | None]:
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    if _use_real_s3():
        return os.environ["MODEL_BUCKET"], os.environ.get("AWS_ENDPOINT_URL_S3", "AWS S3"), None
    s3 = EmbeddedS3().start()
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN"):
        os.environ.pop(name, None)
    os.environ.update(
        AWS_ACCESS_KEY_ID="local",
        AWS_SECRET_ACCESS_KEY="local",
        AWS_ENDPOINT_URL_S3=s3.endpoint,
        AWS_ENDPOINT_URL_SQS=s3.endpoint,
    )
    bucket = os.environ.get("MODEL_BUCKET") or LOCAL_BUCKET
    import boto3

    boto3.client("s3", endpoint_url=s3.endpoint, region_name=os.environ["AWS_DEFAULT_REGION"]).create_bucket(
        Bucket=bucket
    )
    return bucket, s3.endpoint, s3


def main() -> int:
    host = os.environ.get("HOST", "127.0.0.1")
    port = int(os.environ.get("PORT", "3000"))
    bucket, endpoint, embedded = _prepare_storage()
    runtime = LocalLambda(substitutions={**_shell_overrides(), "MODEL_BUCKET": bucket, "ModelBucket": bucket})
    pump = None
    if embedded is not None:  # S3 events and queues exist only where this process owns the S3
        pump = EventPump(runtime, endpoint, bucket)
        runtime.substitutions.update(pump.configure())
        pump.start()
    try:
        server = make_server(host, port, ApiGatewayApp(runtime), threaded=True)
    except (OSError, SystemExit):  # werkzeug explains a busy port itself, then exits
        if embedded is not None:
            embedded.stop()
        print(f"cannot listen on {host}:{port}; set PORT to a free port", file=sys.stderr)
        return 1
    url = f"http://{host}:{server.server_port}"
    stopping: list[int] = []

    def _shutdown(signum: int, _frame: Any) -> None:
        # Signal-safe: no lock may be taken here. `make run` gets SIGTERM twice (the process group's, and the one
        # make forwards), and a second handler call interrupting the first inside Event.set() deadlocked on the
        # Event's lock (seen in CI through the SIGUSR1 stack dump). A list append is atomic between bytecodes,
        # so the second call returns before touching anything.
        if stopping:
            return
        stopping.append(signum)
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGINT, _shutdown)
    signal.signal(signal.SIGTERM, _shutdown)
    # `kill -USR1 <pid>` prints every thread's stack: what a stuck start or stop is waiting on
    faulthandler.register(signal.SIGUSR1, all_threads=True)
    print(f"Serverless ML running at {url}  (routes from template.yaml; Ctrl-C stops)", flush=True)
    print(f"S3: {endpoint}  bucket: {bucket}", flush=True)
    print(
        f"No authentication: every route is open to whoever can reach {host} (changes are recorded as made by "
        "local:unauthenticated). Deployed, management routes need IAM (SigV4) and prediction routes an API key.",
        flush=True,
    )
    if host not in ("127.0.0.1", "localhost", "::1"):
        print(f"WARNING: HOST={host} exposes this unauthenticated server beyond this machine", file=sys.stderr)
    print(
        "Try:\n"
        f'  curl -s -X POST {url}/models/iris/versions -d \'{{"algorithm": "logistic_regression", '
        '"data": {"dataset": "iris"}}\'\n'
        f"  curl -s -X PUT {url}/models/iris/stages/production -d '{{\"version\": 1}}'\n"
        f"  curl -s -X POST {url}/models/iris/predict -d '{{\"instances\": [[5.1, 3.5, 1.4, 0.2]]}}'\n"
        f"  API docs: {url}/docs\n"
        f"Batch: files copied to s3://{bucket}/batch/input/<model>/ are predicted into batch/output/<model>/"
        + ("" if pump else " (only with the embedded S3)"),
        flush=True,
    )
    try:
        server.serve_forever()
    finally:
        server.server_close()
        if pump is not None:
            pump.stop()
        if embedded is not None:
            embedded.stop()
        print("stopped", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
