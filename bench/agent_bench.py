"""Agent benchmark: the embedded (SQLite) agent next to etcd serving the same data, same run.

    python bench/agent_bench.py                     # about 4 minutes
    python bench/agent_bench.py --rounds 3 --duration 5 --watchers 2000

It starts one etcd member and one `roost agent` (SQLite, the default store) on loopback, registers
20 passing instances of `web` in roost and writes the same 20 health entries (the exact JSON roost
answers for each) under /services/web/ in etcd, then measures, interleaved in rounds (roost etcd,
roost etcd, ...) after a warm-up:

* reads: `GET /v1/health/service/web?passing` against etcd's `POST /v3/kv/range` of the prefix on
  its JSON gateway, both `wrk -t2 -c64 --latency`: requests/s, p50/p99;
* durable writes: `PUT /v1/agent/service/register` (unique IDs, 50 names, `wrk -c32` with a Lua
  script) against a plain etcd `POST /v3/kv/put` of a small value: writes/s. Both fsync before
  they answer;
* watchers: `--watchers` blocking queries on `/v1/health/service/watched?index=N&wait=5m`, opened
  in batches; the agent's resident memory before and after they are parked (per-watcher cost),
  then one registration of `watched`: the lag from sending it to each watcher's answer, p50/p99,
  and a change to another service first, to check that it wakes none of them.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
import resource
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx
import orjson

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from common import pctl, run, seed, wrk, wrk_register  # noqa: E402
from tests.integration.etcd_cluster import EtcdCluster  # noqa: E402
from tests.integration.procs import AgentProcess  # noqa: E402

RANGE_LUA = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"key":"%s","range_end":"%s"}'
"""


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def seed_etcd(etcd_url: str, entries: list[dict[str, object]]) -> int:
    """The same health entries under /services/web/<id>; returns the bytes a range answer carries."""
    with httpx.Client(base_url=etcd_url, timeout=10) as http:
        for entry in entries:
            key = "/services/web/" + str(entry["Service"]["ID"])  # type: ignore[index]
            value = base64.b64encode(orjson.dumps(entry)).decode()
            http.post("/v3/kv/put", json={"key": b64(key), "value": value}).raise_for_status()
        got = http.post(
            "/v3/kv/range", json={"key": b64("/services/web/"), "range_end": b64("/services/web0")}
        )
        got.raise_for_status()
        assert int(got.json()["count"]) == len(entries)
        return len(got.content)


def wrk_range(etcd_url: str, duration: float, script_dir: Path) -> tuple[float, float, float]:
    script = script_dir / "range.lua"
    script.write_text(RANGE_LUA % (b64("/services/web/"), b64("/services/web0")))
    return wrk(etcd_url + "/v3/kv/range", duration, script)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time the process has used."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


async def open_watcher(host: str, port: int, path: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
    await writer.drain()
    return reader, writer


async def answered(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> float:
    try:
        await reader.read()  # the whole answer, up to the server closing
        return time.perf_counter()
    finally:
        writer.close()


async def watchers_round(agent: AgentProcess, count: int, round_: int) -> dict[str, float]:
    host, _, port_text = agent.http_addr.rpartition(":")
    port = int(port_text)
    assert agent.proc is not None
    async with httpx.AsyncClient(base_url=agent.url, timeout=30) as http:
        got = await http.get("/v1/health/service/watched")
        path = f"/v1/health/service/watched?index={got.headers['x-consul-index']}&wait=5m"
        await asyncio.sleep(0.5)
        before = rss_kib(agent.proc.pid)
        conns = []
        for start in range(0, count, 500):  # in batches, so the listen backlog never overflows
            conns += await asyncio.gather(
                *(open_watcher(host, port, path) for _ in range(start, min(count, start + 500)))
            )
        tasks = [asyncio.create_task(answered(r, w)) for r, w in conns]
        await asyncio.sleep(2.0)  # every request read and parked
        after = rss_kib(agent.proc.pid)
        await http.put(  # another service changes: no watcher of `watched` may wake
            "/v1/agent/service/register", json={"Name": "other", "ID": f"other-{round_}", "Port": 1}
        )
        await asyncio.sleep(1.0)
        woken = sum(t.done() for t in tasks)
        cpu_before = cpu_seconds(agent.proc.pid)
        sent = time.perf_counter()
        await http.put(
            "/v1/agent/service/register",
            json={"Name": "watched", "ID": "watched-1", "Port": 1000 + round_},
        )
        done = await asyncio.wait_for(asyncio.gather(*tasks), 120)
        agent_cpu = cpu_seconds(agent.proc.pid) - cpu_before
    lags = sorted(t - sent for t in done)
    return {
        "kib_per_watcher": (after - before) / count,
        "rss_mib": after / 1024,
        "p50_ms": pctl(lags, 50) * 1000,
        "p99_ms": pctl(lags, 99) * 1000,
        "max_ms": lags[-1] * 1000,
        "agent_cpu_ms": agent_cpu * 1000,
        "woken_by_other": woken,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per read round")
    parser.add_argument("--reg-duration", type=float, default=5.0, help="seconds per write round")
    parser.add_argument("--watchers", type=int, default=10_000)
    parser.add_argument("--watch-rounds", type=int, default=3)
    args = parser.parse_args()
    for tool in ("etcd", "wrk"):
        if shutil.which(tool) is None:
            sys.exit(f"{tool} is not installed (Debian: etcd-server, wrk)")
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    need = args.watchers + 1024
    if soft < need:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(need, soft)), hard))

    with tempfile.TemporaryDirectory(prefix="roost-agent-bench-") as tmp:
        base = Path(tmp)
        cluster = EtcdCluster(base / "etcd").start()
        agent = AgentProcess(base / "agent", "--dns-addr", "", "--log-level", "warning").start()
        try:
            etcd_url = cluster.members[0].url
            seed(agent)
            path = "/v1/health/service/web?passing"
            entries = httpx.get(agent.url + path, timeout=10).json()
            roost_bytes = len(httpx.get(agent.url + path, timeout=10).content)
            etcd_bytes = seed_etcd(etcd_url, entries)
            print(f"etcd {etcd_url} ({etcd_bytes:,} B per range); roost {agent.url} ({roost_bytes:,} B)")

            wrk(agent.url + path, 2)
            wrk_range(etcd_url, 2, base)
            reads: dict[str, list[tuple[float, float, float]]] = {"roost": [], "etcd": []}
            for round_ in range(args.rounds):
                for label in ("roost", "etcd"):
                    if label == "roost":
                        result = wrk(agent.url + path, args.duration)
                    else:
                        result = wrk_range(etcd_url, args.duration, base)
                    reads[label].append(result)
                    rps, p50, p99 = result
                    print(f"  reads {round_ + 1} {label:5}: {rps:9,.0f} req/s p50 {p50:.2f} p99 {p99:.2f} ms")
            med = {k: [statistics.median(r[i] for r in v) for i in range(3)] for k, v in reads.items()}
            paired = statistics.median(
                r[0] / e[0] for r, e in zip(reads["roost"], reads["etcd"], strict=True)
            )
            print(
                f"READS: roost {med['roost'][0]:,.0f} req/s (p50/p99 {med['roost'][1]:.2f}/"
                f"{med['roost'][2]:.2f} ms), etcd range {med['etcd'][0]:,.0f} req/s (p50/p99 "
                f"{med['etcd'][1]:.2f}/{med['etcd'][2]:.2f} ms); ratio roost/etcd, median of rounds "
                f"{paired:.2f}"
            )

            writes: dict[str, list[float]] = {"roost": [], "etcd": []}
            for round_ in range(args.rounds):
                for label, url in (("roost", agent.url), ("etcd", etcd_url + "/v3")):
                    rate = wrk_register(url, args.reg_duration, f"w{round_}", base)
                    writes[label].append(rate)
                    print(f"  writes {round_ + 1} {label:5}: {rate:9,.0f}/s")
            paired_w = statistics.median(r / e for r, e in zip(writes["roost"], writes["etcd"], strict=True))
            print(
                f"WRITES (wrk -c32): roost registrations {statistics.median(writes['roost']):,.0f}/s, "
                f"etcd puts {statistics.median(writes['etcd']):,.0f}/s; ratio, median of rounds "
                f"{paired_w:.2f}"
            )

            rounds = [run(watchers_round(agent, args.watchers, r)) for r in range(args.watch_rounds)]
            for r, result in enumerate(rounds):
                print(f"  watchers {r + 1}: " + ", ".join(f"{k} {v:,.1f}" for k, v in result.items()))
            summary = {k: statistics.median(r[k] for r in rounds) for k in rounds[0]}
            print(
                f"WATCHERS ({args.watchers:,}, median of {args.watch_rounds} rounds): "
                f"{summary['kib_per_watcher']:.1f} KiB each, agent RSS {summary['rss_mib']:.0f} MiB "
                f"with all parked; wake after a change p50 {summary['p50_ms']:.0f} ms, p99 "
                f"{summary['p99_ms']:.0f} ms, last {summary['max_ms']:.0f} ms (agent CPU for the "
                f"fan-out {summary['agent_cpu_ms']:.0f} ms); woken by a change "
                f"to another service: {summary['woken_by_other']:.0f}"
            )
        finally:
            agent.stop()
            cluster.stop()


if __name__ == "__main__":
    main()
