"""Run a coroutine at once, in the caller, until it first has to wait.

The relay's hot path is "agent output arrived, write it to the client". Writing to a
WebSocket is a coroutine (Starlette, then uvicorn), but one that only waits when the
client's transport has stopped taking data (uvicorn's ``writable`` event); otherwise it
completes without ever suspending. Handing every write to a task costs a task switch per
frame, about a tenth of the broker's whole keystroke-echo hop
(``benchmarks/gateway_vs_ssh.py``); awaiting it in the caller would let one slow client
hold everyone up. ``start_eagerly`` does what Python 3.12's eager tasks do: it steps the
coroutine in the caller and, only if it suspends, hands the rest to a task, so the caller
never waits and the write keeps its order.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine, Generator
from typing import Any

__all__ = ["start_eagerly"]


def start_eagerly(coroutine: Coroutine[Any, Any, None]) -> asyncio.Task[None] | None:
    """Step ``coroutine`` now. ``None`` if it finished (its exception, if any, is raised
    here); otherwise a task that finishes it (and holds its outcome)."""
    try:
        waiting_on = coroutine.send(None)
    except StopIteration:
        return None
    return asyncio.ensure_future(_finish(coroutine, waiting_on))


async def _finish(coroutine: Coroutine[Any, Any, None], waiting_on: Any) -> None:
    """Drive the rest of ``coroutine`` the way a Task would have."""
    while True:
        try:
            if isinstance(waiting_on, asyncio.Future):
                waiting_on._asyncio_future_blocking = False  # as Task.__step does
                await asyncio.wait([waiting_on])  # done, without taking its outcome
            else:  # a bare yield (asyncio.sleep(0)): give the loop one turn
                await _one_turn()
        except asyncio.CancelledError:
            if isinstance(waiting_on, asyncio.Future):
                waiting_on.cancel()
            coroutine.close()
            raise
        try:
            waiting_on = coroutine.send(None)
        except StopIteration:
            return


class _Yield:
    def __await__(self) -> Generator[None, None, None]:
        yield None


async def _one_turn() -> None:
    await _Yield()
