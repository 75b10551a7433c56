"""Agents sharing one catalog through a real etcd cluster: visibility, blocking queries, ownership."""

from __future__ import annotations

import asyncio
import base64
import statistics
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

import dns.message
import dns.query
import httpx
import orjson
import pytest

from tests.integration.etcd_cluster import EtcdCluster, etcd1, etcd3, etcdctl  # noqa: F401
from tests.integration.procs import AgentProcess, wait_for

StartAgent = Callable[..., AgentProcess]
TTL = "3"


def agent_on(start_agent: StartAgent, cluster: EtcdCluster, node: str, store: str = "") -> AgentProcess:
    return start_agent("--store", store or cluster.store, "--node", node, "--etcd-lease-ttl", TTL)


def register(agent: AgentProcess, name: str, sid: str, port: int = 80, **extra: object) -> httpx.Response:
    body = {"Name": name, "ID": sid, "Port": port, "Address": "10.0.0.1", **extra}
    return httpx.put(agent.url + "/v1/agent/service/register", json=body, timeout=10)


def ids(agent: AgentProcess, name: str) -> set[str]:
    r = httpx.get(f"{agent.url}/v1/health/service/{name}", timeout=5)
    assert r.status_code == 200, r.text
    return {e["Service"]["ID"] for e in r.json()}


async def test_registration_on_a_is_visible_on_b_and_wakes_its_watchers(
    etcd3: EtcdCluster,  # noqa: F811
    start_agent: StartAgent,
) -> None:
    """A registration through agent A shows on agent B, and a blocking query on B wakes soon after it."""
    a = agent_on(start_agent, etcd3, "a")
    b = agent_on(start_agent, etcd3, "b")
    assert register(a, "web", "web-1").status_code == 200
    wait_for(lambda: ids(b, "web") == {"web-1"}, timeout=5, what="web-1 on agent b")
    lags = []
    async with httpx.AsyncClient(timeout=30) as http:
        entry = (await http.get(b.url + "/v1/health/service/web")).json()[0]
        assert entry["Service"]["Address"] == "10.0.0.1"
        # The instance belongs to the node of the agent that accepted it, as in Consul.
        assert entry["Node"]["Node"] == "a"
        assert {c["Node"] for c in entry["Checks"]} == {"a"}
        catalog = (await http.get(b.url + "/v1/catalog/service/web")).json()
        assert [c["Node"] for c in catalog] == ["a"]
        own = (await http.get(a.url + "/v1/health/service/web")).json()[0]
        assert own["Node"]["Node"] == "a" and own["Node"]["ID"] == entry["Node"]["ID"]
        # The same index on both agents: it is etcd's revision.
        index_a = (await http.get(a.url + "/v1/health/service/web")).headers["x-consul-index"]
        index = (await http.get(b.url + "/v1/health/service/web")).headers["x-consul-index"]
        assert index_a == index
        for round_ in range(7):
            watch = asyncio.create_task(
                http.get(b.url + "/v1/health/service/web", params={"index": index, "wait": "20s"})
            )
            await asyncio.sleep(0.2)
            assert not watch.done()
            sent = time.monotonic()
            r = await http.put(
                a.url + "/v1/agent/service/register",
                json={"Name": "web", "ID": "web-1", "Port": 100 + round_, "Address": "10.0.0.1"},
            )
            assert r.status_code == 200
            woke = await watch
            lags.append(time.monotonic() - sent)
            assert woke.json()[0]["Service"]["Port"] == 100 + round_
            assert int(woke.headers["x-consul-index"]) > int(index)
            index = woke.headers["x-consul-index"]
    # Goal: 100 ms from the write on A to B's watcher, median of seven (the write's own round
    # trip through etcd is included); the test machine is shared, so it is asserted at 100 ms
    # on the median only.
    print(f"propagation lags A -> B (s): {sorted(lags)}")
    assert statistics.median(lags) < 0.1, lags


def test_etcd_leader_killed_during_registrations(etcd3: EtcdCluster, start_agent: StartAgent) -> None:  # noqa: F811
    """With the etcd leader killed mid-stream, reads never fail, writes resume, and every 200 sticks."""
    a = agent_on(start_agent, etcd3, "a")
    b = agent_on(start_agent, etcd3, "b")
    ok: list[str] = []
    failed: list[int] = []
    read_errors: list[str] = []
    stop = threading.Event()
    killed_at: list[int] = []

    def reader() -> None:
        with httpx.Client(timeout=5) as http:
            while not stop.is_set():
                for agent in (a, b):
                    try:
                        r = http.get(agent.url + "/v1/health/service/stream")
                        if r.status_code != 200:
                            read_errors.append(f"{r.status_code} {r.text}")
                    except httpx.HTTPError as exc:
                        read_errors.append(repr(exc))
                time.sleep(0.02)

    threads = [threading.Thread(target=reader, daemon=True)]
    threads[0].start()
    deadline = time.monotonic() + 25
    with httpx.Client(timeout=10) as http:
        i = 0
        while time.monotonic() < deadline:
            agent = (a, b)[i % 2]
            sid = f"s-{i}"
            try:
                r = http.put(
                    agent.url + "/v1/agent/service/register",
                    json={"Name": "stream", "ID": sid, "Port": i + 1},
                )
                if r.status_code == 200:
                    ok.append(sid)
                else:
                    assert r.status_code == 503, r.text
                    failed.append(i)
            except httpx.ReadTimeout:
                failed.append(i)
            i += 1
            if i == 40:
                leader = etcd3.wait_leader()
                leader.kill()
                killed_at.append(i)
            if killed_at and len(ok) >= 40 + 40 and i > 120:
                break
            time.sleep(0.01)
    stop.set()
    threads[0].join(10)
    assert killed_at, "the leader was never killed"
    after = [s for s in ok if int(s.split("-")[1]) > killed_at[0]]
    assert len(after) >= 20, (
        f"writes did not resume after re-election ({len(after)} ok, {len(failed)} failed)"
    )
    print(f"leader killed after write {killed_at[0]}: {len(ok)} writes acknowledged, {len(failed)} refused")
    assert not read_errors, read_errors[:5]
    want = set(ok)
    for agent in (a, b):
        wait_for(
            lambda agent=agent: want <= ids(agent, "stream"), timeout=10, what="every acknowledged write"
        )


def test_killed_agent_instances_expire_with_its_lease(etcd1: EtcdCluster, start_agent: StartAgent) -> None:  # noqa: F811
    """After kill -9 of agent A its instances leave B's answers within the lease TTL; B's stay."""
    a = agent_on(start_agent, etcd1, "a")
    b = agent_on(start_agent, etcd1, "b")
    assert register(a, "api", "api-a").status_code == 200
    assert register(b, "api", "api-b").status_code == 200
    wait_for(lambda: ids(b, "api") == {"api-a", "api-b"}, timeout=5, what="both instances on b")
    a.kill()
    killed = time.monotonic()
    wait_for(lambda: ids(b, "api") == {"api-b"}, timeout=15, what="api-a to expire")
    gone_after = time.monotonic() - killed
    assert 1.0 < gone_after < 3 + 6, gone_after  # the TTL is 3 s; etcd checks expiry every 0.5 s
    time.sleep(float(TTL) + 1)  # B keeps its lease alive: its instance outlives several TTLs
    assert ids(b, "api") == {"api-b"}


def test_restarted_agent_keeps_its_registrations(etcd1: EtcdCluster, start_agent: StartAgent) -> None:  # noqa: F811
    """An agent stopped and started again within the TTL adopts its keys, so they do not expire."""
    a = agent_on(start_agent, etcd1, "a")
    b = agent_on(start_agent, etcd1, "b")
    assert register(a, "db", "db-1", Check={"TTL": "60s"}).status_code == 200
    a.stop()
    a.start()
    time.sleep(float(TTL) * 2)
    assert ids(b, "db") == {"db-1"}
    assert httpx.get(a.url + "/v1/agent/checks").json()["service:db-1"]["Status"] == "critical"


def test_lost_lease_is_renewed_and_own_keys_put_back(etcd1: EtcdCluster, start_agent: StartAgent) -> None:  # noqa: F811
    """An agent frozen past its lease TTL loses its instances, then puts them back when it wakes."""
    import signal

    a = agent_on(start_agent, etcd1, "a")
    b = agent_on(start_agent, etcd1, "b")
    assert register(a, "cache", "cache-1").status_code == 200
    wait_for(lambda: ids(b, "cache") == {"cache-1"}, timeout=5, what="cache-1 on b")
    assert a.proc is not None
    a.proc.send_signal(signal.SIGSTOP)
    try:
        wait_for(lambda: ids(b, "cache") == set(), timeout=15, what="cache-1 to expire while a is frozen")
    finally:
        a.proc.send_signal(signal.SIGCONT)
    wait_for(lambda: ids(b, "cache") == {"cache-1"}, timeout=10, what="a to put cache-1 back")
    assert ids(a, "cache") == {"cache-1"}


def test_plain_client_instances_are_discovered_and_vanish_with_their_lease(
    etcd1: EtcdCluster,  # noqa: F811
    start_agent: StartAgent,
) -> None:
    """Instances put under /services/ with a lease by etcdctl or the gateway show on B and go with it."""
    b = agent_on(start_agent, etcd1, "b")
    lease = etcdctl(etcd1, "lease", "grant", "2").split()[1]
    etcdctl(etcd1, "put", "--lease", lease, "/services/legacy/legacy-1", '{"host": "10.1.2.3", "port": 8080}')
    url = etcd1.members[0].url
    grant = httpx.post(url + "/v3/lease/grant", json={"TTL": 30}).json()
    httpx.post(
        url + "/v3/kv/put",
        json={
            "key": base64.b64encode(b"/services/legacy/legacy-2").decode(),
            "value": base64.b64encode(b'{"host": "10.1.2.4", "port": 8081}').decode(),
            "lease": grant["ID"],
        },
    ).raise_for_status()
    wait_for(lambda: ids(b, "legacy") == {"legacy-1", "legacy-2"}, timeout=5, what="plain instances on b")
    entries = {e["ServiceID"]: e for e in httpx.get(b.url + "/v1/catalog/service/legacy").json()}
    assert (entries["legacy-1"]["ServiceAddress"], entries["legacy-1"]["ServicePort"]) == ("10.1.2.3", 8080)
    host, port = b.dns_host_port  # and through B's DNS
    query = dns.message.make_query("legacy.service.consul.", "A")
    answer = dns.query.udp(query, host, port=port, timeout=3)
    assert {rr.address for rrset in answer.answer for rr in rrset} == {"10.1.2.3", "10.1.2.4"}
    # legacy-1's lease (2 s) is not kept alive: it vanishes; revoking legacy-2's lease removes it.
    wait_for(lambda: ids(b, "legacy") == {"legacy-2"}, timeout=10, what="legacy-1 to expire")
    httpx.post(url + "/v3/lease/revoke", json={"ID": grant["ID"]}).raise_for_status()
    wait_for(lambda: ids(b, "legacy") == set(), timeout=5, what="legacy-2 to go with its revoked lease")
    assert not dns.query.udp(query, host, port=port, timeout=3).answer


def test_etcd_unreachable_reads_stale_writes_fail_fast(etcd1: EtcdCluster, start_agent: StartAgent) -> None:  # noqa: F811
    """With etcd down, reads answer with KnownLeader false and growing LastContact; writes get a fast 503."""
    a = agent_on(start_agent, etcd1, "a")
    assert register(a, "pay", "pay-1").status_code == 200
    r = httpx.get(a.url + "/v1/health/service/pay")
    assert r.headers["x-consul-knownleader"] == "true"
    member = etcd1.members[0]
    member.kill()
    first = httpx.get(a.url + "/v1/health/service/pay")
    time.sleep(1.0)
    second = httpx.get(a.url + "/v1/health/service/pay")
    for resp in (first, second):
        assert resp.status_code == 200
        assert [e["Service"]["ID"] for e in resp.json()] == ["pay-1"]
    wait_for(
        lambda: httpx.get(a.url + "/v1/health/service/pay").headers["x-consul-knownleader"] == "false",
        timeout=5,
        what="KnownLeader false",
    )
    assert int(second.headers["x-consul-lastcontact"]) >= int(first.headers["x-consul-lastcontact"]) + 500
    started = time.monotonic()
    bad = register(a, "pay", "pay-2", Check={"TTL": "10s"}, Checks=[{"CheckID": "extra", "TTL": "10s"}])
    assert time.monotonic() - started < 2.0
    assert bad.status_code == 503
    assert "etcd" in bad.text and "unreachable" in bad.text
    # Back up: the failed registration left nothing behind, neither instance nor checks.
    etcd1.restart(member)
    wait_for(
        lambda: httpx.get(a.url + "/v1/health/service/pay").headers["x-consul-knownleader"] == "true",
        timeout=10,
        what="KnownLeader true again",
    )
    keys = etcdctl(etcd1, "get", "--prefix", "--keys-only", "/").split()
    assert "/services/pay/pay-2" not in keys
    assert not [k for k in keys if "pay-2" in k or k.endswith("/extra")]
    assert register(a, "pay", "pay-3").status_code == 200
    assert ids(a, "pay") == {"pay-1", "pay-3"}


def test_compacted_history_reloads_from_a_snapshot(etcd3: EtcdCluster, start_agent: StartAgent) -> None:  # noqa: F811
    """An agent whose only etcd member was away while history was compacted catches up from a snapshot."""
    leader = etcd3.wait_leader()
    m2 = next(m for m in etcd3.members if m is not leader)  # b's only member; killing it keeps the leader
    m0, m1 = (m for m in etcd3.members if m is not m2)
    a = start_agent("--store", f"etcd://{m0.address},{m1.address}", "--node", "a", "--etcd-lease-ttl", "10")
    b = start_agent("--store", f"etcd://{m2.address}", "--node", "b", "--etcd-lease-ttl", "10")
    assert register(a, "q", "q-1").status_code == 200
    assert register(a, "q", "q-2").status_code == 200
    wait_for(lambda: ids(b, "q") == {"q-1", "q-2"}, timeout=5, what="both on b")
    m2.kill()
    assert httpx.put(a.url + "/v1/agent/service/deregister/q-1", timeout=10).status_code == 200
    assert register(a, "q", "q-3").status_code == 200
    revision = orjson.loads(etcdctl(etcd3, "--endpoints", m0.address, "get", "/", "-w", "json"))["header"]
    etcdctl(etcd3, "--endpoints", m0.address, "compaction", str(revision["revision"]))
    etcd3.restart(m2)
    wait_for(lambda: ids(b, "q") == {"q-2", "q-3"}, timeout=15, what="b to reload after compaction")
    assert "compacted" in b.output()


@pytest.mark.parametrize("spec", ["etcd://", "etcd://,"])
def test_store_address_without_endpoint_is_refused(spec: str, start_agent: StartAgent) -> None:
    """`--store etcd://` without an endpoint stops the agent with a clear message."""
    with pytest.raises(RuntimeError, match="no etcd endpoint"):
        start_agent("--store", spec, "--node", "x")


def test_agent_authenticates_to_etcd_with_username_and_password(
    etcd1: EtcdCluster,  # noqa: F811
    start_agent: StartAgent,
) -> None:
    """With etcd authentication on, an agent given --etcd-username/--etcd-password registers and reads."""
    etcdctl(etcd1, "user", "add", "root:secret-pw")
    etcdctl(etcd1, "auth", "enable")
    denied = httpx.post(etcd1.members[0].url + "/v3/kv/range", json={"key": base64.b64encode(b"/").decode()})
    assert denied.status_code != 200  # etcd now refuses anonymous requests
    a = start_agent(
        "--store", etcd1.store, "--node", "a", "--etcd-lease-ttl", TTL,
        "--etcd-username", "root", "--etcd-password", "secret-pw",
    )  # fmt: skip
    assert register(a, "sec", "sec-1").status_code == 200
    assert ids(a, "sec") == {"sec-1"}
    out = etcdctl(etcd1, "--user", "root:secret-pw", "get", "/services/sec/sec-1", "--print-value-only")
    assert orjson.loads(out)["port"] == 80


def test_agent_talks_to_etcd_over_mutual_tls(tmp_path: Path, start_agent: StartAgent) -> None:
    """With etcds:// and a CA, client certificate and key, an agent registers and reads over TLS."""
    cluster = EtcdCluster(tmp_path / "etcd-tls", tls=True).start()
    try:
        tls = cluster.tls
        assert tls is not None
        plain = subprocess.run(
            ["etcdctl", "--endpoints", cluster.members[0].url, "--cacert", str(tls.ca), "get", "/"],
            capture_output=True,
            timeout=20,
        )
        assert plain.returncode != 0  # no client certificate: refused
        a = start_agent(
            "--store", cluster.store, "--node", "a", "--etcd-lease-ttl", TTL,
            "--etcd-ca-file", str(tls.ca),
            "--etcd-cert-file", str(tls.client_cert),
            "--etcd-key-file", str(tls.client_key),
        )  # fmt: skip
        assert register(a, "tls", "tls-1").status_code == 200
        assert ids(a, "tls") == {"tls-1"}
    finally:
        cluster.stop()


def test_watch_moves_off_a_hung_member(etcd3: EtcdCluster, start_agent: StartAgent) -> None:  # noqa: F811
    """When the member an agent watches through hangs, the agent resumes its watch on another member."""
    leader = etcd3.wait_leader()
    hung = next(m for m in etcd3.members if m is not leader)
    other = next(m for m in etcd3.members if m is not hung)
    a = start_agent("--store", f"etcd://{leader.address}", "--node", "a", "--etcd-lease-ttl", "10")
    b = start_agent(
        "--store", f"etcd://{hung.address},{other.address}", "--node", "b", "--etcd-lease-ttl", "10"
    )
    assert register(a, "h", "h-1").status_code == 200
    wait_for(lambda: ids(b, "h") == {"h-1"}, timeout=5, what="h-1 on b")
    hung.pause()
    try:
        assert register(a, "h", "h-2").status_code == 200
        wait_for(lambda: ids(b, "h") == {"h-1", "h-2"}, timeout=10, what="b to resume its watch elsewhere")
    finally:
        hung.resume()
