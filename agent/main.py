"""The ``corral-agent`` command: ``register`` this host, then ``run`` the agent.

Expected failures (bad arguments, unreadable config, a broker that says no) print one
line ``corral-agent: error: ...`` and exit 1; a traceback means a bug. The secret and
the registration token are never printed.
"""

from __future__ import annotations

import socket
import sys
from collections.abc import Sequence

from agent import __version__
from agent.config import DEFAULT_CONFIG_PATH, AgentConfig, load_config, save_config
from agent.errors import AgentError

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing
if TYPE_CHECKING:
    import argparse

__all__ = ["main"]

PROG = "corral-agent"


def _tag(text: str) -> tuple[str, str]:
    import argparse

    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"tag {text!r} is not key=value")
    return key, value


def _parser() -> argparse.ArgumentParser:
    # argparse (with gettext) is imported only here: the service's own command line,
    # ``run --config PATH``, is read by ``_service_args`` and never needs it.
    import argparse

    class _Parser(argparse.ArgumentParser):
        def error(self, message: str) -> None:  # type: ignore[override]
            self.exit(1, f"{PROG}: error: {message}\n")

    parser = _Parser(prog=PROG, description="Corral host agent.")
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    reg = commands.add_parser("register", help="register this host with a broker")
    reg.add_argument("--url", required=True, help="the broker's https URL")
    reg.add_argument("--token", required=True, help="one-time registration token")
    reg.add_argument("--name", default=None, help="server name (default: hostname)")
    reg.add_argument(
        "--tag", action="append", type=_tag, default=[], metavar="K=V", help="repeatable"
    )
    reg.add_argument("--ca-file", default=None, help="CA bundle that signs the broker")
    reg.add_argument("--config", default=DEFAULT_CONFIG_PATH, help="config file to write")
    run = commands.add_parser("run", help="connect to the broker and serve")
    run.add_argument("--config", default=DEFAULT_CONFIG_PATH, help="config file to read")
    run.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    return parser


def _service_args(argv: Sequence[str]) -> tuple[str, bool] | None:
    """``(config, verbose)`` for the plain forms of ``run [--config PATH] [-v]``, else None.

    This is how systemd starts the agent; anything else (abbreviations, ``--help``, errors)
    returns None and goes through argparse, so the two always agree.
    """
    if not argv or argv[0] != "run":
        return None
    config, verbose = DEFAULT_CONFIG_PATH, False
    i = 1
    while i < len(argv):
        arg = argv[i]
        if arg in ("-v", "--verbose"):
            verbose = True
        elif arg == "--config" and i + 1 < len(argv) and not argv[i + 1].startswith("-"):
            i += 1
            config = argv[i]
        elif arg.startswith("--config=") and len(arg) > len("--config="):
            config = arg[len("--config=") :]
        else:
            return None
        i += 1
    return config, verbose


def _register(args: argparse.Namespace) -> int:
    from agent.register import register
    from agent.sysinfo import system_info

    name = args.name or socket.gethostname()
    tags = dict(args.tag)
    result = register(
        args.url, args.token, name=name, tags=tags, sysinfo=system_info(), ca_file=args.ca_file
    )
    save_config(
        AgentConfig(
            broker_url=args.url.rstrip("/"),
            agent_id=result.server_id,
            secret=result.secret,
            name=name,
            ca_file=args.ca_file,
            tags=tags,
        ),
        args.config,
    )
    print(f"registered {result.server_name} as {result.server_id}; credential in {args.config}")
    return 0


def _run(config_path: str, verbose: bool) -> int:
    from agent.daemon import Agent
    from agent.log import configure

    config = load_config(config_path)
    configure(verbose=verbose)
    return Agent(config).run()


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``corral-agent`` and ``python -m agent``; returns the exit status."""
    service = _service_args(sys.argv[1:] if argv is None else argv)
    if service is not None:
        try:
            return _run(*service)
        except AgentError as exc:
            print(f"{PROG}: error: {exc}", file=sys.stderr)
            return 1
        except KeyboardInterrupt:
            return 1
    parser = _parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version, usage errors (already printed)
        return exc.code if isinstance(exc.code, int) else 1
    try:
        if args.command == "register":
            return _register(args)
        if args.command == "run":
            return _run(args.config, args.verbose)
    except AgentError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 1
    parser.print_help(sys.stderr)
    return 1
