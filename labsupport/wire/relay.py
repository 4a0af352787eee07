"""The recording relay: what a capture watches, and the packets it writes.

When the process may not sniff, :mod:`labsupport.wire.capture` puts a small relay
between client and server. Each :class:`Target` names one TCP service (its real port on
127.0.0.1, and the conventional port and lab-world address the packets will show); the
relay forwards every byte unchanged and records it with its time. Afterwards the
recording is written as synthesized, well-formed IPv4 packets: a TCP three-way handshake,
data segments cut at the MSS with correct sequence and acknowledgement numbers,
acknowledgements and FIN; DNS as UDP datagrams. The addresses are the lab world's
(``smtp.northwind.test`` is 192.0.2.30, ``ns.lab.test`` 192.0.2.53) and the ports the
conventional ones (25, 587, 465, 53), so Wireshark decodes them without hints.

The relay connects to the lab's services as the lab's own user, so it asks who connected
to it (:func:`labsupport.core.peers.check_socket`) and closes a connection, or drops a
datagram, from another local user at once: it must not open a way around the lab's own
checks. ``refused`` keeps the latest such checks.
"""

from __future__ import annotations

import socket
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from ..core.peers import PeerCheck, check_socket

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
#: The largest TCP segment the relay writes (an Ethernet MSS).
MSS = 1460


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
        self.refused: deque[PeerCheck] = deque(maxlen=20)
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
            if not _admitted(client, self.refused):
                client.close()  # another user: not relayed, not recorded
                continue
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
        self.refused: deque[PeerCheck] = deque(maxlen=20)
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
            if not _admitted(self._sock, self.refused, client):
                continue  # another user's datagram: dropped, not forwarded
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


def _admitted(sock: socket.socket, refused: deque[PeerCheck],
              peer: tuple[str, int] | None = None) -> bool:
    """Whether the peer of ``sock`` (or, for UDP, ``peer``) is this process's own user;
    when not, the check is kept in ``refused``."""
    try:
        check = check_socket(sock, peer)
    except OSError:
        return False  # the client is already gone
    if not check.allowed:
        refused.append(check)
    return check.allowed


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
