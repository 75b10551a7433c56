"""The service-side health core and its ASGI/WSGI adapters, driven in memory (no sockets)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
import orjson

from roost.health.service import Health, HealthMiddleware, HealthWSGI, Registration


async def ok() -> bool:
    return True


async def test_dependencies_run_concurrently_with_timeouts() -> None:
    """Dependency checks run at once, each under its own timeout; the slow one fails, the rest pass."""
    health = Health("svc")

    async def slow() -> None:
        await asyncio.sleep(0.3)

    async def hangs() -> None:
        await asyncio.sleep(10)

    health.add_dependency("a", slow, timeout=1)
    health.add_dependency("b", slow, timeout=1)
    health.add_dependency("c", hangs, timeout=0.2)
    start = time.monotonic()
    results = {r.name: r for r in await health.check_dependencies()}
    assert time.monotonic() - start < 0.55  # concurrent: not 0.3 + 0.3 + 0.2
    assert results["a"].ok and results["b"].ok
    assert not results["c"].ok and results["c"].error == "timed out after 0.2s"
    assert results["a"].latency_ms >= 250


async def test_failure_by_exception_or_false_and_sync_callables() -> None:
    """A check fails by raising or by returning False; plain callables are supported."""
    health = Health()

    def sync_ok() -> None:
        return None

    def sync_false() -> bool:
        return False

    async def boom() -> None:
        raise ConnectionError("refused")

    health.add_dependency("sync_ok", sync_ok)
    health.add_dependency("sync_false", sync_false)
    health.add_dependency("boom", boom)
    results = {r.name: r for r in await health.check_dependencies()}
    assert results["sync_ok"].ok
    assert not results["sync_false"].ok and results["sync_false"].error == "check returned False"
    assert results["boom"].error == "ConnectionError: refused"


async def test_ready_shape_and_draining() -> None:
    """ready is 200 with per-dependency results, and 503 once draining even if dependencies pass."""
    health = Health("svc")
    health.add_dependency("db", ok)
    code, body = await health.ready()
    assert code == 200
    assert body["status"] == "passing" and body["draining"] is False
    assert body["checks"]["db"]["status"] == "passing"  # type: ignore[index]
    health.begin_drain()
    code, body = await health.ready()
    assert (code, body["status"], body["draining"]) == (503, "critical", True)
    assert health.live() == (200, {"status": "passing"})


async def test_detailed_reports_uptime_with_injected_clock() -> None:
    """The detailed endpoint reports uptime from the injected clock and the in-flight count."""
    now = [100.0]
    health = Health("svc", clock=lambda: now[0])
    now[0] = 142.5
    health.request_started()
    code, body = await health.detailed()
    assert code == 200
    assert body["uptime_s"] == 42.5 and body["inflight"] == 1 and body["service"] == "svc"
    health.request_finished()
    assert await health.wait_idle(0.1)


def test_registration_body() -> None:
    """The registration carries an HTTP check on the readiness URL, or a TTL check."""
    reg = Registration("shop", 8000, agent="127.0.0.1:8500", interval=2, timeout=0.5, deregister_after=60)
    body = reg.body()
    assert body["ID"] == "shop-127.0.0.1-8000"
    assert body["Check"] == {
        "HTTP": "http://127.0.0.1:8000/health/ready",
        "Interval": "2000ms",
        "Timeout": "500ms",
        "CheckID": "service:shop-127.0.0.1-8000",
        "Name": "shop readiness",
        "DeregisterCriticalServiceAfter": "60000ms",
    }
    assert reg.agent_url == "http://127.0.0.1:8500"
    ttl = Registration("shop", 8000, check="ttl", ttl=9, deregister_after=None).body()
    assert ttl["Check"] == {
        "TTL": "9000ms",
        "CheckID": "service:shop-127.0.0.1-8000",
        "Name": "shop readiness",
    }


async def test_asgi_middleware_serves_endpoints_and_passes_through() -> None:
    """The ASGI middleware answers /health paths itself, forwards others, and asks clients to close
    connections while draining."""
    health = Health("svc")
    seen: list[int] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        seen.append(health.inflight)
        await send(
            {"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]}
        )
        await send({"type": "http.response.body", "body": b"hello"})

    transport = httpx.ASGITransport(app=HealthMiddleware(app, health))  # type: ignore[arg-type]
    async with httpx.AsyncClient(transport=transport, base_url="http://svc") as client:
        assert (await client.get("/health/live")).json() == {"status": "passing"}
        assert (await client.get("/hello")).text == "hello"
        assert seen == [1] and health.inflight == 0
        health.begin_drain()
        assert (await client.get("/health/ready")).status_code == 503
        assert (await client.get("/hello")).headers["connection"] == "close"


def test_wsgi_middleware() -> None:
    """The WSGI middleware answers /health paths and counts a request until its body is closed."""
    health = Health("svc")

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"hi"]

    wsgi = HealthWSGI(app, health)
    statuses: list[str] = []

    def start_response(status: str, headers: list[tuple[str, str]]) -> None:
        statuses.append(status)

    body = b"".join(wsgi({"PATH_INFO": "/health/ready", "REQUEST_METHOD": "GET"}, start_response))
    assert statuses[-1] == "200 OK" and orjson.loads(body)["status"] == "passing"
    result = wsgi({"PATH_INFO": "/x", "REQUEST_METHOD": "GET"}, start_response)
    assert health.inflight == 1
    assert list(result) == [b"hi"]
    result.close()  # type: ignore[attr-defined]
    assert health.inflight == 0
