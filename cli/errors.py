"""Exit codes and the one error type the client commands raise.

Every failure of a client command is one line, ``corral: error: <problem>; <fix>``, and one
of the exit codes below (``corral --help`` and docs/cli.md list them); ``corral exec``
exits with the remote command's own status instead when the command ran.

    CliError (a broker.errors.CorralError, so the admin commands' handler also prints it)
    └── carries .exit_code and .fix
"""

from __future__ import annotations

from broker.errors import CorralError

__all__ = [
    "EXIT_AUTH",
    "EXIT_CODES_HELP",
    "EXIT_DENIED",
    "EXIT_FAILED",
    "EXIT_INTERRUPTED",
    "EXIT_NEEDS_STEP",
    "EXIT_NOT_FOUND",
    "EXIT_OK",
    "EXIT_USAGE",
    "CliError",
]

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_AUTH = 3
EXIT_NOT_FOUND = 4
EXIT_DENIED = 5
EXIT_NEEDS_STEP = 6
EXIT_INTERRUPTED = 130

EXIT_CODES_HELP = """exit codes:
  0    ok
  1    failed (broker unreachable, bad answer, operation failed)
  2    usage error
  3    not logged in, or the credential was refused (run `corral login URL`)
  4    not found (server, session, approval, recording)
  5    denied by policy or by your role
  6    needs an approval or a recent MFA first
  130  interrupted (Ctrl-C); 129/143 after SIGHUP/SIGTERM
  exec, websh, join: the remote command's exit status"""


class CliError(CorralError):
    """A failure to report as one line: what went wrong, then what to do about it."""

    def __init__(self, problem: str, fix: str = "", exit_code: int = EXIT_FAILED) -> None:
        super().__init__(f"{problem}; {fix}" if fix else problem)
        self.problem = problem
        self.fix = fix
        self.exit_code = exit_code
