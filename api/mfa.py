"""MFA routes for browser sessions: enrol, list and remove factors, verify at login, and
step-up. Only a cookie session reaches them (a bearer token cannot add or remove a factor).

Who may do what:
- ``mfa-pending``: send a code, get WebAuthn options, verify → ``active``.
- ``enrol`` (workspace requires MFA, user has none): enrol and confirm a first factor →
  ``active`` (that confirmation is the MFA), recovery codes are shown once.
- ``active``: step-up; adding a factor, removing one or new recovery codes need an MFA in
  this session within the last ``RECENT_MFA_SECONDS`` (unless the user has no factor yet).

This module only registers the routes, in one list; the handlers are
:mod:`api.mfa_factors` (managing factors, recovery codes) and :mod:`api.mfa_verify`
(proving one), their shared rules :mod:`api.mfa_common`. It must never hold a handler.
"""

from __future__ import annotations

from starlette.routing import BaseRoute, Route

from api.mfa_factors import (
    confirm_factor,
    enrol_email,
    enrol_sms,
    enrol_totp,
    list_factors,
    new_recovery_codes,
    remove_factor,
    webauthn_register,
    webauthn_register_options,
)
from api.mfa_verify import send_code, step_up, verify, webauthn_options

__all__ = ["mfa_routes"]


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
