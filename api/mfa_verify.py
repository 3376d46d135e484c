"""Proving a second factor over HTTP: send a one-time code, WebAuthn options, pass MFA at
login (``mfa-pending`` → ``active``) and step up in an active session. Managing factors
is :mod:`api.mfa_factors`.

Only a cookie session reaches these routes; the check itself (audited, rate limited) is
``idp``'s. This module must never count a factor as passed without ``identity.mfa.verify``
and never say more about a failure than the problem it raises.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field
from starlette.requests import Request
from starlette.responses import JSONResponse

from api.auth import browser_session, client_source, identity_of
from api.identity import SessionAnswer, session_answer
from api.mfa_common import ACTIVE, PENDING, WebAuthnOptions, mask, not_hardware_only
from api.spec import Model, body_of, operation
from broker.store.models import BrowserSessionState, FactorKind

__all__ = ["send_code", "step_up", "verify", "webauthn_options"]


class SendCode(Model):
    method: Literal["email", "sms"]
    factor_id: str | None = None


class CodeSent(BaseModel):
    sent: bool
    to: str
    """The destination, masked."""


class Verify(Model):
    method: Literal["totp", "recovery", "email", "sms", "webauthn"]
    code: Annotated[str, Field(max_length=64)] = ""
    factor_id: str | None = None
    credential: dict[str, Any] | None = None
    """WebAuthn: the object ``navigator.credentials.get()`` gave."""


@operation(
    summary="Send a one-time code by email or SMS",
    tag="mfa",
    body=SendCode,
    ok=CodeSent,
    cookie_only=True,
    errors=(404, 409, 429, 502),
)
async def send_code(request: Request) -> JSONResponse:
    identity = identity_of(request)
    row, user, _ = await browser_session(request, allow=(*PENDING, *ACTIVE))
    asked = await body_of(request, SendCode)
    await not_hardware_only(request, row)
    factor = await identity.mfa.code_factor(
        row.workspace_id, user.id, FactorKind(asked.method), asked.factor_id
    )
    await identity.codes.send(row.workspace_id, user.id, factor)
    return JSONResponse({"sent": True, "to": mask(factor.destination)})


@operation(
    summary="Options to verify with a security key",
    tag="mfa",
    ok=WebAuthnOptions,
    cookie_only=True,
    errors=(400,),
)
async def webauthn_options(request: Request) -> JSONResponse:
    identity = identity_of(request)
    row, user, _ = await browser_session(request, allow=(*PENDING, *ACTIVE))
    return JSONResponse(await identity.webauthn.authentication_options(row.workspace_id, user.id))


VERIFY: dict[str, Any] = {
    "tag": "mfa",
    "body": Verify,
    "ok": SessionAnswer,
    "cookie_only": True,
    "errors": (404, 429),
}
"""What verifying at login and stepping up share."""


async def _verify(
    request: Request, allow: tuple[BrowserSessionState, ...], purpose: str
) -> JSONResponse:
    identity = identity_of(request)
    row, user, _ = await browser_session(request, allow=allow)
    asked = await body_of(request, Verify)
    used = await identity.mfa.verify(
        row.workspace_id,
        user.id,
        asked.method,
        code=asked.code,
        factor_id=asked.factor_id,
        credential=asked.credential,
        source=client_source(request),
        session_id=row.id,
        purpose=purpose,
    )
    row, secret = await identity.browser.mfa_done(row, used)
    extra = {}
    if used == "recovery":
        extra["recovery_codes_left"] = await identity.recovery.remaining(row.workspace_id, user.id)
    return session_answer(request, row, secret, extra=extra)


@operation(summary="Pass MFA at login", **VERIFY)
async def verify(request: Request) -> JSONResponse:
    return await _verify(request, PENDING, "login")


@operation(summary="Step up: verify a factor again in an active session", **VERIFY)
async def step_up(request: Request) -> JSONResponse:
    return await _verify(request, ACTIVE, "step-up")
