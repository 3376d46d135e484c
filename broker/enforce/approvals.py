"""Waiting for an approval: the default :class:`ApprovalWaiter` of terminal sessions.

A held line becomes an approval row (``services.approvals.request``) naming the users
behind the rule's approver selectors; the session then waits on an in-memory future
until someone decides or the timeout passes. ``decide`` (approve or deny through the
service, then wake the session) and ``resolve``/``notify`` are public so that API routes
and live events can drive it. It must never approve anything by itself: a timeout, an
error or an empty approver list is a refusal.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

from broker.audit import Actor
from broker.errors import CorralError
from broker.services import Services
from broker.store.models import Approval, Role

__all__ = ["ApprovalDesk", "ApprovalRequest", "ApprovalWaiter"]

log = logging.getLogger("corral.enforce")

Listener = Callable[[Approval], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class ApprovalRequest:
    workspace_id: str
    requester_id: str
    command: str
    approvers: tuple[str, ...]  # who selectors from the rule: user:, group:, role:, *
    rule_id: str
    reason: str
    server_id: str | None = None
    session_id: str | None = None


class ApprovalWaiter(Protocol):
    """Wait for a decision on a held line; True only if approved in time."""

    async def wait(self, request: ApprovalRequest) -> bool: ...


class ApprovalDesk:
    def __init__(self, services: Services, *, timeout: float = 600.0) -> None:
        self.services = services
        self.timeout = timeout
        self.listeners: list[Listener] = []
        self._waiting: dict[str, asyncio.Future[bool]] = {}

    async def wait(self, request: ApprovalRequest) -> bool:
        approvers = await self.approver_ids(request)
        if not approvers:
            log.warning("approval for %s: no user matches %s", request.rule_id, request.approvers)
            return False
        approval = await self.services.approvals.request(
            request.workspace_id,
            requester_id=request.requester_id,
            command=request.command[:2000],
            approvers=approvers,
            rule_id=request.rule_id,
            server_id=request.server_id,
            session_id=request.session_id,
            ttl_seconds=max(1, int(self.timeout)),
        )
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._waiting[approval.id] = future
        outcome = "withdrawn"
        try:
            await self.notify(approval)
            return await asyncio.wait_for(future, self.timeout)
        except TimeoutError:
            outcome = "timed out"
            return False
        finally:
            self._waiting.pop(approval.id, None)
            decided = future.done() and not future.cancelled()
            if not decided:  # nobody decided: timed out, Ctrl-C, or the session ended
                with contextlib.suppress(CorralError):
                    closed = await asyncio.shield(
                        self.services.approvals.withdraw(
                            request.workspace_id, approval.id, reason=outcome
                        )
                    )
                    if closed:
                        await self.notify_closed(approval.id, request.workspace_id, outcome)

    @property
    def pending(self) -> list[str]:
        """Ids of the approvals a session is waiting on right now."""
        return list(self._waiting)

    async def notify(self, approval: Approval) -> None:
        """Tell the listeners (live events, mail) that ``approval`` waits for a decision."""
        for listener in list(self.listeners):
            with contextlib.suppress(CorralError):
                await listener(approval)

    async def notify_closed(self, approval_id: str, workspace_id: str, outcome: str) -> None:
        """Tell the listeners a request closed without a decision (they drop it)."""
        approval = await self.services.approvals.get(workspace_id, approval_id)
        await self.notify(approval)

    def resolve(self, approval_id: str, approved: bool) -> bool:
        """Wake the session waiting on ``approval_id``; False if none is waiting."""
        future = self._waiting.get(approval_id)
        if future is None or future.done():
            return False
        future.set_result(approved)
        return True

    async def decide(
        self,
        workspace_id: str,
        approval_id: str,
        *,
        approver: Actor,
        approve: bool,
        reason: str = "",
    ) -> Approval:
        """Record the decision (the service checks the approver), then release or discard."""
        approval = await self.services.approvals.decide(
            workspace_id, approval_id, approver=approver, approve=approve, reason=reason
        )
        self.resolve(approval_id, approve)
        return approval

    async def approver_ids(self, request: ApprovalRequest) -> list[str]:
        """The users named by the rule's selectors, never the requester."""
        ws = request.workspace_id
        ids: list[str] = []
        users = None
        for selector in request.approvers:
            kind, _, value = selector.partition(":")
            if kind == "user":
                user = await self.services.users.find_by_email(ws, value)
                found = [user] if user is not None else []
            elif kind == "group":
                groups = [g for g in await self.services.groups.list(ws) if g.name == value]
                found = [u for g in groups for u in await self.services.groups.members(ws, g.id)]
            else:
                users = users if users is not None else await self.services.users.list(ws)
                roles = {r.value for r in Role}
                found = [
                    u
                    for u in users
                    if selector == "*" or (kind == "role" and value in roles and u.role == value)
                ]
            ids += [u.id for u in found if not u.disabled and u.id != request.requester_id]
        return list(dict.fromkeys(ids))
