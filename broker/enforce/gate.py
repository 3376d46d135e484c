"""The command gate: every line a person runs in a live terminal is decided at its Enter.

The gate sits between a session's clients and the agent. Ordinary keystrokes are
forwarded at once (it never waits for output to forward them). At an Enter while the
shell is at its prompt it holds the Enter, waits until the echo of what was forwarded has
come back, reads the line (:class:`~broker.enforce.tracker.LineTracker`), and asks its
:class:`Verdicts`:

* allow: the Enter is forwarded;
* deny: Ctrl-C makes bash drop the line; the person sees ``corral: denied by <rule>``;
* require_mfa: the line is held while the person types a TOTP code (read by the gate,
  never echoed nor sent to the host); released on a good code, discarded otherwise;
* require_approval: held until an approver decides; Ctrl-C withdraws it.

While a line is held, or an Enter was forwarded and the next prompt has not shown yet,
further input is queued (a multi-line paste runs line by line, each decided), and is
dropped if the line was refused. Every decided command is audited and marked in the
recording. The gate never raises into the session: a failing verdict denies.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, Protocol

from broker.enforce.lines import closed_form
from broker.enforce.tracker import ACCEPT, InputStep, LineTracker, State
from policies import Decision, Effect

__all__ = ["CommandGate", "Verdicts"]

log = logging.getLogger("corral.enforce")

CTRL_C = b"\x03"
MAX_CODE = 16
#: Input queued behind a held line beyond this is dropped (a paste that big is refused
#: line by line anyway; a client must not grow the broker's memory at will).
MAX_PENDING = 256 * 1024


class Verdicts(Protocol):
    """Where decisions, step-ups and approvals come from (the broker's or a test's)."""

    async def decide(self, line: str) -> Decision: ...

    async def step_up(self, code: str) -> bool: ...

    async def approval(self, line: str, decision: Decision) -> bool:
        """Wait for the approvers: True if approved, False on denial or timeout."""
        ...


Send = Callable[[bytes], Coroutine[Any, Any, None]]
Show = Callable[[bytes], None]
Audit = Callable[[str, Decision, bool], Awaitable[None]]
Mark = Callable[[str], None]


class CommandGate:
    def __init__(
        self,
        tracker: LineTracker,
        verdicts: Verdicts,
        *,
        send: Send,
        show: Show,
        audit: Audit,
        mark: Mark,
        settle_seconds: float = 0.03,
        echo_timeout: float = 1.0,
        prompt_timeout: float = 0.5,
        first_prompt_timeout: float = 10.0,
        code_timeout: float = 120.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.tracker = tracker
        self.verdicts = verdicts
        self._send, self._show, self._audit, self._mark = send, show, audit, mark
        self.settle_seconds = settle_seconds
        self.echo_timeout = echo_timeout
        self.prompt_timeout = prompt_timeout
        self.first_prompt_timeout = first_prompt_timeout
        self.code_timeout = code_timeout
        self._clock = clock
        self._lock = asyncio.Lock()
        self._pending = bytearray()
        self._busy = False  # a line is held or the next prompt is awaited
        self._code: asyncio.Queue[bytes] | None = None  # keystrokes while reading a code
        self._cancel: asyncio.Event | None = None  # Ctrl-C while waiting for approval
        self._last_input = 0.0
        self._last_output = 0.0
        self._prompt_timer: asyncio.TimerHandle | None = None
        self._tasks: set[asyncio.Task[Any]] = set()

    # ---------------------------------------------------------------- the session side

    def output(self, data: bytes) -> None:
        """Every output byte of the shell, in order (cheap: a mark scan and an append)."""
        self._last_output = self._clock()
        if self.tracker.feed_output(data) and self._busy and self._hold_released():
            self._spawn(self._drain())

    def resize(self, cols: int) -> None:
        self.tracker.resize(cols)

    async def input(self, data: bytes) -> None:
        """Keystrokes from a client; returns without waiting for any decision."""
        if self._code is not None:
            self._code.put_nowait(data)
            return
        if self._cancel is not None:
            if CTRL_C in data:
                self._cancel.set()
            else:
                self._queue(data)
            return
        if not self._busy and not self._lock.locked():
            # Nobody is processing: no need to queue behind the lock. What _process
            # decides happens before its first await, and each send is queued on the
            # wire when it is called, so the order holds without it.
            await self._process(data)
            return
        async with self._lock:
            if self._busy:
                self._queue(data)
                return
            await self._process(bytes(data))

    def input_now(self, data: bytes) -> Coroutine[Any, Any, None] | None:
        """:meth:`input` for the relay's per-message callback: an ordinary keystroke at an
        idle gate is split here and its forward returned unstarted (the caller steps it at
        once, so it goes out before the next message is read); anything else returns the
        :meth:`input` coroutine itself. ``None``: nothing to send."""
        idle = self._code is None and self._cancel is None and not self._busy
        if idle and not self._lock.locked():
            return self._stepped(self.tracker.feed_input(data))
        return self.input(data)

    def start(self) -> None:
        """Hold input until the shell's first prompt (type-ahead during start-up would
        otherwise reach bash undecided), or until it is clear no marks will come."""
        self._busy = True
        self.tracker.entered()
        self._prompt_timer = asyncio.get_running_loop().call_later(
            self.first_prompt_timeout, self._prompt_late
        )

    def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        if self._prompt_timer is not None:
            self._prompt_timer.cancel()

    # ----------------------------------------------------------------- processing

    def _hold_released(self) -> bool:
        """At a prompt again after a forwarded Enter (not while a line is being decided)."""
        return self._prompt_timer is not None

    async def _process(self, data: bytes) -> None:
        """Forward what may go now; at an Enter, hold it and decide (lock held, or free
        and nothing busy)."""
        work = self._stepped(self.tracker.feed_input(data))
        if work is not None:
            await work

    def _stepped(self, step: InputStep) -> Coroutine[Any, Any, None] | None:
        """Act on what the tracker split off: the state changes happen here, before the
        returned send is stepped, so input behind a held Enter queues from now on."""
        if step.enter is not None:
            self._busy = True
            self._pending[:0] = step.rest
            return self._forward_then_decide(step.forward)
        if not step.forward:
            return None
        self._last_input = self._clock()
        return self._send(step.forward)

    async def _forward_then_decide(self, forward: bytes) -> None:
        if forward:
            self._last_input = self._clock()
            await self._send(forward)
        self._spawn(self._enter())

    async def _drain(self) -> None:
        async with self._lock:
            if self._prompt_timer is not None:
                self._prompt_timer.cancel()
                self._prompt_timer = None
            self._busy = False
            if self._pending:
                data = bytes(self._pending)
                self._pending.clear()
                await self._process(data)

    def _await_prompt(self) -> None:
        """Hold further input until the shell prompts again, or a program takes over."""
        self.tracker.entered()
        if self._prompt_timer is not None:
            self._prompt_timer.cancel()
        self._prompt_timer = asyncio.get_running_loop().call_later(
            self.prompt_timeout, self._prompt_late
        )

    def _prompt_late(self) -> None:
        self._prompt_timer = None
        if not self.tracker.marks_seen:
            log.warning("command gate: no prompt marks from the shell; keystrokes pass through")
        self.tracker.running()
        self._spawn(self._flush_running())

    async def _flush_running(self) -> None:
        async with self._lock:
            self._busy = False
            data = bytes(self._pending)
            self._pending.clear()
            if data:
                await self._process(data)

    def _queue(self, data: bytes) -> None:
        room = MAX_PENDING - len(self._pending)
        if room < len(data):
            log.warning("command gate: %d bytes of queued input dropped", len(data) - room)
        self._pending += data[: max(room, 0)]

    def _discard(self) -> None:
        """The held line will not run: drop what was queued behind it."""
        self._pending.clear()

    # ------------------------------------------------------------------- decisions

    async def _settle(self) -> None:
        """Wait until the echo of what was forwarded has come back (bounded)."""
        deadline = self._clock() + self.echo_timeout
        while self._clock() < deadline:
            quiet = self._clock() - self._last_output
            if self._last_output >= self._last_input and quiet >= self.settle_seconds:
                return
            await asyncio.sleep(self.settle_seconds / 2)

    async def _enter(self) -> None:
        try:
            await self._settle()
            if self.tracker.readable:
                line = self.tracker.line()
                if not line.strip():
                    await self._release()  # an empty line runs nothing
                    return
                if self.tracker.incomplete(line):
                    await self._continue(line)
                    return
                decision = await self._verdict(line)
            else:
                line, decision = "", _unreadable()
            self._mark(line or "(unreadable line)")
            ran = await self._apply(line, decision)
            # shielded: a shell that exits at once ends the session (and this task)
            await asyncio.shield(self._audit(line, decision, ran))
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("command gate failed; the line was discarded")
            with contextlib.suppress(Exception):
                await self._refuse("corral: the command could not be checked and was discarded")

    async def _continue(self, line: str) -> None:
        """bash will ask for more; decide what it holds so far in case it runs it anyway."""
        decision = await self._verdict(closed_form(line))
        if decision.effect is Effect.DENY:
            self._mark(line)
            ran = await self._apply(line, decision)
            await asyncio.shield(self._audit(line, decision, ran))
            return
        self._last_input = self._clock()
        self._await_prompt()  # before sending: the next prompt may come back at once
        self.tracker.continued(line)
        await self._send(ACCEPT)

    async def _verdict(self, line: str) -> Decision:
        try:
            return await self.verdicts.decide(line)
        except Exception:
            log.exception("policy decision failed; denying")
            return Decision(Effect.DENY, "internal.error", "policy evaluation failed", "")

    async def _apply(self, line: str, decision: Decision) -> bool:
        if decision.effect is Effect.ALLOW:
            await self._release()
            return True
        if decision.effect is Effect.REQUIRE_MFA:
            if await self._step_up(decision):
                await self._release()
                return True
            await self._refuse(f"corral: step-up failed; the command was discarded ({line})")
            return False
        if decision.effect is Effect.REQUIRE_APPROVAL:
            if await self._approval(line, decision):
                self._show(b"corral: approved\r\n")
                await self._release()
                return True
            await self._refuse("corral: not approved; the command was discarded")
            return False
        await self._refuse(f"corral: denied by {decision.rule_id}: {decision.reason}")
        return False

    async def _release(self) -> None:
        """Run the line: the agent's bash accepts only ``ACCEPT``, never a typed Return."""
        self._last_input = self._clock()
        self._await_prompt()  # before sending: the next prompt may come back at once
        await self._send(ACCEPT)

    async def _refuse(self, message: str) -> None:
        """Drop the line (Ctrl-C: bash discards the whole buffer) and say why."""
        self._discard()
        self._show(b"\r\n\x1b[1;31m" + message.encode("utf-8", "replace") + b"\x1b[0m\r\n")
        self._last_input = self._clock()
        self._await_prompt()
        await self._send(CTRL_C)

    async def _step_up(self, decision: Decision) -> bool:
        self._show(
            f"\r\ncorral: {decision.reason}\r\ncorral: MFA code (not shown): ".encode(
                "utf-8", "replace"
            )
        )
        queue: asyncio.Queue[bytes] = asyncio.Queue()
        self._code = queue
        code = bytearray()
        try:
            async with asyncio.timeout(self.code_timeout):
                while True:
                    for byte in await queue.get():
                        if byte in (0x0D, 0x0A):
                            self._show(b"\r\n")
                            return await self.verdicts.step_up(code.decode("ascii", "replace"))
                        if byte == 0x03:
                            self._show(b"^C\r\n")
                            return False
                        if byte in (0x7F, 0x08):
                            del code[-1:]
                        elif 0x20 <= byte < 0x7F and len(code) < MAX_CODE:
                            code.append(byte)
        except TimeoutError:
            self._show(b"\r\n")
            return False
        finally:
            self._code = None

    async def _approval(self, line: str, decision: Decision) -> bool:
        who = ", ".join(decision.approvers) or "an approver"
        self._show(
            f"\r\ncorral: {decision.reason}\r\ncorral: waiting for approval by {who} "
            "(Ctrl-C withdraws)...".encode("utf-8", "replace")
        )
        cancel = asyncio.Event()
        self._cancel = cancel
        try:
            wait = asyncio.ensure_future(self.verdicts.approval(line, decision))
            stop = asyncio.ensure_future(cancel.wait())
            done, _ = await asyncio.wait({wait, stop}, return_when=asyncio.FIRST_COMPLETED)
            stop.cancel()
            if wait not in done:
                wait.cancel()
                return False
            return bool(wait.result())
        finally:
            self._cancel = None

    def _spawn(self, coroutine: Any) -> None:
        task = asyncio.create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    @property
    def state(self) -> State:
        return self.tracker.state


def _unreadable() -> Decision:
    return Decision(Effect.DENY, "gate.unreadable", "the command line could not be read", "")
