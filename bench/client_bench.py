"""Client-library benchmark: warm pick() rate, change propagation to 100 watching caches, and tail
latency of p2c-EWMA against round robin with one slow backend.

    python bench/client_bench.py                 # everything, about a minute
    python bench/client_bench.py --only pick     # or: propagation, tail

1. **pick() warm**: calls per second of ``Discovery.pick()`` (async) and ``SyncDiscovery.pick()``
   over 3 cached instances, per policy. Peer: the function people write by hand,
   ``random.choice(consul.health.service(name, passing=True)[1])`` with py-consul against the same
   real agent, which asks the agent on every call. Rounds interleave the two; medians and ratio.
2. **Change propagation**: a real ``roost agent`` and 100 ``Discovery`` caches (each with its own
   ConsulStrategy, so 100 blocking queries) in one process. Each round registers (or deregisters) an
   instance and measures, per cache, the time from just before the PUT until the cache has the
   change: p50/p99 over all samples. Peer, side by side: a real etcd with 100 EtcdStrategy caches
   (prefix watches), measured the same way from just before the put.
3. **Tail latency**: three real HTTP backends (uvicorn), one answering ``--slow-ms`` late; a
   ServiceClient sends ``--requests`` GETs with 16 in flight, first with round robin then with
   p2c-EWMA (interleaved rounds). Reports p50/p99 of each and the p99 ratio.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from roost.client import (  # noqa: E402
    ConsulStrategy,
    Discovery,
    EtcdStrategy,
    ServiceClient,
    StaticStrategy,
    SyncDiscovery,
)

# -- processes ------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_http(url: str, timeout: float = 20.0, method: str = "GET") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            httpx.request(method, url, timeout=1)
            return
        except httpx.TransportError:
            time.sleep(0.05)
    raise RuntimeError(f"{url} did not come up")


class Procs:
    def __init__(self) -> None:
        self.procs: list[subprocess.Popen[bytes]] = []
        self.tmp = Path(tempfile.mkdtemp(prefix="roost-client-bench-"))

    def spawn(self, args: list[str]) -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT)
        self.procs.append(proc)
        return proc

    def agent(self) -> str:
        port = free_port()
        self.spawn(
            [sys.executable, "-m", "roost", "agent", "--data-dir", str(self.tmp / "agent"),
             "--http-addr", f"127.0.0.1:{port}", "--dns-addr", ""]
        )  # fmt: skip
        url = f"http://127.0.0.1:{port}"
        wait_http(url + "/v1/status/leader")
        return url

    def etcd(self) -> str:
        port, peer = free_port(), free_port()
        self.spawn(
            [shutil.which("etcd") or "etcd", "--data-dir", str(self.tmp / "etcd"),
             "--listen-client-urls", f"http://127.0.0.1:{port}",
             "--advertise-client-urls", f"http://127.0.0.1:{port}",
             "--listen-peer-urls", f"http://127.0.0.1:{peer}", "--log-level", "error"]
        )  # fmt: skip
        url = f"http://127.0.0.1:{port}"
        wait_http(url + "/v3/maintenance/status", method="POST")
        return url

    def backend(self, delay_ms: float) -> int:
        port = free_port()
        self.spawn([sys.executable, __file__, "--serve", str(port), str(delay_ms)])
        wait_http(f"http://127.0.0.1:{port}/")
        return port

    def close(self) -> None:
        for proc in self.procs:
            proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
        shutil.rmtree(self.tmp, ignore_errors=True)


def serve(port: int, delay_ms: float) -> None:
    """A backend: every request answers 200 after ``delay_ms``."""
    import uvicorn

    delay = delay_ms / 1000

    body = b"slow" if delay else b"fast"
    start = {"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]}

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        if delay:
            await asyncio.sleep(delay)
        await send(start)
        await send({"type": "http.response.body", "body": body})

    uvicorn.run(app, host="127.0.0.1", port=port, log_level="error", lifespan="off", http="httptools")


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(int(q * len(ordered)), len(ordered) - 1)]


# -- 1. pick() ------------------------------------------------------------------------------------


def bench_pick(procs: Procs, rounds: int) -> None:
    import consul  # py-consul

    url = procs.agent()
    for i in range(3):
        body = {"Name": "pay", "ID": f"pay-{i}", "Address": "127.0.0.1", "Port": 9000 + i}
        httpx.put(url + "/v1/agent/service/register", json=body, timeout=5)
    host, port = url.removeprefix("http://").split(":")
    peer = consul.Consul(host=host, port=int(port))

    def by_hand() -> object:
        return random.choice(peer.health.service("pay", passing=True)[1])

    results: dict[str, list[float]] = {}

    async def async_rate(policy: str, n: int) -> float:
        async with Discovery(ConsulStrategy(url), policy=policy) as d:
            await d.pick("pay")
            t0 = time.perf_counter()
            for _ in range(n):
                await d.pick("pay")
            return n / (time.perf_counter() - t0)

    sync = SyncDiscovery(ConsulStrategy(url), policy="p2c_ewma")
    sync.pick("pay")
    for _ in range(rounds):
        for policy in ("round_robin", "weighted", "p2c_ewma"):
            results.setdefault(f"async pick {policy}", []).append(run_loop(async_rate(policy, 100_000)))
        t0 = time.perf_counter()
        for _ in range(100_000):
            sync.pick("pay")
        results.setdefault("sync pick p2c_ewma", []).append(100_000 / (time.perf_counter() - t0))
        t0 = time.perf_counter()
        for _ in range(500):
            by_hand()
        results.setdefault("peer: random.choice(health.service()) per call", []).append(
            500 / (time.perf_counter() - t0)
        )
    sync.close()
    peer_median = statistics.median(results["peer: random.choice(health.service()) per call"])
    print(f"\n## pick() warm, calls/s, median of {rounds} rounds [min-max]")
    for name, values in results.items():
        ratio = statistics.median(values) / peer_median
        spread = f"[{min(values):,.0f}-{max(values):,.0f}]"
        print(f"{name:52s} {statistics.median(values):>12,.0f} {spread}  x{ratio:,.0f}")


# -- 2. propagation ---------------------------------------------------------------------------------


async def propagation(
    make: Callable[[], Discovery], write: Callable[[int, bool], None], clients: int, rounds: int
) -> list[float]:
    discoveries = [make() for _ in range(clients)]
    samples: list[float] = []
    try:
        await asyncio.gather(*(d.discover("prop") for d in discoveries))
        loop = asyncio.get_running_loop()
        for r in range(rounds):
            want = r % 2 == 0  # add, then remove
            versions = [d.version("prop") for d in discoveries]

            async def seen(d: Discovery, v: int, t0: float, want: bool) -> None:
                await d.wait_for_change("prop", v, timeout=10)
                assert any(i.id == "x" for i in d.cached("prop") or []) == want
                samples.append(time.perf_counter() - t0)

            t0 = time.perf_counter()
            waiters = [
                loop.create_task(seen(d, v, t0, want)) for d, v in zip(discoveries, versions, strict=True)
            ]
            await asyncio.sleep(0)
            await loop.run_in_executor(None, write, r, want)
            await asyncio.gather(*waiters)
            await asyncio.sleep(0.05)
    finally:
        await asyncio.gather(*(d.aclose() for d in discoveries))
    return samples


def bench_propagation(procs: Procs, clients: int, rounds: int) -> None:
    agent = procs.agent()
    etcd = procs.etcd()
    http = httpx.Client(timeout=10)

    def agent_write(r: int, add: bool) -> None:
        if add:
            body = {"Name": "prop", "ID": "x", "Address": "127.0.0.1", "Port": 9999}
            http.put(agent + "/v1/agent/service/register", json=body).raise_for_status()
        else:
            http.put(agent + "/v1/agent/service/deregister/x").raise_for_status()

    def etcd_write(r: int, add: bool) -> None:
        import base64

        key = base64.b64encode(b"/services/prop/x").decode()
        if add:
            value = base64.b64encode(json.dumps({"host": "127.0.0.1", "port": 9999}).encode()).decode()
            http.post(etcd + "/v3/kv/put", json={"key": key, "value": value}).raise_for_status()
        else:
            http.post(etcd + "/v3/kv/deleterange", json={"key": key}).raise_for_status()

    body = {"Name": "prop", "ID": "base", "Address": "127.0.0.1", "Port": 9998}
    http.put(agent + "/v1/agent/service/register", json=body).raise_for_status()
    for count in sorted({1, clients}):
        results: dict[str, list[float]] = {
            "roost agent (blocking queries)": [],
            "etcd 3.4 (prefix watch)": [],
        }
        per_run = rounds if count > 1 else rounds * 5  # one watcher: more changes for a p99
        for _ in range(3):  # interleave
            results["roost agent (blocking queries)"] += run_loop(
                propagation(lambda: Discovery(ConsulStrategy(agent)), agent_write, count, per_run)
            )
            results["etcd 3.4 (prefix watch)"] += run_loop(
                propagation(lambda: Discovery(EtcdStrategy(etcd)), etcd_write, count, per_run)
            )
        changes = 3 * per_run
        title = f"change propagation to {count} watching cache{'s' if count > 1 else ''}"
        print(f"\n## {title} ({changes} changes, {changes * count} samples)")
        for name, values in results.items():
            ms = [v * 1000 for v in values]
            print(
                f"{name:36s} p50 {pct(ms, 0.5):6.1f} ms   p99 {pct(ms, 0.99):6.1f} ms   max {max(ms):6.1f} ms"
            )
        a, e = results.values()
        print(
            f"ratio roost/etcd: p50 x{pct(a, 0.5) / pct(e, 0.5):.2f}, p99 x{pct(a, 0.99) / pct(e, 0.99):.2f}"
        )


# -- 3. tail latency ------------------------------------------------------------------------------


async def tail_run(
    ports: list[int], policy: str, requests: int, concurrency: int
) -> tuple[list[float], float]:
    """Latencies of ``requests`` GETs, ``concurrency`` in flight, and the share sent to the slow backend."""
    strategy = StaticStrategy({"pay": [f"127.0.0.1:{p}" for p in ports]})
    latencies: list[float] = []
    slow = 0
    async with Discovery(strategy, policy=policy) as d, ServiceClient(d, retries=0) as client:
        for _ in range(30):  # warm connections and the latency estimates
            await client.get("pay", "/")
        left = requests

        async def worker() -> None:
            nonlocal left, slow
            while left > 0:
                left -= 1
                t0 = time.perf_counter()
                resp = await client.get("pay", "/")
                latencies.append(time.perf_counter() - t0)
                assert resp.status_code == 200
                slow += resp.text == "slow"

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return latencies, slow / len(latencies)


def bench_tail(procs: Procs, slow_ms: float, requests: int, rounds: int, concurrency: int) -> None:
    ports = [procs.backend(0), procs.backend(0), procs.backend(slow_ms)]
    policies = ("round_robin", "p2c_ewma")
    pooled: dict[str, list[float]] = {p: [] for p in policies}
    p99s: dict[str, list[float]] = {p: [] for p in policies}
    shares: dict[str, list[float]] = {p: [] for p in policies}
    for _ in range(rounds):
        for policy in policies:
            lat, share = run_loop(tail_run(ports, policy, requests, concurrency))
            pooled[policy] += lat
            p99s[policy].append(pct(lat, 0.99) * 1000)
            shares[policy].append(share)
    print(
        f"\n## tail latency: 3 backends, one {slow_ms:g} ms slower; {rounds} interleaved rounds of "
        f"{requests} GETs, {concurrency} in flight"
    )
    for policy in policies:
        ms = [v * 1000 for v in pooled[policy]]
        per_round = ", ".join(f"{v:.0f}" for v in p99s[policy])
        print(
            f"{policy:12s} p50 {pct(ms, 0.5):6.1f} ms  p99 {pct(ms, 0.99):6.1f} ms  "
            f"median round p99 {statistics.median(p99s[policy]):6.1f} ms  "
            f"to slow {100 * statistics.median(shares[policy]):4.1f}%  (round p99s: {per_round})"
        )
    rr, p2c = statistics.median(p99s["round_robin"]), statistics.median(p99s["p2c_ewma"])
    print(f"median round p99, round_robin / p2c_ewma = x{rr / p2c:.1f}")


def run_loop(coro: Any) -> Any:
    """asyncio.run on uvloop when it is installed (as a service would run)."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    return uvloop.run(coro)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--only", choices=["pick", "propagation", "tail"])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--clients", type=int, default=100)
    parser.add_argument("--changes", type=int, default=10, help="changes per propagation round")
    parser.add_argument("--slow-ms", type=float, default=100.0)
    parser.add_argument("--requests", type=int, default=1000, help="GETs per tail-latency round")
    parser.add_argument("--concurrency", type=int, default=4, help="requests in flight (tail latency)")
    parser.add_argument("--serve", nargs=2, metavar=("PORT", "DELAY_MS"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(int(args.serve[0]), float(args.serve[1]))
        return
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} cpus")
    procs = Procs()
    try:
        if args.only in (None, "pick"):
            bench_pick(procs, args.rounds)
        if args.only in (None, "propagation"):
            bench_propagation(procs, args.clients, args.changes)
        if args.only in (None, "tail"):
            bench_tail(procs, args.slow_ms, args.requests, max(args.rounds, 5), args.concurrency)
    finally:
        procs.close()


if __name__ == "__main__":
    main()
