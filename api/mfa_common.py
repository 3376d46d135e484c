"""What the MFA routes share: which browser-session states reach them, how recent an MFA
must be to change factors, the hardware-only rule, and how a destination is shown.

Used by :mod:`api.mfa_factors` and :mod:`api.mfa_verify`; it registers no route and must
never verify a code or change a factor itself (``idp`` does).
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict
from starlette.requests import Request

from api.auth import identity_of
from broker.audit import Actor
from broker.errors import Conflict
from broker.store.models import BrowserSession, BrowserSessionState

__all__ = [
    "ACTIVE",
    "MANAGE",
    "PENDING",
    "RECENT_MFA_SECONDS",
    "WebAuthnOptions",
    "actor_of",
    "mask",
    "not_hardware_only",
]

RECENT_MFA_SECONDS = 300
PENDING = (BrowserSessionState.MFA_PENDING,)
ACTIVE = (BrowserSessionState.ACTIVE,)
MANAGE = (BrowserSessionState.ACTIVE, BrowserSessionState.ENROL)


class WebAuthnOptions(BaseModel):
    """The WebAuthn options JSON for ``navigator.credentials.create()`` or ``.get()``
    (W3C Web Authentication, level 2); more members than these are present."""

    model_config = ConfigDict(extra="allow")

    challenge: str


def actor_of(row: BrowserSession) -> Actor:
    return Actor("user", row.user_id, row.id)


def mask(destination: str) -> str:
    if "@" in destination:
        name, _, domain = destination.partition("@")
        return f"{name[:1]}***@{domain}"
    return "*" * max(0, len(destination) - 4) + destination[-4:]


async def not_hardware_only(request: Request, row: BrowserSession) -> None:
    if await identity_of(request).mfa.hardware_only(row.workspace_id):
        raise Conflict("this workspace accepts only security keys (WebAuthn)")
