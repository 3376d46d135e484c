"""Device-code login (RFC 8628): a terminal without a browser asks for a code, a signed-in
person approves it in a browser, and the terminal's polling then receives a token.

Pending grants live in memory, per broker process, and expire after ``ttl_seconds`` (ten
minutes by default): behind several broker processes the start, the approval and the
polling must reach the same one (sticky routing), which is documented in docs/cli.md.
Nothing here touches the database or mints tokens; the route does that once a grant comes
back approved, so the only durable result of a device login is an ordinary, audited
personal access token.

The device code is a bearer secret: only its SHA-256 is kept. The user code is short
(8 letters from a 20-letter alphabet without vowels, shown ``XXXX-XXXX``) because a person
types it; guessing is bounded by the approver's rate limit and the grant's lifetime.

This module must never decide who may approve: the caller passes an authenticated user.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

from idp.ratelimit import RateLimiter

__all__ = [
    "USER_CODE_ALPHABET",
    "DeviceGrant",
    "DeviceGrants",
    "DevicePollRefused",
    "GrantState",
    "normalise_user_code",
]

USER_CODE_ALPHABET = "BCDFGHJKLMNPQRSTVWXZ"  # RFC 8628 6.1: no vowels, no look-alikes
USER_CODE_LENGTH = 8
SLOW_DOWN_STEP = 5  # RFC 8628 3.5: each slow_down adds 5 seconds to the interval


class GrantState(StrEnum):
    PENDING = "pending"
    APPROVED = "approved"
    DENIED = "denied"


class DevicePollRefused(Exception):
    """The token request cannot be answered with a token (yet); ``code`` is the RFC 8628
    error with dashes: ``authorization-pending``, ``slow-down``, ``expired-token`` or
    ``access-denied``."""

    def __init__(self, code: str, detail: str, *, interval: int | None = None) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail
        self.interval = interval


@dataclass
class DeviceGrant:
    device_hash: str
    user_code: str
    client_name: str
    expires_at: float
    interval: int
    state: GrantState = GrantState.PENDING
    last_poll: float | None = None
    workspace_id: str = ""
    user_id: str = ""
    credential_id: str = ""
    """The approver's credential (session or token), kept for the minted token's audit."""

    @property
    def display_code(self) -> str:
        return f"{self.user_code[:4]}-{self.user_code[4:]}"


def normalise_user_code(text: str) -> str:
    """What a person typed, upper-cased, with dashes and spaces dropped."""
    return "".join(ch for ch in text.upper() if ch not in "- ")


def _digest(device_code: str) -> str:
    return hashlib.sha256(device_code.encode()).hexdigest()


class DeviceGrants:
    """The pending device grants of one broker process."""

    def __init__(
        self,
        *,
        ttl_seconds: int = 600,
        interval: int = 5,
        max_pending: int = 10_000,
        starts_per_minute: int = 30,
        attempts_per_10_minutes: int = 10,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        # Per source address: each start holds memory until it expires.
        self.starts = RateLimiter(starts_per_minute, 60, clock=clock)
        # Per approving person: wrong user codes count, so codes cannot be guessed.
        self.attempts = RateLimiter(attempts_per_10_minutes, 600, clock=clock)
        self.ttl_seconds = ttl_seconds
        self.interval = interval
        self.max_pending = max_pending
        self.clock = clock
        self._by_hash: dict[str, DeviceGrant] = {}
        self._by_user_code: dict[str, DeviceGrant] = {}

    def _sweep(self) -> None:
        now = self.clock()
        for grant in [g for g in self._by_hash.values() if g.expires_at <= now]:
            self._forget(grant)

    def _forget(self, grant: DeviceGrant) -> None:
        self._by_hash.pop(grant.device_hash, None)
        if self._by_user_code.get(grant.user_code) is grant:
            del self._by_user_code[grant.user_code]

    def start(self, client_name: str) -> tuple[str, DeviceGrant]:
        """A new grant and its device code (returned once, kept only as a hash)."""
        self._sweep()
        if len(self._by_hash) >= self.max_pending:
            raise DevicePollRefused("rate-limited", "too many pending device logins")
        while True:
            user_code = "".join(secrets.choice(USER_CODE_ALPHABET) for _ in range(USER_CODE_LENGTH))
            if user_code not in self._by_user_code:
                break
        device_code = secrets.token_urlsafe(32)
        grant = DeviceGrant(
            device_hash=_digest(device_code),
            user_code=user_code,
            client_name=client_name,
            expires_at=self.clock() + self.ttl_seconds,
            interval=self.interval,
        )
        self._by_hash[grant.device_hash] = grant
        self._by_user_code[user_code] = grant
        return device_code, grant

    def pending(self, user_code: str) -> DeviceGrant | None:
        """The undecided, unexpired grant with this user code, if any."""
        self._sweep()
        grant = self._by_user_code.get(normalise_user_code(user_code))
        if grant is None or grant.state is not GrantState.PENDING:
            return None
        return grant

    def decide(
        self,
        user_code: str,
        *,
        approve: bool,
        workspace_id: str,
        user_id: str,
        credential_id: str,
    ) -> DeviceGrant | None:
        """Approve or deny a pending grant for this person; None if there is none."""
        grant = self.pending(user_code)
        if grant is None:
            return None
        grant.state = GrantState.APPROVED if approve else GrantState.DENIED
        grant.workspace_id = workspace_id
        grant.user_id = user_id
        grant.credential_id = credential_id
        return grant

    def poll(self, device_code: str) -> DeviceGrant:
        """The approved grant (consumed: a device code yields one token), or
        :class:`DevicePollRefused` saying why not."""
        grant = self._by_hash.get(_digest(device_code))
        now = self.clock()
        if grant is None or not hmac.compare_digest(grant.device_hash, _digest(device_code)):
            raise DevicePollRefused("expired-token", "unknown or expired device code")
        if grant.expires_at <= now:
            self._forget(grant)
            raise DevicePollRefused("expired-token", "the device code expired; log in again")
        if grant.state is GrantState.DENIED:
            self._forget(grant)
            raise DevicePollRefused("access-denied", "the login was denied in the browser")
        if grant.state is GrantState.APPROVED:
            self._forget(grant)
            return grant
        previous, grant.last_poll = grant.last_poll, now
        # A little slack: a client that sleeps exactly `interval` may arrive a bit early.
        if previous is not None and now - previous < grant.interval * 0.8:
            grant.interval += SLOW_DOWN_STEP
            raise DevicePollRefused(
                "slow-down",
                f"polling too fast; wait {grant.interval} s between requests",
                interval=grant.interval,
            )
        raise DevicePollRefused("authorization-pending", "waiting for approval in the browser")
