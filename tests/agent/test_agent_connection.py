"""The real agent loop against a loopback websh broker: handshake, terminals, exec, retries."""

from __future__ import annotations

import ssl
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import trustme
from agent_ws_peer import CHANNEL, Closed, Peer, PeerConn, running_peer

from agent.backoff import Backoff
from agent.channels import HIGH_WATER, Channel
from agent.config import AgentConfig
from agent.daemon import Agent
from agent.terminal import Terminal
from agent.users import UnixUser, UserPolicy
from websh import (
    Attach,
    ChannelHello,
    ChannelKind,
    ChannelWelcome,
    CloseChannel,
    CloseCode,
    ErrorMessage,
    Exit,
    Hello,
    Input,
    Message,
    Metrics,
    OpenChannel,
    Output,
    Ping,
    Resize,
    RetryLater,
    Stderr,
    Stdout,
    Welcome,
)

pytestmark = pytest.mark.slow

SECRET = "s3cret-value-xyz"


@pytest.fixture
def peer() -> Iterator[Peer]:
    with running_peer() as server:
        yield server


class Running:
    """An ``Agent`` running in a thread (tests only; the agent itself has no threads)."""

    def __init__(self, agent: Agent) -> None:
        self.agent = agent
        self.result: list[int] = []
        self.thread = threading.Thread(
            target=lambda: self.result.append(agent.run(install_signals=False)), daemon=True
        )
        self.thread.start()

    def stop(self) -> int:
        self.agent.stop()
        self.thread.join(10)
        assert not self.thread.is_alive()
        return self.result[0]


def make_agent(
    peer: Peer, user: UnixUser | None, *, deny: tuple[str, ...] = (), **kwargs: object
) -> Agent:
    config = AgentConfig(
        broker_url=f"http://127.0.0.1:{peer.port}",
        agent_id="ag_test",
        secret=SECRET,
        deny_users=deny,
        pty_grace_seconds=30,
    )

    def resolve(name: str, policy: UserPolicy) -> UnixUser:
        policy.check(name)
        assert user is not None
        return user

    return Agent(
        config,
        backoff=Backoff(base=0.05, cap=0.2, uniform=lambda a, b: b),
        resolve=resolve if user is not None else None,
        open_terminal=lambda u, c, r, m: Terminal.open(u, cols=c, rows=r, lang="", shell_marks=m),
        sysinfo=lambda: {"hostname": "test-host", "cpu_count": 2},
        **kwargs,  # type: ignore[arg-type]
    )


Start = Callable[..., Running]


@pytest.fixture
def agent_factory(peer: Peer) -> Iterator[Start]:
    started: list[Running] = []

    def start(user: UnixUser | None, **kwargs: object) -> Running:
        running = Running(make_agent(peer, user, **kwargs))
        started.append(running)
        return running

    yield start
    for running in started:
        if running.thread.is_alive():
            running.stop()


def handshake(peer: Peer, heartbeat: float = 5.0, metrics: float = 0.0) -> tuple[PeerConn, Hello]:
    control = peer.accept()
    hello = control.recv()
    assert isinstance(hello, Hello)
    control.send(Welcome(heartbeat_interval=heartbeat, metrics_interval=metrics))
    return control, hello


def open_channel(peer: Peer, control: PeerConn, request: OpenChannel) -> PeerConn:
    control.send(request)
    channel = peer.accept(CHANNEL)
    hello = channel.recv()
    assert isinstance(hello, ChannelHello)
    assert hello.channel_id == request.channel_id
    assert hello.token == request.token
    channel.send(ChannelWelcome())
    return channel


def terminal_request(channel_id: str = "ch_1", token: str = "tok-1") -> OpenChannel:
    return OpenChannel(
        channel_id=channel_id, kind=ChannelKind.TERMINAL, token=token, path=CHANNEL,
        user="someone", cols=80, rows=24,
    )  # fmt: skip


def read_output(channel: PeerConn, want: bytes, timeout: float = 10.0) -> bytes:
    out = b""
    deadline = time.monotonic() + timeout
    while want not in out:
        event = channel.recv(timeout=max(0.1, deadline - time.monotonic()))
        if isinstance(event, Output):
            out += bytes(event.data)
    return out


def until(channel: PeerConn, cls: type[Message], timeout: float = 10.0) -> Message:
    deadline = time.monotonic() + timeout
    while True:
        event = channel.recv(timeout=max(0.1, deadline - time.monotonic()))
        if isinstance(event, cls):
            return event


def test_terminal_session(peer: Peer, agent_factory: Start, me_bash: UnixUser) -> None:
    running = agent_factory(me_bash)
    control, hello = handshake(peer)
    assert hello.agent_id == "ag_test"
    assert hello.secret == SECRET
    assert hello.channels == ()
    assert hello.sysinfo["hostname"] == "test-host"
    channel = open_channel(peer, control, terminal_request())
    channel.send(Input(data=b"echo hel''lo\n"))
    read_output(channel, b"hello\r\n")
    channel.send(Resize(cols=132, rows=43))
    channel.send(Input(data=b"stty size\n"))
    read_output(channel, b"43 132")
    channel.send(Input(data=b"exit 3\n"))
    exit_message = until(channel, Exit)
    assert isinstance(exit_message, Exit)
    assert exit_message.status == 3
    assert channel.wait_closed()[0] == 1000
    assert running.stop() == 0


def test_streaming_output_is_sent_in_large_messages(
    peer: Peer, agent_factory: Start, me_bash: UnixUser
) -> None:
    """Read as soon as it is readable, a pty hands out about 4 KiB at a time; streaming
    output leaves in bigger messages (the agent reads until the pty is empty), and every
    byte arrives. How many reads a message gathers depends on how far the shell got ahead
    of the agent, which the machine's load decides, so the check is that messages do
    gather several reads, not how many on average."""
    running = agent_factory(me_bash)
    control, _ = handshake(peer)
    channel = open_channel(peer, control, terminal_request())
    channel.send(Input(data=b"head -c 2000000 /dev/zero | tr '\\0' x; echo DO''NE\n"))
    sizes: list[int] = []
    out = b""
    deadline = time.monotonic() + 60
    while b"DONE" not in out:
        event = channel.recv(timeout=max(0.1, deadline - time.monotonic()))
        if isinstance(event, Output):
            sizes.append(len(event.data))
            out += bytes(event.data)
    assert out.count(b"x") >= 2_000_000
    assert max(sizes) > 8192  # never above about 4 KiB without coalescing
    channel.send(Input(data=b"exit\n"))
    until(channel, Exit)
    assert running.stop() == 0


def test_exec_session(peer: Peer, agent_factory: Start, me_bash: UnixUser) -> None:
    agent_factory(me_bash)
    control, _ = handshake(peer)
    request = OpenChannel(
        channel_id="ex_1", kind=ChannelKind.EXEC, token="tok-2", path=CHANNEL, user="someone",
        command="echo out; echo err >&2; exit 7", env={"GREETING": "hi"},
    )  # fmt: skip
    channel = open_channel(peer, control, request)
    stdout = stderr = b""
    while True:
        event = channel.recv()
        if isinstance(event, Stdout):
            stdout += bytes(event.data)
        elif isinstance(event, Stderr):
            stderr += bytes(event.data)
        elif isinstance(event, Exit):
            break
    assert (stdout, stderr) == (b"out\n", b"err\n")
    assert event.status == 7
    assert not event.timed_out
    assert channel.wait_closed()[0] == 1000


def test_exec_timeout(peer: Peer, agent_factory: Start, me_bash: UnixUser) -> None:
    agent_factory(me_bash)
    control, _ = handshake(peer)
    request = OpenChannel(
        channel_id="ex_2", kind=ChannelKind.EXEC, token="tok-3", path=CHANNEL, user="someone",
        command=["sleep", "30"], timeout=0.3,
    )  # fmt: skip
    channel = open_channel(peer, control, request)
    event = until(channel, Exit)
    assert isinstance(event, Exit)
    assert event.timed_out
    assert event.signal == 15


def test_refused_user(peer: Peer, agent_factory: Start, me_bash: UnixUser) -> None:
    agent_factory(me_bash, deny=("root",))
    control, _ = handshake(peer)
    request = terminal_request()
    request = OpenChannel(**{**request.__dict__, "user": "root"})
    channel = open_channel(peer, control, request)
    error = channel.recv()
    assert isinstance(error, ErrorMessage)
    assert error.code == "user_refused"
    assert channel.wait_closed()[0] == CloseCode.FORBIDDEN


def test_close_channel_kills_terminal(peer: Peer, agent_factory: Start, me_bash: UnixUser) -> None:
    running = agent_factory(me_bash)
    control, _ = handshake(peer)
    channel = open_channel(peer, control, terminal_request())
    channel.send(Input(data=b"echo ready\n"))
    read_output(channel, b"ready\r\n")
    control.send(CloseChannel(channel_id="ch_1", reason="admin"))
    assert channel.wait_closed()[0] == 1000
    deadline = time.monotonic() + 5
    while len(running.agent.terminals) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(running.agent.terminals) == 0


def test_reattach_replays_output(peer: Peer, agent_factory: Start, me_bash: UnixUser) -> None:
    running = agent_factory(me_bash)
    control, _ = handshake(peer)
    first = open_channel(peer, control, terminal_request())
    first.send(Input(data=b"echo one\n"))
    read_output(first, b"one\r\n")
    first.close(1001, "broker restarting")
    first.wait_closed()
    # The broker comes back over a new control connection: the agent lists the survivor.
    control.close(1012, "restart")
    control2 = peer.accept()
    hello = control2.recv()
    assert isinstance(hello, Hello)
    assert hello.channels == ("ch_1",)
    control2.send(Welcome(heartbeat_interval=5, metrics_interval=0))
    second = open_channel(peer, control2, terminal_request(token="tok-again"))
    second.send(Attach(channel_id="ch_1", offset=0))
    replay = read_output(second, b"one\r\n")
    assert b"echo one" in replay
    second.send(Input(data=b"exit 0\n"))
    event = until(second, Exit)
    assert isinstance(event, Exit)
    assert event.status == 0
    assert running.stop() == 0


def test_retry_later_then_reconnect(peer: Peer, agent_factory: Start, me_bash: UnixUser) -> None:
    running = agent_factory(me_bash)
    control = peer.accept()
    assert isinstance(control.recv(), Hello)
    control.send(RetryLater(after=0.5, reason="busy"))
    closed_at = time.monotonic()
    control.close(CloseCode.RETRY_LATER, "retry later")
    control2 = peer.accept()
    assert time.monotonic() - closed_at >= 0.45
    assert isinstance(control2.recv(), Hello)
    control2.send(Welcome(heartbeat_interval=5, metrics_interval=0))
    # The broker drops without a word: the agent comes back quickly (backoff cap 0.2 s).
    control2.close(CloseCode.GOING_AWAY)
    control3 = peer.accept(timeout=3)
    assert isinstance(control3.recv(), Hello)
    control3.send(Welcome(heartbeat_interval=5, metrics_interval=0))
    assert running.agent.control.welcomed >= 1
    assert running.stop() == 0


def test_heartbeat_metrics_dead_broker(peer: Peer, agent_factory: Start, me_bash: UnixUser) -> None:
    agent_factory(me_bash)
    control, _ = handshake(peer, heartbeat=0.2, metrics=0.2)
    seen: set[type] = set()
    while {Ping, Metrics} - seen:
        event = control.recv(skip=())
        seen.add(type(event))
        if isinstance(event, Metrics):
            assert 0 <= event.cpu <= 100
            assert event.mem_total > 0
    control.mute = True  # no more pongs: the agent must give up after 3 heartbeats
    control.wait_closed(timeout=5)
    assert isinstance(peer.accept(timeout=5).recv(), Hello)


def test_refused_credential_keeps_retrying(
    peer: Peer, agent_factory: Start, me_bash: UnixUser
) -> None:
    agent_factory(me_bash, refused_retry=0.3)
    control = peer.accept()
    control.recv()
    control.close(CloseCode.UNAUTHENTICATED, "bad credential")
    started = time.monotonic()
    again = peer.accept(timeout=5)
    assert time.monotonic() - started >= 0.25
    assert isinstance(again.recv(), Hello)


def test_closed_without_welcome_is_reported(
    peer: Peer, agent_factory: Start, me_bash: UnixUser
) -> None:
    agent_factory(me_bash)
    control = peer.accept()
    control.recv()
    control.close(CloseCode.REPLACED, "replaced")
    with pytest.raises(Closed):
        control.recv(timeout=2)
    assert isinstance(peer.accept(timeout=5).recv(), Hello)


def test_terminal_over_tls_streams_every_byte_and_echoes(
    agent_factory: Start, me_bash: UnixUser, tmp_path: Path
) -> None:
    """TLS runs over memory BIOs: records split across reads, many records in one read,
    64 KiB messages written in one go (or queued when the socket is full), and the
    keystroke path still answers one key at a time."""
    ca = trustme.CA()
    server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ca.issue_cert("127.0.0.1").configure_cert(server_context)
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    with running_peer(server_context) as tls_peer:
        config = AgentConfig(
            broker_url=f"https://127.0.0.1:{tls_peer.port}", agent_id="ag_tls", secret=SECRET,
            ca_file=str(ca_file), pty_grace_seconds=30,
        )  # fmt: skip
        agent = Agent(
            config,
            resolve=lambda name, policy: me_bash,
            open_terminal=lambda u, c, r, m: Terminal.open(u, cols=c, rows=r, lang=""),
            sysinfo=lambda: {"hostname": "test-host"},
        )
        running = Running(agent)
        try:
            control, _ = handshake(tls_peer)
            channel = open_channel(tls_peer, control, terminal_request())
            for key in b"abc":
                channel.send(Input(data=bytes([key])))
                read_output(channel, bytes([key]))
            command = b"\x15head -c 3000000 /dev/zero | tr '\\0' '\\101'; echo DO''NE\n"
            channel.send(Input(data=command))  # 3,000,000 x "A" (the command has none)
            out = read_output(channel, b"DONE\r\n", timeout=60)
            assert out.count(b"A") == 3_000_000
            # a stalled broker: records queue in the agent (sent a chunk list at a time)
            (agent_channel,) = agent.sessions.channels
            stall_and_drain(tls_peer, channel, agent_channel)
            channel.send(Input(data=b"exit 7\n"))
            exit_message = until(channel, Exit)
            assert isinstance(exit_message, Exit) and exit_message.status == 7
        finally:
            assert running.stop() == 0


def stall_and_drain(peer: Peer, channel: PeerConn, agent_channel: Channel) -> None:
    """Stop reading ``channel`` while 16 MB stream into it: the agent's queue fills past
    HIGH_WATER and stops there; then read again: every byte arrives, in order, once."""

    async def pause() -> None:
        channel.ws.transport.pause_reading()

    async def resume() -> None:
        channel.ws.transport.resume_reading()

    peer.call(pause())
    channel.send(Input(data=b"head -c 16000000 /dev/zero | tr '\\0' '\\101'; echo DO''NE\n"))
    deadline = time.monotonic() + 30
    peak = 0
    while time.monotonic() < deadline and peak <= HIGH_WATER:
        peak = max(peak, agent_channel.backlog)
        time.sleep(0.01)
    assert peak > HIGH_WATER  # the queue did fill
    time.sleep(0.5)
    # at most one more coalesced read (64 KiB and its framing) past the mark
    assert agent_channel.backlog <= HIGH_WATER + 80 * 1024
    peer.call(resume())
    out = read_output(channel, b"DONE\r\n", timeout=60)
    assert out.count(b"A") == 16_000_000
    assert b"A" * 16_000_000 in out


def test_slow_broker_pauses_the_pty(peer: Peer, agent_factory: Start, me_bash: UnixUser) -> None:
    """A broker that stops reading fills the kernel's buffers, then the agent's queue;
    past HIGH_WATER the agent stops reading the pty (it does not queue without bound),
    and once the broker reads again every byte arrives."""
    running = agent_factory(me_bash)
    control, _ = handshake(peer)
    channel = open_channel(peer, control, terminal_request())
    until(channel, Output)  # the prompt
    (agent_channel,) = running.agent.sessions.channels
    stall_and_drain(peer, channel, agent_channel)
    channel.send(Input(data=b"exit\n"))
    until(channel, Exit)
    assert running.stop() == 0
