"""The ``corral`` command: server administration and the policy tools; login, websh and exec
join later.

Every failure ends as one line on stderr (``corral: error: ...``) and a documented exit
code; tracebacks are for bugs only.

Exit codes: 0 success; 1 an operation failed (database, settings, verification);
2 usage error; 130 interrupted.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence

from broker.errors import CorralError
from cli import admin, websh
from cli.policy import add_policy_commands
from cli.users import add_user_commands

__all__ = ["main"]

EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="corral",
        description="Corral: a policy-driven access broker for Linux servers.",
        epilog="Settings come from corral.toml and CORRAL_* variables; see docs/operations.md.",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    up = commands.add_parser("up", help="run the broker (initialising it on first start)")
    up.set_defaults(run=admin.up, loop_factory=admin.up_loop_factory)

    init = commands.add_parser("init", help="create the database, a workspace and its superuser")
    init.add_argument("--workspace", default="default", help="first workspace's name")
    init.add_argument("--email", default="admin@localhost", help="the superuser's email")
    init.set_defaults(run=admin.init)

    migrate = commands.add_parser("migrate", help="bring the database schema up to date")
    migrate.set_defaults(run=admin.migrate)

    check = commands.add_parser("check", help="check settings and the database, change nothing")
    check.set_defaults(run=admin.check)

    token = commands.add_parser("token", help="issue an admin token for a user (server-side)")
    token.add_argument("email", help="the user's email")
    token.add_argument("--workspace", default=None, help="workspace name (default: the first)")
    token.add_argument("--name", default="cli", help="a label for the token")
    token.set_defaults(run=admin.token)

    audit = commands.add_parser("audit", help="the audit log")
    audit_commands = audit.add_subparsers(dest="audit_command", metavar="ACTION", required=True)
    verify = audit_commands.add_parser("verify", help="verify every workspace's hash chain")
    verify.add_argument("--workspace", default=None, help="only this workspace (name)")
    verify.set_defaults(run=admin.audit_verify)
    purge = audit_commands.add_parser(
        "purge", help="remove events older than each workspace's retention (signed checkpoint)"
    )
    purge.add_argument("--workspace", default=None, help="only this workspace (name)")
    purge.set_defaults(run=admin.audit_purge)

    add_user_commands(commands)
    shell = commands.add_parser(
        "websh", help="open a terminal on a server through the broker (token: CORRAL_TOKEN)"
    )
    shell.add_argument("server", help="server name or id")
    shell.add_argument("--user", default=None, help="unix user on the server (default: yours)")
    shell.add_argument("--url", default=None, help="broker URL (default: CORRAL_URL)")
    shell.add_argument("--ca-file", default=None, help="CA bundle that signs the broker's cert")
    shell.set_defaults(run=websh.websh)

    recordings = commands.add_parser("recordings", help="session recordings")
    recording_commands = recordings.add_subparsers(
        dest="recordings_command", metavar="ACTION", required=True
    )
    recordings_purge = recording_commands.add_parser(
        "purge", help="remove recordings older than each workspace's retention (audited)"
    )
    recordings_purge.add_argument("--workspace", default=None, help="only this workspace (name)")
    recordings_purge.set_defaults(run=admin.recordings_purge)

    add_policy_commands(commands)

    version = commands.add_parser("version", help="print the version")
    version.set_defaults(run=admin.version)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        make_loop = getattr(args, "loop_factory", None)
        with asyncio.Runner(loop_factory=make_loop() if make_loop else None) as runner:
            return int(runner.run(args.run(args)))
    except CorralError as exc:
        print(f"corral: error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
