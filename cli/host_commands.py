"""The broker-host commands of ``corral``: run the broker, manage its database, users and
policy, and the admin halves of ``audit`` and ``recordings``. They open the database
directly, so they run on the broker host; importing them loads the whole broker, which
is why ``cli.main`` only imports this module when one of them is called.
"""

from __future__ import annotations

import argparse
from typing import TypeAlias

from cli import admin
from cli.policy import add_policy_commands
from cli.users import add_user_commands

__all__ = ["add_host_commands"]

Actions: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"


def add_host_commands(
    commands: Actions, audit_actions: Actions, recording_actions: Actions
) -> None:
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

    verify = audit_actions.add_parser("verify", help="verify every workspace's hash chain")
    verify.add_argument("--workspace", default=None, help="only this workspace (name)")
    verify.set_defaults(run=admin.audit_verify)
    purge = audit_actions.add_parser(
        "purge", help="remove events older than each workspace's retention (signed checkpoint)"
    )
    purge.add_argument("--workspace", default=None, help="only this workspace (name)")
    purge.set_defaults(run=admin.audit_purge)

    identity = commands.add_parser("identity", help="identity housekeeping (broker host)")
    identity_commands = identity.add_subparsers(
        dest="identity_command", metavar="ACTION", required=True
    )
    identity_purge = identity_commands.add_parser(
        "purge",
        help="remove expired sessions, challenges, reset links, invitations (audited)",
    )
    identity_purge.add_argument("--workspace", default=None, help="only this workspace (name)")
    identity_purge.set_defaults(run=admin.identity_purge)

    recordings_purge = recording_actions.add_parser(
        "purge", help="remove recordings older than each workspace's retention (audited)"
    )
    recordings_purge.add_argument("--workspace", default=None, help="only this workspace (name)")
    recordings_purge.set_defaults(run=admin.recordings_purge)

    add_user_commands(commands)
    add_policy_commands(commands)

    version = commands.add_parser("version", help="print the version")
    version.set_defaults(run=admin.version)
