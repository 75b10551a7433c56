"""The per-query path: read the question straight from the bytes, reuse a precomputed answer.

Sans-IO: `Responder.respond(packet, tcp=...)` returns the bytes to send back, a `Forward` for the
shell to pass to a recursor, or None (stay silent). No dnspython call is made for a common query
whose answer is cached: the question is parsed by hand (one question, optionally one OPT record),
the cache key is (lower-cased name, type and class, size limit, EDNS, DO), and the answer is the
cached wire bytes with the query's ID, RD bit and question (so its letter case) spliced in.

Each cache entry remembers the catalog topic its answer came from and that topic's revision; a
change to the service moves the revision and the next query rebuilds the entry. Nothing expires
on a timer. An entry holds a few rotations of the answer, rendered once each, and successive
queries take them in turn, so clients that use the first record spread over the instances.

Everything unusual (EDNS version > 0, several questions, compression in the question, other
opcodes, trailing bytes) goes to dnspython, which also decides FORMERR for garbage.
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.opcode
import dns.rcode
import dns.rdataclass
import dns.rdatatype

from roost.catalog.state import CatalogState
from roost.dns.answer import Answer, Edns, Settings, lookup, render

log = logging.getLogger("roost.dns")

ROTATIONS = 16  # rendered orders per answer; an answer of n units gets min(n, ROTATIONS)
MAX_ENTRIES = 20_000  # the cache is cleared when it grows past this (e.g. random-name floods)
TCP_LIMIT = 65535
MAX_UDP = 4096  # the largest UDP answer we send, whatever the client's EDNS payload says

_COUNTS_PLAIN = b"\x00\x01\x00\x00\x00\x00\x00\x00"  # QD=1, AN=0, NS=0, AR=0
_COUNTS_EDNS = b"\x00\x01\x00\x00\x00\x00\x00\x01"  # ... AR=1: the OPT record
_UNCACHED_TYPES = {dns.rdatatype.AXFR, dns.rdatatype.IXFR, dns.rdatatype.OPT}


@dataclass(frozen=True, slots=True)
class Forward:
    """Outside our zones with a recursor configured: the shell forwards `query` and relays the reply."""

    query: dns.message.Message


def parse_query(data: bytes) -> tuple[int, int, int] | None:
    """The common query, read by hand: (end of the question name, EDNS payload or 0, DO bit).

    None for anything else (the caller falls back to dnspython): a response, an opcode other than
    QUERY, counts other than one question and at most one additional record, compression or an
    over-long name in the question, an additional record that is not a version-0 OPT, trailing
    bytes."""
    n = len(data)
    if n < 17 or data[2] & 0xF8:  # QR set, or an opcode other than QUERY
        return None
    counts = data[4:12]
    if counts != _COUNTS_PLAIN and counts != _COUNTS_EDNS:
        return None
    i = 12
    while True:
        if i >= n:
            return None
        length = data[i]
        if length == 0:
            break
        if length > 63:  # a compression pointer or a reserved label type
            return None
        i += length + 1
    name_end = i + 1
    if name_end - 12 > 255:
        return None
    qend = name_end + 4
    if counts == _COUNTS_PLAIN:
        return (name_end, 0, 0) if qend == n else None
    # OPT: root name, type 41, class = payload, TTL = ext-rcode, version, flags; rdlen; options
    if qend + 11 > n or data[qend] != 0 or data[qend + 1 : qend + 3] != b"\x00\x29":
        return None
    if data[qend + 5] != 0 or data[qend + 6] != 0:  # extended rcode, version 0 only
        return None
    if qend + 11 + int.from_bytes(data[qend + 9 : qend + 11], "big") != n:
        return None
    payload = int.from_bytes(data[qend + 3 : qend + 5], "big") or 1  # 0 still means EDNS
    return name_end, payload, data[qend + 7] >> 7


class _Entry:
    __slots__ = ("forward", "heads", "revision", "tails", "topic")

    def __init__(
        self,
        topic: str | None,
        revision: int,
        heads: list[tuple[bytes, bytes]],
        tails: list[bytes],
        forward: bool,
    ) -> None:
        self.topic = topic
        self.revision = revision
        self.heads = heads  # per rotation: header bytes 2..12 with RD clear, and with RD set
        self.tails = tails  # per rotation: everything after the question
        self.forward = forward


class _Exact:
    __slots__ = ("entry", "replies", "turn")

    def __init__(self, entry: _Entry, replies: list[bytes]) -> None:
        self.entry = entry
        self.replies = replies  # per rotation: the whole reply after the ID
        self.turn = 1 % len(replies)  # replies[0] went out with the query that made this


class Responder:
    """Answers DNS packets from a catalog state. One per agent; no I/O, no clock."""

    def __init__(self, state: CatalogState, settings: Settings, *, max_entries: int = MAX_ENTRIES) -> None:
        self.state = state
        self.settings = settings
        self.max_entries = max_entries
        self._cache: dict[tuple[bytes, bytes, int, int], _Entry] = {}
        # The same answers by the query's exact bytes after the ID (letter case, flags, EDNS
        # options and all): one dict lookup on the hot path, nothing parsed.
        self._exact_udp: dict[bytes, _Exact] = {}
        self._exact_tcp: dict[bytes, _Exact] = {}
        self._random = random.Random()
        self.hits = 0
        self.misses = 0

    def respond(self, data: bytes, *, tcp: bool = False) -> bytes | Forward | None:
        """The reply to one packet (without TCP's length prefix)."""
        # Fastest: these exact bytes (all but the ID) were answered before and still hold.
        exact = (self._exact_tcp if tcp else self._exact_udp).get(data[2:])
        if exact is not None:
            hit = exact.entry
            if hit.topic is None or self.state.topics.revision(hit.topic) == hit.revision:
                self.hits += 1
                turn = exact.turn
                exact.turn = turn + 1 if turn + 1 < len(exact.replies) else 0
                return data[:2] + exact.replies[turn]
        parsed = parse_query(data)
        if parsed is None:
            return self._slow(data, tcp)
        name_end, payload, do = parsed
        qend = name_end + 4
        limit = TCP_LIMIT if tcp else min(max(payload, 512), MAX_UDP)
        # payload 0: no EDNS; otherwise bit 0 carries DO, the rest says EDNS is on
        key = (data[12:name_end].lower(), data[name_end:qend], limit, (2 | do) if payload else 0)
        entry = self._cache.get(key)
        if entry is None or (
            entry.topic is not None and self.state.topics.revision(entry.topic) != entry.revision
        ):
            entry = self._build(key)
            if entry is None:
                return self._slow(data, tcp)
        else:
            self.hits += 1
        if entry.forward:
            return self._slow(data, tcp)
        rd = data[2] & 1
        question = data[12:qend]
        replies = [head[rd] + question + tail for head, tail in zip(entry.heads, entry.tails, strict=True)]
        exacts = self._exact_tcp if tcp else self._exact_udp
        if len(exacts) >= self.max_entries:
            exacts.clear()
        exacts[data[2:]] = _Exact(entry, replies)
        return data[:2] + replies[0]

    # -- building entries ------------------------------------------------------------------------

    def _build(self, key: tuple[bytes, bytes, int, int]) -> _Entry | None:
        name_wire, type_class, limit, edns_bits = key
        qtype = int.from_bytes(type_class[:2], "big")
        qclass = int.from_bytes(type_class[2:], "big")
        if qtype in _UNCACHED_TYPES:
            return None
        try:
            qname, _ = dns.name.from_wire(name_wire, 0)
        except dns.exception.DNSException:
            return None
        self.misses += 1
        answer = self._answer(qname, qtype, qclass)
        topic = answer.topic
        revision = self.state.topics.revision(topic) if topic is not None else 0
        edns = Edns(limit, bool(edns_bits & 1)) if edns_bits else None
        heads: list[tuple[bytes, bytes]] = []
        tails: list[bytes] = []
        if not answer.forward:
            qend = 12 + len(name_wire) + 4
            for order in self._orders(len(answer.units)):
                wire = render(
                    answer,
                    qname,
                    qtype,
                    qclass,
                    order=order,
                    edns=edns,
                    limit=limit,
                    ra=self.settings.recursion,
                )
                head = wire[2:12]
                heads.append((head, bytes([head[0] | 0x01]) + head[1:]))
                tails.append(wire[qend:])
        if len(self._cache) >= self.max_entries:
            self._cache.clear()
        entry = _Entry(topic, revision, heads, tails, answer.forward)
        self._cache[key] = entry
        return entry

    def _answer(self, qname: dns.name.Name, qtype: int, qclass: int) -> Answer:
        if qclass != dns.rdataclass.IN:
            return Answer(dns.rcode.REFUSED, authoritative=False)
        return lookup(self.state, self.settings, qname, qtype)

    def _orders(self, n: int) -> list[list[int]]:
        """Rotations of one random order: every unit leads equally often (for n <= ROTATIONS)."""
        if n <= 1:
            return [list(range(n))]
        base = list(range(n))
        self._random.shuffle(base)
        k = min(n, ROTATIONS)
        return [base[off:] + base[:off] for off in (i * n // k for i in range(k))]

    # -- the unusual query: dnspython all the way ------------------------------------------------

    def _slow(self, data: bytes, tcp: bool) -> bytes | Forward | None:
        if len(data) < 12 or data[2] & 0x80:
            return None  # no header, or a response: never answer those (no reflection loops)
        try:
            query = dns.message.from_wire(data)
        except Exception:
            return _error(data, dns.rcode.FORMERR)
        if query.opcode() != dns.opcode.QUERY:
            return _error(data, dns.rcode.NOTIMP)
        if len(query.question) != 1:
            return _error(data, dns.rcode.FORMERR)
        if query.edns > 0:
            response = dns.message.make_response(query)
            response.use_edns(0, 0, 1232)
            response.set_rcode(dns.rcode.BADVERS)
            return response.to_wire()
        question = query.question[0]
        if question.rdtype in _UNCACHED_TYPES:
            return _error(
                data, dns.rcode.REFUSED if question.rdtype != dns.rdatatype.OPT else dns.rcode.FORMERR
            )
        answer = self._answer(question.name, question.rdtype, question.rdclass)
        if answer.forward:
            return Forward(query)
        edns = None
        limit = TCP_LIMIT if tcp else 512
        if query.edns == 0:
            payload = max(512, min(query.payload, MAX_UDP))
            edns = Edns(payload, bool(query.ednsflags & dns.flags.DO))
            limit = TCP_LIMIT if tcp else payload
        order = self._random.sample(range(len(answer.units)), len(answer.units))
        wire = bytearray(
            render(
                answer,
                question.name,
                question.rdtype,
                question.rdclass,
                order=order,
                edns=edns,
                limit=limit,
                ra=self.settings.recursion,
            )
        )
        wire[0:2] = data[0:2]
        wire[2] |= data[2] & 0x01
        return bytes(wire)


def _error(data: bytes, rcode: int) -> bytes:
    """A header-only reply: the query's ID, opcode and RD, QR set, `rcode`, no records."""
    return data[:2] + bytes([0x80 | (data[2] & 0x79), rcode & 0x0F]) + b"\x00" * 8


def servfail(data: bytes) -> bytes | None:
    """SERVFAIL for a query whose header we can read (the shell's last resort)."""
    if len(data) < 12 or data[2] & 0x80:
        return None
    return _error(data, dns.rcode.SERVFAIL)
