"""Blocking queries wake watchers of the changed service, fast, and only them."""

from __future__ import annotations

import asyncio
import time

import httpx
import orjson

from tests.integration import rawhttp
from tests.integration.procs import AgentProcess


async def test_watcher_wakes_fast_on_relevant_change_only(agent: AgentProcess) -> None:
    """A watcher of service A wakes within 50 ms of a change to A; a change to B does not wake it."""
    async with httpx.AsyncClient(base_url=agent.url, timeout=30) as http:
        await http.put("/v1/agent/service/register", json={"Name": "a", "ID": "a1", "Port": 1})
        await http.put("/v1/agent/service/register", json={"Name": "b", "ID": "b1", "Port": 1})
        index = (await http.get("/v1/health/service/a")).headers["x-consul-index"]

        async def watch() -> tuple[float, httpx.Response]:
            r = await http.get("/v1/health/service/a", params={"index": index, "wait": "10s"})
            return time.monotonic(), r

        lags = []
        for round_ in range(5):
            task = asyncio.create_task(watch())
            await asyncio.sleep(0.2)
            await http.put("/v1/agent/service/register", json={"Name": "b", "ID": "b1", "Port": 2 + round_})
            await asyncio.sleep(0.3)
            assert not task.done(), "a change to service b woke a watcher of service a"
            sent = time.monotonic()
            await http.put("/v1/agent/service/register", json={"Name": "a", "ID": "a1", "Port": 2 + round_})
            done, r = await task
            lags.append(done - sent)
            assert int(r.headers["x-consul-index"]) > int(index)
            assert r.json()[0]["Service"]["Port"] == 2 + round_
            index = r.headers["x-consul-index"]
        lags.sort()
        # The registration round trip itself (an fsync) is included in the lag measured here.
        assert lags[len(lags) // 2] < 0.05, lags


async def test_many_identical_watchers_all_wake(agent: AgentProcess) -> None:
    """2,000 concurrent blocking queries on one service all return the new state after one change."""
    host, _, port = agent.http_addr.rpartition(":")
    async with httpx.AsyncClient(base_url=agent.url, timeout=60) as http:
        await http.put("/v1/agent/service/register", json={"Name": "hot", "ID": "h1", "Port": 1})
        index = (await http.get("/v1/health/service/hot")).headers["x-consul-index"]
        path = f"/v1/health/service/hot?index={index}&wait=30s"
        tasks = [asyncio.create_task(rawhttp.request(host, int(port), "GET", path)) for _ in range(2000)]
        await asyncio.sleep(3)
        assert not any(t.done() for t in tasks)
        await http.put("/v1/agent/service/register", json={"Name": "hot", "ID": "h2", "Port": 2})
        results = await asyncio.wait_for(asyncio.gather(*tasks), 30)
    assert all(status == 200 and len(orjson.loads(body)) == 2 for status, _, body in results)
    assert len({headers["x-consul-index"] for _, headers, _ in results}) == 1


def test_wait_is_capped_and_parsed(agent: AgentProcess) -> None:
    """wait accepts Go durations and bare seconds; an index ahead of the agent waits out `wait`."""
    r = httpx.get(agent.url + "/v1/catalog/services", params={"index": "999999", "wait": "500ms"}, timeout=10)
    assert r.status_code == 200
    start = time.monotonic()
    httpx.get(agent.url + "/v1/catalog/services", params={"index": "999999", "wait": "1"}, timeout=10)
    assert 0.9 < time.monotonic() - start < 3
