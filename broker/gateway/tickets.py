"""Single-use WebSocket tickets: a browser cannot set headers on an upgrade, so the URL
carries a short-lived secret instead of the bearer token.

Only the SHA-256 of a ticket is kept, in memory; a redeemed ticket is remembered until it
would have expired so a second use is recognised (and audited) as reuse.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["Ticket", "TicketBook", "TicketRefused"]


@dataclass
class Ticket:
    workspace_id: str
    session_id: str
    user_id: str
    credential_id: str
    expires_at: float
    resume: bool
    #: ``owner``, ``participant`` (joined through a share link) or ``observer`` (staff).
    role: str = "owner"
    read_only: bool = False
    share_id: str | None = None
    used: bool = False


class TicketRefused(Exception):
    """``reason`` is one of ``unknown``, ``reused``, ``expired``, ``wrong session``."""

    def __init__(self, reason: str, ticket: Ticket | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.ticket = ticket


class TicketBook:
    def __init__(self, *, ttl: float = 30.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl = ttl
        self.clock = clock
        self._tickets: dict[str, Ticket] = {}

    def issue(
        self,
        workspace_id: str,
        session_id: str,
        user_id: str,
        credential_id: str,
        *,
        resume: bool,
        role: str = "owner",
        read_only: bool = False,
        share_id: str | None = None,
    ) -> str:
        self._prune()
        secret = secrets.token_urlsafe(32)
        self._tickets[_digest(secret)] = Ticket(
            workspace_id,
            session_id,
            user_id,
            credential_id,
            self.clock() + self.ttl,
            resume,
            role,
            read_only,
            share_id,
        )
        return secret

    def redeem(self, secret: str, session_id: str) -> Ticket:
        """The ticket, now spent; :class:`TicketRefused` otherwise."""
        ticket = self._tickets.get(_digest(secret))
        if ticket is None:
            raise TicketRefused("unknown")
        if ticket.used:
            raise TicketRefused("reused", ticket)
        if self.clock() >= ticket.expires_at:
            raise TicketRefused("expired", ticket)
        ticket.used = True
        if not hmac.compare_digest(ticket.session_id, session_id):
            raise TicketRefused("wrong session", ticket)
        return ticket

    def _prune(self) -> None:
        # Spent and expired tickets are kept one more lifetime, to tell reuse from guessing.
        horizon = self.clock() - self.ttl
        for digest in [d for d, t in self._tickets.items() if t.expires_at < horizon]:
            del self._tickets[digest]


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()
