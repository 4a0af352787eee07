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

The parts live beside this module, each importing only those below it:
:mod:`~labsupport.wire.relay` (targets, the recording relay, synthesized packets),
:mod:`~labsupport.wire.segments` (packets read back: segments, connections, the summary),
:mod:`~labsupport.wire.dialogue` (the clear-text dialogue) and
:mod:`~labsupport.wire.capture_tls` (the dialogue inside TLS).

Introduced in ``notebooks/03-starttls-vs-implicit-tls.ipynb``.
"""

from __future__ import annotations

import html
import os
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from .capture_files import captures_folder as captures_folder
from .capture_files import default_pcap_path, is_private, write_pcap
from .capture_files import keylog_path as keylog_path
from .capture_files import packets_of as packets_of
from .dialogue import WireDialogue as WireDialogue
from .dialogue import WireLine as WireLine
from .dialogue import _clear_part, _lines_of, _merge
from .relay import CLIENT_ADDRESS as CLIENT_ADDRESS
from .relay import CONVENTIONAL_PORTS as CONVENTIONAL_PORTS
from .relay import ROLE_ADDRESSES as ROLE_ADDRESSES
from .relay import Target as Target
from .relay import _Datagram, _Stream, _tcp_packets, _TCPRelay, _udp_packet, _UDPRelay
from .segments import WELL_KNOWN as WELL_KNOWN
from .segments import CaptureError as CaptureError
from .segments import CaptureSummary as CaptureSummary
from .segments import PacketRow as PacketRow
from .segments import Segment as Segment
from .segments import _Connection, _connections, _looks_like_tls, _segments, _summarise

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


MODES = ("auto", "live", "relay")
#: An environment variable that makes ``mode="auto"`` pick "live" or "relay" (CI runs the
#: notebooks once each way).
MODE_VARIABLE = "MAIL_LABS_CAPTURE"


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

def role_target(lab: Lab, role: str) -> Target:
    """The :class:`Target` for one of the lab's mail roles."""
    return Target(role, lab.smtp.port(role), CONVENTIONAL_PORTS[role], ROLE_ADDRESSES[role])


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
        """Write the pcap (see :mod:`labsupport.wire.capture_files`: in the lab's
        ``captures/`` folder, 0700, as a file of mode 0600, unless ``path`` says where)."""
        if self.path is None:
            self.path = default_pcap_path(self.lab, self.started, id(self))
        write_pcap(self.path, self.packets, private=is_private(self.path, self.lab))

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


__all__ = ["CLIENT_ADDRESS", "CONVENTIONAL_PORTS", "Capture", "CaptureError", "CaptureSummary",
           "PacketRow", "ROLE_ADDRESSES", "Segment", "Target", "WireDialogue",
           "WireLine", "can_sniff", "capture", "captures_folder", "keylog_path", "load",
           "packets_of", "role_target"]
