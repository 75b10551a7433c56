"""A backend dies under a steady request stream: no failed GET, the instance is ejected, then readmitted."""

from __future__ import annotations

import threading
import time
from collections import Counter
from pathlib import Path

import httpx

from tests.integration.gateway_procs import BackendProcess, GatewayProcess, register
from tests.integration.procs import AgentProcess, wait_for


class Stream:
    """GETs back to back from a few threads, recording every status and which backend answered."""

    def __init__(self, url: str, threads: int = 4) -> None:
        self.url = url
        self.results: list[tuple[float, int, str]] = []
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(threads)]

    def _run(self) -> None:
        with httpx.Client(timeout=10) as client:
            while not self._stop.is_set():
                try:
                    resp = client.get(self.url)
                    backend = resp.json().get("backend", "") if resp.status_code == 200 else resp.text
                    self.results.append((time.monotonic(), resp.status_code, backend))
                except httpx.HTTPError as exc:
                    self.errors.append(repr(exc))

    def __enter__(self) -> Stream:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=15)

    def since(self, t0: float) -> Counter[str]:
        return Counter(b for t, s, b in list(self.results) if t >= t0 and s == 200)


def test_killed_backend_is_ejected_without_failed_gets_and_readmitted(tmp_path: Path) -> None:
    """Killing one of two backends under load fails no GET (retried elsewhere), ejects it, and it is
    readmitted once it is back."""
    agent = AgentProcess(tmp_path / "agent").start()
    a = BackendProcess("a").start()
    b = BackendProcess("b").start()
    gateway: GatewayProcess | None = None
    try:
        register(agent.url, "web", "web-a", a.port)
        register(agent.url, "web", "web-b", b.port)
        gateway = GatewayProcess(
            agent.url,
            "--consecutive-failures",
            "3",
            "--base-ejection",
            "1",
            "--max-ejection",
            "2",
            "--retries",
            "2",
            "--access-log",
            "",
        ).start()
        with Stream(f"{gateway.url}/web/id") as stream:
            wait_for(lambda: stream.since(0)["b"] >= 20, timeout=10, what="traffic to b")
            b.kill()
            killed = time.monotonic()
            time.sleep(2.0)
            assert stream.since(killed + 0.5)["a"] > 0

            def ejections() -> int:
                data = httpx.get(f"{gateway.url}/_roost/metrics?format=json").json()
                return int(data["upstreams"]["web/web-b"]["ejections"])

            assert ejections() >= 1
            assert "ejected web/web-b" in gateway.output()
            b = BackendProcess("b", b.port).start()
            back = time.monotonic()
            wait_for(lambda: stream.since(back)["b"] >= 10, timeout=15, what="b readmitted")
        failed = [r for r in stream.results if r[1] != 200]
        assert not stream.errors, stream.errors[:5]
        assert not failed, failed[:5]
        assert len(stream.results) > 200
    finally:
        if gateway is not None:
            gateway.stop()
        a.stop()
        b.stop()
        agent.stop()
