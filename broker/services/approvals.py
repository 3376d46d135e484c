"""Approvals: a held command waiting for one of its named approvers."""

from __future__ import annotations

import builtins
from datetime import timedelta

from sqlmodel import col

from broker.audit import Actor, Category, Outcome
from broker.errors import Conflict, InvalidInput
from broker.services.base import Service, fetch, scoped
from broker.store.models import Approval, ApprovalStatus, Server, TerminalSession, User

__all__ = ["ApprovalService"]


class ApprovalService(Service):
    async def request(
        self,
        workspace_id: str,
        *,
        requester_id: str,
        command: str,
        approvers: list[str],
        rule_id: str = "",
        server_id: str | None = None,
        session_id: str | None = None,
        ttl_seconds: int = 600,
    ) -> Approval:
        if not approvers:
            raise InvalidInput("an approval needs at least one approver")
        async with self.db.transaction() as s:
            await fetch(s, User, workspace_id, requester_id)
            if server_id is not None:
                await fetch(s, Server, workspace_id, server_id)
            if session_id is not None:
                await fetch(s, TerminalSession, workspace_id, session_id)
            now = self.clock()
            approval = Approval(
                workspace_id=workspace_id,
                requester_id=requester_id,
                command=command,
                approvers=approvers,
                rule_id=rule_id,
                server_id=server_id,
                session_id=session_id,
                created_at=now,
                expires_at=now + timedelta(seconds=ttl_seconds),
            )
            s.add(approval)
            await s.flush()
            await self.audit.emit(
                workspace_id,
                Category.AUTHORIZATION,
                "approval.requested",
                actor=Actor("user", requester_id),
                server_id=server_id or "",
                session_id=session_id or "",
                target=approval.id,
                details={"command": command, "rule_id": rule_id, "approvers": approvers},
                session=s,
            )
            return approval

    async def get(self, workspace_id: str, approval_id: str) -> Approval:
        async with self.db.transaction() as s:
            return await fetch(s, Approval, workspace_id, approval_id)

    async def list(
        self, workspace_id: str, *, status: ApprovalStatus | None = None
    ) -> builtins.list[Approval]:
        query = scoped(Approval, workspace_id)
        if status is not None:
            query = query.where(Approval.status == status)
        async with self.db.transaction() as s:
            return list((await s.exec(query.order_by(col(Approval.created_at)))).all())

    async def decide(
        self,
        workspace_id: str,
        approval_id: str,
        *,
        approver: Actor,
        approve: bool,
        reason: str = "",
    ) -> Approval:
        """Approve or deny once, by a named approver who is not the requester.

        A refusal is committed (expiry, audit event) before it is raised.
        """
        refusal: Conflict | None = None
        async with self.db.transaction() as s:
            approval = await fetch(s, Approval, workspace_id, approval_id)
            if approval.status != ApprovalStatus.PENDING:
                raise Conflict(f"approval {approval_id} is already {approval.status}")
            if approval.expires_at is not None and self.clock() >= approval.expires_at:
                approval.status = ApprovalStatus.EXPIRED
                s.add(approval)
                refusal = Conflict(f"approval {approval_id} has expired")
            elif approver.id not in approval.approvers or approver.id == approval.requester_id:
                await self.audit.emit(
                    workspace_id,
                    Category.AUTHORIZATION,
                    "approval.decide_refused",
                    outcome=Outcome.DENIED,
                    actor=approver,
                    target=approval.id,
                    session=s,
                )
                refusal = Conflict("you are not an approver of this request")
            else:
                approval.status = ApprovalStatus.APPROVED if approve else ApprovalStatus.DENIED
                approval.decided_by = approver.id
                approval.decided_at = self.clock()
                approval.reason = reason[:500]
                s.add(approval)
                await self.audit.emit(
                    workspace_id,
                    Category.AUTHORIZATION,
                    "approval.approved" if approve else "approval.denied",
                    actor=approver,
                    server_id=approval.server_id or "",
                    session_id=approval.session_id or "",
                    target=approval.id,
                    details={"reason": reason},
                    session=s,
                )
        if refusal is not None:
            raise refusal
        return approval

    async def withdraw(self, workspace_id: str, approval_id: str, *, reason: str) -> bool:
        """Close a request nobody decided (timed out, withdrawn, session ended): it is
        marked expired and can no longer be approved. False if it was already decided."""
        async with self.db.transaction() as s:
            approval = await fetch(s, Approval, workspace_id, approval_id)
            if approval.status != ApprovalStatus.PENDING:
                return False
            approval.status = ApprovalStatus.EXPIRED
            approval.reason = reason[:500]
            s.add(approval)
            await self.audit.emit(
                workspace_id,
                Category.AUTHORIZATION,
                "approval.expired",
                outcome=Outcome.FAILURE,
                server_id=approval.server_id or "",
                session_id=approval.session_id or "",
                target=approval.id,
                details={"reason": reason[:200]},
                session=s,
            )
            return True
