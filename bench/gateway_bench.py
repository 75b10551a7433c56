"""Gateway benchmark: wrk through roost gateway, haproxy and nginx to the same two nginx backends.

    python bench/gateway_bench.py [--duration 10] [--rounds 3] [--connections 64]

Starts everything on loopback from a temporary directory: one nginx (1 worker) serving a small
static 200 on two ports (the backends), a roost agent with both registered as service ``bench``,
roost gateway (1 worker, and 2 workers), haproxy (1 thread, and 2 threads, round robin,
``http-reuse always``) and nginx as a reverse proxy (1 worker, keepalive upstream). Every target is
warmed up, then the rounds run every target once in turn (A B C, A B C, ...) so that noise hits
them alike. Prints medians with [min-max], the ratio to haproxy, the like-for-like ratios (1 worker
to 1 thread, 2 workers to 2 threads), and the p50 latency added over going to a backend directly.
Needs: wrk, nginx, haproxy (Debian packages wrk, nginx-light, haproxy).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
HAPROXY = shutil.which("haproxy") or "/usr/sbin/haproxy"
WRK = shutil.which("wrk") or "wrk"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_http(url: str, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer 200")


@dataclass
class Result:
    rps: list[float] = field(default_factory=list)
    p50: list[float] = field(default_factory=list)  # milliseconds
    p99: list[float] = field(default_factory=list)
    errors: int = 0
    # one connection, one thread: the latency a single request sees with no queueing
    idle_p50: list[float] = field(default_factory=list)
    idle_p99: list[float] = field(default_factory=list)


def to_ms(text: str) -> float:
    m = re.fullmatch(r"([\d.]+)(us|ms|s)", text)
    if not m:
        raise ValueError(text)
    value, unit = float(m.group(1)), m.group(2)
    return value / 1000 if unit == "us" else value * 1000 if unit == "s" else value


def run_wrk(url: str, duration: float, connections: int) -> tuple[float, float, float, int]:
    threads = 2 if connections > 1 else 1
    out = subprocess.run(
        [WRK, f"-t{threads}", f"-c{connections}", f"-d{duration:g}s", "--latency", url],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    p50 = to_ms(re.search(r"^\s+50%\s+(\S+)", out, re.M).group(1))  # type: ignore[union-attr]
    p99 = to_ms(re.search(r"^\s+99%\s+(\S+)", out, re.M).group(1))  # type: ignore[union-attr]
    errors = 0
    if m := re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out):
        errors += int(m.group(1))
    if m := re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out):
        errors += sum(int(g) for g in m.groups())
    return rps, p50, p99, errors


class Stack:
    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.procs: list[subprocess.Popen[bytes]] = []
        self.backends = [free_port(), free_port()]
        self.ports = {
            name: free_port() for name in ("haproxy", "haproxy2", "nginx", "roost", "roost2", "agent")
        }

    def spawn(self, args: list[str], log: str) -> subprocess.Popen[bytes]:
        out = open(self.tmp / log, "wb")  # noqa: SIM115 - closed with the process
        proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, cwd=self.tmp)
        self.procs.append(proc)
        return proc

    def start(self) -> dict[str, str]:
        t = self.tmp
        a, b = self.backends
        (t / "backends.conf").write_text(f"""
worker_processes 1; daemon off; pid {t}/backends.pid; error_log {t}/backends.err;
events {{ worker_connections 4096; }}
http {{
  access_log off; keepalive_requests 1000000; keepalive_timeout 75s;
  server {{ listen 127.0.0.1:{a} reuseport; location / {{ return 200 "hello from a\\n"; }} }}
  server {{ listen 127.0.0.1:{b} reuseport; location / {{ return 200 "hello from b\\n"; }} }}
}}
""")
        (t / "proxy.conf").write_text(f"""
worker_processes 1; daemon off; pid {t}/proxy.pid; error_log {t}/proxy.err;
events {{ worker_connections 4096; }}
http {{
  access_log off; keepalive_requests 1000000;
  upstream backends {{ server 127.0.0.1:{a}; server 127.0.0.1:{b}; keepalive 128; }}
  server {{
    listen 127.0.0.1:{self.ports["nginx"]};
    location / {{ proxy_pass http://backends; proxy_http_version 1.1; proxy_set_header Connection ""; }}
  }}
}}
""")
        for name, threads in (("haproxy", 1), ("haproxy2", 2)):
            (t / f"{name}.cfg").write_text(f"""
global
  nbthread {threads}
  maxconn 4000
defaults
  mode http
  timeout connect 5s
  timeout client 30s
  timeout server 30s
  http-reuse always
frontend fe
  bind 127.0.0.1:{self.ports[name]}
  default_backend be
backend be
  balance roundrobin
  server a 127.0.0.1:{a}
  server b 127.0.0.1:{b}
""")
        self.spawn([NGINX, "-p", str(t), "-c", str(t / "backends.conf")], "backends.log")
        self.spawn([NGINX, "-p", str(t), "-c", str(t / "proxy.conf")], "proxy.log")
        self.spawn([HAPROXY, "-f", str(t / "haproxy.cfg")], "haproxy.log")
        self.spawn([HAPROXY, "-f", str(t / "haproxy2.cfg")], "haproxy2.log")
        py = sys.executable
        agent = f"127.0.0.1:{self.ports['agent']}"
        self.spawn(
            [
                py,
                "-m",
                "roost",
                "agent",
                "--data-dir",
                str(t / "agent"),
                "--http-addr",
                agent,
                "--dns-addr",
                "",
            ],
            "agent.log",
        )
        wait_http(f"http://{agent}/v1/status/leader")
        for i, port in enumerate(self.backends):
            body = {"Name": "bench", "ID": f"bench-{i}", "Address": "127.0.0.1", "Port": port}
            httpx.put(f"http://{agent}/v1/agent/service/register", json=body).raise_for_status()
        common = ["--agent", agent, "--access-log", str(t / "access.log")]
        self.spawn(
            [py, "-m", "roost", "gateway", "--listen", f"127.0.0.1:{self.ports['roost']}", *common],
            "roost.log",
        )
        self.spawn(
            [
                py,
                "-m",
                "roost",
                "gateway",
                "--listen",
                f"127.0.0.1:{self.ports['roost2']}",
                "--workers",
                "2",
                *common,
            ],
            "roost2.log",
        )
        targets = {
            "direct (nginx backend)": f"http://127.0.0.1:{a}/",
            "haproxy": f"http://127.0.0.1:{self.ports['haproxy']}/",
            "haproxy, 2 threads": f"http://127.0.0.1:{self.ports['haproxy2']}/",
            "nginx proxy": f"http://127.0.0.1:{self.ports['nginx']}/",
            "roost gateway, 1 worker": f"http://127.0.0.1:{self.ports['roost']}/bench/",
            "roost gateway, 2 workers": f"http://127.0.0.1:{self.ports['roost2']}/bench/",
        }
        for url in targets.values():
            wait_http(url)
        return targets

    def stop(self) -> None:
        for proc in reversed(self.procs):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per wrk run (default 10)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds over all targets (default 3)")
    parser.add_argument("--connections", type=int, default=64, help="wrk connections (default 64)")
    parser.add_argument(
        "--latency-duration",
        type=float,
        default=5.0,
        help="seconds of the 1-connection latency run (default 5)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = parser.parse_args()
    for tool in (NGINX, HAPROXY, WRK):
        if not shutil.which(tool) and not os.path.exists(tool):
            print(
                f"missing {tool}: install the Debian packages wrk, nginx-light and haproxy", file=sys.stderr
            )
            return 2
    tmp = Path(tempfile.mkdtemp(prefix="roost-gateway-bench-"))
    stack = Stack(tmp)
    try:
        targets = stack.start()
        results = {name: Result() for name in targets}
        for url in targets.values():  # warm-up
            run_wrk(url, 2, args.connections)
        for r in range(args.rounds):
            for name, url in targets.items():
                rps, p50, p99, errors = run_wrk(url, args.duration, args.connections)
                res = results[name]
                res.rps.append(rps)
                res.p50.append(p50)
                res.p99.append(p99)
                res.errors += errors
                print(f"round {r + 1} {name}: {rps:,.0f} req/s p50 {p50:.2f} ms p99 {p99:.2f} ms", flush=True)
                _, p50, p99, errors = run_wrk(url, args.latency_duration, 1)
                res.idle_p50.append(p50)
                res.idle_p99.append(p99)
                res.errors += errors
                print(f"round {r + 1} {name}, 1 connection: p50 {p50:.3f} ms p99 {p99:.3f} ms", flush=True)
        report(results, args)
    finally:
        stack.stop()
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            print(f"kept {tmp}")
    return 0


def report(results: dict[str, Result], args: argparse.Namespace) -> None:
    med = {name: statistics.median(r.rps) for name, r in results.items()}
    haproxy = med["haproxy"]
    direct = results["direct (nginx backend)"]
    direct_p50 = statistics.median(direct.p50)
    direct_idle = statistics.median(direct.idle_p50)
    print()
    print(
        f"wrk -t2 -c{args.connections} -d{args.duration:g}s --latency, "
        f"{args.rounds} rounds, medians [min-max]"
    )
    print()
    print(f"(1-connection rows: wrk -t1 -c1 -d{args.latency_duration:g}s)")
    print()
    print(
        "| target | req/s | vs haproxy | per-round vs haproxy | p50 ms | added p50 ms | p99 ms "
        "| 1 conn p50 ms | 1 conn added p50 ms | 1 conn p99 ms | errors |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for name, r in results.items():
        p50 = statistics.median(r.p50)
        idle = statistics.median(r.idle_p50)
        # the same round ran every target back to back, so per-round ratios cancel most of the noise
        ratios = [a / b for a, b in zip(r.rps, results["haproxy"].rps, strict=True)]
        print(
            f"| {name} | {med[name]:,.0f} [{min(r.rps):,.0f}-{max(r.rps):,.0f}] | {med[name] / haproxy:.0%} "
            f"| {statistics.median(ratios):.0%} [{min(ratios):.0%}-{max(ratios):.0%}] "
            f"| {p50:.2f} | {p50 - direct_p50:+.2f} | {statistics.median(r.p99):.2f} "
            f"| {idle:.3f} | {idle - direct_idle:+.3f} | {statistics.median(r.idle_p99):.3f} | {r.errors} |"
        )
    pairs = [
        ("roost gateway, 1 worker", "haproxy"),
        ("roost gateway, 2 workers", "haproxy, 2 threads"),
    ]
    print()
    for ours, theirs in pairs:  # like for like: the same number of cores offered to each
        ratios = [a / b for a, b in zip(results[ours].rps, results[theirs].rps, strict=True)]
        print(
            f"{ours} / {theirs}: {med[ours] / med[theirs]:.0%} of the medians, per round "
            f"{statistics.median(ratios):.0%} [{min(ratios):.0%}-{max(ratios):.0%}]"
        )


if __name__ == "__main__":
    sys.exit(main())
