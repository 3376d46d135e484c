"""Access levels from the policy file combined with the grants stored through the API.

The rule under test (broker/gateway/access.py): a disabled user gets none; a matching
``none`` grant in the policy file hides the server whatever is stored; otherwise the
highest level wins, and on a tie the policy's grant names it. Both databases.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from broker.audit import SYSTEM
from broker.gateway import GatewaySessions, PolicyAccessResolver
from broker.gateway.access import STORED_GRANT
from broker.services import Services
from broker.store.models import AccessLevel, Role, Server, User
from policies import AccessLevel as Level
from policies import CommandRequest, Effect, PolicyEngine, Subject, compile_engine, load_polar
from policies import Server as PolicyServer
from policies.engine import NO_GRANT

ENGINE: PolicyEngine = compile_engine(load_polar())


class World:
    def __init__(self, services: Services, ws: str) -> None:
        self.services, self.ws = services, ws

    async def user(self, email: str, *groups: str, role: Role = Role.USER) -> User:
        user = await self.services.users.create(self.ws, email, role=role)
        for name in groups:
            found = [g for g in await self.services.groups.list(self.ws) if g.name == name]
            group = found[0] if found else await self.services.groups.create(self.ws, name)
            await self.services.groups.add_member(self.ws, group.id, user.id, actor=SYSTEM)
        return user

    async def server(self, name: str, **tags: str) -> Server:
        return await self.services.servers.create(self.ws, name, tags=tags)


@pytest.fixture
async def world(services: Services) -> World:
    ws = await services.workspaces.create("acme")
    return World(services, ws.id)


async def test_combination_rule(world: World) -> None:
    services, ws = world.services, world.ws
    resolver = PolicyAccessResolver(services, lambda: ENGINE)
    prod = await world.server("production-web1", env="prod")
    other = await world.server("misc-1")

    root = await world.user("root@acme.test", role=Role.SUPERUSER)
    assert await resolver.resolve(ws, root, prod) == (Level.FULL, "grant.superusers")

    # No policy grant: a stored grant is all there is.
    plain = await world.user("plain@acme.test")
    assert await resolver.resolve(ws, plain, other) == (Level.NONE, NO_GRANT)
    stored = await services.grants.grant(
        ws, level=AccessLevel.TERMINAL, user_id=plain.id, server_pattern="misc-*"
    )
    assert await resolver.resolve(ws, plain, other) == (Level.TERMINAL, STORED_GRANT + stored.id)
    assert await resolver.access_level(ws, plain, other) is AccessLevel.TERMINAL

    # The file's carve-out (contractors: none on env=prod) beats a stored full grant.
    carl = await world.user("carl@acme.test", "contractors")
    group = next(g for g in await services.groups.list(ws) if g.name == "contractors")
    await services.grants.grant(
        ws, level=AccessLevel.FULL, group_id=group.id, server_tag="env=prod"
    )
    assert await resolver.resolve(ws, carl, prod) == (Level.NONE, "grant.contractors-no-prod")

    # Highest wins: stored terminal over the file's read-only; the file's full over stored.
    dev = await world.user("dev@acme.test", "developers")
    dev_grant = await services.grants.grant(
        ws, level=AccessLevel.TERMINAL, user_id=dev.id, server_pattern="production-*"
    )
    assert await resolver.resolve(ws, dev, prod) == (Level.TERMINAL, STORED_GRANT + dev_grant.id)
    ops = await world.user("olga@acme.test", "ops")
    await services.grants.grant(
        ws, level=AccessLevel.READ_ONLY, user_id=ops.id, server_tag="env=prod"
    )
    assert await resolver.resolve(ws, ops, prod) == (Level.FULL, "grant.ops-prod")
    # On a tie the policy's grant names the level.
    await services.grants.grant(ws, level=AccessLevel.FULL, user_id=ops.id, server_pattern="*")
    assert await resolver.resolve(ws, ops, prod) == (Level.FULL, "grant.ops-prod")

    await services.users.set_disabled(ws, ops.id, True, actor=SYSTEM)
    ops = await services.users.get(ws, ops.id)
    assert await resolver.resolve(ws, ops, prod) == (Level.NONE, "user.disabled")


async def test_the_resolved_grant_drives_command_decisions(world: World) -> None:
    """A stored grant lets commands run; the blocklist still applies on top of it."""
    services, ws = world.services, world.ws
    resolver = PolicyAccessResolver(services, lambda: ENGINE)
    server = await world.server("misc-1")
    user = await world.user("plain@acme.test")
    await services.grants.grant(ws, level=AccessLevel.TERMINAL, user_id=user.id, server_pattern="*")
    grant = await resolver.resolve(ws, user, server)
    subject, target = Subject(user.email), PolicyServer("misc-1")
    allowed = ENGINE.decide(CommandRequest(subject, target, "uptime", grant=grant))
    assert (allowed.effect, allowed.rule_id) == (Effect.ALLOW, grant[1])
    denied = ENGINE.decide(CommandRequest(subject, target, "rm -rf /", grant=grant))
    assert (denied.effect, denied.rule_id) == (Effect.DENY, "block.rm-root")
    sudo = ENGINE.decide(CommandRequest(subject, target, "sudo uptime", grant=grant))
    assert (sudo.effect, sudo.rule_id) == (Effect.DENY, grant[1])
    without = ENGINE.decide(CommandRequest(subject, target, "uptime"))
    assert (without.effect, without.rule_id) == (Effect.DENY, NO_GRANT)


async def test_server_groups_by_name_and_reload_awareness(world: World, tmp_path: Path) -> None:
    services, ws = world.services, world.ws
    db = await world.server("db-stg1")
    group = await services.server_groups.create(ws, "databases")
    await services.server_groups.add_server(ws, group.id, db.id, actor=SYSTEM)
    dba = await world.user("dan@acme.test", "dba")
    current = [ENGINE]
    resolver = PolicyAccessResolver(services, lambda: current[0])
    assert await resolver.resolve(ws, dba, db) == (Level.FULL, "grant.dba-databases")
    edited = tmp_path / "p.polar"
    text = load_polar().source.text  # type: ignore[attr-defined]
    edited.write_text(
        text.replace(
            '"group:dba", "group:databases", "full"', '"group:dba", "group:databases", "none"'
        )
    )
    current[0] = compile_engine(load_polar(edited))
    assert await resolver.resolve(ws, dba, db) == (Level.NONE, "grant.dba-databases")


def test_the_gateway_resolves_through_the_policy_by_default(
    services: Services, tmp_path: Path
) -> None:
    gateway = GatewaySessions(services, None, recordings_dir=tmp_path)  # type: ignore[arg-type]
    assert isinstance(gateway.resolver, PolicyAccessResolver)
    assert gateway.resolver.policy is gateway.policy
    assert gateway.policy().version == ENGINE.version
