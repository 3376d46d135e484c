"""Request bodies: one bounded, strict JSON-object reader for every route that takes one."""

from __future__ import annotations

import json
from typing import Any

from starlette.requests import Request

from api.problems import BadRequest

__all__ = ["MAX_BODY_BYTES", "json_object"]

MAX_BODY_BYTES = 64 * 1024


async def json_object(
    request: Request, *, max_bytes: int = MAX_BODY_BYTES, allow_empty: bool = False
) -> dict[str, Any]:
    """The body as a JSON object; an empty body is ``{}`` only when ``allow_empty``."""
    body = await request.body()
    if len(body) > max_bytes:
        raise BadRequest(f"request body too large (limit {max_bytes} bytes)")
    if not body and allow_empty:
        return {}
    try:
        value = json.loads(body)
    except ValueError:  # JSONDecodeError and UnicodeDecodeError both
        raise BadRequest("request body must be a JSON object") from None
    if not isinstance(value, dict):
        raise BadRequest("request body must be a JSON object")
    if _has_nul(value):
        raise BadRequest("text must not contain NUL characters")
    return value


def _has_nul(value: Any) -> bool:
    """NUL cannot be stored (PostgreSQL refuses it) and is never meaningful in a field."""
    if isinstance(value, str):
        return "\0" in value
    if isinstance(value, dict):
        return any(_has_nul(k) or _has_nul(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_has_nul(v) for v in value)
    return False
