"""The terminals this agent holds, by channel id, and how long one outlives its broker.

A terminal outlives its data channel: when the broker's WebSocket drops while the shell
lives, the terminal is detached and kept for the grace period (its output still
buffered) so a network blip does not kill a long-running job; a broker that re-attaches
in time finds it here. One that nobody re-attaches is hung up, so an abandoned shell does
not live forever, and a shell that ignores the hang-up is SIGKILLed.

This module must never block (``reap`` polls, it never waits), never hold more than
``max_terminals`` terminals, and never forget a hung-up shell before it has been reaped.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

from agent.errors import TerminalError, TooManyTerminals

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Callable

    from agent.spawn import ExitStatus
    from agent.terminal import Terminal

__all__ = ["TerminalTable"]


class _Entry:
    __slots__ = ("detached_since", "exit_reported", "terminal")

    def __init__(self, terminal: Terminal) -> None:
        self.terminal = terminal
        self.detached_since: float | None = None
        self.exit_reported = False


class TerminalTable:
    """Terminals by channel id, with a grace period for terminals whose broker is gone.

    ``clock`` is injected (monotonic seconds) so tests can move time.
    """

    def __init__(
        self,
        *,
        grace_seconds: float = 300.0,
        max_terminals: int = 64,
        kill_after: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.grace_seconds = grace_seconds
        self.max_terminals = max_terminals
        self._kill_after = kill_after
        self._clock = clock
        self._entries: dict[str, _Entry] = {}
        self._closing: list[tuple[Terminal, float]] = []

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, channel_id: object) -> bool:
        return channel_id in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._entries))

    def add(self, channel_id: str, terminal: Terminal) -> None:
        """Register an attached terminal; raises ``TooManyTerminals`` when full."""
        if channel_id in self._entries:
            raise TerminalError(f"channel {channel_id!r} already has a terminal")
        if len(self._entries) >= self.max_terminals:
            raise TooManyTerminals(f"at most {self.max_terminals} terminals")
        self._entries[channel_id] = _Entry(terminal)

    def get(self, channel_id: str) -> Terminal | None:
        entry = self._entries.get(channel_id)
        return entry.terminal if entry else None

    def detach(self, channel_id: str) -> None:
        """The broker side of this channel went away; start the grace clock."""
        entry = self._entries.get(channel_id)
        if entry is not None and entry.detached_since is None:
            entry.detached_since = self._clock()

    def attach(self, channel_id: str) -> Terminal | None:
        """A broker re-attached; stop the grace clock. ``None`` if it was already reaped."""
        entry = self._entries.get(channel_id)
        if entry is None:
            return None
        entry.detached_since = None
        return entry.terminal

    def detached_since(self, channel_id: str) -> float | None:
        entry = self._entries.get(channel_id)
        return entry.detached_since if entry else None

    def remove(self, channel_id: str) -> Terminal | None:
        """Close and forget a terminal (its process is reaped by later ``reap`` calls)."""
        entry = self._entries.pop(channel_id, None)
        if entry is None:
            return None
        self._hang_up(entry.terminal)
        return entry.terminal

    def exited(self) -> list[tuple[str, ExitStatus]]:
        """Terminals whose shell ended since the last call, each reported exactly once."""
        done: list[tuple[str, ExitStatus]] = []
        for channel_id, entry in self._entries.items():
            if not entry.exit_reported:
                status = entry.terminal.poll()
                if status is not None:
                    entry.exit_reported = True
                    done.append((channel_id, status))
        return done

    def reap(self) -> list[str]:
        """Close terminals detached longer than the grace period; return their channel ids.

        Also reaps hung-up shells and SIGKILLs any that ignore the hang-up for
        ``kill_after`` seconds. Call it periodically (see ``next_deadline``).
        """
        now = self._clock()
        expired = [
            channel_id
            for channel_id, entry in self._entries.items()
            if entry.detached_since is not None and now - entry.detached_since >= self.grace_seconds
        ]
        for channel_id in expired:
            self.remove(channel_id)
        still: list[tuple[Terminal, float]] = []
        for terminal, since in self._closing:
            if terminal.poll() is not None:
                continue
            if now - since >= self._kill_after:
                terminal.kill()
            still.append((terminal, since))
        self._closing = still
        return expired

    def next_deadline(self) -> float | None:
        """Seconds until ``reap`` has work (for the selector timeout); ``None`` if never."""
        now = self._clock()
        waits = [
            entry.detached_since + self.grace_seconds - now
            for entry in self._entries.values()
            if entry.detached_since is not None
        ]
        if self._closing:
            waits.append(0.5)
        return max(0.0, min(waits)) if waits else None

    def close_all(self) -> None:
        """Hang up every terminal (agent shutdown)."""
        for channel_id in list(self._entries):
            self.remove(channel_id)

    def _hang_up(self, terminal: Terminal) -> None:
        terminal.close()
        if terminal.poll() is None:
            self._closing.append((terminal, self._clock()))
