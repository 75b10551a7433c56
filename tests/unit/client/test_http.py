"""ServiceClient and RoostTransport over an in-memory httpx transport (no sockets)."""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from collections.abc import Awaitable, Callable

import httpx
import pytest

from roost.client.balance import PeakEwma
from roost.client.breaker import BreakerConfig, BreakerState
from roost.client.discovery import Discovery
from roost.client.http import ServiceClient, retry_after_seconds
from roost.client.retry import RetryBudget
from roost.client.strategies.static import StaticStrategy
from roost.errors import NoHealthyInstance

Handler = Callable[[httpx.Request], Awaitable[httpx.Response]]


def make(handler: Handler, *, breaker: BreakerConfig | None = None, **kw: object) -> ServiceClient:
    strategy = StaticStrategy({"pay": ["10.0.0.1:80", "10.0.0.2:80", "10.0.0.3:80"]})
    discovery = Discovery(strategy, breaker=breaker or BreakerConfig(failure_threshold=3))
    return ServiceClient(discovery, inner=httpx.MockTransport(handler), **kw)  # type: ignore[arg-type]


async def test_requests_go_to_instances_by_name() -> None:
    """client.get(name, path) reaches every instance in turn with the path and query intact."""
    seen: list[str] = []

    async def handler(req: httpx.Request) -> httpx.Response:
        seen.append(f"{req.url.host}{req.url.raw_path.decode()}")
        return httpx.Response(200, json={"ok": True})

    async with make(handler) as client:
        for _ in range(3):
            resp = await client.get("pay", "/api/process?x=1")
            assert resp.json() == {"ok": True}
        assert str(resp.request.url).startswith("http://pay.service.roost/")
    assert sorted(seen) == [f"10.0.0.{i}/api/process?x=1" for i in (1, 2, 3)]


async def test_transport_url_form_and_passthrough() -> None:
    """http://<name>.service.roost URLs are resolved; other hosts pass through untouched."""
    hosts: list[str] = []

    async def handler(req: httpx.Request) -> httpx.Response:
        hosts.append(req.url.host)
        return httpx.Response(204)

    async with make(handler) as client:
        await client.http.get("http://pay.service.roost/x")
        await client.http.get("http://example.test/y")
    assert hosts[0].startswith("10.0.0.") and hosts[1] == "example.test"


async def test_idempotent_request_retries_on_another_instance() -> None:
    """A GET that gets a 503 is retried on a different instance and succeeds."""
    hits: list[str] = []

    async def handler(req: httpx.Request) -> httpx.Response:
        hits.append(req.url.host)
        return httpx.Response(503 if req.url.host == "10.0.0.1" else 200)

    async with make(handler) as client:
        for _ in range(6):
            assert (await client.get("pay", "/")).status_code == 200
    assert len(set(hits)) == 3


async def test_post_is_not_retried_after_reaching_the_backend() -> None:
    """A POST answered with 500 is returned as is, without a retry."""
    count = 0

    async def handler(req: httpx.Request) -> httpx.Response:
        nonlocal count
        count += 1
        return httpx.Response(500)

    async with make(handler) as client:
        assert (await client.post("pay", "/", json={"a": 1})).status_code == 500
    assert count == 1


async def test_post_is_retried_when_the_connection_failed() -> None:
    """A POST that never reached a backend (connect error) is retried elsewhere, body intact."""
    bodies: list[bytes] = []

    async def handler(req: httpx.Request) -> httpx.Response:
        if req.url.host == "10.0.0.1":
            raise httpx.ConnectError("refused", request=req)
        bodies.append(req.content)
        return httpx.Response(201)

    async with make(handler) as client:
        for _ in range(3):
            assert (await client.post("pay", "/", content=b"payload")).status_code == 201
    assert set(bodies) == {b"payload"}


async def test_breaker_opens_and_traffic_moves_away() -> None:
    """After failure_threshold failures an instance gets no more requests while its breaker is open."""
    hits: Counter[str] = Counter()

    async def handler(req: httpx.Request) -> httpx.Response:
        hits[req.url.host] += 1
        if req.url.host == "10.0.0.1":
            raise httpx.ConnectError("refused", request=req)
        return httpx.Response(200)

    client = make(handler, breaker=BreakerConfig(failure_threshold=3, open_timeout=60))
    async with client:
        for _ in range(60):
            assert (await client.get("pay", "/")).status_code == 200
        assert hits["10.0.0.1"] == 3
        assert client.discovery.breakers["pay/10.0.0.1:80"].state is BreakerState.OPEN


async def test_all_breakers_open_fails_fast() -> None:
    """When every instance's breaker is open the client raises NoHealthyInstance at once."""

    async def handler(req: httpx.Request) -> httpx.Response:
        return httpx.Response(502)

    hits: Counter[str] = Counter()

    async def counting(req: httpx.Request) -> httpx.Response:
        hits[req.url.host] += 1
        return await handler(req)

    client = make(counting, breaker=BreakerConfig(failure_threshold=1, open_timeout=60), retries=5)
    async with client:
        assert (await client.get("pay", "/")).status_code == 502  # tried each instance once
        assert sorted(hits.values()) == [1, 1, 1]
        with pytest.raises(NoHealthyInstance, match="open circuit breaker"):
            await client.get("pay", "/")


async def test_retry_budget_caps_retries() -> None:
    """With every backend failing, retries stay within the budget's share of requests."""
    calls = 0

    async def handler(req: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        return httpx.Response(503)

    budget = RetryBudget(ratio=0.1, min_per_second=0.0, ttl=60)
    client = make(handler, breaker=BreakerConfig(failure_threshold=10_000, error_rate=1.0), budget=budget)
    async with client:
        for _ in range(100):
            await client.get("pay", "/")
    assert 100 <= calls <= 110


async def test_per_try_timeout_moves_to_the_next_instance() -> None:
    """A backend that hangs past the per-try timeout is abandoned and the retry succeeds."""

    async def handler(req: httpx.Request) -> httpx.Response:
        if req.url.host == "10.0.0.1":
            await asyncio.sleep(5)
        return httpx.Response(200)

    async with make(handler, per_try_timeout=0.05, deadline=2.0) as client:
        for _ in range(3):
            assert (await client.get("pay", "/")).status_code == 200


async def test_deadline_bounds_the_whole_request() -> None:
    """When every instance hangs, the request fails with a timeout by the overall deadline."""

    async def handler(req: httpx.Request) -> httpx.Response:
        await asyncio.sleep(5)
        return httpx.Response(200)

    async with make(handler, per_try_timeout=0.1, deadline=0.25) as client:
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        with pytest.raises(httpx.TimeoutException):
            await client.get("pay", "/")
        assert loop.time() - t0 < 1.0


def test_retry_after_parsing() -> None:
    """Retry-After is read as seconds or as an HTTP date."""
    assert retry_after_seconds("3") == 3.0
    assert retry_after_seconds("Wed, 21 Oct 2015 07:28:10 GMT", now_epoch=1445412480.0) == 10.0
    assert retry_after_seconds("soon") is None and retry_after_seconds(None) is None


async def test_tag_selects_instances() -> None:
    """tag= sends only to instances carrying the tag."""
    from roost.client.instance import Instance

    hosts: list[str] = []

    async def handler(req: httpx.Request) -> httpx.Response:
        hosts.append(req.url.host)
        return httpx.Response(200)

    strategy = StaticStrategy(
        {
            "pay": [
                Instance("pay", "a", "10.0.0.1", 80, tags=("v1",)),
                Instance("pay", "b", "10.0.0.2", 80, tags=("v2",)),
            ]
        }
    )
    async with ServiceClient(Discovery(strategy), inner=httpx.MockTransport(handler)) as client:
        for _ in range(4):
            await client.get("pay", "/", tag="v2")
    assert set(hosts) == {"10.0.0.2"}


async def test_retry_after_steers_p2c_away() -> None:
    """A fast 429 with Retry-After makes p2c-EWMA leave that instance alone while it lasts."""
    hits: Counter[str] = Counter()

    async def handler(req: httpx.Request) -> httpx.Response:
        hits[req.url.host] += 1
        if req.url.host == "10.0.0.1":
            return httpx.Response(429, headers={"retry-after": "60"})
        return httpx.Response(200)

    strategy = StaticStrategy({"pay": ["10.0.0.1:80", "10.0.0.2:80", "10.0.0.3:80"]})
    # default_latency=0: instances not yet measured look best, so each one is tried early on.
    discovery = Discovery(
        strategy,
        policy=lambda: PeakEwma(random.Random(3), default_latency=0.0),
        breaker=BreakerConfig(failure_threshold=1000),
    )
    async with ServiceClient(discovery, inner=httpx.MockTransport(handler)) as client:
        for _ in range(100):
            await client.get("pay", "/")
    assert hits["10.0.0.1"] == 1
