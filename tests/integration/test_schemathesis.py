"""Schemathesis against the live broker: a real uvicorn server on 127.0.0.1 (port 0) over a
real PostgreSQL database, driven through the OpenAPI document it serves.

Every operation is called with generated requests, as the workspace's superuser with an
admin-scope token and again with a read-scope token; every answer must be no 5xx, a
documented status, the documented content type and match the documented schema. A
second round feeds real ids (a server, a recording, an approval) into the path
parameters so the success answers of the id-bearing reads are checked too, not only
their 404s.

Left out, and why:
- ``GET /api/v1/events`` (Server-Sent Events) never ends by design, so a generated call
  would hang; tests/integration/test_approvals_api.py reads that stream.
- ``DELETE /api/v1/workspace`` (when the workspace routes exist) would delete the very
  workspace the tokens belong to; ``POST /api/v1/auth/logout`` in the browser-session pass
  would end the session that pass runs on.
- Real ids are not fed to ``DELETE`` routes or to ``POST /api/v1/users/{id}/disable``:
  removing the seeded server or disabling the caller would destroy the test's own setup
  (those routes still run with generated ids, answering 404).

Not left out: ``PUT /api/v1/policy`` runs with generated bodies in every pass. It cannot
write anything here: the broker runs the packaged default policy (no
``CORRAL_POLICY_FILE``), which the route refuses with 409 after the superuser's policy
step-up (403 ``mfa-required``: these credentials carry no fresh MFA), so even a generated
body that is a valid policy never replaces it. Exclude it if either of those changes.

The server runs in its own thread and event loop: schemathesis calls are blocking.
"""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import hypothesis
import pytest
import schemathesis
import uvicorn
from hypothesis import HealthCheck, Phase, given
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from api.openapi import OPENAPI_PATH
from broker.app import create_app
from broker.audit import SYSTEM
from broker.bootstrap import initialise
from broker.runtime import open_runtime
from broker.settings import load_settings
from broker.store.models import Role, TokenScope
from idp import Identity
from idp.sessions import COOKIE, CSRF_HEADER
from tests.conftest import POSTGRES_URL, _pg_exec, _with_db
from tests.integration.conftest import bind

AGENT_UNREACHABLE = {502, 503}


def no_internal_error(ctx: Any, response: Any, case: Any) -> bool | None:
    """``not_a_server_error``, except the broker's deliberate 502 ``exec-failed`` and 503
    ``agent-offline`` (the seeded server has no agent connected): those must still be
    documented (``status_code_conformance``) and match ``Problem``."""
    if response.status_code in AGENT_UNREACHABLE:
        return None
    result: bool | None = not_a_server_error(ctx, response, case)
    return result


CHECKS = [
    no_internal_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]
EXCLUDED = {
    ("GET", "/api/v1/events"),  # an endless stream
    ("DELETE", "/api/v1/workspace"),  # (once it exists) would delete the test's workspace
}
NO_REAL_IDS = {("POST", "/api/v1/users/{user_id}/disable")}
ENDS_THE_SESSION = {("POST", "/api/v1/auth/logout")}
MAX_EXAMPLES = 10
POSITIVE = GenerationMode.POSITIVE


@dataclass
class Live:
    url: str = ""
    admin: str = ""
    read: str = ""
    cookie: str = ""
    csrf: str = ""
    ids: dict[str, str] = field(default_factory=dict)
    ready: threading.Event = field(default_factory=threading.Event)
    error: BaseException | None = None
    server: uvicorn.Server | None = None


async def _seed(runtime: Any, identity: Identity, live: Live, data_dir: Path) -> None:
    """Tokens and a browser session for the superuser; something real for the id-bearing
    reads to find."""
    services = runtime.services
    init = await initialise(services)
    ws, admin = init.workspace.id, init.admin
    assert init.token is not None
    live.admin = init.token
    _, live.read = await services.tokens.create(
        ws, admin.id, name="read", scope=TokenScope.READ, expires_in_days=30, actor=SYSTEM
    )
    password = f"pw-{uuid.uuid4().hex}"
    await identity.login.set_password(ws, admin.id, password, actor=SYSTEM)
    signed_in = await identity.browser.password_login(
        ws, admin.email, password, source="127.0.0.1", user_agent="schemathesis"
    )
    live.cookie = signed_in.secret
    live.csrf = identity.browser.csrf_token(signed_in.secret)
    _, registration = await services.agents.create_registration_token(ws)
    server, _, _ = await services.agents.register(
        registration, name="web-1", platform="Debian GNU/Linux 12", tags={"env": "test"}
    )
    user = await services.users.create(ws, "dev@example.com", role=Role.USER)
    session = await services.sessions.open(
        ws, user_id=admin.id, server_id=server.id, unix_user="deploy", actor=SYSTEM
    )
    cast = data_dir / "seed.cast"
    cast.write_text('{"version": 2, "width": 80, "height": 24}\n[0.1, "o", "hello\\r\\n"]\n')
    recording = await services.recordings.add(ws, session.id, str(cast))
    await services.recordings.finish(ws, recording.id, cast.stat().st_size)
    approval = await services.approvals.request(
        ws, requester_id=user.id, command="systemctl restart nginx", approvers=[admin.id]
    )
    live.ids = {
        "server_id": server.id,
        "server": server.name,
        "recording_id": recording.id,
        "approval_id": approval.id,
    }


def _serve(live: Live, database_url: str, data_dir: Path) -> None:
    async def main() -> None:
        sock = bind()
        port = sock.getsockname()[1]
        settings = load_settings(
            {
                "CORRAL_DATA_DIR": str(data_dir),
                "CORRAL_DATABASE_URL": database_url,
                "CORRAL_PORT": str(port),
                "CORRAL_PUBLIC_URL": f"http://127.0.0.1:{port}",
            },
            cwd=data_dir,
        )
        async with open_runtime(settings) as runtime:
            services = runtime.services
            identity = Identity.build(services, services.audit.key, runtime.settings)
            await _seed(runtime, identity, live, data_dir)
            app = create_app(runtime, identity=identity)
            config = uvicorn.Config(app, lifespan="on", log_level="warning")
            live.server = uvicorn.Server(config)
            live.url = f"http://127.0.0.1:{port}"
            serving = asyncio.create_task(live.server.serve(sockets=[sock]))
            while not live.server.started and not serving.done():
                await asyncio.sleep(0.01)
            live.ready.set()
            await serving

    try:
        asyncio.run(main())
    except BaseException as exc:
        live.error = exc
        live.ready.set()


@pytest.fixture(scope="module")
def live(pg_template: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    name = f"corral_st_{uuid.uuid4().hex[:12]}"
    asyncio.run(_pg_exec(f'CREATE DATABASE "{name}" TEMPLATE "{pg_template}"'))
    url = _with_db(POSTGRES_URL, name)
    data_dir = tmp_path_factory.mktemp("schemathesis")
    state = Live()
    thread = threading.Thread(target=_serve, args=(state, url, data_dir), daemon=True)
    thread.start()
    try:
        assert state.ready.wait(60), "the broker did not start"
        if state.error is not None:
            raise state.error
        yield state
    finally:
        if state.server is not None:
            state.server.should_exit = True
        thread.join(30)
        asyncio.run(_pg_exec(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def _exercise(
    live: Live,
    token: str | None,
    *,
    real_ids: bool = False,
    mode: GenerationMode = POSITIVE,
) -> list[str]:
    """Run every operation with a bearer ``token`` (``None``: the browser session cookie
    and its CSRF header); the failures, one paragraph each (empty when all conform)."""
    schema = schemathesis.openapi.from_url(live.url + OPENAPI_PATH)
    headers = {"Authorization": f"Bearer {token}"} if token else {CSRF_HEADER: live.csrf}
    cookies = {} if token else {COOKIE: live.cookie}
    failures: list[str] = []
    ran = 0
    for result in schema.get_all_operations():
        operation = result.ok()
        key = (operation.method.upper(), operation.path)
        if key in EXCLUDED or (token is None and key in ENDS_THE_SESSION):
            continue
        overrides: dict[str, Any] | None = None
        if real_ids:
            names = [p.name for p in operation.path_parameters]
            if not names or key in NO_REAL_IDS or key[0] == "DELETE":
                continue
            if not all(n in live.ids for n in names):
                continue
            overrides = {n: live.ids[n] for n in names}

        @hypothesis.settings(
            max_examples=MAX_EXAMPLES,
            phases=[Phase.explicit, Phase.generate],
            derandomize=True,
            database=None,
            deadline=None,
            suppress_health_check=list(HealthCheck),
        )
        @given(case=operation.as_strategy(mode, path_parameters=overrides))
        def check(case: Any) -> None:
            case.call_and_validate(
                base_url=live.url, headers=headers, cookies=cookies, checks=CHECKS
            )

        ran += 1
        try:
            check()
        except hypothesis.errors.Unsatisfiable:
            assert mode is not POSITIVE, operation.label  # negative: nothing here to break
        except (Exception, BaseExceptionGroup) as exc:  # schemathesis' FailureGroup
            failures.append(f"{operation.label}: {str(exc).strip()[:2000]}")
    assert ran > (5 if real_ids else 40), f"only {ran} operations ran"
    return failures


@pytest.mark.slow
def test_every_operation_conforms_as_admin(live: Live) -> None:
    failures = _exercise(live, live.admin)
    assert not failures, "\n\n".join(failures)


@pytest.mark.slow
def test_malformed_requests_are_refused_as_documented(live: Live) -> None:
    """Negative generation: bodies, queries and path parameters that break the schema must
    get a documented problem (a 4xx), never a 500."""
    failures = _exercise(live, live.admin, mode=GenerationMode.NEGATIVE)
    assert not failures, "\n\n".join(failures)


@pytest.mark.slow
def test_every_operation_conforms_with_a_read_token(live: Live) -> None:
    failures = _exercise(live, live.read)
    assert not failures, "\n\n".join(failures)


@pytest.mark.slow
def test_every_operation_conforms_in_a_browser_session(live: Live) -> None:
    """The cookie session reaches the MFA and session routes a bearer token cannot."""
    failures = _exercise(live, None)
    assert not failures, "\n\n".join(failures)


@pytest.mark.slow
def test_real_ids_answer_as_documented(live: Live) -> None:
    failures = _exercise(live, live.admin, real_ids=True)
    assert not failures, "\n\n".join(failures)
