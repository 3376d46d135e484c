"""A lone client slower than the host's output is slowed down, not dropped: the session
pauses reading the agent while even the leading client is half a buffer behind."""

from __future__ import annotations

import asyncio

import pytest

from api.sessions import gateway_of
from tests.integration.test_sessions_gateway import (  # noqa: F401 - env is a fixture
    Env,
    Term,
    _audit,
    env,
    inject_gateway,
    recorded_output,
    wait_ended,
)
from websh import Exit, Output

pytestmark = pytest.mark.slow


async def test_a_slow_lone_client_gets_every_byte_and_stays(env: Env) -> None:  # noqa: F811
    inject_gateway(env, buffer_limit=256 * 1024)
    opened = await env.opened()
    sid = opened["session_id"]
    term = await Term.connect(opened["websocket_url"])
    size = 16 * 1024 * 1024  # more than loopback and client buffers absorb
    await term.type(f"head -c {size} /dev/zero | tr '\\0' a; echo; echo E''ND\n")

    async def slow_reader() -> None:
        while b"END\r\n" not in term.out:
            if isinstance(await term.next(), Output):
                await asyncio.sleep(0.01)  # at most 6.4 MB/s (64 KiB messages)

    await asyncio.wait_for(slow_reader(), 90)
    assert term.out.count(b"a") >= size
    gateway = gateway_of(env.broker.server.config.app)  # type: ignore[union-attr]
    assert len(gateway.live[sid].clients) == 1  # never dropped
    # served per message (broker/gateway/inbox.py): the pause held the channel, no task read it
    assert not [t for t in asyncio.all_tasks() if t.get_name().startswith("session-pump")]
    assert ("session.client_dropped", "failure") not in await _audit(env, env.ws)

    await term.type("exit 0\n")
    assert isinstance(await term.final(timeout=20), Exit)
    await wait_ended(env, sid)
    _, events = await recorded_output(env, sid)
    assert "".join(e[2] for e in events if e[1] == "o").encode() == bytes(term.out)
