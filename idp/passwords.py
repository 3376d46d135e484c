"""Local passwords: argon2id hashing, the password rules, and the login check with lockout.

Hashing runs in a worker thread (argon2id is deliberately slow and memory-hard); a hash made
with older parameters is replaced on the next successful login. An unknown email costs the
same as a known one (a dummy hash is verified), and both get the same answer, so response
time and text do not reveal who has an account. After ``max_failures`` wrong passwords in a
row an account is locked with a doubling backoff (audited); unknown emails get the same
treatment in memory, so lockout does not reveal existence either.

Never log or audit a password, or a hash of one.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from broker.audit import Actor, Category, Outcome
from broker.errors import AuthenticationFailed, InvalidInput
from broker.services import Services
from broker.store.models import User, UserKind
from idp.errors import RateLimited
from idp.ratelimit import RateLimiter

__all__ = ["MAX_LENGTH", "MIN_LENGTH", "LocalLogin", "Passwords", "check_password_rules"]

MIN_LENGTH = 12
MAX_LENGTH = 1024  # argon2 takes any length; this bounds the work one request can ask for
BAD = "invalid email or password"
# The most used passwords that pass the length rule (public breach-corpus top lists);
# with the length rule this refuses the guesses an online attacker tries first.
COMMON = frozenset(
    (
        "123456789012",
        "1234567890123",
        "12345678901234",
        "123456123456",
        "111111111111",
        "000000000000",
        "qwertyuiopas",
        "qwertyuiop123",
        "qwerty123456",
        "qwertyqwerty",
        "1q2w3e4r5t6y",
        "1qaz2wsx3edc",
        "password1234",
        "password123!",
        "passwordpassword",
        "password12345",
        "p@ssw0rd1234",
        "passw0rd1234",
        "iloveyou1234",
        "letmein12345",
        "welcome12345",
        "welcome123456",
        "administrator",
        "admin1234567",
        "abc123456789",
        "abcdefghijkl",
        "abcd12345678",
        "aaaaaaaaaaaa",
        "changeme1234",
        "football1234",
        "baseball1234",
        "superman1234",
        "trustno11234",
        "monkey123456",
        "dragon123456",
        "sunshine1234",
        "princess1234",
        "starwars1234",
        "whatever1234",
        "zaq12wsxcde3",
        "asdfghjkl123",
        "zxcvbnm12345",
        "correcthorsebatterystaple",
    )
)


def check_password_rules(password: str, *, email: str = "") -> None:
    """Refuse short, overlong, common, single-character or email-derived passwords."""
    if len(password) < MIN_LENGTH:
        raise InvalidInput(f"password must be at least {MIN_LENGTH} characters")
    if len(password) > MAX_LENGTH:
        raise InvalidInput(f"password must be at most {MAX_LENGTH} characters")
    lowered = password.lower()
    if lowered in COMMON or len(set(password)) <= 2:
        raise InvalidInput("this password is too common; choose another")
    local = email.split("@", 1)[0].lower()
    if len(local) >= 4 and local in lowered:
        raise InvalidInput("the password must not contain your email name")


class Passwords:
    """argon2id with one parameter set; ``verify`` says when a stored hash is outdated."""

    def __init__(self, hasher: PasswordHasher | None = None) -> None:
        self.hasher = hasher or PasswordHasher()  # argon2id, RFC 9106 low-memory profile
        self._dummy = self.hasher.hash("corral-dummy-password-for-timing")

    async def hash(self, password: str) -> str:
        return await asyncio.to_thread(self.hasher.hash, password)

    async def verify(self, stored: str | None, password: str) -> tuple[bool, str | None]:
        """(matches, replacement hash if the stored one used other parameters)."""
        return await asyncio.to_thread(self._verify, stored, password)

    def _verify(self, stored: str | None, password: str) -> tuple[bool, str | None]:
        target = stored or self._dummy
        try:
            self.hasher.verify(target, password)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False, None
        if stored is None:
            return False, None
        if self.hasher.check_needs_rehash(stored):
            return True, self.hasher.hash(password)
        return True, None


class LocalLogin:
    """Email + password against one workspace, with rate limits and lockout."""

    def __init__(
        self,
        services: Services,
        passwords: Passwords,
        *,
        max_failures: int = 5,
        lockout_seconds: int = 60,
        rate_per_minute: int = 10,
    ) -> None:
        self.services = services
        self.passwords = passwords
        self.max_failures = max_failures
        self.lockout_seconds = lockout_seconds
        self.per_source = RateLimiter(rate_per_minute, 60.0)
        self.per_account = RateLimiter(rate_per_minute, 60.0)
        self._unknown: OrderedDict[str, int] = OrderedDict()  # failures of unknown emails

    async def check(self, workspace_id: str, email: str, password: str, *, source: str) -> User:
        """The user this password belongs to; else AuthenticationFailed or RateLimited."""
        email = email.strip().lower()
        for limiter, key in (
            (self.per_source, source),
            (self.per_account, f"{workspace_id}|{email}"),
        ):
            wait = limiter.hit(key)
            if wait:
                await self._refuse(workspace_id, "", email, "rate limited", source)
                raise RateLimited("too many login attempts; try again later", wait)
        if not password or len(password) > MAX_LENGTH:
            raise AuthenticationFailed(BAD)
        user = await self.services.users.find_by_email(workspace_id, email)
        key = f"{workspace_id}|{email}"
        if user is None:
            await self.passwords.verify(None, password)  # same cost as a real check
            failures = self._unknown.pop(key, 0) + 1
            self._unknown[key] = failures
            while len(self._unknown) > 10_000:
                self._unknown.popitem(last=False)
            await self._refuse(workspace_id, "", email, "unknown user", source)
            if failures >= self.max_failures:
                raise RateLimited("too many failed logins; try again later", self.lockout_seconds)
            raise AuthenticationFailed(BAD)
        if user.kind is UserKind.SERVICE:  # service accounts only ever use their tokens
            await self.passwords.verify(None, password)
            await self._refuse(workspace_id, user.id, email, "service account", source)
            raise AuthenticationFailed(BAD)
        state = await self.services.accounts.login_state(workspace_id, user.id)
        now = self.services.accounts.clock()
        if state.locked_until is not None and now < state.locked_until:
            await self._refuse(workspace_id, user.id, email, "locked", source)
            wait = (state.locked_until - now).total_seconds()
            raise RateLimited("too many failed logins; try again later", wait)
        ok, rehash = await self.passwords.verify(user.password_hash, password)
        if not ok:
            why = "no password set" if user.password_hash is None else "wrong password"
            state = await self.services.accounts.record_failure(
                workspace_id,
                user.id,
                reason=why,
                max_failures=self.max_failures,
                lock_seconds=self.lockout_seconds,
                source=source,
            )
            if state.locked_until is not None and now < state.locked_until:
                wait = (state.locked_until - now).total_seconds()
                raise RateLimited("too many failed logins; try again later", wait)
            raise AuthenticationFailed(BAD)
        if user.disabled:
            await self._refuse(workspace_id, user.id, email, "user disabled", source)
            raise AuthenticationFailed(BAD)
        await self.services.accounts.record_password_ok(workspace_id, user.id, rehash=rehash)
        self.per_account.reset(key)
        return user

    async def _refuse(
        self, workspace_id: str, user_id: str, email: str, why: str, source: str
    ) -> None:
        await self.services.audit.emit(
            workspace_id,
            Category.AUTHENTICATION,
            "login.failed",
            outcome=Outcome.DENIED,
            actor=Actor("user", user_id),
            target=user_id or email[:200],
            details={"reason": why, "email": email[:320], "source": source},
        )

    async def set_password(
        self, workspace_id: str, user_id: str, password: str, *, actor: Actor
    ) -> User:
        """Set a password after checking the rules (CLI, sign-up, change); audited."""
        user = await self.services.users.get(workspace_id, user_id)
        check_password_rules(password, email=user.email)
        digest = await self.passwords.hash(password)
        return await self.services.accounts.set_password(workspace_id, user_id, digest, actor=actor)

    async def change_password(
        self,
        workspace_id: str,
        user_id: str,
        current: str,
        new: str,
        *,
        actor: Actor,
        keep_session: str | None = None,
    ) -> User:
        """Change one's own password (current one required); ends the user's other sessions."""
        user = await self.services.users.get(workspace_id, user_id)
        ok, _ = await self.passwords.verify(user.password_hash, current[:MAX_LENGTH])
        if not ok:
            await self.services.audit.emit(
                workspace_id,
                Category.AUTHENTICATION,
                "password.change_refused",
                outcome=Outcome.DENIED,
                actor=actor,
                target=user_id,
                details={"reason": "wrong current password"},
            )
            raise AuthenticationFailed("the current password is wrong")
        user = await self.set_password(workspace_id, user_id, new, actor=actor)
        await self.services.browser_sessions.revoke_all(
            workspace_id, user_id, actor=actor, reason="password changed", keep=keep_session
        )
        return user

    async def sign_up(
        self, invitation: str, password: str, *, display_name: str = "", source: str = ""
    ) -> User:
        """Create a local account from an invitation secret (consumed once)."""
        wait = self.per_source.hit(source)
        if wait:
            raise RateLimited("too many attempts; try again later", wait)
        check_password_rules(password)
        digest = await self.passwords.hash(password)
        return await self.services.accounts.accept_invitation(
            invitation, password_hash=digest, display_name=display_name, source=source
        )
