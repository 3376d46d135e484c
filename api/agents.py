"""HTTP endpoints for agents: register and install (their WebSockets: broker.app.BrokerApp).

Registration is the one unauthenticated POST besides login: it trades a single-use token
for a credential. Registration-token issuance is for staff and superusers.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, Field
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, PlainTextResponse, Response
from starlette.routing import BaseRoute, Route

from agent.build import build_zipapp, install_script
from api.auth import authenticate
from api.authz import authorize
from api.spec import Model, body_of, operation
from api.state import runtime_of

__all__ = ["agent_routes"]


class Registration(Model):
    token: Annotated[str, Field(min_length=1)]
    """The single-use registration token (``crlreg_…``)."""
    name: Annotated[str, Field(min_length=1)]
    """The host's name; registering again under the same name keeps the server."""
    tags: dict[str, str] | None = None
    sysinfo: dict[str, Any] | None = None


class Registered(BaseModel):
    server_id: str
    server_name: str
    workspace_id: str
    secret: str
    """The agent's credential, shown once."""


class RegistrationToken(BaseModel):
    token: str
    expires_at: str
    install: str
    """A shell line that installs and registers the agent on a host."""


@operation(
    summary="Register an agent with a registration token",
    tag="servers",
    body=Registration,
    ok=Registered,
    status=201,
    authenticated=False,
    errors=(401,),
)
async def register(request: Request) -> JSONResponse:
    """Trades a single-use registration token for an agent credential."""
    body = await body_of(request, Registration)
    token, name = body.token, body.name
    tags = body.tags or {}
    sysinfo = body.sysinfo or {}
    platform = sysinfo.get("platform")
    platform_name = platform.get("pretty_name", "") if isinstance(platform, dict) else ""
    client = request.client
    server, _credential, secret = await runtime_of(request).services.agents.register(
        token,
        name=name,
        platform=str(platform_name or ""),
        tags=tags,
        source=f"{client.host}" if client else "",
    )
    return JSONResponse(
        {
            "server_id": server.id,
            "server_name": server.name,
            "workspace_id": server.workspace_id,
            "secret": secret,
        },
        status_code=201,
    )


@operation(
    summary="Create a server registration token (staff)",
    tag="servers",
    ok=RegistrationToken,
    status=201,
    scope="write",
)
async def registration_token(request: Request) -> JSONResponse:
    runtime = runtime_of(request)
    principal = await authenticate(request, runtime.services)
    await authorize(request, principal, "servers.register")
    ttl = runtime.settings.registration_token_ttl_seconds
    row, secret = await runtime.services.agents.create_registration_token(
        principal.workspace_id, ttl_seconds=ttl, actor=principal.actor
    )
    url = runtime.settings.effective_public_url
    return JSONResponse(
        {
            "token": secret,
            "expires_at": row.expires_at.isoformat(),
            "install": f"curl -fsSL {url}/agent/install.sh | sudo sh -s -- --token {secret}",
        },
        status_code=201,
    )


@operation(
    summary="The agent's install script",
    tag="servers",
    authenticated=False,
    media_type="text/x-shellscript",
)
async def install_sh(request: Request) -> Response:
    url = runtime_of(request).settings.effective_public_url
    return PlainTextResponse(install_script(url), media_type="text/x-shellscript")


_build_lock = asyncio.Lock()


def _build_once(target: Path) -> None:
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = Path(f"{target}.{os.getpid()}.tmp")
        build_zipapp(str(partial))
        partial.replace(target)


@operation(
    summary="The agent as one Python zipapp",
    tag="servers",
    authenticated=False,
    media_type="application/zip",
)
async def agent_pyz(request: Request) -> Response:
    """The agent as one file, built from this broker's own code on first request."""
    target = runtime_of(request).settings.data_dir / "dist" / "corral-agent.pyz"
    async with _build_lock:
        await asyncio.to_thread(_build_once, target)
    return FileResponse(target, media_type="application/zip", filename="corral-agent.pyz")


def agent_routes() -> list[BaseRoute]:
    return [
        Route("/api/v1/agents/register", register, methods=["POST"]),
        Route("/api/v1/servers/registration-tokens", registration_token, methods=["POST"]),
        Route("/agent/install.sh", install_sh),
        Route("/agent/corral-agent.pyz", agent_pyz),
        # The agents' WebSockets (CONTROL_PATH, CHANNEL_PATH) are served by
        # broker.app.BrokerApp ahead of the routing: see there why.
    ]
