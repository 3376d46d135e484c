"""GatewaySessions: opening terminal sessions, and the broker's register of live ones.

Open: resolve the server, ask the :class:`AccessResolver` for the level (refusals
audited), create the session row, ask the hub for a terminal channel, start the recording,
give the session its command gate and hand back a single-use ticket for the person's
WebSocket. The live sessions are kept here by id; a lookup never returns another
workspace's session (:class:`SessionUnavailable`, as if it did not exist).

:class:`GatewaySessions` is the one object the API, revocation and the app hold; its
other parts are base classes, a module each, sharing the state set in ``__init__``:

    terminal_ws.py   a person's WebSocket: ticket, attach, messages as they arrive
    sharing.py       share links, joining through one, observers
    termination.py   terminate, revocation's sweeps, shutdown

It never reads the environment, never builds SQL and never decides access itself: the
resolver and the policy engine it is handed do.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from broker.agents.errors import AgentOffline
from broker.agents.hub import AgentHub
from broker.audit import Actor, Category, Outcome
from broker.enforce import (
    SHELL_MARKS_ENV,
    ApprovalDesk,
    ApprovalWaiter,
    BrokerVerdicts,
    NoStepUp,
    StepUp,
    gate_for,
)
from broker.errors import NotFound
from broker.gateway.access import AccessResolver, PolicyAccessResolver, check_open
from broker.gateway.errors import AccessDenied, SessionUnavailable
from broker.gateway.recorder import AsciicastRecorder
from broker.gateway.session import IDLE_PING_SECONDS, LiveSession
from broker.gateway.shares import ShareBook
from broker.gateway.sharing import SessionSharing
from broker.gateway.terminal_ws import TerminalSockets
from broker.gateway.termination import SessionTermination
from broker.gateway.tickets import TicketBook
from broker.policy.mfa import MfaAges, NoMfa
from broker.policy.runtime import default_policy
from broker.services import Services
from broker.store.models import AccessLevel, Server, User
from policies import AccessLevel as PolicyLevel
from policies import PolicyEngine
from websh import ChannelKind, Limits

__all__ = ["GatewaySessions", "Opened"]


class Opened:
    def __init__(self, session: LiveSession, ticket: str) -> None:
        self.session = session
        self.ticket = ticket


class GatewaySessions(TerminalSockets, SessionSharing, SessionTermination):
    """The gateway's terminal sessions: open, look up, serve, share, end."""

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

    # ------------------------------------------------------------- open, look up

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
