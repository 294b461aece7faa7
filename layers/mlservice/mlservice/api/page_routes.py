"""Pages for people: GET / (every model, its versions and stages) and GET .../versions/{v}/card (a model card).

Both are HTML drawn by mlservice.cards.render from data (the card's `?format=json` is that data), with charts as
SVG made by the service: no script runs and nothing is fetched from anywhere else, which the Content-Security-
Policy sent with them enforces. They read the registry like GET /models, with the same authorisation.
"""

from __future__ import annotations

from typing import Annotated, Literal

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.api_gateway import Router
from aws_lambda_powertools.event_handler.openapi.params import Query

from mlservice.api.schemas import IAM_SIGNED, ModelName, VersionNumber
from mlservice.cards import document

router = Router()
# Inline styles and the SVG charts only: no script, no fetch, no frame, no form, nothing from another origin.
PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
FormatQuery = Annotated[
    Literal["html", "json"], Query(description="html (default) for the page, json for the same content as data")
]


def _html(body: str) -> Response[str]:
    return Response(status_code=200, content_type="text/html; charset=utf-8", body=body, headers=PAGE_HEADERS)


@router.get(
    "/", summary="The front page: models, versions, stages, links to cards", tags=["pages"], security=IAM_SIGNED
)
def front_page() -> Response[str]:
    # Deployed, the page lives at https://<api>/<stage>/ and its links are relative to it; opened as .../<stage>
    # (no slash) they would resolve outside the stage, so that address is redirected to the one with a slash.
    seen = (router.current_event.raw_event.get("requestContext") or {}).get("path") or "/"
    if not seen.endswith("/"):
        return Response(status_code=308, headers={"Location": seen + "/"}, body="")
    from mlservice.cards import render

    return _html(render.front_page_html(document.models_overview()))


@router.get(
    "/models/<model>/versions/<version>/card",
    summary="A version's model card: purpose, data, metrics, charts, explanations of the model, provenance",
    description="HTML (charts as inline SVG; works offline), or with ?format=json the same content as data. "
    "Every chart's data was computed at training and stored with the version.",
    tags=["pages"],
    security=IAM_SIGNED,
)
def model_card(model: ModelName, version: VersionNumber, format: FormatQuery = "html") -> Response[str | dict]:
    content = document.card(model, version)
    if format == "json":
        return Response(status_code=200, content_type="application/json", body=content)
    from mlservice.cards import render

    return _html(render.card_html(content))
