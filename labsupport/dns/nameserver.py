"""The lab's authoritative DNS server, on dnspython, over UDP and TCP on loopback.

It answers from a :class:`~labsupport.dns.zone.ZoneSet` the way an authoritative server
should: the AA flag on answers from its zones, NXDOMAIN and NODATA with the zone's SOA
in the authority section (RFC 2308), REFUSED for names outside its zones, TC over UDP
when an answer does not fit so that the client retries over TCP (RFC 1035 section
4.2.1, RFC 7766), EDNS(0) answered as RFC 6891 asks. Its zones are signed (DNSSEC,
:mod:`labsupport.dns.dnssec_sign`): it answers DNSKEY and DS questions, and adds RRSIG
and NSEC records only when the query sets the DO bit (RFC 3225, RFC 4035 section 3.1);
without DO its answers are those of an unsigned server. A malformed packet never stops
it: it answers FORMERR when the packet has a header to answer, stays silent otherwise,
and counts it in the query log. On a shared host it asks who sent each query
(:func:`labsupport.core.peers.check_transport`): a process of another local user gets
REFUSED (RFC 1035 section 4.1.1: "refuses to perform the specified operation for policy
reasons"), over UDP for every datagram, over TCP for the first query, and then the
connection is closed; the query log says so.

Introduced in ``notebooks/01-dns-mx.ipynb``.
"""

from __future__ import annotations

import asyncio
import socket
import struct
from collections import Counter, deque
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import dns.edns
import dns.exception
import dns.flags
import dns.message
import dns.opcode
import dns.rcode
import dns.rdataclass
import dns.rdatatype

from ..core.clock import LabClock
from ..core.peers import PeerCheck, check_transport
from ..core.results import EventLog, html_table, text_table
from .zone import ZoneSet

if TYPE_CHECKING:
    from .dnssec_sign import ZoneSigner

#: RFC 1035 section 4.2.1: a UDP message without EDNS carries at most 512 octets.
CLASSIC_UDP_SIZE = 512
#: The UDP payload size this server offers and honours with EDNS(0): the 2020 DNS Flag
#: Day value, which avoids IP fragmentation (RFC 9715 recommends the same order).
EDNS_UDP_SIZE = 1232
#: RFC 7766 section 6.2.3: close idle TCP connections; seconds.
TCP_IDLE_TIMEOUT = 10.0
#: Query flags a response echoes (RFC 1035 section 4.1.1: RD; RFC 4035: CD).
_ECHOED_FLAGS = dns.flags.RD | dns.flags.CD
#: The opcode's four bits in the flags word of a header (RFC 1035 section 4.1.1).
_OPCODE_BITS = 0x7800
#: Types only a signed zone answers (RFC 4034): DNSKEY, RRSIG, NSEC, DS.
_DNSSEC_TYPES = frozenset({dns.rdatatype.DNSKEY, dns.rdatatype.RRSIG, dns.rdatatype.NSEC,
                           dns.rdatatype.DS})
#: How many distinct replies the server keeps ready before starting afresh.
_REPLY_CACHE_SIZE = 4096


@dataclass(frozen=True)
class QueryLogEntry:
    """One line of the query log: what was asked, by whom, and the answer code."""

    time: float
    client: str
    transport: str
    qname: str
    qtype: str
    rcode: str
    answers: int
    note: str = ""

    def as_row(self) -> list[object]:
        stamp = datetime.fromtimestamp(self.time, tz=UTC).strftime("%H:%M:%S.%f")[:-3]
        return [stamp, self.client, self.transport, self.qname, self.qtype, self.rcode,
                self.answers, self.note]

    def __str__(self) -> str:
        stamp, client, transport, qname, qtype, rcode, answers, note = self.as_row()
        line = f"{stamp} {client} {transport} {qname} {qtype} -> {rcode}, {answers} answer(s)"
        return f"{line} ({note})" if note else line


class QueryLog(EventLog[QueryLogEntry]):
    """The server's log: the most recent queries, and counters since start or reset."""

    HEADERS = ["time (UTC)", "client", "via", "name", "type", "answer code", "answers", "note"]

    def __init__(self, maxlen: int = 2000) -> None:
        super().__init__(maxlen)
        self.counts: Counter[str] = Counter()

    def _counted(self, entry: QueryLogEntry) -> None:
        self.counts["queries"] += 1
        self.counts[entry.rcode] += 1
        if entry.note.startswith("malformed"):
            self.counts["malformed"] += 1

    def _cleared(self) -> None:
        self.counts.clear()

    @property
    def malformed(self) -> int:
        return self.counts["malformed"]

    def tail(self, last: int = 10) -> QueryLogView:
        """The last entries, as an object that renders as a table."""
        return QueryLogView(self.entries(last))

    def _repr_html_(self) -> str:
        return self.tail(20)._repr_html_()

    def __str__(self) -> str:
        return str(self.tail(20))


@dataclass(frozen=True)
class QueryLogView:
    """Some query-log entries, rendered as a table."""

    entries: list[QueryLogEntry]

    def __str__(self) -> str:
        return text_table(QueryLog.HEADERS, [e.as_row() for e in self.entries])

    __repr__ = __str__

    def _repr_html_(self) -> str:
        return html_table(QueryLog.HEADERS, [e.as_row() for e in self.entries])


class DNSServer:
    """An authoritative server for ``zones`` on ``host``:``port`` (UDP and TCP).

    ``start()`` runs on an asyncio loop that the caller owns (the lab's background
    thread); port 0 asks the system for a free port, and TCP then takes the same number.
    ``dnssec`` is the :class:`~labsupport.dns.dnssec_sign.ZoneSigner` that signs the
    zones (True: one on this server's clock, made on the first DNSSEC question, with its
    keys kept in ``dnssec_keys`` if given, else fresh keys; False: no DNSSEC).
    """

    def __init__(
        self,
        zones: ZoneSet,
        host: str = "127.0.0.1",
        port: int = 0,
        clock: LabClock | None = None,
        dnssec: ZoneSigner | bool = True,
        dnssec_keys: Path | None = None,
    ) -> None:
        self.zones = zones
        self.host = host
        self.requested_port = port
        self.port = 0
        self.clock = clock or LabClock()
        self._dnssec: ZoneSigner | bool = dnssec
        self._dnssec_keys = dnssec_keys
        self.log = QueryLog()
        #: The latest queries refused because another user sent them.
        self.refused: deque[PeerCheck] = deque(maxlen=20)
        self._udp: asyncio.DatagramTransport | None = None
        self._tcp: asyncio.base_events.Server | None = None
        self._tcp_writers: set[asyncio.StreamWriter] = set()
        self._tcp_tasks: set[asyncio.Task[None]] = set()
        self._replies: dict[tuple[object, ...], tuple[bytes, str, int, str]] = {}

    @property
    def dnssec(self) -> ZoneSigner | None:
        """The signer of this server's zones (made on first use), or None: no DNSSEC."""
        if self._dnssec is True:
            from .dnssec_sign import ZoneSigner  # dns.dnssec loads only when first needed

            self._dnssec = ZoneSigner(self.zones, clock=self.clock, key_dir=self._dnssec_keys)
        return None if isinstance(self._dnssec, bool) else self._dnssec

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        for _attempt in range(20):
            transport, _ = await loop.create_datagram_endpoint(
                lambda: _UDPProtocol(self), local_addr=(self.host, self.requested_port)
            )
            port = transport.get_extra_info("sockname")[1]
            try:
                self._tcp = await asyncio.start_server(
                    self._serve_tcp, self.host, port, reuse_address=True
                )
            except OSError:
                transport.close()
                if self.requested_port:
                    raise
                continue  # TCP port of that number is taken: pick another pair
            self._udp = transport  # type: ignore[assignment]
            self.port = port
            return
        raise OSError("could not find a free port for both UDP and TCP")

    async def stop(self) -> None:
        if self._udp is not None:
            self._udp.close()
            self._udp = None
        if self._tcp is not None:
            self._tcp.close()
            for writer in list(self._tcp_writers):
                writer.close()
            # Let the closed connections' tasks end before the caller stops the loop;
            # otherwise they are destroyed pending ("Task was destroyed but it is pending!").
            if self._tcp_tasks:
                _done, pending = await asyncio.wait(list(self._tcp_tasks), timeout=2.0)
                for task in pending:
                    task.cancel()
            await self._tcp.wait_closed()
            self._tcp = None

    # -- answering ----------------------------------------------------------------------

    def answer_safely(self, wire: bytes, client: str, transport: str) -> bytes | None:
        """:meth:`answer`, but a bug of ours becomes SERVFAIL and a log line, never a
        stopped server or a client left waiting."""
        try:
            return self.answer(wire, client, transport)
        except Exception as exc:  # noqa: BLE001 - one packet must never stop the server
            self._record(client, transport, "?", "?", "SERVFAIL", 0,
                         f"internal error: {type(exc).__name__}: {exc}")
            if len(wire) < 12:
                return None
            (qid, flags) = struct.unpack("!HH", wire[:4])
            return struct.pack("!HHHHHH", qid, dns.flags.QR | (flags & 0x7900)
                               | dns.rcode.SERVFAIL, 0, 0, 0, 0)

    def answer(self, wire: bytes, client: str, transport: str) -> bytes | None:
        """The reply to one DNS message (None: send nothing)."""
        try:
            query = dns.message.from_wire(wire)
        except Exception as exc:  # noqa: BLE001 - any undecodable packet is the client's fault
            return self._malformed(wire, client, transport, exc)
        if query.flags & dns.flags.QR:
            self._log(client, transport, query, "IGNORED", 0, "malformed: a response, not a query")
            return None
        if query.opcode() != dns.opcode.QUERY:
            return self._error(query, dns.rcode.NOTIMP, client, transport,
                               f"opcode {dns.opcode.to_text(query.opcode())} not implemented")
        if len(query.question) != 1:
            return self._error(query, dns.rcode.FORMERR, client, transport,
                               f"malformed: {len(query.question)} questions")
        if query.edns > 0:
            # RFC 6891 section 6.1.3: unknown EDNS version gets BADVERS.
            return self._error(query, dns.rcode.BADVERS, client, transport, "EDNS version")
        question = query.question[0]
        if question.rdclass != dns.rdataclass.IN:
            return self._error(query, dns.rcode.REFUSED, client, transport, "class not IN")
        if question.rdtype in (dns.rdatatype.AXFR, dns.rdatatype.IXFR):
            return self._transfer(query, client, transport)
        # The same question (same spelling, flags, EDNS and transport) against the same
        # zone generation and signatures gets the same reply but for its ID: build it once.
        do = wants_dnssec(query)
        signer = self.dnssec if do or question.rdtype in _DNSSEC_TYPES else None
        want_dnssec = signer is not None and do
        key = (question.name.to_text(), int(question.rdtype), query.flags & _ECHOED_FLAGS,
               query.edns, query.payload if query.edns >= 0 else 0, transport,
               self.zones.generation, want_dnssec, signer.state() if signer else None)
        cached = self._replies.get(key)
        if cached is None:
            found = None
            if signer is not None:
                from .dnssec_answer import add_dnssec_records, dnssec_lookup

                found = dnssec_lookup(signer, question.name, question.rdtype)
            if found is None:
                found = self.zones.lookup(question.name, question.rdtype)
            if found.failure == "timeout":
                self._log(client, transport, query, "(none)", 0, "no reply: set to time out")
                return None
            response = self.zones.response_for(query, found)
            if want_dnssec and signer is not None:
                add_dnssec_records(signer, response, found)  # RRSIG and NSEC, only with DO
            self._edns(query, response)
            wire_out, truncated = self._to_wire(query, response, transport)
            note = "truncated: retry over TCP" if truncated else ""
            answers = 0 if truncated else sum(len(r) for r in found.answer)
            cached = (wire_out[2:], dns.rcode.to_text(found.rcode), answers, note)
            if len(self._replies) >= _REPLY_CACHE_SIZE:
                self._replies.clear()
            self._replies[key] = cached
        body, rcode, answers, note = cached
        self._log(client, transport, query, rcode, answers, note)
        return struct.pack("!H", query.id) + body

    def _transfer(self, query: dns.message.Message, client: str, transport: str) -> bytes:
        question = query.question[0]
        if transport != "tcp" or question.rdtype == dns.rdatatype.IXFR:
            return self._error(query, dns.rcode.REFUSED, client, transport,
                               "zone transfers are over TCP, AXFR only")
        rrsets = self.zones.transfer(question.name)
        if rrsets is None:
            return self._error(query, dns.rcode.REFUSED, client, transport, "not a zone apex")
        response = dns.message.make_response(query)
        response.flags |= dns.flags.AA
        response.answer = rrsets
        self._log(client, transport, query, "NOERROR", sum(len(r) for r in rrsets), "AXFR")
        return response.to_wire()

    def _edns(self, query: dns.message.Message, response: dns.message.Message) -> None:
        if query.edns >= 0:
            # RFC 3225 section 3: the response copies the query's DO bit.
            do = query.ednsflags & dns.flags.DO if self._dnssec is not False else 0
            response.use_edns(0, do, EDNS_UDP_SIZE)

    @staticmethod
    def _to_wire(
        query: dns.message.Message, response: dns.message.Message, transport: str
    ) -> tuple[bytes, bool]:
        if transport == "tcp":
            limit = 65535
        elif query.edns >= 0:
            limit = max(CLASSIC_UDP_SIZE, min(query.payload, EDNS_UDP_SIZE))
        else:
            limit = CLASSIC_UDP_SIZE
        try:
            return response.to_wire(max_size=limit), False
        except dns.exception.TooBig:
            # RFC 2181 section 9: set TC and send what fits (here: the question alone),
            # so the client asks again over TCP.
            response.flags |= dns.flags.TC
            response.answer, response.authority, response.additional = [], [], []
            return response.to_wire(max_size=limit), True

    def _error(self, query: dns.message.Message, rcode: dns.rcode.Rcode, client: str,
               transport: str, note: str) -> bytes:
        response = dns.message.make_response(query)
        response.set_rcode(rcode)
        self._log(client, transport, query, dns.rcode.to_text(rcode), 0, note)
        return response.to_wire()

    def _malformed(self, wire: bytes, client: str, transport: str, exc: Exception) -> bytes | None:
        # RFC 1035 section 4.1.1: FORMERR, echoing the ID and opcode, with no question.
        return self._header_reply(wire, client, transport, f"malformed: {type(exc).__name__}",
                                  dns.rcode.FORMERR, echo=_OPCODE_BITS)

    def _header_reply(self, wire: bytes, client: str, transport: str, reason: str,
                      rcode: dns.rcode.Rcode, echo: int) -> bytes | None:
        """A reply of the header only, for a query not read further: the ID, the flag
        bits in ``echo`` copied, QR and ``rcode`` set, no sections. None (no reply, and a
        log line) when the packet has no header or is itself a response."""
        if len(wire) < 12:
            self._record(client, transport, "?", "?", "(none)", 0, reason + ", no header")
            return None
        (qid, flags) = struct.unpack("!HH", wire[:4])
        if flags & dns.flags.QR:
            self._record(client, transport, "?", "?", "(none)", 0, reason + ", a response")
            return None
        header = struct.pack("!HHHHHH", qid, dns.flags.QR | (flags & echo) | rcode, 0, 0, 0, 0)
        self._record(client, transport, "?", "?", dns.rcode.to_text(rcode), 0, reason)
        return header

    def refuse(self, wire: bytes, client: str, transport: str, check: PeerCheck) -> bytes | None:
        """REFUSED for a query from another user: the header only, echoing the ID, the
        opcode and RD, with no question (as FORMERR is built; RFC 1035 section 4.1.1).
        The query is not read further. None (no reply) when the packet has no header or
        is itself a response."""
        self.refused.append(check)
        return self._header_reply(wire, client, transport, f"refused: {check.summary}",
                                  dns.rcode.REFUSED, echo=_OPCODE_BITS | dns.flags.RD)

    def _log(self, client: str, transport: str, query: dns.message.Message, rcode: str,
             answers: int, note: str) -> None:
        if query.question:
            q = query.question[0]
            qname, qtype = q.name.to_text(), dns.rdatatype.to_text(q.rdtype)
        else:
            qname, qtype = "(no question)", "-"
        self._record(client, transport, qname, qtype, rcode, answers, note)

    def _record(self, client: str, transport: str, qname: str, qtype: str, rcode: str,
                answers: int, note: str) -> None:
        self.log.record(QueryLogEntry(self.clock.time(), client, transport, qname, qtype,
                                      rcode, answers, note))

    # -- TCP ----------------------------------------------------------------------------

    async def _serve_tcp(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername")
        client = f"{peer[0]}:{peer[1]}" if peer else "?"
        task = asyncio.current_task()
        if task is not None:
            self._tcp_tasks.add(task)
        self._tcp_writers.add(writer)
        check = check_transport(writer.transport)
        try:
            while True:
                try:
                    prefix = await asyncio.wait_for(reader.readexactly(2), TCP_IDLE_TIMEOUT)
                    (length,) = struct.unpack("!H", prefix)
                    wire = await asyncio.wait_for(reader.readexactly(length), TCP_IDLE_TIMEOUT)
                except (TimeoutError, asyncio.IncompleteReadError, ConnectionError):
                    return
                if not check.allowed:  # another user: one REFUSED, then close
                    refused = self.refuse(wire, client, "tcp", check)
                    if refused is not None:
                        writer.write(struct.pack("!H", len(refused)) + refused)
                        await writer.drain()
                    return
                reply = self.answer_safely(wire, client, "tcp")
                if reply is None:
                    continue
                writer.write(struct.pack("!H", len(reply)) + reply)
                await writer.drain()
        except Exception:  # noqa: BLE001 - one connection's trouble must not stop the server
            self._record(client, "tcp", "?", "?", "(none)", 0, "connection error")
        finally:
            self._tcp_writers.discard(writer)
            if task is not None:
                self._tcp_tasks.discard(task)
            writer.close()


class _UDPProtocol(asyncio.DatagramProtocol):
    def __init__(self, server: DNSServer) -> None:
        self.server = server
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        client = f"{addr[0]}:{addr[1]}"
        check = check_transport(self.transport, addr)
        if check.allowed:
            reply = self.server.answer_safely(data, client, "udp")
        else:
            reply = self.server.refuse(data, client, "udp", check)
        if reply is not None and self.transport is not None:
            self.transport.sendto(reply, addr)

    def error_received(self, exc: Exception) -> None:  # ICMP port unreachable and the like
        pass


def wants_dnssec(query: dns.message.Message) -> bool:
    """Whether the query sets the DO bit of its EDNS(0) header (RFC 3225 section 3)."""
    return query.edns >= 0 and bool(query.ednsflags & dns.flags.DO)


def free_port_pair(host: str = "127.0.0.1") -> int:
    """A port number free for both UDP and TCP right now (for tests that need one)."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.bind((host, 0))
            port = udp.getsockname()[1]
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
                try:
                    tcp.bind((host, port))
                except OSError:
                    continue
                return port
    raise OSError("no free port pair")
