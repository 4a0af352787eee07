"""Reading packets back: segments, connections, and the table of what was said.

Whichever way a capture was made (sniffed live, written by the relay, or read from a
pcap file), the analysis sees the same thing: each TCP or UDP packet as a
:class:`Segment`, the TCP ones grouped into connections whose byte streams can be put
back together, and a :class:`CaptureSummary` that names every packet the way a student
would (``EHLO``, ``250 ...``, ``ClientHello``, a DNS question and its answer, the ACKs
on request). TLS records are told apart from SMTP lines by their first bytes (RFC 8446,
section 5.1: content type, then version 3.x).
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..core.errors import LabError
from ..core.results import Result, html_table, text_table

#: Port -> what it is, for captures read from a file.
WELL_KNOWN = {25: "smtp", 587: "submission", 465: "submissions", 53: "dns"}

_TLS_CONTENT = {20: "ChangeCipherSpec", 21: "Alert", 22: "Handshake", 23: "application data"}
_TLS_HANDSHAKE = {1: "ClientHello", 2: "ServerHello", 4: "NewSessionTicket",
                  8: "EncryptedExtensions", 11: "Certificate", 13: "CertificateRequest",
                  15: "CertificateVerify", 20: "Finished", 24: "KeyUpdate"}


class CaptureError(LabError):
    """A capture could not be made or read; the sentence says why."""


# -- packets and connections --------------------------------------------------------------


@dataclass(frozen=True)
class Segment:
    """One packet, as the analysis sees it (any link layer, either mode)."""

    index: int
    time: float
    src: str
    dst: str
    sport: int
    dport: int
    proto: str  # "tcp" or "udp"
    flags: str
    seq: int
    payload: bytes
    from_client: bool
    service: str  # "submission", "dns", ...

    @property
    def connection(self) -> tuple[str, int, str, int]:
        """(client address, client port, server address, server port)."""
        if self.from_client:
            return (self.src, self.sport, self.dst, self.dport)
        return (self.dst, self.dport, self.src, self.sport)


def _segments(packets: Iterable[Any], services: dict[int, str]) -> list[Segment]:
    from scapy.layers.inet import IP, TCP, UDP

    found: list[Segment] = []
    syn_servers: set[tuple[str, int]] = set()
    for i, packet in enumerate(packets):
        if IP not in packet:
            continue
        ip = packet[IP]
        if TCP in packet:
            layer, proto = packet[TCP], "tcp"
            flags = str(layer.flags)
            if flags == "S":
                syn_servers.add((ip.dst, int(layer.dport)))
        elif UDP in packet:
            layer, proto, flags = packet[UDP], "udp", ""
        else:
            continue
        sport, dport = int(layer.sport), int(layer.dport)
        if (ip.dst, dport) in syn_servers or (dport in services and
                                              (ip.src, sport) not in syn_servers):
            from_client, port = True, dport
        else:
            from_client, port = False, sport
        service = services.get(port, WELL_KNOWN.get(port, f"port {port}"))
        payload = bytes(layer.payload)
        if proto == "tcp" and "Padding" in packet:  # Ethernet padding is not TCP data
            payload = payload[: len(payload) - len(packet["Padding"].load)]
        found.append(Segment(i, float(packet.time), ip.src, ip.dst, sport, dport, proto, flags,
                             int(layer.seq) if proto == "tcp" else 0, payload, from_client,
                             service))
    return found


@dataclass
class _Connection:
    key: tuple[str, int, str, int]
    service: str
    segments: list[Segment] = field(default_factory=list)

    def stream(self, from_client: bool) -> list[tuple[float, bytes]]:
        """The bytes one side sent, in the order captured, each retransmission kept once."""
        seen: set[int] = set()
        parts = sorted((s for s in self.segments if s.from_client == from_client
                        and s.payload), key=lambda s: s.index)
        out = []
        for s in parts:
            if s.seq in seen:
                continue
            seen.add(s.seq)
            out.append((s.time, s.payload))
        return out


def _connections(segments: Sequence[Segment]) -> list[_Connection]:
    conns: dict[tuple[str, int, str, int], _Connection] = {}
    for s in segments:
        if s.proto != "tcp":
            continue
        conn = conns.setdefault(s.connection, _Connection(s.connection, s.service))
        conn.segments.append(s)
    return list(conns.values())


def _describe_tls(data: bytes) -> tuple[list[str], int]:
    """Names of the TLS records that start in ``data``, and how many octets of the last
    one are still to come in later segments (RFC 8446 section 5.1)."""
    names: list[str] = []
    pos = 0
    while pos + 5 <= len(data):
        kind, length = data[pos], struct.unpack("!H", data[pos + 3:pos + 5])[0]
        name = _TLS_CONTENT.get(kind, f"record type {kind}")
        if kind == 22 and pos + 5 < len(data):
            name = _TLS_HANDSHAKE.get(data[pos + 5], "handshake")
        names.append(name)
        pos += 5 + length
    return names, max(0, pos - len(data))


def _looks_like_tls(data: bytes) -> bool:
    return len(data) >= 3 and data[0] in _TLS_CONTENT and data[1] == 3 and data[2] <= 4


def _dns_label(payload: bytes) -> str:
    import dns.exception
    import dns.message
    import dns.rcode
    import dns.rdatatype

    try:
        message = dns.message.from_wire(payload, ignore_trailing=True)
    except dns.exception.DNSException:
        return "DNS (unreadable)"
    qtype = dns.rdatatype.to_text(message.question[0].rdtype) if message.question else "?"
    qname = str(message.question[0].name) if message.question else "?"
    if not message.flags & 0x8000:
        return f"DNS {qtype} query for {qname}"
    answers = sum(len(r) for r in message.answer)
    return (f"DNS {qtype} response for {qname}: {dns.rcode.to_text(message.rcode())}, "
            f"{answers} answer{'s' if answers != 1 else ''}")


def _smtp_label(line: str, from_client: bool) -> str:
    if not from_client:
        return f"SMTP reply {line[:3]}"
    word = line.split(" ", 1)[0].split(":", 1)[0].upper()
    if word in ("MAIL", "RCPT"):
        return f"SMTP {word} {'FROM' if word == 'MAIL' else 'TO'}"
    if word.isalpha() and len(word) <= 10:
        return f"SMTP {word}"
    return "SMTP (continued)"


@dataclass(frozen=True)
class PacketRow:
    """One line of a capture summary."""

    number: int
    time: float
    direction: str  # "client → server" or "server → client"
    protocol: str   # TCP, SMTP, TLS, DNS
    length: int
    what: str
    service: str
    connection: int

    def as_row(self) -> list[object]:
        return [self.number, f"{self.time:.3f}", self.direction, self.protocol, self.length,
                self.what]


@dataclass(frozen=True, kw_only=True)
class CaptureSummary(Result):
    """The packets of a capture, one row each: time (seconds from the first packet),
    direction, protocol, length (payload octets) and what it is."""

    rows: tuple[PacketRow, ...] = ()

    def title(self) -> str:
        return f"Capture: {len(self.rows)} packets"

    def text(self) -> str:
        return "\n".join([self.title(), f"  {self.summary}", "",
                          text_table(["#", "time", "direction", "protocol", "length", "what"],
                                     [r.as_row() for r in self.rows])])

    def _repr_html_(self) -> str:
        return html_table(["#", "time", "direction", "protocol", "length", "what"],
                          [r.as_row() for r in self.rows],
                          caption=f"{self.title()}. {self.summary}")

    def whats(self) -> list[str]:
        """Only the "what it is" column."""
        return [r.what for r in self.rows]


def _summarise(segments: Sequence[Segment], show_acks: bool) -> tuple[PacketRow, ...]:
    rows: list[PacketRow] = []
    start = segments[0].time if segments else 0.0
    state: dict[tuple[str, int, str, int], dict[str, Any]] = {}
    conn_numbers: dict[tuple[str, int, str, int], int] = {}
    for s in segments:
        key = s.connection
        conn_numbers.setdefault(key, len(conn_numbers) + 1)
        st = state.setdefault(key, {"tls": False, "data": False, "pending": b"",
                                    "starttls": False})
        direction = "client → server" if s.from_client else "server → client"
        if s.proto == "udp":
            protocol, what = "DNS", _dns_label(s.payload)
        elif not s.payload:
            flag_names = {"S": "TCP SYN (open)", "SA": "TCP SYN-ACK", "FA": "TCP FIN (close)",
                          "F": "TCP FIN (close)", "R": "TCP RST", "RA": "TCP RST"}
            if s.flags in flag_names:
                protocol, what = "TCP", flag_names[s.flags]
            elif show_acks:
                protocol, what = "TCP", "TCP ACK"
            else:
                continue
        elif st["tls"] or _looks_like_tls(s.payload) and (st["starttls"] or not st["data"]):
            st["tls"] = True
            skip = st.setdefault("skip", {True: 0, False: 0})
            data = s.payload[skip[s.from_client]:]
            cont = skip[s.from_client] > 0
            skip[s.from_client] = max(0, skip[s.from_client] - len(s.payload))
            names, rest = _describe_tls(data)
            skip[s.from_client] += rest
            if cont:
                names = ["continued record", *names]
            protocol, what = "TLS", "TLS " + ", ".join(dict.fromkeys(names))
        else:
            text = s.payload.decode("utf-8", errors="replace")
            first = text.split("\r\n", 1)[0]
            protocol = "SMTP"
            if st["data"] and s.from_client:
                what = "SMTP message content"
                if text.endswith("\r\n.\r\n") or text == ".\r\n":
                    st["data"] = False
            else:
                what = _smtp_label(first, s.from_client)
                upper = first.upper()
                if s.from_client and upper.startswith("STARTTLS"):
                    st["asked_tls"] = True
                if not s.from_client and first.startswith("354"):
                    st["data"] = True
                if not s.from_client and first.startswith("220") and st.get("asked_tls"):
                    st["starttls"] = True
                    what += " (TLS begins)"
                if s.from_client and upper.startswith("AUTH"):
                    what = "SMTP AUTH (credentials in the clear!)"
        rows.append(PacketRow(len(rows) + 1, s.time - start, direction, protocol,
                              len(s.payload), what, s.service, conn_numbers[key]))
    return tuple(rows)
