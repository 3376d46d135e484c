"""The ``corral`` command: the client commands people and scripts run against a broker
(login, servers, websh, exec, sessions, approvals, audit, recordings; see cli/client.py)
and the broker-host administration and policy tools.

Every failure ends as one line on stderr (``corral: error: <problem>; <fix>``) and a
documented exit code (cli/errors.py, ``corral --help``); tracebacks are for bugs only.
"""

from __future__ import annotations

import argparse
import asyncio
import inspect
import sys
from collections.abc import Sequence

from broker.errors import CorralError
from cli import admin
from cli.client import (
    add_audit_query,
    add_client_commands,
    add_recording_commands,
    common_options,
)
from cli.errors import EXIT_CODES_HELP, EXIT_FAILED, EXIT_INTERRUPTED, CliError
from cli.policy import add_policy_commands
from cli.users import add_user_commands

__all__ = ["main"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="corral",
        description="Corral: a policy-driven access broker for Linux servers.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=EXIT_CODES_HELP
        + "\n\nClient commands use the profile saved by `corral login` (or CORRAL_URL and "
        "CORRAL_TOKEN); see docs/cli.md.\nBroker-host commands read corral.toml and CORRAL_* "
        "variables; see docs/operations.md.",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    up = commands.add_parser("up", help="run the broker (initialising it on first start)")
    up.set_defaults(run=admin.up)

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

    audit = commands.add_parser(
        "audit",
        parents=[common_options()],
        help="the audit log: query it through the API, or verify/purge it on the broker host",
    )
    add_audit_query(audit)
    audit_commands = audit.add_subparsers(dest="audit_command", metavar="ACTION", required=False)
    verify = audit_commands.add_parser("verify", help="verify every workspace's hash chain")
    verify.add_argument("--workspace", default=None, help="only this workspace (name)")
    verify.set_defaults(run=admin.audit_verify)
    purge = audit_commands.add_parser(
        "purge", help="remove events older than each workspace's retention (signed checkpoint)"
    )
    purge.add_argument("--workspace", default=None, help="only this workspace (name)")
    purge.set_defaults(run=admin.audit_purge)

    add_user_commands(commands)
    add_client_commands(commands)

    recordings = commands.add_parser(
        "recordings",
        parents=[common_options()],
        help="session recordings: list, play (API); purge (broker host)",
    )
    recording_commands = recordings.add_subparsers(
        dest="recordings_command", metavar="ACTION", required=False
    )
    add_recording_commands(recordings, recording_commands)
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
        result = args.run(args)
        if inspect.iscoroutine(result):
            result = asyncio.run(result)
        return int(result)
    except CliError as exc:
        print(f"corral: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except CorralError as exc:
        print(f"corral: error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        print(file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
