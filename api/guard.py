"""Refuse URLs that carry text no store can hold, before any route sees them.

A path or query string may percent-encode a NUL (``%00``); PostgreSQL refuses such text,
so an id like ``/api/v1/servers/%00`` would fail deep in a query as a 500. Here a NUL in
the path answers 404 (no id can contain one) and in the query string 400, both as
problem+json. Request bodies get the same check in :func:`api.bodies.json_object`.
"""

from __future__ import annotations

from urllib.parse import unquote_plus

from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from api.problems import problem_response

__all__ = ["RefuseNul"]


class RefuseNul:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            query = unquote_plus(scope.get("query_string", b"").decode("latin-1"))
            if "\0" in scope.get("path", ""):
                response = problem_response(
                    Request(scope), 404, "not-found", "Not found", "no such resource"
                )
                await response(scope, receive, send)
                return
            if "\0" in query:
                response = problem_response(
                    Request(scope),
                    400,
                    "invalid-request",
                    "The request is not valid",
                    "the query string must not contain NUL characters",
                )
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)
