"""DNS benchmark: roost's DNS interface against unbound serving the same records, with dnsperf.

    python bench/dns_bench.py                      # 3 instances, 3 rounds x 10 s, A queries
    python bench/dns_bench.py --instances 10 --rounds 5 --seconds 10 --qtype SRV

Starts a real ``roost agent`` (memory store) with ``--instances`` instances of ``web`` registered
through its HTTP API, and an unbound (config written to a temporary directory, ``local-data`` with
the same A records on 127.0.0.1). Both are warmed for 2 s, then each round runs ``dnsperf -l
SECONDS`` against roost and then against unbound (interleaved, so both see the same machine
load). It prints QPS, average latency and lost queries per run, the medians, and the ratio.

Finally it checks the issue's goal: dnsperf limited to 40% of unbound's median QPS (``-Q``) against
roost for SECONDS, reporting lost queries at that rate (the goal is zero).

Needs the Debian packages ``dnsperf`` and ``unbound`` (and nothing else beyond roost's own
dependencies). Everything binds to 127.0.0.1.
"""

from __future__ import annotations

import argparse
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
NAME = "web.service.consul."


@dataclass
class Run:
    target: str
    qps: float
    latency_ms: float
    sent: int
    lost: int


def free_port() -> int:
    """A port free for both UDP and TCP on 127.0.0.1."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.bind(("127.0.0.1", 0))
            port = int(udp.getsockname()[1])
            with socket.socket() as tcp:
                try:
                    tcp.bind(("127.0.0.1", port))
                except OSError:
                    continue
            return port
    raise RuntimeError("no free port")


def start_roost(tmp: Path, instances: int) -> tuple[subprocess.Popen[str], int]:
    args = [
        sys.executable,
        "-m",
        "roost",
        "agent",
        "--store",
        "memory",
        "--data-dir",
        str(tmp / "roost"),
        "--http-addr",
        "127.0.0.1:0",
        "--dns-addr",
        "127.0.0.1:0",
        "--log-level",
        "warning",
    ]
    proc = subprocess.Popen(
        args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT, bufsize=1
    )
    http = dns_port = ""
    deadline = time.monotonic() + 20
    assert proc.stdout is not None
    while time.monotonic() < deadline and not (http and dns_port):
        line = proc.stdout.readline()
        if not line:
            break
        if m := re.search(r"HTTP API on (http://\S+)", line):
            http = m.group(1)
        if m := re.search(r"DNS on \S+:(\d+)", line):
            dns_port = m.group(1)
    if not (http and dns_port):
        proc.kill()
        raise RuntimeError("roost agent did not start")
    # keep draining its output so it never blocks on a full pipe
    threading.Thread(target=lambda: [None for _ in proc.stdout or ()], daemon=True).start()
    with httpx.Client(base_url=http, timeout=10) as client:
        for i in range(instances):
            body = {"ID": f"web{i}", "Name": "web", "Address": address(i), "Port": 8000 + i}
            client.put("/v1/agent/service/register", json=body).raise_for_status()
    return proc, int(dns_port)


def address(i: int) -> str:
    return f"10.0.{i // 250}.{i % 250 + 1}"


def start_unbound(tmp: Path, instances: int) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    records = "\n".join(f'  local-data: "{NAME} 0 IN A {address(i)}"' for i in range(instances))
    srv = "\n".join(
        f'  local-data: "_web._tcp.service.consul. 0 IN SRV 1 1 {8000 + i} {address_name(i)}"'
        f'\n  local-data: "{address_name(i)} 0 IN A {address(i)}"'
        for i in range(instances)
    )
    conf = tmp / "unbound.conf"
    conf.write_text(
        f"""server:
  interface: 127.0.0.1
  port: {port}
  do-ip6: no
  do-daemonize: no
  chroot: ""
  username: ""
  directory: "{tmp}"
  pidfile: ""
  use-syslog: no
  logfile: ""
  verbosity: 0
  num-threads: 1
  access-control: 127.0.0.0/8 allow
  module-config: "iterator"
  local-zone: "consul." static
{records}
{srv}
remote-control:
  control-enable: no
"""
    )
    subprocess.run(["unbound-checkconf", str(conf)], check=True, capture_output=True)
    proc = subprocess.Popen(
        ["unbound", "-d", "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"unbound exited: {proc.stderr.read() if proc.stderr else b''!r}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return proc, port
        time.sleep(0.05)
    proc.kill()
    raise RuntimeError("unbound did not start")


def address_name(i: int) -> str:
    return f"{bytes(int(p) for p in address(i).split('.')).hex()}.addr.dc1.consul."


def dnsperf(target: str, port: int, queries: Path, seconds: float, max_qps: int = 0) -> Run:
    args = ["dnsperf", "-s", "127.0.0.1", "-p", str(port), "-d", str(queries), "-l", str(seconds)]
    if max_qps:
        args += ["-Q", str(max_qps)]
    out = subprocess.run(args, capture_output=True, text=True, check=True, timeout=seconds + 60).stdout

    def number(label: str) -> float:
        m = re.search(rf"{label}:\s+([\d.]+)", out)
        if not m:
            raise RuntimeError(f"dnsperf output without {label!r}:\n{out}")
        return float(m.group(1))

    return Run(
        target,
        qps=number("Queries per second"),
        latency_ms=number(r"Average Latency \(s\)") * 1000,
        sent=int(number("Queries sent")),
        lost=int(number("Queries lost")),
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--instances", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--qtype", default="A", choices=["A", "SRV"])
    opts = parser.parse_args()
    for tool in ("dnsperf", "unbound", "unbound-checkconf"):
        if shutil.which(tool) is None:
            sys.exit(f"{tool} not found: apt-get install dnsperf unbound")
    tmp = Path(tempfile.mkdtemp(prefix="roost-dns-bench-"))
    queries = tmp / "queries.txt"
    name = NAME if opts.qtype == "A" else "_web._tcp.service.consul."
    queries.write_text(f"{name} {opts.qtype}\n")
    roost, roost_port = start_roost(tmp, opts.instances)
    unbound, unbound_port = start_unbound(tmp, opts.instances)
    targets = {"roost": roost_port, "unbound": unbound_port}
    try:
        check = subprocess.run(
            ["dig", "@127.0.0.1", "-p", str(roost_port), name, opts.qtype, "+short"],
            capture_output=True,
            text=True,
        )
        print(f"roost answers {name} {opts.qtype}: {check.stdout.split()[:8]}")
        for target, port in targets.items():
            dnsperf(target, port, queries, 2)  # warm-up
        runs: list[Run] = []
        print(f"{'round':>5} {'target':>8} {'QPS':>10} {'avg ms':>8} {'sent':>9} {'lost':>6}")
        for n in range(1, opts.rounds + 1):
            for target, port in targets.items():
                run = dnsperf(target, port, queries, opts.seconds)
                runs.append(run)
                row = f"{n:>5} {target:>8} {run.qps:>10,.0f} {run.latency_ms:>8.3f}"
                print(f"{row} {run.sent:>9,} {run.lost:>6}", flush=True)
        med = {t: statistics.median(r.qps for r in runs if r.target == t) for t in targets}
        lat = {t: statistics.median(r.latency_ms for r in runs if r.target == t) for t in targets}
        spread = {
            t: (min(r.qps for r in runs if r.target == t), max(r.qps for r in runs if r.target == t))
            for t in targets
        }
        print()
        for t in targets:
            lost = sum(r.lost for r in runs if r.target == t)
            print(
                f"{t:>8}: median {med[t]:,.0f} QPS [{spread[t][0]:,.0f}-{spread[t][-1]:,.0f}], "
                f"median avg latency {lat[t]:.3f} ms, lost {lost} in all rounds"
            )
        ratio = med["roost"] / med["unbound"]
        pairs = [a.qps / b.qps for a, b in zip(runs[0::2], runs[1::2], strict=True)]
        per_round = statistics.median(pairs)
        print(f"   ratio: roost / unbound = {ratio:.1%} (median of per-round ratios {per_round:.1%})")
        goal = int(med["unbound"] * 0.4)
        paced = dnsperf("roost", roost_port, queries, opts.seconds, max_qps=goal)
        verdict = "met" if paced.lost == 0 and paced.qps >= goal * 0.97 else "NOT met"
        print(
            f"    goal: roost at 40% of unbound ({goal:,} QPS, -Q): {paced.qps:,.0f} QPS, "
            f"avg {paced.latency_ms:.3f} ms, lost {paced.lost} of {paced.sent:,}: {verdict}"
        )
    finally:
        for proc in (roost, unbound):
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
