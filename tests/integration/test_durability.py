"""A registration acknowledged with 200 is on disk: it survives kill -9 of the agent."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable
from pathlib import Path

import httpx
import orjson

from tests.integration import rawhttp
from tests.integration.procs import AgentProcess


async def test_acknowledged_registrations_survive_kill_9(
    start_agent: Callable[..., AgentProcess], tmp_path: Path
) -> None:
    """2,000 concurrent registrations, kill -9 midway, restart: every registration that got 200 is there."""
    data = tmp_path / "data"
    agent = start_agent(data_dir=data)
    host, _, port = agent.http_addr.rpartition(":")
    acked: set[str] = set()
    failed = 0

    async def register(n: int) -> None:
        nonlocal failed
        body = orjson.dumps({"Name": "load", "ID": f"load-{n}", "Address": "127.0.0.1", "Port": 1000 + n})
        try:
            status, _, _ = await rawhttp.request(host, int(port), "PUT", "/v1/agent/service/register", body)
        except (OSError, IndexError, ValueError):
            failed += 1
            return
        if status == 200:
            acked.add(f"load-{n}")

    async def killer() -> None:
        while len(acked) < 300:
            await asyncio.sleep(0.001)
        agent.kill(signal.SIGKILL)

    await asyncio.wait_for(asyncio.gather(killer(), *(register(n) for n in range(2000))), 120)
    assert 300 <= len(acked) < 2000 and failed > 0, (len(acked), failed)  # killed mid-way
    restarted = start_agent(data_dir=data)
    async with httpx.AsyncClient(base_url=restarted.url, timeout=10) as http:
        stored = set((await http.get("/v1/agent/services")).json())
        index = int((await http.get("/v1/catalog/services")).headers["x-consul-index"])
    missing = acked - stored
    assert not missing, f"{len(missing)} acknowledged registrations lost, e.g. {sorted(missing)[:5]}"
    assert index >= len(stored)


def test_state_survives_clean_restart(start_agent: Callable[..., AgentProcess], tmp_path: Path) -> None:
    """Services, checks and statuses come back after SIGTERM and restart; the index never goes back."""
    data = tmp_path / "data"
    agent = start_agent(data_dir=data)
    httpx.put(
        agent.url + "/v1/agent/service/register",
        json={"Name": "keep", "ID": "k1", "Port": 5, "Check": {"TTL": "1h"}},
    )
    httpx.put(agent.url + "/v1/agent/check/pass/service:k1")
    before = int(httpx.get(agent.url + "/v1/health/service/keep").headers["x-consul-index"])
    assert agent.stop() == 0
    again = start_agent(data_dir=data)
    r = httpx.get(again.url + "/v1/health/service/keep?passing")
    assert [e["Service"]["ID"] for e in r.json()] == ["k1"]
    assert int(r.headers["x-consul-index"]) >= before
