"""``corral exec SERVER [-u USER] -- CMD...``: run one command on a server, like ``ssh host
cmd``, decided exactly by the policy before it is sent.

Output is streamed as the command writes it (``POST /api/v1/servers/{server}/exec/stream``,
NDJSON), stdout to stdout and stderr to stderr. The exit status is the remote one; a
signal gives 128+N and a timeout 124 (as ``timeout(1)``). A policy refusal is one line
and exit 5; a required MFA is exit 6. A command that needs an approval waits for one
(one line on stderr says for whom), then runs; denied or timed out it is exit 5.
``--no-wait`` makes a required approval exit 6 at once instead.
"""

from __future__ import annotations

import argparse
import getpass
import shlex
import sys
from typing import Any

from cli.errors import EXIT_DENIED, EXIT_USAGE, CliError
from cli.resources import connect

__all__ = ["EXIT_TIMED_OUT", "remote_exec"]

EXIT_TIMED_OUT = 124
#: The broker holds a command for its approval timeout (10 min by default); a little more.
APPROVAL_WAIT = 660


def remote_exec(args: argparse.Namespace) -> int:
    argv = list(args.command)
    if not argv:
        raise CliError("no command given", "corral exec SERVER -- CMD [ARGS...]", EXIT_USAGE)
    # One word is taken as a shell line (`corral exec web 'ls | wc -l'`), several as argv.
    command = argv[0] if len(argv) == 1 else shlex.join(argv)
    body = {
        "command": command,
        "unix_user": args.user or getpass.getuser(),
        "timeout": args.timeout,
        "wait_for_approval": not args.no_wait,
    }
    read_timeout = args.timeout + 30 + (0 if args.no_wait else APPROVAL_WAIT)
    done: dict[str, Any] = {}
    with (
        connect(args) as api,
        api.stream_lines(
            f"/api/v1/servers/{args.server}/exec/stream", body, read_timeout=read_timeout
        ) as lines,
    ):
        for line in lines:
            if "approval" in line:
                held = line["approval"]
                approvers = ", ".join(held.get("approvers") or []) or "an approver"
                print(
                    f"corral: waiting for approval by {approvers} ({held.get('reason', '')})",
                    file=sys.stderr,
                    flush=True,
                )
            elif "stdout" in line:
                sys.stdout.write(str(line["stdout"]))
                sys.stdout.flush()
            elif "stderr" in line:
                sys.stderr.write(str(line["stderr"]))
                sys.stderr.flush()
            else:
                done = line
    error = done.get("error")
    if isinstance(error, dict) and error.get("code") == "approval-denied":
        raise CliError(
            "the command was not run: the approval was denied or timed out",
            "ask an approver, then retry",
            EXIT_DENIED,
        )
    if isinstance(error, dict):
        raise CliError(
            f"the command did not finish: {error.get('detail', 'unknown error')}",
            "check the server's agent, then retry",
        )
    if "exit_status" not in done:
        raise CliError("the broker ended the stream before the command's end", "retry")
    if done.get("timed_out"):
        print(f"corral: the command timed out after {args.timeout} s", file=sys.stderr)
        return EXIT_TIMED_OUT
    if done.get("signal"):
        return 128 + int(done["signal"])
    return int(done.get("exit_status") or 0)
