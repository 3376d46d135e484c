"""What an administrator may configure for one identity provider, per protocol.

The stored ``SsoProvider.config`` is the ``model_dump`` of one of these models, validated
on every write (the admin API) and read back through the same model at login, so a row
edited by hand into something invalid fails closed instead of half-working. Secrets are
never here: the OIDC client secret is sealed in ``SsoProvider.secret_box``.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Any
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from broker.errors import InvalidInput
from broker.store.models import SsoProtocol

__all__ = [
    "GOOGLE_ISSUER",
    "OidcProviderConfig",
    "SamlProviderConfig",
    "check_config",
    "oidc_config_of",
]

GOOGLE_ISSUER = "https://accounts.google.com"
PRESETS = {"": None, "google": SsoProtocol.OIDC}
SCOPE = re.compile(r"[\x21\x23-\x5b\x5d-\x7e]{1,100}")  # RFC 6749 scope-token
CLAIM = re.compile(r"^[A-Za-z0-9_.:/-]{1,100}$")
DOMAIN = re.compile(r"^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$")


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _https_url(value: str, what: str) -> str:
    """An absolute https URL (plain http only to a loopback host, for local test IdPs)."""
    parts = urlsplit(value)
    host = parts.hostname or ""
    if not host or parts.username or parts.password or parts.fragment or parts.query:
        raise ValueError(f"{what} must be an absolute URL without credentials, query or #")
    if parts.scheme != "https" and not (parts.scheme == "http" and is_loopback(host)):
        raise ValueError(f"{what} must use https (http only for a loopback address)")
    return value


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class OidcProviderConfig(_Strict):
    """A generic OpenID Connect provider (or the Google preset)."""

    issuer: str = Field(max_length=500)
    client_id: str = Field(min_length=1, max_length=500)
    scopes: list[str] = Field(default_factory=lambda: ["openid", "email", "profile"])
    groups_claim: str = "groups"
    email_claim: str = "email"
    allowed_domains: list[str] = Field(default_factory=list, max_length=50)
    """Only people whose email is in one of these domains may sign in (empty: anyone the
    provider vouches for)."""
    hosted_domain: str = ""
    """Google Workspace: the ``hd`` claim must equal this domain (sent as a hint too)."""

    @field_validator("issuer")
    @classmethod
    def _issuer(cls, value: str) -> str:
        return _https_url(value, "issuer")

    @field_validator("scopes")
    @classmethod
    def _scopes(cls, value: list[str]) -> list[str]:
        if "openid" not in value:
            raise ValueError("scopes must include openid")
        if len(value) > 20 or not all(SCOPE.fullmatch(s) for s in value):
            raise ValueError("scopes must be at most 20 plain scope tokens")
        return value

    @field_validator("groups_claim", "email_claim")
    @classmethod
    def _claim(cls, value: str) -> str:
        if not CLAIM.match(value):
            raise ValueError("a claim name is 1-100 letters, digits or _.:/-")
        return value

    @field_validator("allowed_domains")
    @classmethod
    def _domains(cls, value: list[str]) -> list[str]:
        lowered = [d.strip().lower() for d in value]
        if not all(DOMAIN.match(d) for d in lowered):
            raise ValueError("allowed_domains must be DNS domain names")
        return lowered

    @field_validator("hosted_domain")
    @classmethod
    def _hosted(cls, value: str) -> str:
        value = value.strip().lower()
        if value and not DOMAIN.match(value):
            raise ValueError("hosted_domain must be a DNS domain name")
        return value


class SamlProviderConfig(_Strict):
    """A SAML 2.0 identity provider: its metadata, or entity id + SSO URL + certificate."""

    idp_metadata_xml: str = Field(default="", max_length=200_000)
    idp_entity_id: str = Field(default="", max_length=500)
    idp_sso_url: str = Field(default="", max_length=1000)
    idp_x509_cert: str = Field(default="", max_length=20_000)
    email_attribute: str = Field(default="email", max_length=200)
    name_attribute: str = Field(default="displayName", max_length=200)
    groups_attribute: str = Field(default="groups", max_length=200)
    max_clock_skew_seconds: int = Field(default=120, ge=0, le=300)
    want_messages_signed: bool = False
    name_id_format: str = Field(default="", max_length=200)

    @field_validator("idp_sso_url")
    @classmethod
    def _sso_url(cls, value: str) -> str:
        return _https_url(value, "idp_sso_url") if value else value

    def model_post_init(self, context: Any, /) -> None:
        explicit = (self.idp_entity_id, self.idp_sso_url, self.idp_x509_cert)
        if not self.idp_metadata_xml and not all(explicit):
            raise ValueError(
                "give idp_metadata_xml, or idp_entity_id, idp_sso_url and idp_x509_cert"
            )


def check_config(protocol: SsoProtocol, preset: str, config: dict[str, Any]) -> dict[str, Any]:
    """The validated, normalised config to store; :class:`InvalidInput` naming the field."""
    if preset not in PRESETS:
        raise InvalidInput("preset must be 'google' or empty")
    if preset and PRESETS[preset] is not protocol:
        raise InvalidInput(f"the {preset} preset is an {PRESETS[preset]} provider")
    if preset == "google":
        config = {"issuer": GOOGLE_ISSUER, "scopes": ["openid", "email", "profile"], **config}
        if config["issuer"] != GOOGLE_ISSUER:
            raise InvalidInput(f"the google preset's issuer is {GOOGLE_ISSUER}")
    model: type[_Strict] = (
        OidcProviderConfig if protocol is SsoProtocol.OIDC else SamlProviderConfig
    )
    try:
        checked = model.model_validate(config).model_dump()
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        message = str(first["msg"]).removeprefix("Value error, ")
        raise InvalidInput(f"config{'.' + where if where else ''}: {message}") from None
    if protocol is SsoProtocol.SAML:
        # The SAML core's own reading: metadata parsed, certificates loaded, so a provider
        # that could never sign anyone in is a 400 here rather than a failed login later.
        try:
            from idp.saml import SamlConfig  # the SAML libraries load only when SAML is used
        except Exception as exc:  # xmlsec/lxml mismatch is an ImportError or xmlsec.Error
            raise InvalidInput(f"SAML support unavailable: {type(exc).__name__}") from None
        SamlConfig.parse({k: v for k, v in checked.items() if v != ""})
    return checked


def oidc_config_of(config: dict[str, Any]) -> OidcProviderConfig:
    """The stored config read back; a row that no longer validates is refused."""
    try:
        return OidcProviderConfig.model_validate(config)
    except ValidationError:
        raise InvalidInput("the identity provider's stored configuration is invalid") from None
