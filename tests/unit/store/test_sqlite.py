import asyncio
from pathlib import Path

import pytest

from roost.errors import Conflict
from roost.store.sqlite import SqliteStore


async def test_group_commit_gives_each_write_its_own_index(tmp_path: Path) -> None:
    """Concurrent writes are batched but each gets a distinct, increasing index, and all persist."""
    store = SqliteStore(tmp_path)
    await store.open()
    indexes = await asyncio.gather(*(store.apply({f"k/{n}": b"v"}) for n in range(200)))
    assert len(set(indexes)) == 200
    await store.close()
    again = SqliteStore(tmp_path)
    await again.open()
    index, data = await again.snapshot()
    assert index == max(indexes)
    assert len(data) == 200
    await again.close()


async def test_expect_conflict_writes_nothing(tmp_path: Path) -> None:
    """A compare that fails raises Conflict and leaves the store as it was, while other writes go through."""
    store = SqliteStore(tmp_path)
    await store.open()
    first = await store.apply({"a": b"1"})
    with pytest.raises(Conflict):
        await store.apply({"a": b"2", "b": b"2"}, expect={"a": first + 5})
    await store.apply({"a": b"3"}, expect={"a": first})
    _, data = await store.snapshot()
    assert data["a"][2] == b"3" and "b" not in data
    await store.close()
