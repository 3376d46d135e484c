"""The step-up seam for the terminal gate: re-verify a factor, and how old the last MFA is.

The gate (holding a privileged command until the person proves presence) injects a
:class:`StepUp` and calls :meth:`StepUp.verify` with what the person typed: a TOTP code or a
recovery code. Success is audited (``mfa.verified``, purpose ``step-up``) and refreshes
the user's last-MFA time; :meth:`StepUp.mfa_age` is what a policy such as "MFA within
300 seconds" compares against. Under a hardware-only workspace neither code type counts, so
``verify`` returns False (WebAuthn step-up goes through ``POST /api/v1/auth/step-up``).
"""

from __future__ import annotations

from broker.errors import AuthenticationFailed, InvalidInput, NotFound
from broker.services import Services
from idp.errors import RateLimited
from idp.mfa import Mfa
from idp.recovery import looks_like_recovery_code

__all__ = ["StepUp"]


class StepUp:
    def __init__(self, services: Services, mfa: Mfa) -> None:
        self.services = services
        self.mfa = mfa

    async def verify(self, workspace_id: str, user_id: str, code: str) -> bool:
        """True if ``code`` is a fresh TOTP code or an unused recovery code of this user."""
        method = "recovery" if looks_like_recovery_code(code) else "totp"
        try:
            await self.mfa.verify(
                workspace_id, user_id, method, code=code, purpose="step-up", source="terminal"
            )
        except (AuthenticationFailed, InvalidInput, NotFound, RateLimited):
            return False  # already audited by Mfa.verify (except unknown users: NotFound)
        return True

    async def mfa_age(self, workspace_id: str, user_id: str) -> float | None:
        """Seconds since this user's last successful MFA, or None if never."""
        state = await self.services.accounts.login_state(workspace_id, user_id)
        if state.last_mfa_at is None:
            return None
        return max(0.0, (self.services.accounts.clock() - state.last_mfa_at).total_seconds())
