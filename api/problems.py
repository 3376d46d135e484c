"""API errors as RFC 9457 problem+json, from one handler.

Each error class carries its HTTP status and a stable ``type`` code; broker exceptions are
mapped here, at the boundary, and anything unexpected becomes a bare 500 whose details go
to the log, never to the client.
"""

from __future__ import annotations

import logging
from http import HTTPStatus
from typing import Any, ClassVar

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from api.tenancy import audit_not_found
from broker.errors import (
    AuthenticationFailed,
    Conflict,
    CorralError,
    InvalidInput,
    NotFound,
)
from idp.delivery import DeliveryFailed
from idp.errors import MfaRequired, RateLimited

__all__ = [
    "ApiError",
    "BadRequest",
    "DeliveryProblem",
    "Forbidden",
    "NotFoundProblem",
    "TooManyRequests",
    "Unauthorized",
    "http_problem_handler",
    "problem_handler",
    "problem_response",
]

log = logging.getLogger("corral.api")
PROBLEM_TYPE = "urn:corral:problem:"


class ApiError(Exception):
    status: ClassVar[int] = 500
    code: ClassVar[str] = "internal"
    title: ClassVar[str] = "Internal error"

    def __init__(self, detail: str = "", **extra: Any) -> None:
        super().__init__(detail or self.title)
        self.detail = detail or self.title
        self.extra = extra


class BadRequest(ApiError):
    status, code, title = 400, "invalid-request", "The request is not valid"


class Unauthorized(ApiError):
    status, code, title = 401, "unauthenticated", "Authentication required"


class Forbidden(ApiError):
    status, code, title = 403, "forbidden", "Not allowed"


class NotFoundProblem(ApiError):
    status, code, title = 404, "not-found", "Not found"


class ConflictProblem(ApiError):
    status, code, title = 409, "conflict", "Conflict"


class TooManyRequests(ApiError):
    status, code, title = 429, "rate-limited", "Too many attempts"


class DeliveryProblem(ApiError):
    status, code, title = 502, "delivery-failed", "The code could not be sent"


_MAPPED: dict[type[CorralError], type[ApiError]] = {
    InvalidInput: BadRequest,
    AuthenticationFailed: Unauthorized,
    NotFound: NotFoundProblem,
    Conflict: ConflictProblem,
    MfaRequired: Unauthorized,
}


def to_problem(exc: Exception) -> ApiError:
    if isinstance(exc, ApiError):
        return exc
    if isinstance(exc, RateLimited):
        return TooManyRequests(str(exc), retry_after=exc.retry_after)
    if isinstance(exc, DeliveryFailed):
        return DeliveryProblem(str(exc))
    for kind, problem in _MAPPED.items():
        if isinstance(exc, kind):
            return problem(str(exc))
    return ApiError()


def problem_response(
    request: Request, status: int, code: str, title: str, detail: str, **extra: Any
) -> Response:
    body = {
        "type": PROBLEM_TYPE + code,
        "title": title,
        "status": status,
        "detail": detail,
        "instance": request.url.path,
        **extra,
    }
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else {}
    if status == 429 and "retry_after" in extra:
        headers["Retry-After"] = str(extra["retry_after"])
    return JSONResponse(
        body, status_code=status, media_type="application/problem+json", headers=headers
    )


async def problem_handler(request: Request, exc: Exception) -> Response:
    problem = to_problem(exc)
    if type(problem) is ApiError:
        log.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    if problem.status == 404 and not getattr(request.state, "refusal_audited", False):
        await audit_not_found(request, problem.detail)
    return problem_response(
        request, problem.status, problem.code, problem.title, problem.detail, **problem.extra
    )


async def http_problem_handler(request: Request, exc: Exception) -> Response:
    """Starlette's own 404/405 answers, in the same problem+json shape."""
    status = exc.status_code if isinstance(exc, HTTPException) else 500
    code = {404: "not-found", 405: "method-not-allowed"}.get(status, "http-error")
    title = HTTPStatus(status).phrase
    return problem_response(request, status, code, title, title)
