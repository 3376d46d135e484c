"""Each route declares its contract once, next to its handler; the OpenAPI document and the
request validation are both built from that one declaration, so they cannot drift apart.

A handler is marked with :func:`operation`::

    @operation(summary="Create a group", tag="groups", body=GroupIn, ok=GroupOut,
               status=201, scope="write", errors=(400, 403, 409))
    async def create_group(request: Request) -> JSONResponse:
        group = await body_of(request, GroupIn)
        ...

Bodies and query strings are pydantic models (``extra="forbid"``): an unknown field or a
wrong type is a 400 naming the field, never a 500.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.requests import Request

from api.bodies import MAX_BODY_BYTES, json_object
from api.problems import BadRequest

__all__ = [
    "Model",
    "Operation",
    "StrictInt",
    "body_of",
    "operation",
    "operation_of",
    "query_of",
]

Scope = Literal["read", "write", "admin"]
Handler = TypeVar("Handler", bound=Callable[..., Any])
M = TypeVar("M", bound=BaseModel)

_ATTRIBUTE = "__corral_operation__"


StrictInt = Annotated[int, Field(strict=True)]
"""A JSON integer only, for body fields: ``true`` or ``"80"`` are refused (pydantic's lax
mode would take them). Query strings are text, so their integers stay lax."""


class Model(BaseModel):
    """Base for request and response models: unknown fields are refused."""

    model_config = ConfigDict(extra="forbid")


@dataclass(frozen=True)
class Operation:
    """What one route handler accepts and answers."""

    summary: str
    tag: str
    ok: type[BaseModel] | None = None
    """The success body's model; ``None`` with ``status=204`` means no body."""
    status: int = 200
    body: type[BaseModel] | None = None
    query: type[BaseModel] | None = None
    errors: tuple[int, ...] = ()
    """Problem statuses this route can answer besides 401 (authenticated routes) and 500."""
    scope: Scope = "read"
    """The token scope the route needs (read < write < admin)."""
    authenticated: bool = True
    cookie_only: bool = False
    """Only a browser session cookie reaches the route (MFA enrolment, logout): no bearer."""
    media_type: str = "application/json"
    """For non-JSON answers: ``application/x-ndjson``, ``text/event-stream``, ..."""
    description: str = ""
    in_document: bool = True
    """``False`` for browser pages (HTML forms): declared, but not part of the JSON API."""
    operation_id: str = ""
    """Pins the document's ``operationId`` (else derived from the handler's name): for a
    handler moved to another module, so clients generated from the document keep theirs."""


def operation(**declared: Any) -> Callable[[Handler], Handler]:
    """Attach an :class:`Operation` to a route handler (see the module docstring)."""
    spec = Operation(**declared)

    def mark(handler: Handler) -> Handler:
        setattr(handler, _ATTRIBUTE, spec)
        return handler

    return mark


def operation_of(handler: object) -> Operation | None:
    spec = getattr(handler, _ATTRIBUTE, None)
    return spec if isinstance(spec, Operation) else None


def _refusal(exc: ValidationError, where: str) -> BadRequest:
    first = exc.errors()[0]
    field = ".".join(str(part) for part in first["loc"]) or where
    return BadRequest(f"{where} field '{field}': {first['msg']}", field=field)


async def body_of(
    request: Request,
    model: type[M],
    *,
    allow_empty: bool = False,
    max_bytes: int = MAX_BODY_BYTES,
) -> M:
    """The JSON body validated against ``model``; a 400 naming the first bad field.

    ``allow_empty`` reads an empty body as ``{}`` (for bodies whose fields all have defaults);
    ``max_bytes`` raises the size limit for the few bodies that carry files (policy text).
    """
    raw = await json_object(request, allow_empty=allow_empty, max_bytes=max_bytes)
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        raise _refusal(exc, "body") from None


def query_of(request: Request, model: type[M]) -> M:
    """The query string validated against ``model`` (repeated keys become lists)."""
    raw: dict[str, Any] = {}
    for key in request.query_params:
        values = request.query_params.getlist(key)
        raw[key] = values if len(values) > 1 else values[0]
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        raise _refusal(exc, "query") from None
