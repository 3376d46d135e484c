"""Bearer credentials: personal access tokens, agent registration tokens, agent credentials.

Only SHA-256 hashes are stored; a secret is returned exactly once, at creation. A secret
carries its row id (``prefix_id_random``) so lookup is one primary-key read followed by a
constant-time compare. ``authenticate`` methods are the one place a workspace is *derived*
(from the credential) rather than given; every failure is audited where it can be placed.
"""

from __future__ import annotations

import builtins
from datetime import timedelta

import sqlalchemy as sa
from sqlmodel import col

from broker.audit import SYSTEM, Actor, Category, Outcome
from broker.errors import AuthenticationFailed, InvalidInput
from broker.services.base import (
    Service,
    fetch,
    new_secret,
    parse_secret,
    scoped,
    secret_matches,
)
from broker.services.inventory import server_name, validate_tags
from broker.store.models import (
    AgentCredential,
    ApiToken,
    RegistrationToken,
    Server,
    TokenScope,
    User,
    UserKind,
    new_id,
)

__all__ = ["AgentService", "TokenService", "actor_of"]

TOKEN_PREFIX = "crlpat"  # noqa: S105 (a prefix, not a secret)
REGISTRATION_PREFIX = "crlreg"
AGENT_PREFIX = "crlagt"
TOKEN_LIFETIMES_DAYS = (30, 90, 365, None)


def actor_of(user: User, credential_id: str = "") -> Actor:
    """Who a user row is in the audit log: a person (``user``) or a service account."""
    kind = "service" if user.kind is UserKind.SERVICE else "user"
    return Actor(kind, user.id, credential_id)


class TokenService(Service):
    async def create(
        self,
        workspace_id: str,
        user_id: str,
        *,
        name: str,
        scope: TokenScope,
        expires_in_days: int | None,
        actor: Actor = SYSTEM,
    ) -> tuple[ApiToken, str]:
        """A new token and its secret, which is never available again."""
        if expires_in_days not in TOKEN_LIFETIMES_DAYS:
            raise InvalidInput("expires_in_days must be 30, 90, 365 or null (never)")
        if not 1 <= len(name.strip()) <= 100:
            raise InvalidInput("token name must be 1-100 characters")
        ident = new_id()
        secret, digest = new_secret(TOKEN_PREFIX, ident)
        now = self.clock()
        async with self.db.transaction() as s:
            await fetch(s, User, workspace_id, user_id)
            token = ApiToken(
                id=ident,
                workspace_id=workspace_id,
                user_id=user_id,
                name=name.strip(),
                scope=TokenScope(scope),
                secret_hash=digest,
                created_at=now,
                expires_at=None if expires_in_days is None else now + timedelta(expires_in_days),
                created_by=actor.id or None,
            )
            s.add(token)
            await s.flush()
            await self.audit.emit(
                workspace_id,
                Category.AUTHENTICATION,
                "token.created",
                actor=actor,
                target=token.id,
                details={"name": token.name, "scope": str(token.scope), "user_id": user_id},
                session=s,
            )
            return token, secret

    async def list(
        self, workspace_id: str, *, user_id: str | None = None
    ) -> builtins.list[ApiToken]:
        query = scoped(ApiToken, workspace_id)
        if user_id is not None:
            query = query.where(ApiToken.user_id == user_id)
        async with self.db.transaction() as s:
            return list((await s.exec(query.order_by(col(ApiToken.created_at)))).all())

    async def get(self, workspace_id: str, token_id: str) -> ApiToken:
        async with self.db.transaction() as s:
            return await fetch(s, ApiToken, workspace_id, token_id)

    async def revoke(self, workspace_id: str, token_id: str, *, actor: Actor) -> ApiToken:
        async with self.db.transaction() as s:
            token = await fetch(s, ApiToken, workspace_id, token_id)
            if token.revoked_at is None:
                token.revoked_at = self.clock()
                s.add(token)
                await self.audit.emit(
                    workspace_id,
                    Category.AUTHENTICATION,
                    "token.revoked",
                    actor=actor,
                    target=token.id,
                    session=s,
                )
            return token

    async def authenticate(
        self, secret: str, *, request_line: str | None = None
    ) -> tuple[ApiToken, User]:
        """The live token and its enabled user, or :class:`AuthenticationFailed`.

        With ``request_line`` (``"GET /api/v1/servers"``) the call is audited as
        ``api.request`` under the token's id, in the same transaction as ``last_used_at``.
        """
        try:
            ident = parse_secret(TOKEN_PREFIX, secret)
        except InvalidInput:
            raise AuthenticationFailed("invalid token") from None
        why: str | None = None
        async with self.db.transaction() as s:
            token = await s.get(ApiToken, ident)
            if token is None:
                raise AuthenticationFailed("invalid token")
            user = await fetch(s, User, token.workspace_id, token.user_id)
            now = self.clock()
            if not secret_matches(secret, token.secret_hash):
                why = "wrong secret"  # a real token's id with a guessed secret: audit it
            elif token.revoked_at is not None:
                why = "revoked"
            elif token.expires_at is not None and now >= token.expires_at:
                why = "expired"
            elif user.disabled:
                why = "user disabled"
            else:
                token.last_used_at = now
                s.add(token)
                if request_line is not None:
                    method, _, path = request_line.partition(" ")
                    await self.audit.emit(
                        token.workspace_id,
                        Category.RESOURCE_ACCESS,
                        "api.request",
                        actor=actor_of(user, token.id),
                        target=path[:200],
                        details={"method": method[:10], "scope": str(token.scope)},
                        session=s,
                    )
                return token, user
            await self.audit.emit(
                token.workspace_id,
                Category.AUTHENTICATION,
                "token.refused",
                outcome=Outcome.DENIED,
                actor=actor_of(user, token.id),
                details={"reason": why},
                session=s,
            )
        raise AuthenticationFailed("invalid token" if why == "wrong secret" else f"token {why}")


class AgentService(Service):
    """Registration tokens for new hosts, and the credentials agents connect with."""

    async def create_registration_token(
        self, workspace_id: str, *, ttl_seconds: int = 3600, actor: Actor = SYSTEM
    ) -> tuple[RegistrationToken, str]:
        ident = new_id()
        secret, digest = new_secret(REGISTRATION_PREFIX, ident)
        now = self.clock()
        async with self.db.transaction() as s:
            token = RegistrationToken(
                id=ident,
                workspace_id=workspace_id,
                secret_hash=digest,
                created_by=actor.id or None,
                created_at=now,
                expires_at=now + timedelta(seconds=ttl_seconds),
            )
            s.add(token)
            await s.flush()
            await self.audit.emit(
                workspace_id,
                Category.CONFIGURATION,
                "agent.registration_token_created",
                actor=actor,
                target=token.id,
                details={"ttl_seconds": ttl_seconds},
                session=s,
            )
            return token, secret

    async def register(
        self,
        secret: str,
        *,
        name: str,
        platform: str = "",
        tags: dict[str, str] | None = None,
        source: str = "",
    ) -> tuple[Server, AgentCredential, str]:
        """Trade a registration token (once) for an agent credential.

        A host registering again under its old name keeps its server row; its earlier
        credentials are revoked, so a reinstalled host does not leave a live key behind.
        """
        try:
            ident = parse_secret(REGISTRATION_PREFIX, secret)
        except InvalidInput:
            raise AuthenticationFailed("invalid registration token") from None
        name, tags = server_name(name), validate_tags(tags or {})
        why: str | None = None
        async with self.db.transaction() as s:
            token = await s.get(RegistrationToken, ident)
            if token is None:
                raise AuthenticationFailed("invalid registration token")
            ws, now = token.workspace_id, self.clock()
            if not secret_matches(secret, token.secret_hash):
                why = "wrong secret"  # a real token's id with a guessed secret: audit it
            elif token.used_at is not None:
                why = "already used"
            elif now >= token.expires_at:
                why = "expired"
            if why is None:
                consumed = await s.exec(
                    sa.update(RegistrationToken)
                    .where(
                        col(RegistrationToken.id) == ident,
                        col(RegistrationToken.used_at).is_(None),
                    )
                    .values(used_at=now)
                )
                if getattr(consumed, "rowcount", 0) != 1:
                    why = "already used"
            if why is not None:
                await self.audit.emit(
                    ws,
                    Category.AUTHENTICATION,
                    "agent.registration_refused",
                    outcome=Outcome.DENIED,
                    actor=Actor("agent", "", token.id),
                    target=name,
                    details={"reason": why, "source": source},
                    session=s,
                )
            else:
                server = (await s.exec(scoped(Server, ws).where(Server.name == name))).first()
                if server is None:
                    server = Server(workspace_id=ws, name=name, platform=platform[:100], tags=tags)
                    s.add(server)
                    await s.flush()
                else:
                    await s.exec(
                        sa.update(AgentCredential)
                        .where(
                            col(AgentCredential.server_id) == server.id,
                            col(AgentCredential.revoked_at).is_(None),
                        )
                        .values(revoked_at=now)
                    )
                    server.tags = tags or server.tags
                    s.add(server)
                cred_id = new_id()
                agent_secret, digest = new_secret(AGENT_PREFIX, cred_id)
                credential = AgentCredential(
                    id=cred_id,
                    workspace_id=ws,
                    server_id=server.id,
                    secret_hash=digest,
                    created_at=now,
                )
                s.add(credential)
                token.server_id = server.id
                s.add(token)
                await s.flush()
                await self.audit.emit(
                    ws,
                    Category.AUTHENTICATION,
                    "agent.registered",
                    actor=Actor("agent", server.id, token.id),
                    server_id=server.id,
                    target=name,
                    details={"credential_id": cred_id, "source": source},
                    session=s,
                )
                return server, credential, agent_secret
        if why == "wrong secret":
            raise AuthenticationFailed("invalid registration token")
        raise AuthenticationFailed(f"registration token {why}")

    async def authenticate(self, secret: str) -> tuple[AgentCredential, Server]:
        try:
            ident = parse_secret(AGENT_PREFIX, secret)
        except InvalidInput:
            raise AuthenticationFailed("invalid agent credential") from None
        async with self.db.transaction() as s:
            credential = await s.get(AgentCredential, ident)
            if credential is None:
                raise AuthenticationFailed("invalid agent credential")
            server = await fetch(s, Server, credential.workspace_id, credential.server_id)
            if not secret_matches(secret, credential.secret_hash):
                why = "wrong secret"  # a real credential's id with a guessed secret
            elif credential.revoked_at is None:
                credential.last_used_at = self.clock()
                s.add(credential)
                return credential, server
            else:
                why = "revoked"
            await self.audit.emit(
                credential.workspace_id,
                Category.AUTHENTICATION,
                "agent.credential_refused",
                outcome=Outcome.DENIED,
                actor=Actor("agent", server.id, credential.id),
                server_id=server.id,
                details={"reason": why},
                session=s,
            )
        if why == "wrong secret":
            raise AuthenticationFailed("invalid agent credential")
        raise AuthenticationFailed("agent credential revoked")

    async def credentials(
        self, workspace_id: str, server_id: str
    ) -> builtins.list[AgentCredential]:
        async with self.db.transaction() as s:
            await fetch(s, Server, workspace_id, server_id)
            query = scoped(AgentCredential, workspace_id).where(
                AgentCredential.server_id == server_id
            )
            return list((await s.exec(query.order_by(col(AgentCredential.created_at)))).all())

    async def revoke_credential(
        self, workspace_id: str, credential_id: str, *, actor: Actor
    ) -> AgentCredential:
        async with self.db.transaction() as s:
            credential = await fetch(s, AgentCredential, workspace_id, credential_id)
            if credential.revoked_at is None:
                credential.revoked_at = self.clock()
                s.add(credential)
                await self.audit.emit(
                    workspace_id,
                    Category.AUTHENTICATION,
                    "agent.credential_revoked",
                    actor=actor,
                    server_id=credential.server_id,
                    target=credential.id,
                    session=s,
                )
            return credential
