"""The gateway: live terminal sessions between a person's WebSocket and an agent's channel.

    access.py        who may open what (PolicyAccessResolver: policy file + stored grants)
    tickets.py       single-use, short-lived WebSocket tickets (only their hash is kept)
    buffer.py        bounded output buffer addressed by byte offset (resume, slow clients)
    recorder.py      asciicast v2 writer, flushed at least every second
    inbox.py         a wire's messages served in order, each in the callback that parsed it
    eager.py         start_eagerly: run a write in the caller until it has to wait
    session.py       LiveSession, the relay: agent output -> buffer/recorder/clients, keys -> agent
    participants.py  who is attached (owner, participants, observers), each client's sender
    lifetime.py      a live session's grace period and its one end
    sessions.py      GatewaySessions: open a session, look live sessions up
    terminal_ws.py   a person's terminal WebSocket: ticket, attach, messages as they arrive
    sharing.py       share links, joining through one, observers
    shares.py        the share links themselves, in memory (only their hash is kept)
    termination.py   terminate, revocation's sweeps, shutdown
    revocation.py    end the sessions a disabled user, revoked token or grant no longer allows
    retention.py     purge ended recordings past the workspace's retention

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
