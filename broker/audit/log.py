"""The audit log service: the one ``emit`` every feature calls, plus queries, verify, purge.

An event is appended in the caller's transaction when one is given, so the change and its
record commit together or not at all. Appends to one workspace are serialised on the
workspace row (``SELECT ... FOR UPDATE`` on PostgreSQL, ``BEGIN IMMEDIATE`` on SQLite), and
``(workspace_id, seq)`` is unique, so the chain can never fork.

Never call UPDATE or DELETE on the audit tables anywhere else: on PostgreSQL the database
refuses them (see the initial migration) except inside :meth:`AuditLog.purge`.
"""

from __future__ import annotations

import enum
import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from broker.audit.chain import (
    GENESIS,
    VerifyResult,
    canonical_json,
    event_hash,
    sign_checkpoint,
    verify_chain,
)
from broker.errors import AuditError, NotFound
from broker.store.db import Database
from broker.store.models import AuditCheckpoint, AuditEvent, Workspace, utcnow

__all__ = ["SYSTEM", "Actor", "AuditLog", "Category", "Outcome"]


class Category(enum.StrEnum):
    AUTHENTICATION = "authentication"
    AUTHORIZATION = "authorization"
    RESOURCE_ACCESS = "resource_access"
    CONFIGURATION = "configuration"


class Outcome(enum.StrEnum):
    SUCCESS = "success"
    FAILURE = "failure"
    DENIED = "denied"


@dataclass(frozen=True)
class Actor:
    """Who did it, and with which credential (token id, agent credential id, ...)."""

    type: str
    id: str = ""
    credential_id: str = ""


SYSTEM = Actor("system")


class AuditLog:
    """Append-only, hash-chained per workspace."""

    def __init__(
        self,
        db: Database,
        key: bytes,
        *,
        clock: Callable[[], datetime] = utcnow,
        max_details_bytes: int = 16384,
    ) -> None:
        self.db = db
        self.key = key
        self.clock = clock
        self.max_details_bytes = max_details_bytes

    @asynccontextmanager
    async def _in(self, session: AsyncSession | None) -> AsyncIterator[AsyncSession]:
        if session is not None:
            yield session
        else:
            async with self.db.transaction() as own:
                yield own

    async def emit(
        self,
        workspace_id: str,
        category: Category,
        action: str,
        *,
        outcome: Outcome = Outcome.SUCCESS,
        actor: Actor = SYSTEM,
        server_id: str = "",
        session_id: str = "",
        target: str = "",
        details: dict[str, Any] | None = None,
        session: AsyncSession | None = None,
    ) -> AuditEvent:
        """Append one event to the workspace's chain (in ``session``'s transaction if given)."""
        body = canonical_json(details or {})
        if len(body.encode()) > self.max_details_bytes:
            body = canonical_json({"truncated": True, "size": len(body.encode())})
        async with self._in(session) as s:
            workspace = await self._lock_workspace(s, workspace_id)
            event = AuditEvent(
                workspace_id=workspace_id,
                seq=workspace.audit_head_seq + 1,
                ts=self.clock(),
                category=str(category),
                action=action[:100],
                outcome=str(outcome),
                actor_type=actor.type,
                actor_id=actor.id,
                credential_id=actor.credential_id,
                server_id=server_id,
                session_id=session_id,
                target=target[:200],
                details=body,
                prev_hash=workspace.audit_head_hash or GENESIS,
                hash="",
            )
            event.hash = event_hash(event)
            s.add(event)
            workspace.audit_head_seq = event.seq
            workspace.audit_head_hash = event.hash
            s.add(workspace)
            try:
                await s.flush()
            except sa.exc.IntegrityError:
                raise AuditError("audit chain append collided; retry the operation") from None
            return event

    async def _lock_workspace(self, session: AsyncSession, workspace_id: str) -> Workspace:
        result = await session.exec(
            select(Workspace).where(Workspace.id == workspace_id).with_for_update()
        )
        workspace = result.first()
        if workspace is None:
            raise NotFound("workspace", workspace_id)
        return workspace

    async def events(
        self,
        workspace_id: str,
        *,
        after_seq: int = 0,
        limit: int = 100,
        category: str | None = None,
        actor_id: str | None = None,
        server_id: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        action: str | None = None,
        outcome: str | None = None,
        before_seq: int | None = None,
        descending: bool = False,
    ) -> list[AuditEvent]:
        """Events in chain order after ``after_seq`` (and before ``before_seq``), filtered;
        newest first with ``descending``. ``action`` is exact, or a prefix ending in ``*``."""
        query = select(AuditEvent).where(
            AuditEvent.workspace_id == workspace_id, AuditEvent.seq > after_seq
        )
        if before_seq is not None:
            query = query.where(AuditEvent.seq < before_seq)
        if action:
            if action.endswith("*"):
                query = query.where(col(AuditEvent.action).startswith(action[:-1], autoescape=True))
            else:
                query = query.where(AuditEvent.action == action)
        if outcome:
            query = query.where(AuditEvent.outcome == outcome)
        if category:
            query = query.where(AuditEvent.category == category)
        if actor_id:
            query = query.where(AuditEvent.actor_id == actor_id)
        if server_id:
            query = query.where(AuditEvent.server_id == server_id)
        if since:
            query = query.where(AuditEvent.ts >= since)
        if until:
            query = query.where(AuditEvent.ts < until)
        order = col(AuditEvent.seq).desc() if descending else col(AuditEvent.seq)
        query = query.order_by(order).limit(max(1, min(limit, 1001)))
        async with self.db.transaction() as s:
            return list((await s.exec(query)).all())

    async def verify(self, workspace_id: str, *, batch: int = 1000) -> VerifyResult:
        """Recompute the chain from the latest checkpoint and name the first broken link."""
        async with self.db.transaction() as s:
            workspace = await s.get(Workspace, workspace_id)
            if workspace is None:
                raise NotFound("workspace", workspace_id)
            checkpoint = await self._latest_checkpoint(s, workspace_id)
            start = checkpoint.through_seq if checkpoint else 0
            stream = await s.stream_scalars(
                select(AuditEvent)
                .where(AuditEvent.workspace_id == workspace_id, AuditEvent.seq > start)
                .order_by(col(AuditEvent.seq))
                .execution_options(yield_per=batch)
            )
            rows = [event async for event in stream]
        return verify_chain(
            rows,
            key=self.key,
            checkpoint=checkpoint,
            head_seq=workspace.audit_head_seq,
            head_hash=workspace.audit_head_hash,
        )

    async def _latest_checkpoint(
        self, session: AsyncSession, workspace_id: str
    ) -> AuditCheckpoint | None:
        result = await session.exec(
            select(AuditCheckpoint)
            .where(AuditCheckpoint.workspace_id == workspace_id)
            .order_by(col(AuditCheckpoint.through_seq).desc())
            .limit(1)
        )
        return result.first()

    async def purge(self, workspace_id: str, *, before: datetime, actor: Actor = SYSTEM) -> int:
        """Remove events older than ``before`` (the sanctioned removal); leaves a checkpoint.

        Returns how many events were removed. The purge audits itself.
        """
        async with self.db.transaction() as s:
            await self._lock_workspace(s, workspace_id)
            last = (
                await s.exec(
                    select(AuditEvent)
                    .where(AuditEvent.workspace_id == workspace_id, AuditEvent.ts < before)
                    .order_by(col(AuditEvent.seq).desc())
                    .limit(1)
                )
            ).first()
            if last is None:
                return 0
            if self.db.dialect == "postgresql":
                await s.exec(sa.select(sa.func.set_config("corral.audit_purge", "on", True)))  # type: ignore[call-overload]
            result = await s.exec(
                sa.delete(AuditEvent).where(
                    col(AuditEvent.workspace_id) == workspace_id,
                    col(AuditEvent.seq) <= last.seq,
                )
            )
            count = int(getattr(result, "rowcount", 0) or 0)
            checkpoint = AuditCheckpoint(
                workspace_id=workspace_id,
                through_seq=last.seq,
                last_hash=last.hash,
                purged_count=count,
                created_at=self.clock(),
                signature="",
            )
            checkpoint.signature = sign_checkpoint(self.key, checkpoint)
            s.add(checkpoint)
            await s.flush()
            await self.emit(
                workspace_id,
                Category.CONFIGURATION,
                "audit.purged",
                actor=actor,
                details={"through_seq": last.seq, "count": count, "before": before.isoformat()},
                session=s,
            )
            return count


def details_of(event: AuditEvent) -> dict[str, Any]:
    value = json.loads(event.details)
    return value if isinstance(value, dict) else {}
