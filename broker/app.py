"""The ASGI application: the broker's routes over one :class:`Runtime`."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.routing import BaseRoute
from starlette.types import Receive, Scope, Send
from starlette.websockets import WebSocket

from api.agents import agent_routes
from api.approvals import approval_routes
from api.audit import audit_routes
from api.device import device_routes
from api.device_page import device_page_routes
from api.exec_stream import exec_stream_routes
from api.grants import grant_routes
from api.groups import group_routes
from api.guard import RefuseNul
from api.identity import identity_routes
from api.identity_admin import identity_admin_routes
from api.mfa import mfa_routes
from api.openapi import openapi_routes
from api.policy import policy_routes
from api.policy_admin import policy_admin_routes
from api.problems import ApiError, http_problem_handler, problem_handler
from api.recordings import recording_routes
from api.revocation import revocation_routes
from api.routes import routes
from api.saml import saml_routes
from api.server_admin import server_admin_routes
from api.servers import server_routes
from api.service_accounts import service_account_routes
from api.sessions import session_routes
from api.shares import share_routes
from api.sso import sso_routes
from api.sso_login import sso_login_routes
from api.tokens import token_routes
from api.users import user_routes
from api.workspace import workspace_routes
from broker.agents.channels import CHANNEL_PATH
from broker.agents.hub import CONTROL_PATH, AgentHub
from broker.audit import SYSTEM
from broker.errors import CorralError
from broker.gateway import GatewaySessions, Revocation
from broker.gateway.retention import RecordingRetention
from broker.policy import MfaAges
from broker.runtime import Runtime
from idp import Identity
from idp.device import DeviceGrants
from idp.purge import IdentityPurge
from policies import ReloadResult

__all__ = ["BrokerApp", "create_app"]


class BrokerApp(Starlette):
    """Starlette, except that the agents' own WebSockets go straight to the hub.

    A broker holds one control socket per agent, thousands of them idle for days. Routed
    the usual way, each would keep Starlette's middleware and router coroutines (and their
    closures) alive for its whole life: about 5 KiB per connection in a bare uvicorn test
    (``benchmarks/idle_agents.py``, docs/benchmarks.md). Nothing in that stack does
    anything for these two paths: the hub authenticates, audits and closes them itself.
    """

    hub: AgentHub

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket" and scope["path"] in (CONTROL_PATH, CHANNEL_PATH):
            scope["app"] = self
            websocket = WebSocket(scope, receive, send)
            if scope["path"] == CONTROL_PATH:
                await self.hub.serve_control(websocket)
            else:
                await self.hub.serve_channel(websocket)
            return
        await super().__call__(scope, receive, send)


def api_for_apps_routes() -> list[BaseRoute]:
    """Issue #7's resources: workspace, users, groups, servers admin, grants, tokens,
    service accounts and audit queries."""
    return [
        *workspace_routes(),
        *user_routes(),
        *group_routes(),
        *server_admin_routes(),
        *grant_routes(),
        *token_routes(),
        *service_account_routes(),
        *audit_routes(),
    ]


def create_app(
    runtime: Runtime,
    *,
    hub: AgentHub | None = None,
    identity: Identity | None = None,
    mfa: MfaAges | None = None,
    device: DeviceGrants | None = None,
) -> Starlette:
    """``identity`` is the login and MFA layer (built from the runtime unless given);
    ``mfa`` answers how long ago a user last passed MFA, by default identity's step-up
    service (``NoMfa`` makes nobody count as recently verified); ``device`` holds the
    pending device-code logins (tests pass one with a short polling interval)."""
    agent_hub = hub or AgentHub(runtime.services)
    # The audit log holds the broker key; identity derives its own subkeys from it.
    identity = identity or Identity.build(
        runtime.services, runtime.services.audit.key, runtime.settings
    )

    retention = RecordingRetention(runtime.services, runtime.settings.data_dir / "recordings")

    async def recheck_sessions(result: ReloadResult) -> None:
        """A new policy may hide servers: end the live sessions it no longer allows."""
        gateway: GatewaySessions | None = getattr(app.state, "gateway", None)
        if gateway is None:
            return
        revocation = Revocation(gateway)
        for workspace_id in {s.workspace_id for s in gateway.live.values()}:
            await revocation.access_changed(workspace_id, actor=SYSTEM)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        runtime.policy.start_watching(runtime.settings.policy_watch_seconds)
        purge = asyncio.create_task(retention.run(), name="recording-retention")
        identity_purge = asyncio.create_task(
            IdentityPurge(runtime.services).run(), name="identity-purge"
        )
        try:
            yield
        finally:
            purge.cancel()
            identity_purge.cancel()
            await agent_hub.close_all()
            await identity.oidc.aclose()

    app = BrokerApp(
        routes=[
            *routes(),
            *identity_routes(),
            *identity_admin_routes(),
            *saml_routes(),
            *mfa_routes(),
            *agent_routes(),
            *session_routes(),
            *recording_routes(),
            *revocation_routes(),
            *share_routes(),
            *server_routes(),
            *policy_routes(),
            *policy_admin_routes(),
            *approval_routes(),
            *sso_routes(),
            *sso_login_routes(),
            *api_for_apps_routes(),
            *openapi_routes(),
            *device_routes(),
            *device_page_routes(),
            *exec_stream_routes(),
        ],
        middleware=[Middleware(RefuseNul)],
        exception_handlers={
            ApiError: problem_handler,
            CorralError: problem_handler,
            HTTPException: http_problem_handler,
            Exception: problem_handler,
        },
        lifespan=lifespan,
    )
    runtime.policy.on_change(recheck_sessions)
    app.state.runtime = runtime
    app.state.services = runtime.services
    app.state.hub = agent_hub
    app.hub = agent_hub
    app.state.identity = identity
    app.state.mfa = mfa or identity.step_up
    app.state.device = device or DeviceGrants()
    return app
