"""The one interface every discovery backend implements."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Protocol

from roost.client.instance import Instance


class Strategy(Protocol):
    """A source of a service's healthy instances.

    ``updates(name)`` yields the full list of healthy instances at once (possibly empty) and then
    again each time it changes, for as long as the caller iterates. Backends that can push (Consul
    blocking queries, etcd watches) yield only on change; DNS yields after each TTL when the answer
    differs. It raises when the backend cannot be reached; the discovery cache then keeps serving
    what it had and calls ``updates`` again after a backoff.
    """

    name: str

    def updates(self, service: str) -> AsyncIterator[tuple[Instance, ...]]: ...

    async def aclose(self) -> None:
        """Release connections. The strategy is not used afterwards."""
        ...
