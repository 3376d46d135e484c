"""The second factor as one decision: which methods count for a user, and verifying one.

Workspace rules live here: under ``mfa_hardware_only`` only WebAuthn counts (TOTP, codes
and recovery codes are refused and the refusal audited). Every verification, good or bad,
is audited (``mfa.verified`` / ``mfa.failed``, never with the code), rate-limited per
user, and a success stamps the user's last-MFA time that step-up checks read.
"""

from __future__ import annotations

from typing import Any

from broker.audit import Actor, Category, Outcome
from broker.errors import AuthenticationFailed, InvalidInput, NotFound
from broker.services import Services
from broker.store.models import FactorKind, MfaFactor
from idp.codes import OneTimeCodes
from idp.errors import RateLimited
from idp.ratelimit import RateLimiter
from idp.recovery import RecoveryCodes
from idp.totp import Totp
from idp.webauthn import WebAuthn

__all__ = ["METHODS", "Mfa"]

METHODS = ("webauthn", "totp", "email", "sms", "recovery")  # strongest first
WRONG = "the code is wrong, expired or already used"


class Mfa:
    def __init__(
        self,
        services: Services,
        *,
        totp: Totp,
        recovery: RecoveryCodes,
        codes: OneTimeCodes,
        webauthn: WebAuthn,
        attempts_per_minute: int = 10,
    ) -> None:
        self.services = services
        self.totp, self.recovery, self.codes, self.webauthn = totp, recovery, codes, webauthn
        self.limiter = RateLimiter(attempts_per_minute, 60.0)

    async def hardware_only(self, workspace_id: str) -> bool:
        return (await self.services.workspaces.get(workspace_id)).mfa_hardware_only

    async def usable_factors(self, workspace_id: str, user_id: str) -> list[MfaFactor]:
        """Confirmed factors that count under the workspace's rules."""
        factors = await self.services.factors.list(workspace_id, user_id)
        if await self.hardware_only(workspace_id):
            factors = [f for f in factors if f.kind is FactorKind.WEBAUTHN]
        return factors

    async def methods(self, workspace_id: str, user_id: str) -> list[str]:
        """The methods this user can complete MFA with right now (empty: none enrolled)."""
        factors = await self.usable_factors(workspace_id, user_id)
        kinds = {str(f.kind) for f in factors}
        if (
            factors
            and not await self.hardware_only(workspace_id)
            and await self.recovery.remaining(workspace_id, user_id)
        ):
            kinds.add("recovery")
        return [m for m in METHODS if m in kinds]

    async def verify(
        self,
        workspace_id: str,
        user_id: str,
        method: str,
        *,
        code: str = "",
        factor_id: str | None = None,
        credential: dict[str, Any] | None = None,
        source: str = "",
        session_id: str = "",
        purpose: str = "login",
    ) -> str:
        """Verify one factor; returns the method on success, else raises (audited)."""
        if method not in METHODS:
            raise InvalidInput(f"method must be one of {', '.join(METHODS)}")
        actor = Actor("user", user_id, session_id)
        wait = self.limiter.hit(f"{workspace_id}|{user_id}")
        if wait:
            await self.audit_failure(workspace_id, actor, method, "rate limited", source, purpose)
            raise RateLimited("too many verification attempts; try again later", wait)
        if method != "webauthn" and await self.hardware_only(workspace_id):
            await self.audit_failure(workspace_id, actor, method, "hardware-only", source, purpose)
            raise AuthenticationFailed("this workspace accepts only security keys (WebAuthn)")
        if len(code) > 64:
            raise InvalidInput("code is too long")
        try:
            ok = await self._check(workspace_id, user_id, method, code, factor_id, credential)
        except AuthenticationFailed as exc:
            await self.audit_failure(workspace_id, actor, method, str(exc), source, purpose)
            raise
        if not ok:
            await self.audit_failure(workspace_id, actor, method, "wrong code", source, purpose)
            raise AuthenticationFailed(WRONG)
        await self.services.accounts.record_mfa(workspace_id, user_id, method)
        await self.services.audit.emit(
            workspace_id,
            Category.AUTHENTICATION,
            "mfa.verified",
            actor=actor,
            target=user_id,
            details={"method": method, "purpose": purpose, "source": source},
        )
        return method

    async def _check(
        self,
        workspace_id: str,
        user_id: str,
        method: str,
        code: str,
        factor_id: str | None,
        credential: dict[str, Any] | None,
    ) -> bool:
        if method == "totp":
            return await self.totp.verify(workspace_id, user_id, code) is not None
        if method == "recovery":
            return await self.recovery.use(workspace_id, user_id, code)
        if method == "webauthn":
            if not isinstance(credential, dict):
                raise InvalidInput("credential must be the WebAuthn assertion object")
            await self.webauthn.authenticate(workspace_id, user_id, credential)
            return True
        factor = await self.code_factor(workspace_id, user_id, FactorKind(method), factor_id)
        return await self.codes.verify(workspace_id, user_id, factor, code)

    async def code_factor(
        self, workspace_id: str, user_id: str, kind: FactorKind, factor_id: str | None
    ) -> MfaFactor:
        """The user's confirmed email/SMS factor (the named one, or the first)."""
        for factor in await self.services.factors.list(workspace_id, user_id):
            if factor.kind is kind and (factor_id is None or factor.id == factor_id):
                return factor
        raise NotFound(f"{kind} factor", factor_id or "(none enrolled)")

    async def audit_failure(
        self, workspace_id: str, actor: Actor, method: str, why: str, source: str, purpose: str
    ) -> None:
        await self.services.audit.emit(
            workspace_id,
            Category.AUTHENTICATION,
            "mfa.failed",
            outcome=Outcome.DENIED,
            actor=actor,
            target=actor.id,
            details={"method": method, "reason": why[:200], "purpose": purpose, "source": source},
        )
