"""TOTP (RFC 6238) second factor: enrol, confirm with a first code, verify.

The seed is stored sealed (:class:`SecretBox`, bound to the factor id) and only shown at
enrolment. A code is accepted within one 30-second step either side of now, and each step
at most once per factor (the highest accepted step is stored and only moves forward), so
a code seen over a shoulder or in a log cannot be replayed.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass

import pyotp

from broker.audit import Actor
from broker.services import Services
from broker.store.models import FactorKind, MfaFactor, new_id
from idp.secretbox import SecretBox

__all__ = ["STEP_SECONDS", "Totp", "TotpEnrolment"]

STEP_SECONDS = 30
WINDOW = 1  # steps accepted either side of now


@dataclass(frozen=True)
class TotpEnrolment:
    factor: MfaFactor
    secret: str  # base32, shown once
    uri: str  # otpauth:// for a QR code


def normalise_code(code: str) -> str:
    return "".join(code.split())


class Totp:
    def __init__(self, services: Services, box: SecretBox, *, issuer: str = "Corral") -> None:
        self.services = services
        self.box = box
        self.issuer = issuer

    async def enrol(
        self, workspace_id: str, user_id: str, *, label: str = "", actor: Actor
    ) -> TotpEnrolment:
        user = await self.services.users.get(workspace_id, user_id)
        secret = pyotp.random_base32(length=32)
        ident = new_id()
        factor = await self.services.factors.add(
            workspace_id,
            user.id,
            FactorKind.TOTP,
            label=label or "authenticator app",
            actor=actor,
            id=ident,
            secret_box=self.box.seal(secret.encode(), bound_to=ident),
        )
        uri = pyotp.TOTP(secret).provisioning_uri(name=user.email, issuer_name=self.issuer)
        return TotpEnrolment(factor, secret, uri)

    def _step_now(self) -> int:
        return int(self.services.factors.clock().timestamp()) // STEP_SECONDS

    def _matching_step(self, factor: MfaFactor, code: str) -> int | None:
        code = normalise_code(code)
        if len(code) != 6 or not code.isdigit():
            return None
        secret = self.box.open(factor.secret_box, bound_to=factor.id).decode()
        totp = pyotp.TOTP(secret)
        now = self._step_now()
        found = None
        for step in range(now - WINDOW, now + WINDOW + 1):
            if hmac.compare_digest(totp.at(step * STEP_SECONDS), code):
                found = step
        return found

    async def confirm(
        self, workspace_id: str, user_id: str, factor_id: str, code: str, *, actor: Actor
    ) -> MfaFactor | None:
        """Confirm an enrolment with its first code; None if the code is wrong."""
        factor = await self.services.factors.get(workspace_id, factor_id)
        if factor.user_id != user_id or factor.kind is not FactorKind.TOTP:
            return None
        step = self._matching_step(factor, code)
        if step is None or not await self.services.factors.use_totp_step(
            workspace_id, factor.id, step
        ):
            return None
        return await self.services.factors.confirm(workspace_id, factor.id, actor=actor)

    async def verify(self, workspace_id: str, user_id: str, code: str) -> MfaFactor | None:
        """The confirmed TOTP factor this fresh code belongs to, or None (wrong or replayed)."""
        for factor in await self.services.factors.list(workspace_id, user_id):
            if factor.kind is not FactorKind.TOTP:
                continue
            step = self._matching_step(factor, code)
            if step is not None and await self.services.factors.use_totp_step(
                workspace_id, factor.id, step
            ):
                return factor
        return None
