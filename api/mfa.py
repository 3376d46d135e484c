"""MFA routes for browser sessions: enrol, list and remove factors, verify at login, and
step-up. Only a cookie session reaches them (a bearer token cannot add or remove a factor).

Who may do what:
- ``mfa-pending``: send a code, get WebAuthn options, verify → ``active``.
- ``enrol`` (workspace requires MFA, user has none): enrol and confirm a first factor →
  ``active`` (that confirmation is the MFA), recovery codes are shown once.
- ``active``: step-up; adding a factor, removing one or new recovery codes need an MFA in
  this session within the last ``RECENT_MFA_SECONDS`` (unless the user has no factor yet).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from api.auth import browser_session, client_source, identity_of
from api.identity import SessionAnswer, session_answer
from api.problems import BadRequest, Forbidden
from api.spec import Model, body_of, operation
from api.state import services_of
from broker.audit import Actor
from broker.errors import Conflict, NotFound
from broker.store.models import BrowserSession, BrowserSessionState, FactorKind, MfaFactor, User

__all__ = ["RECENT_MFA_SECONDS", "mfa_routes"]

RECENT_MFA_SECONDS = 300
PENDING = (BrowserSessionState.MFA_PENDING,)
ACTIVE = (BrowserSessionState.ACTIVE,)
MANAGE = (BrowserSessionState.ACTIVE, BrowserSessionState.ENROL)

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


class WebAuthnOptions(BaseModel):
    """The WebAuthn options JSON for ``navigator.credentials.create()`` or ``.get()``
    (W3C Web Authentication, level 2); more members than these are present."""

    model_config = ConfigDict(extra="allow")

    challenge: str


class WebAuthnRegistration(Model):
    credential: dict[str, Any]
    """The object ``navigator.credentials.create()`` gave, as JSON."""
    label: Label = ""


class RecoveryCodes(BaseModel):
    recovery_codes: list[str]


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


def _actor(row: BrowserSession) -> Actor:
    return Actor("user", row.user_id, row.id)


def factor_view(f: MfaFactor) -> dict[str, Any]:
    return {
        "id": f.id,
        "kind": str(f.kind),
        "label": f.label,
        "confirmed": f.confirmed_at is not None,
        "created_at": f.created_at.isoformat(),
        "last_used_at": f.last_used_at.isoformat() if f.last_used_at else None,
        **({"destination": _mask(f.destination)} if f.destination else {}),
        **(
            {"transports": f.transports, "attachment": f.attachment or None}
            if f.kind is FactorKind.WEBAUTHN
            else {}
        ),
    }


def _mask(destination: str) -> str:
    if "@" in destination:
        name, _, domain = destination.partition("@")
        return f"{name[:1]}***@{domain}"
    return "*" * max(0, len(destination) - 4) + destination[-4:]


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


async def _not_hardware_only(request: Request, row: BrowserSession) -> None:
    if await identity_of(request).mfa.hardware_only(row.workspace_id):
        raise Conflict("this workspace accepts only security keys (WebAuthn)")


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
    await _not_hardware_only(request, row)
    label = (await body_of(request, TotpEnrol, allow_empty=True)).label
    enrolment = await identity.totp.enrol(row.workspace_id, user.id, label=label, actor=_actor(row))
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
    await _not_hardware_only(request, row)
    phone = (await body_of(request, CodeEnrol, allow_empty=True)).phone
    if kind is FactorKind.SMS and not phone:
        raise BadRequest("phone must be a string of 1-32 characters", field="phone")
    factor = await identity.codes.enrol(
        row.workspace_id, user, kind, phone=phone, actor=_actor(row)
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
            row.workspace_id, user.id, factor.id, code, actor=_actor(row)
        )
        ok = confirmed is not None
    elif factor.kind in (FactorKind.EMAIL, FactorKind.SMS):
        ok = await identity.codes.verify(row.workspace_id, user.id, factor, code)
        if ok:
            await services.factors.confirm(row.workspace_id, factor.id, actor=_actor(row))
    else:
        raise BadRequest("security keys are confirmed by their registration")
    if not ok:
        await identity.mfa.audit_failure(
            row.workspace_id,
            _actor(row),
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
            row.workspace_id, user.id, actor=_actor(row)
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
        row.workspace_id, user.id, asked.credential, label=asked.label, actor=_actor(row)
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
    await services.factors.remove(row.workspace_id, factor.id, actor=_actor(row))
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
    codes = await identity.recovery.generate(row.workspace_id, user.id, actor=_actor(row))
    return JSONResponse({"recovery_codes": codes}, status_code=201)


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
    await _not_hardware_only(request, row)
    factor = await identity.mfa.code_factor(
        row.workspace_id, user.id, FactorKind(asked.method), asked.factor_id
    )
    await identity.codes.send(row.workspace_id, user.id, factor)
    return JSONResponse({"sent": True, "to": _mask(factor.destination)})


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


def mfa_routes() -> list[BaseRoute]:
    base = "/api/v1/auth/mfa"
    return [
        Route(f"{base}/factors", list_factors, methods=["GET"]),
        Route(f"{base}/totp", enrol_totp, methods=["POST"]),
        Route(f"{base}/email", enrol_email, methods=["POST"]),
        Route(f"{base}/sms", enrol_sms, methods=["POST"]),
        Route(f"{base}/factors/{{factor_id:str}}/confirm", confirm_factor, methods=["POST"]),
        Route(f"{base}/factors/{{factor_id:str}}", remove_factor, methods=["DELETE"]),
        Route(f"{base}/webauthn/register/options", webauthn_register_options, methods=["POST"]),
        Route(f"{base}/webauthn/register", webauthn_register, methods=["POST"]),
        Route(f"{base}/webauthn/options", webauthn_options, methods=["POST"]),
        Route(f"{base}/recovery-codes", new_recovery_codes, methods=["POST"]),
        Route(f"{base}/send", send_code, methods=["POST"]),
        Route(f"{base}/verify", verify, methods=["POST"]),
        Route("/api/v1/auth/step-up", step_up, methods=["POST"]),
    ]
