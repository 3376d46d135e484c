"""Recording routes: list the recordings one may see and download one (asciicast v2).

Thin: authenticate, ask the recordings service, answer. Someone else's recording needs
``sessions.recordings.read`` and is otherwise the same 404 as an unknown id; every download
is audited. It must never read or stream a recording the caller could not list, and never
touches live sessions (those are :mod:`api.sessions`).
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from pydantic import BaseModel
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import BaseRoute, Route

from api.auth import authenticate
from api.authz import authorize, permits
from api.problems import NotFoundProblem
from api.spec import Model, operation, query_of
from api.state import services_of
from broker.audit import Category

__all__ = ["recording_routes"]


class RecordingQuery(Model):
    session_id: str | None = None


class RecordingOut(BaseModel):
    id: str
    session_id: str
    size_bytes: int
    user_id: str
    server_id: str | None
    """``null`` once the server was removed; ``server_name`` still says which it was."""
    server_name: str
    unix_user: str
    started_at: datetime
    ended_at: datetime | None
    """``null`` while the session is still being recorded."""


class RecordingList(BaseModel):
    recordings: list[RecordingOut]


@operation(
    summary="Download a recording (asciicast v2)",
    tag="sessions",
    media_type="application/x-asciicast",
)
async def download_recording(request: Request) -> Response:
    services = services_of(request)
    principal = await authenticate(request, services)
    await authorize(request, principal, "sessions.own.recordings.read")
    recording = await services.recordings.get(
        principal.workspace_id, request.path_params["recording_id"]
    )
    session = await services.sessions.get(principal.workspace_id, recording.session_id)
    if session.user_id != principal.user.id:
        missing = NotFoundProblem(f"recording {recording.id} not found")
        await authorize(
            request, principal, "sessions.recordings.read", recording.id, hidden=missing
        )
    await services.audit.emit(
        principal.workspace_id,
        Category.RESOURCE_ACCESS,
        "recording.downloaded",
        actor=principal.actor,
        session_id=session.id,
        target=recording.id,
    )
    return FileResponse(
        Path(recording.path),
        media_type="application/x-asciicast",
        filename=f"{session.id}.cast",
    )


@operation(
    summary="Recordings (one's own sessions'; staff: all)",
    tag="sessions",
    query=RecordingQuery,
    ok=RecordingList,
)
async def list_recordings(request: Request) -> JSONResponse:
    services = services_of(request)
    principal = await authenticate(request, services)
    await authorize(request, principal, "sessions.own.recordings.read")
    query = query_of(request, RecordingQuery)
    everyone = await permits(request, principal, "sessions.recordings.read")
    rows = await services.recordings.index(
        principal.workspace_id,
        session_id=query.session_id,
        user_id=None if everyone else principal.user.id,
    )
    return JSONResponse(
        {
            "recordings": [
                {
                    "id": r.id,
                    "session_id": r.session_id,
                    "size_bytes": r.size_bytes,
                    "user_id": s.user_id,
                    "server_id": s.server_id,
                    "server_name": s.server_name,
                    "unix_user": s.unix_user,
                    "started_at": r.started_at.isoformat(),
                    "ended_at": r.ended_at.isoformat() if r.ended_at else None,
                }
                for r, s in rows
            ]
        }
    )


def recording_routes() -> list[BaseRoute]:
    return [
        Route("/api/v1/recordings", list_recordings, methods=["GET"]),
        Route("/api/v1/recordings/{recording_id}/download", download_recording),
    ]
