"""Blocking queries (``?index=&wait=``) and the per-index response cache.

Identical queries share one catalog waiter (see catalog/waiters.py) and one encoded body per
topic revision: 10,000 watchers woken by a change cost one encode, not 10,000.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

import orjson

from roost.catalog.state import CatalogState
from roost.errors import ValidationError
from roost.model.duration import parse_duration

DEFAULT_WAIT = 300.0
MAX_WAIT = 600.0
_CACHE_LIMIT = 4096


class QueryCache:
    def __init__(self) -> None:
        self._entries: dict[tuple[Any, ...], tuple[int, bytes]] = {}

    def get(self, key: tuple[Any, ...], revision: int, build: Callable[[], Any]) -> bytes:
        hit = self._entries.get(key)
        if hit is not None and hit[0] == revision:
            return hit[1]
        body = orjson.dumps(build())
        if len(self._entries) >= _CACHE_LIMIT:
            self._entries.clear()
        self._entries[key] = (revision, body)
        return body


def parse_index(value: str | None) -> int:
    if value is None or value == "":
        return 0
    try:
        index = int(value)
    except ValueError:
        raise ValidationError(f"index must be a non-negative integer, got {value!r}", field="index") from None
    if index < 0:
        raise ValidationError("index must not be negative", field="index")
    if index >= 2**64:
        raise ValidationError(f"index must fit in 64 bits (as Consul's), got {value!r}", field="index")
    return index


def parse_wait(value: str | None) -> float:
    if value is None or value == "":
        return DEFAULT_WAIT
    return min(parse_duration(value, field="wait"), MAX_WAIT)


async def block(state: CatalogState, topic: str, index_arg: str | None, wait_arg: str | None) -> int:
    """Wait as a blocking query asks, then return the index to report for the topic."""
    index = parse_index(index_arg)
    wait = parse_wait(wait_arg)
    if index > 0:
        wait += random.uniform(0, wait / 16)  # jitter, as Consul, so watchers do not return together
        await state.topics.wait(topic, index, wait)
    return state.topic_index(topic)
