"""Request bodies: one bounded, strict JSON-object reader for every route that takes one."""

from __future__ import annotations

import json
from typing import Any

from starlette.requests import Request

from api.problems import BadRequest

__all__ = ["MAX_BODY_BYTES", "json_object", "storable"]

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
    if not storable(value):
        raise BadRequest(UNSTORABLE)
    return value


UNSTORABLE = "strings must be valid Unicode without NUL characters"


def storable(value: Any) -> bool:
    """Whether every string in a parsed JSON value (keys too) can be stored as text.

    JSON may carry ``\\u0000`` and lone surrogates (``\\ud800``); neither is valid text for
    PostgreSQL or UTF-8, so they are refused at the boundary instead of failing deep in a
    query.
    """
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if not _text_ok(item):
                return False
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return True


def _text_ok(text: str) -> bool:
    if "\0" in text:
        return False
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
