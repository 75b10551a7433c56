"""An in-process change feed for stores whose only writer is this process (memory, SQLite)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from roost.store.protocol import Change


class LocalFeed:
    def __init__(self) -> None:
        self._queues: list[asyncio.Queue[list[Change]]] = []

    def publish(self, changes: list[Change]) -> None:
        for queue in self._queues:
            queue.put_nowait(changes)

    async def follow(self, since: int) -> AsyncIterator[list[Change]]:
        queue: asyncio.Queue[list[Change]] = asyncio.Queue()
        self._queues.append(queue)
        try:
            while True:
                batch = [c for c in await queue.get() if c.index > since]
                if batch:
                    yield batch
        finally:
            self._queues.remove(queue)
