"""The one narrow seam between the catalog and durable (or shared) storage.

Keys are strings such as ``services/web/web-1`` and ``checks/service:web-1``; values are the
model's stored JSON. `memory.py`, `sqlite.py` and `etcd.py` satisfy `Store` without inheriting it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True, slots=True)
class Change:
    index: int  # store-wide and increasing: SQLite sequence, etcd revision
    key: str
    value: bytes | None  # None: the key was deleted


class Compacted(Exception):
    """The history asked for is gone; reload from a snapshot."""


class Store(Protocol):
    """Makes the catalog durable (and, with etcd, shared). The catalog is its only caller."""

    name: str  # "sqlite", "etcd", "memory": shown in /v1/agent/self

    async def open(self) -> None: ...

    async def close(self) -> None: ...

    async def apply(
        self, writes: Mapping[str, bytes | None], *, expect: Mapping[str, int] | None = None
    ) -> int:
        """Write all or nothing and return the index of the change.

        `expect` maps keys to the modify index they must still have (0: must not exist); when one
        differs nothing is written and Conflict is raised. Raises StoreUnavailable when the store
        did not answer.
        """
        ...

    async def snapshot(self) -> tuple[int, dict[str, tuple[int, int, bytes]]]:
        """Every key at one index, as key -> (create index, modify index, value)."""
        ...

    def follow(self, since: int) -> AsyncIterator[list[Change]]:
        """Batches of changes after `since`, in index order. Raises Compacted when history is gone."""
        ...

    def connected(self) -> tuple[bool, float]:
        """Whether the store is reachable, and seconds since it last answered (X-Consul-LastContact)."""
        ...
