"""The gateway: live terminal sessions between a person's WebSocket and an agent's channel.

    access.py      who may open what (PolicyAccessResolver: policy file + stored grants)
    tickets.py     single-use, short-lived WebSocket tickets (only their hash is kept)
    buffer.py      bounded output buffer addressed by byte offset (resume, slow clients)
    recorder.py    asciicast v2 writer, flushed at least every second
    session.py     one live session: pump agent -> buffer/recorder/clients, grace, end
    sessions.py    GatewaySessions: open, attach a WebSocket, terminate, list
    revocation.py  end the sessions a disabled user, revoked token or grant no longer allows

The gateway never reads the environment and never builds SQL: it is handed the services,
the agent hub, an access resolver and its limits.

    GatewayError                    root (a CorralError)
    ├── AccessDenied                the resolver's level does not allow this open
    └── SessionUnavailable          no live session with that id in the workspace
"""

from broker.gateway.access import AccessResolver, GrantAccessResolver, PolicyAccessResolver
from broker.gateway.errors import AccessDenied, GatewayError, SessionUnavailable
from broker.gateway.revocation import Revocation
from broker.gateway.sessions import GatewaySessions

__all__ = [
    "AccessDenied",
    "AccessResolver",
    "GatewayError",
    "GatewaySessions",
    "GrantAccessResolver",
    "PolicyAccessResolver",
    "Revocation",
    "SessionUnavailable",
]
