"""Real processes for gateway tests: `roost gateway` and the small upstream in gateway_backend.py."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx

from tests.integration.procs import free_port

_LISTEN = re.compile(r"roost gateway: listening on http://(\S+)")
ROOT = Path(__file__).resolve().parents[2]


class _Proc:
    def __init__(self) -> None:
        self.proc: subprocess.Popen[str] | None = None
        self.lines: list[str] = []

    def _spawn(self, args: list[str], on_line: object = None) -> None:
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
        self.lines = []
        self.proc = subprocess.Popen(
            args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd=ROOT
        )

        def pump() -> None:
            assert self.proc is not None and self.proc.stdout is not None
            for line in self.proc.stdout:
                self.lines.append(line)
                if callable(on_line):
                    on_line(line)

        threading.Thread(target=pump, daemon=True).start()

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(timeout=30)

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def output(self) -> str:
        return "".join(self.lines)


class BackendProcess(_Proc):
    """tests/integration/gateway_backend.py on 127.0.0.1, as a real uvicorn process."""

    def __init__(self, name: str, port: int = 0) -> None:
        super().__init__()
        self.name = name
        self.port = port or free_port()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 15.0) -> BackendProcess:
        self._spawn([sys.executable, "-m", "tests.integration.gateway_backend", self.name, str(self.port)])
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                break
            try:
                if httpx.get(self.url + "/id", timeout=1).status_code == 200:
                    return self
            except httpx.TransportError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"backend {self.name} did not start:\n{self.output()}")


class GatewayProcess(_Proc):
    """A real `roost gateway` on 127.0.0.1:0; the port is read from its "listening on" line."""

    def __init__(self, agent_url: str, *extra: str) -> None:
        super().__init__()
        self.agent_url = agent_url
        self.extra = extra
        self.addr = ""

    @property
    def url(self) -> str:
        return f"http://{self.addr}"

    @property
    def host_port(self) -> tuple[str, int]:
        host, _, port = self.addr.rpartition(":")
        return host, int(port)

    def start(self, timeout: float = 15.0) -> GatewayProcess:
        ready = threading.Event()

        def on_line(line: str) -> None:
            if m := _LISTEN.search(line):
                self.addr = m.group(1)
                ready.set()

        args = [sys.executable, "-m", "roost", "gateway", "--agent", self.agent_url]
        if "--listen" not in self.extra:
            args += ["--listen", "127.0.0.1:0"]
        self._spawn([*args, *self.extra], on_line)
        if not ready.wait(timeout):
            self.stop()
            raise RuntimeError(f"roost gateway did not start:\n{self.output()}")
        return self

    def rss_kib(self) -> int:
        """Resident memory of the gateway process (Linux /proc)."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        raise RuntimeError("no VmRSS")

    def access_log(self) -> list[str]:
        return [line for line in self.lines if line.startswith("{")]


def register(agent_url: str, name: str, instance_id: str, port: int, **extra: object) -> None:
    body = {"Name": name, "ID": instance_id, "Address": "127.0.0.1", "Port": port, **extra}
    resp = httpx.put(f"{agent_url}/v1/agent/service/register", json=body, timeout=5)
    resp.raise_for_status()


def deregister(agent_url: str, instance_id: str) -> None:
    httpx.put(f"{agent_url}/v1/agent/service/deregister/{instance_id}", timeout=5).raise_for_status()
