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

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from api.auth import browser_session, client_source, identity_of
from api.bodies import json_object
from api.identity import session_answer, text_field
from api.problems import BadRequest, Forbidden
from api.state import services_of
from broker.audit import Actor
from broker.errors import Conflict
from broker.store.models import BrowserSession, BrowserSessionState, FactorKind, MfaFactor, User

__all__ = ["RECENT_MFA_SECONDS", "mfa_routes"]

RECENT_MFA_SECONDS = 300
PENDING = (BrowserSessionState.MFA_PENDING,)
ACTIVE = (BrowserSessionState.ACTIVE,)
MANAGE = (BrowserSessionState.ACTIVE, BrowserSessionState.ENROL)
CODE_METHODS = ("email", "sms")


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


async def _not_hardware_only(request: Request, row: BrowserSession) -> None:
    if await identity_of(request).mfa.hardware_only(row.workspace_id):
        raise Conflict("this workspace accepts only security keys (WebAuthn)")


async def list_factors(request: Request) -> JSONResponse:
    services = services_of(request)
    row, user, _ = await browser_session(request, allow=MANAGE)
    factors = await services.factors.list(row.workspace_id, user.id, confirmed_only=False)
    left = await services.factors.recovery_codes_left(row.workspace_id, user.id)
    return JSONResponse({"factors": [factor_view(f) for f in factors], "recovery_codes_left": left})


async def enrol_totp(request: Request) -> JSONResponse:
    identity = identity_of(request)
    row, user, _ = await browser_session(request, allow=MANAGE)
    await _may_manage(request, row, user)
    await _not_hardware_only(request, row)
    data = await json_object(request, allow_empty=True)
    label = text_field(data, "label", required=False, limit=100)
    enrolment = await identity.totp.enrol(row.workspace_id, user.id, label=label, actor=_actor(row))
    return JSONResponse(
        {
            "factor": factor_view(enrolment.factor),
            "secret": enrolment.secret,
            "otpauth_uri": enrolment.uri,
        },
        status_code=201,
    )


async def enrol_code(request: Request) -> JSONResponse:
    identity = identity_of(request)
    kind = FactorKind.SMS if request.url.path.endswith("/sms") else FactorKind.EMAIL
    row, user, _ = await browser_session(request, allow=MANAGE)
    await _may_manage(request, row, user)
    await _not_hardware_only(request, row)
    data = await json_object(request, allow_empty=True)
    phone = text_field(data, "phone", required=kind is FactorKind.SMS, limit=32)
    factor = await identity.codes.enrol(
        row.workspace_id, user, kind, phone=phone, actor=_actor(row)
    )
    return JSONResponse({"factor": factor_view(factor), "code_sent": True}, status_code=201)


async def confirm_factor(request: Request) -> JSONResponse:
    """The first code of a TOTP/email/SMS factor; in ``enrol`` state it completes login."""
    services, identity = services_of(request), identity_of(request)
    row, user, secret = await browser_session(request, allow=MANAGE)
    data = await json_object(request)
    code = text_field(data, "code", limit=64)
    factor = await services.factors.get(row.workspace_id, request.path_params["factor_id"])
    if factor.user_id != user.id:
        raise Forbidden("not your factor")
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


async def webauthn_register_options(request: Request) -> JSONResponse:
    identity = identity_of(request)
    row, user, _ = await browser_session(request, allow=MANAGE)
    await _may_manage(request, row, user)
    return JSONResponse(await identity.webauthn.registration_options(row.workspace_id, user.id))


async def webauthn_register(request: Request) -> JSONResponse:
    identity = identity_of(request)
    row, user, secret = await browser_session(request, allow=MANAGE)
    await _may_manage(request, row, user)
    data = await json_object(request)
    credential = data.get("credential")
    if not isinstance(credential, dict):
        raise BadRequest("credential must be the object navigator.credentials.create() gave")
    label = text_field(data, "label", required=False, limit=100)
    await identity.webauthn.register(
        row.workspace_id, user.id, credential, label=label, actor=_actor(row)
    )
    return await _enrolled(request, row, user, secret, "webauthn")


async def remove_factor(request: Request) -> Response:
    services = services_of(request)
    row, user, _ = await browser_session(request, allow=ACTIVE)
    await _may_manage(request, row, user)
    factor = await services.factors.get(row.workspace_id, request.path_params["factor_id"])
    if factor.user_id != user.id:
        raise Forbidden("not your factor")
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


async def new_recovery_codes(request: Request) -> JSONResponse:
    identity = identity_of(request)
    row, user, _ = await browser_session(request, allow=ACTIVE)
    await _may_manage(request, row, user)
    codes = await identity.recovery.generate(row.workspace_id, user.id, actor=_actor(row))
    return JSONResponse({"recovery_codes": codes}, status_code=201)


async def send_code(request: Request) -> JSONResponse:
    identity = identity_of(request)
    row, user, _ = await browser_session(request, allow=(*PENDING, *ACTIVE))
    data = await json_object(request)
    method = data.get("method")
    if method not in CODE_METHODS:
        raise BadRequest("method must be email or sms")
    await _not_hardware_only(request, row)
    factor_id = data.get("factor_id")
    if factor_id is not None and not isinstance(factor_id, str):
        raise BadRequest("factor_id must be a string")
    factor = await identity.mfa.code_factor(
        row.workspace_id, user.id, FactorKind(method), factor_id
    )
    await identity.codes.send(row.workspace_id, user.id, factor)
    return JSONResponse({"sent": True, "to": _mask(factor.destination)})


async def webauthn_options(request: Request) -> JSONResponse:
    identity = identity_of(request)
    row, user, _ = await browser_session(request, allow=(*PENDING, *ACTIVE))
    return JSONResponse(await identity.webauthn.authentication_options(row.workspace_id, user.id))


async def _verify(
    request: Request, allow: tuple[BrowserSessionState, ...], purpose: str
) -> JSONResponse:
    identity = identity_of(request)
    row, user, _ = await browser_session(request, allow=allow)
    data = await json_object(request)
    method = data.get("method")
    if not isinstance(method, str):
        raise BadRequest("method must be one of totp, recovery, email, sms, webauthn")
    code = data.get("code", "")
    factor_id = data.get("factor_id")
    credential = data.get("credential")
    if not isinstance(code, str) or (factor_id is not None and not isinstance(factor_id, str)):
        raise BadRequest("code and factor_id must be strings")
    used = await identity.mfa.verify(
        row.workspace_id,
        user.id,
        method,
        code=code,
        factor_id=factor_id,
        credential=credential if isinstance(credential, dict) else None,
        source=client_source(request),
        session_id=row.id,
        purpose=purpose,
    )
    row, secret = await identity.browser.mfa_done(row, used)
    extra = {}
    if used == "recovery":
        extra["recovery_codes_left"] = await identity.recovery.remaining(row.workspace_id, user.id)
    return session_answer(request, row, secret, extra=extra)


async def verify(request: Request) -> JSONResponse:
    return await _verify(request, PENDING, "login")


async def step_up(request: Request) -> JSONResponse:
    return await _verify(request, ACTIVE, "step-up")


def mfa_routes() -> list[BaseRoute]:
    base = "/api/v1/auth/mfa"
    return [
        Route(f"{base}/factors", list_factors, methods=["GET"]),
        Route(f"{base}/totp", enrol_totp, methods=["POST"]),
        Route(f"{base}/email", enrol_code, methods=["POST"]),
        Route(f"{base}/sms", enrol_code, methods=["POST"]),
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
