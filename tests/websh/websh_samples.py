"""One valid instance of every websh message, shared by the websh tests."""

from __future__ import annotations

import websh as w

SAMPLES: list[w.Message] = [
    w.Hello(
        agent_id="agent-1",
        secret="s3cr3t-token",
        agent_version="0.1.0",
        sysinfo={"hostname": "web-1", "cpus": 4, "arch": "x86_64", "vm": False, "gpu": None},
        channels=("ch-1",),
    ),
    w.Welcome(heartbeat_interval=30.0, metrics_interval=60.0),
    w.Ping(nonce=7, ts=1700000000.25),
    w.Pong(nonce=7, ts=1700000000.25),
    w.SysInfo(info={"hostname": "web-1", "load_avg": 0.5}),
    w.Metrics(
        ts=1700000000.0,
        cpu=12.5,
        mem_used=1 << 30,
        mem_total=4 << 30,
        disk_used=10 << 30,
        disk_total=100 << 30,
        load=(0.1, 0.2, 0.3),
    ),
    w.OpenChannel(
        channel_id="ch-1",
        kind=w.ChannelKind.TERMINAL,
        token="one-time-token",
        path="/agent/channels/ch-1",
        user="deploy",
        cols=120,
        rows=40,
        env={"TERM": "xterm-256color", "LANG": "C.UTF-8"},
    ),
    w.OpenChannel(
        channel_id="ch-2",
        kind=w.ChannelKind.EXEC,
        token="one-time-token",
        path="/agent/channels/ch-2",
        user="root",
        command=("systemctl", "restart", "nginx"),
        timeout=30.0,
    ),
    w.OpenChannel(
        channel_id="ch-3",
        kind=w.ChannelKind.EXEC,
        token="tok",
        path="/c",
        user="root",
        command="uptime | cut -d, -f1",
    ),
    w.CloseChannel(channel_id="ch-1", reason="session ended"),
    w.ErrorMessage(code="attach_gap", message="output before offset is gone", channel_id="ch-1"),
    w.RetryLater(after=12.5, reason="broker draining"),
    w.ChannelHello(channel_id="ch-1", token="one-time-token"),
    w.ChannelWelcome(),
    w.Attach(channel_id="ch-1", offset=4096),
    w.Resize(cols=100, rows=30),
    w.Eof(),
    w.Exit(status=0),
    w.Exit(signal=9, timed_out=True),
    w.Input(b"ls -la\r"),
    w.Output(b"\x1b[1mtotal 0\x1b[0m\r\n"),
    w.Stdout(b"ok\n"),
    w.Stderr(b"\xff\xfe not utf-8"),
    w.ClientHello(cols=80, rows=24, ticket="ticket-123"),
    w.ClientWelcome(session_id="sess-1", read_only=True),
    w.Resume(offset=123456),
    w.CommandBlocked(command="rm -rf /\x1b[2J", reason="destructive command", rule_id="no-rm"),
    w.MfaRequired(reason="sudo needs step-up", methods=("totp", "webauthn"), url="/mfa/abc"),
    w.ApprovalPending(approval_id="apr-1", approvers=("alice", "bob"), reason="prod deploy"),
    w.ApprovalGranted(approval_id="apr-1", approvers=("alice",)),
    w.ApprovalDenied(approval_id="apr-1", approvers=("bob",), reason="not now"),
    w.ParticipantJoined(user="carol", role="observer"),
    w.ParticipantLeft(user="carol"),
    w.Terminated(reason="terminated by an administrator", by="admin"),
]

#: The handshake each kind of connection opens with (client hello, server welcome).
HELLO: dict[w.ConnectionKind, w.Message] = {
    w.ConnectionKind.CONTROL: w.Hello(agent_id="a1", secret="s", agent_version="1", sysinfo={}),
    w.ConnectionKind.CHANNEL: w.ChannelHello(channel_id="ch-1", token="tok"),
    w.ConnectionKind.USER: w.ClientHello(cols=80, rows=24),
}
WELCOME: dict[w.ConnectionKind, w.Message] = {
    w.ConnectionKind.CONTROL: w.Welcome(heartbeat_interval=30, metrics_interval=0),
    w.ConnectionKind.CHANNEL: w.ChannelWelcome(),
    w.ConnectionKind.USER: w.ClientWelcome(session_id="s1"),
}
