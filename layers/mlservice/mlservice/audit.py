"""Who made a registry change: the caller's identity as API Gateway established it, and the request id.

Management routes are IAM-authorised (SigV4), so API Gateway puts the caller's principal ARN in
`requestContext.identity.userArn`; prediction routes carry the API key id in `identity.apiKeyId`. Neither
can be forged by the caller: API Gateway sets them after authenticating the request. `make run` authenticates
nobody, so its changes are recorded as made by `local:unauthenticated`. Changes made outside a request (tests,
scripts) are `internal`.

The actor is stored with every version (`created_by`) and every stage history entry (`by`), and returned by
GET /models/{model} and GET /models/{model}/versions/{version}.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

LOCAL = "local:unauthenticated"
INTERNAL = "internal"


@dataclass(frozen=True)
class Actor:
    principal: str
    request_id: str | None = None

    def record(self) -> dict[str, Any]:
        """The JSON stored with a change."""
        return {"principal": self.principal, "request_id": self.request_id}


def principal(event: dict) -> str:
    """The IAM principal ARN, else `api-key:<id>`, else `local:unauthenticated` (no authorizer ran)."""
    identity = (event.get("requestContext") or {}).get("identity") or {}
    if identity.get("userArn"):
        return str(identity["userArn"])
    if identity.get("apiKeyId"):
        return f"api-key:{identity['apiKeyId']}"
    return LOCAL


def from_event(event: dict) -> Actor:
    """The actor of an API Gateway proxy event."""
    request_id = (event.get("requestContext") or {}).get("requestId")
    return Actor(principal(event), str(request_id) if request_id else None)


INTERNAL_ACTOR = Actor(INTERNAL)
