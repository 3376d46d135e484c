"""Cursor pagination for every list: ``?limit=`` (1-500, default 100) and ``?cursor=``.

A cursor is opaque to clients: base64url of the last row's sort key (JSON) and an HMAC
of it under a key derived from the broker key, bound to the list it came from. A cursor
that was edited, truncated or taken from another list is a 400 ``invalid-request``, never
a 500 and never a silently different page. Answers carry ``next_cursor`` (``null`` on the
last page); each list documents its order in docs/api.md.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from pydantic import Field
from starlette.requests import HTTPConnection

from api.problems import BadRequest
from api.spec import Model

__all__ = ["Cursor", "PageQuery", "cursors_of", "page_of"]

T = TypeVar("T")
Key = tuple[str | int, ...]

DEFAULT_LIMIT = 100
MAX_LIMIT = 500


class PageQuery(Model):
    """The paging part of a list's query string; lists subclass it to add filters."""

    limit: int = Field(DEFAULT_LIMIT, ge=1, le=MAX_LIMIT)
    cursor: str | None = Field(None, max_length=1000)


class Cursor:
    """Signs and reads cursors for one list (``kind``)."""

    def __init__(self, key: bytes) -> None:
        self._key = hmac.new(key, b"corral api cursor", hashlib.sha256).digest()

    def _mac(self, kind: str, payload: bytes) -> bytes:
        return hmac.new(self._key, kind.encode() + b"\0" + payload, hashlib.sha256).digest()[:16]

    def encode(self, kind: str, key: Key) -> str:
        payload = json.dumps(list(key), separators=(",", ":")).encode()
        raw = self._mac(kind, payload) + payload
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

    def decode(self, kind: str, cursor: str | None) -> Key | None:
        if cursor is None:
            return None
        try:
            raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        except (binascii.Error, ValueError):
            raise BadRequest(
                "cursor is not valid; start again without it", field="cursor"
            ) from None
        mac, payload = raw[:16], raw[16:]
        if len(mac) != 16 or not hmac.compare_digest(mac, self._mac(kind, payload)):
            raise BadRequest("cursor is not valid; start again without it", field="cursor")
        value = json.loads(payload)
        assert isinstance(value, list)
        return tuple(value)


def cursors_of(conn: HTTPConnection) -> Cursor:
    cursor: Cursor | None = getattr(conn.app.state, "cursors", None)
    if cursor is None:
        cursor = conn.app.state.cursors = Cursor(conn.app.state.services.audit.key)
    return cursor


def page_of(
    conn: HTTPConnection,
    kind: str,
    rows: Sequence[T],
    query: PageQuery,
    key: Callable[[T], Key],
    *,
    presorted: bool = False,
) -> tuple[list[T], str | None]:
    """One page of ``rows`` (sorted by ``key`` ascending) after ``query.cursor``.

    With ``presorted`` the rows are already the ones after the cursor, in order, and at
    most ``limit + 1`` long (a keyset query in the service did the work)."""
    cursors = cursors_of(conn)
    after = cursors.decode(kind, query.cursor)
    if not presorted:
        ordered = sorted(rows, key=key)
        if after is not None:
            ordered = [row for row in ordered if _after(key(row), after)]
    else:
        ordered = list(rows)
    page = ordered[: query.limit]
    more = len(ordered) > query.limit
    return page, cursors.encode(kind, key(page[-1])) if more and page else None


def _after(value: Key, after: Key) -> bool:
    left: Any = value
    right: Any = after
    try:
        return bool(left > right)
    except TypeError:
        raise BadRequest("cursor is not valid; start again without it", field="cursor") from None
