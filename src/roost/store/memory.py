"""A store that keeps everything in memory: for unit tests and throwaway agents."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping

from roost.errors import Conflict
from roost.store.feed import LocalFeed
from roost.store.protocol import Change


class MemoryStore:
    name = "memory"

    def __init__(self) -> None:
        self._index = 1  # as etcd: an empty store is at 1, the first write gets 2
        self._data: dict[str, tuple[int, int, bytes]] = {}
        self._feed = LocalFeed()

    async def open(self) -> None:
        return None

    async def close(self) -> None:
        return None

    async def apply(
        self, writes: Mapping[str, bytes | None], *, expect: Mapping[str, int] | None = None
    ) -> int:
        for key, want in (expect or {}).items():
            have = self._data.get(key, (0, 0, b""))[1]
            if have != want:
                raise Conflict(f"{key} changed (index {have}, expected {want})")
        self._index += 1
        changes = []
        for key, value in writes.items():
            if value is None:
                self._data.pop(key, None)
            else:
                created = self._data.get(key, (self._index, 0, b""))[0]
                self._data[key] = (created, self._index, value)
            changes.append(Change(self._index, key, value))
        self._feed.publish(changes)
        return self._index

    async def snapshot(self) -> tuple[int, dict[str, tuple[int, int, bytes]]]:
        return self._index, dict(self._data)

    def follow(self, since: int) -> AsyncIterator[list[Change]]:
        return self._feed.follow(since)

    def connected(self) -> tuple[bool, float]:
        return True, 0.0
