"""A real SAML 2.0 identity provider for tests: pysaml2's ``Server``, in-process.

Its RSA key and self-signed certificate are made at run time. It signs with RSA-SHA256 and
SHA-256 digests (``signing_algorithm`` / ``digest_algorithm`` inside ``service.idp``, else
pysaml2 signs with SHA-1) through Debian's ``xmlsec1``. It learns our SP from the metadata
the broker publishes, reads the AuthnRequest out of the broker's redirect exactly as an IdP
would (HTTP-Redirect binding) and answers with a real signed ``<samlp:Response>`` for the
HTTP-POST binding. Knobs let a test break one property: sign with another key, sign
nothing, address another audience or another ACS, sign with SHA-1, or issue an
already-expired assertion.
"""

from __future__ import annotations

import base64
import shutil
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from saml2 import BINDING_HTTP_POST, BINDING_HTTP_REDIRECT
from saml2.config import IdPConfig
from saml2.metadata import create_metadata_string
from saml2.saml import AUTHN_PASSWORD, NAME_FORMAT_BASIC, NAMEID_FORMAT_PERSISTENT, NameID
from saml2.server import Server
from saml2.xmldsig import DIGEST_SHA1, DIGEST_SHA256, SIG_RSA_SHA1, SIG_RSA_SHA256

ENTITY_ID = "https://idp.example.test/saml/metadata"
SSO_URL = "https://idp.example.test/saml/sso"


@dataclass(frozen=True)
class KeyPair:
    key_file: Path
    cert_file: Path

    @property
    def cert_pem(self) -> str:
        return self.cert_file.read_text()


def make_key_pair(directory: Path, name: str) -> KeyPair:
    """A 2048-bit RSA key and a self-signed certificate for it, written as PEM files."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"{name}.example.test")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=30))
        .sign(key, hashes.SHA256())
    )
    key_file, cert_file = directory / f"{name}.key", directory / f"{name}.crt"
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
    )
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return KeyPair(key_file, cert_file)


def _xmlsec() -> str:
    binary = shutil.which("xmlsec1")
    if binary is None:
        raise RuntimeError("the SAML tests need the xmlsec1 binary (apt-get install xmlsec1)")
    return binary


class SamlIdp:
    """The IdP. ``metadata()`` is what an admin pastes into Corral; ``trust(sp_xml)`` loads
    our SP metadata; ``answer(redirect_url, ...)`` is the form the browser would post."""

    def __init__(self, directory: Path, *, keys: KeyPair | None = None) -> None:
        self.directory = directory
        self.keys = keys or make_key_pair(directory, "idp")
        self.lifetime = timedelta(minutes=5)
        self.sp_metadata: list[str] = []
        self._server: Server | None = None

    def config(self, *, keys: KeyPair | None = None) -> IdPConfig:
        keys = keys or self.keys
        minutes = self.lifetime.total_seconds() / 60
        conf: dict[str, Any] = {
            "entityid": ENTITY_ID,
            "service": {
                "idp": {
                    "name": "Test IdP",
                    "endpoints": {"single_sign_on_service": [(SSO_URL, BINDING_HTTP_REDIRECT)]},
                    "policy": {
                        "default": {
                            "lifetime": {"minutes": minutes},
                            "attribute_restrictions": None,
                            "name_form": NAME_FORMAT_BASIC,
                        }
                    },
                    "name_id_format": [NAMEID_FORMAT_PERSISTENT],
                    "signing_algorithm": SIG_RSA_SHA256,
                    "digest_algorithm": DIGEST_SHA256,
                    "want_authn_requests_signed": False,
                }
            },
            "key_file": str(keys.key_file),
            "cert_file": str(keys.cert_file),
            "xmlsec_binary": _xmlsec(),
            "metadata": {"inline": list(self.sp_metadata)},
        }
        config = IdPConfig()
        config.load(conf)
        return config

    def metadata(self) -> str:
        xml = create_metadata_string(None, config=self.config(), valid=24)
        return xml.decode() if isinstance(xml, bytes) else str(xml)

    def trust(self, sp_metadata: str) -> None:
        self.sp_metadata.append(sp_metadata)

    def read_request(self, redirect_url: str) -> tuple[Any, str]:
        """The AuthnRequest (parsed, checked against the SP metadata) and the RelayState."""
        query = parse_qs(urlsplit(redirect_url).query)
        server = Server(config=self.config())
        request = server.parse_authn_request(query["SAMLRequest"][0], BINDING_HTTP_REDIRECT)
        return request.message, query.get("RelayState", [""])[0]

    def response_xml(
        self,
        redirect_url: str,
        *,
        email: str = "grace@example.test",
        subject: str = "u-grace",
        name: str = "Grace Hopper",
        groups: tuple[str, ...] = ("eng", "ops"),
        sign_assertion: bool = True,
        sign_response: bool = False,
        keys: KeyPair | None = None,
        audience: str | None = None,
        destination: str | None = None,
        sha1: bool = False,
    ) -> tuple[str, str]:
        """A signed ``<samlp:Response>`` answering the AuthnRequest in ``redirect_url``,
        and the RelayState to post back with it."""
        request, relay_state = self.read_request(redirect_url)
        server = Server(config=self.config(keys=keys))
        args = server.response_args(request, [BINDING_HTTP_POST])
        sp_entity_id = args["sp_entity_id"]
        if audience is not None:
            # A response for another SP, but delivered to ours (stolen or misrouted).
            args["sp_entity_id"] = audience
        if destination is not None:
            args["destination"] = destination  # Destination and the bearer Recipient
        identity = {"email": [email], "displayName": [name], "groups": list(groups)}
        args.pop("name_id_policy", None)
        args.pop("binding", None)
        response = server.create_authn_response(
            identity,
            name_id=NameID(format=NAMEID_FORMAT_PERSISTENT, text=subject),
            authn={"class_ref": AUTHN_PASSWORD, "authn_auth": ENTITY_ID},
            sign_assertion=sign_assertion,
            sign_response=sign_response,
            sign_alg=SIG_RSA_SHA1 if sha1 else SIG_RSA_SHA256,
            digest_alg=DIGEST_SHA1 if sha1 else DIGEST_SHA256,
            **args,
        )
        del sp_entity_id
        return str(response), relay_state


def encode(xml: str) -> str:
    return base64.b64encode(xml.encode()).decode()
