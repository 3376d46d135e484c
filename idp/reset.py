"""Password reset by an emailed single-use link.

Asking for a link answers the same way whether or not the address has an account, has a
password (an SSO-only person gets no link: their password is at the IdP), is disabled or
is in that workspace: the caller learns nothing. The mail goes out in the background so
the answer's timing does not depend on the mail server either. Asking is rate-limited per
client address and per email address (a 429 counts every address alike, so it reveals
nothing either). The link carries the secret in the URL fragment (never sent to a server
or a ``Referer``), lives 30 minutes and works once; using it applies the password rules,
ends the person's browser sessions and clears a lockout.
"""

from __future__ import annotations

import asyncio
import logging

from broker.audit import Category, Outcome
from broker.errors import CorralError
from broker.services import Services
from broker.store.models import User
from idp.delivery import MailSender
from idp.errors import RateLimited
from idp.passwords import MAX_LENGTH, Passwords, check_password_rules
from idp.ratelimit import RateLimiter

__all__ = ["PasswordReset"]

log = logging.getLogger("corral.identity")
RESET_TTL_SECONDS = 1800


class PasswordReset:
    def __init__(
        self,
        services: Services,
        passwords: Passwords,
        *,
        mail: MailSender | None,
        public_url: str,
        ttl_seconds: int = RESET_TTL_SECONDS,
        per_source_per_hour: int = 20,
        per_address_per_hour: int = 3,
    ) -> None:
        self.services, self.passwords, self.mail = services, passwords, mail
        self.public_url = public_url.rstrip("/")
        self.ttl_seconds = ttl_seconds
        self.per_source = RateLimiter(per_source_per_hour, 3600.0)
        self.per_address = RateLimiter(per_address_per_hour, 3600.0)
        self._sending: set[asyncio.Task[None]] = set()

    async def request(self, workspace_name: str, email: str, *, source: str) -> None:
        """Mail a reset link if this is a live account with a password; else nothing.
        Either way the caller sees the same result (only rate limits raise)."""
        email = email.strip().lower()
        for limiter, key in ((self.per_source, source), (self.per_address, email)):
            wait = limiter.hit(key)
            if wait:
                raise RateLimited("too many reset requests; try again later", wait)
        workspace = await self.services.workspaces.find(workspace_name)
        if workspace is None:
            return
        user = await self.services.users.find_by_email(workspace.id, email)
        why = self._why_not(user)
        if why or user is None:
            await self.services.audit.emit(
                workspace.id,
                Category.AUTHENTICATION,
                "password.reset_refused",
                outcome=Outcome.DENIED,
                target=user.id if user is not None else email[:200],
                details={"reason": why, "email": email[:320], "source": source[:100]},
            )
            return
        secret = await self.services.lifecycle.open_password_reset(
            workspace.id, user.id, ttl_seconds=self.ttl_seconds, source=source
        )
        task = asyncio.create_task(self._send(user, workspace.name, secret))
        self._sending.add(task)
        task.add_done_callback(self._sending.discard)

    def _why_not(self, user: User | None) -> str:
        if user is None:
            return "unknown user"
        if user.disabled:
            return "user disabled"
        if user.password_hash is None:
            return "no password (signs in with SSO)"
        if self.mail is None:
            return "email is not configured on this broker"
        return ""

    async def _send(self, user: User, workspace_name: str, secret: str) -> None:
        assert self.mail is not None
        minutes = self.ttl_seconds // 60
        text = (
            f"Someone asked to reset the password of {user.email} in the Corral workspace "
            f"{workspace_name}.\n\nTo choose a new password, open this link within "
            f"{minutes} minutes (it works once):\n\n"
            f"{self.public_url}/reset-password#{secret}\n\n"
            "If this was not you, ignore this mail: your password stays as it is."
        )
        try:
            await self.mail.send(user.email, "Reset your Corral password", text)
        except CorralError as exc:
            log.warning("password reset mail to user %s not sent: %s", user.id, exc)

    async def reset(self, secret: str, new_password: str, *, source: str) -> User:
        """Set a new password with a live link (once); ends every session of the person."""
        wait = self.per_source.hit(source)
        if wait:
            raise RateLimited("too many attempts; try again later", wait)
        user = await self.services.lifecycle.password_reset_user(secret[:200], source=source)
        check_password_rules(new_password[: MAX_LENGTH + 1], email=user.email)
        digest = await self.passwords.hash(new_password)
        return await self.services.lifecycle.redeem_password_reset(
            secret[:200], password_hash=digest, source=source
        )

    async def drain(self) -> None:
        """Wait for mails still being sent (shutdown, tests)."""
        if self._sending:
            await asyncio.gather(*self._sending, return_exceptions=True)
