"""Password reset for people who forgot theirs: ask for a link, then use it.

``forgot`` answers ``202`` with the same body whatever the address (no account
enumeration); ``reset`` takes the secret from the link and a new password. Both refuse a
request whose ``Origin`` is not the broker's own (audited like a cross-origin login).
"""

from __future__ import annotations

from pydantic import BaseModel, Field
from starlette.requests import Request
from starlette.responses import JSONResponse

from api.auth import client_source, identity_of
from api.problems import Forbidden, Unauthorized
from api.spec import Model, body_of, operation
from api.state import runtime_of
from broker.errors import AuthenticationFailed
from idp.passwords import MAX_LENGTH

__all__ = ["forgot_password", "reset_password"]

SENT = "if this address has an account with a password, a reset link is on its way"


class ForgotIn(Model):
    workspace: str | None = Field(default=None, min_length=1, max_length=100)
    email: str = Field(min_length=3, max_length=320)


class ForgotOut(BaseModel):
    status: str


class ResetIn(Model):
    token: str = Field(min_length=1, max_length=200)
    new_password: str = Field(min_length=1, max_length=MAX_LENGTH)


class ResetOut(BaseModel):
    reset: bool


def _same_origin(request: Request) -> None:
    origin = request.headers.get("origin")
    if origin is not None and origin.lower() != identity_of(request).browser.origin:
        raise Forbidden("cross-origin request refused")


@operation(
    summary="Ask for a password-reset link by email",
    tag="auth",
    body=ForgotIn,
    ok=ForgotOut,
    status=202,
    authenticated=False,
    errors=(400, 403, 429),
    description="Always the same 202, whether or not the address has an account.",
)
async def forgot_password(request: Request) -> JSONResponse:
    _same_origin(request)
    body = await body_of(request, ForgotIn)
    name = body.workspace or runtime_of(request).settings.default_workspace
    await identity_of(request).reset.request(name, body.email, source=client_source(request))
    return JSONResponse({"status": SENT}, status_code=202)


@operation(
    summary="Set a new password with the link's token",
    tag="auth",
    body=ResetIn,
    ok=ResetOut,
    authenticated=False,
    errors=(400, 401, 403, 429),
    description="The token works once, for 30 minutes; every browser session of the person ends.",
)
async def reset_password(request: Request) -> JSONResponse:
    _same_origin(request)
    body = await body_of(request, ResetIn)
    try:
        await identity_of(request).reset.reset(
            body.token, body.new_password, source=client_source(request)
        )
    except AuthenticationFailed as exc:
        raise Unauthorized(str(exc)) from None
    return JSONResponse({"reset": True})
