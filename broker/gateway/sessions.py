"""GatewaySessions: opening terminal sessions and pairing people's WebSockets with them.

Open: resolve the server, ask the :class:`AccessResolver` for the level (refusals
audited), create the session row, ask the hub for a terminal channel, start the recording
and hand back a single-use ticket. Serve: a WebSocket (websh USER connection) redeems the
ticket in its URL or ``client_hello`` and is attached to the live session. Every refusal
closes with a websh close code and, when it can be attributed to a workspace, is audited.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Any

from starlette.websockets import WebSocket

from broker.agents.hub import AgentHub, AgentOffline
from broker.agents.wire import Closed, Wire
from broker.audit import SYSTEM, Actor, Category, Outcome
from broker.enforce import (
    SHELL_MARKS_ENV,
    ApprovalDesk,
    ApprovalWaiter,
    BrokerVerdicts,
    NoStepUp,
    StepUp,
    gate_for,
)
from broker.errors import CorralError, NotFound
from broker.gateway.access import AccessResolver, PolicyAccessResolver, check_open
from broker.gateway.errors import AccessDenied, SessionUnavailable
from broker.gateway.inbox import Handle, Inbox
from broker.gateway.recorder import AsciicastRecorder
from broker.gateway.session import IDLE_PING_SECONDS, Client, LiveSession
from broker.gateway.shares import Share, ShareBook, ShareRefused
from broker.gateway.tickets import TicketBook, TicketRefused
from broker.policy.mfa import MfaAges, NoMfa
from broker.policy.runtime import default_policy
from broker.services import Services
from broker.store.models import AccessLevel, Server, User
from policies import AccessLevel as PolicyLevel
from policies import PolicyEngine
from websh import (
    ChannelKind,
    ClientHello,
    ClientWelcome,
    CloseCode,
    Connection,
    ConnectionKind,
    Input,
    Limits,
    Message,
    Resize,
    Resume,
    Side,
    Terminated,
)

__all__ = ["GatewaySessions", "Opened"]

log = logging.getLogger("corral.gateway")


class Opened:
    def __init__(self, session: LiveSession, ticket: str) -> None:
        self.session = session
        self.ticket = ticket


class GatewaySessions:
    def __init__(
        self,
        services: Services,
        hub: AgentHub,
        *,
        recordings_dir: Path,
        resolver: AccessResolver | None = None,
        policy: Callable[[], PolicyEngine] | None = None,
        grace_seconds: float = 300.0,
        ticket_ttl: float = 30.0,
        buffer_limit: int = 1024 * 1024,
        hello_timeout: float = 10.0,
        limits: Limits | None = None,
        clock: Callable[[], float] = time.monotonic,
        step_up: StepUp | None = None,
        approvals: ApprovalWaiter | None = None,
        mfa: MfaAges | None = None,
        enforce: bool = True,
        idle_ping_seconds: float = IDLE_PING_SECONDS,
    ) -> None:
        """``policy`` returns the engine in force (default: the repo's policies.polar,
        compiled); ``mfa`` says how long ago a person last passed MFA (identity's step-up
        service; none: never); ``enforce=False`` turns the per-command gate off."""
        self.services = services
        self.hub = hub
        self.recordings_dir = recordings_dir
        engine = policy or default_policy
        self.resolver: AccessResolver = resolver or PolicyAccessResolver(services, engine)
        #: The engine getter the per-command gate uses; None turns the gate off.
        self.policy: Callable[[], PolicyEngine] | None = engine if enforce else None
        self.grace_seconds = grace_seconds
        self.idle_ping_seconds = idle_ping_seconds
        self.buffer_limit = buffer_limit
        self.hello_timeout = hello_timeout
        self.limits = limits or Limits()
        self.tickets = TicketBook(ttl=ticket_ttl, clock=clock)
        self.shares = ShareBook()
        self.live: dict[str, LiveSession] = {}
        self.step_up: StepUp = step_up or NoStepUp()
        self.approvals: ApprovalWaiter = approvals or ApprovalDesk(services)
        self.mfa: MfaAges = mfa or NoMfa()

    # -------------------------------------------------------------------- open

    async def open(
        self,
        workspace_id: str,
        user: User,
        *,
        server_ref: str,
        unix_user: str,
        cols: int,
        rows: int,
        actor: Actor,
    ) -> Opened:
        server = await self.find_server(workspace_id, server_ref)
        level = await self.resolver.access_level(workspace_id, user, server)
        try:
            check_open(level, unix_user)
        except AccessDenied as exc:
            await self.services.audit.emit(
                workspace_id,
                Category.AUTHORIZATION,
                "session.open_denied",
                outcome=Outcome.DENIED,
                actor=actor,
                server_id=server.id,
                details={"unix_user": unix_user, "level": str(level), "reason": str(exc)},
            )
            raise
        row = await self.services.sessions.open(
            workspace_id,
            user_id=user.id,
            server_id=server.id,
            unix_user=unix_user,
            cols=cols,
            rows=rows,
            actor=actor,
        )
        try:
            channel = await self.hub.open_channel(
                workspace_id,
                server.id,
                ChannelKind.TERMINAL,
                user=unix_user,
                cols=cols,
                rows=rows,
                channel_id=row.id,
                env={SHELL_MARKS_ENV: "1"} if self.policy is not None else None,
            )
        except AgentOffline:
            await self.services.sessions.close(
                workspace_id, row.id, reason="agent offline", actor=actor
            )
            raise
        path = self.recordings_dir / workspace_id / f"{row.id}.cast"
        recorder = AsciicastRecorder(path, cols=cols, rows=rows, title=f"{unix_user}@{server.name}")
        recording = await self.services.recordings.add(workspace_id, row.id, str(path))
        session = LiveSession(
            session_id=row.id,
            workspace_id=workspace_id,
            user_id=user.id,
            server_id=server.id,
            unix_user=unix_user,
            credential_id=actor.credential_id,
            channel=channel,
            recorder=recorder,
            recording_id=recording.id,
            services=self.services,
            hub=self.hub,
            grace_seconds=self.grace_seconds,
            buffer_limit=self.buffer_limit,
            on_end=self._forget,
            idle_ping_seconds=self.idle_ping_seconds,
        )
        if self.policy is not None:
            session.gate = gate_for(
                session,
                BrokerVerdicts(
                    self.policy,
                    self.services,
                    workspace_id=workspace_id,
                    user=user,
                    server=server,
                    unix_user=unix_user,
                    session_id=row.id,
                    grant=self._grant_of(workspace_id, user, server, level),
                    step_up=self.step_up,
                    approvals=self.approvals,
                    mfa_age=lambda: self.mfa.mfa_age(workspace_id, user.id),
                ),
                cols=cols,
            )
        self.live[row.id] = session
        session.start()
        ticket = self.tickets.issue(
            workspace_id, row.id, user.id, actor.credential_id, resume=False
        )
        return Opened(session, ticket)

    def _grant_of(
        self, workspace_id: str, user: User, server: Server, level: AccessLevel
    ) -> Callable[[], Awaitable[tuple[PolicyLevel, str]]]:
        """How a session's gate learns the level at each Enter: asked again of the
        resolver when it can say which grant decided, else the level the session opened
        with."""
        resolve = getattr(self.resolver, "resolve", None)

        async def grant() -> tuple[PolicyLevel, str]:
            if resolve is not None:
                level_now, grant_id = await resolve(workspace_id, user, server)
                return PolicyLevel(str(level_now)), str(grant_id)
            return PolicyLevel(str(level)), f"session.level.{level}"

        return grant

    async def find_server(self, workspace_id: str, ref: str) -> Server:
        try:
            return await self.services.servers.get(workspace_id, ref)
        except NotFound:
            server = await self.services.servers.find_by_name(workspace_id, ref)
            if server is None:
                raise NotFound("server", ref) from None
            return server

    def session(self, workspace_id: str, session_id: str) -> LiveSession:
        """The live session, or :class:`SessionUnavailable` (also for another workspace's)."""
        live = self.live.get(session_id)
        if live is None or live.workspace_id != workspace_id:
            raise SessionUnavailable(f"no live session {session_id}")
        return live

    def sessions(self, workspace_id: str) -> list[LiveSession]:
        return [s for s in self.live.values() if s.workspace_id == workspace_id]

    def issue_ticket(self, workspace_id: str, session_id: str, user: User, actor: Actor) -> str:
        """A ticket to re-attach to one's own live session (the client then sends resume)."""
        live = self.session(workspace_id, session_id)
        if live.user_id != user.id:
            raise SessionUnavailable(f"no live session {session_id}")
        return self.tickets.issue(
            workspace_id, session_id, user.id, actor.credential_id, resume=True
        )

    def _forget(self, session: LiveSession) -> None:
        if self.live.get(session.id) is session:
            del self.live[session.id]
        self.shares.forget_session(session.id)

    # ------------------------------------------------------ sharing and observing

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

    # ---------------------------------------------------------------- terminate

    async def terminate(
        self,
        workspace_id: str,
        session_id: str,
        reason: str,
        *,
        by: str | None = None,
        actor: Actor = SYSTEM,
        code: int = CloseCode.SESSION_TERMINATED,
    ) -> None:
        """End a live session now: ``terminated`` to every client, the shell hung up."""
        live = self.session(workspace_id, session_id)
        await live.end(
            Terminated(reason=reason[:200], by=by),
            reason=reason,
            terminated=True,
            actor=actor,
            code=code,
        )

    async def terminate_where(
        self,
        workspace_id: str,
        match: Callable[[LiveSession], bool],
        reason: str,
        *,
        actor: Actor = SYSTEM,
        code: int = CloseCode.REVOKED,
    ) -> list[str]:
        ended = [s for s in self.sessions(workspace_id) if match(s)]
        await asyncio.gather(
            *(self.terminate(workspace_id, s.id, reason, actor=actor, code=code) for s in ended),
            return_exceptions=True,
        )
        return [s.id for s in ended]

    async def kick_where(
        self, workspace_id: str, match: Callable[[Client], bool], reason: str
    ) -> int:
        """Remove matching participants from every live session of the workspace."""
        kicked = 0
        for live in self.sessions(workspace_id):
            kicked += await live.kick(match, reason, CloseCode.REVOKED)
        return kicked

    async def close_all(self, reason: str = "broker shutting down") -> None:
        for live in list(self.live.values()):
            with contextlib.suppress(CorralError):
                await live.end(
                    Terminated(reason=reason),
                    reason=reason,
                    terminated=True,
                    code=CloseCode.SERVICE_RESTART,
                )

    # -------------------------------------------------------------------- serve

    async def serve(self, websocket: WebSocket, session_id: str) -> None:
        """One person's WebSocket, from ``client_hello`` to disconnect."""
        await websocket.accept()
        wire = Wire(websocket, Connection(ConnectionKind.USER, Side.SERVER, limits=self.limits))
        try:
            hello = await asyncio.wait_for(wire.receive(), self.hello_timeout)
        except (Closed, TimeoutError):
            await wire.close(CloseCode.UNAUTHENTICATED, "client_hello expected")
            return
        assert isinstance(hello, ClientHello)  # the USER connection admits nothing else first
        secret = websocket.query_params.get("ticket") or hello.ticket
        if not secret:
            await wire.close(CloseCode.UNAUTHENTICATED, "ticket required")
            return
        try:
            ticket = self.tickets.redeem(secret, session_id)
        except TicketRefused as refused:
            await self._refuse_ticket(wire, refused, session_id)
            return
        actor = Actor("user", ticket.user_id, ticket.credential_id)
        live = self.live.get(session_id)
        if live is None or live.workspace_id != ticket.workspace_id:
            await self._audit_refusal(
                ticket.workspace_id, "session.unavailable", actor, session_id, "not live"
            )
            await wire.close(CloseCode.UNKNOWN_CHANNEL, "unknown session")
            return
        label = ticket.user_id
        with contextlib.suppress(CorralError):
            label = (await self.services.users.get(ticket.workspace_id, ticket.user_id)).email
        await wire.send(ClientWelcome(session_id=session_id, read_only=ticket.read_only))
        client = Client(
            wire,
            ticket.user_id,
            ticket.credential_id,
            read_only=ticket.read_only,
            # The owner's first attach starts at 0; a joiner gets what the buffer still
            # holds, so their screen fills in; a resuming owner says where it stands.
            cursor=None if ticket.resume else (0 if ticket.role == "owner" else live.buffer.start),
            role=ticket.role,
            label=label,
            share_id=ticket.share_id,
        )
        await live.attach(client)
        inbox = Inbox(wire, self._client_handler(live, client))
        try:
            if not inbox.listen():  # the socket cannot call back: read it in this task
                await inbox.run()
            await inbox.finished()
            closed = inbox.closed
            if closed is not None and wire.connection.error is not None:
                await self._audit_refusal(
                    live.workspace_id,
                    "session.client_protocol_error",
                    client.actor,
                    live.id,
                    f"close {closed.code}: {closed.reason}",
                    category=Category.RESOURCE_ACCESS,
                    server_id=live.server_id,
                )
        finally:
            await live.detach(client)

    def _client_handler(self, live: LiveSession, client: Client) -> Handle:
        """What a person's messages do, each handled as it arrives (see ``Inbox``)."""

        def handle(message: Message) -> Coroutine[Any, Any, None] | None:
            if type(message) is Input:
                if client.cursor is not None and not client.read_only:
                    return live.input(message.data)  # every ordinary keystroke
                return self._first_or_refused_input(live, client, message.data)
            if isinstance(message, Resize):
                return None if client.read_only else live.resize(message.cols, message.rows)
            if isinstance(message, Resume):
                return live.resume(client, message.offset)
            return None

        return handle

    async def _first_or_refused_input(self, live: LiveSession, client: Client, data: bytes) -> None:
        """Input from a resuming client that never said what it holds (it gets everything
        the buffer still holds first), or from a read-only participant (refused)."""
        if client.cursor is None:
            await live.resume(client, live.buffer.start)
        if client.read_only:
            await live.refuse_input(client)
            return
        work = live.input(data)
        if work is not None:
            await work

    async def _refuse_ticket(self, wire: Wire, refused: TicketRefused, session_id: str) -> None:
        ticket = refused.ticket
        if ticket is not None:
            await self._audit_refusal(
                ticket.workspace_id,
                "session.ticket_refused",
                Actor("user", ticket.user_id, ticket.credential_id),
                session_id,
                refused.reason,
                category=Category.AUTHENTICATION,
            )
        else:
            log.warning("session websocket refused: unknown ticket")
        if refused.reason == "wrong session":
            await wire.close(CloseCode.UNKNOWN_CHANNEL, "unknown session")
        else:
            await wire.close(CloseCode.UNAUTHENTICATED, f"ticket {refused.reason}")

    async def _audit_refusal(
        self,
        workspace_id: str,
        action: str,
        actor: Actor,
        session_id: str,
        reason: str,
        *,
        category: Category = Category.AUTHORIZATION,
        server_id: str = "",
    ) -> None:
        with contextlib.suppress(CorralError):
            await self.services.audit.emit(
                workspace_id,
                category,
                action,
                outcome=Outcome.DENIED,
                actor=actor,
                server_id=server_id,
                target=session_id[:128],
                details={"reason": reason},
            )
