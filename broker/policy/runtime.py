"""The policy in force in a running broker: loaded at start-up, reloaded while it runs.

:class:`PolicySource` says which files make the policy (Polar, or a Casbin model and
policy CSV) and builds a reference engine from them; :class:`PolicyRuntime` holds the
compiled fast path built from it in a :class:`~policies.PolicyHolder` and reloads it on
a file change (polled: mtime and size, then a content hash), on SIGHUP (``corral up``) or
through the API. A candidate that does not load is refused with ``file:line`` and the
previous policy stays in force. Every change and every refusal is audited in every
workspace's chain (the policy is broker-wide), with the new and the old version hash.

It must never let a reload block decisions: candidates are built in a worker thread and
published with one reference swap. Decisions themselves live in :mod:`policies`.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from broker.audit import SYSTEM, Actor, Category, Outcome
from broker.errors import CorralError, PolicyRefused
from broker.services import Services
from broker.settings import Settings
from broker.store.models import utcnow
from policies import (
    PolicyEngine,
    PolicyHolder,
    PolicyLoadError,
    ReloadResult,
    compile_engine,
    load_casbin,
    load_polar,
)
from policies.engine import RuleEngine
from policies.polar_backend import DEFAULT_POLICY as DEFAULT_POLAR
from policies.sandbox import check_in_child

__all__ = ["PolicyRuntime", "PolicySource", "ReloadListener", "default_policy"]

log = logging.getLogger("corral.policy")

ReloadListener = Callable[[ReloadResult], Awaitable[None]]
Fingerprint = tuple[tuple[int, int], ...]


@dataclass(frozen=True)
class PolicySource:
    """Where the policy comes from: ``polar`` + one file, or ``casbin`` + model + CSV."""

    backend: str
    file: Path
    model_file: Path | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> PolicySource:
        if settings.policy_backend == "casbin":
            model = settings.effective_casbin_model_file
            return cls("casbin", settings.effective_policy_file, model)
        return cls("polar", settings.effective_policy_file)

    @property
    def files(self) -> tuple[Path, ...]:
        return (self.file,) if self.model_file is None else (self.model_file, self.file)

    def load(self, *, isolated: bool = True) -> RuleEngine:
        """The reference engine (oso or pycasbin); raises :class:`PolicyLoadError`.

        A Polar file is first loaded in a throw-away child (``policies.sandbox``): the
        parser aborts the whole process on some malformed text, and the broker's start-up
        or ``corral policy check`` must answer ``file:line`` instead of dying.
        ``isolated=False`` skips that when the caller has just done it; the default
        shipped in the package is not checked (it is ours and it loads)."""
        if self.backend == "casbin":
            assert self.model_file is not None
            return load_casbin(self.model_file, self.file)
        if isolated and self.file.resolve() != DEFAULT_POLAR:  # the shipped one loads
            try:
                text = self.file.read_text("utf-8")
            except (OSError, UnicodeDecodeError):
                pass  # load_polar reports an unreadable file itself
            else:
                name = str(self.file)
                check_in_child({"backend": "polar", "policy": {"name": name, "text": text}})
        return load_polar(self.file)

    def load_fast(self, *, isolated: bool = True) -> PolicyEngine:
        """The compiled fast path built from the reference engine: what decisions use."""
        return compile_engine(self.load(isolated=isolated))

    def load_at_start(self) -> PolicyEngine:
        """:meth:`load_fast`, with a refusal as the broker's one-line start-up error."""
        try:
            return self.load_fast()
        except PolicyLoadError as exc:
            raise PolicyRefused(str(exc)) from None

    def fingerprint(self) -> Fingerprint | None:
        """(mtime, size) of every file, or ``None`` while one is missing (mid-save)."""
        try:
            return tuple((st.st_mtime_ns, st.st_size) for st in (p.stat() for p in self.files))
        except OSError:
            return None

    def text_version(self) -> str | None:
        """The version a load of the current text would have (same hash as the engines)."""
        try:
            texts = [p.read_bytes() for p in self.files]
        except OSError:
            return None
        return hashlib.sha256(b"\0".join(texts)).hexdigest()


@functools.cache
def _default_engine() -> PolicyEngine:
    return compile_engine(load_polar())


def default_policy() -> PolicyEngine:
    """The shipped default policy, compiled once: for collaborators built without a
    runtime (tests, tools). A running broker passes ``PolicyRuntime.engine`` instead."""
    return _default_engine()


class PolicyRuntime:
    """The engine in force, its reloads and their audit trail."""

    def __init__(
        self,
        source: PolicySource,
        services: Services,
        *,
        engine: PolicyEngine | None = None,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        """Load ``source`` now (or take ``engine``, already loaded from it at start-up);
        a policy that does not load raises :class:`PolicyRefused` with ``file:line``."""
        self.source = source
        self.services = services
        self.clock = clock
        self._fingerprint = source.fingerprint()
        first = engine
        # The first load is checked in a child here; later ones come through reload(),
        # which has the text checked in a child before it asks for them.
        check_first = engine is None

        def loader() -> PolicyEngine:
            nonlocal first, check_first
            if first is not None:
                ready, first = first, None
                return ready
            isolated, check_first = check_first, False
            return source.load_fast(isolated=isolated)

        try:
            self.holder = PolicyHolder(loader)
        except PolicyLoadError as exc:
            raise PolicyRefused(str(exc)) from None
        self.loaded_at = clock()
        self._lock = asyncio.Lock()
        self._writing = asyncio.Lock()
        self._listeners: list[ReloadListener] = []
        self._tasks: set[asyncio.Task[Any]] = set()
        self._watcher: asyncio.Task[None] | None = None

    # ------------------------------------------------------------------ reading

    def engine(self) -> PolicyEngine:
        """The engine in force now: pass this method where a ``Callable[[], PolicyEngine]``
        is wanted, so a reload takes effect on the next decision."""
        return self.holder.engine

    @property
    def version(self) -> str:
        return self.holder.version

    def info(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "backend": self.source.backend,
            "file": str(self.source.file),
            "model_file": None if self.source.model_file is None else str(self.source.model_file),
            "loaded_at": self.loaded_at.isoformat(),
        }

    def on_change(self, listener: ReloadListener) -> None:
        """Call ``listener`` after every reload that swapped in a new version."""
        self._listeners.append(listener)

    # ---------------------------------------------------------------- reloading

    async def reload(
        self, *, trigger: str, actor: Actor = SYSTEM, workspace_id: str | None = None
    ) -> ReloadResult:
        """Build the candidate aside and swap it in if it loads; audit either way.

        ``actor`` is recorded in ``workspace_id`` (the caller's own workspace); every other
        workspace records the system as the actor, with the same trigger and hashes.
        """
        async with self._lock:
            self._fingerprint = await asyncio.to_thread(self.source.fingerprint)
            candidate = await asyncio.to_thread(self.source.text_version)
            refusal = await self._refused_by_sandbox()
            if refusal is not None:
                v = self.version
                result = ReloadResult(False, v, v, refusal)
            else:
                result = await asyncio.to_thread(self.holder.reload)
            if result.error is None:
                self.loaded_at = self.clock()
            await self._audit(result, trigger, actor, workspace_id, candidate)
        if result.error is not None:
            log.warning("policy reload (%s) refused: %s", trigger, result.error)
        elif result.swapped:
            log.info(
                "policy reloaded (%s): %s -> %s",
                trigger,
                result.old_version[:12],
                result.new_version[:12],
            )
            for listener in self._listeners:
                try:
                    await listener(result)
                except Exception:
                    log.exception("policy reload listener failed")
        return result

    async def _refused_by_sandbox(self) -> PolicyLoadError | None:
        """Parse the files in a child process first: the Polar parser aborts the process
        on some malformed text, and a saved file must not take the broker down. ``None``
        when the child loaded them (or they cannot be read: the reload says so)."""
        from broker.policy.candidate import Candidate, LoadProblem, PolicyText, check_isolated

        try:
            texts = [
                PolicyText(str(p), t)
                for p, t in zip(
                    self.source.files,
                    await asyncio.to_thread(
                        lambda: [p.read_text("utf-8") for p in self.source.files]
                    ),
                    strict=True,
                )
            ]
        except (OSError, UnicodeDecodeError):
            return None
        candidate = Candidate(self.source.backend, texts[-1], texts[0] if len(texts) > 1 else None)
        checked = await check_isolated(candidate)
        if isinstance(checked, LoadProblem):
            return PolicyLoadError(checked.message, file=checked.file, line=checked.line)
        return None

    async def replace(
        self, write: Callable[[], None], *, actor: Actor, workspace_id: str
    ) -> ReloadResult:
        """Run ``write`` (new text over the source's files, in a worker thread), then
        reload (trigger ``api``); one writer at a time, so two replacements never
        interleave their files."""
        async with self._writing:
            await asyncio.to_thread(write)
            return await self.reload(trigger="api", actor=actor, workspace_id=workspace_id)

    async def _audit(
        self,
        result: ReloadResult,
        trigger: str,
        actor: Actor,
        workspace_id: str | None,
        candidate: str | None,
    ) -> None:
        refused = result.error is not None
        details: dict[str, Any] = {
            "trigger": trigger,
            "backend": self.source.backend,
            "file": str(self.source.file),
            "version": result.new_version,
            "old_version": result.old_version,
            "changed": result.swapped,
        }
        if refused:
            details["candidate_version"] = candidate
            details["error"] = str(result.error)[:500]
        for workspace in await self.services.workspaces.list_all():
            with contextlib.suppress(CorralError):
                await self.services.audit.emit(
                    workspace.id,
                    Category.CONFIGURATION,
                    "policy.reload_refused" if refused else "policy.reloaded",
                    outcome=Outcome.FAILURE if refused else Outcome.SUCCESS,
                    actor=actor if workspace.id == workspace_id else SYSTEM,
                    target=str(self.source.file)[-200:],
                    details=details,
                )

    def reload_soon(self, trigger: str) -> None:
        """Schedule a reload from synchronous code (a signal handler)."""
        task = asyncio.get_running_loop().create_task(self.reload(trigger=trigger))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def check_files(self) -> ReloadResult | None:
        """One poll: reload if the files changed on disk to a new text."""
        fingerprint = await asyncio.to_thread(self.source.fingerprint)
        if fingerprint is None or fingerprint == self._fingerprint:
            return None
        self._fingerprint = fingerprint
        if await asyncio.to_thread(self.source.text_version) == self.version:
            return None  # touched, or saved unchanged
        return await self.reload(trigger="file")

    def start_watching(self, interval: float) -> None:
        """Poll the files every ``interval`` seconds (no new dependency: stat is cheap)."""
        if interval <= 0 or self._watcher is not None:
            return

        async def watch() -> None:
            while True:
                await asyncio.sleep(interval)
                try:
                    await self.check_files()
                except Exception:
                    log.exception("policy file watch failed; will retry")

        self._watcher = asyncio.get_running_loop().create_task(watch())

    async def aclose(self) -> None:
        tasks = [t for t in (self._watcher, *self._tasks) if t is not None]
        self._watcher = None
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
