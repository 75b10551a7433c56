"""roost.health.service in real FastAPI (uvicorn) and Flask (waitress) processes: endpoint shapes,
self-registration, and SIGTERM under load with zero failed requests."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator

import httpx
import pytest

from tests.integration.health_apps import spawn, stop
from tests.integration.procs import AgentProcess, free_port, wait_for

SCRIPTS = {"fastapi": "fastapi_service.py", "flask": "flask_service.py"}


@pytest.fixture
def service() -> Iterator[Callable[..., tuple[int, subprocess.Popen[str]]]]:
    """Start service processes registered with an agent; each is killed at the end of the test."""
    procs: list[subprocess.Popen[str]] = []

    def start(
        kind: str, agent: AgentProcess, instance: str, *flags: str
    ) -> tuple[int, subprocess.Popen[str]]:
        port = free_port()
        proc = spawn(SCRIPTS[kind], agent.url, instance, *flags, port=port)
        procs.append(proc)
        return port, proc

    yield start
    for proc in procs:
        stop(proc)


def passing_ports(agent: AgentProcess) -> list[int]:
    entries = httpx.get(agent.url + "/v1/health/service/shop?passing", timeout=2).json()
    return sorted(e["Service"]["Port"] for e in entries)


@pytest.mark.parametrize("kind", ["fastapi", "flask"])
def test_endpoint_shapes(kind: str, agent: AgentProcess, service: Callable[..., tuple[int, object]]) -> None:
    """live, ready and detailed answer the documented JSON; a failing dependency makes ready 503
    and keeps the instance out of the agent's passing list."""
    flag = "--slow-dependency" if kind == "fastapi" else "--broken-dependency"
    good, _ = service(kind, agent, f"{kind}-good")
    bad, _ = service(kind, agent, f"{kind}-bad", flag)
    base = f"http://127.0.0.1:{good}"
    live = httpx.get(base + "/health/live")
    assert (live.status_code, live.json()) == (200, {"status": "passing"})
    ready = httpx.get(base + "/health/ready")
    assert ready.status_code == 200
    body = ready.json()
    assert body["status"] == "passing" and body["draining"] is False
    assert body["checks"]["database"]["status"] == "passing"
    assert isinstance(body["checks"]["database"]["latency_ms"], float)
    detailed = httpx.get(base + "/health").json()
    assert set(detailed) == {"status", "service", "uptime_s", "draining", "inflight", "checks"}
    assert detailed["service"] == "shop" and detailed["uptime_s"] > 0

    failing = httpx.get(f"http://127.0.0.1:{bad}/health/ready")
    assert failing.status_code == 503
    checks = failing.json()["checks"]
    name = "cache" if kind == "fastapi" else "queue"
    assert checks[name]["status"] == "critical"
    assert ("timed out after 0.2s" if kind == "fastapi" else "queue unreachable") in checks[name]["error"]
    assert checks["database"]["status"] == "passing"
    assert httpx.get(f"http://127.0.0.1:{bad}/health").status_code == 503
    assert httpx.get(f"http://127.0.0.1:{bad}/health/live").status_code == 200

    wait_for(lambda: passing_ports(agent) == [good], timeout=5, what="only the good instance passing")
    ids = httpx.get(agent.url + "/v1/agent/services").json()
    assert {f"{kind}-good", f"{kind}-bad"} <= set(ids)


class Caller:
    """A client that rediscovers through the agent every 100 ms and sends a steady stream of requests."""

    def __init__(self, agent: AgentProcess) -> None:
        self.agent = agent
        self.ok: dict[int, int] = {}
        self.failures: list[str] = []
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self) -> None:
        client = httpx.Client(timeout=5)
        ports: list[int] = []
        refreshed = 0.0
        i = 0
        while not self.stopping.is_set():
            if time.monotonic() - refreshed > 0.1:
                ports = passing_ports(self.agent)
                refreshed = time.monotonic()
            if not ports:
                self.failures.append("no instance")
                time.sleep(0.01)
                continue
            port = ports[i % len(ports)]
            i += 1
            try:
                resp = client.get(f"http://127.0.0.1:{port}/work")
                if resp.status_code == 200:
                    self.ok[port] = self.ok.get(port, 0) + 1
                else:
                    self.failures.append(f"{port}: HTTP {resp.status_code}")
            except httpx.HTTPError as exc:
                self.failures.append(f"{port}: {type(exc).__name__} {exc}")
        client.close()


@pytest.mark.parametrize("kind", ["fastapi", "flask"])
def test_sigterm_under_load_loses_nothing(
    kind: str, agent: AgentProcess, service: Callable[..., tuple[int, subprocess.Popen[str]]]
) -> None:
    """SIGTERM to one of two instances during a steady stream of requests fails none of them: it
    deregisters, keeps serving through the drain, finishes in-flight work, then exits."""
    port_a, proc_a = service(kind, agent, f"{kind}-a")
    port_b, _ = service(kind, agent, f"{kind}-b")
    wait_for(lambda: passing_ports(agent) == sorted([port_a, port_b]), timeout=5, what="both passing")
    caller = Caller(agent)
    caller.thread.start()
    try:
        time.sleep(1.0)
        assert caller.ok.get(port_a, 0) > 0 and caller.ok.get(port_b, 0) > 0
        proc_a.send_signal(signal.SIGTERM)
        sent = time.monotonic()
        wait_for(lambda: passing_ports(agent) == [port_b], timeout=2, what="a deregistered at once")
        time.sleep(0.5)
        assert proc_a.poll() is None  # still draining
        proc_a.wait(timeout=15)
        assert time.monotonic() - sent >= 1.5  # the drain period
        served_by_a = caller.ok.get(port_a, 0)
        time.sleep(0.5)
    finally:
        caller.stopping.set()
        caller.thread.join(timeout=10)
    assert caller.failures == []
    assert caller.ok.get(port_a, 0) == served_by_a
    assert caller.ok.get(port_b, 0) > 20
    assert f"{kind}-a" not in httpx.get(agent.url + "/v1/agent/services").json()


async def test_ttl_self_registration_heartbeats_then_drains(agent: AgentProcess) -> None:
    """A TTL registration stays passing past several TTLs by heartbeating, and drain deregisters it."""
    from roost.health.service import Health, Lifecycle, Registration

    health = Health("beat")
    registration = Registration(
        "beat", free_port(), check="ttl", ttl=1.0, agent=agent.url, drain=0.2, grace=1
    )
    lifecycle = Lifecycle(health, registration)
    await lifecycle.start(handle_sigterm=False)
    async with httpx.AsyncClient(base_url=agent.url) as api:

        async def passing() -> list[object]:
            result: list[object] = (await api.get("/v1/health/service/beat?passing")).json()
            return result

        try:
            assert len(await passing()) == 1
            await asyncio.sleep(2.5)
            assert len(await passing()) == 1
            await lifecycle.drain()
            assert health.draining
            assert (await api.get("/v1/health/service/beat")).json() == []
        finally:
            await lifecycle.stop()
