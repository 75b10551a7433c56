"""What the benchmarks share: seeding an agent, wrk runs, blocking-query fan-out, percentiles."""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
import time
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

import httpx

T = TypeVar("T")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.integration.procs import AgentProcess  # noqa: E402


def seed(agent: AgentProcess, count: int = 20) -> None:
    with httpx.Client(base_url=agent.url, timeout=10) as http:
        for i in range(count):
            http.put(
                "/v1/agent/service/register",
                json={
                    "Name": "web",
                    "ID": f"web-{i}",
                    "Address": f"10.0.0.{i + 1}",
                    "Port": 8080,
                    "Tags": ["v1", "primary"],
                    "Meta": {"version": "1.2.3"},
                    "Check": {"CheckID": f"web-{i}-ttl", "TTL": "600s"},
                },
            ).raise_for_status()
            http.put(f"/v1/agent/check/pass/web-{i}-ttl").raise_for_status()
        assert len(http.get("/v1/health/service/web?passing").json()) == count


def wrk(url: str, duration: float, script: Path | None = None) -> tuple[float, float, float]:
    """requests/s, p50 ms, p99 ms."""
    lua = ["-s", str(script)] if script is not None else []
    out = subprocess.run(
        ["wrk", "-t2", "-c64", f"-d{duration:g}s", "--latency", *lua, url],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]

    def pct(p: str) -> float:
        value, unit = re.search(rf"\s{p}%\s+([\d.]+)(us|ms|s)", out).groups()  # type: ignore[union-attr]
        return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]

    return rps, pct("50"), pct("99")


REGISTER_LUA = """
counter = 0
request = function()
  counter = counter + 1
  local id = "%s-" .. math.random(1, 1000000000) .. "-" .. counter
  local body = '{"Name":"%s-' .. (counter %% 50) .. '","ID":"' .. id .. '","Port":8080,"Address":"10.1.0.1"}'
  return wrk.format("PUT", "/v1/agent/service/register", {["Content-Type"]="application/json"}, body)
end
"""


PUT_LUA = """
counter = 0
request = function()
  counter = counter + 1
  -- 16 decimal digits are valid base64 (12 bytes, all above "/", so outside roost's keys)
  local key = string.format("%016d", math.random(1, 100000000) * 10000000 + counter)
  local body = '{"key":"' .. key .. '","value":"eyJob3N0IjoiMTAuMS4wLjEiLCJwb3J0Ijo4MDgwfQ=="}'
  return wrk.format("POST", "/v3/kv/put", {["Content-Type"]="application/json"}, body)
end
"""


def wrk_register(url: str, duration: float, prefix: str, script_dir: Path) -> float:
    """Registrations per second (unique IDs, 50 service names) with 32 connections."""
    script = script_dir / f"register-{prefix}.lua"
    raw = url.endswith("/v3")  # the peer: plain puts straight into etcd
    script.write_text(PUT_LUA if raw else REGISTER_LUA % (prefix, prefix))
    url = url.removesuffix("/v3")
    out = subprocess.run(
        ["wrk", "-t2", "-c32", f"-d{duration:g}s", "-s", str(script), url],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    if m := re.search(r"Non-2xx or 3xx responses: (\d+)", out):
        print(f"  ({m.group(1)} registrations refused)")
    return float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]


async def blocking_get(host: str, port: int, path: str) -> float:
    reader, writer = await asyncio.open_connection(host, port)
    try:
        writer.write(f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
        await writer.drain()
        await reader.read()  # the whole answer, up to the server closing
        return time.perf_counter()
    finally:
        writer.close()


async def propagation(
    pairs: list[tuple[str, AgentProcess, AgentProcess]], watchers: int, rounds: int
) -> dict[str, tuple[list[float], list[float]]]:
    """For each (label, writer, watched): lags from a PUT on `writer` to each of `watchers` blocking
    queries on `watched` answering, all rounds; and the first watcher's lag of each round."""
    out: dict[str, tuple[list[float], list[float]]] = {label: ([], []) for label, _, _ in pairs}
    async with httpx.AsyncClient(timeout=30) as http:
        for _, writer, _ in pairs:
            await http.put(writer.url + "/v1/agent/service/register", json={"Name": "lag", "ID": "lag-1"})
        await asyncio.sleep(0.2)
        for round_ in range(rounds):
            for label, writer, watched in pairs:  # interleaved: S S', A B, S S', A B, ...
                host, _, port = watched.http_addr.rpartition(":")
                index = (await http.get(watched.url + "/v1/health/service/lag")).headers["x-consul-index"]
                path = f"/v1/health/service/lag?index={index}&wait=60s"
                tasks = [asyncio.create_task(blocking_get(host, int(port), path)) for _ in range(watchers)]
                await asyncio.sleep(1.0 + watchers / 1000)  # every watcher parked
                assert not any(t.done() for t in tasks)
                sent = time.perf_counter()
                await http.put(
                    writer.url + "/v1/agent/service/register",
                    json={"Name": "lag", "ID": "lag-1", "Port": 2 + round_},
                )
                done = await asyncio.wait_for(asyncio.gather(*tasks), 60)
                lags = sorted(t - sent for t in done)
                out[label][0].extend(lags)
                out[label][1].append(lags[0])
    return out


def run(coro: Coroutine[Any, Any, T]) -> T:
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    return uvloop.run(coro)


def pctl(values: list[float], p: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(p / 100 * len(values)))]
