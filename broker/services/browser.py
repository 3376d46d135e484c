"""Browser (cookie) sessions: server-side rows so every login is listable and revocable.

The cookie carries ``crlses_<id>_<random>``; only its SHA-256 is stored. A session ends at
the first of: revocation, its absolute expiry, or ``idle_seconds`` without a request.
Raising a session's state (MFA done) rotates the secret, so a cookie planted before the
login (session fixation) is worthless afterwards. ``authenticate`` derives the workspace
from the session row, like the other credential checks.
"""

from __future__ import annotations

import builtins
from datetime import timedelta

import sqlalchemy as sa
from sqlmodel import col

from broker.audit import Actor, Category, Outcome
from broker.errors import AuthenticationFailed, InvalidInput
from broker.services.base import (
    Service,
    fetch,
    new_secret,
    parse_secret,
    scoped,
    secret_matches,
)
from broker.store.models import BrowserSession, BrowserSessionState, User, new_id

__all__ = ["SESSION_PREFIX", "BrowserSessionService"]

SESSION_PREFIX = "crlses"
TOUCH_EVERY = timedelta(seconds=30)  # fewer writes: last_seen is only as fine as this


class BrowserSessionService(Service):
    async def create(
        self,
        workspace_id: str,
        user_id: str,
        *,
        state: BrowserSessionState,
        lifetime_seconds: int,
        source: str = "",
        user_agent: str = "",
    ) -> tuple[BrowserSession, str]:
        """A new session and its cookie secret (returned once)."""
        ident = new_id()
        secret, digest = new_secret(SESSION_PREFIX, ident)
        now = self.clock()
        async with self.db.transaction() as s:
            user = await fetch(s, User, workspace_id, user_id)
            row = BrowserSession(
                id=ident,
                workspace_id=workspace_id,
                user_id=user.id,
                secret_hash=digest,
                state=BrowserSessionState(state),
                created_at=now,
                last_seen_at=now,
                expires_at=now + timedelta(seconds=lifetime_seconds),
                source=source[:100],
                user_agent=user_agent[:200],
            )
            s.add(row)
            await s.flush()
            await self.audit.emit(
                workspace_id,
                Category.AUTHENTICATION,
                "session.created",
                actor=Actor("user", user.id, ident),
                target=ident,
                details={"state": str(row.state), "source": source[:100]},
                session=s,
            )
            return row, secret

    async def authenticate(self, secret: str, *, idle_seconds: int) -> tuple[BrowserSession, User]:
        """The live session and its enabled user, or :class:`AuthenticationFailed`."""
        try:
            ident = parse_secret(SESSION_PREFIX, secret)
        except InvalidInput:
            raise AuthenticationFailed("invalid session") from None
        async with self.db.transaction() as s:
            row = await s.get(BrowserSession, ident)
            if row is None:
                raise AuthenticationFailed("invalid session")
            user = await fetch(s, User, row.workspace_id, row.user_id)
            now = self.clock()
            why: str
            if not secret_matches(secret, row.secret_hash):
                why = "wrong secret"  # a rotated-away or guessed secret for a real id
            elif row.revoked_at is not None:
                why = "revoked"
            elif now >= row.expires_at:
                why = "expired"
            elif now >= row.last_seen_at + timedelta(seconds=idle_seconds):
                why = "idle"
            elif user.disabled:
                why = "user disabled"
            else:
                if now - row.last_seen_at >= TOUCH_EVERY:
                    row.last_seen_at = now
                    s.add(row)
                return row, user
            await self.audit.emit(
                row.workspace_id,
                Category.AUTHENTICATION,
                "session.refused",
                outcome=Outcome.DENIED,
                actor=Actor("user", user.id, row.id),
                target=row.id,
                details={"reason": why},
                session=s,
            )
        raise AuthenticationFailed("invalid session" if why == "wrong secret" else f"session {why}")

    async def get(self, workspace_id: str, session_id: str) -> BrowserSession:
        async with self.db.transaction() as s:
            return await fetch(s, BrowserSession, workspace_id, session_id)

    async def promote(
        self,
        workspace_id: str,
        session_id: str,
        *,
        state: BrowserSessionState,
        mfa_method: str | None = None,
        lifetime_seconds: int | None = None,
    ) -> tuple[BrowserSession, str]:
        """Move to ``state`` (recording an MFA if one was just done); rotates the secret.

        ``lifetime_seconds`` resets the absolute expiry, counted from the session's start.
        """
        async with self.db.transaction() as s:
            row = await fetch(s, BrowserSession, workspace_id, session_id)
            if row.revoked_at is not None:
                raise AuthenticationFailed("session revoked")
            secret, digest = new_secret(SESSION_PREFIX, row.id)
            before = row.state
            row.secret_hash, row.state = digest, BrowserSessionState(state)
            if mfa_method is not None:
                row.mfa_at, row.mfa_method = self.clock(), mfa_method[:16]
            if lifetime_seconds is not None:
                row.expires_at = row.created_at + timedelta(seconds=lifetime_seconds)
            s.add(row)
            await self.audit.emit(
                workspace_id,
                Category.AUTHENTICATION,
                "session.promoted" if before != row.state else "session.mfa_refreshed",
                actor=Actor("user", row.user_id, row.id),
                target=row.id,
                details={"from": str(before), "to": str(row.state), "mfa": mfa_method or ""},
                session=s,
            )
            return row, secret

    async def list(
        self, workspace_id: str, *, user_id: str | None = None, live_only: bool = True
    ) -> builtins.list[BrowserSession]:
        query = scoped(BrowserSession, workspace_id)
        if user_id is not None:
            query = query.where(BrowserSession.user_id == user_id)
        if live_only:
            query = query.where(
                col(BrowserSession.revoked_at).is_(None),
                col(BrowserSession.expires_at) > self.clock(),
            )
        async with self.db.transaction() as s:
            return list((await s.exec(query.order_by(col(BrowserSession.created_at)))).all())

    async def revoke(
        self, workspace_id: str, session_id: str, *, actor: Actor, reason: str = "logout"
    ) -> BrowserSession:
        async with self.db.transaction() as s:
            row = await fetch(s, BrowserSession, workspace_id, session_id)
            if row.revoked_at is None:
                row.revoked_at = self.clock()
                s.add(row)
                await self.audit.emit(
                    workspace_id,
                    Category.AUTHENTICATION,
                    "session.revoked",
                    actor=actor,
                    target=row.id,
                    details={"reason": reason},
                    session=s,
                )
            return row

    async def revoke_all(
        self,
        workspace_id: str,
        user_id: str,
        *,
        actor: Actor,
        reason: str,
        keep: str | None = None,
    ) -> int:
        """End every live session of a user (password change, disable), except ``keep``."""
        async with self.db.transaction() as s:
            await fetch(s, User, workspace_id, user_id)
            query = (
                sa.update(BrowserSession)
                .where(
                    col(BrowserSession.workspace_id) == workspace_id,
                    col(BrowserSession.user_id) == user_id,
                    col(BrowserSession.revoked_at).is_(None),
                )
                .values(revoked_at=self.clock())
            )
            if keep is not None:
                query = query.where(col(BrowserSession.id) != keep)
            result = await s.exec(query)
            count = int(getattr(result, "rowcount", 0))
            if count:
                await self.audit.emit(
                    workspace_id,
                    Category.AUTHENTICATION,
                    "session.revoked_all",
                    actor=actor,
                    target=user_id,
                    details={"count": count, "reason": reason},
                    session=s,
                )
            return count
