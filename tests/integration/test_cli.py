"""The roost command line against a real agent."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.integration.procs import AgentProcess, free_port, run_cli


def test_register_list_instances_deregister(agent: AgentProcess, tmp_path: Path) -> None:
    """register (flags and -f), services, instances and deregister work and print tables or JSON."""
    env = {"ROOST_HTTP_ADDR": agent.http_addr}
    r = run_cli(
        "register",
        "--name",
        "web",
        "--id",
        "web-1",
        "--address",
        "127.0.0.1",
        "--port",
        "8080",
        "--tag",
        "v1",
        "--ttl",
        "30s",
        env=env,
    )
    assert r.returncode == 0, r.stderr
    spec = tmp_path / "svc.json"
    spec.write_text(json.dumps({"Name": "web", "ID": "web-2", "Port": 8081, "Tags": ["v2"]}))
    assert run_cli("register", "-f", str(spec), env=env).returncode == 0
    out = run_cli("services", env=env).stdout
    assert "web" in out and "v1,v2" in out
    table = run_cli("instances", "web", env=env).stdout
    assert "web-1" in table and "127.0.0.1:8080" in table and "critical" in table
    passing = json.loads(run_cli("instances", "web", "--passing", "--json", env=env).stdout)
    assert [e["Service"]["ID"] for e in passing] == ["web-2"]
    assert run_cli("deregister", "web-1", env=env).returncode == 0
    assert "web-1" not in run_cli("instances", "web", env=env).stdout


def test_consul_http_addr_and_errors(agent: AgentProcess) -> None:
    """CONSUL_HTTP_ADDR is honoured; an unreachable agent or a bad request exits non-zero with one line."""
    r = run_cli("services", "--json", env={"CONSUL_HTTP_ADDR": agent.http_addr})
    assert r.returncode == 0 and json.loads(r.stdout) == {}
    down = run_cli("services", "--addr", f"127.0.0.1:{free_port()}")
    assert down.returncode == 1
    assert "cannot reach the agent" in down.stderr and down.stderr.count("\n") == 1
    bad = run_cli("register", "--name", "bad name", "--addr", agent.http_addr)
    assert bad.returncode == 1 and "DNS label" in bad.stderr
    missing = run_cli("deregister", "nope", "--addr", agent.http_addr)
    assert missing.returncode == 1 and "nope" in missing.stderr


def test_watch_prints_changes(agent: AgentProcess) -> None:
    """`roost watch NAME --json` prints the instance list at once and again on each change."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "roost", "watch", "api", "--json", "--addr", agent.http_addr],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert proc.stdout is not None
        first = json.loads(proc.stdout.readline())
        assert first["instances"] == []
        httpx.put(agent.url + "/v1/agent/service/register", json={"Name": "api", "ID": "api-1", "Port": 1})
        start = time.monotonic()
        second = json.loads(proc.stdout.readline())
        assert time.monotonic() - start < 2
        assert [e["Service"]["ID"] for e in second["instances"]] == ["api-1"]
        assert second["index"] > first["index"]
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(5)


def test_agent_stops_cleanly_on_sigterm(agent: AgentProcess) -> None:
    """SIGTERM stops the agent with exit code 0, even with a blocking query outstanding."""
    with httpx.Client(base_url=agent.url, timeout=30) as http:
        index = http.get("/v1/catalog/services").headers["x-consul-index"]
        assert agent.proc is not None
        import threading

        t = threading.Thread(
            target=lambda: http.get("/v1/catalog/services", params={"index": index, "wait": "60s"})
        )
        t.start()
        time.sleep(0.3)
        start = time.monotonic()
        assert agent.stop() == 0
        assert time.monotonic() - start < 5
        assert "stopped" in agent.output()
        t.join(5)
