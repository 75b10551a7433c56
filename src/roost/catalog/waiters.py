"""Blocking-query bookkeeping: an index per topic and one shared future per topic.

A topic is what a watcher cares about: ``svc:<name>`` for one service's instances and checks,
``services`` for the set of services, ``checks`` for every check. All watchers of a topic wait on
the same future, so 10,000 watchers of one service cost one future plus their own connections,
and a change to service A never wakes a watcher of service B.
"""

from __future__ import annotations

import asyncio

SERVICES = "services"
CHECKS = "checks"
NODES = "nodes"


def service_topic(name: str) -> str:
    return "svc:" + name.lower()


class Topics:
    def __init__(self) -> None:
        self._index: dict[str, int] = {}
        self._revision: dict[str, int] = {}
        self._futures: dict[str, asyncio.Future[None]] = {}
        self._revision_counter = 0
        self.closed = False

    def close(self) -> None:
        """Release every waiter now (agent shutdown)."""
        self.closed = True
        for future in self._futures.values():
            if not future.done():
                future.set_result(None)
        self._futures.clear()

    def index(self, topic: str) -> int:
        """The catalog index at which the topic last changed (0: never)."""
        return self._index.get(topic, 0)

    def revision(self, topic: str) -> int:
        """Changes whenever anything visible in the topic changes, including output-only updates
        that do not move the index. Response caches key on it."""
        return self._revision.get(topic, 0)

    def bump(self, topic: str, index: int) -> None:
        if index > self._index.get(topic, 0):
            self._index[topic] = index
        self.touch(topic)
        future = self._futures.pop(topic, None)
        if future is not None and not future.done():
            future.set_result(None)

    def touch(self, topic: str) -> None:
        self._revision_counter += 1
        self._revision[topic] = self._revision_counter

    async def wait(self, topic: str, after: int, timeout: float) -> None:
        """Return when the topic's index passes `after`, or after `timeout` seconds."""
        if self.index(topic) > after or timeout <= 0 or self.closed:
            return
        future = self._futures.get(topic)
        if future is None or future.done():
            future = asyncio.get_running_loop().create_future()
            self._futures[topic] = future
        deadline = asyncio.get_running_loop().time() + timeout
        while self.index(topic) <= after:
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                return
            await asyncio.wait([future], timeout=remaining)
            future = self._futures.get(topic) or future
            if self.closed:
                return
            if future.done():
                if self.index(topic) > after:
                    return
                future = asyncio.get_running_loop().create_future()
                self._futures[topic] = future

    def waiting(self) -> int:
        return len(self._futures)
