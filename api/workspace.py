"""Workspace settings and deletion: ``GET/PATCH/DELETE /api/v1/workspace``.

Who may do what is the policy's (``workspace.read`` for staff, ``workspace.settings.update``
and ``workspace.delete`` for superusers; the default policy also wants an MFA within five
minutes to delete). MFA enforcement stays at ``/api/v1/workspace/security``.

Deleting closes the workspace for good: every token, browser session and agent
credential is revoked, every account disabled, live terminal sessions end and agents are
hung up, all audited as ``workspace.deleted``. The rows and the audit chain stay for the
operator (they are the evidence of what happened); nothing can sign in to it again.
"""

from __future__ import annotations

from pydantic import BaseModel, Field
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import BaseRoute, Route

from api.auth import authenticate
from api.authz import authorize
from api.sessions import gateway_of
from api.spec import Model, body_of, operation
from api.state import hub_of, services_of
from api.views import iso
from broker.store.models import Workspace

__all__ = ["workspace_routes"]


class WorkspaceOut(BaseModel):
    id: str
    name: str
    created_at: str
    recording_retention_days: int
    audit_retention_days: int
    mfa_required: bool
    mfa_hardware_only: bool


class WorkspacePatch(Model):
    name: str | None = Field(None, min_length=1, max_length=100)
    recording_retention_days: int | None = Field(None, ge=1, le=36500)
    audit_retention_days: int | None = Field(None, ge=1, le=36500)


class WorkspaceDelete(Model):
    confirm_name: str = Field(max_length=100)


class WorkspaceDeleted(BaseModel):
    deleted: bool
    tokens_revoked: int
    browser_sessions_revoked: int
    agent_credentials_revoked: int
    accounts_disabled: int
    sessions_ended: int


def _view(workspace: Workspace) -> dict[str, object]:
    return {
        "id": workspace.id,
        "name": workspace.name,
        "created_at": iso(workspace.created_at),
        "recording_retention_days": workspace.recording_retention_days,
        "audit_retention_days": workspace.audit_retention_days,
        "mfa_required": workspace.mfa_required,
        "mfa_hardware_only": workspace.mfa_hardware_only,
    }


@operation(
    summary="The caller's workspace and its settings",
    tag="workspace",
    ok=WorkspaceOut,
    errors=(400, 403),
)
async def get_workspace(request: Request) -> JSONResponse:
    services = services_of(request)
    principal = await authenticate(request, services)
    await authorize(request, principal, "workspace.read")
    return JSONResponse(_view(await services.workspaces.get(principal.workspace_id)))


@operation(
    summary="Rename the workspace or change its retention",
    tag="workspace",
    body=WorkspacePatch,
    ok=WorkspaceOut,
    scope="admin",
    errors=(400, 403, 409),
)
async def patch_workspace(request: Request) -> JSONResponse:
    services = services_of(request)
    principal = await authenticate(request, services)
    await authorize(request, principal, "workspace.settings.update")
    patch = await body_of(request, WorkspacePatch)
    workspace = await services.workspaces.update_settings(
        principal.workspace_id,
        actor=principal.actor,
        name=patch.name,
        recording_retention_days=patch.recording_retention_days,
        audit_retention_days=patch.audit_retention_days,
    )
    return JSONResponse(_view(workspace))


@operation(
    summary="Delete the workspace (superuser; repeat its name)",
    tag="workspace",
    body=WorkspaceDelete,
    ok=WorkspaceDeleted,
    scope="admin",
    errors=(400, 403),
)
async def delete_workspace(request: Request) -> JSONResponse:
    services = services_of(request)
    principal = await authenticate(request, services)
    await authorize(request, principal, "workspace.delete")
    confirm = await body_of(request, WorkspaceDelete)
    ws = principal.workspace_id
    servers = await services.servers.list(ws)
    counts = await services.workspaces.delete(
        ws, confirm_name=confirm.confirm_name, actor=principal.actor
    )
    gateway = gateway_of(request.app)
    ended = await gateway.terminate_where(
        ws, lambda s: True, "the workspace was deleted", actor=principal.actor
    )
    await gateway.kick_where(ws, lambda c: True, "the workspace was deleted")
    for server in servers:
        await hub_of(request).disconnect(server.id, "workspace deleted")
    return JSONResponse({"deleted": True, **counts, "sessions_ended": len(ended)})


def workspace_routes() -> list[BaseRoute]:
    return [
        Route("/api/v1/workspace", get_workspace, methods=["GET"]),
        Route("/api/v1/workspace", patch_workspace, methods=["PATCH"]),
        Route("/api/v1/workspace", delete_workspace, methods=["DELETE"]),
    ]
