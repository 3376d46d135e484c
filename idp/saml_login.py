"""SAML sign-in around the protocol core: the pending request, replay refusal, audit and the
just-in-time user.

Between the redirect to the IdP and the POST back to our ACS the broker keeps *what it asked
for* in a short-lived cookie signed with a broker subkey (provider, AuthnRequest id,
RelayState, where to go afterwards, expiry). Nothing is stored server-side for a login that
is never finished, and the cookie binds the response to the browser that started the login:
a response captured elsewhere, or pushed into a victim's browser (login CSRF), does not
answer *that* browser's AuthnRequest. The cookie is ``SameSite=None`` because the IdP's
form post is a cross-site navigation, ``HttpOnly``, ``Secure`` and scoped to the
provider's SAML paths.

Once the response verified, its assertion id and then the AuthnRequest id are claimed in the
replay store (``services.sso.claim_once``) until the assertion's NotOnOrAfter plus skew, so
the same response or a second answer to one request is refused even on another broker.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING

from broker.errors import AuthenticationFailed
from broker.services import Services
from broker.services.sso import SsoAssertion
from broker.store.models import SsoProvider, User
from idp.secretbox import derive_key

if TYPE_CHECKING:
    from idp.saml import SamlSp

__all__ = [
    "MAX_RESPONSE_BYTES",
    "PENDING_COOKIE",
    "PENDING_SECONDS",
    "Pending",
    "SamlLogins",
    "cookie_path",
]

PENDING_COOKIE = "corral_sso_saml"
PENDING_SECONDS = 600
MAX_RESPONSE_BYTES = 512 * 1024
"""The largest base64 ``SAMLResponse`` the ACS reads."""


def cookie_path(provider_id: str) -> str:
    """The pending cookie is sent only to this provider's SAML routes (logins through two
    providers in one browser do not overwrite each other)."""
    return f"/api/v1/sso/saml/{provider_id}/"


@dataclass(frozen=True)
class Pending:
    """One AuthnRequest this broker issued, as the signed cookie carries it."""

    provider_id: str
    request_id: str
    relay_state: str
    return_to: str
    expires: int


class SamlLogins:
    """SAML logins for every workspace's SAML providers, over one broker key."""

    def __init__(self, services: Services, broker_key: bytes, *, public_url: str) -> None:
        self.services = services
        self.public_url = public_url.rstrip("/")
        self._key = derive_key(broker_key, "corral saml pending")

    def sp(self, provider: SsoProvider) -> SamlSp:
        """The protocol core for ``provider``. Imported here, not with the broker: the
        ``xmlsec`` bindings refuse to load when their libxml2 differs from lxml's, and that
        must cost SAML sign-in (refused, audited), not every other route."""
        try:
            from idp.saml import SamlSp
        except Exception as exc:  # xmlsec.InternalError, ImportError, ...
            reason = f"SAML support unavailable: {type(exc).__name__}: {exc}"
            raise AuthenticationFailed(reason[:200]) from None
        return SamlSp(provider, self.public_url, clock=self.services.sso.clock)

    async def begin(
        self, provider: SsoProvider, return_to: str, *, source: str = ""
    ) -> tuple[str, str]:
        """The IdP redirect URL and the signed pending-request cookie value."""
        relay_state = secrets.token_urlsafe(24)
        try:
            url, request_id = self.sp(provider).authn_request(relay_state)
        except AuthenticationFailed as exc:
            raise await self.services.sso.refuse(provider, str(exc), source=source) from None
        expires = int(self.services.sso.clock().timestamp()) + PENDING_SECONDS
        pending = Pending(provider.id, request_id, relay_state, return_to, expires)
        return url, self.seal(pending)

    async def finish(
        self,
        provider: SsoProvider,
        saml_response: str,
        relay_state: str,
        cookie: str,
        *,
        source: str = "",
    ) -> tuple[User, Pending]:
        """Verify the posted response against the pending request; the signed-in user.
        Every refusal is audited (``sso.refused``) with its reason."""
        try:
            pending = self._pending_for(provider, cookie, relay_state)
            identity = self.sp(provider).verify(saml_response, pending.request_id)
        except AuthenticationFailed as exc:
            raise await self.services.sso.refuse(provider, str(exc), source=source) from None
        until = identity.expires_at
        if not await self.services.sso.claim_once(
            provider, f"saml-assertion:{identity.assertion_id}", until
        ):
            raise await self.services.sso.refuse(
                provider,
                "assertion already used (replay)",
                source=source,
                assertion_id=identity.assertion_id[:100],
            )
        # The cookie outlives nothing, but its request must be answered once only.
        request_until = max(until, self.services.sso.clock() + timedelta(seconds=PENDING_SECONDS))
        if not await self.services.sso.claim_once(
            provider, f"saml-request:{pending.request_id}", request_until
        ):
            raise await self.services.sso.refuse(
                provider, "this sign-in request was already answered", source=source
            )
        assertion = SsoAssertion(
            subject=identity.subject,
            email=identity.email,
            display_name=identity.display_name,
            groups=identity.groups,
            details=identity.details,
        )
        user = await self.services.sso.sign_in(provider, assertion, source=source)
        return user, pending

    def _pending_for(self, provider: SsoProvider, cookie: str, relay_state: str) -> Pending:
        if not cookie:
            raise AuthenticationFailed("no sign-in pending in this browser (cookie missing)")
        pending = self.open(cookie)
        if pending is None:
            raise AuthenticationFailed("pending sign-in cookie is not ours (bad signature)")
        if pending.provider_id != provider.id:
            raise AuthenticationFailed("the pending sign-in was for another provider")
        if pending.expires <= self.services.sso.clock().timestamp():
            raise AuthenticationFailed("the pending sign-in expired")
        if not hmac.compare_digest(relay_state.encode(), pending.relay_state.encode()):
            raise AuthenticationFailed("RelayState does not match the pending sign-in")
        return pending

    # -- the cookie ---------------------------------------------------------------------------

    def seal(self, pending: Pending) -> str:
        body = json.dumps(
            [
                pending.provider_id,
                pending.request_id,
                pending.relay_state,
                pending.return_to,
                pending.expires,
            ],
            separators=(",", ":"),
        ).encode()
        payload = base64.urlsafe_b64encode(body).decode().rstrip("=")
        return f"{payload}.{self._mac(payload)}"

    def open(self, cookie: str) -> Pending | None:
        payload, _, mac = cookie.partition(".")
        if not hmac.compare_digest(mac.encode(), self._mac(payload).encode()):
            return None
        try:
            raw = base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
            provider_id, request_id, relay_state, return_to, expires = json.loads(raw)
        except (ValueError, TypeError):
            return None
        return Pending(
            str(provider_id), str(request_id), str(relay_state), str(return_to), int(expires)
        )

    def _mac(self, payload: str) -> str:
        return hmac.new(self._key, payload.encode(), hashlib.sha256).hexdigest()
