"""The discovery cache over in-memory strategies: no sockets, a fake clock."""

from __future__ import annotations

import asyncio
import logging
import random
from collections import Counter
from collections.abc import AsyncIterator

import pytest

from roost.client.breaker import BreakerConfig
from roost.client.discovery import Discovery, SyncDiscovery
from roost.client.instance import ChangeKind, Instance
from roost.client.retry import Backoff
from roost.client.strategies.static import StaticStrategy
from roost.errors import NoHealthyInstance, Unavailable


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class Scripted:
    """A strategy fed by the test: put() a snapshot, fail() the stream."""

    name = "scripted"

    def __init__(self) -> None:
        self.queue: asyncio.Queue[tuple[Instance, ...] | Exception] = asyncio.Queue()
        self.calls = 0

    async def updates(self, service: str) -> AsyncIterator[tuple[Instance, ...]]:
        self.calls += 1
        while True:
            item = await self.queue.get()
            if isinstance(item, Exception):
                raise item
            yield item

    async def aclose(self) -> None:
        pass


def inst(i: str, **kw: object) -> Instance:
    return Instance("web", i, "127.0.0.1", 8000 + ord(i[0]) % 100, **kw)  # type: ignore[arg-type]


async def test_discover_answers_from_cache_once_warm() -> None:
    """The first discover() waits for the strategy; later ones answer without another query."""
    strategy = StaticStrategy({"web": ["127.0.0.1:1", "127.0.0.1:2"]})
    async with Discovery(strategy) as d:
        assert d.cached("web") is None
        assert [i.port for i in await d.discover("web")] == [1, 2]
        assert [i.port for i in d.cached("web") or []] == [1, 2]


async def test_tag_filter() -> None:
    """discover(tag=...) returns only the instances carrying the tag."""
    strategy = StaticStrategy({"web": [inst("a", tags=("v1",)), inst("b", tags=("v2",))]})
    async with Discovery(strategy) as d:
        assert [i.id for i in await d.discover("web", tag="v2")] == ["b"]


async def test_watch_yields_changes_as_they_happen() -> None:
    """watch() starts with the current instances as added, then reports additions and removals."""
    strategy = StaticStrategy({"web": [inst("a")]})
    async with Discovery(strategy) as d:
        await d.discover("web")
        events = aiter(d.watch("web"))
        first = await anext(events)
        assert (first.kind, first.instance.id) == (ChangeKind.ADDED, "a")
        strategy.set("web", [inst("b")])
        got = {(c.kind, c.instance.id) for c in [await anext(events), await anext(events)]}
        assert got == {(ChangeKind.ADDED, "b"), (ChangeKind.REMOVED, "a")}
        await events.aclose()  # type: ignore[attr-defined]


async def test_serves_stale_within_max_stale_then_fails(caplog: pytest.LogCaptureFixture) -> None:
    """While the strategy fails, the last instances are served (with a warning) until max_stale."""
    clock = Clock()
    strategy = Scripted()
    d = Discovery(strategy, clock=clock, max_stale=60.0, backoff_base=0.001, backoff_cap=0.002)
    strategy.queue.put_nowait((inst("a"),))
    assert [i.id for i in await d.discover("web")] == ["a"]
    with caplog.at_level(logging.WARNING, logger="roost.client"):
        strategy.queue.put_nowait(Unavailable("registry down"))
        for _ in range(50):
            await asyncio.sleep(0.001)
    assert "serving 1 cached instances" in caplog.text
    clock.now += 59
    assert [i.id for i in await d.discover("web")] == ["a"]
    clock.now += 2
    with pytest.raises(Unavailable, match="max_stale"):
        await d.discover("web")
    assert strategy.calls >= 2  # it kept reconnecting
    strategy.queue.put_nowait((inst("b"),))
    for _ in range(50):
        await asyncio.sleep(0.001)
    assert [i.id for i in await d.discover("web")] == ["b"]
    await d.aclose()


async def test_cold_discover_times_out_with_unavailable() -> None:
    """A service the strategy never answers for raises Unavailable after first_wait."""
    async with Discovery(Scripted(), first_wait=0.05) as d:
        with pytest.raises(Unavailable, match="no answer"):
            await d.discover("web")


async def test_pick_skips_open_breakers_and_fails_fast_when_all_open() -> None:
    """pick() avoids instances with an open breaker and raises NoHealthyInstance when none is left."""
    clock = Clock()
    strategy = StaticStrategy({"web": [inst("a"), inst("b")]})
    async with Discovery(
        strategy, clock=clock, breaker=BreakerConfig(failure_threshold=1), rng=random.Random(1)
    ) as d:
        a = (await d.discover("web"))[0]
        d.breakers[a.key].record_failure(clock.now)
        assert {(await d.pick("web")).id for _ in range(10)} == {"b"}
        d.breakers[f"web/{'b'}"].record_failure(clock.now)
        with pytest.raises(NoHealthyInstance, match="open circuit breaker"):
            await d.pick("web")


async def test_pick_uses_the_lowest_priority_available() -> None:
    """SRV-style priorities: only priority-0 instances are picked while one is available."""
    clock = Clock()
    strategy = StaticStrategy({"web": [inst("a", priority=0), inst("b", priority=10)]})
    async with Discovery(strategy, clock=clock, breaker=BreakerConfig(failure_threshold=1)) as d:
        assert {(await d.pick("web")).id for _ in range(10)} == {"a"}
        d.breakers["web/a"].record_failure(clock.now)
        assert (await d.pick("web")).id == "b"


async def test_pick_on_an_empty_service_raises() -> None:
    """A service with no instances raises NoHealthyInstance naming it."""
    async with Discovery(StaticStrategy({})) as d:
        with pytest.raises(NoHealthyInstance, match="web"):
            await d.pick("web")


def test_sync_discovery_works_without_an_event_loop() -> None:
    """SyncDiscovery answers discover(), pick() and watch() from plain threads."""
    strategy = StaticStrategy({"web": ["127.0.0.1:1", "127.0.0.1:2"]})
    with SyncDiscovery(strategy, policy="round_robin") as d:
        assert len(d.discover("web")) == 2
        assert {d.pick("web").port for _ in range(4)} == {1, 2}
        changes = d.watch("web", timeout=0.2)
        assert {c.instance.port for c in changes} == {1, 2}


async def test_many_clients_reconnect_spread_out() -> None:
    """300 caches whose registry fails together retry at spread-out moments, not in one burst."""

    class Failing:
        name = "failing"

        def __init__(self, log: list[float]) -> None:
            self.log = log

        async def updates(self, service: str) -> AsyncIterator[tuple[Instance, ...]]:
            self.log.append(asyncio.get_running_loop().time())
            raise Unavailable("registry down")
            yield ()  # unreachable: makes this an async generator

        async def aclose(self) -> None:
            pass

    logs: list[list[float]] = [[] for _ in range(300)]
    caches = [
        Discovery(Failing(log), backoff_base=0.2, backoff_cap=0.2, rng=random.Random(i), first_wait=0.01)
        for i, log in enumerate(logs)
    ]
    outcomes = await asyncio.gather(*(d.discover("web") for d in caches), return_exceptions=True)
    assert all(isinstance(o, Unavailable) for o in outcomes)
    for _ in range(100):  # until (nearly) every cache has retried once; bounded at about 2 s
        await asyncio.sleep(0.02)
        if sum(len(log) > 1 for log in logs) >= 290:
            break
    for d in caches:
        await d.aclose()
    retried = [log for log in logs if len(log) > 1]
    assert len(retried) > 250  # every cache goes back to the registry on its own
    # When: the spread comes from the full-jitter delays the caches' Backoff draws, one rng each.
    # The real retry moments follow them unless the machine stalls the event loop, which a test
    # cannot rule out, so the spread is asserted on the delays 300 such clients draw.
    delays = [Backoff(0.2, 0.2, random.Random(i)).next_delay() for i in range(300)]
    buckets = Counter(int(t / 0.02) for t in delays)  # 20 ms slots over the 200 ms window
    assert len(buckets) >= 8
    assert max(buckets.values()) < 0.3 * len(delays)


async def test_aclose_ends_watchers() -> None:
    """Closing the discovery ends every watch() iteration instead of leaving it hanging."""
    d = Discovery(StaticStrategy({"web": ["127.0.0.1:1"]}))
    seen: list[str] = []

    async def follow() -> None:
        async for change in d.watch("web"):
            seen.append(change.instance.id)

    task = asyncio.create_task(follow())
    await d.discover("web")
    await asyncio.sleep(0.01)
    await d.aclose()
    await asyncio.wait_for(task, 1.0)
    assert seen == ["127.0.0.1:1"]
