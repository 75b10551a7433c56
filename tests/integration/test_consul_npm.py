"""The npm `consul` package (Node.js), unmodified, against a real roost agent."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

from tests.integration.procs import AgentProcess

CHECK = Path(__file__).parent / "npm_consul"


def npm_install() -> None:
    if (CHECK / "node_modules" / "consul" / "package.json").exists():
        return
    npm = shutil.which("npm")
    assert npm, "the npm consul test needs Node.js and npm (Debian: nodejs, npm)"
    subprocess.run([npm, "ci", "--no-audit", "--no-fund", "--silent"], cwd=CHECK, check=True, timeout=300)


def test_npm_consul_client_registers_heartbeats_watches_and_deregisters(agent: AgentProcess) -> None:
    """Register with a TTL check, pass it, read through health and catalog, watch a second
    instance arrive through blocking queries, deregister: each step as the npm client sees it."""
    npm_install()
    host, _, port = agent.http_addr.rpartition(":")
    node = shutil.which("node") or shutil.which("nodejs")
    assert node, "the npm consul test needs Node.js"
    run = subprocess.run(
        [node, str(CHECK / "check.mjs"), host, port], capture_output=True, text=True, timeout=60
    )
    assert run.returncode == 0, run.stdout + run.stderr
    got = json.loads(run.stdout.strip().splitlines()[-1])
    assert got["leader"]  # a non-empty "host:port", as Consul answers
    assert got["passingBeforeHeartbeat"] == 0  # a TTL check starts critical
    assert got["passingAfterHeartbeat"] == 1
    service = got["service"]
    assert service["ID"] == "npm-web-1" and service["Service"] == "npm-web"
    assert service["Tags"] == ["v1"] and service["Meta"] == {"team": "js"} and service["Port"] == 8181
    assert got["catalog"]["npm-web"] == ["v1"]
    assert got["nodes"] == ["npm-web-1"]
    assert "npm-web-1" in got["agentServices"]
    assert got["watched"] == ["npm-web-1", "npm-web-2"]
    assert got["afterDeregister"] == 0
