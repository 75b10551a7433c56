"""A real agent's DNS server under random and mutated packets, over UDP and TCP: it keeps answering."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import dns.message
import dns.query
import dns.rcode
import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.integration.procs import AgentProcess

VALID = dns.message.make_query("web.service.consul.", "A", use_edns=0).to_wire()
SRV = dns.message.make_query("_web._tcp.service.consul.", "SRV").to_wire()


@pytest.fixture(scope="module")
def agent(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AgentProcess]:
    """One agent with one registered instance of web."""
    proc = AgentProcess(tmp_path_factory.mktemp("dnsfuzz") / "agent", "--k8s-zone", "cluster.local").start()
    try:
        body = {"ID": "web1", "Name": "web", "Address": "10.0.0.1", "Port": 80}
        assert httpx.put(proc.url + "/v1/agent/service/register", json=body).status_code == 200
        yield proc
    finally:
        proc.stop()


def still_answers(agent: AgentProcess) -> None:
    host, port = agent.dns_host_port
    query = dns.message.make_query("web.service.consul.", "A")
    for response in (
        dns.query.udp(query, host, port=port, timeout=5),
        dns.query.tcp(query, host, port=port, timeout=5),
    ):
        assert response.rcode() == dns.rcode.NOERROR
        assert [rd.to_text() for rrset in response.answer for rd in rrset] == ["10.0.0.1"]


def mutate(base: bytes, flips: list[tuple[int, int]], cut: int, tail: bytes) -> bytes:
    packet = bytearray(base)
    for where, value in flips:
        packet[where % len(packet)] = value
    return bytes(packet[: cut % (len(packet) + 1)]) + tail


packets = st.one_of(
    st.binary(max_size=700),
    st.builds(
        mutate,
        st.sampled_from([VALID, SRV]),
        st.lists(st.tuples(st.integers(0, 200), st.integers(0, 255)), max_size=8),
        st.integers(0, 200),
        st.binary(max_size=30),
    ),
)

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@FUZZ
@given(packet=packets)
def test_udp_fuzz(agent: AgentProcess, packet: bytes) -> None:
    """Arbitrary datagrams get a reply or silence, never a dead server."""
    host, port = agent.dns_host_port
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(0.5)
        sock.sendto(packet, (host, port))
        sock.sendto(VALID, (host, port))
        replies = []
        try:
            while True:
                reply = sock.recv(65535)
                replies.append(reply)
                if reply[:2] == VALID[:2] and len(reply) > 12 and reply[3] & 0x0F == 0:
                    break
        except TimeoutError:
            pass
    assert any(r[:2] == VALID[:2] and r[3] & 0x0F == 0 for r in replies), replies


@FUZZ
@given(packet=packets, length_delta=st.integers(-3, 3))
def test_tcp_fuzz(agent: AgentProcess, packet: bytes, length_delta: int) -> None:
    """Arbitrary TCP messages (including wrong length prefixes) never stall the server."""
    host, port = agent.dns_host_port
    with socket.create_connection((host, port), timeout=2) as sock:
        size = max(0, min(65535, len(packet) + length_delta))
        sock.sendall(size.to_bytes(2, "big") + packet)
    with socket.create_connection((host, port), timeout=5) as sock:
        sock.sendall(len(VALID).to_bytes(2, "big") + VALID)
        size = int.from_bytes(recv_exactly(sock, 2), "big")
        reply = recv_exactly(sock, size)
    assert reply[:2] == VALID[:2] and reply[3] & 0x0F == 0


def recv_exactly(sock: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        assert chunk, "connection closed"
        data += chunk
    return data


def test_named_attacks(agent: AgentProcess) -> None:
    """Truncated headers, label floods, compression loops and a flood of junk leave the server answering."""
    host, port = agent.dns_host_port
    header = VALID[:12]
    attacks = [
        b"",
        b"\x00",
        VALID[:11],
        header,
        header[:4] + b"\xff\xff\xff\xff\xff\xff\xff\xff",  # huge counts, no records
        header + b"\x01a" * 200 + b"\x00\x00\x01\x00\x01",  # 200 labels: a name over 255 bytes
        header + b"\x3f" + b"a" * 63 + b"\xc0\x0c\x00\x01\x00\x01",  # pointer back to itself: a loop
        header + b"\xc0\x0c\x00\x01\x00\x01",
        header + b"\x40abc\x00\x00\x01\x00\x01",  # reserved label type
        VALID[:2] + b"\x81\x00" + VALID[4:],  # a response: must not be answered
    ]
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        for _ in range(50):
            for attack in attacks:
                sock.sendto(attack, (host, port))
    with socket.create_connection((host, port), timeout=2) as sock:
        sock.sendall(b"\xff\xff" + b"partial")  # a message that never completes
        still_answers(agent)
    still_answers(agent)
