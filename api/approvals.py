"""Approvals and live events: approvers list what waits for them, approve or deny it (the
held terminal line runs or is discarded at once), and follow ``GET /api/v1/events``
(Server-Sent Events) to hear about new requests and decisions as they happen.

Thin: the approval service checks who may decide; the session's approval desk wakes the
held line. People see only the approvals they asked for or may decide; whoever the policy
allows ``approvals.read`` (staff, by default) sees all of their workspace's.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, Field
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, StreamingResponse
from starlette.routing import BaseRoute, Route

from api.auth import Principal, authenticate
from api.authz import authorize, permits
from api.problems import NotFoundProblem
from api.sessions import gateway_of
from api.spec import Model, body_of, operation, query_of
from api.state import services_of
from broker.enforce import ApprovalDesk
from broker.errors import NotFound
from broker.events import EventBus
from broker.store.models import Approval, ApprovalStatus

__all__ = ["approval_routes"]

HEARTBEAT_SECONDS = 15.0


class ApprovalOut(BaseModel):
    id: str
    status: ApprovalStatus
    command: str
    rule_id: str
    requester_id: str
    approvers: list[str]
    server_id: str | None
    session_id: str | None
    created_at: str | None
    expires_at: str | None
    decided_by: str | None
    decided_at: str | None
    reason: str


class ApprovalList(BaseModel):
    approvals: list[ApprovalOut]


class ApprovalQuery(Model):
    status: ApprovalStatus | None = None


class Decision(Model):
    reason: Annotated[str, Field(max_length=500)] = ""


def _iso(when: datetime | None) -> str | None:
    return when.isoformat() if when is not None else None


def approval_json(approval: Approval) -> dict[str, Any]:
    return {
        "id": approval.id,
        "status": str(approval.status),
        "command": approval.command,
        "rule_id": approval.rule_id,
        "requester_id": approval.requester_id,
        "approvers": approval.approvers,
        "server_id": approval.server_id,
        "session_id": approval.session_id,
        "created_at": _iso(approval.created_at),
        "expires_at": _iso(approval.expires_at),
        "decided_by": approval.decided_by,
        "decided_at": _iso(approval.decided_at),
        "reason": approval.reason,
    }


def events_of(app: Starlette) -> EventBus:
    bus: EventBus | None = getattr(app.state, "events", None)
    if bus is None:
        bus = app.state.events = EventBus()
    return bus


def desk_of(app: Starlette) -> ApprovalDesk | None:
    """The gateway's approval desk, with the live-event listener attached once."""
    desk = gateway_of(app).approvals
    if not isinstance(desk, ApprovalDesk):
        return None
    bus = events_of(app)

    async def publish(approval: Approval) -> None:
        kind = (
            "approval.requested" if approval.status is ApprovalStatus.PENDING else "approval.closed"
        )
        bus.publish(
            approval.workspace_id,
            [*approval.approvers, approval.requester_id],
            {"type": kind, "approval": approval_json(approval)},
        )

    if getattr(app.state, "events_desk", None) is not desk:
        desk.listeners.append(publish)
        app.state.events_desk = desk
    return desk


def _own(principal: Principal, approval: Approval) -> bool:
    """The caller asked for it or is one of its named approvers."""
    me = principal.user.id
    return me == approval.requester_id or me in approval.approvers


@operation(
    summary="Approvals the caller asked for or may decide (staff: all)",
    tag="approvals",
    query=ApprovalQuery,
    ok=ApprovalList,
)
async def list_approvals(request: Request) -> JSONResponse:
    services = services_of(request)
    principal = await authenticate(request, services)
    await authorize(request, principal, "approvals.own.read")
    status = query_of(request, ApprovalQuery).status
    rows = await services.approvals.list(principal.workspace_id, status=status)
    every = await permits(request, principal, "approvals.read")
    return JSONResponse(
        {"approvals": [approval_json(a) for a in rows if every or _own(principal, a)]}
    )


async def _visible_approval(request: Request, principal: Principal, others: str) -> Approval:
    """The approval if it is the caller's own, or if the policy lets them ``others`` (an
    action on anyone's approvals); else the same 404 as for an unknown id (audited)."""
    approval_id = request.path_params["approval_id"]
    missing = NotFoundProblem(f"approval {approval_id[:64]} not found")
    try:
        approval = await services_of(request).approvals.get(principal.workspace_id, approval_id)
    except NotFound:
        raise missing from None
    if not _own(principal, approval):
        await authorize(request, principal, others, approval.id, hidden=missing)
    return approval


@operation(summary="One approval", tag="approvals", ok=ApprovalOut)
async def get_approval(request: Request) -> JSONResponse:
    principal = await authenticate(request, services_of(request))
    await authorize(request, principal, "approvals.own.read")
    return JSONResponse(
        approval_json(await _visible_approval(request, principal, "approvals.read"))
    )


async def _decide(request: Request, approve: bool) -> JSONResponse:
    services = services_of(request)
    principal = await authenticate(request, services)
    await authorize(request, principal, "approvals.own.decide")
    reason = (await body_of(request, Decision, allow_empty=True)).reason
    approval = await _visible_approval(request, principal, "approvals.decide")
    desk = desk_of(request.app)
    if desk is not None:
        decided = await desk.decide(
            principal.workspace_id,
            approval.id,
            approver=principal.actor,
            approve=approve,
            reason=reason,
        )
    else:
        decided = await services.approvals.decide(
            principal.workspace_id,
            approval.id,
            approver=principal.actor,
            approve=approve,
            reason=reason,
        )
    events_of(request.app).publish(
        principal.workspace_id,
        [*decided.approvers, decided.requester_id],
        {"type": "approval.decided", "approval": approval_json(decided)},
    )
    return JSONResponse(approval_json(decided))


@operation(
    summary="Approve (the held command runs at once)",
    tag="approvals",
    body=Decision,
    ok=ApprovalOut,
    scope="write",
    errors=(409,),
)
async def approve(request: Request) -> JSONResponse:
    return await _decide(request, True)


@operation(
    summary="Deny (the held command is discarded)",
    tag="approvals",
    body=Decision,
    ok=ApprovalOut,
    scope="write",
    errors=(409,),
)
async def deny(request: Request) -> JSONResponse:
    return await _decide(request, False)


@operation(
    summary="Live events for the caller (Server-Sent Events)",
    tag="approvals",
    media_type="text/event-stream",
)
async def events(request: Request) -> StreamingResponse:
    """Server-Sent Events for the caller: ``approval.requested``, ``approval.decided``,
    ``approval.closed``; a comment line every 15 s keeps proxies from timing it out."""
    services = services_of(request)
    principal = await authenticate(request, services)
    desk_of(request.app)
    bus = events_of(request.app)

    async def stream() -> AsyncIterator[bytes]:
        async with bus.subscribe(principal.workspace_id, principal.user.id) as queue:
            yield b": connected\n\n"
            while True:
                try:
                    event = await asyncio.wait_for(queue.get(), HEARTBEAT_SECONDS)
                except TimeoutError:
                    yield b": ping\n\n"
                    continue
                body = json.dumps(event, separators=(",", ":"))
                yield f"event: {event['type']}\ndata: {body}\n\n".encode()

    return StreamingResponse(
        stream(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )


def approval_routes() -> list[BaseRoute]:
    return [
        Route("/api/v1/approvals", list_approvals, methods=["GET"]),
        Route("/api/v1/approvals/{approval_id}", get_approval, methods=["GET"]),
        Route("/api/v1/approvals/{approval_id}/approve", approve, methods=["POST"]),
        Route("/api/v1/approvals/{approval_id}/deny", deny, methods=["POST"]),
        Route("/api/v1/events", events, methods=["GET"]),
    ]
