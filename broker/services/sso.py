"""SSO bookkeeping shared by the OIDC and SAML logins: a workspace's identity providers,
people's links to them, one-time values already seen, and the sign-in that turns a verified
assertion into a Corral user (created just in time, groups synced from the IdP).

The protocol layers (``idp/oidc.py``, ``idp/saml.py``) verify signatures, audiences and
clocks; by the time :meth:`SsoService.sign_in` runs, the assertion is trusted. This module
never sees a raw response, a token or a client secret in clear (secrets stay sealed in
``SsoProvider.secret_box``).
"""

from __future__ import annotations

import builtins
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlmodel import col, delete, select

from broker.audit import SYSTEM, Actor, Category, Outcome
from broker.errors import AuthenticationFailed, InvalidInput
from broker.services.base import Service, fetch, scoped, unique
from broker.services.directory import NAME, normalise_email
from broker.store.models import (
    GroupMembership,
    Role,
    SsoLink,
    SsoProtocol,
    SsoProvider,
    SsoReplay,
    User,
    UserGroup,
    UserKind,
)

__all__ = ["SsoAssertion", "SsoService"]


@dataclass(frozen=True)
class SsoAssertion:
    """Who an identity provider vouched for, after the protocol layer verified it."""

    subject: str
    """The provider's stable id for the person (OIDC ``sub``, SAML ``NameID``)."""
    email: str
    display_name: str = ""
    groups: tuple[str, ...] = ()
    """Group names from the IdP (a claim or an attribute), before mapping."""
    details: Mapping[str, Any] = field(default_factory=dict)
    """Safe-to-audit facts about the response (issuer, assertion id, authn context...)."""


class _Refusal(Exception):
    """Raised inside the sign-in transaction; audited after it has rolled back."""

    def __init__(self, reason: str, details: Mapping[str, Any]) -> None:
        super().__init__(reason)
        self.reason = reason
        self.details = dict(details)


class SsoService(Service):
    # -- providers --------------------------------------------------------------------------

    async def create_provider(
        self,
        workspace_id: str,
        name: str,
        protocol: SsoProtocol,
        *,
        config: Mapping[str, Any],
        group_mapping: Mapping[str, str] | None = None,
        default_role: Role = Role.USER,
        jit: bool = True,
        preset: str = "",
        secret_box: str = "",
        actor: Actor = SYSTEM,
    ) -> SsoProvider:
        if not NAME.match(name):
            raise InvalidInput("provider name must be letters, digits, '.', '_' or '-' (max 100)")
        async with self.db.transaction() as s:
            row = SsoProvider(
                workspace_id=workspace_id,
                name=name,
                protocol=SsoProtocol(protocol),
                preset=preset,
                config=dict(config),
                group_mapping=dict(group_mapping or {}),
                default_role=Role(default_role),
                jit=jit,
                secret_box=secret_box,
            )
            s.add(row)
            await unique(s, f"identity provider {name}")
            await self.audit.emit(
                workspace_id,
                Category.CONFIGURATION,
                "sso.provider_created",
                actor=actor,
                target=row.id,
                details={"name": name, "protocol": str(row.protocol), "preset": preset},
                session=s,
            )
            return row

    async def update_provider(
        self, workspace_id: str, provider_id: str, *, actor: Actor = SYSTEM, **changes: Any
    ) -> SsoProvider:
        """Change some of: name, enabled, config, group_mapping, default_role, jit,
        secret_box. Only the names of the changed fields are audited, never their values."""
        allowed = {"name", "enabled", "config", "group_mapping", "default_role", "jit"}
        allowed.add("secret_box")
        unknown = set(changes) - allowed
        if unknown:
            raise InvalidInput(f"cannot change {', '.join(sorted(unknown))}")
        if "name" in changes and not NAME.match(str(changes["name"])):
            raise InvalidInput("provider name must be letters, digits, '.', '_' or '-' (max 100)")
        async with self.db.transaction() as s:
            row = await fetch(s, SsoProvider, workspace_id, provider_id)
            for key, value in changes.items():
                setattr(row, key, value)
            row.updated_at = self.clock()
            s.add(row)
            await unique(s, f"identity provider {row.name}")
            await self.audit.emit(
                workspace_id,
                Category.CONFIGURATION,
                "sso.provider_changed",
                actor=actor,
                target=row.id,
                details={"fields": sorted(changes)},
                session=s,
            )
            return row

    async def delete_provider(
        self, workspace_id: str, provider_id: str, *, actor: Actor = SYSTEM
    ) -> None:
        async with self.db.transaction() as s:
            row = await fetch(s, SsoProvider, workspace_id, provider_id)
            await s.delete(row)
            await self.audit.emit(
                workspace_id,
                Category.CONFIGURATION,
                "sso.provider_deleted",
                actor=actor,
                target=provider_id,
                details={"name": row.name},
                session=s,
            )

    async def provider(self, workspace_id: str, provider_id: str) -> SsoProvider:
        async with self.db.transaction() as s:
            return await fetch(s, SsoProvider, workspace_id, provider_id)

    async def callback_provider(self, provider_id: str) -> SsoProvider | None:
        """The provider a protocol callback is addressed to (its redirect URI / ACS URL
        names the provider id); the workspace is the provider's own, like a credential's."""
        async with self.db.transaction() as s:
            return await s.get(SsoProvider, provider_id)

    async def providers(self, workspace_id: str) -> builtins.list[SsoProvider]:
        async with self.db.transaction() as s:
            rows = await s.exec(scoped(SsoProvider, workspace_id).order_by(col(SsoProvider.name)))
            return list(rows)

    # -- one-time values --------------------------------------------------------------------

    async def claim_once(self, provider: SsoProvider, key: str, expires_at: datetime) -> bool:
        """Record ``key`` (an assertion id, a state) as used; ``False`` if it already was.

        Rows past their expiry are swept here, so the table stays as small as the set of
        values that could still be replayed."""
        async with self.db.transaction() as s:
            await s.exec(delete(SsoReplay).where(col(SsoReplay.expires_at) < self.clock()))
        try:
            async with self.db.transaction() as s:
                s.add(
                    SsoReplay(
                        provider_id=provider.id,
                        key=key[:255],
                        workspace_id=provider.workspace_id,
                        expires_at=expires_at,
                    )
                )
                await s.flush()
        except IntegrityError:
            return False
        return True

    # -- signing in -------------------------------------------------------------------------

    async def refuse(
        self, provider: SsoProvider, reason: str, *, source: str = "", **details: Any
    ) -> AuthenticationFailed:
        """Audit a refused SSO response (with why) and return the error to raise."""
        await self.audit.emit(
            provider.workspace_id,
            Category.AUTHENTICATION,
            "sso.refused",
            outcome=Outcome.DENIED,
            target=provider.id,
            details={
                "provider": provider.name,
                "protocol": str(provider.protocol),
                "reason": reason,
                "source": source,
                **details,
            },
        )
        return AuthenticationFailed(reason)

    async def sign_in(
        self, provider: SsoProvider, assertion: SsoAssertion, *, source: str = ""
    ) -> User:
        """The user this verified assertion names: linked before, matched by email, or
        created just in time; their mapped groups synced. Refusals are audited."""
        if not provider.enabled:
            raise await self.refuse(provider, "identity provider is disabled", source=source)
        if not assertion.subject:
            raise await self.refuse(provider, "assertion names no subject", source=source)
        try:
            email = normalise_email(assertion.email)
        except InvalidInput:
            raise await self.refuse(
                provider, "assertion carries no usable email address", source=source
            ) from None
        try:
            return await self._sign_in(provider, assertion, email, source)
        except _Refusal as refusal:
            raise await self.refuse(
                provider, refusal.reason, source=source, **refusal.details
            ) from None

    async def _sign_in(
        self, provider: SsoProvider, assertion: SsoAssertion, email: str, source: str
    ) -> User:
        async with self.db.transaction() as s:
            link = await s.get(SsoLink, (provider.id, assertion.subject[:255]))
            user: User | None = None
            created = False
            if link is not None:
                user = await s.get(User, link.user_id)
            if user is None:
                found = await s.exec(
                    scoped(User, provider.workspace_id).where(col(User.email) == email)
                )
                user = found.first()
            if user is None:
                if not provider.jit:
                    raise _Refusal(
                        "no account for this person and just-in-time creation is off",
                        {"email": email},
                    )
                user = User(
                    workspace_id=provider.workspace_id,
                    email=email,
                    display_name=assertion.display_name[:200],
                    role=provider.default_role,
                )
                s.add(user)
                await unique(s, f"user {email}")
                created = True
            if user.disabled:
                raise _Refusal("the account is disabled", {"user_id": user.id})
            if user.kind is UserKind.SERVICE:
                raise _Refusal("a service account cannot sign in", {"user_id": user.id})
            now = self.clock()
            if link is None:
                link = SsoLink(
                    provider_id=provider.id,
                    subject=assertion.subject[:255],
                    workspace_id=provider.workspace_id,
                    user_id=user.id,
                )
            link.last_login_at = now
            user.last_login_at = now
            s.add(link)
            s.add(user)
            await s.flush()
            added, removed = await self._sync_groups(s, provider, user, assertion.groups)
            if created:
                await self.audit.emit(
                    provider.workspace_id,
                    Category.CONFIGURATION,
                    "user.created",
                    actor=Actor("sso", provider.id),
                    target=user.id,
                    details={"email": email, "role": str(user.role), "via": provider.name},
                    session=s,
                )
            await self.audit.emit(
                provider.workspace_id,
                Category.AUTHENTICATION,
                "sso.accepted",
                actor=Actor("user", user.id),
                target=provider.id,
                details={
                    "provider": provider.name,
                    "protocol": str(provider.protocol),
                    "subject": assertion.subject[:255],
                    "created": created,
                    "groups_added": added,
                    "groups_removed": removed,
                    "source": source,
                    **dict(assertion.details),
                },
                session=s,
            )
            return user

    async def _sync_groups(
        self, s: Any, provider: SsoProvider, user: User, idp_groups: Sequence[str]
    ) -> tuple[list[str], list[str]]:
        """Put the user in the Corral groups their IdP groups map to, and out of the mapped
        groups they no longer have. Groups the mapping does not mention are left alone."""
        mapping = provider.group_mapping
        if not mapping:
            return [], []
        wanted = {mapping[g] for g in idp_groups if g in mapping}
        managed = set(mapping.values())
        rows = await s.exec(
            scoped(UserGroup, provider.workspace_id).where(col(UserGroup.name).in_(managed))
        )
        by_name = {g.name: g for g in rows}
        for name in sorted(wanted - set(by_name)):
            group = UserGroup(
                workspace_id=provider.workspace_id,
                name=name,
                description=f"synced from {provider.name}",
            )
            s.add(group)
            await s.flush()
            by_name[name] = group
        current = await s.exec(
            select(GroupMembership).where(
                col(GroupMembership.user_id) == user.id,
                col(GroupMembership.group_id).in_([g.id for g in by_name.values()]),
            )
        )
        have = {m.group_id for m in current}
        added: list[str] = []
        removed: list[str] = []
        for name, group in sorted(by_name.items()):
            if name in wanted and group.id not in have:
                s.add(
                    GroupMembership(
                        workspace_id=provider.workspace_id, group_id=group.id, user_id=user.id
                    )
                )
                added.append(name)
            elif name not in wanted and group.id in have:
                await s.exec(
                    delete(GroupMembership).where(
                        col(GroupMembership.group_id) == group.id,
                        col(GroupMembership.user_id) == user.id,
                    )
                )
                removed.append(name)
        await s.flush()
        return added, removed
