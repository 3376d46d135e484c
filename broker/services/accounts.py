"""Local-account bookkeeping: password hashes, failed-login lockout, last MFA, invitations.

This service stores what ``idp/`` decides: it never hashes or checks a password itself
(argon2 lives in ``idp/passwords.py``), so the broker core keeps no crypto policy. Every
change is audited in the same transaction as the row it changes.
"""

from __future__ import annotations

from datetime import timedelta

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlmodel import col
from sqlmodel.ext.asyncio.session import AsyncSession

from broker.audit import SYSTEM, Actor, Category, Outcome
from broker.errors import AuthenticationFailed, Conflict, InvalidInput
from broker.services.base import (
    Service,
    fetch,
    new_secret,
    parse_secret,
    scoped,
    secret_matches,
    unique,
)
from broker.services.directory import normalise_email
from broker.store.models import Invitation, LoginState, Role, User, UserKind, new_id

__all__ = ["AccountService"]

INVITATION_PREFIX = "crlinv"
MAX_LOCK_SECONDS = 3600


async def _state(s: AsyncSession, workspace_id: str, user_id: str) -> LoginState:
    """The user's login state row, made on first use; a concurrent first use wins once."""
    await fetch(s, User, workspace_id, user_id)
    state = await s.get(LoginState, user_id)
    if state is None:
        try:
            async with s.begin_nested():
                state = LoginState(user_id=user_id, workspace_id=workspace_id)
                s.add(state)
        except IntegrityError:
            state = await s.get(LoginState, user_id, populate_existing=True)
            assert state is not None
    return state


class AccountService(Service):
    async def login_state(self, workspace_id: str, user_id: str) -> LoginState:
        async with self.db.transaction() as s:
            return await _state(s, workspace_id, user_id)

    async def record_failure(
        self,
        workspace_id: str,
        user_id: str,
        *,
        reason: str,
        max_failures: int,
        lock_seconds: int,
        source: str = "",
    ) -> LoginState:
        """Count a failed password; from ``max_failures`` on, lock with doubling backoff."""
        async with self.db.transaction() as s:
            state = await _state(s, workspace_id, user_id)
            state.failed_logins += 1
            details: dict[str, object] = {"reason": reason, "source": source}
            over = state.failed_logins - max_failures
            if over >= 0:
                seconds = min(lock_seconds * 2**over, MAX_LOCK_SECONDS)
                state.locked_until = self.clock() + timedelta(seconds=seconds)
                details["locked_seconds"] = seconds
            s.add(state)
            if over >= 0:
                await self.audit.emit(
                    workspace_id,
                    Category.AUTHENTICATION,
                    "login.locked",
                    outcome=Outcome.DENIED,
                    actor=Actor("user", user_id),
                    target=user_id,
                    details={"failures": state.failed_logins, "seconds": details["locked_seconds"]},
                    session=s,
                )
            await self.audit.emit(
                workspace_id,
                Category.AUTHENTICATION,
                "login.failed",
                outcome=Outcome.DENIED,
                actor=Actor("user", user_id),
                target=user_id,
                details={**details, "failures": state.failed_logins},
                session=s,
            )
            return state

    async def record_password_ok(
        self, workspace_id: str, user_id: str, *, rehash: str | None = None
    ) -> LoginState:
        """The password matched: clear the failure count, upgrade the hash if asked."""
        async with self.db.transaction() as s:
            state = await _state(s, workspace_id, user_id)
            state.failed_logins = 0
            state.locked_until = None
            s.add(state)
            user = await fetch(s, User, workspace_id, user_id)
            user.last_login_at = self.clock()
            if rehash is not None:
                user.password_hash = rehash
            s.add(user)
            return state

    async def set_password(
        self, workspace_id: str, user_id: str, password_hash: str, *, actor: Actor
    ) -> User:
        async with self.db.transaction() as s:
            user = await fetch(s, User, workspace_id, user_id)
            if user.kind is UserKind.SERVICE:
                raise InvalidInput("a service account has no password; it uses its tokens")
            user.password_hash = password_hash
            user.must_change_password = False
            s.add(user)
            state = await _state(s, workspace_id, user_id)
            state.password_changed_at = self.clock()
            state.failed_logins = 0
            state.locked_until = None
            s.add(state)
            await self.audit.emit(
                workspace_id,
                Category.AUTHENTICATION,
                "password.changed",
                actor=actor,
                target=user_id,
                session=s,
            )
            return user

    async def record_mfa(self, workspace_id: str, user_id: str, method: str) -> LoginState:
        """Remember when this user last completed MFA (read by step-up checks)."""
        async with self.db.transaction() as s:
            state = await _state(s, workspace_id, user_id)
            state.last_mfa_at = self.clock()
            state.last_mfa_method = method[:16]
            s.add(state)
            return state

    async def invite(
        self,
        workspace_id: str,
        email: str,
        *,
        role: Role = Role.USER,
        ttl_seconds: int = 7 * 86400,
        actor: Actor = SYSTEM,
    ) -> tuple[Invitation, str]:
        """A single-use sign-up link secret for ``email``; shown once."""
        email = normalise_email(email)
        if not 300 <= ttl_seconds <= 30 * 86400:
            raise InvalidInput("invitation lifetime must be 5 minutes to 30 days")
        ident = new_id()
        secret, digest = new_secret(INVITATION_PREFIX, ident)
        now = self.clock()
        async with self.db.transaction() as s:
            taken = await s.exec(scoped(User, workspace_id).where(User.email == email))
            if taken.first() is not None:
                raise Conflict(f"user {email} already exists")
            invitation = Invitation(
                id=ident,
                workspace_id=workspace_id,
                email=email,
                role=Role(role),
                secret_hash=digest,
                created_by=actor.id or None,
                created_at=now,
                expires_at=now + timedelta(seconds=ttl_seconds),
            )
            s.add(invitation)
            await s.flush()
            await self.audit.emit(
                workspace_id,
                Category.CONFIGURATION,
                "invitation.created",
                actor=actor,
                target=ident,
                details={"email": email, "role": str(invitation.role)},
                session=s,
            )
            return invitation, secret

    async def accept_invitation(
        self, secret: str, *, password_hash: str, display_name: str = "", source: str = ""
    ) -> User:
        """Consume an invitation (once) and create its local account; derives the workspace."""
        try:
            ident = parse_secret(INVITATION_PREFIX, secret)
        except InvalidInput:
            raise AuthenticationFailed("invalid invitation") from None
        why: str | None = None
        async with self.db.transaction() as s:
            invitation = await s.get(Invitation, ident)
            if invitation is None:
                raise AuthenticationFailed("invalid invitation")
            ws, now = invitation.workspace_id, self.clock()
            if not secret_matches(secret, invitation.secret_hash):
                why = "wrong secret"
            elif invitation.used_at is not None:
                why = "already used"
            elif now >= invitation.expires_at:
                why = "expired"
            else:
                consumed = await s.exec(
                    sa.update(Invitation)
                    .where(col(Invitation.id) == ident, col(Invitation.used_at).is_(None))
                    .values(used_at=now)
                )
                if getattr(consumed, "rowcount", 0) != 1:
                    why = "already used"
            if why is None:
                user = User(
                    workspace_id=ws,
                    email=invitation.email,
                    role=invitation.role,
                    display_name=display_name[:200],
                    password_hash=password_hash,
                )
                s.add(user)
                await unique(s, f"user {user.email}")
                s.add(LoginState(user_id=user.id, workspace_id=ws, password_changed_at=now))
                await self.audit.emit(
                    ws,
                    Category.AUTHENTICATION,
                    "invitation.accepted",
                    actor=Actor("user", user.id),
                    target=ident,
                    details={"email": user.email, "source": source},
                    session=s,
                )
                return user
            await self.audit.emit(
                ws,
                Category.AUTHENTICATION,
                "invitation.refused",
                outcome=Outcome.DENIED,
                target=ident,
                details={"reason": why, "source": source},
                session=s,
            )
        if why == "wrong secret":
            raise AuthenticationFailed("invalid invitation")
        raise AuthenticationFailed(f"invitation {why}")
