"""HTTP and WebSocket endpoints for agents: register, install, connect, dial back.

Registration is the one unauthenticated POST besides login: it trades a single-use token
for a credential. Registration-token issuance is for staff and superusers.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, PlainTextResponse, Response
from starlette.routing import BaseRoute, Route

from agent.build import build_zipapp, install_script
from api.auth import authenticate
from api.bodies import json_object
from api.problems import BadRequest, Forbidden
from api.state import runtime_of
from broker.store.models import Role

__all__ = ["agent_routes"]


def _string(body: dict[str, Any], key: str, *, required: bool = True) -> str:
    value = body.get(key)
    if value is None and not required:
        return ""
    if not isinstance(value, str) or not value:
        raise BadRequest(f"'{key}' must be a non-empty string")
    return value


async def register(request: Request) -> JSONResponse:
    body = await json_object(request)
    token = _string(body, "token")
    name = _string(body, "name")
    tags = body.get("tags") or {}
    if not isinstance(tags, dict) or not all(isinstance(v, str) for v in tags.values()):
        raise BadRequest("'tags' must be an object of strings")
    sysinfo = body.get("sysinfo") or {}
    if not isinstance(sysinfo, dict):
        raise BadRequest("'sysinfo' must be an object")
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


async def registration_token(request: Request) -> JSONResponse:
    runtime = runtime_of(request)
    principal = await authenticate(request, runtime.services)
    if principal.user.role not in (Role.STAFF, Role.SUPERUSER):
        raise Forbidden("registering servers needs the staff or superuser role")
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
