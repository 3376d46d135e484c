"""The per-connection TLS read buffer of asyncio, sized for a broker that holds thousands.

asyncio's ``SSLProtocol`` gives every TLS connection a 256 KiB ``bytearray`` to receive
ciphertext into (``SSLProtocol.max_size``), zero-filled at once, so all of it is resident
memory. Idle agent control connections never need more than one TLS record (16 KiB plus
overhead) at a time, and a busy terminal only needs more socket reads per burst, so with
1,000 agents that buffer alone was 256 MiB of the broker's RSS, 80% of its memory per
agent (``benchmarks/idle_agents.py``: 358 KiB per TLS connection, 62 KiB without TLS).

There is no per-server knob for it (neither ``loop.create_server`` nor uvicorn has one),
so the class attribute is lowered once, before the server starts listening. It changes
nothing but the size of that buffer, for every TLS connection of the process. Call it
where TLS is configured (``corral up``); it must never be called per connection.
uvloop (the default loop) has its own TLS protocol, which this does not touch.
"""

from __future__ import annotations

from asyncio import sslproto

__all__ = ["TLS_READ_BUFFER", "limit_tls_read_buffer"]

#: Two full TLS records: still one socket read per record under load.
TLS_READ_BUFFER = 32 * 1024


def limit_tls_read_buffer(size: int = TLS_READ_BUFFER) -> None:
    """Lower asyncio's TLS receive buffer (default 256 KiB) to ``size`` bytes."""
    if size < 17 * 1024:
        raise ValueError("the buffer must hold at least one TLS record (17 KiB)")
    sslproto.SSLProtocol.max_size = size
