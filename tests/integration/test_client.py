"""roost.client against a real agent and three real HTTP backends."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Callable, Iterator

import httpx
import pytest

from roost.client import (
    AgentRegistration,
    BreakerConfig,
    BreakerState,
    ChangeKind,
    ConsulStrategy,
    Discovery,
    ServiceClient,
    SyncDiscovery,
    SyncServiceClient,
)
from tests.integration.gateway_procs import BackendProcess
from tests.integration.procs import AgentProcess, free_port

StartAgent = Callable[..., AgentProcess]


def register(agent: AgentProcess, name: str, sid: str, port: int, **extra: object) -> None:
    body = {"Name": name, "ID": sid, "Address": "127.0.0.1", "Port": port, **extra}
    resp = httpx.put(agent.url + "/v1/agent/service/register", json=body, timeout=10)
    assert resp.status_code == 200, resp.text


@pytest.fixture(scope="module")
def backends() -> Iterator[list[BackendProcess]]:
    """Three real HTTP backends (b0, b1, b2) on free loopback ports, shared by this module's tests
    (a test that kills one starts it again)."""
    procs = [BackendProcess(f"b{i}") for i in range(3)]
    for p in procs:
        p.start()
    yield procs
    for p in procs:
        p.stop()


@pytest.fixture
def registered(agent: AgentProcess, backends: list[BackendProcess]) -> AgentProcess:
    for i, b in enumerate(backends):
        register(agent, "pay", f"pay-{i}", b.port, Weights={"Passing": i + 1, "Warning": 1})
    return agent


async def test_round_robin_spreads_requests_evenly(registered: AgentProcess) -> None:
    """With round robin, 30 requests through the agent's catalog reach each backend 10 times."""
    async with Discovery(ConsulStrategy(registered.url), policy="round_robin") as d, ServiceClient(d) as c:
        seen = Counter([(await c.get("pay", "/id")).json()["backend"] for _ in range(30)])
    assert seen == {"b0": 10, "b1": 10, "b2": 10}


async def test_weighted_follows_consul_weights(registered: AgentProcess) -> None:
    """The weighted policy follows Weights.Passing 1:2:3 from the catalog."""
    async with Discovery(ConsulStrategy(registered.url), policy="weighted") as d:
        counts = Counter([(await d.pick("pay")).id for _ in range(6000)])
    assert 0.8 < counts["pay-1"] / (2 * counts["pay-0"]) < 1.25
    assert 0.8 < counts["pay-2"] / (3 * counts["pay-0"]) < 1.25


async def test_breaker_opens_on_a_dead_backend_and_half_open_probes_close_it(
    registered: AgentProcess, backends: list[BackendProcess]
) -> None:
    """Kill a backend: at most failure_threshold requests fail before traffic moves away;
    restart it: after the open timeout a half-open probe closes the breaker and traffic returns."""
    config = BreakerConfig(failure_threshold=3, open_timeout=1.0)
    discovery = Discovery(ConsulStrategy(registered.url), policy="round_robin", breaker=config)
    async with discovery, ServiceClient(discovery, retries=0) as client:
        await client.get("pay", "/id")
        dead = backends[1]
        dead.kill()
        failures = 0
        for _ in range(60):
            try:
                resp = await client.get("pay", "/id")
                assert resp.json()["backend"] != "b1"
            except httpx.TransportError:
                failures += 1
        assert failures == 3
        breaker = discovery.breakers["pay/pay-1"]
        assert breaker.state is BreakerState.OPEN
        dead.start()
        await asyncio.sleep(config.open_timeout + 0.1)
        seen = Counter([(await client.get("pay", "/id")).json()["backend"] for _ in range(30)])
        assert breaker.state is BreakerState.CLOSED
        assert seen["b1"] >= 8


async def test_registration_reaches_the_cache_through_the_watch(registered: AgentProcess) -> None:
    """A new registration and a deregistration reach a warm cache within a second, as watch() events."""
    async with Discovery(ConsulStrategy(registered.url)) as d:
        assert len(await d.discover("pay")) == 3
        events = aiter(d.watch("pay"))
        for _ in range(3):
            await anext(events)  # the current instances
        t0 = time.monotonic()
        register(registered, "pay", "pay-new", 1, Tags=["canary"])
        change = await asyncio.wait_for(anext(events), 5)
        assert (change.kind, change.instance.id) == (ChangeKind.ADDED, "pay-new")
        assert time.monotonic() - t0 < 1.0
        assert [i.id for i in await d.discover("pay", tag="canary")] == ["pay-new"]
        url = registered.url + "/v1/agent/service/deregister/pay-new"
        await asyncio.to_thread(httpx.put, url, timeout=5)
        change = await asyncio.wait_for(anext(events), 5)
        assert (change.kind, change.instance.id) == (ChangeKind.REMOVED, "pay-new")
        await events.aclose()  # type: ignore[attr-defined]


async def test_cache_survives_a_registry_outage_and_catches_up(
    start_agent: StartAgent, caplog: pytest.LogCaptureFixture
) -> None:
    """With the agent down, discover() keeps answering from cache (with a warning); after the agent
    restarts, the cache catches up with registrations made since."""
    agent = start_agent("--http-addr", f"127.0.0.1:{free_port()}")
    register(agent, "pay", "pay-a", 9001)
    discovery = Discovery(ConsulStrategy(agent.url, wait=5), max_stale=60, backoff_base=0.05, backoff_cap=0.3)
    async with discovery:
        assert [i.id for i in await discovery.discover("pay")] == ["pay-a"]
        agent.kill()
        with caplog.at_level(logging.WARNING, logger="roost.client"):
            for _ in range(20):
                await asyncio.sleep(0.05)
                assert [i.id for i in await discovery.discover("pay")] == ["pay-a"]
        assert "serving 1 cached instances" in caplog.text
        agent.start()
        register(agent, "pay", "pay-b", 9002)
        deadline = time.monotonic() + 10
        while {i.id for i in await discovery.discover("pay")} != {"pay-a", "pay-b"}:
            assert time.monotonic() < deadline, "the cache did not catch up"
            await asyncio.sleep(0.05)


async def test_agent_registration_keeps_ttl_alive_and_deregisters(agent: AgentProcess) -> None:
    """AgentRegistration stays passing past its TTL through heartbeats and is gone after exit."""
    async with Discovery(ConsulStrategy(agent.url)) as d:
        me = AgentRegistration("me", 7000, address="127.0.0.1", agent=agent.url, ttl=1.0, service_id="me-1")
        async with me:
            await asyncio.sleep(1.6)  # longer than the TTL: only heartbeats keep it passing
            assert [i.id for i in await d.discover("me")] == ["me-1"]
        deadline = time.monotonic() + 5
        while await d.discover("me"):
            assert time.monotonic() < deadline, "the deregistration did not reach the cache"
            await asyncio.sleep(0.02)


def test_sync_client_without_an_event_loop(registered: AgentProcess) -> None:
    """SyncDiscovery and SyncServiceClient work from plain code and spread requests by policy."""
    with SyncDiscovery(ConsulStrategy(registered.url), policy="round_robin") as d:
        assert len(d.discover("pay")) == 3
        with SyncServiceClient(d) as client:
            seen = Counter(client.get("pay", "/id").json()["backend"] for _ in range(9))
    assert seen == {"b0": 3, "b1": 3, "b2": 3}


async def test_retries_hide_a_dead_backend_from_callers(
    registered: AgentProcess, backends: list[BackendProcess]
) -> None:
    """With retries on, GETs through the service URL all succeed while one backend is dead."""
    async with Discovery(ConsulStrategy(registered.url)) as d, ServiceClient(d, retries=2) as client:
        await client.get("pay", "/id")
        backends[0].kill()
        try:
            for _ in range(30):
                resp = await client.http.get("http://pay.service.roost/id")
                assert resp.status_code == 200 and resp.json()["backend"] != "b0"
        finally:
            backends[0].start()
