"""Real etcd processes for integration tests: 1- or 3-member clusters on loopback, free ports, a tmp dir.

Use the fixtures (`etcd1`, `etcd3`) from a test module with
``from tests.integration.etcd_cluster import etcd1, etcd3  # noqa: F401``, or call
``start_etcd(tmp_path)`` for one member's client endpoint (stopped when the process exits), or
build an `EtcdCluster` yourself and `stop()` it. Members kill, restart, and report the leader.
"""

from __future__ import annotations

import atexit
import os
import shutil
import signal
import ssl
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.integration.procs import free_port

ETCD = shutil.which("etcd") or "etcd"
# Fast failure detection so re-election takes well under a second on loopback.
_TIMING = ["--heartbeat-interval", "50", "--election-timeout", "500"]


@dataclass(frozen=True)
class TlsFiles:
    """A test CA, a server certificate for 127.0.0.1, and a client certificate (PEM files)."""

    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path


def make_tls(directory: Path) -> TlsFiles:
    """Issue a throwaway CA with a server and a client certificate into `directory`."""
    import trustme

    directory.mkdir(parents=True, exist_ok=True)
    ca = trustme.CA()
    server = ca.issue_cert("127.0.0.1", "localhost")
    client = ca.issue_cert("roost-agent")
    files = TlsFiles(
        *(directory / n for n in ("ca.pem", "server.pem", "server.key", "client.pem", "client.key"))
    )
    ca.cert_pem.write_to_path(str(files.ca))
    server.cert_chain_pems[0].write_to_path(str(files.server_cert))
    server.private_key_pem.write_to_path(str(files.server_key))
    client.cert_chain_pems[0].write_to_path(str(files.client_cert))
    client.private_key_pem.write_to_path(str(files.client_key))
    return files


class EtcdMember:
    def __init__(self, name: str, data_dir: Path, tls: TlsFiles | None = None) -> None:
        self.name = name
        self.data_dir = data_dir
        self.tls = tls
        self.client_port = free_port()
        self.peer_port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = data_dir.parent / f"{name}.log"

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.client_port}"

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://{self.address}"

    @property
    def peer_url(self) -> str:
        return f"http://127.0.0.1:{self.peer_port}"

    def start(self, initial_cluster: str, state: str = "new") -> None:
        args = [
            ETCD,
            "--name", self.name,
            "--data-dir", str(self.data_dir),
            "--listen-client-urls", self.url,
            "--advertise-client-urls", self.url,
            "--listen-peer-urls", self.peer_url,
            "--initial-advertise-peer-urls", self.peer_url,
            "--initial-cluster", initial_cluster,
            "--initial-cluster-state", state,
            "--initial-cluster-token", "roost-test",
            "--log-level", "warn",
            *_TIMING,
        ]  # fmt: skip
        if self.tls:  # clients must present a certificate from the same CA (mutual TLS)
            args += [
                "--cert-file", str(self.tls.server_cert),
                "--key-file", str(self.tls.server_key),
                "--trusted-ca-file", str(self.tls.ca),
                "--client-cert-auth",
            ]  # fmt: skip
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT)

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.running():
            assert self.proc is not None
            self.proc.send_signal(sig)
            self.proc.wait(timeout=30)

    def pause(self) -> None:
        """Freeze the member (SIGSTOP): it keeps its sockets open but answers nothing, like a hung host."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGCONT)

    def status(self, timeout: float = 1.0) -> dict[str, str] | None:
        """This member's /v3/maintenance/status, or None if it does not answer."""
        verify: ssl.SSLContext | bool = True
        if self.tls:
            verify = ssl.create_default_context(cafile=str(self.tls.ca))
            verify.load_cert_chain(str(self.tls.client_cert), str(self.tls.client_key))
        try:
            resp = httpx.post(self.url + "/v3/maintenance/status", json={}, timeout=timeout, verify=verify)
            data = resp.json()
        except (httpx.HTTPError, ValueError):
            return None
        return {"member_id": data["header"]["member_id"], "leader": data.get("leader", "0")}


class EtcdCluster:
    """`size` etcd members on 127.0.0.1 with free client and peer ports, data under `base`."""

    def __init__(self, base: Path, size: int = 1, *, tls: bool = False) -> None:
        base.mkdir(parents=True, exist_ok=True)
        self.tls = make_tls(base / "tls") if tls else None
        self.members = [EtcdMember(f"m{i}", base / f"m{i}", self.tls) for i in range(size)]

    @property
    def initial_cluster(self) -> str:
        return ",".join(f"{m.name}={m.peer_url}" for m in self.members)

    @property
    def endpoints(self) -> str:
        """``127.0.0.1:p1,127.0.0.1:p2,...``: what ``--store etcd://`` takes."""
        return ",".join(m.address for m in self.members)

    @property
    def store(self) -> str:
        return f"{'etcds' if self.tls else 'etcd'}://{self.endpoints}"

    @property
    def urls(self) -> list[str]:
        return [m.url for m in self.members]

    def start(self, timeout: float = 30.0) -> EtcdCluster:
        for member in self.members:
            member.start(self.initial_cluster)
        self.wait_leader(timeout)
        return self

    def restart(self, member: EtcdMember, timeout: float = 30.0) -> None:
        """Start a killed member again on its data dir; waits until the cluster has a leader."""
        member.start(self.initial_cluster, state="existing")
        self.wait_leader(timeout)

    def leader(self) -> EtcdMember | None:
        """The member that the running members agree leads, or None during an election."""
        ids = {}
        for member in self.members:
            if member.running() and (status := member.status()) is not None:
                ids[status["member_id"]] = (member, status["leader"])
        leaders = {lead for _, lead in ids.values()}
        if len(leaders) != 1:
            return None
        lead = leaders.pop()
        return ids[lead][0] if lead in ids else None

    def wait_leader(self, timeout: float = 30.0) -> EtcdMember:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if (leader := self.leader()) is not None:
                return leader
            time.sleep(0.05)
        logs = "\n".join(m.log.read_text(errors="replace")[-2000:] for m in self.members if m.log.exists())
        raise RuntimeError(f"etcd cluster has no leader after {timeout}s:\n{logs}")

    def stop(self) -> None:
        for member in self.members:
            member.kill(signal.SIGTERM)


_started: list[EtcdCluster] = []


@atexit.register
def _stop_all() -> None:
    for cluster in _started:
        cluster.stop()


def start_etcd(tmp_path: Path, size: int = 1) -> str:
    """Start an etcd cluster under `tmp_path` and return its first client URL (``http://127.0.0.1:p``).

    It stops when the test process exits; use `EtcdCluster` to stop it sooner."""
    cluster = EtcdCluster(tmp_path / "etcd", size).start()
    _started.append(cluster)
    return cluster.members[0].url


@pytest.fixture
def etcd1(tmp_path: Path) -> Iterator[EtcdCluster]:
    """A one-member etcd, stopped after the test."""
    if shutil.which("etcd") is None:
        pytest.fail("etcd is not installed: run scripts/install-test-deps")
    cluster = EtcdCluster(tmp_path / "etcd").start()
    yield cluster
    cluster.stop()


@pytest.fixture
def etcd3(tmp_path: Path) -> Iterator[EtcdCluster]:
    """A three-member etcd cluster on loopback, stopped after the test."""
    if shutil.which("etcd") is None:
        pytest.fail("etcd is not installed: run scripts/install-test-deps")
    cluster = EtcdCluster(tmp_path / "etcd", 3).start()
    yield cluster
    cluster.stop()


def etcdctl(cluster: EtcdCluster, *args: str) -> str:
    """Run etcdctl (API v3) against the cluster; later `--endpoints` in args win."""
    out = subprocess.run(
        ["etcdctl", "--endpoints", cluster.endpoints, *args],
        capture_output=True,
        text=True,
        timeout=20,
        env={**os.environ, "ETCDCTL_API": "3"},
    )
    assert out.returncode == 0, out.stderr
    return out.stdout
