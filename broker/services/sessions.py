"""Terminal sessions and their recordings, as rows: the live side lives in the gateway."""

from __future__ import annotations

import builtins
from datetime import datetime

from sqlmodel import col, select

from broker.audit import Actor, Category
from broker.errors import Conflict
from broker.services.base import Service, fetch, scoped
from broker.store.models import Recording, Server, SessionStatus, TerminalSession, User

__all__ = ["RecordingService", "SessionService"]

LIVE = (SessionStatus.PENDING, SessionStatus.ACTIVE, SessionStatus.DETACHED)


class SessionService(Service):
    async def open(
        self,
        workspace_id: str,
        *,
        user_id: str,
        server_id: str,
        unix_user: str,
        cols: int = 80,
        rows: int = 24,
        actor: Actor,
    ) -> TerminalSession:
        async with self.db.transaction() as s:
            await fetch(s, User, workspace_id, user_id)
            server = await fetch(s, Server, workspace_id, server_id)
            session = TerminalSession(
                workspace_id=workspace_id,
                user_id=user_id,
                server_id=server_id,
                server_name=server.name,
                unix_user=unix_user,
                cols=cols,
                rows=rows,
                credential_id=actor.credential_id or None,
                opened_at=self.clock(),
            )
            s.add(session)
            await s.flush()
            await self.audit.emit(
                workspace_id,
                Category.RESOURCE_ACCESS,
                "session.opened",
                actor=actor,
                server_id=server_id,
                session_id=session.id,
                details={"unix_user": unix_user},
                session=s,
            )
            return session

    async def get(self, workspace_id: str, session_id: str) -> TerminalSession:
        async with self.db.transaction() as s:
            return await fetch(s, TerminalSession, workspace_id, session_id)

    async def list(
        self, workspace_id: str, *, user_id: str | None = None, live_only: bool = False
    ) -> builtins.list[TerminalSession]:
        query = scoped(TerminalSession, workspace_id)
        if user_id is not None:
            query = query.where(TerminalSession.user_id == user_id)
        if live_only:
            query = query.where(col(TerminalSession.status).in_(LIVE))
        async with self.db.transaction() as s:
            rows = await s.exec(query.order_by(col(TerminalSession.opened_at).desc()))
            return list(rows.all())

    async def set_status(
        self, workspace_id: str, session_id: str, status: SessionStatus
    ) -> TerminalSession:
        async with self.db.transaction() as s:
            session = await fetch(s, TerminalSession, workspace_id, session_id)
            if session.status not in LIVE:
                raise Conflict(f"session {session_id} has already ended")
            session.status = status
            s.add(session)
            return session

    async def close(
        self,
        workspace_id: str,
        session_id: str,
        *,
        reason: str,
        actor: Actor,
        terminated: bool = False,
    ) -> TerminalSession:
        """End a session once; a second close is a no-op that returns the ended row."""
        async with self.db.transaction() as s:
            session = await fetch(s, TerminalSession, workspace_id, session_id)
            if session.status not in LIVE:
                return session
            session.status = SessionStatus.TERMINATED if terminated else SessionStatus.CLOSED
            session.closed_at = self.clock()
            session.close_reason = reason[:200]
            s.add(session)
            await self.audit.emit(
                workspace_id,
                Category.RESOURCE_ACCESS,
                "session.terminated" if terminated else "session.closed",
                actor=actor,
                server_id=session.server_id or "",
                session_id=session.id,
                details={"reason": reason},
                session=s,
            )
            return session


class RecordingService(Service):
    async def add(self, workspace_id: str, session_id: str, path: str) -> Recording:
        async with self.db.transaction() as s:
            await fetch(s, TerminalSession, workspace_id, session_id)
            recording = Recording(
                workspace_id=workspace_id,
                session_id=session_id,
                path=path,
                started_at=self.clock(),
            )
            s.add(recording)
            await s.flush()
            return recording

    async def finish(self, workspace_id: str, recording_id: str, size_bytes: int) -> Recording:
        async with self.db.transaction() as s:
            recording = await fetch(s, Recording, workspace_id, recording_id)
            recording.size_bytes = size_bytes
            recording.ended_at = self.clock()
            s.add(recording)
            return recording

    async def get(self, workspace_id: str, recording_id: str) -> Recording:
        async with self.db.transaction() as s:
            return await fetch(s, Recording, workspace_id, recording_id)

    async def list(
        self, workspace_id: str, *, session_id: str | None = None
    ) -> builtins.list[Recording]:
        query = scoped(Recording, workspace_id)
        if session_id is not None:
            query = query.where(Recording.session_id == session_id)
        async with self.db.transaction() as s:
            return list((await s.exec(query.order_by(col(Recording.started_at)))).all())

    async def index(
        self, workspace_id: str, *, session_id: str | None = None, user_id: str | None = None
    ) -> builtins.list[tuple[Recording, TerminalSession]]:
        """Recordings with the session each belongs to (who, which server), oldest first;
        only ``user_id``'s sessions when given."""
        query = (
            select(Recording, TerminalSession)
            .join(TerminalSession, col(TerminalSession.id) == col(Recording.session_id))
            .where(Recording.workspace_id == workspace_id)
            .where(TerminalSession.workspace_id == workspace_id)
        )
        if session_id is not None:
            query = query.where(Recording.session_id == session_id)
        if user_id is not None:
            query = query.where(TerminalSession.user_id == user_id)
        async with self.db.transaction() as s:
            rows = await s.exec(query.order_by(col(Recording.started_at)))
            return [(recording, session) for recording, session in rows.all()]

    async def purge_ended_before(
        self, workspace_id: str, before: datetime, *, actor: Actor
    ) -> builtins.list[Recording]:
        """Forget recordings that ended before ``before`` (the retention purge); returns
        them so the caller can delete their files. Audited in the same transaction."""
        query = scoped(Recording, workspace_id).where(
            col(Recording.ended_at).is_not(None), col(Recording.ended_at) < before
        )
        async with self.db.transaction() as s:
            rows = list((await s.exec(query)).all())
            for row in rows:
                await s.delete(row)
            await self.audit.emit(
                workspace_id,
                Category.CONFIGURATION,
                "recording.purged",
                actor=actor,
                details={
                    "count": len(rows),
                    "bytes": sum(r.size_bytes for r in rows),
                    "ended_before": before.isoformat(),
                },
                session=s,
            )
            return rows
