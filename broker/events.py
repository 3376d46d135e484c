"""Live events for people: what the console and the CLI show as it happens (an approval
waiting for you, a decision on yours).

In-process publish/subscribe, per workspace and user: each subscriber gets a bounded
queue, and one that does not keep up loses its oldest events rather than slowing the
publisher (the API's list endpoints hold the truth; events are a nudge). A cluster will
carry them over Redis; the interface stays.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterable
from typing import Any

__all__ = ["EventBus"]


class EventBus:
    def __init__(self, *, queue_size: int = 256) -> None:
        self.queue_size = queue_size
        self._subscribers: dict[tuple[str, str], set[asyncio.Queue[dict[str, Any]]]] = {}

    def publish(self, workspace_id: str, user_ids: Iterable[str], event: dict[str, Any]) -> None:
        for user_id in set(user_ids):
            for queue in self._subscribers.get((workspace_id, user_id), ()):
                if queue.full():
                    with contextlib.suppress(asyncio.QueueEmpty):
                        queue.get_nowait()
                queue.put_nowait(event)

    @contextlib.asynccontextmanager
    async def subscribe(
        self, workspace_id: str, user_id: str
    ) -> AsyncIterator[asyncio.Queue[dict[str, Any]]]:
        key = (workspace_id, user_id)
        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(self.queue_size)
        self._subscribers.setdefault(key, set()).add(queue)
        try:
            yield queue
        finally:
            queues = self._subscribers.get(key, set())
            queues.discard(queue)
            if not queues:
                self._subscribers.pop(key, None)

    def subscribers(self, workspace_id: str, user_id: str) -> int:
        return len(self._subscribers.get((workspace_id, user_id), ()))
