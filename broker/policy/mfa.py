"""How long ago a person last passed MFA: the input step-up rules compare with a window.

The identity layer owns MFA; the policy side only needs this one question answered, so
it takes any object with :meth:`MfaAges.mfa_age` (``idp``'s step-up service has exactly
this method). :class:`NoMfa` answers "never", so every step-up rule fires: the safe
default until identity is wired in.
"""

from __future__ import annotations

from typing import Protocol

__all__ = ["MfaAges", "NoMfa"]


class MfaAges(Protocol):
    async def mfa_age(self, workspace_id: str, user_id: str) -> float | None:
        """Seconds since the user's last successful MFA, or ``None`` if there was none."""
        ...


class NoMfa:
    async def mfa_age(self, workspace_id: str, user_id: str) -> float | None:
        return None
