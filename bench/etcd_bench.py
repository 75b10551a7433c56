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
import shutil
import statistics
import sys
import tempfile
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from common import pctl, propagation, run, seed, wrk, wrk_register  # noqa: E402
from tests.integration.etcd_cluster import EtcdCluster  # noqa: E402
from tests.integration.procs import AgentProcess  # noqa: E402


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
