"""The DNS core against arbitrary bytes: it returns bytes or None, never raises, and keeps answering."""

from __future__ import annotations

import dns.message
import dns.rcode
from hypothesis import given, settings
from hypothesis import strategies as st

from roost.catalog.state import CatalogState
from roost.config import AgentConfig
from roost.dns.answer import Settings
from roost.dns.cache import Forward, Responder

RESPONDER = Responder(CatalogState("n1"), Settings.from_config(AgentConfig(node_name="n1", k8s_zone="k8s")))
VALID = dns.message.make_query("n1.node.consul.", "A", use_edns=0).to_wire()


def check(packet: bytes) -> None:
    reply = RESPONDER.respond(packet)
    assert reply is None or isinstance(reply, bytes | Forward)
    if isinstance(reply, bytes):
        assert len(reply) >= 12 and reply[:2] == packet[:2]
    good = RESPONDER.respond(VALID)
    assert isinstance(good, bytes) and dns.message.from_wire(good).rcode() == dns.rcode.NOERROR


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=600))
def test_random_bytes(packet: bytes) -> None:
    """Random bytes never raise, and a valid query is answered afterwards."""
    check(packet)


@settings(max_examples=500, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, len(VALID) - 1), st.integers(0, 255)), min_size=1, max_size=8),
    st.integers(0, len(VALID)),
    st.binary(max_size=40),
)
def test_mutated_queries(flips: list[tuple[int, int]], cut: int, tail: bytes) -> None:
    """A valid query with bytes changed, cut short or extended never raises."""
    packet = bytearray(VALID)
    for where, value in flips:
        packet[where] = value
    check(bytes(packet[:cut]) + tail)
