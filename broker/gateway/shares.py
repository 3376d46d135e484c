"""Share links: the owner of a live session invites others, read-only or read-write, until
an expiry.

A link is a bearer secret for *joining*, not for the terminal: whoever redeems it must
still be signed in to the same workspace, and a read-write join must still pass the same
access check as opening the session would (see ``GatewaySessions.join``). Links live only
as long as their session (a broker restart ends both), so they are kept in memory and only
their SHA-256 is held. Redeeming a link does not spend it: it is an invitation for several
people until it expires or its owner revokes it.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["Share", "ShareBook", "ShareRefused"]

#: Longest a link may live; a session shared for longer should get a new link.
MAX_TTL = 7 * 24 * 3600.0


@dataclass
class Share:
    id: str
    workspace_id: str
    session_id: str
    created_by: str
    read_only: bool
    expires_at: float
    revoked: bool = False

    @property
    def mode(self) -> str:
        return "read-only" if self.read_only else "read-write"


class ShareRefused(Exception):
    """``reason`` is ``unknown``, ``expired`` or ``revoked`` (safe to show)."""

    def __init__(self, reason: str, share: Share | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.share = share


class ShareBook:
    def __init__(self, *, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        self._by_digest: dict[str, Share] = {}

    def create(
        self, workspace_id: str, session_id: str, created_by: str, *, read_only: bool, ttl: float
    ) -> tuple[Share, str]:
        """A new link for the session: the share and its secret (shown once)."""
        if not 0 < ttl <= MAX_TTL:
            raise ValueError(f"ttl must be in (0, {MAX_TTL:.0f}] seconds")
        secret = "crlshr_" + secrets.token_urlsafe(32)
        share = Share(
            id=secrets.token_hex(8),
            workspace_id=workspace_id,
            session_id=session_id,
            created_by=created_by,
            read_only=read_only,
            expires_at=self.clock() + ttl,
        )
        self._by_digest[_digest(secret)] = share
        return share, secret

    def redeem(self, secret: str) -> Share:
        share = self._by_digest.get(_digest(secret))
        if share is None:
            raise ShareRefused("unknown")
        if share.revoked:
            raise ShareRefused("revoked", share)
        if self.clock() >= share.expires_at:
            raise ShareRefused("expired", share)
        return share

    def of_session(self, workspace_id: str, session_id: str) -> list[Share]:
        return [
            s
            for s in self._by_digest.values()
            if s.workspace_id == workspace_id and s.session_id == session_id
        ]

    def revoke(self, workspace_id: str, session_id: str, share_id: str) -> Share | None:
        for share in self.of_session(workspace_id, session_id):
            if share.id == share_id:
                share.revoked = True
                return share
        return None

    def forget_session(self, session_id: str) -> None:
        """The session ended: its links mean nothing any more."""
        for digest in [d for d, s in self._by_digest.items() if s.session_id == session_id]:
            del self._by_digest[digest]


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()
