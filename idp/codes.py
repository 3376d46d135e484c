"""Email and SMS one-time codes: a 6-digit code, hashed, short-lived, few attempts.

A code is sent for one factor and one purpose; a new send retires the previous code.
Only an HMAC of the code is stored (under a subkey of the broker key). Each code allows
``max_attempts`` guesses and then is burnt; sends per user are rate-limited, so neither
guessing nor flooding someone's phone scales.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets

from broker.audit import Actor
from broker.errors import Conflict, InvalidInput
from broker.services import Services
from broker.store.models import FactorKind, MfaFactor, User
from idp.delivery import DeliveryFailed, MailSender, SmsSender
from idp.errors import RateLimited
from idp.ratelimit import RateLimiter
from idp.secretbox import derive_key

__all__ = ["OneTimeCodes"]

PHONE = re.compile(r"^\+[1-9][0-9]{6,14}$")  # E.164


class OneTimeCodes:
    def __init__(
        self,
        services: Services,
        broker_key: bytes,
        *,
        mail: MailSender | None = None,
        sms: SmsSender | None = None,
        ttl_seconds: int = 300,
        max_attempts: int = 5,
        sends_per_hour: int = 10,
    ) -> None:
        self.services = services
        self.mail, self.sms = mail, sms
        self.ttl_seconds, self.max_attempts = ttl_seconds, max_attempts
        self._key = derive_key(broker_key, "corral one-time codes")
        self._sends = RateLimiter(sends_per_hour, 3600.0)

    def _hash(self, factor_id: str, code: str) -> str:
        message = f"{factor_id}:{code}".encode()
        return hmac.new(self._key, message, hashlib.sha256).hexdigest()

    async def enrol(
        self, workspace_id: str, user: User, kind: FactorKind, *, phone: str = "", actor: Actor
    ) -> MfaFactor:
        """An unconfirmed email/SMS factor; a first code is sent to confirm it."""
        if kind is FactorKind.EMAIL:
            if self.mail is None:
                raise Conflict("email codes are not configured on this broker (smtp_host)")
            destination = user.email
        elif kind is FactorKind.SMS:
            if self.sms is None:
                raise Conflict("SMS codes are not configured on this broker (sms_webhook_url)")
            destination = phone.replace(" ", "")
            if not PHONE.match(destination):
                raise InvalidInput("phone must be in E.164 form, e.g. +15551234567")
        else:
            raise InvalidInput(f"{kind} is not a code factor")
        factor = await self.services.factors.add(
            workspace_id, user.id, kind, label=str(kind), actor=actor, destination=destination
        )
        await self.send(workspace_id, user.id, factor)
        return factor

    async def send(self, workspace_id: str, user_id: str, factor: MfaFactor) -> None:
        wait = self._sends.hit(f"{workspace_id}|{user_id}")
        if wait:
            raise RateLimited("too many codes sent; try again later", wait)
        code = f"{secrets.randbelow(10**6):06d}"
        await self.services.factors.open_challenge(
            workspace_id,
            user_id,
            purpose=f"code:{factor.id}",
            ttl_seconds=self.ttl_seconds,
            factor_id=factor.id,
            secret_hash=self._hash(factor.id, code),
        )
        minutes = max(1, self.ttl_seconds // 60)
        text = f"Your Corral sign-in code is {code}. It expires in {minutes} minutes."
        if factor.kind is FactorKind.EMAIL and self.mail is not None:
            await self.mail.send(factor.destination, "Your Corral sign-in code", text)
        elif factor.kind is FactorKind.SMS and self.sms is not None:
            await self.sms.send(factor.destination, text)
        else:
            raise DeliveryFailed(f"no sender for {factor.kind} codes")

    async def verify(self, workspace_id: str, user_id: str, factor: MfaFactor, code: str) -> bool:
        """True once for the right code of the live challenge; each try counts."""
        code = "".join(code.split())
        challenge = await self.services.factors.current_challenge(
            workspace_id, user_id, f"code:{factor.id}"
        )
        if challenge is None:
            return False
        matched = len(code) == 6 and hmac.compare_digest(
            self._hash(factor.id, code), challenge.secret_hash
        )
        return await self.services.factors.attempt_challenge(
            workspace_id, challenge.id, matched=matched, max_attempts=self.max_attempts
        )
