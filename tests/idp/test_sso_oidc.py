"""OIDC login through the broker's routes against a real OpenID provider on loopback
(authlib's own server: PKCE S256 and client_secret_basic enforced), and the identity-provider
admin API. A browser is an httpx client with its own cookie jar; the provider's redirects are
followed by hand, as a browser would."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import httpx
import pytest
from sqlmodel import select

from broker.audit import SYSTEM
from broker.errors import CorralError
from broker.store.models import AuditEvent, Role, SsoProtocol, utcnow
from tests.idp.conftest import ORIGIN, Env
from tests.idp.oidc_provider import CLIENT_ID, CLIENT_SECRET, Provider
from tests.idp.saml_idp import make_key_pair

GENERIC = "single sign-on failed; start the login again or ask your administrator"


@pytest.fixture
async def op_http() -> AsyncIterator[httpx.AsyncClient]:
    """The browser's view of the provider (a real HTTP client to its loopback port)."""
    async with httpx.AsyncClient(timeout=10) as client:
        yield client


@pytest.fixture
async def admin(env: Env) -> Env:
    env.clock.now = utcnow()  # the provider stamps ID tokens with the real time
    assert (await env.login()).status_code == 200
    return env


def browser(env: Env) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=env.app, raise_app_exceptions=False)
    return httpx.AsyncClient(transport=transport, base_url=ORIGIN)


async def add_provider(env: Env, op: Provider, **extra: Any) -> dict[str, Any]:
    config = {"issuer": op.issuer, "client_id": CLIENT_ID, **extra.pop("config", {})}
    body = {
        "name": "corp",
        "protocol": "oidc",
        "config": config,
        "client_secret": CLIENT_SECRET,
        "group_mapping": {"ops": "operators", "dba": "dbas"},
        **extra,
    }
    response = await env.client.post("/api/v1/sso/providers", json=body)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    op.redirect_uri = created["callback_url"]
    return created


def with_query(url: str, **changes: str | None) -> str:
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query))
    for key, value in changes.items():
        if value is None:
            query.pop(key, None)
        else:
            query[key] = value
    return urlunsplit(parts._replace(query=urlencode(query)))


async def start(client: httpx.AsyncClient, login_url: str, **query: str) -> str:
    response = await client.get(with_query(login_url, **query) if query else login_url)
    assert response.status_code == 302, response.text
    return response.headers["location"]


async def authorize(op_http: httpx.AsyncClient, url: str) -> str:
    """What the provider sends the browser back to (the broker's callback URL)."""
    response = await op_http.get(url)
    assert response.status_code == 302, response.text
    return response.headers["location"]


async def sso_login(
    env: Env, client: httpx.AsyncClient, op_http: httpx.AsyncClient, login_url: str
) -> httpx.Response:
    callback = await authorize(op_http, await start(client, login_url))
    return await client.get(callback)


def details(event: AuditEvent) -> dict[str, Any]:
    value: dict[str, Any] = json.loads(event.details)
    return value


async def refusals(env: Env) -> list[str]:
    return [str(details(e)["reason"]) for e in await env.events("sso.refused")]


def assert_generic_401(response: httpx.Response) -> None:
    assert response.status_code == 401, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["detail"] == GENERIC


async def test_success_creates_user_syncs_groups_and_signs_in(
    admin: Env, oidc_provider: Provider, op_http: httpx.AsyncClient
) -> None:
    created = await add_provider(admin, oidc_provider)
    assert "client_secret" not in created and created["has_client_secret"] is True
    async with browser(admin) as client:
        first = await start(client, created["login_url"], return_to="/servers?x=1")
        query = dict(parse_qsl(urlsplit(first).query))
        assert query["code_challenge_method"] == "S256" and query["client_id"] == CLIENT_ID
        assert query["redirect_uri"] == created["callback_url"]
        response = await client.get(await authorize(op_http, first))
        assert response.status_code == 303, response.text
        assert response.headers["location"] == "/servers?x=1"
        session = (await client.get("/api/v1/auth/session")).json()
        assert session["state"] == "active" and session["user"]["email"] == "grace@example.test"
        assert session["mfa_at"] is None  # the IdP is the first factor, not an MFA
    user_id = session["user"]["id"]
    groups = {g.name for g in await admin.services.groups.groups_of(admin.ws, user_id)}
    assert groups == {"operators", "dbas"}
    (accepted,) = await admin.events("sso.accepted")
    assert details(accepted)["created"] is True
    assert details(accepted)["issuer"] == oidc_provider.issuer
    (logged_in,) = [
        e for e in await admin.events("login.succeeded") if details(e)["method"] == "sso-oidc"
    ]
    assert details(logged_in)["provider"] == "corp"

    # Next login: the same person, groups follow the provider.
    oidc_provider.user = {**oidc_provider.user, "groups": ["dba"]}
    async with browser(admin) as client:
        response = await sso_login(admin, client, op_http, created["login_url"])
        assert response.status_code == 303 and response.headers["location"] == "/"
    groups = {g.name for g in await admin.services.groups.groups_of(admin.ws, user_id)}
    assert groups == {"dbas"}


async def test_workspace_mfa_still_applies(
    admin: Env, oidc_provider: Provider, op_http: httpx.AsyncClient
) -> None:
    created = await add_provider(admin, oidc_provider)
    await admin.services.workspaces.update_settings(admin.ws, actor=SYSTEM, mfa_required=True)
    async with browser(admin) as client:
        response = await sso_login(admin, client, op_http, created["login_url"])
        assert response.status_code == 303
        session = (await client.get("/api/v1/auth/session")).json()
        assert session["state"] == "enrol"
        assert (await client.get("/api/v1/whoami")).status_code == 401
    assert [details(e)["method"] for e in await admin.events("login.sso_ok")] == ["sso-oidc"]


async def test_bad_state_refused(
    admin: Env, oidc_provider: Provider, op_http: httpx.AsyncClient
) -> None:
    created = await add_provider(admin, oidc_provider)
    async with browser(admin) as client:
        callback = await authorize(op_http, await start(client, created["login_url"]))
        assert_generic_401(await client.get(with_query(callback, state="forged")))
        assert (await client.get("/api/v1/auth/session")).status_code == 401
    assert await refusals(admin) == ["OIDC state does not match this login"]


async def test_bad_nonce_refused(
    admin: Env, oidc_provider: Provider, op_http: httpx.AsyncClient
) -> None:
    created = await add_provider(admin, oidc_provider)
    async with browser(admin) as client:
        url = with_query(await start(client, created["login_url"]), nonce="another-nonce")
        assert_generic_401(await client.get(await authorize(op_http, url)))
    assert await refusals(admin) == ["OIDC nonce does not match this login"]


async def test_wrong_issuer_refused(
    admin: Env, oidc_provider: Provider, op_http: httpx.AsyncClient
) -> None:
    created = await add_provider(admin, oidc_provider)
    oidc_provider.issuer_claim = "http://127.0.0.1:1"
    async with browser(admin) as client:
        assert_generic_401(await sso_login(admin, client, op_http, created["login_url"]))
    assert await refusals(admin) == ["OIDC ID token from another issuer"]


async def test_expired_id_token_refused(
    admin: Env, oidc_provider: Provider, op_http: httpx.AsyncClient
) -> None:
    created = await add_provider(admin, oidc_provider)
    oidc_provider.lifetime = 30
    async with browser(admin) as client:
        callback = await authorize(op_http, await start(client, created["login_url"]))
        admin.clock.advance(seconds=30 + 61 + 5)  # past exp and the allowed skew
        assert_generic_401(await client.get(callback))
    assert await refusals(admin) == ["OIDC ID token expired"]


async def test_pending_login_expires(
    admin: Env, oidc_provider: Provider, op_http: httpx.AsyncClient
) -> None:
    created = await add_provider(admin, oidc_provider)
    async with browser(admin) as client:
        callback = await authorize(op_http, await start(client, created["login_url"]))
        admin.clock.advance(seconds=601)
        assert_generic_401(await client.get(callback))
    assert await refusals(admin) == ["the pending login expired"]


async def test_replayed_callback_and_reused_code_refused(
    admin: Env, oidc_provider: Provider, op_http: httpx.AsyncClient
) -> None:
    created = await add_provider(admin, oidc_provider)
    async with browser(admin) as client:
        callback = await authorize(op_http, await start(client, created["login_url"]))
        pending = dict(client.cookies)
        assert (await client.get(callback)).status_code == 303
    # Someone who captured both the pending cookie and the callback URL replays them.
    async with browser(admin) as thief:
        for name, value in pending.items():
            thief.cookies.set(name, value, domain="corral.test")
        assert_generic_401(await thief.get(callback))
    assert await refusals(admin) == ["this login was already completed (replayed callback)"]
    # The code itself is single-use at the provider too (its own refusal, through us).
    async with browser(admin) as client:
        fresh = await start(client, created["login_url"])
        state = dict(parse_qsl(urlsplit(fresh).query))["state"]
        code = dict(parse_qsl(urlsplit(callback).query))["code"]
        assert_generic_401(await client.get(with_query(callback, code=code, state=state)))
    assert (await refusals(admin))[-1] == "OIDC token endpoint refused: invalid_grant"


async def test_callback_without_the_pending_cookie_is_refused(
    admin: Env, oidc_provider: Provider, op_http: httpx.AsyncClient
) -> None:
    """Login CSRF: a callback link planted in another browser signs nobody in."""
    created = await add_provider(admin, oidc_provider)
    async with browser(admin) as attacker:
        callback = await authorize(op_http, await start(attacker, created["login_url"]))
    async with browser(admin) as victim:
        assert_generic_401(await victim.get(callback))
        victim.cookies.set("corral_sso_oidc", "v1:AAAA", domain="corral.test")
        assert_generic_401(await victim.get(callback))
    assert await refusals(admin) == [
        "no pending login in this browser",
        "the pending-login cookie is not valid",
    ]


async def test_pkce_missing_or_wrong_is_refused_by_the_provider(
    admin: Env, oidc_provider: Provider, op_http: httpx.AsyncClient
) -> None:
    created = await add_provider(admin, oidc_provider)
    async with browser(admin) as client:
        url = await start(client, created["login_url"])
        stripped = with_query(url, code_challenge=None, code_challenge_method=None)
        callback = await authorize(op_http, stripped)
        assert dict(parse_qsl(urlsplit(callback).query))["error"] == "invalid_request"
        assert_generic_401(await client.get(callback))
    async with browser(admin) as other, browser(admin) as client:
        theirs = dict(parse_qsl(urlsplit(await start(other, created["login_url"])).query))
        url = with_query(
            await start(client, created["login_url"]), code_challenge=theirs["code_challenge"]
        )
        assert_generic_401(await client.get(await authorize(op_http, url)))
    assert await refusals(admin) == [
        "OIDC provider refused: invalid_request",
        "OIDC token endpoint refused: invalid_grant",
    ]


async def test_email_rules(admin: Env, oidc_provider: Provider, op_http: httpx.AsyncClient) -> None:
    created = await add_provider(admin, oidc_provider, config={"allowed_domains": ["corp.test"]})
    async with browser(admin) as client:
        assert_generic_401(await sso_login(admin, client, op_http, created["login_url"]))
    oidc_provider.user = {**oidc_provider.user, "email": "g@corp.test", "email_verified": False}
    async with browser(admin) as client:
        assert_generic_401(await sso_login(admin, client, op_http, created["login_url"]))
    assert await refusals(admin) == [
        "email domain example.test is not allowed",
        "the provider has not verified this email address",
    ]


async def test_disabled_provider_and_other_workspace(
    admin: Env, oidc_provider: Provider, op_http: httpx.AsyncClient
) -> None:
    created = await add_provider(admin, oidc_provider)
    patched = await admin.client.patch(
        f"/api/v1/sso/providers/{created['id']}", json={"enabled": False}
    )
    assert patched.status_code == 200 and patched.json()["enabled"] is False
    async with browser(admin) as client:
        assert_generic_401(await client.get(created["login_url"]))
    assert await refusals(admin) == ["identity provider is disabled"]
    options = await admin.client.get("/api/v1/sso/login-options?workspace=default")
    assert options.json() == {"workspace": "default", "providers": []}

    other = await admin.services.workspaces.create("other")
    theirs = await admin.services.sso.create_provider(
        other.id, "theirs", SsoProtocol.OIDC, config={"issuer": oidc_provider.issuer}
    )
    async with browser(admin) as client:
        login = f"/api/v1/sso/oidc/{theirs.id}/login?workspace=default"
        missing = f"/api/v1/sso/oidc/{'0' * 32}/login?workspace=default"
        assert (await client.get(login)).json() == (await client.get(missing)).json() | {
            "instance": f"/api/v1/sso/oidc/{theirs.id}/login"
        }
        assert (await client.get(login)).status_code == 404
    for method in ("GET", "PATCH", "DELETE"):
        response = await admin.client.request(
            method, f"/api/v1/sso/providers/{theirs.id}", json={"enabled": False}
        )
        assert response.status_code == 404, method
    denied = await admin.events("api.not_found")
    assert len(denied) == 6 and {e.target.rsplit("/", 1)[-1] for e in denied} == {
        theirs.id,
        "0" * 32,
    }
    assert (await admin.services.sso.provider(other.id, theirs.id)).enabled is True


async def test_return_to_stays_on_this_origin(
    admin: Env, oidc_provider: Provider, op_http: httpx.AsyncClient
) -> None:
    """The same rule as SAML's (one function): a foreign target is refused at the start,
    before any state is sealed; a URL on this broker's own origin becomes its path."""
    created = await add_provider(admin, oidc_provider)
    for target in ("https://evil.test/", "//evil.test/x", "/\\evil.test", "servers", "/a b"):
        async with browser(admin) as client:
            refused = await client.get(with_query(created["login_url"], return_to=target))
            assert refused.status_code == 400, target
            assert refused.json()["detail"] == "return_to must be a path on this broker"
            assert "set-cookie" not in refused.headers, target
    own = ORIGIN.rstrip("/") + "/servers?x=1"
    async with browser(admin) as client:
        url = await start(client, created["login_url"], return_to=own)
        response = await client.get(await authorize(op_http, url))
        assert response.status_code == 303 and response.headers["location"] == "/servers?x=1"


async def test_admin_api_validation_and_secrets(
    admin: Env, oidc_provider: Provider, tmp_path: Path
) -> None:
    post = admin.client.post
    base = {"name": "g", "protocol": "oidc", "client_secret": "x"}
    cases = [
        ({**base, "config": {"issuer": "http://idp.example", "client_id": "c"}}, "https"),
        ({**base, "config": {"issuer": "https://idp.example"}}, "client_id"),
        ({**base, "config": {"issuer": "https://i.example", "client_id": "c", "x": 1}}, "x"),
        (
            {
                **base,
                "client_secret": None,
                "config": {"issuer": "https://i.example", "client_id": "c"},
            },
            "client_secret",
        ),
        (
            {
                **base,
                "preset": "google",
                "config": {"client_id": "c", "issuer": "https://x.example"},
            },
            "issuer",
        ),
        ({**base, "protocol": "saml", "client_secret": None, "config": {}}, "idp_metadata_xml"),
        ({**base, "default_role": "superuser", "config": {}}, "default_role"),
    ]
    for body, word in cases:
        response = await post("/api/v1/sso/providers", json=body)
        assert response.status_code == 400 and word in response.json()["detail"], (
            body,
            response.text,
        )

    google = await post(
        "/api/v1/sso/providers",
        json={
            **base,
            "preset": "google",
            "config": {"client_id": "c.apps", "hosted_domain": "Corp.Test"},
        },
    )
    assert google.status_code == 201, google.text
    view = google.json()
    assert view["config"]["issuer"] == "https://accounts.google.com"
    assert view["config"]["hosted_domain"] == "corp.test"
    assert view["config"]["scopes"] == ["openid", "email", "profile"]
    saml = await post(
        "/api/v1/sso/providers",
        json={
            "name": "adfs",
            "protocol": "saml",
            "config": {
                "idp_entity_id": "https://adfs.example/e",
                "idp_sso_url": "https://adfs.example/sso",
                "idp_x509_cert": make_key_pair(tmp_path, "adfs").cert_pem,
            },
        },
    )
    assert saml.status_code == 201, saml.text
    assert saml.json()["callback_url"].endswith(f"/api/v1/sso/saml/{saml.json()['id']}/acs")
    listed = (await admin.client.get("/api/v1/sso/providers")).json()
    assert [p["name"] for p in listed["providers"]] == ["adfs", "g"]
    assert listed["next_cursor"] is None
    assert "c.apps" in str(listed) and "x" not in [
        p.get("client_secret") for p in listed["providers"]
    ]

    # The secret is sealed to the row: never in the database in clear, never answered.
    row = await admin.services.sso.provider(admin.ws, view["id"])
    box = admin.identity.oidc.secrets
    assert row.secret_box.startswith("v1:") and box.open(row.secret_box, bound_to=row.id) == b"x"
    with pytest.raises(CorralError):  # bound to its row: useless copied onto another
        box.open(row.secret_box, bound_to=saml.json()["id"])
    async with admin.services.db.transaction() as s:
        events = (await s.exec(select(AuditEvent))).all()
    assert all("client_secret" not in e.details for e in events)

    options = (await admin.client.get("/api/v1/sso/login-options")).json()
    assert {p["name"] for p in options["providers"]} == {"adfs", "g"}
    assert all(set(p) == {"id", "name", "protocol", "login_url"} for p in options["providers"])


async def test_only_superusers_configure(admin: Env) -> None:
    await admin.services.users.set_role(admin.ws, admin.user, role=Role.STAFF, actor=SYSTEM)
    assert (await admin.client.get("/api/v1/sso/providers")).status_code == 200
    response = await admin.client.post(
        "/api/v1/sso/providers", json={"name": "n", "protocol": "oidc", "config": {}}
    )
    assert response.status_code == 403


async def test_hosted_domain_is_sent_and_enforced(
    admin: Env, oidc_provider: Provider, op_http: httpx.AsyncClient
) -> None:
    created = await add_provider(admin, oidc_provider, config={"hosted_domain": "corp.test"})
    async with browser(admin) as client:
        url = await start(client, created["login_url"])
        assert dict(parse_qsl(urlsplit(url).query))["hd"] == "corp.test"
        assert_generic_401(await client.get(await authorize(op_http, url)))
    oidc_provider.user = {**oidc_provider.user, "hd": "corp.test"}
    async with browser(admin) as client:
        assert (await sso_login(admin, client, op_http, created["login_url"])).status_code == 303
    assert await refusals(admin) == ["the account is not in the required hosted domain"]


async def test_logins_started_are_rate_limited(admin: Env, oidc_provider: Provider) -> None:
    created = await add_provider(admin, oidc_provider)
    admin.identity.oidc.per_source.limit = 2
    async with browser(admin) as client:
        for _ in range(2):
            await start(client, created["login_url"])
        limited = await client.get(created["login_url"])
        assert limited.status_code == 429 and "Retry-After" in limited.headers
    assert await refusals(admin) == ["too many logins started"]
