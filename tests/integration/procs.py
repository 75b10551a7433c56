"""Real processes for integration tests: a `roost agent` started as a subprocess on loopback."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import httpx

_HTTP = re.compile(r"HTTP API on http://(\S+)")
_DNS = re.compile(r"DNS on (\S+)")


class AgentProcess:
    """A real `roost agent` process. Ports are picked by the OS (127.0.0.1:0) and read from its output."""

    def __init__(self, data_dir: Path, *extra: str, env: dict[str, str] | None = None) -> None:
        self.data_dir = data_dir
        self.extra: tuple[str, ...] = extra
        self.env = env or {}
        self.proc: subprocess.Popen[str] | None = None
        self.http_addr = ""
        self.dns_addr = ""
        self.lines: list[str] = []

    @property
    def url(self) -> str:
        return f"http://{self.http_addr}"

    @property
    def dns_host_port(self) -> tuple[str, int]:
        host, _, port = self.dns_addr.rpartition(":")
        return host.strip("[]"), int(port)

    def args(self) -> list[str]:
        args = [sys.executable, "-m", "roost", "agent", "--data-dir", str(self.data_dir)]
        if "--http-addr" not in self.extra:
            args += ["--http-addr", "127.0.0.1:0"]
        if "--dns-addr" not in self.extra:
            args += ["--dns-addr", "127.0.0.1:0"]
        return [*args, *self.extra]

    def start(self, timeout: float = 15.0) -> AgentProcess:
        env = {**os.environ, "PYTHONUNBUFFERED": "1", **self.env}
        self.lines = []
        self.http_addr = self.dns_addr = ""
        self.proc = subprocess.Popen(
            self.args(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env
        )
        ready = threading.Event()

        def pump() -> None:
            assert self.proc is not None and self.proc.stdout is not None
            for line in self.proc.stdout:
                self.lines.append(line)
                if m := _HTTP.search(line):
                    self.http_addr = m.group(1)
                if m := _DNS.search(line):
                    self.dns_addr = m.group(1)
                if self.http_addr and ("DNS on" in line or "HTTP API on" in line):
                    ready.set()
            ready.set()

        threading.Thread(target=pump, daemon=True).start()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            ready.wait(0.05)
            if self.http_addr and self.proc.poll() is None:
                try:
                    if httpx.get(self.url + "/v1/status/leader", timeout=1).status_code == 200:
                        time.sleep(0.05)  # let the DNS line arrive if there is one
                        return self
                except httpx.TransportError:
                    pass
            if self.proc.poll() is not None:
                break
        output = "".join(self.lines)
        self.stop()
        raise RuntimeError(f"roost agent did not start:\n{output}")

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(timeout=30)

    def stop(self) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode

    def output(self) -> str:
        return "".join(self.lines)


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(
    predicate: object, timeout: float = 10.0, interval: float = 0.05, what: str = "condition"
) -> None:
    """Poll `predicate()` until it is true; fail with `what` after `timeout` seconds."""
    assert callable(predicate)
    deadline = time.monotonic() + timeout
    last: BaseException | None = None
    while time.monotonic() < deadline:
        try:
            if predicate():
                return
        except Exception as exc:
            last = exc
        time.sleep(interval)
    raise AssertionError(
        f"timed out after {timeout}s waiting for {what}" + (f" (last error: {last})" if last else "")
    )


def run_cli(
    *args: str, env: dict[str, str] | None = None, timeout: float = 30
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "roost", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )


__all__: Sequence[str] = ["AgentProcess", "free_port", "run_cli", "wait_for"]
