"""Open the deployed API's pages in a browser: a proxy on 127.0.0.1 that signs each request with SigV4.

Deployed, the front page and model cards are management routes (IAM-authorised, like GET /models), and a
browser cannot sign a request. This proxy signs every request it forwards with the credentials boto3 finds
(environment, profile, SSO, instance role) for service `execute-api`, and adds `x-api-key` when given one (for
/docs and the prediction routes):

    python -m local.signing_proxy https://abc123.execute-api.eu-west-1.amazonaws.com/v1 [--port 8081] [--api-key K]
    # then open http://127.0.0.1:8081/

It listens on loopback only: whoever can reach it acts with your credentials.
"""

from __future__ import annotations

import argparse
import re
import sys
import urllib.error
import urllib.request
from typing import Any
from urllib.parse import urlsplit

from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "content-encoding", "content-length", "host"}
_REGION = re.compile(r"\.execute-api\.([a-z0-9-]+)\.amazonaws\.com")


def region_of(api_url: str, default: str | None = None) -> str:
    """The region in an execute-api host name, else `default` (AWS_REGION / the profile's region)."""
    found = _REGION.search(urlsplit(api_url).netloc)
    if found:
        return found.group(1)
    if default:
        return default
    raise SystemExit(f"cannot tell the region of {api_url}: pass --region")


class SigningProxy:
    """A WSGI application forwarding every request to `api_url` + path, signed."""

    def __init__(self, api_url: str, region: str, credentials: Any, api_key: str | None = None) -> None:
        self.api_url = api_url.rstrip("/")
        self.region = region
        self.credentials = credentials
        self.api_key = api_key

    def signed(self, method: str, url: str, body: bytes, headers: dict[str, str]) -> urllib.request.Request:
        from botocore.auth import SigV4Auth
        from botocore.awsrequest import AWSRequest

        request = AWSRequest(method=method, url=url, data=body or None, headers=headers)
        SigV4Auth(self.credentials.get_frozen_credentials(), "execute-api", self.region).add_auth(request)
        return urllib.request.Request(url, data=body or None, headers=dict(request.headers.items()), method=method)

    def __call__(self, environ: dict, start_response: Any) -> Any:
        incoming = Request(environ)
        url = self.api_url + incoming.full_path.rstrip("?")
        headers = {k: v for k, v in incoming.headers.items() if k.lower() not in _HOP_BY_HOP | {"cookie"}}
        if self.api_key:
            headers["x-api-key"] = self.api_key
        forwarded = self.signed(incoming.method, url, incoming.get_data(), headers)
        try:
            with urllib.request.urlopen(forwarded, timeout=60) as reply:
                status, reply_headers, body = reply.status, reply.headers, reply.read()
        except urllib.error.HTTPError as error:
            status, reply_headers, body = error.code, error.headers, error.read()
        except urllib.error.URLError as error:
            return Response(f"cannot reach {self.api_url}: {error.reason}\n", status=502)(environ, start_response)
        kept = [(k, v) for k, v in reply_headers.items() if k.lower() not in _HOP_BY_HOP]
        return Response(body, status=status, headers=kept)(environ, start_response)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "api_url", help="the API's invoke URL with its stage, e.g. https://abc.execute-api.eu-west-1.amazonaws.com/v1"
    )
    parser.add_argument("--port", type=int, default=8081)
    parser.add_argument("--region", help="when the URL is a custom domain")
    parser.add_argument("--api-key", help="sent as x-api-key (for /docs and prediction routes)")
    args = parser.parse_args(argv)
    import boto3

    session = boto3.Session()
    credentials = session.get_credentials()
    if credentials is None:
        print("no AWS credentials found (set AWS_PROFILE or the AWS_* variables)", file=sys.stderr)
        return 1
    proxy = SigningProxy(
        args.api_url, region_of(args.api_url, args.region or session.region_name), credentials, args.api_key
    )
    server = make_server("127.0.0.1", args.port, proxy, threaded=True)
    print(f"Signing proxy for {args.api_url} at http://127.0.0.1:{server.server_port}/  (Ctrl-C stops)", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
