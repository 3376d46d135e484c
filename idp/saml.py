"""SAML 2.0 service provider: the protocol core (python3-saml over xmlsec).

One :class:`SamlSp` per identity provider row. It builds python3-saml's settings from the
row's non-secret ``config`` (the IdP's metadata XML, or its entity id, SSO URL and signing
certificate) and the broker's public URL, always in *strict* mode:

- the assertion must be signed (``wantAssertionsSigned``), the whole response may be required
  signed too (``want_messages_signed``); SHA-1 signatures and digests are refused
  (``rejectDeprecatedAlgorithm``), our own requests declare SHA-256;
- the response must answer the AuthnRequest this broker issued (``InResponseTo``), be
  addressed to our ACS (``Destination``, ``Recipient``) and our entity id (``Audience``),
  come from the configured issuer, and hold exactly one assertion (python3-saml also
  resolves the signed element by its reference, which defeats signature wrapping);
- its validity window is checked again here against the broker's clock with the provider's
  own bounded skew (``max_clock_skew_seconds``, default 120, at most 300 -- python3-saml's
  fixed allowance, which therefore never widens ours).

Any failure is :class:`AuthenticationFailed` with a short reason safe to audit: never the
XML, a NameID or an attribute value.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from cryptography import x509
from onelogin.saml2.auth import OneLogin_Saml2_Auth
from onelogin.saml2.constants import OneLogin_Saml2_Constants as C
from onelogin.saml2.errors import OneLogin_Saml2_Error
from onelogin.saml2.idp_metadata_parser import OneLogin_Saml2_IdPMetadataParser
from onelogin.saml2.response import OneLogin_Saml2_Response
from onelogin.saml2.settings import OneLogin_Saml2_Settings
from onelogin.saml2.utils import OneLogin_Saml2_Utils

from broker.errors import AuthenticationFailed, InvalidInput
from broker.store.models import SsoProvider, utcnow
from idp.saml_login import MAX_RESPONSE_BYTES

__all__ = [
    "MAX_SKEW_SECONDS",
    "SamlConfig",
    "SamlIdentity",
    "SamlSp",
    "sp_urls",
]

MAX_SKEW_SECONDS = 300
"""python3-saml tolerates 300 s on ``Conditions`` by itself; ours may only be tighter."""
REASON_LIMIT = 200
TRANSIENT = "urn:oasis:names:tc:SAML:2.0:nameid-format:transient"
EMAIL = "urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress"
UNSPECIFIED = "urn:oasis:names:tc:SAML:1.1:nameid-format:unspecified"

_TEXT_KEYS = {
    "idp_metadata_xml": 1024 * 1024,
    "idp_entity_id": 1024,
    "idp_sso_url": 2048,
    "idp_x509_cert": 64 * 1024,
    "email_attribute": 200,
    "name_attribute": 200,
    "groups_attribute": 200,
    "name_id_format": 200,
}
_KNOWN_KEYS = {*_TEXT_KEYS, "max_clock_skew_seconds", "want_messages_signed"}


@dataclass(frozen=True)
class SamlConfig:
    """A SAML provider's ``config``, checked. Built by :meth:`parse`, which the admin routes
    call before storing a config so that a bad one is a 400 rather than a failed login."""

    idp_entity_id: str
    idp_sso_url: str
    idp_certs: tuple[str, ...]
    email_attribute: str = "email"
    name_attribute: str = "displayName"
    groups_attribute: str = "groups"
    name_id_format: str = UNSPECIFIED
    max_clock_skew_seconds: int = 120
    want_messages_signed: bool = False

    @classmethod
    def parse(cls, config: Mapping[str, Any]) -> SamlConfig:
        unknown = set(config) - _KNOWN_KEYS
        if unknown:
            raise InvalidInput(f"unknown SAML setting(s): {', '.join(sorted(unknown))}")
        for key, limit in _TEXT_KEYS.items():
            value = config.get(key, "")
            if not isinstance(value, str) or len(value) > limit:
                raise InvalidInput(f"SAML setting {key} must be a string of at most {limit}")
        skew = config.get("max_clock_skew_seconds", 120)
        if isinstance(skew, bool) or not isinstance(skew, int) or not 0 <= skew <= 300:
            raise InvalidInput("max_clock_skew_seconds must be an integer from 0 to 300")
        signed = config.get("want_messages_signed", False)
        if not isinstance(signed, bool):
            raise InvalidInput("want_messages_signed must be true or false")
        entity, sso, certs = _idp_of(config)
        if urlsplit(sso).scheme not in {"https", "http"}:
            raise InvalidInput("the IdP's single sign-on URL must be an http(s) URL")
        for cert in certs:
            _check_cert(cert)
        return cls(
            idp_entity_id=entity,
            idp_sso_url=sso,
            idp_certs=certs,
            email_attribute=config.get("email_attribute") or "email",
            name_attribute=config.get("name_attribute") or "displayName",
            groups_attribute=config.get("groups_attribute") or "groups",
            name_id_format=config.get("name_id_format") or UNSPECIFIED,
            max_clock_skew_seconds=skew,
            want_messages_signed=signed,
        )


def _idp_of(config: Mapping[str, Any]) -> tuple[str, str, tuple[str, ...]]:
    """The IdP's entity id, HTTP-Redirect SSO URL and signing certificates."""
    xml = config.get("idp_metadata_xml", "")
    if xml:
        try:
            parsed = OneLogin_Saml2_IdPMetadataParser.parse(xml)
        except Exception:  # the parser raises bare Exceptions and lxml errors alike
            raise InvalidInput("idp_metadata_xml is not readable SAML metadata") from None
        idp: dict[str, Any] = parsed.get("idp", {})
        multi = idp.get("x509certMulti", {}).get("signing", [])
        certs = tuple(multi) or ((idp["x509cert"],) if idp.get("x509cert") else ())
        entity = str(idp.get("entityId", ""))
        sso = str(idp.get("singleSignOnService", {}).get("url", ""))
        if not entity or not sso or not certs:
            raise InvalidInput(
                "idp_metadata_xml must name the IdP's entity id, an HTTP-Redirect single "
                "sign-on service and a signing certificate"
            )
        return entity, sso, certs
    entity = config.get("idp_entity_id", "")
    sso = config.get("idp_sso_url", "")
    cert = config.get("idp_x509_cert", "")
    if not (entity and sso and cert):
        raise InvalidInput(
            "a SAML provider needs idp_metadata_xml, or idp_entity_id, idp_sso_url and "
            "idp_x509_cert"
        )
    return entity, sso, (OneLogin_Saml2_Utils.format_cert(cert, heads=False),)


def _check_cert(cert: str) -> None:
    """A signing certificate that is not X.509 would only fail later, at every login."""
    try:
        x509.load_der_x509_certificate(base64.b64decode("".join(cert.split()), validate=True))
    except (binascii.Error, ValueError):
        raise InvalidInput("the IdP's signing certificate is not an X.509 certificate") from None


def sp_urls(public_url: str, provider_id: str) -> tuple[str, str]:
    """Our entity id (which is also where our metadata is published) and our ACS URL."""
    base = f"{public_url.rstrip('/')}/api/v1/sso/saml/{provider_id}"
    return f"{base}/metadata", f"{base}/acs"


@dataclass(frozen=True)
class SamlIdentity:
    """What a verified response says, plus the facts the replay store needs."""

    subject: str
    email: str
    display_name: str
    groups: tuple[str, ...]
    assertion_id: str
    expires_at: datetime
    details: dict[str, Any] = field(default_factory=dict)


class SamlSp:
    """This broker as the service provider of one SAML identity provider."""

    def __init__(
        self,
        provider: SsoProvider,
        public_url: str,
        *,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.provider = provider
        self.entity_id, self.acs_url = sp_urls(public_url, provider.id)
        self.clock = clock

    def _sp_settings(self, config: SamlConfig | None) -> dict[str, Any]:
        return {
            "strict": True,
            "debug": False,
            "sp": {
                "entityId": self.entity_id,
                "assertionConsumerService": {"url": self.acs_url, "binding": C.BINDING_HTTP_POST},
                "NameIDFormat": config.name_id_format if config else UNSPECIFIED,
                "x509cert": "",
                "privateKey": "",
            },
            "security": {
                "authnRequestsSigned": False,
                "wantAssertionsSigned": True,
                "wantMessagesSigned": bool(config and config.want_messages_signed),
                "wantNameId": True,
                "wantAttributeStatement": False,
                "allowRepeatAttributeName": True,
                "requestedAuthnContext": False,
                "signatureAlgorithm": C.RSA_SHA256,
                "digestAlgorithm": C.SHA256,
                "rejectDeprecatedAlgorithm": True,
                "rejectUnsolicitedResponsesWithInResponseTo": True,
                # Our entity id and ACS never change for a provider, so the metadata has no
                # expiry (an IdP that imported it once must not start refusing us); IdPs
                # that poll the URL re-read it daily.
                "metadataValidUntil": "",
                "metadataCacheDuration": "PT86400S",
            },
        }

    def settings(self) -> tuple[SamlConfig, OneLogin_Saml2_Settings]:
        """The checked config and python3-saml's settings; a misconfigured provider is
        :class:`AuthenticationFailed` (audited by the caller like any refusal)."""
        try:
            config = SamlConfig.parse(self.provider.config)
        except InvalidInput as exc:
            raise AuthenticationFailed(f"provider misconfigured: {exc}") from None
        data = self._sp_settings(config)
        certs = list(config.idp_certs)
        data["idp"] = {
            "entityId": config.idp_entity_id,
            "singleSignOnService": {"url": config.idp_sso_url, "binding": C.BINDING_HTTP_REDIRECT},
            "x509cert": certs[0],
            **({"x509certMulti": {"signing": certs}} if len(certs) > 1 else {}),
        }
        try:
            return config, OneLogin_Saml2_Settings(data, sp_validation_only=False)
        except OneLogin_Saml2_Error as exc:
            raise AuthenticationFailed(f"provider misconfigured: {_trim(str(exc))}") from None

    def metadata(self) -> str:
        """Our SP metadata: entity id, ACS (HTTP-POST), signed assertions wanted."""
        try:
            config: SamlConfig | None = SamlConfig.parse(self.provider.config)
        except InvalidInput:
            config = None  # the SP half does not depend on the IdP's settings
        settings = OneLogin_Saml2_Settings(self._sp_settings(config), sp_validation_only=True)
        xml = settings.get_sp_metadata()
        return xml.decode() if isinstance(xml, bytes) else str(xml)

    def _request_data(self, form: Mapping[str, str] | None = None) -> dict[str, Any]:
        """The ACS as python3-saml sees "the current URL": always our configured public URL,
        never the request's Host header, so Destination and Recipient are checked against
        what the IdP was told."""
        parts = urlsplit(self.acs_url)
        return {
            "https": "on" if parts.scheme == "https" else "off",
            "http_host": parts.netloc,
            "script_name": parts.path,
            "get_data": {},
            "post_data": dict(form or {}),
        }

    def authn_request(self, relay_state: str) -> tuple[str, str]:
        """The IdP URL to redirect to (HTTP-Redirect binding) and the AuthnRequest's ID."""
        _config, settings = self.settings()
        auth = OneLogin_Saml2_Auth(self._request_data(), old_settings=settings)
        url = auth.login(return_to=relay_state)
        return str(url), str(auth.get_last_request_id())

    def verify(self, saml_response: str, request_id: str) -> SamlIdentity:
        """Validate a posted ``SAMLResponse`` that must answer ``request_id``."""
        config, settings = self.settings()
        if len(saml_response) > MAX_RESPONSE_BYTES:
            raise AuthenticationFailed("SAML response too large")
        compact = "".join(saml_response.split())  # some IdPs wrap the base64 at 76
        try:
            base64.b64decode(compact, validate=True)
        except (binascii.Error, ValueError):
            raise AuthenticationFailed("SAML response is not base64") from None
        try:
            response = OneLogin_Saml2_Response(settings, compact)
        except Exception:  # lxml syntax errors, DTDs refused by the safe parser, ...
            raise AuthenticationFailed("SAML response is not well-formed XML") from None
        if not response.is_valid(self._request_data(), request_id):
            raise AuthenticationFailed(_trim(str(response.get_error() or "invalid response")))
        if response.get_in_response_to() != request_id:
            # python3-saml accepts a response without InResponseTo; an unsolicited
            # (IdP-initiated) login cannot be bound to this browser, so it is refused.
            raise AuthenticationFailed("response does not answer this sign-in (InResponseTo)")
        expires_at = self._check_window(response, config.max_clock_skew_seconds)
        return self._identity(response, config, expires_at)

    def _check_window(self, response: Any, skew: int) -> datetime:
        """NotBefore/NotOnOrAfter of Conditions and SubjectConfirmationData against our
        clock with the provider's skew; the latest NotOnOrAfter (plus skew) is returned as
        how long the assertion id must be remembered to refuse a replay."""
        now = self.clock().timestamp()
        limits: list[float] = []
        for node in response._query_assertion("/saml:Conditions"):
            not_before, not_after = node.get("NotBefore"), node.get("NotOnOrAfter")
            if not_before and OneLogin_Saml2_Utils.parse_SAML_to_time(not_before) > now + skew:
                raise AuthenticationFailed("assertion not yet valid (NotBefore)")
            if not_after:
                limits.append(OneLogin_Saml2_Utils.parse_SAML_to_time(not_after))
        confirmation = response.get_assertion_not_on_or_after()
        if confirmation:
            limits.append(float(confirmation))
        if not limits:
            raise AuthenticationFailed("assertion has no NotOnOrAfter")
        if now >= min(limits) + skew:
            raise AuthenticationFailed("assertion expired (NotOnOrAfter)")
        return datetime.fromtimestamp(max(limits) + skew, UTC)

    def _identity(self, response: Any, config: SamlConfig, expires_at: datetime) -> SamlIdentity:
        attributes: dict[str, list[str]] = dict(response.get_attributes())
        friendly: dict[str, list[str]] = dict(response.get_friendlyname_attributes())

        def values(name: str) -> list[str]:
            found = attributes.get(name) or friendly.get(name) or []
            return [str(v) for v in found if v is not None]

        name_id = str(response.get_nameid() or "")
        name_id_format = str(response.get_nameid_format() or "")
        emails = values(config.email_attribute)
        email = emails[0] if emails else (name_id if name_id_format == EMAIL else "")
        if not email:
            raise AuthenticationFailed(
                f"assertion carries no email (attribute {config.email_attribute!r} or an "
                "emailAddress NameID)"
            )
        # A transient NameID changes at every login: link by the email instead.
        subject = f"email:{email.lower()}" if name_id_format == TRANSIENT else name_id
        names = values(config.name_attribute)
        issuers = response.get_issuers()
        return SamlIdentity(
            subject=subject,
            email=email,
            display_name=names[0] if names else "",
            groups=tuple(values(config.groups_attribute)),
            assertion_id=str(response.get_assertion_id() or ""),
            expires_at=expires_at,
            details={
                "issuer": str(issuers[0]) if issuers else "",
                "assertion_id": str(response.get_assertion_id() or "")[:100],
                "name_id_format": name_id_format[:100],
            },
        )


def _trim(reason: str) -> str:
    return " ".join(reason.split())[:REASON_LIMIT]
