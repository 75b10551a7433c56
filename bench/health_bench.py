"""Health-check benchmark: one agent running thousands of HTTP checks against a local backend.

    python bench/health_bench.py                      # 10,000 checks at a 10s interval
    python bench/health_bench.py --checks 2000 --interval 2 --window 20
    python bench/health_bench.py --clients-only       # just the probe-client comparison

It starts a backend (raw asyncio + httptools, one process) and a real `roost agent`, registers
`--checks` services each with an HTTP check, waits one interval for the schedule to settle, and
then over `--window` seconds measures:

* probes/s the backend answered, and the agent's CPU (user+system from /proc) per probe;
* the lag from a backend path flipping to 503 to the check showing critical in the agent's API
  (a blocking query on /v1/health/state/critical): one flip every `--flip-every` seconds, each on
  a different check, reported as p50/p99/max.

The probe client is compared side by side with the obvious alternative, a shared
httpx.AsyncClient: both send the same GETs to the same backend, interleaved rounds, and we report
requests per CPU-second of each and the ratio.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import aiohttp
import httpx

ROOT = Path(__file__).resolve().parent.parent

# -- the backend --------------------------------------------------------------------------------


def run_backend(port: int) -> None:
    """GET /c/<n> answers 200 (or 503 once flipped); PUT /flip/<n>?code=503 flips; GET /count."""
    import httptools
    import uvloop

    codes: dict[str, int] = {}
    served = [0]
    ok = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Type: text/plain\r\n\r\nok"
    bad = b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 4\r\nContent-Type: text/plain\r\n\r\ndown"

    class Proto(asyncio.Protocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            self.transport = transport
            self.parser = httptools.HttpRequestParser(self)
            self.url = b""

        def on_url(self, url: bytes) -> None:
            self.url += url

        def on_message_complete(self) -> None:
            url = self.url.decode()
            self.url = b""
            method = self.parser.get_method()
            if method == b"PUT" and url.startswith("/flip/"):
                name, _, query = url[len("/flip/") :].partition("?")
                codes[name] = int(query.partition("code=")[2] or 200)
                self.transport.write(ok)  # type: ignore[attr-defined]
            elif url == "/count":
                body = str(served[0]).encode()
                head = f"HTTP/1.1 200 OK\r\nContent-Length: {len(body)}\r\n\r\n".encode()
                self.transport.write(head + body)  # type: ignore[attr-defined]
            else:
                served[0] += 1
                name = url.rpartition("/")[2]
                self.transport.write(bad if codes.get(name, 200) != 200 else ok)  # type: ignore[attr-defined]

        def data_received(self, data: bytes) -> None:
            self.parser.feed_data(data)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(Proto, "127.0.0.1", port, backlog=4096)
        print("backend ready", flush=True)
        await server.serve_forever()

    uvloop.run(main())


# -- utilities ------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def start_agent(data_dir: str, store: str) -> tuple[subprocess.Popen[str], str]:
    args = [sys.executable, "-m", "roost", "agent", "--data-dir", data_dir, "--store", store]
    args += ["--http-addr", "127.0.0.1:0", "--dns-addr", "", "--log-level", "warning"]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert proc.stdout is not None
    for line in proc.stdout:
        if m := re.search(r"HTTP API on (http://\S+)", line):
            threading.Thread(target=proc.stdout.read, daemon=True).start()  # keep the pipe drained
            return proc, m.group(1)
    raise RuntimeError("agent did not start")


# -- the probe-client comparison ---------------------------------------------------------------


async def compare_clients(port: int, requests: int, rounds: int) -> dict[str, list[float]]:
    from roost.health.http11 import HttpPool

    url = f"http://127.0.0.1:{port}/c/x"
    pool = HttpPool()
    client = httpx.AsyncClient(limits=httpx.Limits(max_connections=256, max_keepalive_connections=256))
    sem = asyncio.Semaphore(32)

    async def lean() -> None:
        async with sem:
            await pool.request(url, timeout=5)

    async def via_httpx() -> None:
        async with sem:
            await client.get(url, timeout=5)

    session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=256))

    async def via_aiohttp() -> None:
        async with sem, session.get(url, timeout=aiohttp.ClientTimeout(total=5)) as resp:
            await resp.read()

    contenders = (
        ("roost http11", lean),
        ("httpx.AsyncClient", via_httpx),
        ("aiohttp.ClientSession", via_aiohttp),
    )
    results: dict[str, list[float]] = {name: [] for name, _ in contenders}
    for _ in range(rounds):
        for name, one in contenders:
            await asyncio.gather(*(one() for _ in range(200)))  # warm
            cpu = time.process_time()
            await asyncio.gather(*(one() for _ in range(requests)))
            results[name].append(requests / (time.process_time() - cpu))
    await client.aclose()
    await session.close()
    pool.close()
    return results


# -- the main benchmark ------------------------------------------------------------------------


async def register_all(url: str, backend: int, n: int, interval: float, timeout: float) -> float:
    start = time.monotonic()
    sem = asyncio.Semaphore(16)
    async with httpx.AsyncClient(base_url=url, timeout=60) as client:

        async def one(i: int) -> None:
            body = {
                "Name": f"b{i}",
                "ID": f"b{i}",
                "Port": backend,
                "Check": {
                    "HTTP": f"http://127.0.0.1:{backend}/c/{i}",
                    "Interval": f"{interval}s",
                    "Timeout": f"{timeout}s",
                },
            }
            async with sem:
                (await client.put("/v1/agent/service/register", json=body)).raise_for_status()

        await asyncio.gather(*(one(i) for i in range(n)))
    return time.monotonic() - start


async def measure(args: argparse.Namespace, url: str, agent_pid: int, backend: int) -> dict[str, float]:
    async with httpx.AsyncClient(base_url=url, timeout=120) as api, httpx.AsyncClient(timeout=10) as ctl:

        async def served() -> int:
            return int((await ctl.get(f"http://127.0.0.1:{backend}/count")).text)

        flips: dict[str, float] = {}
        seen: dict[str, float] = {}
        stop = asyncio.Event()

        async def watch() -> None:
            index = "0"
            while not stop.is_set():
                resp = await api.get("/v1/health/state/critical", params={"index": index, "wait": "5s"})
                now = time.monotonic()
                index = resp.headers.get("X-Consul-Index", index)
                for check in resp.json():
                    sid = check.get("ServiceID", "")
                    if sid in flips and sid not in seen:
                        seen[sid] = now

        watcher = asyncio.create_task(watch())
        await asyncio.sleep(0.5)
        count0, cpu0, t0 = await served(), cpu_seconds(agent_pid), time.monotonic()
        order = random.sample(range(args.checks), k=min(args.checks, int(args.window / args.flip_every)))
        for i in order:
            await ctl.put(f"http://127.0.0.1:{backend}/flip/{i}?code=503")
            flips[f"b{i}"] = time.monotonic()
            await asyncio.sleep(args.flip_every)
        count1, cpu1, t1 = await served(), cpu_seconds(agent_pid), time.monotonic()
        deadline = time.monotonic() + args.interval + args.timeout + 5
        while len(seen) < len(flips) and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
        stop.set()
        watcher.cancel()
        lags = [seen[s] - flips[s] for s in seen]
        elapsed = t1 - t0
        return {
            "probes_per_s": (count1 - count0) / elapsed,
            "agent_cpu": (cpu1 - cpu0) / elapsed,
            "cpu_us_per_probe": (cpu1 - cpu0) / max(1, count1 - count0) * 1e6,
            "flips": len(flips),
            "detected": len(seen),
            "lag_p50": pct(lags, 0.5) if lags else float("nan"),
            "lag_p99": pct(lags, 0.99) if lags else float("nan"),
            "lag_max": max(lags) if lags else float("nan"),
        }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--backend", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--checks", type=int, default=10_000)
    parser.add_argument("--interval", type=float, default=10.0)
    parser.add_argument("--timeout", type=float, default=2.0)
    parser.add_argument("--window", type=float, default=30.0, help="seconds of measurement")
    parser.add_argument("--flip-every", type=float, default=0.5)
    parser.add_argument("--store", default="memory", help="the agent's store (default memory)")
    parser.add_argument("--clients-only", action="store_true")
    parser.add_argument("--client-requests", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    if args.backend:
        run_backend(args.backend)
        return

    port = free_port()
    backend = subprocess.Popen(
        [sys.executable, __file__, "--backend", str(port)], stdout=subprocess.PIPE, text=True
    )
    assert backend.stdout is not None
    backend.stdout.readline()
    data_dir = tempfile.mkdtemp(prefix="roost-bench-")
    agent = None
    try:
        print("probe client, requests per CPU-second (32 concurrent, keep-alive), interleaved rounds:")
        clients = asyncio.run(compare_clients(port, args.client_requests, args.rounds))
        for name, values in clients.items():
            print(f"  {name:18} median {statistics.median(values):8.0f}  {[round(v) for v in values]}")
        ours = statistics.median(clients["roost http11"])
        for peer in ("httpx.AsyncClient", "aiohttp.ClientSession"):
            print(f"  ratio roost/{peer}: {ours / statistics.median(clients[peer]):.1f}x")
        if args.clients_only:
            return
        agent, url = start_agent(data_dir, args.store)
        took = asyncio.run(register_all(url, port, args.checks, args.interval, args.timeout))
        print(f"registered {args.checks} HTTP checks (interval {args.interval:g}s) in {took:.1f}s")
        time.sleep(args.interval + 1)  # every check past its first interval: steady state
        result = asyncio.run(measure(args, url, agent.pid, port))
        goal = args.interval + args.timeout + 1
        print(
            f"probes/s {result['probes_per_s']:.0f} (expected {args.checks / args.interval:.0f}), "
            f"agent CPU {result['agent_cpu'] * 100:.0f}% of a core, "
            f"{result['cpu_us_per_probe']:.0f} us CPU per probe"
        )
        print(
            f"flip->critical lag over {result['detected']:.0f}/{result['flips']:.0f} flips: "
            f"p50 {result['lag_p50']:.2f}s p99 {result['lag_p99']:.2f}s max {result['lag_max']:.2f}s "
            f"(goal p99 < {goal:g}s)"
        )
    finally:
        if agent is not None:
            agent.terminate()
            agent.wait(timeout=30)
        backend.terminate()
        backend.wait(timeout=10)
        shutil.rmtree(data_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
