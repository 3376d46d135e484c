"""Who is calling: a bearer personal access token turned into a principal."""

from __future__ import annotations

from dataclasses import dataclass

from starlette.requests import Request

from api.problems import Unauthorized
from broker.audit import Actor
from broker.errors import AuthenticationFailed
from broker.services import Services
from broker.store.models import ApiToken, User

__all__ = ["Principal", "authenticate"]


@dataclass(frozen=True)
class Principal:
    user: User
    token: ApiToken

    @property
    def workspace_id(self) -> str:
        return self.user.workspace_id

    @property
    def actor(self) -> Actor:
        return Actor("user", self.user.id, self.token.id)


async def authenticate(request: Request, services: Services) -> Principal:
    header = request.headers.get("authorization", "")
    scheme, _, secret = header.partition(" ")
    if scheme.lower() != "bearer" or not secret.strip():
        raise Unauthorized("send an Authorization: Bearer <token> header")
    try:
        token, user = await services.tokens.authenticate(secret.strip())
    except AuthenticationFailed as exc:
        raise Unauthorized(str(exc)) from None
    return Principal(user, token)
