"""The audit log for staff (``audit.read``): query with filters and a cursor, export as
JSON Lines. ``GET /api/v1/audit/verify`` (chain verification) lives in :mod:`api.routes`.

Filters: ``since``/``until`` (ISO 8601; a time without an offset is UTC), ``actor`` (an
actor id), ``category``, ``server`` (a server id), ``action`` (exact, or a prefix ending
in ``*``: ``token.*``), ``outcome``. Events come in chain order (``seq`` ascending) or
newest first with ``order=desc``. An export is itself audited (``audit.exported``).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, Field, field_validator
from starlette.requests import Request
from starlette.responses import JSONResponse, StreamingResponse
from starlette.routing import BaseRoute, Route

from api.auth import authenticate
from api.authz import authorize
from api.pagination import PageQuery, cursors_of
from api.spec import Model, operation, query_of
from api.state import services_of
from broker.audit import AuditLog, Category
from broker.audit.log import details_of
from broker.store.models import AuditEvent

__all__ = ["audit_routes", "event_view"]

EXPORT_BATCH = 1000


class AuditFilter(Model):
    since: datetime | None = None
    until: datetime | None = None
    actor: str | None = Field(None, max_length=64)
    category: (
        Literal["authentication", "authorization", "resource_access", "configuration"] | None
    ) = None
    server: str | None = Field(None, max_length=64)
    action: str | None = Field(None, min_length=1, max_length=100)
    outcome: Literal["success", "failure", "denied"] | None = None
    order: Literal["asc", "desc"] = "asc"

    @field_validator("since", "until")
    @classmethod
    def _utc(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value


class AuditQuery(AuditFilter, PageQuery):
    pass


class EventOut(BaseModel):
    seq: int
    ts: str
    category: str
    action: str
    outcome: str
    actor_type: str
    actor_id: str
    credential_id: str
    server_id: str
    session_id: str
    target: str
    details: dict[str, Any]
    hash: str
    prev_hash: str


class EventList(BaseModel):
    events: list[EventOut]
    next_cursor: str | None


def event_view(event: AuditEvent) -> dict[str, Any]:
    return {
        "seq": event.seq,
        "ts": event.ts.isoformat(),
        "category": event.category,
        "action": event.action,
        "outcome": event.outcome,
        "actor_type": event.actor_type,
        "actor_id": event.actor_id,
        "credential_id": event.credential_id,
        "server_id": event.server_id,
        "session_id": event.session_id,
        "target": event.target,
        "details": details_of(event),
        "hash": event.hash,
        "prev_hash": event.prev_hash,
    }


async def _events(
    audit: AuditLog, workspace_id: str, f: AuditFilter, after: int | None, limit: int
) -> list[AuditEvent]:
    """One batch in the filter's order, strictly after the ``after`` seq in that order."""
    desc = f.order == "desc"
    return await audit.events(
        workspace_id,
        after_seq=0 if desc or after is None else after,
        before_seq=after if desc else None,
        descending=desc,
        limit=limit,
        category=f.category,
        actor_id=f.actor,
        server_id=f.server,
        since=f.since,
        until=f.until,
        action=f.action,
        outcome=f.outcome,
    )


@operation(
    summary="Query audit events (filters, cursor; seq ascending or order=desc)",
    tag="audit",
    query=AuditQuery,
    ok=EventList,
    errors=(400, 403),
)
async def list_events(request: Request) -> JSONResponse:
    services = services_of(request)
    principal = await authenticate(request, services)
    await authorize(request, principal, "audit.read")
    query = query_of(request, AuditQuery)
    cursors = cursors_of(request)
    kind = f"audit-{query.order}"
    after = cursors.decode(kind, query.cursor)
    seq = int(after[0]) if after else None
    rows = await _events(services.audit, principal.workspace_id, query, seq, query.limit + 1)
    page = rows[: query.limit]
    cursor = cursors.encode(kind, (page[-1].seq,)) if len(rows) > query.limit else None
    return JSONResponse({"events": [event_view(e) for e in page], "next_cursor": cursor})


@operation(
    summary="Export audit events as JSON Lines (same filters, no paging)",
    tag="audit",
    query=AuditFilter,
    errors=(400, 403),
    media_type="application/x-ndjson",
)
async def export_events(request: Request) -> StreamingResponse:
    services = services_of(request)
    principal = await authenticate(request, services)
    await authorize(request, principal, "audit.read")
    query = query_of(request, AuditFilter)
    ws = principal.workspace_id
    await services.audit.emit(
        ws,
        Category.RESOURCE_ACCESS,
        "audit.exported",
        actor=principal.actor,
        details={k: str(v) for k, v in query.model_dump(exclude_none=True).items()},
    )
    # Snapshot the chain head so an export is one consistent range, even while the
    # broker keeps appending (including this export's own event, which is included).
    head = (await services.workspaces.get(ws)).audit_head_seq

    async def lines() -> AsyncIterator[bytes]:
        after: int | None = head + 1 if query.order == "desc" else None
        while True:
            batch = await _events(services.audit, ws, query, after, EXPORT_BATCH)
            for event in batch:
                if event.seq > head:
                    return
                yield json.dumps(event_view(event), separators=(",", ":")).encode() + b"\n"
            if len(batch) < EXPORT_BATCH:
                return
            after = batch[-1].seq

    return StreamingResponse(
        lines(),
        media_type="application/x-ndjson",
        headers={"Content-Disposition": 'attachment; filename="audit.jsonl"'},
    )


def audit_routes() -> list[BaseRoute]:
    return [
        Route("/api/v1/audit/events", list_events, methods=["GET"]),
        Route("/api/v1/audit/export", export_events, methods=["GET"]),
    ]
