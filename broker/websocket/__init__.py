"""The broker's WebSocket server protocol: uvicorn hands it the socket after the upgrade.

uvicorn's own WebSocket protocols run every message through a general-purpose parser, an
``asyncio.Queue`` and a task switch, then Starlette's wrappers; per idle connection they keep
a parser object, a queue, an event and the wrappers alive. The broker holds thousands of
idle agent sockets and relays a terminal keystroke by keystroke, so this protocol is written
for that job (``uvicorn.Config(ws=WebSocketProtocol)``, ``broker/serving.py``). One class,
:class:`WebSocketProtocol`, built in three layers, a module each, the data flowing down:

* :mod:`broker.websocket.protocol`: uvicorn and ASGI; the opening handshake, the
  ``websocket.*`` messages for Starlette routes, ``scope["extensions"][EXTENSION]``;
* :mod:`broker.websocket.connection`: the application's side; the direct path that
  :class:`broker.agents.wire.Wire` takes (``pop``, ``send_data``, ``drain``, ``listen``,
  ``hold``/``release``), write flow control, the closing handshake;
* :mod:`broker.websocket.frames`: RFC 6455 frames parsed in ``data_received`` and
  written at once, the limits (1002, 1007, 1009), pings answered, messages queued (reading
  pauses past :data:`READ_HIGH`) or handed to the listener.

The layers are base classes of one object, not objects calling each other, so a message
takes no more calls or lookups than in one module. No compression extension is negotiated
(permessage-deflate): terminal traffic is small, and compressing secrets next to
attacker-chosen input under TLS is what CRIME did.

It must never interpret payloads or block: it moves bytes and enforces the framing rules.
"""

from uvicorn.protocols.utils import ClientDisconnected

from broker.websocket.connection import CLOSE_TIMEOUT, Listener
from broker.websocket.frames import READ_HIGH
from broker.websocket.protocol import EXTENSION, WebSocketProtocol

__all__ = [
    "CLOSE_TIMEOUT",
    "EXTENSION",
    "READ_HIGH",
    "ClientDisconnected",
    "Listener",
    "WebSocketProtocol",
]
