"""etcd-store benchmark: roost agents over a real etcd next to an agent on the embedded SQLite store.

    python bench/etcd_bench.py          # 5 rounds of 10 s reads, 3 of 5 s registrations, 1,000 watchers
    python bench/etcd_bench.py --rounds 3 --duration 5 --reg-duration 3 --watchers 500

It starts a one-member etcd on loopback (free ports, a temporary directory), two agents on it
(A and B) and one agent on SQLite (S), registers 20 instances of `web` on A and on S, and measures:

* reads: `GET /v1/health/service/web?passing` with `wrk -t2 -c64 --latency`, S and A interleaved
  in rounds (S A, S A, ...): requests/s and p50/p99 for each, the median of the rounds, and the
  ratio etcd/SQLite (reads are served from the local catalog, so the goal is no loss);
* registrations: PUT /v1/agent/service/register with unique IDs from `wrk -c32` (a Lua script),
  on A (through etcd) and on S (SQLite, fsync per group commit), interleaved: registrations/s;
* propagation: `--watchers` blocking queries on B's /v1/health/service/lag, then a registration of
  `lag` on A; the lag from sending the PUT to each watcher's answer, p50/p99 over every watcher of
  `--lag-rounds` rounds, and the first watcher's lag alone. The peer is the same fan-out on the
  SQLite agent alone (watchers and write on S), interleaved: what etcd adds is the difference.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

import httpx

T = TypeVar("T")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.integration.etcd_cluster import EtcdCluster  # noqa: E402
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


def wrk(url: str, duration: float) -> tuple[float, float, float]:
    """requests/s, p50 ms, p99 ms."""
    out = subprocess.run(
        ["wrk", "-t2", "-c64", f"-d{duration:g}s", "--latency", url],
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


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--reg-duration", type=float, default=5.0, help="seconds per registration round")
    parser.add_argument("--watchers", type=int, default=1000)
    parser.add_argument("--lag-rounds", type=int, default=5)
    args = parser.parse_args()
    for tool in ("etcd", "wrk"):
        if shutil.which(tool) is None:
            sys.exit(f"{tool} is not installed (Debian: etcd-server, wrk)")

    with tempfile.TemporaryDirectory(prefix="roost-etcd-bench-") as tmp:
        base = Path(tmp)
        cluster = EtcdCluster(base / "etcd").start()
        agents: list[AgentProcess] = []
        try:
            common = ("--dns-addr", "", "--log-level", "warning")
            s = AgentProcess(base / "s", *common, "--node", "s").start()
            a = AgentProcess(base / "a", *common, "--store", cluster.store, "--node", "a").start()
            b = AgentProcess(base / "b", *common, "--store", cluster.store, "--node", "b").start()
            agents += [s, a, b]
            seed(s)
            seed(a)
            print(f"etcd {cluster.endpoints}; sqlite agent {s.url}; etcd agents A {a.url}, B {b.url}")

            path = "/v1/health/service/web?passing"
            for agent in (s, a):  # warm-up
                wrk(agent.url + path, 2)
            reads: dict[str, list[tuple[float, float, float]]] = {"sqlite": [], "etcd": []}
            for round_ in range(args.rounds):
                for label, agent in (("sqlite", s), ("etcd", a)):
                    rps, p50, p99 = wrk(agent.url + path, args.duration)
                    reads[label].append((rps, p50, p99))
                    print(f"  reads {round_ + 1} {label:6}: {rps:9,.0f} req/s p50 {p50:.2f} p99 {p99:.2f} ms")
            med = {k: [statistics.median(r[i] for r in v) for i in range(3)] for k, v in reads.items()}
            summary = ", ".join(
                f"{k} {v[0]:,.0f} req/s (p50/p99 {v[1]:.2f}/{v[2]:.2f} ms)" for k, v in med.items()
            )
            ratio = med["etcd"][0] / med["sqlite"][0]
            paired = statistics.median(
                e[0] / q[0] for e, q in zip(reads["etcd"], reads["sqlite"], strict=True)
            )
            print(f"READS {path}: {summary}, ratio etcd/sqlite {ratio:.2f} (per round: {paired:.2f})")

            regs: dict[str, list[float]] = {"sqlite": [], "etcd": [], "raw etcd put": []}
            targets = (("sqlite", s.url), ("etcd", a.url), ("raw etcd put", cluster.members[0].url + "/v3"))
            for round_ in range(3):
                for label, url in targets:
                    rate = wrk_register(url, args.reg_duration, f"{label[:3]}{round_}", base)
                    regs[label].append(rate)
                    print(f"  registrations round {round_ + 1} {label:12}: {rate:7,.0f}/s")
            rs, re_, rp = (statistics.median(regs[k]) for k in ("sqlite", "etcd", "raw etcd put"))
            print(
                f"REGISTRATIONS (wrk -c32): sqlite {rs:,.0f}/s, etcd {re_:,.0f}/s, raw etcd put {rp:,.0f}/s; "
                f"etcd/sqlite {re_ / rs:.2f}, etcd/raw put {re_ / rp:.2f}"
            )

            pairs = [("sqlite, same agent", s, s), ("etcd, A -> B", a, b)]
            results = run(propagation(pairs, args.watchers, args.lag_rounds))
            print(f"PROPAGATION, {args.watchers} watchers x {args.lag_rounds} rounds, PUT sent -> answer:")
            for label, (lags, firsts) in results.items():
                print(
                    f"  {label:18}: p50 {pctl(lags, 50) * 1000:.1f} ms, p99 {pctl(lags, 99) * 1000:.1f} ms, "
                    f"max {max(lags) * 1000:.1f} ms; first watcher {statistics.median(firsts) * 1000:.1f} ms"
                )
        finally:
            for agent in agents:
                agent.stop()
            cluster.stop()


if __name__ == "__main__":
    main()
