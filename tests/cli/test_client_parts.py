"""The client commands' pure parts: profiles on disk, problem-to-exit-code mapping, the
broker-event lines a terminal shows, asciicast playback timing and argument splitting.
(The commands themselves run against a real broker in tests/integration/test_cli_client.py.)
"""

from __future__ import annotations

import stat
from pathlib import Path

import httpx
import pytest

from cli.client import is_client_call, split_remote_command, when
from cli.errors import CliError
from cli.http import Api, problem_error
from cli.main import main
from cli.output import cell
from cli.play import replay_cast
from cli.profiles import Credentials, Profile, credentials_path, resolve
from cli.terminal_relay import Terminal, describe
from cli.websh import _share_secret
from websh import (
    ApprovalDenied,
    ApprovalGranted,
    ApprovalPending,
    CommandBlocked,
    MfaRequired,
    ParticipantJoined,
)


def test_credentials_round_trip_private_and_atomic(tmp_path: Path) -> None:
    env = {"XDG_CONFIG_HOME": str(tmp_path / "xdg")}
    path = credentials_path(env)
    assert path == tmp_path / "xdg" / "corral" / "credentials.toml"
    assert credentials_path({"HOME": str(tmp_path)}) == tmp_path / ".config/corral/credentials.toml"
    creds = Credentials(path, current="work")
    tricky = 'crlpat_"quoted"\\slash\nline'
    creds.profiles["work"] = Profile("work", "https://c.example", tricky, "tid", user="ä@x")
    creds.save()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert [p.name for p in path.parent.iterdir()] == ["credentials.toml"]  # no temp left
    again = Credentials.load(path)
    assert again.current == "work"
    assert again.profiles["work"].token == tricky and again.profiles["work"].user == "ä@x"
    assert again.profiles["work"].minted
    assert tricky not in repr(again.profiles["work"])

    target = resolve(profile=None, url=None, ca_file=None, env=env)
    assert (target.url, target.token, target.source) == ("https://c.example", tricky, "profile")
    scripted = resolve(
        profile=None, url=None, ca_file=None, env={**env, "CORRAL_TOKEN": "crlpat_env"}
    )
    assert (scripted.token, scripted.source, scripted.url) == (
        "crlpat_env",
        "env",
        "https://c.example",
    )
    with pytest.raises(CliError) as missing:
        resolve(profile="other", url=None, ca_file=None, env=env)
    assert missing.value.exit_code == 3
    with pytest.raises(CliError) as bad_name:
        resolve(profile="../x", url=None, ca_file=None, env=env)
    assert bad_name.value.exit_code == 2


def test_an_unreadable_or_broken_file_is_one_error(tmp_path: Path) -> None:
    path = tmp_path / "credentials.toml"
    path.write_text("current = [")
    path.chmod(0o600)
    with pytest.raises(CliError, match="cannot read"):
        Credentials.load(path)
    path.chmod(0o640)
    with pytest.raises(CliError, match="chmod 600"):
        Credentials.load(path)


def _problem(status: int, code: str, detail: str = "d", **headers: str) -> httpx.Response:
    return httpx.Response(
        status,
        json={"type": f"urn:corral:problem:{code}", "title": "t", "detail": detail},
        headers=headers,
    )


@pytest.mark.parametrize(
    ("status", "code", "exit_code", "fix"),
    [
        (401, "unauthenticated", 3, "corral login"),
        (404, "not-found", 4, "check the name"),
        (403, "policy-denied", 5, "security team"),
        (403, "forbidden", 5, "administrator"),
        (403, "mfa-required", 6, "second factor"),
        (409, "approval-required", 6, "corral approvals"),
        (503, "agent-offline", 1, "agent"),
        (500, "internal", 1, "broker's log"),
    ],
)
def test_problems_map_to_documented_exit_codes(
    status: int, code: str, exit_code: int, fix: str
) -> None:
    error = problem_error(_problem(status, code, "line one\nline two"))
    assert error.exit_code == exit_code and fix in error.fix
    assert "\n" not in str(error) and "line one line two" in str(error)


def test_rate_limits_and_non_problem_answers() -> None:
    limited = problem_error(_problem(429, "rate-limited", **{"Retry-After": "7"}))
    assert limited.fix == "retry in 7 s"
    html = problem_error(httpx.Response(502, text="<html>bad gateway</html>"))
    assert "HTTP 502" in str(html) and "<html>" not in str(html)


def test_broker_events_become_clear_lines() -> None:
    blocked = describe(
        CommandBlocked(command="rm -rf /\x1b[2J", reason="never", rule_id="block.rm-root"),
        "https://c",
    )
    assert blocked == "blocked: rm -rf /\\x1b[2J: never (block.rm-root)"
    mfa = describe(MfaRequired(reason="sudo", methods=("totp",), url="/mfa"), "https://c")
    assert mfa == "MFA required: sudo; verify with totp at https://c/mfa, the command then runs"
    pending = describe(
        ApprovalPending(approval_id="a1", approvers=("group:security",), reason="prod"), ""
    )
    assert "a1 by group:security: prod" in pending and "corral approvals approve a1" in pending
    assert describe(ApprovalGranted(approval_id="a1", approvers=("bob",)), "") == (
        "approval a1 granted by bob"
    )
    assert describe(ApprovalDenied(approval_id="a1", approvers=("bob",), reason="no"), "") == (
        "approval a1 denied by bob: no"
    )
    assert describe(ParticipantJoined(user="g@x", role="observer"), "") == "g@x joined as observer"


def test_playback_keeps_timing_cuts_pauses_and_skips_input() -> None:
    cast = [
        '{"version": 2, "width": 80, "height": 24}',
        '[0.5, "o", "a"]',
        '[0.6, "i", "typed"]',
        '[10.5, "o", "b"]',
        '[11.0, "r", "100x30"]',
        "",
        '[11.5, "o", "c"]',
    ]
    out: list[bytes] = []
    slept: list[float] = []
    assert replay_cast(cast, out.append, speed=2, max_wait=3, sleep=slept.append) == 3
    assert out == [b"a", b"b", b"c"]
    assert slept == [0.25, 1.5, 0.5]
    with pytest.raises(CliError, match="asciicast v2"):
        replay_cast(['{"version": 1}'], out.append)


def test_arguments_split_and_client_calls_detected() -> None:
    assert split_remote_command(["exec", "h", "-u", "x", "--", "ls", "--", "-l"]) == (
        ["exec", "h", "-u", "x"],
        ["ls", "--", "-l"],
    )
    assert split_remote_command(["websh", "h", "--", "x"]) == (["websh", "h", "--", "x"], None)
    assert is_client_call(["servers", "--json"])
    assert is_client_call(["audit", "--since", "1h"])
    assert not is_client_call(["audit", "verify"])
    assert not is_client_call(["recordings", "purge", "--workspace", "w"])
    assert not is_client_call(["up"]) and not is_client_call([])
    assert not is_client_call(["audit", "--help"])
    assert when("2024-01-02T03:04:05") == "2024-01-02T03:04:05+00:00"
    assert when("90m").endswith("+00:00")
    assert _share_secret("https://c/api/v1/shares/crlshr_abc/join") == "crlshr_abc"
    assert _share_secret("crlshr_abc") == "crlshr_abc"
    assert _share_secret("6f1c0a") is None
    assert cell("a\x1b[31mb\tc") == "a\\x1b[31mb\\tc"
    assert cell("x" * 100, 10) == "x" * 9 + "…"


@pytest.mark.parametrize(
    "argv",
    [["no-such-command"], ["exec"], ["audit", "--since", "soon"], ["approvals", "maybe"]],
)
def test_usage_errors_are_one_line_naming_the_help(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(argv)
    assert exited.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("corral: error: ") and "--help`" in err[0]


async def test_an_unreachable_terminal_url_is_one_error_without_the_ticket() -> None:
    api = Api("http://127.0.0.1:1")
    terminal = Terminal(api, "s1", "ws://127.0.0.1:1/api/v1/sessions/s1/terminal?ticket=SECRET")
    with pytest.raises(CliError) as failed:
        await terminal.run()
    api.close()
    assert "SECRET" not in str(failed.value)
    assert "CORRAL_PUBLIC_URL" in failed.value.fix and failed.value.exit_code == 1
