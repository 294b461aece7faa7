"""The typed errors of the service.

Every failure a client can cause or observe is a ServiceError carrying an HTTP status and a stable
snake_case code; the API layer turns it into the documented JSON body in one place. Anything else that
escapes is a bug and becomes a 500 `internal_error` without details.
"""

from __future__ import annotations


class ServiceError(Exception):
    """An error with an HTTP status, a stable code and a sentence naming the problem."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message

    def to_body(self) -> dict:
        return {"error": {"code": self.code, "message": self.message}}


def bad_request(message: str, code: str = "invalid_request") -> ServiceError:
    return ServiceError(400, code, message)


def not_found(code: str, message: str) -> ServiceError:
    return ServiceError(404, code, message)


def conflict(code: str, message: str) -> ServiceError:
    return ServiceError(409, code, message)


def too_large(message: str) -> ServiceError:
    return ServiceError(413, "payload_too_large", message)


class WriteConflict(Exception):
    """A conditional S3 write lost a race (PreconditionFailed); the caller re-reads and retries."""


class IntegrityError(ServiceError):
    """An artifact's bytes do not match the digest the registry recorded: it is never unpickled."""

    def __init__(self, message: str) -> None:
        super().__init__(500, "artifact_integrity", message)
