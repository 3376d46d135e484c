"""The ``corral`` command: the client commands people and scripts run against a broker
(login, servers, websh, exec, sessions, approvals, audit, recordings; see cli/client.py)
and the broker-host administration and policy tools (cli/host_commands.py).

Every failure ends as one line on stderr (``corral: error: <problem>; <fix>``) and a
documented exit code (cli/errors.py, ``corral --help``); tracebacks are for bugs only.
A client command is parsed without importing the broker-host modules, so it starts fast.
"""

from __future__ import annotations

import argparse
import asyncio
import inspect
import os
import sys
from collections.abc import Sequence
from typing import NoReturn

from broker.errors import CorralError
from cli.client import (
    add_audit_query,
    add_client_commands,
    add_recording_commands,
    common_options,
    is_client_call,
    split_remote_command,
)
from cli.errors import EXIT_CODES_HELP, EXIT_FAILED, EXIT_INTERRUPTED, EXIT_USAGE, CliError

__all__ = ["build_parser", "main"]


class Parser(argparse.ArgumentParser):
    """Usage errors as one line too, naming where the help is (subcommands inherit it)."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"corral: error: {message}; see `{self.prog} --help`\n")


def build_parser(client_only: bool = False) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = Parser(
        prog="corral",
        description="Corral: a policy-driven access broker for Linux servers.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=EXIT_CODES_HELP
        + "\n\nClient commands use the profile saved by `corral login` (or CORRAL_URL and "
        "CORRAL_TOKEN); see docs/cli.md.\nBroker-host commands read corral.toml and CORRAL_* "
        "variables; see docs/operations.md.",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    add_client_commands(commands)

    audit = commands.add_parser(
        "audit",
        parents=[common_options()],
        help="the audit log: query it through the API, or verify/purge it on the broker host",
    )
    add_audit_query(audit)
    audit_actions = audit.add_subparsers(dest="audit_command", metavar="ACTION", required=False)

    recordings = commands.add_parser(
        "recordings",
        parents=[common_options()],
        help="session recordings: list, play (API); purge (broker host)",
    )
    recording_actions = recordings.add_subparsers(
        dest="recordings_command", metavar="ACTION", required=False
    )
    add_recording_commands(recordings, recording_actions)

    if not client_only:
        from cli.host_commands import add_host_commands

        add_host_commands(commands, audit_actions, recording_actions)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    words = list(sys.argv[1:] if argv is None else argv)
    words, remote = split_remote_command(words)
    args = build_parser(client_only=is_client_call(words)).parse_args(words)
    if remote is not None:
        args.command = remote
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
    except BrokenPipeError:
        # `corral audit | head`: the reader left; say nothing more (see the Python docs
        # on SIGPIPE) and keep the interpreter from complaining at exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
