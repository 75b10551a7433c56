"""An in-process change feed for stores whose only writer is this process (memory, SQLite).

The feed keeps a bounded tail of recent changes, so a follower that subscribes a little after a
write (the catalog starts following after it loaded its snapshot) still sees it; a follower that
asks for history older than the tail gets `Compacted` and reloads from a snapshot, as with etcd.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator

from roost.store.protocol import Change, Compacted

HISTORY = 10_000  # changes kept for late subscribers


class LocalFeed:
    def __init__(self, history: int = HISTORY) -> None:
        self._queues: list[asyncio.Queue[list[Change]]] = []
        self._history: deque[Change] = deque(maxlen=history)
        self._forgotten = 0  # index of the newest change that fell out of the history

    def publish(self, changes: list[Change]) -> None:
        history = self._history
        for change in changes:
            if len(history) == history.maxlen:
                self._forgotten = history[0].index
            history.append(change)
        for queue in self._queues:
            queue.put_nowait(changes)

    async def follow(self, since: int) -> AsyncIterator[list[Change]]:
        if since < self._forgotten:
            raise Compacted(f"changes after {since} are no longer kept")
        # Subscribing and copying the tail happen with no await in between: nothing is missed.
        queue: asyncio.Queue[list[Change]] = asyncio.Queue()
        self._queues.append(queue)
        backlog = [c for c in self._history if c.index > since]
        try:
            if backlog:
                since = backlog[-1].index
                yield backlog
            while True:
                batch = [c for c in await queue.get() if c.index > since]
                if batch:
                    since = batch[-1].index
                    yield batch
        finally:
            self._queues.remove(queue)
