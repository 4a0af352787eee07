"""Command lines end with CR LF only (RFC 5321 section 2.3.8): a command ended with a bare
LF, or holding a bare CR, is answered 500 5.5.2 and not run; the session goes on."""

from __future__ import annotations

import socket

import pytest

import labsupport


def _dialogue(port: int, lines: list[bytes]) -> list[bytes]:
    """Send each line and read its whole reply (multi-line replies joined)."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        reader = sock.makefile("rb")
        replies = [reader.readline()]
        for line in lines:
            sock.sendall(line)
            reply = b""
            while True:
                got = reader.readline()
                reply += got
                if got[3:4] != b"-":
                    break
            replies.append(reply)
    return replies


# On the submission role, aiosmtpd answers MAIL before STARTTLS with 530 before any command
# is run: refused either way.
@pytest.mark.parametrize(("role", "mail_reply"), [("mx", b"500 5.5.2 "), ("submission", b"530 ")])
def test_a_bare_lf_command_is_refused_and_not_run(lab: labsupport.Lab, role: str,
                                                  mail_reply: bytes) -> None:
    greeting, bare_ehlo, ehlo, bare_mail, noop, quit_ = _dialogue(lab.smtp.port(role), [
        b"EHLO client.example\n", b"EHLO client.example\r\n",
        b"MAIL FROM:<a@phisher.example>\n", b"NOOP\r\n", b"QUIT\r\n"])
    assert greeting.startswith(b"220 ")
    assert bare_ehlo == (b"500 5.5.2 Syntax error: the EHLO command line ends with a bare LF "
                         b"(no CR before it); SMTP lines end with CR LF only (RFC 5321 "
                         b"section 2.3.8)\r\n")
    assert ehlo.startswith(b"250-")
    assert bare_mail.startswith(mail_reply), bare_mail
    assert noop.startswith(b"250 ")  # the session goes on, and MAIL was not run:
    assert quit_.startswith(b"221 ")


def test_a_bare_cr_inside_a_command_is_refused(lab: labsupport.Lab) -> None:
    _, reply, again, _ = _dialogue(lab.smtp.port("mx"), [
        b"HELO a\rb\r\n", b"HELO client.example\r\n", b"QUIT\r\n"])
    assert reply.startswith(b"500 5.5.2 ") and b"bare CR at octet 6" in reply, reply
    assert again.startswith(b"250 ")


def test_a_bare_lf_mail_transaction_stores_nothing(lab: labsupport.Lab) -> None:
    before = lab.mail.count("bob@northwind.test")
    replies = _dialogue(lab.smtp.port("mx"), [
        b"HELO client.example\n", b"MAIL FROM:<a@campus.test>\n",
        b"RCPT TO:<bob@northwind.test>\n", b"DATA\n", b"QUIT\r\n"])
    assert [r[:3] for r in replies[1:]] == [b"500", b"500", b"500", b"500", b"221"]
    assert lab.mail.count("bob@northwind.test") == before
