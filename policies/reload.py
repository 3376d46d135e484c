"""Hot reload: build a new engine aside, swap it in atomically, keep the last good one.

Readers call :attr:`PolicyHolder.engine` on every decision; they must never see a
half-loaded policy or wait on a reload. So a reload builds and checks the candidate
completely off to the side (any :class:`PolicyLoadError` leaves the current engine in
force) and publishes it with one reference assignment, which is atomic in CPython. The
file watcher, SIGHUP handler and API endpoint that trigger reloads (and audit each change
with the new version hash) live in the broker; this module holds only the swap.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass

from policies.engine import PolicyEngine
from policies.errors import PolicyLoadError

__all__ = ["PolicyHolder", "ReloadResult"]


@dataclass(frozen=True, slots=True)
class ReloadResult:
    """What a reload did, for the audit event the caller writes."""

    swapped: bool
    old_version: str
    new_version: str
    error: PolicyLoadError | None = None


class PolicyHolder:
    """Owns the engine in force; ``loader`` builds a fresh one (e.g. ``load_polar``)."""

    def __init__(self, loader: Callable[[], PolicyEngine]) -> None:
        self._loader = loader
        self._lock = threading.Lock()
        self._engine = loader()  # at start-up a bad policy is fatal: let it raise

    @property
    def engine(self) -> PolicyEngine:
        return self._engine

    @property
    def version(self) -> str:
        return self._engine.version

    def reload(self) -> ReloadResult:
        """Load the candidate; swap only if it loads. Never raises ``PolicyLoadError``."""
        with self._lock:  # two reloads at once would race on which one wins
            old = self._engine
            try:
                candidate = self._loader()
            except PolicyLoadError as exc:
                return ReloadResult(False, old.version, old.version, exc)
            self._engine = candidate
            return ReloadResult(candidate.version != old.version, old.version, candidate.version)
