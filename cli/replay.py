"""``corral policy replay CANDIDATE --since 30d``: before deploying a policy, see what it
would have decided differently on the commands people actually ran.

Reads the ``session.command`` (terminal) and ``exec.command`` (API exec) events of the
configured database's audit log, rebuilds each request from the rows as they are now
(the user's role and groups, the server's groups and tags, the stored grants) and
decides it with the candidate. Each decision whose effect or rule differs from the one
recorded is listed, oldest first. Limits: memberships and stored grants are today's, not
those at the time; the MFA age is not recorded, so ``--mfa-age`` states the assumption
(default: no recent MFA, i.e. every step-up rule fires).
"""

from __future__ import annotations

import argparse
import re
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from broker.audit.log import details_of
from broker.errors import NotFound
from broker.gateway.access import PolicyAccessResolver
from broker.policy.exec import EXEC_ACTION
from broker.policy.subjects import server_of, subject_of
from broker.runtime import Runtime, open_runtime
from broker.settings import load_settings
from broker.store.models import AuditEvent, Workspace
from cli.policy_load import load_reference, policy_options
from policies import AccessLevel, CommandRequest, Server, Subject, compile_engine

__all__ = ["ACTIONS", "add_command", "parse_since"]

SESSION_ACTION = "session.command"
ACTIONS = (SESSION_ACTION, EXEC_ACTION)
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_DURATION = re.compile(r"(\d+)([smhdw])")


def parse_since(text: str) -> timedelta:
    """``30d``, ``12h``, ``90m``, ``2w``, ``3600s``."""
    m = _DURATION.fullmatch(text.strip())
    if m is None:
        raise argparse.ArgumentTypeError(f"{text!r}: write a number and s, m, h, d or w (30d)")
    return timedelta(seconds=int(m.group(1)) * _UNITS[m.group(2)])


class _Rows:
    """Rows and their policy views, cached: one replay touches few users and servers."""

    def __init__(self, rt: Runtime, ws: str, resolver: PolicyAccessResolver, mfa: float | None):
        self.rt, self.ws, self.resolver, self.mfa = rt, ws, resolver, mfa
        self.cache: dict[tuple[str, str], Any] = {}

    async def _get(self, kind: str, key: str, load: Callable[[], Any]) -> Any:
        if (kind, key) not in self.cache:
            try:
                self.cache[kind, key] = await load()
            except NotFound:
                self.cache[kind, key] = None
        return self.cache[kind, key]

    async def request(self, event: AuditEvent, details: dict[str, Any]) -> CommandRequest | None:
        services = self.rt.services
        user = await self._get(
            "user", event.actor_id, lambda: services.users.get(self.ws, event.actor_id)
        )
        server = await self._get(
            "server", event.server_id, lambda: services.servers.get(self.ws, event.server_id)
        )
        command = details.get("command")
        if user is None or server is None or not isinstance(command, str):
            return None
        subject: Subject = await self._get(
            "subject",
            user.id,
            lambda: subject_of(services, self.ws, user, mfa_age_seconds=self.mfa),
        )
        target: Server = await self._get(
            "target", server.id, lambda: server_of(services, self.ws, server)
        )
        grant: tuple[AccessLevel, str] = await self._get(
            "grant", f"{user.id}/{server.id}", lambda: self.resolver.resolve(self.ws, user, server)
        )
        unix_user = details.get("unix_user")
        if not isinstance(unix_user, str) and event.session_id:
            row = await self._get(
                "session",
                event.session_id,
                lambda: services.sessions.get(self.ws, event.session_id),
            )
            unix_user = row.unix_user if row is not None else None
        return CommandRequest(
            subject,
            target,
            command,
            unix_user if isinstance(unix_user, str) else "user",
            grant=grant,
        )


async def _workspaces(rt: Runtime, name: str | None) -> list[Workspace]:
    found = await rt.services.workspaces.list_all()
    if name is not None:
        found = [w for w in found if w.name == name]
        if not found:
            raise NotFound("workspace", repr(name))
    return found


async def replay(args: argparse.Namespace) -> int:
    engine = compile_engine(load_reference(args, args.candidate))
    since = datetime.now(UTC) - args.since
    seen: Counter[str] = Counter()
    changes: Counter[str] = Counter()
    effect_changed = rule_changed = skipped = 0
    async with open_runtime(load_settings(), migrate=False) as rt:
        for workspace in await _workspaces(rt, args.workspace):
            rows = _Rows(
                rt, workspace.id, PolicyAccessResolver(rt.services, lambda: engine), args.mfa_age
            )
            after = 0
            while events := await rt.services.audit.events(
                workspace.id, after_seq=after, limit=1000, since=since
            ):
                after = events[-1].seq
                for event in events:
                    if event.action not in ACTIONS:
                        continue
                    seen[event.action] += 1
                    details = details_of(event)
                    request = await rows.request(event, details)
                    if request is None:
                        skipped += 1
                        continue
                    new = engine.decide(request)
                    old_effect, old_rule = str(details.get("effect")), str(details.get("rule_id"))
                    if (new.effect.value, new.rule_id) == (old_effect, old_rule):
                        continue
                    if new.effect.value != old_effect:
                        effect_changed += 1
                        changes[f"{old_effect} -> {new.effect.value}"] += 1
                    else:
                        rule_changed += 1
                        if args.effects_only:
                            continue
                    kind = "exec" if event.action == EXEC_ACTION else "terminal"
                    print(
                        f"{event.ts.isoformat(timespec='seconds')}  {request.subject.user_id}  "
                        f"{request.server.name}  {kind}  {request.command!r}  "
                        f"{old_effect} ({old_rule}) -> {new.effect.value} ({new.rule_id})"
                    )
    total = sum(seen.values())
    print(
        f"replayed {total} commands since {since.date().isoformat()} "
        f"({seen[SESSION_ACTION]} terminal, {seen[EXEC_ACTION]} exec) against "
        f"{args.candidate} ({engine.version[:12]}): {effect_changed} would change effect, "
        f"{rule_changed} the same effect by another rule, {skipped} skipped "
        "(user or server no longer exists)"
    )
    for transition, count in sorted(changes.items()):
        print(f"  {transition}: {count}")
    return 0


def add_command(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "replay", help="what a candidate policy would decide differently on audited commands"
    )
    p.add_argument("candidate", type=Path, metavar="CANDIDATE")
    p.add_argument("--since", type=parse_since, default=parse_since("30d"), help="e.g. 30d, 12h")
    p.add_argument("--workspace", default=None, help="only this workspace (name)")
    p.add_argument(
        "--mfa-age",
        type=float,
        default=None,
        help="assume every user's last MFA was this many seconds before (default: none)",
    )
    p.add_argument("--effects-only", action="store_true", help="hide same-effect rule changes")
    policy_options(p)
    p.set_defaults(run=replay)
