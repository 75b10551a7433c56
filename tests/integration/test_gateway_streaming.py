"""Large bodies stream through the gateway: its memory does not grow with the body size."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

from tests.integration.gateway_procs import BackendProcess, GatewayProcess, register
from tests.integration.procs import AgentProcess

SIZE = 256 * 1024 * 1024  # 256 MiB each way
CHUNK = b"z" * (1024 * 1024)
MAX_GROWTH_KIB = 48 * 1024  # far below the body size: the body is never held


class PeakRss:
    def __init__(self, gateway: GatewayProcess) -> None:
        self.gateway = gateway
        self.peak = gateway.rss_kib()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.05):
            self.peak = max(self.peak, self.gateway.rss_kib())

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def test_large_download_and_upload_stream_with_flat_memory(tmp_path: Path) -> None:
    """A 256 MiB download and a 256 MiB upload pass whole while the gateway's RSS grows < 48 MiB."""
    agent = AgentProcess(tmp_path / "agent").start()
    backend = BackendProcess("a").start()
    gateway: GatewayProcess | None = None
    try:
        register(agent.url, "big", "big-1", backend.port)
        gateway = GatewayProcess(agent.url, "--access-log", "").start()
        url = gateway.url
        with httpx.Client(timeout=60) as client:
            for _ in range(20):  # warm up: pools, buffers, code paths
                client.get(f"{url}/big/bytes/2000000")
            baseline = gateway.rss_kib()
            with PeakRss(gateway) as rss:
                received = 0
                with client.stream("GET", f"{url}/big/bytes/{SIZE}") as resp:
                    assert resp.status_code == 200
                    for i, piece in enumerate(resp.iter_raw(1024 * 1024)):
                        received += len(piece)
                        if i < 60:  # read slowly at first: the gateway must hold the backend back
                            time.sleep(0.005)
                assert received == SIZE

                def body() -> Iterator[bytes]:
                    for _ in range(SIZE // len(CHUNK)):
                        yield CHUNK

                up = client.post(f"{url}/big/upload?slow=100", content=body())
                assert up.status_code == 200
                assert up.json()["received"] == SIZE
        assert rss.peak - baseline < MAX_GROWTH_KIB, (baseline, rss.peak)
    finally:
        if gateway is not None:
            gateway.stop()
        backend.stop()
        agent.stop()
