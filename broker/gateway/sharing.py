"""Sharing and observing live sessions: the owner's share links, joining through one, and
staff watching a session read-only.

Each operation ends in a single-use ticket for the joiner's WebSocket (redeemed by
:mod:`broker.gateway.terminal_ws`) with the role and read-only flag it may have; the link
book itself (secrets, expiry, revocation) is :mod:`broker.gateway.shares`. A read-write
join must pass the same access check as opening the session would; every refusal is
audited and looks the same to the caller (an unknown link). Revoking a link removes
whoever joined through it at once.

:class:`SessionSharing` is a base of :class:`~broker.gateway.sessions.GatewaySessions`,
which sets the state declared below. Who may share someone else's session or observe one
is the caller's question to the policy (``sessions.share``, ``sessions.observe``): this
module must never answer it, and never hand out a ticket for another workspace's session.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from broker.audit import Actor, Category, Outcome
from broker.gateway.access import AccessResolver, check_open
from broker.gateway.errors import AccessDenied, SessionUnavailable
from broker.gateway.session import LiveSession
from broker.gateway.shares import Share, ShareBook, ShareRefused
from broker.gateway.tickets import TicketBook
from broker.services import Services
from broker.store.models import User
from websh import CloseCode

__all__ = ["SessionSharing"]


class SessionSharing:
    """Share links, joins and observers (state set by ``GatewaySessions``)."""

    services: Services
    resolver: AccessResolver
    tickets: TicketBook
    shares: ShareBook
    live: dict[str, LiveSession]

    if TYPE_CHECKING:  # GatewaySessions's

        def session(self, workspace_id: str, session_id: str) -> LiveSession: ...

    def _owned(self, workspace_id: str, session_id: str, user: User) -> LiveSession:
        live = self.session(workspace_id, session_id)
        if live.user_id != user.id:
            raise SessionUnavailable(f"no live session {session_id}")
        return live

    async def share(
        self,
        workspace_id: str,
        session_id: str,
        user: User,
        actor: Actor,
        *,
        read_only: bool,
        ttl: float,
    ) -> tuple[Share, str]:
        """A share link for the owner's live session (audited as ``session.shared``)."""
        self._owned(workspace_id, session_id, user)
        share, secret = self.shares.create(
            workspace_id, session_id, user.id, read_only=read_only, ttl=ttl
        )
        await self._audit(
            workspace_id,
            "session.shared",
            actor,
            session_id,
            {"share_id": share.id, "mode": share.mode, "expires_in": int(ttl)},
        )
        return share, secret

    async def unshare(
        self, workspace_id: str, session_id: str, share_id: str, user: User, actor: Actor
    ) -> None:
        """Revoke a link; whoever joined through it is removed at once. Revoking a link on
        someone else's session is the caller's question to the policy (``sessions.share``)."""
        live = self.session(workspace_id, session_id)
        if self.shares.revoke(workspace_id, session_id, share_id) is None:
            raise SessionUnavailable(f"no share {share_id}")
        await self._audit(
            workspace_id, "session.unshared", actor, session_id, {"share_id": share_id}
        )
        await live.kick(
            lambda c: c.share_id == share_id, "the share link was revoked", CloseCode.REVOKED
        )

    async def join(
        self, workspace_id: str, secret: str, user: User, actor: Actor
    ) -> tuple[str, str]:
        """Redeem a share link for a signed-in member of the same workspace: the session
        id and a ticket.

        A read-write join must pass the same access check as opening the session would;
        every refusal is audited and looks the same to the caller (an unknown link).
        """
        share: Share | None
        try:
            share = self.shares.redeem(secret)
        except ShareRefused as refused:
            share = refused.share
            reason = refused.reason
        else:
            reason = "" if share.workspace_id == workspace_id else "other workspace"
        live = self.live.get(share.session_id) if share is not None else None
        if share is not None and not reason and live is None:
            reason = "session ended"
        if share is not None and not reason and live is not None and not share.read_only:
            try:
                server = await self.services.servers.get(workspace_id, live.server_id)
                check_open(
                    await self.resolver.access_level(workspace_id, user, server), live.unix_user
                )
            except AccessDenied as exc:
                reason = str(exc)
        if share is None or live is None or reason:
            await self._audit(
                workspace_id,
                "session.join_refused",
                actor,
                share.session_id if share is not None else "",
                {"reason": reason or "unknown link"},
                outcome=Outcome.DENIED,
            )
            raise SessionUnavailable("unknown or expired share link")
        return live.id, self.tickets.issue(
            workspace_id,
            live.id,
            user.id,
            actor.credential_id,
            resume=False,
            role="participant",
            read_only=share.read_only,
            share_id=share.id,
        )

    async def observe(self, workspace_id: str, session_id: str, user: User, actor: Actor) -> str:
        """Watch any live session of the workspace, read-only. Who may is the caller's
        question to the policy (``sessions.observe``, staff by default), asked before this."""
        live = self.session(workspace_id, session_id)
        return self.tickets.issue(
            workspace_id,
            live.id,
            user.id,
            actor.credential_id,
            resume=False,
            role="observer",
            read_only=True,
        )

    async def _audit(
        self,
        workspace_id: str,
        action: str,
        actor: Actor,
        session_id: str,
        details: dict[str, object],
        *,
        outcome: Outcome = Outcome.SUCCESS,
    ) -> None:
        await self.services.audit.emit(
            workspace_id,
            Category.RESOURCE_ACCESS if outcome is Outcome.SUCCESS else Category.AUTHORIZATION,
            action,
            outcome=outcome,
            actor=actor,
            session_id=session_id if session_id in self.live else "",
            target=session_id[:128],
            details=details,
        )
