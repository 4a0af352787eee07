"""Who is on the other end? The Unix user that owns a loopback peer's socket.

Every local user can connect to every port on 127.0.0.1, so a lab on a shared host
(a JupyterHub) cannot rely on "it only listens on loopback" to keep other students out:
its servers must ask who connected. For TCP and UDP over loopback the kernel does not
tell a server the peer's credentials (``SO_PEERCRED`` is for Unix sockets only), but on
Linux it lists every socket in ``/proc/net/tcp``, ``tcp6``, ``udp`` and ``udp6``, with
its addresses and the uid that owns it. The peer of a connection is the row whose *local*
address is the peer's address: for TCP its remote address is ours as well; for UDP the
client's own socket may be unbound to any one address (the kernel lists it with the
all-zero address) at that port. The lab's servers themselves bind 127.0.0.1 only.
The kernel gives the same answer faster through socket diagnostics (``sock_diag`` over
netlink, what ``ss -tune`` uses): one exact lookup instead of a walk of the whole table,
which on a big host takes milliseconds for ``/proc/net/tcp``. :func:`same_user` asks
that way first and reads the tables when it cannot (or to confirm that nothing is there).

:func:`same_user` does the lookup for one connection and returns a :class:`PeerCheck`:
``same-user``, ``other-user`` or ``cannot-tell`` (not Linux, no ``/proc``, or the peer's
socket is already gone), with the reason in words and a trace that shows the row it
read. ``check.allowed`` is what a server should act on: the same user, or a host where
nobody can tell (macOS, Windows). :func:`check_socket` and :func:`check_transport` take
a socket or an asyncio transport instead of two addresses.

Limits (what this check cannot promise):

* ``root`` (and any process with ``CAP_NET_RAW`` or ``CAP_SYS_PTRACE``) can always get
  in: it can read the student's files, forge packets or become the student.
* A process of the same user *is* the same user: another notebook, a terminal or a
  program the student runs is let in, whatever it is.
* The answer is about the moment of the lookup: a TCP peer that has already closed its
  socket, or a UDP peer that sent and closed, gives ``cannot-tell``. On Linux, where the
  lookup works, a server should refuse then (``allowed`` is False).
* Sockets shared between users (a descriptor passed to another user's process, or UDP
  ports bound by two users with ``SO_REUSEADDR``) show one owner per row; a UDP port with
  rows of several owners is treated as another user's.
* Its cost: about 20 µs per lookup through netlink; reading the tables instead costs in
  proportion to the kernel's hash table (``/proc/net/tcp``: milliseconds on a big host,
  ``/proc/net/udp``: tens of microseconds).

Introduced for multi-user safety; a lesson can show it with ``same_user(...).text()``.
"""

from __future__ import annotations

import errno
import functools
import ipaddress
import os
import socket
import struct
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .results import Result, TraceBuilder

#: Where Linux lists the sockets of this network namespace.
PROC_NET = Path("/proc/net")

#: TCP states as /proc/net/tcp numbers them (include/net/tcp_states.h).
TCP_STATES = {
    "01": "ESTABLISHED", "02": "SYN_SENT", "03": "SYN_RECV", "04": "FIN_WAIT1",
    "05": "FIN_WAIT2", "06": "TIME_WAIT", "07": "CLOSE", "08": "CLOSE_WAIT",
    "09": "LAST_ACK", "0A": "LISTEN", "0B": "CLOSING",
}
#: A TIME_WAIT row belongs to no process any more (the kernel shows uid 0 for it).
_TIME_WAIT = "06"
_LISTEN = "0A"
#: Column of the owner's uid in a row split on white space.
_UID_COLUMN = 7

Address = tuple[Any, ...]
"""A socket address as Python gives it: ``(host, port)`` or ``(host, port, flow, scope)``."""


@dataclass(frozen=True, kw_only=True)
class PeerCheck(Result):
    """Whether the peer of one connection runs as the same Unix user as this process.

    ``verdict`` is ``"same-user"``, ``"other-user"`` or ``"cannot-tell"``; ``summary``
    says why. ``peer_uid`` is the uid that owns the peer's socket when it was found;
    ``own_uid`` this process's effective uid; ``supported`` says whether this host can
    tell at all (Linux with a readable ``/proc/net``).
    """

    transport: str
    local: tuple[str, int]
    peer: tuple[str, int]
    own_uid: int | None
    peer_uid: int | None
    supported: bool

    @property
    def same_user(self) -> bool | None:
        """True or False when known, None when it cannot be told."""
        return {"same-user": True, "other-user": False}.get(self.verdict)

    @property
    def allowed(self) -> bool:
        """What a server should do: let in the same user, and anyone where no host could
        tell (not Linux); refuse another user, and a peer gone before it was seen."""
        return self.verdict == "same-user" or (self.verdict == "cannot-tell"
                                               and not self.supported)

    def title(self) -> str:
        return (f"PeerCheck: {self.verdict} ({self.transport} from "
                f"{_show(self.peer)} to {_show(self.local)})")


def _show(address: tuple[str, int]) -> str:
    host, port = address
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


@functools.lru_cache(maxsize=256)
def user_name(uid: int | None) -> str:
    """``uid 1001 (alice)``, or just the number when the system has no name for it."""
    if uid is None:
        return "an unknown user"
    try:
        import pwd

        return f"uid {uid} ({pwd.getpwuid(uid).pw_name})"
    except (ImportError, KeyError):
        return f"uid {uid}"


# -- the addresses as /proc/net writes them ------------------------------------------------


def _hex_address(address: ipaddress.IPv4Address | ipaddress.IPv6Address, port: int) -> str:
    """``127.0.0.1``, 25 as ``0100007F:0019``: each 32-bit word of the address in the
    host's byte order, as the kernel prints it (``%08X``), then the port in hex."""
    packed = address.packed
    words = "".join(f"{int.from_bytes(packed[i:i + 4], sys.byteorder):08X}"
                    for i in range(0, len(packed), 4))
    return f"{words}:{port:04X}"


@functools.lru_cache(maxsize=64)
def _ip(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    """``host`` as an address, an IPv4-mapped IPv6 one as IPv4 (ValueError: not one)."""
    address = ipaddress.ip_address(host.split("%", 1)[0])
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _forms(host: str, port: int) -> dict[str, str]:
    """The table suffix (``""`` for IPv4, ``"6"``) and the text of ``host:port`` in it.

    An IPv4 address may also appear in the IPv6 table as ``::ffff:a.b.c.d`` (a dual-stack
    socket), and an IPv4-mapped IPv6 address in the IPv4 table as itself."""
    address = _ip(host)
    if isinstance(address, ipaddress.IPv4Address):
        mapped = ipaddress.IPv6Address(b"\0" * 10 + b"\xff\xff" + address.packed)
        return {"": _hex_address(address, port), "6": _hex_address(mapped, port)}
    return {"6": _hex_address(address, port)}


def _wildcards(port: int) -> dict[str, str]:
    """How /proc/net lists a *client's* UDP socket that names no local address, at
    ``port`` (the all-zero IPv4 and IPv6 addresses); the lab never binds so."""
    return {"": _hex_address(ipaddress.IPv4Address(0), port),
            "6": _hex_address(ipaddress.IPv6Address(0), port)}


def _rows(text: str, pattern: str) -> list[list[str]]:
    """Every row of a /proc/net table that contains ``pattern``, split into columns."""
    found = []
    start = text.find(pattern)
    while start >= 0:
        begin = text.rfind("\n", 0, start) + 1
        end = text.find("\n", start)
        found.append(text[begin:end if end >= 0 else len(text)].split())
        start = text.find(pattern, end if end >= 0 else len(text))
    return found


# -- asking the kernel: sock_diag over netlink, as ``ss`` does -------------------------------

#: Netlink protocol and message type of socket diagnostics (linux/sock_diag.h).
_NETLINK_SOCK_DIAG = 4
_SOCK_DIAG_BY_FAMILY = 20
_NLMSG_ERROR = 2
_NLM_F_REQUEST = 1
#: inet_diag_msg: family, state, timer, retrans, then the 48-byte socket id, then
#: expires, rqueue, wqueue, uid, inode (linux/inet_diag.h).
_DIAG_UID_OFFSET = 4 + 48 + 12
_NO_COOKIE = 0xFFFFFFFF
_PROTOCOLS = {"tcp": socket.IPPROTO_TCP, "udp": socket.IPPROTO_UDP}


@dataclass(frozen=True)
class _Found:
    """A socket the kernel or a table named: its owner, its state and where it was seen."""

    uid: int
    state: str
    where: str


def _packed(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bytes:
    return address.packed + b"\0" * (16 - len(address.packed))


def _diag_lookup(transport: str, peer: tuple[str, int], ours: tuple[str, int]
                 ) -> _Found | None:
    """The peer's socket, found by the kernel itself (one exact lookup, no table walk).

    TCP: the socket whose local end is the peer and remote end is us
    (``inet_diag_find_one_icsk``). UDP: the socket that would receive a datagram from us
    to the peer's address (``udp_dump_one``), which is the one that sent from there.
    None when the kernel has no such socket; OSError when netlink cannot be used."""
    them, us = _ip(peer[0]), _ip(ours[0])  # one IPv4 lookup finds dual-stack sockets too
    family = socket.AF_INET if them.version == 4 else socket.AF_INET6
    if transport == "tcp":
        src, sport, dst, dport = them, peer[1], us, ours[1]
    else:
        src, sport, dst, dport = us, ours[1], them, peer[1]
    sockid = (struct.pack("!HH", sport, dport) + _packed(src) + _packed(dst)
              + struct.pack("=III", 0, _NO_COOKIE, _NO_COOKIE))
    request = struct.pack("=BBBBI", family, _PROTOCOLS[transport], 0, 0, 0xFFFFFFFF) + sockid
    header = struct.pack("=IHHII", 16 + len(request), _SOCK_DIAG_BY_FAMILY, _NLM_F_REQUEST,
                         1, 0)
    with socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, _NETLINK_SOCK_DIAG) as link:
        link.settimeout(1.0)
        link.sendto(header + request, (0, 0))
        reply = link.recv(8192)
    if len(reply) < 20:
        raise OSError("a short sock_diag reply")
    (kind,) = struct.unpack_from("=H", reply, 4)
    if kind == _NLMSG_ERROR:
        (error,) = struct.unpack_from("=i", reply, 16)
        if -error == errno.ENOENT:
            return None
        raise OSError(-error, os.strerror(-error))
    if kind != _SOCK_DIAG_BY_FAMILY or len(reply) < 16 + _DIAG_UID_OFFSET + 8:
        raise OSError(f"an unexpected sock_diag reply (type {kind})")
    state = reply[17]
    (found_port,) = struct.unpack_from("!H", reply, 16 + 4)
    uid, inode = struct.unpack_from("=II", reply, 16 + _DIAG_UID_OFFSET)
    if found_port != peer[1]:
        return None  # not the peer's socket (a listener that happens to match)
    return _Found(uid, f"{state:02X}", f"inode {inode}")


# -- reading the tables: /proc/net/tcp, tcp6, udp, udp6 ------------------------------------


def _proc_lookup(folder: Path, transport: str, peer: tuple[str, int], ours: tuple[str, int],
                 trace: TraceBuilder) -> dict[int, _Found] | None:
    """Every owner of a row that is the peer's socket, by uid (None: no table readable)."""
    peer_forms, our_forms = _forms(*peer), _forms(*ours)
    owners: dict[int, _Found] = {}
    readable = False
    for suffix, peer_text in peer_forms.items():
        if transport == "tcp" and suffix not in our_forms:
            continue  # a connection never joins an IPv6 peer to an IPv4 socket
        table = folder / f"{transport}{suffix}"
        try:
            text = table.read_text(encoding="ascii", errors="replace")
        except OSError as exc:
            trace.add(f"cannot read {table}: {exc.strerror or exc}", kind="warning")
            continue
        readable = True
        if transport == "tcp":
            patterns = [f": {peer_text} {our_forms[suffix]} "]
            trace.add(f"look in {table} for the row with local address {peer_text} "
                      f"(the peer) and remote address {our_forms[suffix]} (us)", kind="query")
        else:
            wanted = [peer_text, _wildcards(peer[1])[suffix]]
            patterns = [f": {w} " for w in wanted]
            trace.add(f"look in {table} for the row with local address {wanted[0]} "
                      f"(the peer), or {wanted[1]} (bound to any address at its port)",
                      kind="query")
        for pattern in patterns:
            for row in _rows(text, pattern):
                found = _row_owner(row, transport, our_forms.get(suffix, ""), str(table),
                                   trace)
                if found is not None:
                    owners[found.uid] = found
        if owners:
            break  # found in the IPv4 table: the IPv6 one (dual-stack sockets) can wait
    return owners if readable else None


def _row_owner(row: list[str], transport: str, our_text: str, table: str,
               trace: TraceBuilder) -> _Found | None:
    """The owner of one matching row, or None when the row does not count (and why)."""
    if len(row) <= _UID_COLUMN or not row[_UID_COLUMN].isdigit():
        return None
    state, remote = row[3], row[2]
    with trace.nested():
        if transport == "tcp" and state == _TIME_WAIT:
            trace.add("a TIME_WAIT row: the peer already closed; no process owns it",
                      detail=" ".join(row[:10]))
            return None
        if transport == "udp" and remote.split(":")[-1] != "0000" and remote != our_text:
            trace.add(f"a UDP socket connected to {remote}, not to us: not the sender",
                      detail=" ".join(row[:10]))
            return None
        found = _Found(int(row[_UID_COLUMN]), state, table)
        trace.add(f"found it ({_state_name(transport, state)}): owned by "
                  f"{user_name(found.uid)}", kind="answer", detail=" ".join(row[:10]))
    return found


def _state_name(transport: str, state: str) -> str:
    return TCP_STATES.get(state, state) if transport == "tcp" else "bound"


# -- the check -----------------------------------------------------------------------------


def same_user(local: Address, peer: Address, transport: str = "tcp", *,
              own_uid: int | None = None, proc_net: Path | None = None,
              method: str = "auto") -> PeerCheck:
    """Does the peer of a connection from ``peer`` to our ``local`` address run as our
    user? ``transport`` is ``"tcp"`` or ``"udp"``.

    ``method`` ``"auto"`` asks the kernel with one sock_diag lookup (netlink, as ``ss``
    does: about 20 µs) and reads the ``/proc/net`` tables when that is not possible or
    finds nothing; ``"proc"`` reads only the tables (what a lesson shows: the row itself;
    on a big host reading ``/proc/net/tcp`` takes milliseconds). ``own_uid`` defaults to
    this process's effective uid; ``proc_net`` to ``/proc/net`` (tests give a folder of
    made-up tables, which implies ``"proc"``).

    A server calls it once per TCP connection (at accept) or UDP datagram, and refuses
    when ``not check.allowed``.
    """
    if transport not in _PROTOCOLS:
        raise ValueError(f"transport must be 'tcp' or 'udp', not {transport!r}")
    if method not in ("auto", "proc"):
        raise ValueError(f"method must be 'auto' or 'proc', not {method!r}")
    ours = (str(local[0]), int(local[1]))
    theirs = (str(peer[0]), int(peer[1]))
    if own_uid is None and hasattr(os, "geteuid"):
        own_uid = os.geteuid()
    trace = TraceBuilder()
    trace.add(f"our {transport} socket is {_show(ours)}, owned by {user_name(own_uid)} "
              "(this process)")

    def result(verdict: str, summary: str, peer_uid: int | None = None,
               supported: bool = True) -> PeerCheck:
        return PeerCheck(verdict=verdict, summary=summary, trace=trace.freeze(),
                         transport=transport, local=ours, peer=theirs, own_uid=own_uid,
                         peer_uid=peer_uid, supported=supported)

    if proc_net is None and not sys.platform.startswith("linux"):
        trace.add(f"{sys.platform} lists no socket owners to ordinary programs", kind="warning")
        return result("cannot-tell", "cannot tell who connected: only Linux tells a program "
                      f"who owns a socket, and this is {sys.platform}", supported=False)
    try:
        versions = {_ip(theirs[0]).version, _ip(ours[0]).version}
    except ValueError:
        versions = set()
    if len(versions) != 1:
        trace.add(f"{theirs[0]!r} and {ours[0]!r} are not two IP addresses of one family",
                  kind="error")
        return result("cannot-tell", "cannot tell who connected: the addresses are not IP "
                      "addresses of one family", supported=False)

    owners: dict[int, _Found] | None = None
    if proc_net is None and method == "auto":
        trace.add(f"ask the kernel (sock_diag, as ss does) for the {transport} socket at "
                  f"{_show(theirs)}" + (f" connected to {_show(ours)}" if transport == "tcp"
                                        else ""), kind="query")
        try:
            found = _diag_lookup(transport, theirs, ours)
        except OSError as exc:
            with trace.nested():
                trace.add(f"netlink cannot be used here ({exc}): read the tables instead",
                          kind="warning")
        else:
            with trace.nested():
                if found is not None and found.state not in (_TIME_WAIT, _LISTEN):
                    owners = {found.uid: found}
                    trace.add(f"found it ({_state_name(transport, found.state)}, "
                              f"{found.where}): owned by {user_name(found.uid)}",
                              kind="answer")
                else:
                    trace.add("the kernel has no open socket there: check the tables")
    if owners is None:
        owners = _proc_lookup(proc_net or PROC_NET, transport, theirs, ours, trace)
        if owners is None:
            return result("cannot-tell", "cannot tell who connected: no socket table under "
                          f"{proc_net or PROC_NET} can be read", supported=False)

    if not owners:
        trace.add("no row: the peer's socket is gone (closed), or it is not on this host",
                  kind="warning")
        return result("cannot-tell", f"cannot tell who connected from {_show(theirs)}: its "
                      "socket is no longer listed (it closed, or it is on another host)")
    others = sorted(uid for uid in owners if uid != own_uid)
    if not others:
        trace.add(f"{user_name(own_uid)} is us: the same user", kind="ok")
        return result("same-user", f"{_show(theirs)} belongs to {user_name(own_uid)}, the "
                      "user this lab runs as", peer_uid=own_uid)
    who = ", ".join(user_name(uid) for uid in others)
    trace.add(f"{who} is not {user_name(own_uid)}: another user", kind="decision")
    shared = " (the port is shared by several users)" if len(owners) > 1 else ""
    return result("other-user", f"{_show(theirs)} belongs to {who}, not to "
                  f"{user_name(own_uid)} who runs this lab{shared}", peer_uid=others[0])


def check_socket(sock: socket.socket, peer: Address | None = None) -> PeerCheck:
    """:func:`same_user` for a connected socket (or an unconnected UDP socket and the
    ``peer`` address a datagram came from)."""
    transport = "udp" if sock.type == socket.SOCK_DGRAM else "tcp"
    return same_user(sock.getsockname(), peer if peer is not None else sock.getpeername(),
                     transport)


def check_transport(transport: Any, peer: Address | None = None) -> PeerCheck:
    """:func:`same_user` for an asyncio transport: a stream's (``connection_made``), or a
    datagram endpoint's with the ``addr`` that ``datagram_received`` got."""
    sock = transport.get_extra_info("socket")
    kind = "udp" if sock is not None and sock.type == socket.SOCK_DGRAM else "tcp"
    local = transport.get_extra_info("sockname")
    theirs = peer if peer is not None else transport.get_extra_info("peername")
    return same_user(local, theirs, kind)


__all__ = ["PROC_NET", "PeerCheck", "check_socket", "check_transport", "same_user",
           "user_name"]
