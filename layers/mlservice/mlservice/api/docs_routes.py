"""GET /openapi.json and GET /docs: the API's OpenAPI document, generated from the route code.

Each function serves only its own routes, but the document describes the whole API, so it is generated from
every router at once. Powertools binds a router to the last resolver that included it, so the throwaway
resolver used for generation hands the routers back to their serving resolver afterwards.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response
from aws_lambda_powertools.event_handler.api_gateway import Router

from mlservice import __version__

router = Router()
TITLE = "Serverless ML"
DESCRIPTION = (
    "Train scikit-learn models, promote versions to stages and get predictions, on AWS Lambda. Every error is "
    '`{"error": {"code", "message"}}` (the /v2 Open Inference Protocol routes use `{"error": "<message>"}`). '
    "Deployed, every request needs the x-api-key header."
)
_documents: dict[str, str] = {}


def all_routers() -> list[Router]:
    from mlservice.api import (
        dataset_routes,
        explain_routes,
        page_routes,
        predict_routes,
        registry_routes,
        training_routes,
        v2_routes,
    )

    return [
        training_routes.router,
        registry_routes.router,
        dataset_routes.router,
        page_routes.router,
        predict_routes.router,
        explain_routes.router,
        v2_routes.router,
        router,
    ]


def openapi_json(base_path: str = "/") -> str:
    """The OpenAPI 3.1 document of every route, for the given server base path (cached per container)."""
    if base_path not in _documents:
        routers = all_routers()
        owners = [getattr(r, "api_resolver", None) for r in routers]
        generator = APIGatewayRestResolver(enable_validation=True)
        for r in routers:
            generator.include_router(r)
        for r, owner in zip(routers, owners, strict=True):
            r.api_resolver = owner
        from aws_lambda_powertools.event_handler.openapi.models import APIKey, APIKeyIn, Server

        _documents[base_path] = generator.get_openapi_json_schema(
            title=TITLE,
            version=__version__,
            description=DESCRIPTION,
            servers=[Server(url=base_path)],
            # Deployed, API Gateway wants the key on prediction routes (declaring it lets Swagger UI send it) and a
            # SigV4 signature on management routes (those name `sigv4` themselves); `make run` checks neither.
            security_schemes={
                "apiKey": APIKey(name="x-api-key", in_=APIKeyIn.header),
                "sigv4": APIKey(
                    name="Authorization",
                    in_=APIKeyIn.header,
                    description="AWS Signature Version 4 (service execute-api): an IAM principal allowed "
                    "execute-api:Invoke on the route. Sign with botocore's SigV4Auth or awscurl; see the README.",
                ),
            },
            security=[{"apiKey": []}],
        )
    return _documents[base_path]


def _base_path() -> str:
    return router.api_resolver._get_base_path() or "/"  # the stage prefix (/v1) when called through API Gateway


@router.get("/openapi.json", summary="The OpenAPI document of this API", tags=["documentation"])
def get_openapi() -> Response[dict]:
    return Response(status_code=200, content_type="application/json", body=json.loads(openapi_json(_base_path())))


@router.get("/docs", summary="Swagger UI for this API (self-contained: no CDN)", tags=["documentation"])
def get_docs() -> Response[str]:
    return Response(status_code=200, content_type="text/html", body=_swagger_html(_base_path()))


@functools.cache
def _swagger_html(base_path: str) -> str:
    """The 1.7 MB Swagger UI page with the document inlined, built once per container and base path (like
    `openapi_json`): reading the assets and formatting the page cost ~25 ms a request."""
    from aws_lambda_powertools.event_handler.openapi import swagger_ui
    from aws_lambda_powertools.event_handler.openapi.swagger_ui.html import generate_swagger_html

    assets = Path(swagger_ui.__file__).parent
    return generate_swagger_html(
        openapi_json(base_path).replace("</", "<\\/"),
        (assets / "swagger-ui-bundle.min.js").read_text(encoding="utf-8"),
        (assets / "swagger-ui.min.css").read_text(encoding="utf-8"),
        None,
        None,
    )
