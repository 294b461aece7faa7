"""The OpenAPI document is generated from the route code and matches template.yaml route for route."""

from __future__ import annotations

import json
import re


def _template_routes(runtime) -> set[tuple[str, str]]:
    return {(r.method, r.resource) for r in runtime.template.routes}


def test_every_template_route_is_documented_and_nothing_else(api, runtime):
    response = api.get("/openapi.json")
    assert response.status == 200
    document = response.json()
    assert document["openapi"].startswith("3.")
    documented = {
        (method.upper(), path)
        for path, operations in document["paths"].items()
        for method in operations
        if method in {"get", "put", "post", "delete", "patch"}
    }
    assert documented == _template_routes(runtime)


def test_request_bodies_are_described(api):
    paths = api.get("/openapi.json").json()["paths"]
    train = paths["/models/{model}/versions"]["post"]
    assert "requestBody" in train and train["requestBody"]["required"] is True
    assert "requestBody" in paths["/v2/models/{model}/infer"]["post"]


def test_swagger_ui_is_self_contained(api):
    response = api.get("/docs")
    assert response.status == 200 and response.headers["Content-Type"].startswith("text/html")
    page = response.body.decode()
    assert "/models/{model}/predict" in page
    assert not re.search(r"<script[^>]+src=\"https?://", page), "the page must not need a CDN"


def test_management_routes_declare_sigv4_and_prediction_routes_the_api_key(runtime):
    """The document says how each route is authorised when deployed, as the template does (tests/
    test_template_security.py checks the template): training and registry routes SigV4, the rest the key."""
    from local.template import Template
    from mlservice.api.docs_routes import openapi_json

    document = json.loads(openapi_json())
    assert document["security"] == [{"apiKey": []}]
    assert {"apiKey", "sigv4"} <= set(document["components"]["securitySchemes"])
    management = {"TrainFunction", "DeployFunction"}
    for route in Template().routes:
        operation = document["paths"][route.resource][route.method.lower()]
        expected = [{"sigv4": []}] if route.function in management else None
        assert operation.get("security") == expected, (route.method, route.resource, operation.get("security"))
