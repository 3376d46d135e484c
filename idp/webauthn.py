"""WebAuthn (security keys, platform authenticators) registration and authentication.

The ``webauthn`` package checks the ceremonies (challenge, origin, RP id hash, flags,
signature, attestation format); this module keeps the state around them: the challenge is
stored server-side per user and purpose and consumed once, credentials keep their public
key, signature counter, transports and attachment. A counter that does not move forward
(a cloned authenticator) is refused. ``require_user_verification`` makes the UV flag
mandatory (PIN or biometric), not just preferred.
"""

from __future__ import annotations

import base64
import json
from typing import Any

from webauthn import (
    generate_authentication_options,
    generate_registration_options,
    options_to_json,
    verify_authentication_response,
    verify_registration_response,
)
from webauthn.helpers import bytes_to_base64url, parse_registration_credential_json
from webauthn.helpers.exceptions import WebAuthnException
from webauthn.helpers.structs import (
    AuthenticatorSelectionCriteria,
    AuthenticatorTransport,
    PublicKeyCredentialDescriptor,
    ResidentKeyRequirement,
    UserVerificationRequirement,
)

from broker.audit import Actor, Category, Outcome
from broker.errors import AuthenticationFailed, InvalidInput
from broker.services import Services
from broker.store.models import FactorKind, MfaFactor

__all__ = ["WebAuthn"]

REGISTER = "webauthn-register"
AUTHENTICATE = "webauthn-authenticate"
CHALLENGE_SECONDS = 300


def _b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _credential_id(credential: dict[str, Any]) -> str:
    raw = credential.get("rawId") or credential.get("id")
    if not isinstance(raw, str) or not 1 <= len(raw) <= 1400:
        raise InvalidInput("credential.id must be a base64url string")
    return raw


class WebAuthn:
    def __init__(
        self,
        services: Services,
        *,
        rp_id: str,
        origin: str,
        rp_name: str = "Corral",
        require_user_verification: bool = False,
    ) -> None:
        self.services = services
        self.rp_id, self.origin, self.rp_name = rp_id, origin, rp_name
        self.require_uv = require_user_verification
        self._uv = (
            UserVerificationRequirement.REQUIRED
            if require_user_verification
            else UserVerificationRequirement.PREFERRED
        )

    async def _factors(self, workspace_id: str, user_id: str) -> list[MfaFactor]:
        factors = await self.services.factors.list(workspace_id, user_id)
        return [f for f in factors if f.kind is FactorKind.WEBAUTHN and f.credential_id]

    def _descriptors(self, factors: list[MfaFactor]) -> list[PublicKeyCredentialDescriptor]:
        out = []
        for f in factors:
            transports = [AuthenticatorTransport(t) for t in f.transports if t in _TRANSPORTS]
            out.append(
                PublicKeyCredentialDescriptor(
                    id=_b64url_decode(f.credential_id or ""), transports=transports or None
                )
            )
        return out

    async def registration_options(self, workspace_id: str, user_id: str) -> dict[str, Any]:
        """Options for ``navigator.credentials.create()``; the challenge is kept for 5 min."""
        user = await self.services.users.get(workspace_id, user_id)
        options = generate_registration_options(
            rp_id=self.rp_id,
            rp_name=self.rp_name,
            user_name=user.email,
            user_id=user.id.encode(),
            user_display_name=user.display_name or user.email,
            authenticator_selection=AuthenticatorSelectionCriteria(
                resident_key=ResidentKeyRequirement.DISCOURAGED, user_verification=self._uv
            ),
            exclude_credentials=self._descriptors(await self._factors(workspace_id, user_id)),
        )
        await self.services.factors.open_challenge(
            workspace_id,
            user_id,
            purpose=REGISTER,
            ttl_seconds=CHALLENGE_SECONDS,
            challenge=bytes_to_base64url(options.challenge),
        )
        result: dict[str, Any] = _json(options_to_json(options))
        return result

    async def register(
        self,
        workspace_id: str,
        user_id: str,
        credential: dict[str, Any],
        *,
        label: str = "",
        actor: Actor,
    ) -> MfaFactor:
        """Check an attestation against the live challenge and store the credential.

        A refusal is audited (``mfa.enrol_failed``) before it is raised.
        """
        try:
            challenge = await self._take(workspace_id, user_id, REGISTER)
            try:
                parsed = parse_registration_credential_json(credential)
                verified = verify_registration_response(
                    credential=parsed,
                    expected_challenge=challenge,
                    expected_rp_id=self.rp_id,
                    expected_origin=self.origin,
                    require_user_verification=self.require_uv,
                )
            except WebAuthnException as exc:
                raise AuthenticationFailed(f"security key registration refused: {exc}") from None
        except AuthenticationFailed as exc:
            await self.services.audit.emit(
                workspace_id,
                Category.AUTHENTICATION,
                "mfa.enrol_failed",
                outcome=Outcome.DENIED,
                actor=actor,
                target=user_id,
                details={"kind": "webauthn", "reason": str(exc)[:200]},
            )
            raise
        attachment = parsed.authenticator_attachment
        return await self.services.factors.add(
            workspace_id,
            user_id,
            FactorKind.WEBAUTHN,
            label=label or "security key",
            confirmed=True,
            actor=actor,
            credential_id=bytes_to_base64url(verified.credential_id),
            public_key=bytes_to_base64url(verified.credential_public_key),
            sign_count=verified.sign_count,
            transports=[str(t.value) for t in parsed.response.transports or []],
            attachment=str(attachment.value) if attachment is not None else "",
            aaguid=verified.aaguid,
            user_verified=verified.user_verified,
        )

    async def authentication_options(self, workspace_id: str, user_id: str) -> dict[str, Any]:
        factors = await self._factors(workspace_id, user_id)
        if not factors:
            raise InvalidInput("no security key is enrolled")
        options = generate_authentication_options(
            rp_id=self.rp_id,
            allow_credentials=self._descriptors(factors),
            user_verification=self._uv,
        )
        await self.services.factors.open_challenge(
            workspace_id,
            user_id,
            purpose=AUTHENTICATE,
            ttl_seconds=CHALLENGE_SECONDS,
            challenge=bytes_to_base64url(options.challenge),
        )
        result: dict[str, Any] = _json(options_to_json(options))
        return result

    async def authenticate(
        self, workspace_id: str, user_id: str, credential: dict[str, Any]
    ) -> MfaFactor:
        """The user's credential that signed the live challenge, or AuthenticationFailed."""
        challenge = await self._take(workspace_id, user_id, AUTHENTICATE)
        factor = await self.services.factors.find_credential(
            workspace_id, _credential_id(credential)
        )
        if factor is None or factor.user_id != user_id or factor.confirmed_at is None:
            raise AuthenticationFailed("unknown security key")
        try:
            verified = verify_authentication_response(
                credential=credential,
                expected_challenge=challenge,
                expected_rp_id=self.rp_id,
                expected_origin=self.origin,
                credential_public_key=_b64url_decode(factor.public_key),
                credential_current_sign_count=factor.sign_count,
                require_user_verification=self.require_uv,
            )
        except WebAuthnException as exc:
            raise AuthenticationFailed(f"security key refused: {exc}") from None
        if not await self.services.factors.use_webauthn(
            workspace_id, factor.id, verified.new_sign_count
        ):
            raise AuthenticationFailed("security key refused: signature counter went backwards")
        return factor

    async def _take(self, workspace_id: str, user_id: str, purpose: str) -> bytes:
        """Consume the live challenge of this purpose (once), or refuse."""
        row = await self.services.factors.current_challenge(workspace_id, user_id, purpose)
        if row is None or not await self.services.factors.attempt_challenge(
            workspace_id, row.id, matched=True, max_attempts=1
        ):
            raise AuthenticationFailed("no live security-key challenge; start again")
        return _b64url_decode(row.challenge)


_TRANSPORTS = {t.value for t in AuthenticatorTransport}


def _json(text: str) -> dict[str, Any]:
    value: dict[str, Any] = json.loads(text)
    return value
