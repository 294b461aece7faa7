"""An S3 for the local service: moto's server on 127.0.0.1, in this process.

moto's server checks a conditional write's precondition and then writes without a lock, so two concurrent
writers could both succeed where real S3 lets exactly one through. Mutating requests are therefore
serialised here; reads stay concurrent.
"""

from __future__ import annotations

import threading
from typing import Any

from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server


class _SerialisedWrites:
    def __init__(self, app: Any) -> None:
        self.app = app
        self.lock = threading.Lock()

    def __call__(self, environ: dict, start_response: Any) -> Any:
        if environ.get("REQUEST_METHOD") in ("GET", "HEAD"):
            return self.app(environ, start_response)
        with self.lock:
            # materialise the body inside the lock: moto does its work while producing it
            return list(self.app(environ, start_response))


class _QuietHandler(WSGIRequestHandler):
    """No access log line per S3 call: the API's own log is what a user reads."""

    def log_request(self, *args: Any, **kwargs: Any) -> None:
        pass


class EmbeddedS3:
    """Start with `start()`; `endpoint` is the URL to give boto3 (`AWS_ENDPOINT_URL_S3`)."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.host, self.port = host, port
        self._server: BaseWSGIServer | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> EmbeddedS3:
        from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app

        app = _SerialisedWrites(DomainDispatcherApplication(create_backend_app))
        self._server = make_server(self.host, self.port, app, threaded=True, request_handler=_QuietHandler)
        self.port = self._server.server_port
        self._thread = threading.Thread(target=self._server.serve_forever, name="embedded-s3", daemon=True)
        self._thread.start()
        return self

    @property
    def endpoint(self) -> str:
        return f"http://{self.host}:{self.port}"

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
