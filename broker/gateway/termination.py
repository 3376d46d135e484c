"""Ending live sessions from outside: a moderator's terminate, revocation's sweeps, shutdown.

:meth:`SessionTermination.terminate` ends one session now (``terminated`` to every
client, the shell hung up, the row closed and audited by the sessions service);
``terminate_where`` and ``kick_where`` are what :mod:`broker.gateway.revocation` uses to
end the sessions, or remove the participants, that a change no longer allows; ``close_all``
ends every session when the broker shuts down (close 4012, ``SERVICE_RESTART``). How one
session ends is :mod:`broker.gateway.lifetime`.

:class:`SessionTermination` is a base of :class:`~broker.gateway.sessions.GatewaySessions`,
which sets the state declared below. It must never decide who may terminate what (the
caller asked the policy) and never reach another workspace's sessions.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import TYPE_CHECKING

from broker.audit import SYSTEM, Actor
from broker.errors import CorralError
from broker.gateway.participants import Client
from broker.gateway.session import LiveSession
from websh import CloseCode, Terminated

__all__ = ["SessionTermination"]


class SessionTermination:
    """Terminating, kicking and shutting down (state set by ``GatewaySessions``)."""

    live: dict[str, LiveSession]

    if TYPE_CHECKING:  # GatewaySessions's

        def session(self, workspace_id: str, session_id: str) -> LiveSession: ...

        def sessions(self, workspace_id: str) -> list[LiveSession]: ...

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
