"""Managing one's second factors over HTTP: list them, enrol TOTP, email or SMS codes and
confirm with a first code, register a security key, remove a factor, and new recovery
codes. Proving a factor at login or for step-up is :mod:`api.mfa_verify`.

Only a cookie session reaches these routes. Adding, removing or renewing needs an MFA in
this session within ``RECENT_MFA_SECONDS`` unless the user has no factor yet; the first
factor confirmed in ``enrol`` state completes the login and shows recovery codes once. It
must never let one person touch another's factor (that is the unknown id's 404) nor leave
a workspace that requires MFA with a person who has none.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, Field
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from api.auth import browser_session, client_source, identity_of
from api.identity import SessionAnswer, session_answer
from api.mfa_common import (
    ACTIVE,
    MANAGE,
    RECENT_MFA_SECONDS,
    WebAuthnOptions,
    actor_of,
    mask,
    not_hardware_only,
)
from api.problems import BadRequest, Forbidden
from api.spec import Model, body_of, operation
from api.state import services_of
from broker.errors import Conflict, NotFound
from broker.store.models import BrowserSession, FactorKind, MfaFactor, User

__all__ = [
    "confirm_factor",
    "enrol_email",
    "enrol_sms",
    "enrol_totp",
    "factor_view",
    "list_factors",
    "new_recovery_codes",
    "remove_factor",
    "webauthn_register",
    "webauthn_register_options",
]

Label = Annotated[str, Field(max_length=100)]


class FactorOut(BaseModel):
    id: str
    kind: FactorKind
    label: str
    confirmed: bool
    created_at: str
    last_used_at: str | None
    destination: str | None = None
    """Email and SMS factors: where codes go, masked."""
    transports: list[str] | None = None
    """Security keys: how the browser reaches them."""
    attachment: str | None = None


class FactorList(BaseModel):
    factors: list[FactorOut]
    recovery_codes_left: int


class TotpEnrol(Model):
    label: Label = ""


class TotpEnrolment(BaseModel):
    factor: FactorOut
    secret: str
    """The TOTP seed (base32), shown once; confirm with a first code."""
    otpauth_uri: str


class CodeEnrol(Model):
    phone: Annotated[str, Field(max_length=32)] = ""
    """SMS only: the number codes are sent to (E.164, e.g. +15551234567)."""


class CodeEnrolment(BaseModel):
    factor: FactorOut
    code_sent: bool


CODE_ENROL: dict[str, Any] = {
    "tag": "mfa",
    "body": CodeEnrol,
    "ok": CodeEnrolment,
    "status": 201,
    "cookie_only": True,
    "errors": (409, 429, 502),
}
"""What enrolling email and SMS codes share (two routes, one contract)."""


class Confirm(Model):
    code: Annotated[str, Field(min_length=1, max_length=64)]


class WebAuthnRegistration(Model):
    credential: dict[str, Any]
    """The object ``navigator.credentials.create()`` gave, as JSON."""
    label: Label = ""


class RecoveryCodes(BaseModel):
    recovery_codes: list[str]


def factor_view(f: MfaFactor) -> dict[str, Any]:
    return {
        "id": f.id,
        "kind": str(f.kind),
        "label": f.label,
        "confirmed": f.confirmed_at is not None,
        "created_at": f.created_at.isoformat(),
        "last_used_at": f.last_used_at.isoformat() if f.last_used_at else None,
        **({"destination": mask(f.destination)} if f.destination else {}),
        **(
            {"transports": f.transports, "attachment": f.attachment or None}
            if f.kind is FactorKind.WEBAUTHN
            else {}
        ),
    }


async def _may_manage(request: Request, row: BrowserSession, user: User) -> None:
    """Changing factors needs a recent MFA, unless this user has no factor at all yet."""
    services = services_of(request)
    if not await services.factors.list(row.workspace_id, user.id):
        return
    now = services.accounts.clock()
    if row.mfa_at is None or (now - row.mfa_at).total_seconds() > RECENT_MFA_SECONDS:
        raise Forbidden(
            f"verify a factor first (POST /api/v1/auth/step-up, within {RECENT_MFA_SECONDS} s)",
            step_up_required=True,
        )


async def _own_factor(request: Request, row: BrowserSession, user: User) -> MfaFactor:
    """The caller's factor by the path's id; someone else's answers like an unknown id
    (404, audited as ``api.not_found`` by the problem handler), never "not yours"."""
    factor_id = request.path_params["factor_id"]
    factor = await services_of(request).factors.get(row.workspace_id, factor_id)
    if factor.user_id != user.id:
        raise NotFound("mfafactor", factor_id)  # word for word the unknown id's answer
    return factor


@operation(summary="One's second factors", tag="mfa", ok=FactorList, cookie_only=True)
async def list_factors(request: Request) -> JSONResponse:
    services = services_of(request)
    row, user, _ = await browser_session(request, allow=MANAGE)
    factors = await services.factors.list(row.workspace_id, user.id, confirmed_only=False)
    left = await services.factors.recovery_codes_left(row.workspace_id, user.id)
    return JSONResponse({"factors": [factor_view(f) for f in factors], "recovery_codes_left": left})


@operation(
    summary="Start enrolling a TOTP app",
    tag="mfa",
    body=TotpEnrol,
    ok=TotpEnrolment,
    status=201,
    cookie_only=True,
    errors=(409,),
)
async def enrol_totp(request: Request) -> JSONResponse:
    identity = identity_of(request)
    row, user, _ = await browser_session(request, allow=MANAGE)
    await _may_manage(request, row, user)
    await not_hardware_only(request, row)
    label = (await body_of(request, TotpEnrol, allow_empty=True)).label
    enrolment = await identity.totp.enrol(
        row.workspace_id, user.id, label=label, actor=actor_of(row)
    )
    return JSONResponse(
        {
            "factor": factor_view(enrolment.factor),
            "secret": enrolment.secret,
            "otpauth_uri": enrolment.uri,
        },
        status_code=201,
    )


@operation(summary="Start enrolling email codes (a code is sent)", **CODE_ENROL)
async def enrol_email(request: Request) -> JSONResponse:
    return await _enrol_code(request, FactorKind.EMAIL)


@operation(summary="Start enrolling SMS codes (a code is sent)", **CODE_ENROL)
async def enrol_sms(request: Request) -> JSONResponse:
    return await _enrol_code(request, FactorKind.SMS)


async def _enrol_code(request: Request, kind: FactorKind) -> JSONResponse:
    identity = identity_of(request)
    row, user, _ = await browser_session(request, allow=MANAGE)
    await _may_manage(request, row, user)
    await not_hardware_only(request, row)
    phone = (await body_of(request, CodeEnrol, allow_empty=True)).phone
    if kind is FactorKind.SMS and not phone:
        raise BadRequest("phone must be a string of 1-32 characters", field="phone")
    factor = await identity.codes.enrol(
        row.workspace_id, user, kind, phone=phone, actor=actor_of(row)
    )
    return JSONResponse({"factor": factor_view(factor), "code_sent": True}, status_code=201)


@operation(
    summary="Confirm a new factor with its first code",
    tag="mfa",
    body=Confirm,
    ok=SessionAnswer,
    cookie_only=True,
    errors=(429,),
)
async def confirm_factor(request: Request) -> JSONResponse:
    """The first code of a TOTP/email/SMS factor; in ``enrol`` state it completes login."""
    services, identity = services_of(request), identity_of(request)
    row, user, secret = await browser_session(request, allow=MANAGE)
    code = (await body_of(request, Confirm)).code
    factor = await _own_factor(request, row, user)
    if factor.kind is FactorKind.TOTP:
        confirmed = await identity.totp.confirm(
            row.workspace_id, user.id, factor.id, code, actor=actor_of(row)
        )
        ok = confirmed is not None
    elif factor.kind in (FactorKind.EMAIL, FactorKind.SMS):
        ok = await identity.codes.verify(row.workspace_id, user.id, factor, code)
        if ok:
            await services.factors.confirm(row.workspace_id, factor.id, actor=actor_of(row))
    else:
        raise BadRequest("security keys are confirmed by their registration")
    if not ok:
        await identity.mfa.audit_failure(
            row.workspace_id,
            actor_of(row),
            str(factor.kind),
            "wrong code",
            client_source(request),
            "enrol",
        )
        raise BadRequest("the code is wrong or expired")
    return await _enrolled(request, row, user, secret, str(factor.kind))


async def _enrolled(
    request: Request, row: BrowserSession, user: User, secret: str, method: str
) -> JSONResponse:
    """A factor was just proven: count it as this session's MFA; first one gets codes."""
    services, identity = services_of(request), identity_of(request)
    extra: dict[str, Any] = {}
    if not await services.factors.recovery_codes_left(row.workspace_id, user.id):
        extra["recovery_codes"] = await identity.recovery.generate(
            row.workspace_id, user.id, actor=actor_of(row)
        )
    await services.accounts.record_mfa(row.workspace_id, user.id, method)
    row, secret = await identity.browser.mfa_done(row, method)
    return session_answer(request, row, secret, extra=extra)


@operation(
    summary="Options to register a security key",
    tag="mfa",
    ok=WebAuthnOptions,
    cookie_only=True,
)
async def webauthn_register_options(request: Request) -> JSONResponse:
    identity = identity_of(request)
    row, user, _ = await browser_session(request, allow=MANAGE)
    await _may_manage(request, row, user)
    return JSONResponse(await identity.webauthn.registration_options(row.workspace_id, user.id))


@operation(
    summary="Register a security key",
    tag="mfa",
    body=WebAuthnRegistration,
    ok=SessionAnswer,
    cookie_only=True,
)
async def webauthn_register(request: Request) -> JSONResponse:
    identity = identity_of(request)
    row, user, secret = await browser_session(request, allow=MANAGE)
    await _may_manage(request, row, user)
    asked = await body_of(request, WebAuthnRegistration)
    await identity.webauthn.register(
        row.workspace_id, user.id, asked.credential, label=asked.label, actor=actor_of(row)
    )
    return await _enrolled(request, row, user, secret, "webauthn")


@operation(summary="Remove a factor", tag="mfa", status=204, cookie_only=True, errors=(409,))
async def remove_factor(request: Request) -> Response:
    services = services_of(request)
    row, user, _ = await browser_session(request, allow=ACTIVE)
    await _may_manage(request, row, user)
    factor = await _own_factor(request, row, user)
    workspace = await services.workspaces.get(row.workspace_id)
    others = [
        f
        for f in await services.factors.list(row.workspace_id, user.id)
        if f.id != factor.id and (not workspace.mfa_hardware_only or f.kind is FactorKind.WEBAUTHN)
    ]
    if workspace.mfa_required and not others:
        raise Conflict("this workspace requires MFA: enrol another factor before removing this")
    await services.factors.remove(row.workspace_id, factor.id, actor=actor_of(row))
    return Response(status_code=204)


@operation(
    summary="New recovery codes (the old ones stop working)",
    tag="mfa",
    ok=RecoveryCodes,
    status=201,
    cookie_only=True,
)
async def new_recovery_codes(request: Request) -> JSONResponse:
    identity = identity_of(request)
    row, user, _ = await browser_session(request, allow=ACTIVE)
    await _may_manage(request, row, user)
    codes = await identity.recovery.generate(row.workspace_id, user.id, actor=actor_of(row))
    return JSONResponse({"recovery_codes": codes}, status_code=201)
