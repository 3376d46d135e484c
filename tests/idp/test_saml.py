"""SAML 2.0 sign-in against a real IdP (pysaml2, signing with xmlsec1), through the real
broker app: success with a just-in-time user and synced groups, and every refusal the
issue names -- tampered attribute, wrong signer, replay, expired, wrong audience, unsigned
assertion, XML signature wrapping -- plus the binding to the browser that started the
login. Each refusal is a 401 that names nothing internal, and is audited with its reason."""

from __future__ import annotations

import base64
import json
import re
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from lxml import etree

from broker.audit import SYSTEM
from broker.errors import InvalidInput
from broker.store.models import AuditEvent, SsoProtocol, SsoProvider
from idp.saml import SamlConfig
from idp.saml_login import PENDING_COOKIE, cookie_path
from tests.idp.conftest import Env
from tests.idp.saml_idp import ENTITY_ID, SSO_URL, KeyPair, SamlIdp, encode, make_key_pair

SAML = "urn:oasis:names:tc:SAML:2.0:assertion"
SAMLP = "urn:oasis:names:tc:SAML:2.0:protocol"
DS = "http://www.w3.org/2000/09/xmldsig#"


SQLITE_ONLY = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
"""For checks of the protocol alone; what touches the store (sign-in, replay, MFA, 404s)
runs on PostgreSQL too."""


@pytest.fixture(scope="session")
def idp_keys(tmp_path_factory: pytest.TempPathFactory) -> tuple[KeyPair, KeyPair]:
    """The IdP's key and an attacker's; made once per run (RSA generation is the slow part)."""
    directory = tmp_path_factory.mktemp("saml-keys")
    return make_key_pair(directory, "idp"), make_key_pair(directory, "evil")


def details(event: AuditEvent) -> dict[str, Any]:
    value: dict[str, Any] = json.loads(event.details)
    return value


@dataclass
class Saml:
    env: Env
    idp: SamlIdp
    provider: SsoProvider
    evil: KeyPair

    @property
    def base(self) -> str:
        return f"/api/v1/sso/saml/{self.provider.id}"

    @property
    def path(self) -> str:
        return cookie_path(self.provider.id)

    async def start(self, return_to: str = "/") -> str:
        response = await self.env.client.get(f"{self.base}/login", params={"return_to": return_to})
        assert response.status_code == 302, response.text
        return response.headers["location"]

    async def post(self, xml: str, relay_state: str) -> httpx.Response:
        return await self.env.client.post(
            f"{self.base}/acs", data={"SAMLResponse": encode(xml), "RelayState": relay_state}
        )

    async def reasons(self) -> list[str]:
        return [str(details(e)["reason"]) for e in await self.env.events("sso.refused")]

    async def refused(self, response: httpx.Response, reason: str, *, accepted: int = 0) -> None:
        """A uniform 401 problem that names nothing internal; the audit has the reason."""
        assert response.status_code == 401, response.text
        body = response.json()
        assert body["type"] == "urn:corral:problem:unauthenticated"
        assert body["detail"].startswith("single sign-on failed")
        assert response.headers["content-type"].startswith("application/problem+json")
        assert "signature" not in response.text.lower() and "assertion" not in response.text
        assert "corral_session" not in response.headers.get("set-cookie", "")
        reasons = await self.reasons()
        assert reasons and re.search(reason, reasons[-1], re.IGNORECASE), reasons
        assert len(await self.env.events("sso.accepted")) == accepted


@pytest.fixture
async def saml(env: Env, tmp_path: Path, idp_keys: tuple[KeyPair, KeyPair]) -> AsyncIterator[Saml]:
    # python3-saml and pysaml2 both read the real clock: the broker's must agree.
    env.clock.now = datetime.now(UTC)
    idp = SamlIdp(tmp_path, keys=idp_keys[0])
    provider = await env.services.sso.create_provider(
        env.ws,
        "corp-idp",
        SsoProtocol.SAML,
        config={"idp_metadata_xml": idp.metadata()},
        group_mapping={"eng": "engineers", "dba": "dbas"},
    )
    result = Saml(env, idp, provider, idp_keys[1])
    metadata = await env.client.get(f"{result.base}/metadata")
    assert metadata.status_code == 200
    idp.trust(metadata.text)
    return result


@SQLITE_ONLY
async def test_metadata_names_our_entity_and_acs(saml: Saml) -> None:
    response = await saml.env.client.get(f"{saml.base}/metadata")
    assert response.headers["content-type"].startswith("application/samlmetadata+xml")
    root = etree.fromstring(response.content)
    assert root.get("entityID") == f"https://corral.test{saml.base}/metadata"
    assert root.get("validUntil") is None and root.get("cacheDuration") == "PT86400S"
    sp = root.find("{urn:oasis:names:tc:SAML:2.0:metadata}SPSSODescriptor")
    assert sp is not None and sp.get("WantAssertionsSigned") == "true"
    acs = sp.find("{urn:oasis:names:tc:SAML:2.0:metadata}AssertionConsumerService")
    assert acs is not None and acs.get("Location") == f"https://corral.test{saml.base}/acs"
    assert acs.get("Binding") == "urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST"


async def test_success_creates_the_user_and_syncs_groups(saml: Saml) -> None:
    env = saml.env
    url = await saml.start("/servers?tab=mine")
    assert url.startswith("https://idp.example.test/saml/sso?SAMLRequest=")
    request, _ = saml.idp.read_request(url)
    assert request.assertion_consumer_service_url == f"https://corral.test{saml.base}/acs"
    xml, relay_state = saml.idp.response_xml(url, groups=("eng", "sales"))
    response = await saml.post(xml, relay_state)
    assert response.status_code == 303, response.text
    assert response.headers["location"] == "/servers?tab=mine"
    session = await env.client.get("/api/v1/auth/session")
    assert session.status_code == 200, session.text
    assert session.json()["state"] == "active"
    assert session.json()["user"]["email"] == "grace@example.test"
    user = await env.services.users.find_by_email(env.ws, "grace@example.test")
    assert user is not None and user.display_name == "Grace Hopper"
    groups = {g.name for g in await env.services.groups.groups_of(env.ws, user.id)}
    assert groups == {"engineers"}
    (accepted,) = await env.events("sso.accepted")
    facts = details(accepted)
    assert facts["issuer"] == "https://idp.example.test/saml/metadata"
    assert facts["created"] is True and facts["groups_added"] == ["engineers"]
    assert "Grace" not in accepted.details  # attribute values are not audited
    (login,) = [e for e in await env.events("login.succeeded") if '"sso-saml"' in e.details]
    assert login.target == user.id
    # The pending-request cookie is spent.
    assert PENDING_COOKIE not in env.client.cookies


@SQLITE_ONLY
async def test_tampered_attribute_is_refused(saml: Saml) -> None:
    url = await saml.start()
    xml, relay_state = saml.idp.response_xml(url, groups=("eng",))
    forged = xml.replace(">eng<", ">dba<")
    assert forged != xml
    await saml.refused(await saml.post(forged, relay_state), "signature validation failed")


@SQLITE_ONLY
async def test_base64_wrapped_in_lines_is_accepted(saml: Saml) -> None:
    """Some IdPs break the base64 of SAMLResponse into 76-character lines."""
    url = await saml.start()
    xml, relay_state = saml.idp.response_xml(url)
    flat = encode(xml)
    wrapped = "\r\n".join(flat[i : i + 76] for i in range(0, len(flat), 76))
    response = await saml.env.client.post(
        f"{saml.base}/acs", data={"SAMLResponse": wrapped, "RelayState": relay_state}
    )
    assert response.status_code == 303, response.text


@SQLITE_ONLY
async def test_wrong_signer_is_refused(saml: Saml) -> None:
    url = await saml.start()
    xml, relay_state = saml.idp.response_xml(url, keys=saml.evil)
    await saml.refused(await saml.post(xml, relay_state), "signature validation failed")


async def test_replayed_response_is_refused(saml: Saml) -> None:
    env = saml.env
    login = await env.client.get(f"{saml.base}/login")
    pending = login.cookies[PENDING_COOKIE]
    xml, relay_state = saml.idp.response_xml(login.headers["location"])
    assert (await saml.post(xml, relay_state)).status_code == 303
    # Even the same browser, with the same pending cookie, cannot use it a second time.
    env.client.cookies.set(PENDING_COOKIE, pending, domain="corral.test", path=saml.path)
    await saml.refused(await saml.post(xml, relay_state), "replay", accepted=1)
    # Nor can a captured response answer a new sign-in (it names the old request).
    url = await saml.start()
    _, new_relay = saml.idp.read_request(url)
    await saml.refused(await saml.post(xml, new_relay), "InResponseTo", accepted=1)


@SQLITE_ONLY
async def test_expired_assertion_is_refused(saml: Saml) -> None:
    saml.idp.lifetime = timedelta(minutes=-10)
    url = await saml.start()
    xml, relay_state = saml.idp.response_xml(url)
    await saml.refused(await saml.post(xml, relay_state), "expired|SubjectConfirmation")


@SQLITE_ONLY
async def test_clock_skew_is_bounded_by_the_provider_setting(saml: Saml) -> None:
    """NotOnOrAfter 120 s away: 100 s past it on the broker's clock is within the default
    skew of 120 s; 130 s past it is not."""
    saml.idp.lifetime = timedelta(seconds=120)
    start = saml.env.clock.now
    url = await saml.start()
    xml, relay_state = saml.idp.response_xml(url)
    saml.env.clock.now = start + timedelta(seconds=120 + 130)
    await saml.refused(await saml.post(xml, relay_state), r"assertion expired \(NotOnOrAfter\)")

    saml.env.clock.now = start
    url = await saml.start()
    xml, relay_state = saml.idp.response_xml(url)
    saml.env.clock.now = start + timedelta(seconds=120 + 100)
    assert (await saml.post(xml, relay_state)).status_code == 303


@SQLITE_ONLY
async def test_wrong_audience_is_refused(saml: Saml) -> None:
    url = await saml.start()
    xml, relay_state = saml.idp.response_xml(url, audience="https://other-sp.example.test/md")
    assert "https://other-sp.example.test/md" in xml
    await saml.refused(await saml.post(xml, relay_state), "not a valid audience")


@SQLITE_ONLY
async def test_signed_message_can_be_required(saml: Saml) -> None:
    env = saml.env
    config = {**saml.provider.config, "want_messages_signed": True}
    await env.services.sso.update_provider(env.ws, saml.provider.id, config=config)
    url = await saml.start()
    xml, relay_state = saml.idp.response_xml(url)  # only the assertion signed
    await saml.refused(await saml.post(xml, relay_state), "Message of the Response is not signed")
    url = await saml.start()
    xml, relay_state = saml.idp.response_xml(url, sign_response=True)
    assert (await saml.post(xml, relay_state)).status_code == 303


@SQLITE_ONLY
async def test_sha1_signature_is_refused(saml: Saml) -> None:
    url = await saml.start()
    xml, relay_state = saml.idp.response_xml(url, sha1=True)
    assert "xmldsig#rsa-sha1" in xml
    await saml.refused(await saml.post(xml, relay_state), "Deprecated signature algorithm")


@SQLITE_ONLY
async def test_wrong_destination_or_recipient_is_refused(saml: Saml) -> None:
    elsewhere = "https://corral.test/api/v1/sso/saml/another-provider/acs"
    url = await saml.start()
    xml, relay_state = saml.idp.response_xml(url, destination=elsewhere)
    await saml.refused(await saml.post(xml, relay_state), "received at")
    # The envelope's Destination is not signed: fixing it leaves the signed Recipient wrong.
    url = await saml.start()
    xml, relay_state = saml.idp.response_xml(url, destination=elsewhere)
    ours = f'Destination="https://corral.test{saml.base}/acs"'
    patched = xml.replace(f'Destination="{elsewhere}"', ours, 1)
    assert patched != xml and f'Recipient="{elsewhere}"' in patched
    await saml.refused(await saml.post(patched, relay_state), "valid SubjectConfirmation")


@pytest.mark.parametrize("sign_response", [False, True])
@SQLITE_ONLY
async def test_unsigned_assertion_is_refused(saml: Saml, sign_response: bool) -> None:
    """Nothing signed at all, or only the envelope: the assertion itself must be signed."""
    url = await saml.start()
    xml, relay_state = saml.idp.response_xml(url, sign_assertion=False, sign_response=sign_response)
    assert ("<ns2:Signature" in xml) is sign_response
    await saml.refused(await saml.post(xml, relay_state), "not signed|No Signature")


def _evil_copy(assertion: Any) -> Any:
    """The signed assertion re-labelled for an attacker: other id, other person, no signature."""
    evil = etree.fromstring(etree.tostring(assertion))
    evil.set("ID", "id-evil")
    for signature in evil.findall(f"{{{DS}}}Signature"):
        evil.remove(signature)
    evil.find(f".//{{{SAML}}}NameID").text = "u-mallory"
    for value in evil.iter(f"{{{SAML}}}AttributeValue"):
        if value.text == "grace@example.test":
            value.text = "alice@corral.test"
    return evil


@pytest.mark.parametrize(
    ("placement", "reason"),
    [
        ("sibling-before", "must contain 1 assertion"),
        ("wrapped-in-advice", "must contain 1 assertion"),
        ("in-extensions", "must contain 1 assertion"),
        ("signature-moved", "invalid Signed Element|Signature validation failed"),
    ],
)
@SQLITE_ONLY
async def test_xml_signature_wrapping_is_refused(saml: Saml, placement: str, reason: str) -> None:
    """The signature still verifies over the original assertion; the attacker's unsigned one
    sits where a careless SP would read it."""
    url = await saml.start()
    xml, relay_state = saml.idp.response_xml(url)
    root = etree.fromstring(xml.encode())
    signed = root.find(f"{{{SAML}}}Assertion")
    evil = _evil_copy(signed)
    if placement == "sibling-before":
        signed.addprevious(evil)
    elif placement == "wrapped-in-advice":
        # The attacker's assertion takes the signed one's place and carries it inside.
        root.replace(signed, evil)
        advice = etree.Element(f"{{{SAML}}}Advice")
        advice.append(signed)
        evil.find(f"{{{SAML}}}Conditions").addnext(advice)
    elif placement == "signature-moved":
        # Only the attacker's assertion, wearing the genuine signature over the original.
        evil.insert(1, signed.find(f"{{{DS}}}Signature"))
        root.replace(signed, evil)
    else:
        extensions = etree.Element(f"{{{SAMLP}}}Extensions")
        root.find(f"{{{SAMLP}}}Status").addprevious(extensions)
        extensions.append(signed)
        root.append(evil)
    forged = etree.tostring(root).decode()
    await saml.refused(await saml.post(forged, relay_state), reason)
    assert await saml.env.services.users.find_by_email(saml.env.ws, "grace@example.test") is None


async def test_response_must_come_to_the_browser_that_asked(saml: Saml) -> None:
    """Login CSRF: a response posted without this browser's pending cookie, with another
    RelayState, or without any InResponseTo, is refused."""
    env = saml.env
    url = await saml.start()
    xml, relay_state = saml.idp.response_xml(url)
    await saml.refused(await saml.post(xml, "another-relay-state"), "RelayState")

    url = await saml.start()
    xml, relay_state = saml.idp.response_xml(url)
    env.client.cookies.delete(PENDING_COOKIE, domain="corral.test", path=saml.path)
    await saml.refused(await saml.post(xml, relay_state), "cookie missing")

    url = await saml.start()
    xml, relay_state = saml.idp.response_xml(url)
    unsolicited = re.sub(r' InResponseTo="[^"]+"', "", xml, count=1)  # the Response's own
    await saml.refused(await saml.post(unsolicited, relay_state), "InResponseTo")

    url = await saml.start()
    _, relay_state = saml.idp.read_request(url)
    forged_cookie = env.client.cookies[PENDING_COOKIE][:-2] + "00"
    env.client.cookies.set(PENDING_COOKIE, forged_cookie, domain="corral.test", path=saml.path)
    await saml.refused(await saml.post(xml, relay_state), "bad signature")

    url = await saml.start()
    xml, relay_state = saml.idp.response_xml(url)
    doctype = '<!DOCTYPE r [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
    hostile = xml.replace('<?xml version="1.0"?>', '<?xml version="1.0"?>' + doctype, 1)
    assert doctype in hostile
    await saml.refused(await saml.post(hostile, relay_state), "not well-formed|DTD|entit")

    bad = await env.client.post(f"{saml.base}/acs", content=b"<xml/>")
    await saml.refused(bad, "not application/x-www-form-urlencoded")


async def test_sso_login_still_owes_the_workspace_mfa(saml: Saml) -> None:
    env = saml.env
    await env.services.workspaces.update_settings(env.ws, actor=SYSTEM, mfa_required=True)
    url = await saml.start()
    xml, relay_state = saml.idp.response_xml(url)
    assert (await saml.post(xml, relay_state)).status_code == 303
    session = await env.client.get("/api/v1/auth/session")
    assert session.json()["state"] == "enrol"
    (owed,) = await env.events("login.sso_ok")
    assert details(owed)["state"] == "enrol"


async def test_unknown_foreign_and_disabled_providers_are_404(saml: Saml) -> None:
    env = saml.env
    for path in ("metadata", "login"):
        missing = await env.client.get(f"/api/v1/sso/saml/{'0' * 32}/{path}")
        assert missing.status_code == 404
    default = await env.services.audit.events(env.ws)
    assert [e.target for e in default if e.action == "api.not_found"] == ["0" * 32]
    other = await env.services.workspaces.create("other")
    foreign = await env.client.get(f"{saml.base}/login", params={"workspace": "other"})
    assert foreign.status_code == 404
    events = await env.services.audit.events(other.id)
    assert [e.target for e in events if e.action == "api.not_found"] == [saml.provider.id]
    mine = await env.client.get(f"{saml.base}/login", params={"workspace": "default"})
    assert mine.status_code == 302
    await env.services.sso.update_provider(env.ws, saml.provider.id, enabled=False)
    assert (await env.client.get(f"{saml.base}/metadata")).status_code == 404
    acs = await env.client.post(f"{saml.base}/acs", data={"SAMLResponse": "x"})
    assert acs.status_code == 404


@pytest.mark.parametrize(
    "target", ["https://evil.test/", "//evil.test/x", "/\\evil.test", "javascript:alert(1)"]
)
@SQLITE_ONLY
async def test_return_to_stays_on_this_broker(saml: Saml, target: str) -> None:
    response = await saml.env.client.get(f"{saml.base}/login", params={"return_to": target})
    assert response.status_code == 400
    assert PENDING_COOKIE not in response.headers.get("set-cookie", "")


@SQLITE_ONLY
async def test_pending_cookie_is_cross_site_postable_but_locked_down(saml: Saml) -> None:
    response = await saml.env.client.get(f"{saml.base}/login")
    cookie = response.headers["set-cookie"].lower()
    for flag in ("secure", "httponly", "samesite=none", f"path={saml.path}".lower()):
        assert flag in cookie
    own = await saml.env.client.get(
        f"{saml.base}/login", params={"return_to": "https://corral.test/audit?x=1"}
    )
    assert own.status_code == 302
    raw = base64.urlsafe_b64decode(own.cookies[PENDING_COOKIE].split(".")[0] + "==")
    assert b'"/audit?x=1"' in raw


@SQLITE_ONLY
async def test_idp_given_by_hand_instead_of_metadata(saml: Saml) -> None:
    """Entity id, SSO URL and a PEM certificate work as well as the metadata XML."""
    env = saml.env
    provider = await env.services.sso.create_provider(
        env.ws,
        "by-hand",
        SsoProtocol.SAML,
        config={
            "idp_entity_id": ENTITY_ID,
            "idp_sso_url": SSO_URL,
            "idp_x509_cert": saml.idp.keys.cert_pem,
            "max_clock_skew_seconds": 30,
        },
    )
    base = f"/api/v1/sso/saml/{provider.id}"
    saml.idp.trust((await env.client.get(f"{base}/metadata")).text)
    login = await env.client.get(f"{base}/login")
    xml, relay_state = saml.idp.response_xml(login.headers["location"])
    posted = await env.client.post(
        f"{base}/acs", data={"SAMLResponse": encode(xml), "RelayState": relay_state}
    )
    assert posted.status_code == 303, posted.text


@SQLITE_ONLY
async def test_misconfigured_provider_is_refused_and_audited(saml: Saml) -> None:
    env = saml.env
    await env.services.sso.update_provider(
        env.ws, saml.provider.id, config={"idp_entity_id": ENTITY_ID}
    )
    response = await env.client.get(f"{saml.base}/login")
    assert response.status_code == 401
    assert "idp_" not in response.text
    assert "provider misconfigured" in (await saml.reasons())[-1]


def test_the_broker_does_not_load_the_saml_libraries() -> None:
    program = "import sys, broker.app; print(sorted({'xmlsec', 'onelogin'} & set(sys.modules)))"
    loaded = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, check=True
    )
    assert loaded.stdout.strip() == "[]"


@SQLITE_ONLY
async def test_broken_saml_libraries_cost_only_saml(
    saml: Saml, monkeypatch: pytest.MonkeyPatch
) -> None:
    """If xmlsec cannot load (its libxml2 differs from lxml's), SAML sign-in is refused and
    audited, and the rest of the broker works."""
    monkeypatch.setitem(sys.modules, "idp.saml", None)  # import idp.saml raises ImportError
    env = saml.env
    assert (await env.client.get(f"{saml.base}/metadata")).status_code == 503
    assert (await env.client.get(f"{saml.base}/login")).status_code == 401
    assert "SAML support unavailable" in (await saml.reasons())[-1]
    assert (await env.client.get("/api/v1/auth/session")).status_code == 401  # the rest works


@pytest.mark.parametrize(
    ("config", "error"),
    [
        ({}, "needs idp_metadata_xml"),
        ({"idp_metadata_xml": "<not-metadata"}, "not readable SAML metadata"),
        ({"idp_metadata_xml": "<a/>"}, "must name the IdP"),
        ({"idp_entity_id": "x", "idp_sso_url": "ftp://x", "idp_x509_cert": "AAAA"}, "http"),
        ({"idp_entity_id": "x", "idp_sso_url": "https://x", "idp_x509_cert": "AAAA"}, "X.509"),
        ({"max_clock_skew_seconds": 301}, "0 to 300"),
        ({"max_clock_skew_seconds": True}, "0 to 300"),
        ({"want_messages_signed": "yes"}, "true or false"),
        ({"email_attribute": 7}, "email_attribute must be a string"),
        ({"surprise": 1}, "unknown SAML setting"),
    ],
)
def test_config_is_checked(config: dict[str, Any], error: str) -> None:
    with pytest.raises(InvalidInput, match=error):
        SamlConfig.parse(config)
