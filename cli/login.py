"""``corral login``, ``logout``, ``whoami`` and ``profiles``: getting a token onto this
machine and knowing which one is in use.

``login URL`` runs the device-code flow by default (the person approves the code in a
browser where they are signed in; the broker then mints a write-scope token for this
machine), or checks a token given with ``--token`` against ``/api/v1/whoami`` before saving
it. ``logout`` revokes a token that login minted, then forgets it; a pasted token is only
forgotten (it may be used elsewhere). Tokens are never printed.
"""

from __future__ import annotations

import argparse
import os
import re
import socket
import sys
import time
from collections.abc import Callable, Mapping
from typing import Any

from cli.errors import EXIT_AUTH, EXIT_USAGE, CliError
from cli.http import Api, check_url, problem_error
from cli.output import cell, print_json, print_table
from cli.profiles import Credentials, Profile, credentials_path, resolve, selected_profile

__all__ = ["login", "logout", "profiles", "whoami"]

MAX_WAIT_SECONDS = 900


def _client_name() -> str:
    """This machine's name as the token's label (``corral login on <host>``)."""
    name = re.sub(r"[^A-Za-z0-9._-]", "-", socket.gethostname())[:64].lstrip("._-")
    return name or "a-terminal"


def _read_token(value: str) -> str:
    token = sys.stdin.readline().strip() if value == "-" else value.strip()
    if not token:
        raise CliError("no token given", "pass --token - and the token on stdin", EXIT_USAGE)
    return token


def _device_login(
    api: Api, say: Callable[[str], None], sleep: Callable[[float], None]
) -> dict[str, Any]:
    started = api.post("/api/v1/auth/device", {"client_name": _client_name()})
    # Broker text reaches the terminal escaped (a hostile broker cannot paint the screen).
    say(
        f"To sign in, open {cell(started['verification_uri'], 300)} in a browser where you "
        f"are signed in to Corral and enter the code {cell(started['user_code'], 20)}\n"
        f"  (or open {cell(started['verification_uri_complete'], 300)})\n"
        "Waiting for approval... (Ctrl-C to cancel)"
    )
    interval = float(started.get("interval", 5))
    deadline = time.monotonic() + min(float(started.get("expires_in", 600)), MAX_WAIT_SECONDS)
    while time.monotonic() < deadline:
        sleep(interval)
        response = api.answer(
            "POST", "/api/v1/auth/device/token", {"device_code": started["device_code"]}
        )
        if response.is_success:
            answer: dict[str, Any] = response.json()
            return answer
        try:
            problem = response.json()
        except ValueError:
            problem = None
        if not isinstance(problem, dict):
            raise problem_error(response)
        code = str(problem.get("type", "")).removeprefix("urn:corral:problem:")
        if code == "authorization-pending":
            continue
        if code == "slow-down":
            interval = float(problem.get("interval") or interval + 5)
            continue
        if code == "access-denied":
            raise CliError(
                "the login was denied in the browser", "run `corral login URL` again", EXIT_AUTH
            )
        if code == "expired-token":
            raise CliError(
                "the login code expired before it was approved",
                "run `corral login URL` again",
                EXIT_AUTH,
            )
        raise problem_error(response)
    raise CliError(
        "the login code expired before it was approved", "run `corral login URL` again", EXIT_AUTH
    )


def login(args: argparse.Namespace, env: Mapping[str, str] = os.environ) -> int:
    url = check_url(args.url_arg)
    creds = Credentials.load(credentials_path(env))
    name = selected_profile(args.profile, env, creds)
    ca_file = os.path.abspath(args.ca_file) if args.ca_file else ""
    if args.token is not None:
        token = _read_token(args.token)
        with Api(url, token, ca_file) as api:
            me = api.get("/api/v1/whoami")
        token_id = ""  # pasted: it may live elsewhere too, so logout will not revoke it
    else:
        if not args.device and not sys.stdin.isatty():
            raise CliError(
                "no terminal to approve a device login from",
                "pass --token - (token on stdin) or --device",
                EXIT_USAGE,
            )
        with Api(url, "", ca_file) as api:
            granted = _device_login(api, lambda text: print(text, file=sys.stderr), time.sleep)
        token, token_id = str(granted["token"]), str(granted["token_id"])
        me = {"user": granted["user"], "workspace": granted["workspace"]}
    previous = creds.profiles.get(name)
    creds.profiles[name] = Profile(
        name=name,
        url=url,
        token=token,
        token_id=token_id,
        ca_file=ca_file,
        user=str(me["user"]["email"]),
        workspace=str(me["workspace"]["name"]),
    )
    creds.current = name
    creds.save()
    if previous is not None and previous.minted and previous.token != token:
        _revoke_quietly(previous)
    print(
        f"Logged in to {url} as {cell(me['user']['email'])} "
        f"(workspace {cell(me['workspace']['name'])}); "
        f"profile {name!r} saved in {creds.path}"
    )
    return 0


def _revoke_quietly(profile: Profile) -> None:
    """The token a new login replaces is revoked if the broker can be reached."""
    try:
        with Api(profile.url, profile.token, profile.ca_file) as api:
            api.call("DELETE", f"/api/v1/tokens/{profile.token_id}")
    except CliError:
        pass


def logout(args: argparse.Namespace, env: Mapping[str, str] = os.environ) -> int:
    creds = Credentials.load(credentials_path(env))
    name = selected_profile(args.profile, env, creds)
    profile = creds.profiles.get(name)
    if profile is None:
        raise CliError(f"no profile {name!r}", "see `corral profiles`", exit_code=4)
    revoked = False
    if profile.minted and not args.local:
        try:
            with Api(profile.url, profile.token, profile.ca_file) as api:
                api.call("DELETE", f"/api/v1/tokens/{profile.token_id}")
            revoked = True
        except CliError as exc:
            if exc.exit_code != EXIT_AUTH:  # already revoked or expired: nothing to undo
                raise CliError(
                    f"could not revoke the token: {exc.problem}",
                    "retry when the broker is reachable, or pass --local to only forget it",
                ) from None
    del creds.profiles[name]
    creds.save()
    how = "revoked and forgot" if revoked else "forgot"
    print(f"Logged out: {how} the token of profile {name!r}")
    return 0


def whoami(args: argparse.Namespace, env: Mapping[str, str] = os.environ) -> int:
    target = resolve(profile=args.profile, url=args.url, ca_file=args.ca_file, env=env)
    with Api.of(target) as api:
        me = api.get("/api/v1/whoami")
    if args.json:
        print_json({**me, "url": target.url, "profile": target.profile, "source": target.source})
        return 0
    via = "CORRAL_TOKEN" if target.source == "env" else f"profile {target.profile!r}"
    print(
        f"{cell(me['user']['email'])} ({cell(me['user']['role'])}) in workspace "
        f"{cell(me['workspace']['name'])} at {target.url}, via {via}"
    )
    return 0


def profiles(args: argparse.Namespace, env: Mapping[str, str] = os.environ) -> int:
    creds = Credentials.load(credentials_path(env))
    active = selected_profile(None, env, creds)
    rows = [
        {
            "name": p.name,
            "url": p.url,
            "user": p.user,
            "workspace": p.workspace,
            "current": p.name == active,
            "minted_by_login": p.minted,
        }
        for p in sorted(creds.profiles.values(), key=lambda p: p.name)
    ]
    if args.json:
        print_json({"profiles": rows, "current": active})
        return 0
    print_table(
        rows,
        [
            ("", lambda r: "*" if r["current"] else " "),
            ("PROFILE", lambda r: r["name"]),
            ("URL", lambda r: r["url"]),
            ("USER", lambda r: r["user"]),
            ("WORKSPACE", lambda r: r["workspace"]),
        ],
        "no profiles; run `corral login URL`",
    )
    return 0
