"""A fixed list of instances, for tests and local development. ``set()`` changes it at run time."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable, Mapping

from roost.client.instance import Instance, parse_hostport


class StaticStrategy:
    """Instances given in code: ``StaticStrategy({"web": ["127.0.0.1:8001", "127.0.0.1:8002"]})``."""

    name = "static"

    def __init__(self, services: Mapping[str, Iterable[Instance | str]] | None = None) -> None:
        self._services: dict[str, tuple[Instance, ...]] = {}
        self._changed: dict[str, asyncio.Event] = {}
        for name, items in (services or {}).items():
            self._services[name] = self._coerce(name, items)

    @staticmethod
    def _coerce(name: str, items: Iterable[Instance | str]) -> tuple[Instance, ...]:
        return tuple(parse_hostport(name, i) if isinstance(i, str) else i for i in items)

    def set(self, name: str, items: Iterable[Instance | str]) -> None:
        """Replace the instances of ``name``; watchers see the change."""
        self._services[name] = self._coerce(name, items)
        event = self._changed.pop(name, None)
        if event is not None:
            event.set()

    async def updates(self, service: str) -> AsyncIterator[tuple[Instance, ...]]:
        while True:
            event = self._changed.setdefault(service, asyncio.Event())
            yield self._services.get(service, ())
            await event.wait()

    async def aclose(self) -> None:
        pass
