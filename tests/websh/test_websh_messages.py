"""Every message round-trips, and every field rule refuses what it should."""

from __future__ import annotations

import json

import pytest
from websh_samples import SAMPLES

import websh as w
from websh.catalog import BINARY_KINDS, TEXT_TYPES


def test_samples_cover_the_whole_catalog() -> None:
    covered = {type(m) for m in SAMPLES}
    assert covered == set(TEXT_TYPES.values()) | set(BINARY_KINDS.values())


@pytest.mark.parametrize("message", SAMPLES, ids=lambda m: type(m).__name__)
def test_round_trip(message: w.Message) -> None:
    payload = w.encode(message)
    assert w.decode(payload) == message
    if isinstance(message, w.TextMessage):
        assert isinstance(payload, str)
        assert json.loads(payload)["type"] == message.type
        assert " " not in payload.split('"type"')[0]
    else:
        assert isinstance(payload, bytes)
        assert payload[0] == message.kind


def test_wire_names_and_kinds_are_unique() -> None:
    classes = {cls for routes in w.ROUTES.values() for cls in routes}
    assert len({cls.type for cls in classes}) == len(classes) == 31
    assert len(TEXT_TYPES) == 27
    assert sorted(BINARY_KINDS) == [1, 2, 3, 4]


def test_secrets_stay_out_of_repr() -> None:
    for message in SAMPLES:
        assert "s3cr3t" not in repr(message)
        assert "one-time-token" not in repr(message)
        assert "ticket-123" not in repr(message)


def test_unknown_fields_are_ignored() -> None:
    payload = '{"type":"resize","cols":80,"rows":24,"future_field":{"x":[1,2]}}'
    assert w.decode(payload) == w.Resize(cols=80, rows=24)


def test_null_means_absent() -> None:
    payload = '{"type":"exit","status":3,"signal":null,"timed_out":null}'
    assert w.decode(payload) == w.Exit(status=3)


def _json(type_: str, **fields: object) -> str:
    return json.dumps({"type": type_, **fields})


_OPEN = {
    "channel_id": "c",
    "kind": "terminal",
    "token": "t",
    "path": "/p",
    "user": "root",
    "cols": 80,
    "rows": 24,
}
_EXEC = {k: v for k, v in _OPEN.items() if k not in ("cols", "rows")} | {"kind": "exec"}

INVALID = [
    ("missing field", _json("resize", cols=80)),
    ("bool is not int", _json("resize", cols=True, rows=24)),
    ("float is not int", _json("resize", cols=80.0, rows=24)),
    ("cols zero", _json("resize", cols=0, rows=24)),
    ("rows over max", _json("resize", cols=80, rows=1001)),
    ("string for int", _json("resize", cols="80", rows=24)),
    ("negative offset", _json("resume", offset=-1)),
    ("offset beyond 2**53", _json("resume", offset=2**53)),
    ("exit without status", _json("exit")),
    ("exit with both", _json("exit", status=1, signal=9)),
    ("exit status range", _json("exit", status=256)),
    ("timed_out not bool", _json("exit", status=1, timed_out=1)),
    ("bad id", _json("attach", channel_id="has space", offset=0)),
    ("empty id", _json("attach", channel_id="", offset=0)),
    ("id too long", _json("attach", channel_id="a" * 129, offset=0)),
    (
        "cpu over 100",
        _json(
            "metrics",
            ts=1,
            cpu=101,
            mem_used=0,
            mem_total=0,
            disk_used=0,
            disk_total=0,
            load=[0, 0, 0],
        ),
    ),
    (
        "load arity",
        _json(
            "metrics", ts=1, cpu=1, mem_used=0, mem_total=0, disk_used=0, disk_total=0, load=[0, 0]
        ),
    ),
    (
        "negative load",
        _json(
            "metrics",
            ts=1,
            cpu=1,
            mem_used=0,
            mem_total=0,
            disk_used=0,
            disk_total=0,
            load=[0, -1, 0],
        ),
    ),
    ("kind unknown", _json("open_channel", **(_OPEN | {"kind": "shell"}))),
    ("path with host", _json("open_channel", **(_OPEN | {"path": "//evil.example/x"}))),
    ("path relative", _json("open_channel", **(_OPEN | {"path": "agent/x"}))),
    ("path scheme", _json("open_channel", **(_OPEN | {"path": "https://evil/x"}))),
    ("bad unix user", _json("open_channel", **(_OPEN | {"user": "-root"}))),
    ("user with slash", _json("open_channel", **(_OPEN | {"user": "../root"}))),
    ("env bad name", _json("open_channel", **(_OPEN | {"env": {"A=B": "x"}}))),
    ("env NUL value", _json("open_channel", **(_OPEN | {"env": {"A": "x\x00y"}}))),
    ("env not object", _json("open_channel", **(_OPEN | {"env": ["A"]}))),
    ("terminal w/o size", _json("open_channel", **(_OPEN | {"cols": None}))),
    ("terminal w/ command", _json("open_channel", **(_OPEN | {"command": "ls"}))),
    ("exec w/o command", _json("open_channel", **_EXEC)),
    ("exec w/ size", _json("open_channel", **(_EXEC | {"command": "ls", "cols": 80}))),
    ("exec empty argv", _json("open_channel", **(_EXEC | {"command": []}))),
    ("exec argv[0] empty", _json("open_channel", **(_EXEC | {"command": ["", "x"]}))),
    ("exec argv not str", _json("open_channel", **(_EXEC | {"command": ["ls", 1]}))),
    ("exec empty string", _json("open_channel", **(_EXEC | {"command": ""}))),
    ("exec timeout zero", _json("open_channel", **(_EXEC | {"command": "ls", "timeout": 0}))),
    ("token with space", _json("channel_hello", channel_id="c", token="a b", protocol="websh/1")),
    ("reason with escape", _json("terminated", reason="bye\x1b[2J")),
    ("reason with bidi", _json("terminated", reason="safe\u202eexe.txt")),
    ("reason too long", _json("terminated", reason="x" * 257)),
    ("lone surrogate", '{"type":"terminated","reason":"\\ud800"}'),
    ("approvers not list", _json("approval_pending", approval_id="a", approvers="alice")),
    ("approver empty", _json("approval_pending", approval_id="a", approvers=[""])),
    ("sysinfo nested bad key", _json("sysinfo", info={"disk": {"a b": 1}})),
    ("sysinfo bad key", _json("sysinfo", info={"has space": 1})),
    (
        "heartbeat zero",
        _json("welcome", heartbeat_interval=0, metrics_interval=1, protocol="websh/1"),
    ),
    ("mfa methods missing", _json("mfa_required", reason="r")),
    ("ping nonce negative", _json("ping", nonce=-1, ts=0)),
    ("error code bad", _json("error", code="a b", message="m")),
]


@pytest.mark.parametrize(("case", "payload"), INVALID, ids=[c for c, _ in INVALID])
def test_validation_failures(case: str, payload: str) -> None:
    with pytest.raises(w.ValidationError) as info:
        w.decode(payload)
    assert info.value.code == w.CloseCode.INVALID_MESSAGE
    assert len(info.value.reason.encode()) <= 123


def test_validation_reason_does_not_echo_values() -> None:
    with pytest.raises(w.ValidationError) as info:
        w.decode(_json("terminated", reason="SECRET\x1b" + "x" * 10))
    assert "SECRET" not in info.value.reason
