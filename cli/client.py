"""The client commands' argument parsing: the commands people and scripts run on their own
machines, which talk to a broker over HTTPS (never to its database).

``audit`` and ``recordings`` are shared with the broker-host commands: ``corral audit
verify|purge`` and ``corral recordings purge`` stay the server-side admin actions, while
``corral audit [filters]`` and ``corral recordings [list|play]`` go through the API.
"""

from __future__ import annotations

import argparse
import re
from datetime import UTC, datetime, timedelta

from cli import login, play, remote_exec, resources, websh

__all__ = [
    "CLIENT_COMMANDS",
    "add_audit_query",
    "add_client_commands",
    "add_recording_commands",
    "common_options",
    "is_client_call",
    "split_remote_command",
]


def common_options() -> argparse.ArgumentParser:
    """--profile/--url/--ca-file, shared by every command that talks to a broker."""
    common = argparse.ArgumentParser(add_help=False)
    where = common.add_argument_group("broker")
    where.add_argument(
        "--profile", default=None, help="credentials profile (default: CORRAL_PROFILE or current)"
    )
    where.add_argument("--url", default=None, help="broker URL (default: CORRAL_URL or profile)")
    where.add_argument(
        "--ca-file", default=None, help="CA bundle that signs the broker's certificate"
    )
    return common


def _json_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print JSON for scripts")


_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_DURATION = re.compile(r"(\d+)([smhdw])")

#: The commands that only talk to a broker: `corral` parses them without importing the
#: broker-host modules (database, policy engines), which would cost a second per call.
CLIENT_COMMANDS = frozenset(
    {
        "login",
        "logout",
        "whoami",
        "profiles",
        "servers",
        "websh",
        "exec",
        "sessions",
        "join",
        "watch",
        "approvals",
        "audit",
        "recordings",
    }
)
HOST_ACTIONS = frozenset({"verify", "purge"})


def is_client_call(argv: list[str]) -> bool:
    """True when ``argv`` names a client command (not `audit verify|purge`, `recordings
    purge`): then only the client parsers are built."""
    if "-h" in argv or "--help" in argv:
        return False  # help shows every action, the broker-host ones too
    words = [word for word in argv if not word.startswith("-")]
    if not words or words[0] not in CLIENT_COMMANDS:
        return False
    return words[0] not in ("audit", "recordings") or not HOST_ACTIONS & set(words[1:])


def split_remote_command(words: list[str]) -> tuple[list[str], list[str] | None]:
    """``corral exec ... -- CMD...``: the words before ``--`` for argparse, and the remote
    command after it untouched (argparse's own ``--`` handling under subcommands drops or
    refuses such words)."""
    if not words or words[0] != "exec" or "--" not in words:
        return words, None
    cut = words.index("--")
    return words[:cut], words[cut + 1 :]


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: a whole number of at least 1")
    return value


def when(text: str) -> str:
    """``--since 2h`` (relative) or an ISO 8601 time, sent as ISO 8601 UTC."""
    match = _DURATION.fullmatch(text.strip())
    if match is not None:
        delta = timedelta(seconds=int(match.group(1)) * _UNITS[match.group(2)])
        return (datetime.now(UTC) - delta).isoformat()
    try:
        stamp = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r}: write a duration (30m, 12h, 7d) or an ISO 8601 time"
        ) from None
    return (stamp if stamp.tzinfo else stamp.replace(tzinfo=UTC)).isoformat()


def add_client_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    common = common_options()

    sign_in = commands.add_parser(
        "login",
        help="log in to a broker (device code in a browser, or --token)",
        description="Device-code login by default: approve the code shown here in a "
        "browser where you are signed in to Corral. With --token, the token (use - to read "
        "it from stdin) is checked against the broker, then saved.",
    )
    sign_in.add_argument(
        "url_arg", metavar="URL", help="the broker, e.g. https://corral.example.com"
    )
    how = sign_in.add_mutually_exclusive_group()
    how.add_argument("--token", default=None, metavar="PAT", help="a personal access token, or -")
    how.add_argument("--device", action="store_true", help="device-code login (the default)")
    sign_in.add_argument("--profile", default=None, help="save as this profile (default: current)")
    sign_in.add_argument("--ca-file", default=None, help="CA bundle that signs the broker's cert")
    sign_in.set_defaults(run=login.login)

    sign_out = commands.add_parser(
        "logout", help="revoke (if login minted it) and forget a profile's token"
    )
    sign_out.add_argument("--profile", default=None, help="this profile (default: current)")
    sign_out.add_argument(
        "--local", action="store_true", help="only forget the token, do not revoke it"
    )
    sign_out.set_defaults(run=login.logout)

    me = commands.add_parser("whoami", parents=[common], help="who the token belongs to")
    _json_option(me)
    me.set_defaults(run=login.whoami)

    listed = commands.add_parser("profiles", help="the saved profiles (* = current)")
    _json_option(listed)
    listed.set_defaults(run=login.profiles)

    servers = commands.add_parser(
        "servers", parents=[common], help="servers you can see, with status and your access"
    )
    _json_option(servers)
    servers.set_defaults(run=resources.servers)

    shell = commands.add_parser(
        "websh", parents=[common], help="open a terminal on a server through the broker"
    )
    shell.add_argument("server", help="server name or id")
    shell.add_argument(
        "-u", "--user", default=None, help="unix user on the server (default: your login name)"
    )
    shell.set_defaults(run=websh.websh)

    run = commands.add_parser(
        "exec",
        parents=[common],
        help="run one command on a server (exits with its status)",
        usage="corral exec [options] SERVER -- CMD [ARG...]",
    )
    run.add_argument("server", help="server name or id")
    run.add_argument("-u", "--user", default=None, help="unix user (default: your login name)")
    run.add_argument("--timeout", type=int, default=60, help="seconds, 1..3600 (default 60)")
    run.add_argument(
        "--no-wait",
        action="store_true",
        help="if the command needs an approval, exit 6 at once instead of waiting for one",
    )
    run.add_argument("command", nargs="*", help="the command and its arguments, after --")
    run.set_defaults(run=remote_exec.remote_exec)

    live = commands.add_parser("sessions", parents=[common], help="live sessions you can see")
    _json_option(live)
    live.set_defaults(run=resources.sessions)

    join = commands.add_parser(
        "join", parents=[common], help="join a shared session (link) or re-attach your own"
    )
    join.add_argument("session", help="your session id, a share link or secret, or - (stdin)")
    join.set_defaults(run=websh.join)

    watch = commands.add_parser(
        "watch", parents=[common], help="watch a live session read-only (staff)"
    )
    watch.add_argument("session", help="session id")
    watch.set_defaults(run=websh.watch)

    approvals = commands.add_parser(
        "approvals", parents=[common], help="list, approve or deny held commands"
    )
    approvals.add_argument(
        "approvals_action",
        nargs="?",
        choices=("list", "approve", "deny"),
        metavar="ACTION",
        help="list (default), approve ID or deny ID",
    )
    approvals.add_argument("id", nargs="?", help="approval id (approve/deny)")
    approvals.add_argument("--reason", default=None, help="why (shown to the requester)")
    approvals.add_argument(
        "--status", default=None, choices=("pending", "approved", "denied", "expired")
    )
    _json_option(approvals)
    approvals.set_defaults(run=resources.approvals)


def add_audit_query(audit: argparse.ArgumentParser) -> None:
    """``corral audit [filters]``: the audit log through the API (the parser was made
    with :func:`common_options` as a parent)."""
    audit.add_argument("--since", type=when, default=None, help="30m, 12h, 7d or ISO 8601")
    audit.add_argument("--until", type=when, default=None, help="30m, 12h, 7d or ISO 8601")
    audit.add_argument("--actor", default=None, help="actor id")
    audit.add_argument(
        "--category",
        default=None,
        choices=("authentication", "authorization", "resource_access", "configuration"),
    )
    audit.add_argument("--server", default=None, help="server id")
    audit.add_argument("--action", default=None, help="e.g. session.command")
    audit.add_argument("--outcome", default=None, choices=("success", "failure", "denied"))
    audit.add_argument(
        "--limit", type=_positive, default=100, help="at most this many (default 100)"
    )
    audit.add_argument("--follow", "-f", action="store_true", help="keep printing new events")
    _json_option(audit)
    audit.set_defaults(run=resources.audit_events)


def add_recording_commands(
    recordings: argparse.ArgumentParser,
    actions: argparse._SubParsersAction[argparse.ArgumentParser],
) -> None:
    """``corral recordings [list|play]`` (``recordings`` was made with the common options
    as a parent; with no action it lists)."""
    recordings.add_argument("--session", default=None, help="only this session's")
    _json_option(recordings)
    recordings.set_defaults(run=resources.recordings_list)
    common = common_options()
    listed = actions.add_parser("list", parents=[common], help="recordings you can see")
    listed.add_argument("--session", default=None, help="only this session's")
    _json_option(listed)
    listed.set_defaults(run=resources.recordings_list)
    replay = actions.add_parser("play", parents=[common], help="replay a recording here")
    replay.add_argument("id", help="recording id")
    replay.add_argument("--speed", type=float, default=1.0, help="2 = twice as fast")
    replay.add_argument(
        "--max-wait", type=float, default=2.0, help="longest pause, in seconds (default 2)"
    )
    replay.add_argument("--raw", action="store_true", help="write the asciicast file instead")
    replay.set_defaults(run=play.play)
