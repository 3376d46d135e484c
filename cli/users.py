"""``corral user``: local accounts from the broker host (no network, no token needed).

``set-password`` reads the new password from the terminal (asked twice, not echoed) or,
when standard input is not a terminal, from its first line, so scripts can pipe it in; it
is never taken from the command line, where ``ps`` and shell history would keep it.
"""

from __future__ import annotations

import argparse
import getpass
import sys

from broker.audit import Actor
from broker.errors import CorralError, NotFound
from broker.runtime import open_runtime
from broker.settings import load_settings
from broker.store.models import Role
from cli.admin import workspace_named
from idp.passwords import LocalLogin, Passwords, check_password_rules

__all__ = ["add_user_commands", "set_password", "user_add"]

OPERATOR = Actor("operator", "cli")


def _read_password(email: str) -> str:
    if not sys.stdin.isatty():
        return sys.stdin.readline().rstrip("\r\n")
    first = getpass.getpass(f"New password for {email}: ")
    if getpass.getpass("Again: ") != first:
        raise CorralError("the two passwords differ; nothing changed")
    return first


async def set_password(args: argparse.Namespace) -> int:
    settings = load_settings()
    async with open_runtime(settings, migrate=False) as rt:
        workspace = await workspace_named(rt, args.workspace)
        user = await rt.services.users.find_by_email(workspace.id, args.email)
        if user is None:
            raise NotFound("user", args.email)
        password = _read_password(user.email)
        check_password_rules(password, email=user.email)
        login = LocalLogin(rt.services, Passwords())
        await login.set_password(workspace.id, user.id, password, actor=OPERATOR)
    print(f"password set for {user.email} in workspace {workspace.name!r}")
    return 0


async def user_add(args: argparse.Namespace) -> int:
    settings = load_settings()
    async with open_runtime(settings, migrate=False) as rt:
        workspace = await workspace_named(rt, args.workspace)
        user = await rt.services.users.create(
            workspace.id, args.email, role=Role(args.role), actor=OPERATOR
        )
    print(f"user {user.email} ({user.role}) added")
    print(f"  set a password: corral user set-password {user.email}")
    return 0


def add_user_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    user = commands.add_parser("user", help="local accounts (run on the broker host)")
    actions = user.add_subparsers(dest="user_command", metavar="ACTION", required=True)
    setpw = actions.add_parser(
        "set-password", help="set a user's password (from the terminal, or stdin's first line)"
    )
    setpw.add_argument("email", help="the user's email")
    setpw.add_argument("--workspace", default=None, help="workspace name (default: the first)")
    setpw.set_defaults(run=set_password)
    add = actions.add_parser("add", help="add a local user (then set a password)")
    add.add_argument("email", help="the user's email")
    add.add_argument("--role", choices=[r.value for r in Role], default=Role.USER.value)
    add.add_argument("--workspace", default=None, help="workspace name (default: the first)")
    add.set_defaults(run=user_add)
