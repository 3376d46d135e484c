"""The REST API in-process (httpx over ASGI) on both backends: who am I, the 401 family,
and problem+json for every error without internal details."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from broker.app import create_app
from broker.audit import SYSTEM
from broker.errors import StoreError
from broker.policy import PolicyRuntime, PolicySource
from broker.runtime import Runtime
from broker.services import Services
from broker.settings import Settings
from broker.store.models import Role, TokenScope

PROBLEM = "application/problem+json"


@dataclass
class Api:
    client: httpx.AsyncClient
    services: Services
    ws: str
    user: str
    token_id: str
    secret: str

    def auth(self, secret: str | None = None) -> dict[str, str]:
        return {"Authorization": f"Bearer {secret or self.secret}"}


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    """The API layer is backend-neutral (test_services/test_store cover both): SQLite only."""
    return f"sqlite+aiosqlite:///{tmp_path / 'corral.db'}"


@pytest.fixture
async def api(services: Services, tmp_path: Path) -> AsyncIterator[Api]:
    ws = await services.workspaces.create("acme")
    user = await services.users.create(ws.id, "root@acme.test", role=Role.SUPERUSER)
    token, secret = await services.tokens.create(
        ws.id, user.id, name="t", scope=TokenScope.ADMIN, expires_in_days=30, actor=SYSTEM
    )
    settings = Settings(data_dir=tmp_path)
    policy = PolicyRuntime(PolicySource.from_settings(settings), services)
    runtime = Runtime(settings, services.db, services, policy)
    transport = httpx.ASGITransport(app=create_app(runtime), raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://corral.test") as client:
        yield Api(client, services, ws.id, user.id, token.id, secret)


def assert_problem(response: httpx.Response, status: int, code: str) -> dict[str, object]:
    assert response.status_code == status
    assert response.headers["content-type"] == PROBLEM
    body = response.json()
    assert body["type"] == f"urn:corral:problem:{code}"
    assert body["status"] == status
    assert body["instance"] == response.request.url.path
    assert isinstance(body["title"], str) and isinstance(body["detail"], str)
    text = response.text
    for leak in ("Traceback", "sqlalchemy", "SELECT", "asyncpg", "aiosqlite", 'File "'):
        assert leak not in text
    return body


async def test_whoami(api: Api) -> None:
    response = await api.client.get("/api/v1/whoami", headers=api.auth())
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.json() == {
        "user": {"id": api.user, "email": "root@acme.test", "role": "superuser"},
        "workspace": {"id": api.ws, "name": "acme"},
        "token": {"id": api.token_id, "scope": "admin"},
    }
    assert api.secret not in response.text


async def test_healthz_needs_no_token(api: Api) -> None:
    response = await api.client.get("/healthz")
    assert response.status_code == 200 and response.json() == {"status": "ok"}


async def test_missing_or_malformed_authorization(api: Api) -> None:
    headers: list[dict[str, str]] = [{}] + [
        {"Authorization": value}
        for value in (
            "",
            "Basic YWRtaW46YWRtaW4=",
            "Bearer",
            "Bearer    ",
            f"Token {api.secret}",
            api.secret,
        )
    ]
    for header in headers:
        response = await api.client.get("/api/v1/whoami", headers=header)
        body = assert_problem(response, 401, "unauthenticated")
        assert response.headers["www-authenticate"] == "Bearer"
        assert "Bearer" in str(body["detail"]), header
        assert api.secret not in response.text


async def test_scheme_is_case_insensitive(api: Api) -> None:
    response = await api.client.get(
        "/api/v1/whoami", headers={"Authorization": f"bearer {api.secret}"}
    )
    assert response.status_code == 200


async def test_garbage_token(api: Api) -> None:
    for secret in ("garbage", "crlpat_nothex_nothex", f"crlpat_{'a' * 32}_{'b' * 48}"):
        response = await api.client.get("/api/v1/whoami", headers=api.auth(secret))
        body = assert_problem(response, 401, "unauthenticated")
        assert body["detail"] == "invalid token"
        assert response.headers["www-authenticate"] == "Bearer"


async def test_forged_secret_for_a_real_token(api: Api) -> None:
    forged = f"crlpat_{api.token_id}_{'0' * 48}"
    response = await api.client.get("/api/v1/whoami", headers=api.auth(forged))
    body = assert_problem(response, 401, "unauthenticated")
    assert body["detail"] == "invalid token"  # same answer as an unknown token
    last = (await api.services.audit.events(api.ws, limit=1000))[-1]
    assert (last.action, last.outcome) == ("token.refused", "denied")


async def test_revoked_token(api: Api) -> None:
    await api.services.tokens.revoke(api.ws, api.token_id, actor=SYSTEM)
    response = await api.client.get("/api/v1/whoami", headers=api.auth())
    body = assert_problem(response, 401, "unauthenticated")
    assert body["detail"] == "token revoked"
    last = (await api.services.audit.events(api.ws, limit=1000))[-1]
    assert (last.action, last.outcome) == ("token.refused", "denied")


async def test_disabled_user(api: Api) -> None:
    await api.services.users.set_disabled(api.ws, api.user, True, actor=SYSTEM)
    response = await api.client.get("/api/v1/whoami", headers=api.auth())
    assert_problem(response, 401, "unauthenticated")


async def test_unknown_path_is_a_problem(api: Api) -> None:
    for path in ("/nope", "/api/v1/nope", "/api/v2/whoami"):
        response = await api.client.get(path, headers=api.auth())
        body = assert_problem(response, 404, "not-found")
        assert body["title"] == "Not Found"
        assert "www-authenticate" not in response.headers


async def test_wrong_method_is_a_problem(api: Api) -> None:
    response = await api.client.post("/api/v1/whoami", headers=api.auth())
    assert_problem(response, 405, "method-not-allowed")


async def test_audit_verify(api: Api) -> None:
    response = await api.client.get("/api/v1/audit/verify", headers=api.auth())
    assert response.status_code == 200
    body = response.json()
    assert body["ok"] is True and body["broken"] is None
    # workspace, user, token created; this call itself (api.request under the token id)
    assert body["checked"] == body["head_seq"] == 4
    assert_problem(await api.client.get("/api/v1/audit/verify"), 401, "unauthenticated")


async def test_audit_verify_needs_staff(api: Api) -> None:
    user = await api.services.users.create(api.ws, "pleb@acme.test")
    _, secret = await api.services.tokens.create(
        api.ws, user.id, name="t", scope=TokenScope.WRITE, expires_in_days=30
    )
    response = await api.client.get("/api/v1/audit/verify", headers=api.auth(secret))
    body = assert_problem(response, 403, "policy-denied")  # the policy's audit.read decides
    assert body["rule_id"] == "role.not-permitted"
    denied = [e for e in await api.services.audit.events(api.ws) if e.action == "action.denied"]
    assert [(e.actor_id, e.target) for e in denied] == [(user.id, "audit.read")]
    me = await api.client.get("/api/v1/whoami", headers=api.auth(secret))
    assert me.status_code == 200 and me.json()["user"]["role"] == "user"


async def test_unexpected_errors_leak_nothing(
    api: Api, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    async def explode(workspace_id: str) -> None:
        raise RuntimeError("secret internal detail /srv/corral/db.py password=hunter2")

    monkeypatch.setattr(api.services.workspaces, "get", explode)
    response = await api.client.get("/api/v1/whoami", headers=api.auth())
    body = assert_problem(response, 500, "internal")
    assert body["detail"] == "Internal error"
    assert "hunter2" not in response.text and "secret internal" not in response.text
    assert any("unhandled error" in r.getMessage() for r in caplog.records)  # logged instead


async def test_store_errors_are_not_shown_to_clients(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def unreachable(workspace_id: str) -> None:
        raise StoreError("cannot reach database postgresql+asyncpg://corral:***@db-7.internal/x")

    monkeypatch.setattr(api.services.workspaces, "get", unreachable)
    response = await api.client.get("/api/v1/whoami", headers=api.auth())
    assert_problem(response, 500, "internal")
    assert "db-7.internal" not in response.text


async def test_read_scope_cannot_write(api: Api) -> None:
    """Creating a registration token or changing a password are writes: a read-scope token
    of a superuser is refused; the same person's write token is not."""
    _, read = await api.services.tokens.create(
        api.ws, api.user, name="r", scope=TokenScope.READ, expires_in_days=30
    )
    _, write = await api.services.tokens.create(
        api.ws, api.user, name="w", scope=TokenScope.WRITE, expires_in_days=30
    )
    minted = "/api/v1/servers/registration-tokens"
    assert_problem(await api.client.post(minted, headers=api.auth(read)), 403, "forbidden")
    created = await api.client.post(minted, headers=api.auth(write))
    assert created.status_code == 201 and created.json()["token"].startswith("crlreg_")
    change = {"current_password": "a-long-old-password", "new_password": "N3w-pass-phrase!"}
    refused = await api.client.post("/api/v1/auth/password", json=change, headers=api.auth(read))
    assert_problem(refused, 403, "forbidden")
