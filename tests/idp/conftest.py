"""Identity fixtures: the real app in-process over HTTPS-looking URLs (so Secure cookies
flow), a real aiosmtpd SMTP server and a real HTTP webhook receiver on 127.0.0.1 port 0."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pyotp
import pytest
from aiosmtpd.smtp import SMTP, Envelope, Session
from argon2 import PasswordHasher
from starlette.applications import Starlette

from broker.app import create_app
from broker.audit import SYSTEM
from broker.policy import PolicyRuntime, PolicySource
from broker.runtime import Runtime
from broker.services import Services
from broker.settings import Settings
from broker.store.models import AuditEvent, Role
from idp import Identity
from idp.delivery import SmtpMailSender, WebhookSmsSender
from tests.conftest import TEST_KEY, Clock
from tests.idp.oidc_provider import Provider

ORIGIN = "https://corral.test"
PASSWORD = "Tr0ub4dor&3-horse-staple"
CHEAP = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)


class Mailbox:
    """An aiosmtpd handler that keeps every message it accepts."""

    def __init__(self) -> None:
        self.messages: list[Envelope] = []

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.messages.append(envelope)
        return "250 OK"

    def last_code(self) -> str:
        text = self.messages[-1].content
        body = text.decode() if isinstance(text, bytes) else str(text)
        return body.split("code is ")[1][:6]


@pytest.fixture
async def mailbox() -> AsyncIterator[tuple[Mailbox, int]]:
    box = Mailbox()
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: SMTP(box), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    yield box, port
    server.close()
    await server.wait_closed()


@dataclass
class Webhook:
    url: str
    received: list[dict[str, Any]] = field(default_factory=list)
    status: int = 200

    def last_code(self) -> str:
        return str(self.received[-1]["text"]).split("code is ")[1][:6]


@pytest.fixture
def sms_webhook() -> Iterator[Webhook]:
    hook = Webhook("")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            hook.received.append(json.loads(body))
            self.send_response(hook.status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    hook.url = f"http://127.0.0.1:{server.server_address[1]}/sms"
    yield hook
    server.shutdown()
    server.server_close()
    thread.join()


@dataclass
class Env:
    client: httpx.AsyncClient
    services: Services
    identity: Identity
    clock: Clock
    ws: str
    user: str
    email: str
    mailbox: Mailbox
    sms: Webhook
    app: Starlette

    def remember(self, response: httpx.Response) -> dict[str, Any]:
        """Keep the CSRF token the way a page's script would."""
        body: dict[str, Any] = response.json()
        if "csrf_token" in body:
            self.client.headers["X-Corral-CSRF"] = body["csrf_token"]
        return body

    async def login(
        self, email: str | None = None, password: str = PASSWORD, **extra: Any
    ) -> httpx.Response:
        response = await self.client.post(
            "/api/v1/auth/login",
            json={"email": email or self.email, "password": password, **extra},
        )
        if response.status_code == 200:
            self.remember(response)
        return response

    def totp_now(self, secret: str, *, offset_steps: int = 0) -> str:
        return pyotp.TOTP(secret).at(self.clock.now.timestamp() + 30 * offset_steps)

    async def events(self, action: str) -> list[AuditEvent]:
        from sqlmodel import select

        async with self.services.db.transaction() as s:
            query = select(AuditEvent).where(
                AuditEvent.workspace_id == self.ws, AuditEvent.action == action
            )
            return list((await s.exec(query)).all())


def build_identity(services: Services, settings: Settings, **kwargs: Any) -> Identity:
    return Identity.build(services, TEST_KEY, settings, hasher=CHEAP, **kwargs)


@pytest.fixture
async def env(
    services: Services,
    clock: Clock,
    tmp_path: Path,
    mailbox: tuple[Mailbox, int],
    sms_webhook: Webhook,
) -> AsyncIterator[Env]:
    box, port = mailbox
    settings = Settings(data_dir=tmp_path, public_url=ORIGIN)
    identity = build_identity(
        services,
        settings,
        mail=SmtpMailSender("127.0.0.1", port, "corral@corral.test"),
        sms=WebhookSmsSender(sms_webhook.url),
    )
    ws = await services.workspaces.create("default")
    email = "alice@corral.test"
    user = await services.users.create(ws.id, email, role=Role.SUPERUSER)
    await identity.login.set_password(ws.id, user.id, PASSWORD, actor=SYSTEM)
    policy = PolicyRuntime(PolicySource.from_settings(settings), services)
    runtime = Runtime(settings, services.db, services, policy)
    app = create_app(runtime, identity=identity)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url=ORIGIN) as client:
        yield Env(client, services, identity, clock, ws.id, user.id, email, box, sms_webhook, app)
    await identity.oidc.aclose()  # the app's lifespan would; ASGITransport runs none


@pytest.fixture
async def oidc_provider() -> AsyncIterator[Provider]:
    """A real OpenID provider (authlib's server) on 127.0.0.1 port 0."""
    op = Provider()
    server, task = await op.serve()
    yield op
    server.should_exit = True
    await task
