"""`python -m local.signing_proxy`: a browser's requests reach the deployed API signed with SigV4 (and the API
key when given), with the stage prefix, path and query kept, and the API's answer passed back unchanged."""

from __future__ import annotations

import re
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from botocore.credentials import Credentials
from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

from local.signing_proxy import SigningProxy, region_of


def _serve(app: Any) -> Iterator[str]:
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def fake_api() -> Iterator[tuple[str, list[Request]]]:
    seen: list[Request] = []

    def app(environ: dict, start_response: Any) -> Any:
        request = Request(environ)
        request.get_data()
        seen.append(request)
        if request.path.endswith("/missing"):
            return Response('{"message":"Forbidden"}', status=403, content_type="application/json")(
                environ, start_response
            )
        return Response("<!doctype html><p>models</p>", content_type="text/html; charset=utf-8")(
            environ, start_response
        )

    for url in _serve(app):
        yield url, seen


def test_requests_are_signed_for_execute_api_with_the_stage_and_query_kept(fake_api: tuple[str, list]) -> None:
    api_url, seen = fake_api
    credentials = Credentials("AKIDEXAMPLE", "secret", "session-token")
    proxy = SigningProxy(api_url + "/v1", "eu-west-1", credentials, api_key="key-123")
    for proxy_url in _serve(proxy):
        with urllib.request.urlopen(proxy_url + "/models/iris/versions/2/card?format=json", timeout=10) as reply:
            assert reply.status == 200 and reply.headers["Content-Type"].startswith("text/html")
            assert reply.read() == b"<!doctype html><p>models</p>"
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(proxy_url + "/missing", timeout=10)
        assert refused.value.code == 403  # the API's own answer, passed through
    forwarded = seen[0]
    assert forwarded.full_path == "/v1/models/iris/versions/2/card?format=json"
    authorization = forwarded.headers["Authorization"]
    assert re.fullmatch(
        r"AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/\d{8}/eu-west-1/execute-api/aws4_request, "
        r"SignedHeaders=[a-z0-9;-]*host[a-z0-9;-]*, Signature=[0-9a-f]{64}",
        authorization,
    ), authorization
    assert "x-amz-date" in authorization and forwarded.headers["X-Amz-Security-Token"] == "session-token"
    assert forwarded.headers["x-api-key"] == "key-123"


def test_the_region_comes_from_the_execute_api_host() -> None:
    assert region_of("https://abc123.execute-api.ap-south-1.amazonaws.com/v1") == "ap-south-1"
    assert region_of("https://ml.example.com/v1", "us-east-2") == "us-east-2"
    with pytest.raises(SystemExit):
        region_of("https://ml.example.com/v1")
