"""asyncio's TLS receive buffer, lowered for a broker holding thousands of connections:
smaller, and TLS still carries every byte both ways (more socket reads, nothing else)."""

from __future__ import annotations

import asyncio
import os
import ssl
from asyncio import sslproto

import pytest
import trustme

from broker.tlsbuffer import TLS_READ_BUFFER, limit_tls_read_buffer


async def test_tls_carries_bursts_larger_than_the_buffer() -> None:
    original = sslproto.SSLProtocol.max_size
    ca = trustme.CA()
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ca.issue_cert("127.0.0.1").configure_cert(server_ctx)
    client_ctx = ssl.create_default_context()
    ca.configure_trust(client_ctx)
    payload = os.urandom(1024 * 1024 + 7)  # 32 buffers' worth, not a multiple of a record

    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(await reader.readexactly(len(payload)))
        await writer.drain()
        writer.close()

    try:
        limit_tls_read_buffer()
        assert sslproto.SSLProtocol.max_size == TLS_READ_BUFFER == 32 * 1024
        server = await asyncio.start_server(echo, "127.0.0.1", 0, ssl=server_ctx)
        port = server.sockets[0].getsockname()[1]
        async with server:
            reader, writer = await asyncio.open_connection(
                "127.0.0.1", port, ssl=client_ctx, server_hostname="127.0.0.1"
            )
            writer.write(payload)
            await writer.drain()
            assert await asyncio.wait_for(reader.readexactly(len(payload)), 30) == payload
            writer.close()
            await writer.wait_closed()
    finally:
        sslproto.SSLProtocol.max_size = original


def test_the_buffer_holds_at_least_one_record() -> None:
    with pytest.raises(ValueError, match="TLS record"):
        limit_tls_read_buffer(16 * 1024)
