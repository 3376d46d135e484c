"""Identity rows over their lifetime: password-reset links (issued, checked, redeemed once)
and the purge of rows nothing can use any more.

A reset link is an :class:`MfaChallenge` with purpose ``password_reset`` (no table of its
own): the row keeps the SHA-256 of ``crlpwr_<row id>_<192 random bits>``, a 30-minute
expiry and ``used_at``. Like the other bearer secrets, the row id inside the secret
*derives* the workspace. Redeeming sets the password, clears any lockout and ends every
browser session of the person in one transaction, audited. Hashing the new password is
``idp``'s job; this service only stores what it is given.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlmodel import col, delete
from sqlmodel.ext.asyncio.session import AsyncSession

from broker.audit import SYSTEM, Actor, Category, Outcome
from broker.errors import AuthenticationFailed, InvalidInput
from broker.services.base import Service, fetch, new_secret, parse_secret, secret_matches
from broker.store.models import (
    BrowserSession,
    Invitation,
    LoginState,
    MfaChallenge,
    SsoReplay,
    User,
    new_id,
)

__all__ = ["RESET_PREFIX", "RESET_PURPOSE", "IdentityLifecycleService", "PurgeCounts"]

RESET_PREFIX = "crlpwr"
RESET_PURPOSE = "password_reset"
INVALID = "invalid or expired reset link"


@dataclass(frozen=True)
class PurgeCounts:
    challenges: int = 0
    browser_sessions: int = 0
    invitations: int = 0
    sso_replay: int = 0

    @property
    def total(self) -> int:
        return self.challenges + self.browser_sessions + self.invitations + self.sso_replay


class IdentityLifecycleService(Service):
    # -- password reset ---------------------------------------------------------------------

    async def open_password_reset(
        self, workspace_id: str, user_id: str, *, ttl_seconds: int = 1800, source: str = ""
    ) -> str:
        """A single-use reset secret for this person (shown once, mailed by ``idp``);
        earlier unused links of theirs stop working."""
        ident = new_id()
        secret, digest = new_secret(RESET_PREFIX, ident)
        now = self.clock()
        async with self.db.transaction() as s:
            await fetch(s, User, workspace_id, user_id)
            await s.exec(
                sa.update(MfaChallenge)
                .where(
                    col(MfaChallenge.workspace_id) == workspace_id,
                    col(MfaChallenge.user_id) == user_id,
                    col(MfaChallenge.purpose) == RESET_PURPOSE,
                    col(MfaChallenge.used_at).is_(None),
                )
                .values(used_at=now)
            )
            s.add(
                MfaChallenge(
                    id=ident,
                    workspace_id=workspace_id,
                    user_id=user_id,
                    purpose=RESET_PURPOSE,
                    secret_hash=digest,
                    created_at=now,
                    expires_at=now + timedelta(seconds=ttl_seconds),
                )
            )
            await self.audit.emit(
                workspace_id,
                Category.AUTHENTICATION,
                "password.reset_requested",
                actor=Actor("user", user_id),
                target=user_id,
                details={"source": source[:100], "expires_in": ttl_seconds},
                session=s,
            )
        return secret

    async def _reset_row(
        self, s: AsyncSession, secret: str
    ) -> tuple[MfaChallenge | None, User | None, str]:
        """The live reset row and its person for ``secret``, or why not."""
        try:
            ident = parse_secret(RESET_PREFIX, secret)
        except InvalidInput:
            return None, None, "malformed"
        row = await s.get(MfaChallenge, ident)
        if row is None or row.purpose != RESET_PURPOSE:
            return None, None, "unknown"
        user = await fetch(s, User, row.workspace_id, row.user_id)
        if not secret_matches(secret, row.secret_hash):
            return row, user, "wrong secret"
        if row.used_at is not None:
            return row, user, "already used"
        if self.clock() >= row.expires_at:
            return row, user, "expired"
        if user.disabled:
            return row, user, "user disabled"
        return row, user, ""

    async def _refuse(
        self, s: AsyncSession, row: MfaChallenge | None, why: str, source: str
    ) -> None:
        if row is not None:  # nothing to audit against without a row (no workspace)
            await self.audit.emit(
                row.workspace_id,
                Category.AUTHENTICATION,
                "password.reset_refused",
                outcome=Outcome.DENIED,
                actor=Actor("user", row.user_id),
                target=row.user_id,
                details={"reason": why, "source": source[:100]},
                session=s,
            )

    async def password_reset_user(self, secret: str, *, source: str = "") -> User:
        """Whom a live reset secret belongs to (consumes nothing: the new password may
        still fail the rules); :class:`AuthenticationFailed` otherwise, audited."""
        async with self.db.transaction() as s:
            row, user, why = await self._reset_row(s, secret)
            if not why and user is not None:
                return user
            await self._refuse(s, row, why, source)
        raise AuthenticationFailed(INVALID)

    async def redeem_password_reset(
        self, secret: str, *, password_hash: str, source: str = ""
    ) -> User:
        """Consume the secret (once, even under concurrent use), set the password, clear a
        lockout and end every browser session of the person; audited."""
        async with self.db.transaction() as s:
            row, user, why = await self._reset_row(s, secret)
            if not why and row is not None and user is not None:
                now = self.clock()
                consumed = await s.exec(
                    sa.update(MfaChallenge)
                    .where(col(MfaChallenge.id) == row.id, col(MfaChallenge.used_at).is_(None))
                    .values(used_at=now)
                )
                if int(getattr(consumed, "rowcount", 0)) == 1:
                    return await self._apply(s, user, password_hash, now, source)
                why = "already used"
            await self._refuse(s, row, why, source)
        raise AuthenticationFailed(INVALID)

    async def _apply(
        self, s: AsyncSession, user: User, password_hash: str, now: datetime, source: str
    ) -> User:
        user.password_hash, user.must_change_password = password_hash, False
        s.add(user)
        state = await s.get(LoginState, user.id)
        if state is None:
            state = LoginState(user_id=user.id, workspace_id=user.workspace_id)
        state.password_changed_at, state.failed_logins, state.locked_until = now, 0, None
        s.add(state)
        ended = await s.exec(
            sa.update(BrowserSession)
            .where(
                col(BrowserSession.workspace_id) == user.workspace_id,
                col(BrowserSession.user_id) == user.id,
                col(BrowserSession.revoked_at).is_(None),
            )
            .values(revoked_at=now)
        )
        await self.audit.emit(
            user.workspace_id,
            Category.AUTHENTICATION,
            "password.reset",
            actor=Actor("user", user.id),
            target=user.id,
            details={"sessions_ended": int(getattr(ended, "rowcount", 0)), "source": source[:100]},
            session=s,
        )
        await s.flush()
        return user

    # -- purge ------------------------------------------------------------------------------

    async def purge_expired(
        self, workspace_id: str, *, before: datetime | None = None, actor: Actor = SYSTEM
    ) -> PurgeCounts:
        """Delete this workspace's identity rows that were dead before ``before`` (default
        now): spent or expired challenges and reset links, browser sessions past their
        absolute expiry (revoked or not), invitations past theirs, SSO replay entries past
        theirs. Audited (``identity.purged`` with the counts) when anything went."""
        cutoff = before or self.clock()
        async with self.db.transaction() as s:
            challenges = await s.exec(
                delete(MfaChallenge).where(
                    col(MfaChallenge.workspace_id) == workspace_id,
                    sa.or_(
                        col(MfaChallenge.expires_at) < cutoff, col(MfaChallenge.used_at) < cutoff
                    ),
                )
            )
            counts = PurgeCounts(
                challenges=int(getattr(challenges, "rowcount", 0)),
                browser_sessions=await _delete_before(s, BrowserSession, workspace_id, cutoff),
                invitations=await _delete_before(s, Invitation, workspace_id, cutoff),
                sso_replay=await _delete_before(s, SsoReplay, workspace_id, cutoff),
            )
            if counts.total:
                await self.audit.emit(
                    workspace_id,
                    Category.CONFIGURATION,
                    "identity.purged",
                    actor=actor,
                    details={
                        "challenges": counts.challenges,
                        "browser_sessions": counts.browser_sessions,
                        "invitations": counts.invitations,
                        "sso_replay": counts.sso_replay,
                        "before": cutoff.isoformat(),
                    },
                    session=s,
                )
            return counts


async def _delete_before(
    s: AsyncSession,
    model: type[BrowserSession] | type[Invitation] | type[SsoReplay],
    workspace_id: str,
    cutoff: datetime,
) -> int:
    result = await s.exec(
        delete(model).where(col(model.workspace_id) == workspace_id, col(model.expires_at) < cutoff)
    )
    return int(getattr(result, "rowcount", 0))
