"""Packet captures of lab interactions, with or without administrator rights.

``with labsupport.wire.capture.capture(lab, "submission") as cap:`` records everything a
client says to the named mail roles (and to the lab's DNS server) while the block runs,
and afterwards ``cap.path`` is a real pcap file that Wireshark and tshark open,
``cap.summary()`` a table of the packets, ``cap.dialogue()`` the SMTP dialogue read back
from the bytes, ``cap.decrypt(keylog)`` the dialogue inside TLS;
``labsupport.plots.capture_ladder(cap.summary())`` draws a ladder diagram. Clients ask
the capture where to connect: ``cap.port("submission")`` and ``cap.dns_port``, never a
port written in the notebook.

Two ways to capture, chosen automatically and reported in ``cap.mode``:

``live``
    When the process may sniff (root, or the CAP_NET_RAW capability) scapy listens on
    the loopback interface through libpcap with a BPF filter on the lab's ports: these
    are the packets the kernel really carried, with the real (ephemeral) loopback ports,
    so Wireshark needs a decode hint (``tshark -d tcp.port==N,smtp``, see
    :meth:`Capture.decode_hints`).
``relay``
    Otherwise the capture runs a small recording relay between client and server
    (``cap.port(role)`` is then the relay's port). The relay forwards every byte
    unchanged and writes the same conversation as synthesized, well-formed IPv4 packets:
    a TCP three-way handshake, data segments with correct sequence and acknowledgement
    numbers, acknowledgements, FIN; DNS as UDP. The packets carry the lab world's
    addresses (``smtp.northwind.test`` is 192.0.2.30, ``ns.lab.test`` 192.0.2.53) and the
    conventional ports (25, 587, 465, 53), so Wireshark decodes them without hints.

The environment variable ``MAIL_LABS_CAPTURE`` (``live`` or ``relay``) overrides the
automatic choice, so a machine where the notebooks run as root still tests the relay.

Both modes keep the same bytes, so everything read from a capture (the summary, the
dialogue, TLS decryption) works the same on either, and on the reference captures in
``data/pcaps/`` (:func:`load`).

TLS decryption for teaching (RFC 8446): a client that writes its TLS secrets to a key log
(``SMTPSession(keylog_file=...)``, the NSS key log format Wireshark reads too) lets
:meth:`Capture.decrypt` show the dialogue inside TLS 1.3: the TCP streams are put back
together, cut into TLS records (a record may span several segments) and fed record by
record to scapy's TLS layer, which chains the session state from one record to the next
(:mod:`labsupport.wire.capture_tls`).

Introduced in ``notebooks/03-starttls-vs-implicit-tls.ipynb``.
"""

from __future__ import annotations

import base64
import html
import os
import shutil
import socket
import struct
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from ..core.errors import LabError
from ..core.results import Result, html_table, text_table

if TYPE_CHECKING:
    from .capture_tls import TLSView


class _RolePorts(Protocol):
    def port(self, role: str) -> int: ...


class _Listening(Protocol):
    @property
    def port(self) -> int: ...


class Lab(Protocol):
    """What a capture needs of a lab (:class:`labsupport.lab.lab.Lab` has it): where the
    mail roles and the DNS server listen, and a state directory for the files."""

    @property
    def smtp(self) -> _RolePorts: ...

    @property
    def dns(self) -> _Listening: ...

    @property
    def state_dir(self) -> Path: ...

#: The lab world's addresses the relay writes into its packets (see data/zones).
CLIENT_ADDRESS = "192.0.2.100"  # a Northwind laptop (not in DNS: clients rarely are)
ROLE_ADDRESSES = {
    "mx": "192.0.2.25",           # mx1.northwind.test
    "submission": "192.0.2.30",   # smtp.northwind.test
    "submissions": "192.0.2.30",
    "legacy": "192.0.2.30",
    "dns": "192.0.2.53",          # ns.lab.test
}
#: Conventional ports: 25 SMTP (RFC 5321), 587 submission (RFC 6409), 465 submissions
#: (RFC 8314), 53 DNS (RFC 1035). The insecure legacy role stands for a port-587 server
#: configured without TLS.
CONVENTIONAL_PORTS = {"mx": 25, "submission": 587, "submissions": 465, "legacy": 587,
                      "dns": 53}
#: Port -> what it is, for captures read from a file.
WELL_KNOWN = {25: "smtp", 587: "submission", 465: "submissions", 53: "dns"}
#: The largest TCP segment the relay writes (an Ethernet MSS).
MSS = 1460
MODES = ("auto", "live", "relay")
#: An environment variable that makes ``mode="auto"`` pick "live" or "relay" (CI runs the
#: notebooks once each way).
MODE_VARIABLE = "MAIL_LABS_CAPTURE"

_TLS_CONTENT = {20: "ChangeCipherSpec", 21: "Alert", 22: "Handshake", 23: "application data"}
_TLS_HANDSHAKE = {1: "ClientHello", 2: "ServerHello", 4: "NewSessionTicket",
                  8: "EncryptedExtensions", 11: "Certificate", 13: "CertificateRequest",
                  15: "CertificateVerify", 20: "Finished", 24: "KeyUpdate"}


class CaptureError(LabError):
    """A capture could not be made or read; the sentence says why."""


# -- may this process sniff? ------------------------------------------------------------


def can_sniff() -> tuple[bool, str]:
    """Whether live sniffing on loopback is possible here, and why (not)."""
    cap_net_raw = False
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("CapEff:"):
                cap_net_raw = bool(int(line.split()[1], 16) & (1 << 13))
    except (OSError, ValueError):
        pass
    geteuid = getattr(os, "geteuid", None)
    root = geteuid is not None and geteuid() == 0
    if not (root or cap_net_raw):
        return False, "this process may not sniff (neither root nor CAP_NET_RAW)"
    try:
        from scapy.config import conf

        conf.use_pcap = True
        if not conf.use_pcap:
            return False, "libpcap is not installed (Debian: apt-get install libpcap0.8)"
    except Exception as exc:  # noqa: BLE001 - any scapy trouble means: use the relay
        return False, f"scapy cannot use libpcap ({exc})"
    return True, "root" if root else "CAP_NET_RAW"


# -- what to capture ----------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    """One TCP service to capture: where it really listens, and how the relay shows it.

    ``name`` labels it ("submission", or "attacker" for a man in the middle), ``port`` is
    its real port on 127.0.0.1, ``wire_port`` and ``address`` what the relay writes
    into the packets.
    """

    name: str
    port: int
    wire_port: int
    address: str


def role_target(lab: Lab, role: str) -> Target:
    """The :class:`Target` for one of the lab's mail roles."""
    return Target(role, lab.smtp.port(role), CONVENTIONAL_PORTS[role], ROLE_ADDRESSES[role])


# -- what was recorded -----------------------------------------------------------------


@dataclass
class _Stream:
    """One TCP connection as the relay saw it: chunks of bytes in order, with times."""

    target: Target
    client_port: int
    opened: float
    events: list[tuple[float, str, bytes]] = field(default_factory=list)  # (t, c2s/s2c/fin-*)


@dataclass
class _Datagram:
    time: float
    from_client: bool
    client_port: int
    payload: bytes


class _TCPRelay:
    """Accepts clients on an ephemeral port and forwards to the target, recording."""

    def __init__(self, target: Target, record: list[_Stream], lock: threading.Lock) -> None:
        self.target = target
        self._record = record
        self._lock = lock
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.2)
        self.port = int(self._listener.getsockname()[1])
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []
        self._sockets: list[socket.socket] = []
        self._acceptor = threading.Thread(target=self._accept, name=f"relay-{target.name}",
                                          daemon=True)
        self._acceptor.start()

    def _accept(self) -> None:
        while not self._stopping.is_set():
            try:
                client, (_host, port) = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target.port), timeout=10)
            except OSError:
                client.close()
                continue
            client.settimeout(None)
            upstream.settimeout(None)
            stream = _Stream(self.target, int(port), time.time())
            with self._lock:
                self._record.append(stream)
                self._sockets += [client, upstream]
            done = threading.Event()
            for source, sink, way in ((client, upstream, "c2s"), (upstream, client, "s2c")):
                thread = threading.Thread(target=self._pump, args=(source, sink, way, stream,
                                                                   done), daemon=True)
                thread.start()
                self._threads.append(thread)

    def _pump(self, source: socket.socket, sink: socket.socket, way: str, stream: _Stream,
              done: threading.Event) -> None:
        while True:
            try:
                data = source.recv(65536)
            except OSError:
                data = b""
            now = time.time()
            with self._lock:
                stream.events.append((now, way if data else f"fin-{way}", data))
            if not data:
                try:
                    sink.shutdown(socket.SHUT_WR)
                except OSError:
                    pass
                if done.is_set():  # both directions finished: close both sockets
                    source.close()
                    sink.close()
                done.set()
                return
            try:
                sink.sendall(data)
            except OSError:
                return

    def close(self, wait: float = 1.0) -> None:
        self._stopping.set()
        self._listener.close()
        deadline = time.time() + wait
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.time()))
        with self._lock:
            for sock in self._sockets:
                try:
                    sock.close()
                except OSError:
                    pass


class _UDPRelay:
    """Forwards DNS queries to the lab's DNS server, recording both datagrams."""

    def __init__(self, port: int, record: list[_Datagram], lock: threading.Lock) -> None:
        self.upstream = port
        self._record = record
        self._lock = lock
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.settimeout(0.2)
        self.port = int(self._sock.getsockname()[1])
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="relay-dns", daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stopping.is_set():
            try:
                query, client = self._sock.recvfrom(65535)
            except TimeoutError:
                continue
            except OSError:
                return
            with self._lock:
                self._record.append(_Datagram(time.time(), True, client[1], query))
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as up:
                up.settimeout(3)
                try:
                    up.sendto(query, ("127.0.0.1", self.upstream))
                    answer = up.recv(65535)
                except OSError:
                    continue
            with self._lock:
                self._record.append(_Datagram(time.time(), False, client[1], answer))
            try:
                self._sock.sendto(answer, client)
            except OSError:
                pass

    def close(self) -> None:
        self._stopping.set()
        self._thread.join(1)
        self._sock.close()


# -- synthesizing packets ------------------------------------------------------------------


def _mac(address: str) -> str:
    """A locally administered MAC address derived from an IPv4 address."""
    return "02:00:" + ":".join(f"{int(b):02x}" for b in address.split("."))


def _tcp_packets(stream: _Stream, isn_seed: int) -> list[Any]:
    """The connection as IPv4/TCP packets: handshake, data with correct sequence and
    acknowledgement numbers (RFC 9293 section 3.4), acknowledgements, and FINs."""
    from scapy.layers.inet import IP, TCP
    from scapy.layers.l2 import Ether
    from scapy.packet import Raw

    client = (CLIENT_ADDRESS, stream.client_port)
    server = (stream.target.address, stream.target.wire_port)
    nxt = {"c2s": 1000 + isn_seed * 7919, "s2c": 5000 + isn_seed * 104729}
    ip_id = {"c2s": 1, "s2c": 1}
    packets: list[Any] = []
    clock = [stream.opened]

    def emit(way: str, flags: str, payload: bytes = b"", when: float | None = None,
             options: list[Any] | None = None) -> None:
        other = "s2c" if way == "c2s" else "c2s"
        (src, sport), (dst, dport) = (client, server) if way == "c2s" else (server, client)
        ack = nxt[other] if "A" in flags else 0
        segment = TCP(sport=sport, dport=dport, seq=nxt[way], ack=ack, flags=flags,
                      window=65535, options=options or [])
        packet = (Ether(src=_mac(src), dst=_mac(dst))
                  / IP(src=src, dst=dst, id=ip_id[way], flags="DF", ttl=64) / segment)
        if payload:
            packet = packet / Raw(payload)
        ip_id[way] += 1
        # Times never go backwards; packets that share a moment are a microsecond apart.
        clock[0] = max(clock[0] + 1e-6, when if when is not None else clock[0])
        packet.time = clock[0]
        packets.append(packet)
        nxt[way] = (nxt[way] + len(payload) + (1 if ("S" in flags or "F" in flags) else 0)) \
            % 2**32

    emit("c2s", "S", when=stream.opened, options=[("MSS", MSS)])
    emit("s2c", "SA", options=[("MSS", MSS)])
    emit("c2s", "A")
    for when, way, data in stream.events:
        if way.startswith("fin-"):
            direction = way[4:]
            emit(direction, "FA", when=when)
            emit("s2c" if direction == "c2s" else "c2s", "A")
            continue
        for start in range(0, len(data), MSS):
            emit(way, "PA", data[start:start + MSS], when=when)
        emit("s2c" if way == "c2s" else "c2s", "A")
    return packets


def _udp_packet(datagram: _Datagram, server: str, dns_port: int = 53) -> Any:
    from scapy.layers.inet import IP, UDP
    from scapy.layers.l2 import Ether
    from scapy.packet import Raw

    if datagram.from_client:
        src, dst, sport, dport = CLIENT_ADDRESS, server, datagram.client_port, dns_port
    else:
        src, dst, sport, dport = server, CLIENT_ADDRESS, dns_port, datagram.client_port
    packet = (Ether(src=_mac(src), dst=_mac(dst)) / IP(src=src, dst=dst, flags="DF", ttl=64)
              / UDP(sport=sport, dport=dport) / Raw(datagram.payload))
    packet.time = datagram.time
    return packet


# -- reading packets back ---------------------------------------------------------------------


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


# -- dialogues --------------------------------------------------------------------------------


@dataclass(frozen=True)
class WireLine:
    """One line of a dialogue read from a capture: ``->``/``<-`` in the clear, ``~>``/
    ``<~`` recovered from inside TLS."""

    direction: str
    text: str
    time: float

    def __str__(self) -> str:
        return f"{self.direction} {self.text}"


@dataclass(frozen=True, kw_only=True)
class WireDialogue(Result):
    """The SMTP lines a capture holds (in the clear, or decrypted with a key log)."""

    lines: tuple[WireLine, ...] = ()

    def title(self) -> str:
        return f"SMTP dialogue read from the capture: {self.verdict}"

    def dialogue(self) -> str:
        return "\n".join(str(line) for line in self.lines)

    def text(self) -> str:
        return "\n".join([self.title(), f"  {self.summary}", "", self.dialogue()])

    def _repr_html_(self) -> str:
        rows = []
        for line in self.lines:
            shade = "background:#e6f2e6;" if line.direction in ("~>", "<~") else ""
            rows.append(f'<div style="white-space:pre-wrap;margin:0;{shade}">'
                        f"{html.escape(str(line))}</div>")
        return ('<div style="border-left:4px solid #888;padding-left:8px">'
                f"<b>{html.escape(self.title())}</b><br>{html.escape(self.summary)}"
                f'<div style="font-family:monospace;font-size:90%;margin-top:6px">'
                f"{''.join(rows)}</div></div>")

    def texts(self) -> list[str]:
        return [line.text for line in self.lines]

    def contains(self, text: str) -> bool:
        return any(text in line.text for line in self.lines)

    def credentials(self) -> list[str]:
        """User names and passwords found in AUTH lines (base64 decoded)."""
        found: list[str] = []
        pending = False
        for line in self.lines:
            if line.direction in ("->", "~>"):
                words = line.text.split()
                if pending and words:
                    found.append(_unb64(words[0]))
                elif len(words) >= 3 and words[0].upper() == "AUTH":
                    found.extend(_unb64(words[2]).split("\0")[1:])
            else:
                pending = line.text.startswith("334")
        return [f for f in found if f]


def _unb64(text: str) -> str:
    try:
        return base64.b64decode(text, validate=True).decode("utf-8", errors="replace")
    except ValueError:
        return ""


def _lines_of(chunks: list[tuple[float, bytes]], arrow: str) -> list[WireLine]:
    out: list[WireLine] = []
    buf = b""
    for when, data in chunks:
        buf += data
        while b"\r\n" in buf:
            line, buf = buf.split(b"\r\n", 1)
            out.append(WireLine(arrow, line.decode("utf-8", errors="replace"), when))
    return out


def _clear_part(conn: _Connection) -> tuple[list[tuple[float, bytes]], list[tuple[float, bytes]],
                                            int, int]:
    """The cleartext bytes of each side before TLS starts, and where TLS starts (offset
    in each side's stream; -1 when it never does)."""
    sides = []
    for from_client in (True, False):
        data = b"".join(d for _, d in conn.stream(from_client))
        sides.append(data)
    client, server = sides
    if _looks_like_tls(client):
        return [], [], 0, 0
    c_tls = s_tls = -1
    marker = client.upper().find(b"STARTTLS\r\n")
    if marker >= 0:
        c_tls = marker + len(b"STARTTLS\r\n")
        # The server's 220 answer to STARTTLS ends its cleartext.
        # (the first 220 line is the banner).
        pos = 0
        for number, line in enumerate(server.split(b"\r\n")):
            pos += len(line) + 2
            if number > 0 and line.startswith(b"220 "):
                s_tls = pos
                break
        if not _looks_like_tls(client[c_tls:]):  # refused (454), or TLS never began
            c_tls = s_tls = -1
    return (_cut(conn.stream(True), c_tls), _cut(conn.stream(False), s_tls), c_tls, s_tls)


def _cut(chunks: list[tuple[float, bytes]], limit: int) -> list[tuple[float, bytes]]:
    if limit < 0:
        return chunks
    out, total = [], 0
    for when, data in chunks:
        if total >= limit:
            break
        out.append((when, data[: limit - total]))
        total += len(data)
    return out


def _merge(*line_lists: list[WireLine]) -> list[WireLine]:
    merged = [line for lines in line_lists for line in lines]
    merged.sort(key=lambda line: line.time)  # stable: each side keeps its order
    return merged


# -- the capture --------------------------------------------------------------------------------


class Capture:
    """A capture around a lab interaction (a context manager); see the module docstring.

    Build it with :func:`capture`, or read a saved one with :func:`load`.
    """

    def __init__(self, lab: Lab | None, targets: Sequence[Target], *, mode: str = "auto",
                 dns: bool = True, path: str | Path | None = None) -> None:
        if mode not in MODES:
            raise CaptureError(f"mode={mode!r}: use one of {', '.join(MODES)}")
        self.lab = lab
        self.targets = {t.name: t for t in targets}
        self.requested_mode = mode
        self.dns = dns and lab is not None
        self.path = Path(path) if path is not None else None
        self.mode = "file"
        self.why = ""
        self.packets: list[Any] = []
        self.services: dict[int, str] = {}
        self.started = 0.0
        self.finished = False
        self._relays: dict[str, _TCPRelay] = {}
        self._udp: _UDPRelay | None = None
        self._streams: list[_Stream] = []
        self._datagrams: list[_Datagram] = []
        self._lock = threading.Lock()
        self._sniffer: Any = None
        self._marker: socket.socket | None = None
        self._marker_port = 0
        self._end_marker = b""
        self._is_marker: Any = None

    # -- where clients connect --------------------------------------------------------------

    def port(self, name: str) -> int:
        """The port a client connects to for ``name`` while capturing (the relay's port in
        relay mode, the real one in live mode)."""
        if name not in self.targets:
            raise CaptureError(f"this capture does not watch {name!r}; it watches "
                               f"{', '.join(self.targets) or 'nothing'}")
        if name in self._relays:
            return self._relays[name].port
        return self.targets[name].port

    @property
    def host(self) -> str:
        return "127.0.0.1"

    @property
    def dns_port(self) -> int:
        """The port DNS queries go to while capturing."""
        if self._udp is not None:
            return self._udp.port
        if self.lab is None:
            raise CaptureError("a capture read from a file has no DNS server")
        return self.lab.dns.port

    def query(self, name: str, rdtype: str = "A") -> Any:
        """Ask the lab's DNS one question through the capture (see :func:`query.ask`)."""
        from ..dns.query import ask

        return ask(name, rdtype, server="127.0.0.1", port=self.dns_port)

    def resolver(self) -> Any:
        """A dnspython resolver that asks the lab's DNS through the capture."""
        import dns.resolver

        resolver = dns.resolver.Resolver(configure=False)
        resolver.nameservers = ["127.0.0.1"]
        resolver.port = self.dns_port
        resolver.cache = None
        return resolver

    # -- life cycle -----------------------------------------------------------------------

    def __enter__(self) -> Capture:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        if self.lab is None:
            raise CaptureError("only a capture made with capture(lab, ...) can start")
        self.started = time.time()
        mode = self.requested_mode
        forced = os.environ.get(MODE_VARIABLE, "")
        if mode == "auto" and forced in ("live", "relay"):
            mode = forced
            self.why = f"{forced}: set by {MODE_VARIABLE}"
        if mode == "auto":
            ok, why = can_sniff()
            mode = "live" if ok else "relay"
            self.why = (f"live: this process may sniff ({why})" if ok else
                        f"relay: {why}, so a recording relay stands between client and server")
        elif mode == "live":
            ok, why = can_sniff()
            if not ok:
                raise CaptureError(f"cannot sniff live: {why}; use mode='relay'")
            self.why = self.why or f"live: asked for ({why})"
        else:
            self.why = self.why or "relay: asked for"
        self.mode = mode
        if mode == "live":
            try:
                self._start_live()
                return
            except Exception as exc:  # noqa: BLE001 - scapy and libpcap fail in many ways
                if self.requested_mode == "live":
                    raise CaptureError(f"live capture failed: {exc}") from exc
                self.services.clear()
                self.mode = mode = "relay"
                self.why = f"relay: live sniffing failed here ({exc})"
        if mode == "relay":
            for name, target in self.targets.items():
                self._relays[name] = _TCPRelay(target, self._streams, self._lock)
                self.services[target.wire_port] = name
            if self.dns:
                self._udp = _UDPRelay(self.lab.dns.port, self._datagrams, self._lock)
                self.services[53] = "dns"

    def _start_live(self) -> None:
        from scapy.config import conf

        conf.use_pcap = True
        import scapy.layers.inet  # noqa: F401 - registers Ether, IP, TCP, UDP for decoding
        import scapy.layers.l2  # noqa: F401
        from scapy.sendrecv import AsyncSniffer

        assert self.lab is not None
        terms = [f"tcp port {t.port}" for t in self.targets.values()]
        for name, target in self.targets.items():
            self.services[target.port] = name
        if self.dns:
            terms.append(f"udp port {self.lab.dns.port}")
            self.services[self.lab.dns.port] = "dns"
        # Marker datagrams, sent to a socket of our own, tell when the sniffer sees
        # traffic (libpcap hands packets over in blocks, up to 100 ms late): the capture
        # starts once the first marker is seen and ends when the last one is.
        self._marker = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._marker.bind(("127.0.0.1", 0))
        marker_port = int(self._marker.getsockname()[1])
        self._marker_port = marker_port
        terms.append(f"udp dst port {marker_port}")
        seen_start = threading.Event()
        end = b"end-" + os.urandom(8)

        def is_marker(packet: Any, payload: bytes | None = None) -> bool:
            from scapy.layers.inet import UDP

            return (UDP in packet and int(packet[UDP].dport) == marker_port
                    and (payload is None or bytes(packet[UDP].payload) == payload))

        def on_packet(packet: Any) -> None:
            if is_marker(packet):
                seen_start.set()

        self._is_marker = is_marker
        self._end_marker = end
        self._sniffer = AsyncSniffer(iface=conf.loopback_name, filter=" or ".join(terms),
                                     store=True, prn=on_packet,
                                     stop_filter=lambda p: is_marker(p, end))
        self._sniffer.start()
        deadline = time.time() + 5
        while not seen_start.is_set():
            if time.time() > deadline:
                self._sniffer.stop()
                raise CaptureError("the sniffer saw nothing within 5 seconds")
            self._marker.sendto(b"start", ("127.0.0.1", marker_port))
            seen_start.wait(0.02)

    def stop(self) -> None:
        """End the capture and write the pcap file."""
        if self.finished:
            return
        if self.mode == "live":
            time.sleep(0.02)  # the last packets (FIN, ACK) are on their way
            marker = self._marker
            assert marker is not None
            marker.sendto(self._end_marker, ("127.0.0.1", self._marker_port))
            self._sniffer.join(3)
            if self._sniffer.running:
                self._sniffer.stop()
            marker.close()
            self.packets = [p for p in (self._sniffer.results or [])
                            if not self._is_marker(p)]
        else:
            for relay in self._relays.values():
                relay.close()
            if self._udp is not None:
                self._udp.close()
            packets: list[Any] = []
            with self._lock:  # a relay thread may still note a connection's end
                for n, stream in enumerate(self._streams):
                    packets += _tcp_packets(stream, n + 1)
                for datagram in self._datagrams:
                    packets.append(_udp_packet(datagram, ROLE_ADDRESSES["dns"]))
            packets.sort(key=lambda p: float(p.time))
            self.packets = packets
        self.finished = True
        self._write()

    def _write(self) -> None:
        from scapy.utils import wrpcap

        if self.path is None:
            folder = (self.lab.state_dir / "captures") if self.lab is not None else \
                Path(tempfile.gettempdir())
            folder.mkdir(parents=True, exist_ok=True)
            stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime(self.started or time.time()))
            self.path = folder / f"capture-{stamp}-{os.getpid()}-{id(self) % 10000}.pcap"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.packets:
            wrpcap(str(self.path), self.packets)
        else:  # an empty capture is still a valid pcap file (Ethernet link type)
            self.path.write_bytes(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))

    # -- reading it -----------------------------------------------------------------------

    def _require_done(self) -> None:
        if not self.finished:
            raise CaptureError("the capture is still running: read it after the with block")

    def segments(self) -> list[Segment]:
        self._require_done()
        return _segments(self.packets, self.services)

    def summary(self, show_acks: bool = False) -> CaptureSummary:
        """The packets as a table (pure TCP acknowledgements left out unless asked)."""
        rows = _summarise(self.segments(), show_acks)
        protocols = sorted({r.protocol for r in rows})
        return CaptureSummary(verdict=self.mode, trace=(),
                              summary=f"{self.mode} capture; protocols: "
                                      f"{', '.join(protocols) or 'none'}; file {self.path}",
                              rows=rows)

    def dns_messages(self) -> list[tuple[str, Any]]:
        """Every DNS datagram as ``(direction, dns.message.Message)``, in order: a query
        and its response packet by packet (RFC 1035 section 4.1)."""
        import dns.exception
        import dns.message

        found: list[tuple[str, Any]] = []
        for s in self.segments():
            if s.proto != "udp" or s.service != "dns":
                continue
            try:
                message = dns.message.from_wire(s.payload, ignore_trailing=True)
            except dns.exception.DNSException:
                continue
            found.append(("client → server" if s.from_client else "server → client", message))
        return found

    def connections(self) -> list[_Connection]:
        return _connections(self.segments())

    def dialogue(self, connection: int = 0) -> WireDialogue:
        """The SMTP dialogue of one connection (the first by default), read from the bytes
        in the clear; where TLS starts, only a note says so."""
        conns = self.connections()
        if not conns:
            return WireDialogue(verdict="empty", summary="no TCP connection in the capture")
        conn = conns[connection]
        c_clear, s_clear, c_tls, _s = _clear_part(conn)
        lines = _merge(_lines_of(c_clear, "->"), _lines_of(s_clear, "<-"))
        if c_tls >= 0:
            when = lines[-1].time if lines else 0.0
            lines.append(WireLine("===", "TLS starts: the rest is encrypted", when))
            verdict = "tls"
            summary = (f"{len(lines) - 1} lines in the clear, then TLS: an observer sees "
                       "only encrypted records from here on")
        else:
            verdict = "clear"
            summary = f"{len(lines)} lines, every one readable by anyone on the path"
        return WireDialogue(verdict=verdict, summary=summary, lines=tuple(lines))

    def decrypt(self, keylog: str | Path, connection: int = 0) -> TLSView:
        """The dialogue inside TLS 1.3, recovered with the client's key log (NSS format);
        see :mod:`labsupport.wire.capture_tls`."""
        from .capture_tls import decrypt_connection

        conns = self.connections()
        if not conns:
            raise CaptureError("no TCP connection in the capture")
        return decrypt_connection(conns[connection], keylog)

    # -- tools --------------------------------------------------------------------------------

    def decode_hints(self) -> list[str]:
        """``-d`` options tshark needs for this capture (live captures use ephemeral ports
        Wireshark does not know; relay captures need none)."""
        hints = []
        wire = {t.port: t.wire_port for t in self.targets.values()}
        for port, service in sorted(self.services.items()):
            if port in WELL_KNOWN:
                continue
            if service == "dns":
                hints.append(f"-d udp.port=={port},dns")
            elif wire.get(port) == 465 or service == "submissions":
                # TLS from the first byte, and SMTP inside it once decrypted.
                hints += [f"-d tcp.port=={port},tls", f"-d tls.port=={port},smtp"]
            else:
                hints.append(f"-d tcp.port=={port},smtp")
        return hints

    def tshark_command(self, keylog: str | Path | None = None, fields: bool = False) -> str:
        """The tshark command that shows this capture (decrypted when given the key log)."""
        parts = ["tshark", "-r", str(self.path), *self.decode_hints()]
        if keylog is not None:
            parts += ["-o", f"tls.keylog_file:{keylog}"]
        if fields:
            parts += ["-Y", "smtp", "-T", "fields", "-e", "smtp.req.command", "-e",
                      "smtp.response.code"]
        return " ".join(parts)

    def tshark(self, keylog: str | Path | None = None, extra: Sequence[str] = ()) -> str:
        """Run tshark on the capture (when installed) and return what it printed."""
        exe = shutil.which("tshark")
        if exe is None:
            return "tshark is not installed here (Debian/Ubuntu: apt-get install tshark)."
        argv = [exe, "-r", str(self.path)]
        for hint in self.decode_hints():
            argv += hint.split(" ", 1)
        if keylog is not None:
            argv += ["-o", f"tls.keylog_file:{keylog}"]
        done = subprocess.run([*argv, *extra], capture_output=True, text=True, timeout=60,
                              check=False)
        return done.stdout + "".join(line + "\n" for line in done.stderr.splitlines()
                                     if "Running as user" not in line)

    def round_trips(self, connection: int = 0) -> int | None:
        """Round trips the client waits for before it can send its first protected byte:
        the TCP handshake, each command in the clear answered before TLS, and TLS 1.3's
        one round trip. None when the connection never starts TLS."""
        conns = self.connections()
        if not conns:
            return None
        flights = 0
        last_client = False
        for s in sorted(conns[connection].segments, key=lambda s: s.index):
            carries = bool(s.payload) or "S" in s.flags
            if not carries:
                continue
            if s.from_client and not last_client:
                flights += 1
                if s.payload and _looks_like_tls(s.payload):
                    return flights
            last_client = s.from_client
        return None

    def describe(self) -> str:
        """One paragraph: the mode, why, where the file is, and how to open it."""
        lines = [f"Capture mode: {self.mode} ({self.why})."]
        if self.finished:
            lines.append(f"{len(self.packets)} packets written to {self.path}.")
            lines.append(f"Open it: {self.tshark_command()}")
        for name in self.targets:
            lines.append(f"  {name}: clients connect to 127.0.0.1:{self.port(name)}")
        return "\n".join(lines)

    def __repr__(self) -> str:
        state = "done" if self.finished else "running"
        return f"<Capture {self.mode} {state}, {len(self.packets)} packets, {self.path}>"

    def _repr_html_(self) -> str:
        if not self.finished:
            return f"<pre>{html.escape(self.describe())}</pre>"
        return (f"<pre>{html.escape(self.describe())}</pre>" + self.summary()._repr_html_())


def capture(lab: Lab, *roles: str | Target, mode: str = "auto", dns: bool = True,
            path: str | Path | None = None) -> Capture:
    """A capture of the given mail roles (default: submission, submissions, mx) and of the
    lab's DNS, to use as ``with capture(lab, "submission") as cap:``. ``capture(lab,
    "dns")`` captures only DNS (queries sent with ``cap.query`` or ``cap.resolver()``).

    ``mode`` is ``"auto"`` (live when this process may sniff, else the relay),
    ``"live"`` or ``"relay"``; ``path`` where the pcap goes (default: the lab's state
    directory, ``captures/``). A :class:`Target` captures any other TCP service, such as
    the man in the middle of :mod:`labsupport.mail.mitm`.
    """
    chosen = roles or ("submission", "submissions", "mx")
    targets = [r if isinstance(r, Target) else role_target(lab, r) for r in chosen
               if r != "dns"]
    return Capture(lab, targets, mode=mode, dns=dns or "dns" in chosen, path=path)


def load(path: str | Path, services: dict[int, str] | None = None) -> Capture:
    """A saved capture (pcap), ready to summarise, read and decrypt like a fresh one.

    ``services`` names the server ports of a live capture ({port: "submission"}); the
    conventional ports 25, 587, 465 and 53 are known.
    """
    import scapy.layers.inet  # noqa: F401 - registers Ether, IP, TCP, UDP for decoding
    import scapy.layers.l2  # noqa: F401
    from scapy.utils import rdpcap

    try:
        packets = list(rdpcap(str(path)))
    except (OSError, Exception) as exc:  # noqa: BLE001 - scapy raises its own Scapy_Exception
        raise CaptureError(f"cannot read the capture {path}: {exc}") from None
    done = Capture(None, [], mode="auto", path=path)
    done.packets = packets
    done.services = dict(services or {})
    done.finished = True
    done.mode = "file"
    done.why = f"read from {path}"
    return done


def keylog_path(lab: Lab, name: str = "keys") -> Path:
    """A fresh key log file in the lab's state directory (``captures/NAME.keylog``)."""
    folder = lab.state_dir / "captures"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}-{os.getpid()}-{int(time.time() * 1000) % 10**8}.keylog"
    path.unlink(missing_ok=True)
    return path


def packets_of(path: str | Path) -> Iterator[Any]:
    """Every packet of a pcap file (scapy), for those who want the raw packets."""
    from scapy.utils import PcapReader

    with PcapReader(str(path)) as reader:
        yield from reader


__all__ = ["CLIENT_ADDRESS", "CONVENTIONAL_PORTS", "Capture", "CaptureError", "CaptureSummary",
           "PacketRow", "ROLE_ADDRESSES", "Segment", "Target", "WireDialogue",
           "WireLine", "can_sniff", "capture", "keylog_path", "load", "packets_of",
           "role_target"]
