"""The lenient toy SMTP server of the smuggling lesson (labsupport/mail/smuggling_lenient.py):
it ends a line where it is told to, counts what it kept, and closes cleanly."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from labsupport.mail.smuggling import send_variant
from labsupport.mail.smuggling_lenient import LenientServer

SETTLE = 0.1  # seconds to wait for replies a lenient server adds (never a measurement)


@pytest.fixture
def lenient() -> Iterator[LenientServer]:
    server = LenientServer(["LF"])
    yield server
    server.close()


def test_the_lenient_server_is_smuggled_only_where_it_sees_line_ends(
        lenient: LenientServer) -> None:
    assert lenient.describe() == "a lenient server: ends a line at CR LF, and at a bare LF"
    assert f"127.0.0.1:{lenient.port}" in repr(lenient)
    smuggled = send_variant(lenient.host, lenient.port, "LF.CRLF", store=lenient,
                            follow_up=False, settle=SETTLE)
    assert smuggled.verdict == "smuggled" and smuggled.stored == 2
    assert [m[0] for m in lenient.messages] == ["mallory@phisher.example", "alice@northwind.test"]
    kept = send_variant(lenient.host, lenient.port, "CR.CR", store=lenient, follow_up=False,
                        settle=SETTLE)
    assert kept.verdict == "accepted" and kept.stored == 1
    assert b"it.\r.\rMAIL FROM:<alice@northwind.test>" in lenient.messages[-1][2]
    assert lenient.count("carol@campus.test") == lenient.count() == 3
    assert lenient.count("dave@campus.test") == 0


def test_the_lenient_server_refuses_nonsense_and_closes_cleanly() -> None:
    with pytest.raises(ValueError, match="reads_bare takes 'LF' and 'CR', not NEL"):
        LenientServer(["NEL"])
    server = LenientServer()
    server.close()
    server.close()  # twice is fine
    assert not server._thread.is_alive()


def test_a_silent_client_does_not_stop_the_server(lenient: LenientServer) -> None:
    with socket.create_connection(("127.0.0.1", lenient.port), timeout=5) as quiet:
        assert quiet.recv(100).startswith(b"220 ")
        quiet.sendall(b"EHLO half")  # no line end: the server waits for more
    result = send_variant(lenient.host, lenient.port, "LF.LF", store=lenient, follow_up=False,
                          settle=SETTLE)
    assert result.verdict == "smuggled"
