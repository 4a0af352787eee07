"""labsupport.dns.nameserver: the authoritative server over real UDP and TCP sockets.

Most tests use a DNSServer with its own zones on a private loop (``private_server``);
a few check that the running lab's server behaves the same.
"""

from __future__ import annotations

import asyncio
import random
import socket
import struct
from collections.abc import Iterator

import dns.edns
import dns.flags
import dns.message
import dns.opcode
import dns.query
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.zone
import pytest
from lab_helpers import ZONES_DIR, ServerThread, tcp_exchange, udp_first_reply, udp_send

from labsupport.core.peers import PeerCheck
from labsupport.dns import nameserver
from labsupport.dns.nameserver import (
    CLASSIC_UDP_SIZE,
    EDNS_UDP_SIZE,
    DNSServer,
    QueryLog,
    QueryLogEntry,
    free_port_pair,
)
from labsupport.dns.zone import ZoneSet

POOL = "pool.mailcloud.example"


@pytest.fixture
def server(private_server: ServerThread) -> Iterator[ServerThread]:
    """The private server, its zones put back and failures cleared after the test."""
    yield private_server
    private_server.server.zones.reset()


def udp(port: int, qname: str, rdtype: str, **kwargs) -> dns.message.Message:
    query = dns.message.make_query(qname, rdtype, **kwargs)
    return dns.query.udp(query, "127.0.0.1", port=port, timeout=5, ignore_trailing=True)


def tcp(port: int, qname: str, rdtype: str, **kwargs) -> dns.message.Message:
    query = dns.message.make_query(qname, rdtype, **kwargs)
    return dns.query.tcp(query, "127.0.0.1", port=port, timeout=5)


def soa_owner(response: dns.message.Message) -> list[tuple[str, int]]:
    return [(r.name.to_text(), r.rdtype) for r in response.authority]


# -- answers -------------------------------------------------------------------------------


def test_answers_are_authoritative(server: ServerThread) -> None:
    response = udp(server.port, "northwind.test", "MX", use_edns=0)
    assert response.rcode() == dns.rcode.NOERROR
    assert response.flags & dns.flags.AA
    assert response.flags & dns.flags.QR
    assert sorted(r.preference for r in response.answer[0]) == [10, 20]
    assert response.edns == 0 and response.payload == EDNS_UDP_SIZE


def test_nxdomain_carries_the_soa(server: ServerThread) -> None:
    response = udp(server.port, "nosuch.northwind.test", "A", use_edns=0)
    assert response.rcode() == dns.rcode.NXDOMAIN
    assert response.flags & dns.flags.AA
    assert not response.answer
    assert soa_owner(response) == [("northwind.test.", dns.rdatatype.SOA)]
    assert response.authority[0].ttl == 300


def test_nodata_carries_the_soa(server: ServerThread) -> None:
    response = udp(server.port, "northwind.test", "AAAA", use_edns=0)
    assert response.rcode() == dns.rcode.NOERROR
    assert not response.answer
    assert soa_owner(response) == [("northwind.test.", dns.rdatatype.SOA)]


def test_names_outside_are_refused(server: ServerThread) -> None:
    response = udp(server.port, "www.example.com", "A")
    assert response.rcode() == dns.rcode.REFUSED
    assert not response.flags & dns.flags.AA
    assert not response.answer and not response.authority


def test_other_classes_are_refused(server: ServerThread) -> None:
    response = udp(server.port, "northwind.test", "TXT", rdclass=dns.rdataclass.CH)
    assert response.rcode() == dns.rcode.REFUSED


def test_other_opcodes_are_not_implemented(server: ServerThread) -> None:
    query = dns.message.make_query("northwind.test", "SOA")
    query.set_opcode(dns.opcode.NOTIFY)
    reply = dns.message.from_wire(udp_send(server.port, query.to_wire()))
    assert reply.rcode() == dns.rcode.NOTIMP and reply.id == query.id


def test_cname_chain_comes_in_one_answer(server: ServerThread) -> None:
    response = udp(server.port, "www.tinyshop.test", "A")
    assert [r.rdtype for r in response.answer] == [dns.rdatatype.CNAME, dns.rdatatype.A]


def test_the_question_is_echoed_as_asked(server: ServerThread) -> None:
    # Same question in another spelling: the reply echoes each spelling (0x20 clients
    # check this), even though the server built the first reply once and reuses it.
    for spelling in ("NorthWind.Test", "northwind.test", "NORTHWIND.TEST"):
        response = udp(server.port, spelling, "MX")
        assert response.question[0].name.to_text() == spelling + "."
        assert len(response.answer[0]) == 2


# -- sizes, truncation and EDNS ------------------------------------------------------------


def test_big_answer_is_truncated_over_udp_with_edns(server: ServerThread) -> None:
    response = udp(server.port, POOL, "A", use_edns=0, payload=EDNS_UDP_SIZE)
    assert response.flags & dns.flags.TC
    assert not response.answer
    assert response.edns == 0


def test_big_answer_is_truncated_over_udp_without_edns(server: ServerThread) -> None:
    response = udp(server.port, POOL, "A", use_edns=False)
    assert response.flags & dns.flags.TC
    assert response.edns == -1


def test_big_answer_is_complete_over_tcp(server: ServerThread) -> None:
    response = tcp(server.port, POOL, "A", use_edns=0)
    assert not response.flags & dns.flags.TC
    addresses = sorted(int(r.address.rsplit(".", 1)[1]) for r in response.answer[0])
    assert addresses == list(range(128, 228))


def test_a_query_without_edns_gets_no_opt_and_at_most_512_octets(server: ServerThread) -> None:
    # An answer between 512 and 1232 octets: fits with EDNS, not without.
    zones = server.server.zones
    for i in range(30):
        zones.add("mid.northwind.test", "A", f"192.0.2.{100 + i}")
    classic = dns.message.make_query("mid.northwind.test", "A", use_edns=False)
    wire = udp_send(server.port, classic.to_wire())
    reply = dns.message.from_wire(wire)
    assert len(wire) <= CLASSIC_UDP_SIZE
    assert reply.edns == -1  # no OPT record in the reply
    assert reply.flags & dns.flags.TC
    with_edns = udp(server.port, "mid.northwind.test", "A", use_edns=0, payload=EDNS_UDP_SIZE)
    assert not with_edns.flags & dns.flags.TC
    assert len(with_edns.answer[0]) == 30
    # RFC 6891 6.2.5: an offered size below 512 counts as 512.
    small = udp(server.port, "mid.northwind.test", "A", use_edns=0, payload=256)
    assert small.flags & dns.flags.TC


def test_small_answers_without_edns_are_complete(server: ServerThread) -> None:
    response = udp(server.port, "northwind.test", "MX", use_edns=False)
    assert response.edns == -1
    assert not response.flags & dns.flags.TC
    assert len(response.answer[0]) == 2


def test_unknown_edns_version_gets_badvers(server: ServerThread) -> None:
    response = udp(server.port, "northwind.test", "MX", use_edns=1)
    assert response.rcode() == dns.rcode.BADVERS
    assert response.edns == 0  # BADVERS is an extended code: it needs an OPT record
    assert not response.answer


# -- malformed input -----------------------------------------------------------------------


def test_several_questions_get_formerr(server: ServerThread) -> None:
    query = dns.message.make_query("northwind.test", "MX")
    query.question.append(dns.message.make_query("campus.test", "MX").question[0])
    reply = dns.message.from_wire(udp_send(server.port, query.to_wire()))
    assert reply.rcode() == dns.rcode.FORMERR
    assert reply.id == query.id
    assert not reply.answer


def test_a_five_byte_packet_gets_silence(server: ServerThread) -> None:
    log = server.server.log
    before = log.malformed
    first = dns.message.from_wire(udp_first_reply(server.port, b"\x12\x34\x00\x00\x00"))
    assert first.id == 0xBEEF  # no reply to the short packet; the probe was answered
    assert first.rcode() == dns.rcode.NOERROR
    assert log.malformed == before + 1
    assert any("no header" in e.note for e in log.entries(5))


def test_a_header_without_its_question_gets_formerr_with_the_same_id(
        server: ServerThread) -> None:
    log = server.server.log
    before = log.malformed
    header = struct.pack("!HHHHHH", 0xABCD, 0x0100, 1, 0, 0, 0)  # RD, QDCOUNT 1, no question
    wire = udp_send(server.port, header)
    assert len(wire) == 12
    qid, flags, qd, an, ns, ar = struct.unpack("!HHHHHH", wire)
    assert qid == 0xABCD
    assert flags & dns.flags.QR
    assert flags & 0x000F == dns.rcode.FORMERR
    assert (qd, an, ns, ar) == (0, 0, 0, 0)
    assert log.malformed == before + 1


def test_random_bytes_never_stop_the_server(server: ServerThread) -> None:
    log = server.server.log
    before = log.malformed
    replied = 0
    for seed in range(12):
        rng = random.Random(seed)
        packet = bytearray(rng.randbytes(rng.choice([3, 11, 40, 300])))
        if len(packet) >= 12:
            packet[2] &= 0x07  # a query (QR clear), opcode QUERY: it has a header to answer
            packet[4:6] = b"\xff\xff"  # 65535 questions: more than the packet can hold
        first = udp_first_reply(server.port, bytes(packet))
        if len(packet) < 12:
            assert struct.unpack("!H", first[:2])[0] == 0xBEEF, f"seed {seed}: replied"
            continue
        replied += 1
        qid, flags = struct.unpack("!HH", first[:4])
        assert qid == struct.unpack("!H", packet[:2])[0], f"seed {seed}: wrong ID"
        assert flags & dns.flags.QR and flags & 0x000F == dns.rcode.FORMERR
    assert replied > 0
    assert log.malformed == before + 12
    assert len(udp(server.port, "northwind.test", "MX").answer[0]) == 2


def test_a_response_is_not_answered(server: ServerThread) -> None:
    query = dns.message.make_query("northwind.test", "MX")
    response = dns.message.make_response(query)
    response.id = 0x1111
    first = dns.message.from_wire(udp_first_reply(server.port, response.to_wire()))
    assert first.id == 0xBEEF


def test_internal_errors_become_servfail(monkeypatch: pytest.MonkeyPatch) -> None:
    server = DNSServer(ZoneSet.from_directory(ZONES_DIR))

    def broken(*_args, **_kwargs):
        raise RuntimeError("a bug of ours")

    monkeypatch.setattr(server.zones, "lookup", broken)
    query = dns.message.make_query("northwind.test", "MX")
    reply = dns.message.from_wire(server.answer_safely(query.to_wire(), "test", "udp"))
    assert reply.rcode() == dns.rcode.SERVFAIL and reply.id == query.id
    (entry,) = server.log.entries()
    assert "internal error: RuntimeError" in entry.note
    assert server.answer_safely(b"\x00\x01", "test", "udp") is None


# -- TCP and zone transfers ----------------------------------------------------------------


def test_two_queries_on_one_tcp_connection(server: ServerThread) -> None:
    first = dns.message.make_query("northwind.test", "MX")
    second = dns.message.make_query("campus.test", "MX")
    first.id, second.id = 101, 202
    replies = [dns.message.from_wire(w)
               for w in tcp_exchange(server.port, first.to_wire(), second.to_wire())]
    assert [r.id for r in replies] == [101, 202]
    assert [r.question[0].name.to_text() for r in replies] == ["northwind.test.", "campus.test."]
    assert all(len(r.answer[0]) == 2 for r in replies)


def test_malformed_message_over_tcp_keeps_the_connection(server: ServerThread) -> None:
    bad = struct.pack("!HHHHHH", 0x0BAD, 0, 1, 0, 0, 0)
    good = dns.message.make_query("northwind.test", "MX")
    good.id = 0x0600D
    replies = tcp_exchange(server.port, bad, good.to_wire())
    assert struct.unpack("!HH", replies[0][:4])[0] == 0x0BAD
    assert struct.unpack("!HH", replies[0][:4])[1] & 0x000F == dns.rcode.FORMERR
    assert dns.message.from_wire(replies[1]).id == 0x0600D


def test_axfr_over_tcp(server: ServerThread) -> None:
    messages = list(dns.query.xfr("127.0.0.1", "northwind.test", port=server.port, timeout=5))
    records = [rrset for m in messages for rrset in m.answer]
    assert records[0].rdtype == records[-1].rdtype == dns.rdatatype.SOA
    assert all(m.flags & dns.flags.AA for m in messages)
    zone = dns.zone.from_xfr(iter(messages))
    assert zone.origin.to_text() == "northwind.test."
    assert zone.get_rdataset("mx1", "A")[0].address == "192.0.2.25"
    assert len(zone.get_rdataset("@", "MX")) == 2


def test_axfr_over_udp_is_refused(server: ServerThread) -> None:
    response = udp(server.port, "northwind.test", "AXFR")
    assert response.rcode() == dns.rcode.REFUSED


def test_axfr_of_a_non_apex_and_ixfr_are_refused(server: ServerThread) -> None:
    (axfr,) = tcp_exchange(
        server.port, dns.message.make_query("mx1.northwind.test", "AXFR").to_wire())
    assert dns.message.from_wire(axfr).rcode() == dns.rcode.REFUSED
    (ixfr,) = tcp_exchange(server.port, dns.message.make_query("northwind.test", "IXFR").to_wire())
    assert dns.message.from_wire(ixfr).rcode() == dns.rcode.REFUSED


# -- live edits and failures ---------------------------------------------------------------


def test_a_live_edit_is_visible_to_the_next_query(server: ServerThread) -> None:
    zones = server.server.zones
    assert udp(server.port, "careless.test", "MX").answer[0][0].exchange.to_text() == (
        "mail.careless.test.")
    zones.set("careless.test", "MX", "10 server.careless.test.")
    assert udp(server.port, "careless.test", "MX").answer[0][0].exchange.to_text() == (
        "server.careless.test.")
    zones.reset("careless.test")
    assert udp(server.port, "careless.test", "MX").answer[0][0].exchange.to_text() == (
        "mail.careless.test.")


def test_a_name_set_to_time_out_gets_no_reply(server: ServerThread) -> None:
    server.server.zones.fail("campus.test", "timeout")
    query = dns.message.make_query("campus.test", "MX")
    first = dns.message.from_wire(udp_first_reply(server.port, query.to_wire()))
    assert first.id == 0xBEEF
    assert server.server.log.entries(2)[0].note == "no reply: set to time out"


def test_a_name_set_to_servfail_gets_servfail(server: ServerThread) -> None:
    server.server.zones.fail("campus.test", "servfail")
    assert udp(server.port, "campus.test", "MX").rcode() == dns.rcode.SERVFAIL


# -- the query log -------------------------------------------------------------------------


def test_the_query_log_records_who_asked_what(server: ServerThread) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(5)
        sock.bind(("127.0.0.1", 0))
        client = f"127.0.0.1:{sock.getsockname()[1]}"
        sock.sendto(dns.message.make_query("nosuch.campus.test", "AAAA").to_wire(),
                    ("127.0.0.1", server.port))
        sock.recv(65535)
    entry = server.server.log.entries(1)[0]
    assert (entry.client, entry.transport, entry.qname, entry.qtype, entry.rcode) == (
        client, "udp", "nosuch.campus.test.", "AAAA", "NXDOMAIN")
    tcp(server.port, "campus.test", "MX")
    entry = server.server.log.entries(1)[0]
    assert (entry.transport, entry.qname, entry.qtype, entry.rcode, entry.answers) == (
        "tcp", "campus.test.", "MX", "NOERROR", 2)
    assert entry.client.startswith("127.0.0.1:")


def test_the_query_log_notes_truncation(server: ServerThread) -> None:
    udp(server.port, POOL, "A", use_edns=0)
    entry = server.server.log.entries(1)[0]
    assert entry.answers == 0 and "truncated" in entry.note


def test_query_log_counts_listens_renders_and_clears() -> None:
    log = QueryLog(maxlen=3)
    seen: list[QueryLogEntry] = []
    log.on_entry(seen.append)
    for i in range(4):
        log.record(QueryLogEntry(0.0, "127.0.0.1:5", "udp", f"q{i}.test.", "A", "NOERROR", 1))
    log.record(QueryLogEntry(0.0, "127.0.0.1:5", "udp", "?", "?", "FORMERR", 0, "malformed: x"))
    assert len(log) == 3 and len(seen) == 5
    assert log.counts["queries"] == 5 and log.counts["NOERROR"] == 4 and log.malformed == 1
    assert [e.qname for e in log.entries(2)] == ["q3.test.", "?"]
    text = str(log.tail(2))
    assert "q3.test." in text and "answer code" in text.splitlines()[0]
    assert "<table>" in log._repr_html_() and "q3.test." in log._repr_html_()
    assert str(seen[0]) == "00:00:00.000 127.0.0.1:5 udp q0.test. A -> NOERROR, 1 answer(s)"
    assert str(seen[-1]).endswith("(malformed: x)")
    log.clear()
    assert len(log) == 0 and log.malformed == 0


# -- the running lab's server --------------------------------------------------------------


def test_the_lab_server_answers_and_logs(lab) -> None:
    response = udp(lab.dns.port, "northwind.test", "MX")
    assert response.flags & dns.flags.AA and len(response.answer[0]) == 2
    entry = lab.dns.log.entries(1)[0]
    assert (entry.transport, entry.qname, entry.qtype, entry.rcode) == (
        "udp", "northwind.test.", "MX", "NOERROR")
    assert tcp(lab.dns.port, POOL, "A").answer[0].__len__() == 100


def test_a_live_edit_on_the_lab_is_visible(clean_lab) -> None:
    clean_lab.zones.add("new.northwind.test", "A", "192.0.2.77")
    response = udp(clean_lab.dns.port, "new.northwind.test", "A")
    assert response.answer[0][0].address == "192.0.2.77"


# -- life cycle ----------------------------------------------------------------------------


def test_a_requested_port_is_used_for_udp_and_tcp() -> None:
    port = free_port_pair()
    running = ServerThread(ZoneSet.from_directory(ZONES_DIR), port=port)
    try:
        assert running.port == port
        assert udp(port, "northwind.test", "MX").rcode() == dns.rcode.NOERROR
        assert tcp(port, "northwind.test", "MX").rcode() == dns.rcode.NOERROR
    finally:
        running.close()


def test_stop_ends_open_tcp_connections_before_returning() -> None:
    running = ServerThread(ZoneSet.from_directory(ZONES_DIR))
    try:
        with socket.create_connection(("127.0.0.1", running.port), timeout=5) as idle:
            query = dns.message.make_query("northwind.test", "MX").to_wire()
            idle.sendall(len(query).to_bytes(2, "big") + query)
            length = int.from_bytes(idle.recv(2), "big")
            assert length > 0

            async def stop_and_list() -> list[asyncio.Task]:
                await running.server.stop()
                return [t for t in asyncio.all_tasks()
                        if t is not asyncio.current_task() and not t.done()]

            # The lab stops its loop right after stop(): connection tasks still pending
            # then would be destroyed ("Task was destroyed but it is pending!").
            assert running.call(stop_and_list()) == []
            assert idle.recv(65535 + 2)  # the rest of the reply, then the server's close
    finally:
        running.loop.call_soon_threadsafe(running.loop.stop)
        running.thread.join(10)
        running.loop.close()


# -- another user on the same host ----------------------------------------------------------


def _another_user(transport: object, peer: object = None) -> PeerCheck:
    """What labsupport.core.peers says of a process of another user (made up here, so the
    test runs without a second Unix user; tests/lab/test_isolation.py has the real one)."""
    return PeerCheck(verdict="other-user", summary="127.0.0.1:4242 belongs to uid 4242, not "
                     "to the user who runs this lab", transport="udp", local=("127.0.0.1", 53),
                     peer=("127.0.0.1", 4242), own_uid=0, peer_uid=4242, supported=True)


def test_another_user_gets_refused_over_udp_and_tcp(monkeypatch: pytest.MonkeyPatch) -> None:
    running = ServerThread(ZoneSet.from_directory(ZONES_DIR))
    try:
        query = dns.message.make_query("northwind.test", "MX")
        assert dns.query.udp(query, "127.0.0.1", port=running.port, timeout=5).answer
        monkeypatch.setattr(nameserver, "check_transport", _another_user)
        for reply in (dns.query.udp(query, "127.0.0.1", port=running.port, timeout=5),
                      dns.query.tcp(query, "127.0.0.1", port=running.port, timeout=5)):
            # REFUSED (RFC 1035 section 4.1.1), the ID and RD echoed, nothing else.
            assert reply.rcode() == dns.rcode.REFUSED and reply.id == query.id
            assert reply.flags & dns.flags.RD and not reply.flags & dns.flags.AA
            assert not (reply.question or reply.answer or reply.authority)
        # TCP: after the one REFUSED the server closes the connection.
        with socket.create_connection(("127.0.0.1", running.port), timeout=5) as sock:
            wire = query.to_wire()
            sock.sendall((len(wire).to_bytes(2, "big") + wire) * 2)
            data = b""
            while chunk := sock.recv(65535):
                data += chunk
            assert len(data) == 2 + 12 and data[2:4] == wire[:2]
        refused = [e for e in running.server.log.entries(10) if e.rcode == "REFUSED"]
        assert [e.transport for e in refused] == ["udp", "tcp", "tcp"]
        assert all("uid 4242" in e.note for e in refused)
        assert running.server.refused[-1].peer_uid == 4242
        # No header, or a response: no reply at all, but a log line.
        assert running.server.refuse(b"\x00\x01", "x", "udp", _another_user(None)) is None
        response = dns.message.make_response(query).to_wire()
        assert running.server.refuse(response, "x", "udp", _another_user(None)) is None
    finally:
        running.close()
