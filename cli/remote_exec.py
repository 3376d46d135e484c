"""``corral exec SERVER [-u USER] -- CMD...``: run one command on a server, like ``ssh host
cmd``, decided exactly by the policy before it is sent.

The broker's exec call (``POST /api/v1/servers/{server}/exec``) answers once the command
has finished, with its whole stdout and stderr, so the output is written then (not
streamed). The exit status is the remote one; a signal gives 128+N and a timeout 124 (as
``timeout(1)``). A policy refusal is one line and exit 5; a required approval or MFA is
exit 6.
"""

from __future__ import annotations

import argparse
import getpass
import shlex
import sys

from cli.errors import EXIT_USAGE, CliError
from cli.resources import connect

__all__ = ["EXIT_TIMED_OUT", "remote_exec"]

EXIT_TIMED_OUT = 124


def remote_exec(args: argparse.Namespace) -> int:
    argv = list(args.command)
    if not argv:
        raise CliError("no command given", "corral exec SERVER -- CMD [ARGS...]", EXIT_USAGE)
    # One word is taken as a shell line (`corral exec web 'ls | wc -l'`), several as argv.
    command = argv[0] if len(argv) == 1 else shlex.join(argv)
    with connect(args) as api:
        done = api.post(
            f"/api/v1/servers/{args.server}/exec",
            {
                "command": command,
                "unix_user": args.user or getpass.getuser(),
                "timeout": args.timeout,
            },
        )
    sys.stdout.write(str(done.get("stdout", "")))
    sys.stdout.flush()
    sys.stderr.write(str(done.get("stderr", "")))
    sys.stderr.flush()
    if done.get("timed_out"):
        print(f"corral: the command timed out after {args.timeout} s", file=sys.stderr)
        return EXIT_TIMED_OUT
    if done.get("signal"):
        return 128 + int(done["signal"])
    return int(done.get("exit_status") or 0)
