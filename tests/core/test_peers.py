"""labsupport.core.peers: who owns the peer's socket of a loopback connection.

Real sockets of this process for the own-uid cases (TCP and UDP, IPv4 and IPv6, through
the kernel's sock_diag and through the /proc/net tables); made-up tables for the cases
a test cannot make without a second user (another uid, TIME_WAIT, a shared UDP port).
"""

from __future__ import annotations

import asyncio
import os
import socket
import struct
import sys
from pathlib import Path

import pytest

from labsupport.core import peers
from labsupport.core.peers import PeerCheck, check_socket, check_transport, same_user

linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"),
                                reason="socket owners are listed by Linux only")
METHODS = ["auto", "proc"]
ME = os.geteuid() if hasattr(os, "geteuid") else -1


def ipv6_available() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as probe:
            probe.bind(("::1", 0))
    except OSError:
        return False
    return True


FAMILIES = [
    pytest.param(socket.AF_INET, "127.0.0.1", id="ipv4"),
    pytest.param(socket.AF_INET6, "::1", id="ipv6", marks=pytest.mark.skipif(
        not ipv6_available(), reason="this host has no IPv6 loopback")),
]


def tcp_connection(family: int, host: str) -> tuple[socket.socket, socket.socket]:
    """(the client, the server's accepted socket) of one loopback TCP connection."""
    with socket.socket(family, socket.SOCK_STREAM) as listener:
        listener.bind((host, 0))
        listener.listen()
        client = socket.socket(family, socket.SOCK_STREAM)
        client.connect(listener.getsockname()[:2])
        accepted, _ = listener.accept()
    return client, accepted


def udp_datagram(family: int, host: str, *, connect: bool
                 ) -> tuple[socket.socket, socket.socket, tuple[str, int]]:
    """(the client, the server, the address the datagram came from)."""
    server = socket.socket(family, socket.SOCK_DGRAM)
    server.bind((host, 0))
    client = socket.socket(family, socket.SOCK_DGRAM)
    if connect:  # bound to the loopback address itself, connected to the server
        client.connect(server.getsockname()[:2])
        client.send(b"hello")
    else:  # bound by sendto to the wildcard address at an ephemeral port
        client.sendto(b"hello", server.getsockname()[:2])
    _data, sender = server.recvfrom(100)
    return client, server, sender


# -- this user's own sockets ---------------------------------------------------------------


@linux_only
@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize(("family", "host"), FAMILIES)
def test_own_tcp_connection_is_the_same_user(family: int, host: str, method: str) -> None:
    client, accepted = tcp_connection(family, host)
    with client, accepted:
        check = same_user(accepted.getsockname(), accepted.getpeername(), "tcp",
                          method=method)
        assert check.verdict == "same-user", check.text()
        assert check.same_user is True and check.allowed
        assert check.peer_uid == ME == check.own_uid
        assert check.peer[1] == client.getsockname()[1]
        assert "ESTABLISHED" in check.text()
        # The client's side is a connection of this user too, seen from the other end.
        assert check_socket(client).verdict == "same-user"


@linux_only
@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("connect", [False, True], ids=["wildcard", "connected"])
@pytest.mark.parametrize(("family", "host"), FAMILIES)
def test_own_udp_datagram_is_the_same_user(family: int, host: str, connect: bool,
                                           method: str) -> None:
    client, server, sender = udp_datagram(family, host, connect=connect)
    try:
        check = same_user(server.getsockname(), sender, "udp", method=method)
        assert check.verdict == "same-user", check.text()
        assert check.peer_uid == ME and check.allowed
        assert check_socket(server, sender).verdict == "same-user"
    finally:
        client.close()
        server.close()


@linux_only
@pytest.mark.parametrize("method", METHODS)
def test_a_closed_udp_socket_cannot_be_told(method: str) -> None:
    client, server, sender = udp_datagram(socket.AF_INET, "127.0.0.1", connect=False)
    client.close()
    try:
        check = same_user(server.getsockname(), sender, "udp", method=method)
    finally:
        server.close()
    assert check.verdict == "cannot-tell", check.text()
    assert check.same_user is None and check.peer_uid is None
    # Linux could have told: a peer gone before it was seen is not let in.
    assert check.supported and not check.allowed
    assert "no longer listed" in check.summary


@linux_only
@pytest.mark.parametrize("method", METHODS)
def test_a_reset_tcp_connection_cannot_be_told(method: str) -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        client = socket.socket()
        client.connect(listener.getsockname())
        accepted, peer = listener.accept()
    local = accepted.getsockname()
    # Closing with a zero linger time sends RST: the client's socket is gone at once.
    client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    client.close()
    try:
        check = same_user(local, peer, "tcp", method=method)
    finally:
        accepted.close()
    assert check.verdict == "cannot-tell", check.text()
    assert not check.allowed


@linux_only
def test_asyncio_transports_are_checked() -> None:
    seen: list[PeerCheck] = []

    class Datagrams(asyncio.DatagramProtocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            self.transport = transport

        def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
            seen.append(check_transport(self.transport, addr))

    async def scenario() -> None:
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            seen.append(check_transport(writer.transport))
            writer.close()

        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        await reader.read()  # the server closes after its check
        writer.close()
        server.close()
        await server.wait_closed()
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(Datagrams,
                                                           local_addr=("127.0.0.1", 0))
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
            client.sendto(b"x", transport.get_extra_info("sockname"))
            for _ in range(200):
                if len(seen) == 2:
                    break
                await asyncio.sleep(0.01)
        transport.close()

    asyncio.run(scenario())
    assert [(c.transport, c.verdict) for c in seen] == [("tcp", "same-user"),
                                                        ("udp", "same-user")]


# -- made-up tables: what one user alone cannot produce ------------------------------------

HEADER = ("  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  "
          "timeout inode\n")
#: 127.0.0.1 as /proc/net prints it on a little-endian host, and ports 25 and 40000.
LOOPBACK = "0100007F"
SERVER, CLIENT = f"{LOOPBACK}:0019", f"{LOOPBACK}:9C40"
ANY = "00000000"
little_endian = pytest.mark.skipif(sys.byteorder != "little",
                                   reason="the made-up rows are written little-endian")


def row(number: int, local: str, remote: str, state: str, uid: int) -> str:
    return (f"  {number:2d}: {local} {remote} {state} 00000000:00000000 00:00000000 00000000 "
            f"{uid:5d}        0 {1000 + number} 1 0000000000000000 20 4 30 10 -1\n")


def tables(tmp_path: Path, **contents: list[str]) -> Path:
    for name in ("tcp", "tcp6", "udp", "udp6"):
        (tmp_path / name).write_text(HEADER + "".join(contents.get(name, [])), encoding="ascii")
    return tmp_path


@little_endian
def test_addresses_are_written_as_the_kernel_writes_them() -> None:
    assert peers._forms("127.0.0.1", 25) == {
        "": SERVER, "6": "0000000000000000FFFF0000" + SERVER}
    assert peers._forms("::1", 40000) == {"6": "000000000000000000000000" "01000000:9C40"}
    assert peers._forms("::ffff:127.0.0.1", 25)[""] == SERVER


@little_endian
def test_another_users_tcp_connection_is_refused(tmp_path: Path) -> None:
    folder = tables(tmp_path, tcp=[
        row(0, SERVER, f"{ANY}:0000", "0A", ME),      # our listener
        row(1, SERVER, CLIENT, "01", ME),             # our accepted socket
        row(2, CLIENT, SERVER, "01", 4242),           # the peer's: another uid
    ])
    check = same_user(("127.0.0.1", 25), ("127.0.0.1", 40000), "tcp", own_uid=ME,
                      proc_net=folder)
    assert check.verdict == "other-user", check.text()
    assert check.peer_uid == 4242 and check.same_user is False and not check.allowed
    assert "uid 4242" in check.summary and "another user" in check.text()
    assert f"{CLIENT} {SERVER} 01" in check.text()  # the row it read, verbatim
    assert "uid 4242" in check._repr_html_()


@little_endian
def test_a_time_wait_row_belongs_to_nobody(tmp_path: Path) -> None:
    folder = tables(tmp_path, tcp=[row(0, CLIENT, SERVER, "06", 0)])
    check = same_user(("127.0.0.1", 25), ("127.0.0.1", 40000), "tcp", own_uid=ME,
                      proc_net=folder)
    assert check.verdict == "cannot-tell" and not check.allowed
    assert "TIME_WAIT" in check.text()


@little_endian
def test_a_dual_stack_tcp_client_is_found_in_tcp6(tmp_path: Path) -> None:
    mapped = "0000000000000000FFFF0000"
    folder = tables(tmp_path, tcp6=[row(0, mapped + CLIENT, mapped + SERVER, "01", 4242)])
    check = same_user(("127.0.0.1", 25), ("127.0.0.1", 40000), "tcp", own_uid=ME,
                      proc_net=folder)
    assert check.verdict == "other-user" and check.peer_uid == 4242


@little_endian
def test_udp_rows(tmp_path: Path) -> None:
    def check(*rows: str) -> PeerCheck:
        return same_user(("127.0.0.1", 25), ("127.0.0.1", 40000), "udp", own_uid=ME,
                         proc_net=tables(tmp_path, udp=list(rows)))

    # Bound to any address at the peer's port: that is the sender.
    assert check(row(0, f"{ANY}:9C40", f"{ANY}:0000", "07", 4242)).peer_uid == 4242
    assert check(row(0, CLIENT, SERVER, "01", ME)).verdict == "same-user"
    # A socket at that port but connected elsewhere cannot have sent to us.
    elsewhere = check(row(0, CLIENT, f"{LOOPBACK}:0035", "01", 4242))
    assert elsewhere.verdict == "cannot-tell" and "not the sender" in elsewhere.text()
    # Two users at one port: not ours to trust.
    shared = check(row(0, CLIENT, f"{ANY}:0000", "07", ME),
                   row(1, f"{ANY}:9C40", f"{ANY}:0000", "07", 4242))
    assert shared.verdict == "other-user" and "shared by several users" in shared.summary


def test_no_tables_or_not_linux_cannot_tell_and_lets_in(tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch
                                                        ) -> None:
    missing = same_user(("127.0.0.1", 25), ("127.0.0.1", 40000), "tcp",
                        proc_net=tmp_path / "nothing")
    assert missing.verdict == "cannot-tell" and not missing.supported and missing.allowed
    assert "cannot be read" in missing.summary or "can be read" in missing.summary
    monkeypatch.setattr(sys, "platform", "darwin")
    elsewhere = same_user(("127.0.0.1", 25), ("127.0.0.1", 40000), "udp")
    assert elsewhere.verdict == "cannot-tell" and elsewhere.allowed
    assert "only Linux" in elsewhere.summary and "darwin" in elsewhere.summary


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="transport must be"):
        same_user(("127.0.0.1", 25), ("127.0.0.1", 40000), "sctp")
    with pytest.raises(ValueError, match="method must be"):
        same_user(("127.0.0.1", 25), ("127.0.0.1", 40000), method="guess")
    odd = same_user(("127.0.0.1", 25), ("::1", 40000))
    assert odd.verdict == "cannot-tell" and "one family" in odd.summary
