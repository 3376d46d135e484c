"""``corral policy``: the security team's tools, usable before a policy is deployed.

    check FILE...           parse and validate; one ``file:line: message`` per bad file
    test FILE CASES.yaml    a decision table with expected effects (like ``opa test``)
    explain ...             one decision, the rule that made it and why
    replay CANDIDATE        what a candidate would decide differently on the audited
                            commands (cli/replay.py)

They load policies with the same loaders as the broker, so "check passes" means "the
broker will load it". Files ending in ``.csv`` are Casbin policies (with ``--model``, or
the shipped model); anything else is Polar.

Exit codes: 0 ok; 1 a policy did not load, a case failed, or an input was invalid.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from broker.errors import CorralError, InvalidInput
from broker.gateway.access import PolicyAccessResolver
from broker.policy.cases import judge, load_cases
from broker.policy.subjects import server_of, subject_of
from broker.runtime import open_runtime
from broker.settings import load_settings
from cli import replay
from cli.policy_load import load_reference, policy_options, source_for
from policies import (
    AccessLevel,
    ActionRequest,
    CommandParseError,
    CommandRequest,
    PolicyLoadError,
    Request,
    Role,
    Server,
    SessionRequest,
    Subject,
    compile_engine,
    parse_command_line,
)
from policies.engine import RuleEngine

__all__ = ["add_policy_commands"]


async def check(args: argparse.Namespace) -> int:
    failed = False
    for file in args.files:
        try:
            engine = source_for(file, args.model, args.backend).load()
        except PolicyLoadError as exc:
            print(exc, file=sys.stderr)
            failed = True
            continue
        d = engine.policy_data()
        print(
            f"{file}: ok ({len(d.permissions)} permissions, {len(d.grants)} grants, "
            f"{len(d.rules)} rules, {len(d.lockdowns)} lockdowns; version {engine.version[:12]})"
        )
    return 1 if failed else 0


async def test(args: argparse.Namespace) -> int:
    engine = load_reference(args, args.file)
    fast = compile_engine(engine)
    cases = load_cases(args.cases)
    failures = 0
    for verdict in judge(cases, engine, fast):
        case, problem = verdict.case, verdict.problem
        where = f"{args.cases}:{case.line}"
        if problem is None:
            if not args.quiet:
                print(f"PASS  {where}  {case.name}")
        else:
            failures += 1
            print(f"FAIL  {where}  {case.name}: {problem}")
    passed = len(cases) - failures
    print(f"{passed} passed, {failures} failed ({len(cases)} cases; policy {engine.version[:12]})")
    return 1 if failures else 0


def _csv(value: str | None) -> tuple[str, ...]:
    return tuple(v.strip() for v in (value or "").split(",") if v.strip())


def _tags(values: list[str]) -> dict[str, str]:
    tags = {}
    for tag in values:
        key, sep, value = tag.partition("=")
        if not sep or not key:
            raise InvalidInput(f"--tag {tag!r}: write key=value")
        tags[key] = value
    return tags


async def _from_store(
    args: argparse.Namespace, engine: RuleEngine
) -> tuple[Subject | None, Server | None, tuple[AccessLevel, str] | None, str]:
    """The user and server as the configured database knows them, when it does, and (when
    both are known) their level with the stored grants combined, as the broker resolves it.
    """
    try:
        settings = load_settings()
        async with open_runtime(settings, migrate=False) as rt:
            for workspace in await rt.services.workspaces.list_all():
                if args.workspace and workspace.name != args.workspace:
                    continue
                ws, services = workspace.id, rt.services
                user = await services.users.find_by_email(ws, args.user)
                server = await services.servers.find_by_name(ws, args.server or "")
                if user is None and server is None:
                    continue
                subject = await subject_of(services, ws, user) if user else None
                target = await server_of(services, ws, server) if server else None
                grant = None
                if user is not None and server is not None:
                    resolver = PolicyAccessResolver(services, lambda: engine)
                    grant = await resolver.resolve(ws, user, server)
                return subject, target, grant, workspace.name
    except CorralError:
        pass  # no database configured or reachable: the options describe everything
    return None, None, None, ""


async def explain(args: argparse.Namespace) -> int:
    engine = load_reference(args, args.policy)
    file = args.policy or load_settings().effective_policy_file
    kinds = [k for k in ("command", "action", "session") if getattr(args, k) is not None]
    if len(kinds) != 1:
        raise InvalidInput("give exactly one of --command, --action or --session")
    stored_subject, stored_server, grant, workspace = None, None, None, ""
    if not (args.role or args.groups or args.server_group or args.tag):
        stored_subject, stored_server, grant, workspace = await _from_store(args, engine)
    subject = Subject(
        args.user,
        Role(args.role or (stored_subject.role if stored_subject else "user")),
        stored_subject.groups if stored_subject else _csv(args.groups),
        args.mfa_age,
    )
    server = stored_server or Server.of(args.server or "", _csv(args.server_group), _tags(args.tag))
    request: Request
    if args.command is not None:
        if not args.server:
            raise InvalidInput("--command needs --server")
        request = CommandRequest(
            subject, server, args.command, args.unix_user, args.sudo, grant=grant
        )
    elif args.session is not None:
        if not args.server:
            raise InvalidInput("--session needs --server")
        request = SessionRequest(subject, server, AccessLevel(args.session))
    else:
        request = ActionRequest(subject, args.action)
    decision = engine.decide(request)
    source = f"from the store ({workspace})" if workspace else "from the options"
    print(f"decision: {decision.effect.value}")
    print(f"rule:     {decision.rule_id}")
    print(f"reason:   {decision.reason}")
    if decision.approvers:
        print(f"approvers: {' '.join(decision.approvers)}")
    if decision.mfa_within is not None:
        print(f"mfa:      an MFA within {decision.mfa_within} s")
    print(f"version:  {decision.version}")
    print(f"policy:   {file}")
    groups = ", ".join(subject.groups) or "-"
    print(f"user:     {subject.user_id} (role {subject.role.value}, groups {groups}; {source})")
    if not isinstance(request, ActionRequest):
        tags = ", ".join(f"{k}={v}" for k, v in server.tags) or "-"
        level, rule = grant or engine.access(subject, server)
        origin = "policy file and stored grants" if grant else "policy file only"
        print(f"server:   {server.name} (groups {', '.join(server.groups) or '-'}, tags {tags})")
        print(f"access:   {level.value} by {rule} ({origin})")
    if isinstance(request, CommandRequest):
        try:
            parsed = parse_command_line(request.command)
            simple = " | ".join(c.line for c in parsed.commands) or "-"
            print(f"commands: {simple}")
            if parsed.unresolved:
                print(f"unresolved: {', '.join(parsed.unresolved)}")
        except CommandParseError as exc:
            print(f"commands: cannot be parsed ({exc})")
    return 0


def add_policy_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    policy = commands.add_parser("policy", help="check, test, explain and replay policies")
    sub = policy.add_subparsers(dest="policy_command", metavar="ACTION", required=True)

    p = sub.add_parser("check", help="parse and validate policy files")
    p.add_argument("files", nargs="+", type=Path, metavar="FILE")
    policy_options(p)
    p.set_defaults(run=check)

    p = sub.add_parser("test", help="run a YAML decision table against a policy")
    p.add_argument("file", type=Path, metavar="FILE")
    p.add_argument("cases", type=Path, metavar="CASES.yaml")
    p.add_argument("-q", "--quiet", action="store_true", help="print failures only")
    policy_options(p)
    p.set_defaults(run=test)

    p = sub.add_parser("explain", help="the decision for one request, and why")
    p.add_argument("--policy", type=Path, default=None, help="default: the configured policy")
    p.add_argument("--user", required=True, help="user id (email); read from the store if known")
    p.add_argument("--role", choices=[r.value for r in Role], default=None)
    p.add_argument("--groups", default=None, help="comma-separated user groups")
    p.add_argument("--mfa-age", type=float, default=None, help="seconds since the last MFA")
    p.add_argument("--server", default=None, help="server name; read from the store if known")
    p.add_argument("--server-group", default=None, help="comma-separated server groups")
    p.add_argument("--tag", action="append", default=[], help="server tag key=value (repeat)")
    p.add_argument("--workspace", default=None, help="workspace name for store look-ups")
    p.add_argument("--command", default=None, help="a command line")
    p.add_argument("--unix-user", default="user", help="the unix user it runs as")
    p.add_argument("--sudo", action="store_true", help="the session itself is privileged")
    p.add_argument("--action", default=None, help="a management action, e.g. policy.update")
    p.add_argument("--session", choices=[lv.value for lv in AccessLevel], default=None)
    policy_options(p)
    p.set_defaults(run=explain)

    replay.add_command(sub)
