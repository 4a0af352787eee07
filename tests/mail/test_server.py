"""labsupport.mail.server: the lab's mail roles, spoken to with smtplib and raw sockets.

The session lab (``lab``) is used for the roles as a notebook has them; a private server
with small limits (``small``) for oversize messages and recipient limits. Real clients
(swaks, openssl, curl) are in test_server_clients.py.
"""

from __future__ import annotations

import asyncio
import base64
import email
import email.policy
import json
import smtplib
import socket
import ssl
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.smtp import SMTP, AuthResult
from lab_helpers import subjects
from smtp_servers import Raw

import labsupport
from labsupport import cli
from labsupport.core.errors import LabError
from labsupport.lab.lab import read_runtime
from labsupport.mail.accounts import DEFAULT_DOMAINS, Accounts
from labsupport.mail.faults import Faults
from labsupport.mail.mailstore import MailStore
from labsupport.mail.server import (
    MAX_ERRORS,
    MAX_RECIPIENTS,
    MX_HOSTNAME,
    ROLES,
    SUBMISSION_HOSTNAME,
    MailServer,
    example_commands,
    lab_hostnames,
)
from labsupport.wire.tls import LabCA

TIMEOUT = 10  # seconds any reply may take before a test fails (never a measurement)


# -- helpers ------------------------------------------------------------------------------


def message(subject: str, body: str = "Hello.", sender: str = "bob@northwind.test",
            rcpt: str = "carol@campus.test") -> bytes:
    return (f"From: {sender}\r\nTo: {rcpt}\r\nSubject: {subject}\r\n"
            f"Date: Sun, 01 Mar 2026 12:00:00 +0000\r\nMessage-ID: <{subject}@test>\r\n"
            f"\r\n{body}\r\n").encode()


def mx(lab: labsupport.Lab) -> smtplib.SMTP:
    return smtplib.SMTP("127.0.0.1", lab.smtp.port("mx"), timeout=TIMEOUT)


def submission(lab: labsupport.Lab, *, login: bool = True) -> smtplib.SMTP:
    client = smtplib.SMTP("127.0.0.1", lab.smtp.port("submission"), timeout=TIMEOUT)
    client.starttls(context=lab.ca.client_context())
    if login:
        alice = lab.accounts.get("alice@northwind.test")
        assert alice is not None
        client.login(alice.address, alice.password)
    return client


def received(raw: bytes) -> list[str]:
    parsed = email.message_from_bytes(raw, policy=email.policy.default)
    return [" ".join(str(h).split()) for h in parsed.get_all("Received", [])]


class FakeQueue:
    """Records what the submission roles hand to the delivering MTA."""

    def __init__(self) -> None:
        self.submitted: list[tuple[str, list[str], bytes, str]] = []
        self.kicked = 0

    def submit(self, mail_from: str, rcpt_tos: list[str], raw: bytes, *,
               sender_domain: str) -> Any:
        self.submitted.append((mail_from, list(rcpt_tos), raw, sender_domain))
        return type("Item", (), {"id": "Q1"})()

    def kick(self) -> None:
        self.kicked += 1


class PrivateServer:
    """A MailServer with its own parts and loop, for limits a lesson lab does not have."""

    def __init__(self, directory: Path, **options: Any) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.accounts = Accounts.load_or_create(directory / "accounts.json")
        self.store = MailStore(directory / "mail")
        self.faults = Faults()
        self.ca = LabCA.load_or_create(directory / "tls", lab_hostnames(DEFAULT_DOMAINS))
        self.server = MailServer(accounts=self.accounts, store=self.store, faults=self.faults,
                                 ca=self.ca, domains=DEFAULT_DOMAINS, **options)
        self.call(self.server.start())

    def call(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(TIMEOUT)

    def close(self) -> None:
        self.call(self.server.stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(TIMEOUT)
        self.loop.close()


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrivateServer]:
    running = PrivateServer(tmp_path_factory.mktemp("small"), size_limit=4096, max_recipients=3)
    yield running
    running.close()


# -- the MX role ----------------------------------------------------------------------------


def test_mx_stores_mail_with_return_path_and_received(mail_lab: labsupport.Lab) -> None:
    lab = mail_lab
    lab.clock.freeze(at=datetime(2026, 3, 1, 12, 0, 5, tzinfo=UTC))
    with mx(lab) as client:
        client.ehlo("client.example")
        client.mail("bob@northwind.test")
        client.rcpt("carol@campus.test")
        code, reply = client.data(message("first"))
    assert code == 250 and reply.startswith(b"2.0.0 Ok: delivered as ")
    queue_id = reply.decode().rsplit(" ", 1)[1]
    [stored] = lab.mail.messages("carol@campus.test")
    assert stored.raw.startswith(b"Return-Path: <bob@northwind.test>\nReceived: from ")
    assert received(stored.raw) == [
        f"from client.example (localhost [127.0.0.1]) by {MX_HOSTNAME} (Mail Labs mx role) "
        f"with ESMTP id {queue_id} for <carol@campus.test>; Sun, 01 Mar 2026 12:00:05 +0000"]
    assert stored.message["Subject"] == "first" and b"\r\n" not in stored.raw
    entry = lab.smtp.log.entries()[-1]
    assert entry.event == "delivered" and queue_id in entry.detail and entry.role == "mx"


def test_mx_ehlo_offers_starttls_and_extensions_but_no_auth(mail_lab: labsupport.Lab) -> None:
    with mx(mail_lab) as client:
        code, text = client.ehlo("client.example")
        assert code == 250 and text.startswith(b"mx.lab.test Hello client.example [127.0.0.1]")
        for extension in ("size", "8bitmime", "smtputf8", "starttls", "enhancedstatuscodes",
                          "xclient"):
            assert client.has_extn(extension), extension
        assert client.esmtp_features["size"] == "10485760"
        assert client.esmtp_features["xclient"] == "ADDR NAME HELO PROTO DESTADDR"
        assert not client.has_extn("auth")
        assert client.docmd("AUTH", "PLAIN AGFsaWNlAHg=")[0] == 503
        client.starttls(context=mail_lab.ca.client_context())
        client.ehlo("client.example")
        assert not client.has_extn("auth") and not client.has_extn("starttls")
        code, text = client.docmd("AUTH", "LOGIN")
        assert (code, text[:5]) == (503, b"5.5.1") and b"submission" in text


def test_mx_refuses_unknown_users_and_relaying(mail_lab: labsupport.Lab) -> None:
    with mx(mail_lab) as client:
        client.ehlo("client.example")
        client.mail("bob@northwind.test")
        code, text = client.rcpt("nobody@campus.test")
        assert (code, text[:5]) == (550, b"5.1.1") and b"no such mailbox" in text
        code, text = client.rcpt("someone@gmail.com")
        assert (code, text[:5]) == (550, b"5.7.1") and b"Relay access denied" in text
        code, text = client.rcpt("someone@lists.campus.test")  # a lab name, no mailbox
        assert (code, text[:5]) == (550, b"5.1.1")
        assert client.docmd("DATA")[0] == 503  # no recipient was accepted
    assert mail_lab.mail.count() == 0
    refused = [e for e in mail_lab.smtp.log.entries() if e.event == "refused"]
    assert any("gmail.com" in e.detail for e in refused)


def test_mx_starttls_is_optional_and_shows_in_received(mail_lab: labsupport.Lab) -> None:
    with mx(mail_lab) as client:
        client.starttls(context=mail_lab.ca.client_context())  # verifies 127.0.0.1
        client.sendmail("bob@northwind.test", ["carol@campus.test"], message("tls"))
    [header] = received(mail_lab.mail.messages("carol@campus.test")[0].raw)
    assert "(using TLSv1." in header and " with ESMTPS id " in header


def test_postmaster_and_the_null_sender(mail_lab: labsupport.Lab) -> None:
    with mx(mail_lab) as client:
        client.ehlo("client.example")
        assert client.mail("")[0] == 250  # MAIL FROM:<>, a bounce (RFC 5321 section 4.5.5)
        assert client.rcpt("PostMaster@Parked.Test")[0] == 250
        assert client.rcpt("<Postmaster>")[0] == 250  # RFC 5321 section 4.1.1.3
        assert client.data(message("bounce"))[0] == 250
    [parked] = mail_lab.mail.messages("postmaster@parked.test")
    assert parked.raw.startswith(b"Return-Path: <>\n")
    assert subjects(mail_lab, "postmaster@lab.test") == ["bounce"]


def test_each_mailbox_gets_one_copy_with_its_own_for_clause(mail_lab: labsupport.Lab) -> None:
    with mx(mail_lab) as client:
        refused = client.sendmail("bob@northwind.test",
                                  ["carol@campus.test", "dave@campus.test", "Carol@Campus.test"],
                                  message("both"))
    assert refused == {}
    assert subjects(mail_lab) == ["both"] and subjects(mail_lab, "dave@campus.test") == ["both"]
    [dave] = mail_lab.mail.messages("dave@campus.test")
    assert "for <dave@campus.test>;" in received(dave.raw)[0]


def test_smtputf8_and_8bitmime_are_honoured(mail_lab: labsupport.Lab) -> None:
    body = "Grüße aus Köln".encode()
    raw = b"From: j\xc3\xb6rg@northwind.test\r\nSubject: UTF-8\r\n\r\n" + body + b"\r\n"
    with mx(mail_lab) as client:
        client.sendmail("jörg@northwind.test", ["carol@campus.test"], raw,
                        mail_options=["SMTPUTF8", "BODY=8BITMIME"])
        client.sendmail("bob@northwind.test", ["dave@campus.test"], b"Subject: 8bit\r\n\r\n"
                        + body + b"\r\n", mail_options=["BODY=8BITMIME"])
    [utf8] = mail_lab.mail.messages("carol@campus.test")
    assert body in utf8.raw and "with UTF8SMTP id" in received(utf8.raw)[0]
    assert utf8.raw.startswith("Return-Path: <jörg@northwind.test>".encode())
    [eight] = mail_lab.mail.messages("dave@campus.test")
    assert body in eight.raw


def test_non_ascii_addresses_need_smtputf8(mail_lab: labsupport.Lab) -> None:
    raw = Raw(mail_lab.smtp.port("mx"))
    try:
        raw.cmd("EHLO client.example")
        assert raw.cmd("MAIL FROM:<jörg@northwind.test>".encode()).startswith("553 5.6.7 ")
        assert raw.cmd("MAIL FROM:<bob@northwind.test>").startswith("250 ")
        assert raw.cmd("RCPT TO:<jörg@campus.test>".encode()).startswith("553 5.6.7 ")
        assert raw.cmd("MAIL FROM:<x@y> BODY=BINARYMIME").startswith("503 5.5.1")
        assert raw.cmd("RSET").startswith("250 2.0.0")
        assert raw.cmd("MAIL FROM:<x@y> BODY=BINARYMIME").startswith("501 5.5.4 BODY must be")
        assert raw.cmd("MAIL FROM:<x@y> SMTPUTF8=yes").startswith("501 5.5.4 SMTPUTF8 takes")
        assert raw.cmd("MAIL FROM:<x@y> RET=HDRS").startswith("555 5.5.4 MAIL FROM parameter")
        assert raw.cmd("QUIT").startswith("221 2.0.0")
    finally:
        raw.close()


def test_size_is_checked_before_and_after_data(small: PrivateServer) -> None:
    with smtplib.SMTP("127.0.0.1", small.server.port("mx"), timeout=TIMEOUT) as client:
        client.ehlo("client.example")
        assert client.esmtp_features["size"] == "4096"
        code, text = client.docmd("MAIL FROM:<bob@northwind.test> SIZE=5000")
        assert (code, text[:5]) == (552, b"5.3.4") and b"4096" in text
        client.mail("bob@northwind.test")
        client.rcpt("carol@campus.test")
        code, text = client.data(message("big", body="\r\n".join(["x" * 70] * 80)))
        assert (code, text[:5]) == (552, b"5.3.4") and b"not stored" in text
        # the connection goes on, and a message that fits is stored
        client.sendmail("bob@northwind.test", ["carol@campus.test"], message("fits"))
    assert [m.subject for m in small.store.messages("carol@campus.test")] == ["fits"]


def test_too_many_recipients_get_452(small: PrivateServer, mail_lab: labsupport.Lab) -> None:
    with smtplib.SMTP("127.0.0.1", small.server.port("mx"), timeout=TIMEOUT) as client:
        client.ehlo("client.example")
        client.mail("bob@northwind.test")
        for _ in range(3):
            assert client.rcpt("dave@campus.test")[0] == 250
        code, text = client.rcpt("dave@campus.test")
        assert (code, text[:5]) == (452, b"4.5.3") and b"at most 3" in text
        assert client.data(message("three"))[0] == 250
    with mx(mail_lab) as client:  # the lab's own limit: RFC 5321's minimum of 100
        client.ehlo("client.example")
        client.mail("bob@northwind.test")
        codes = [client.rcpt("carol@campus.test")[0] for _ in range(MAX_RECIPIENTS + 1)]
        assert codes == [250] * MAX_RECIPIENTS + [452]


# -- XCLIENT ----------------------------------------------------------------------------------


def test_xclient_address_shows_in_received_and_log(mail_lab: labsupport.Lab) -> None:
    with mx(mail_lab) as client:
        client.ehlo("localhost")
        code, text = client.docmd("XCLIENT", "ADDR=203.0.113.66 HELO=out.phisher.example")
        assert code == 220 and text.startswith(b"mx.lab.test ESMTP")
        assert client.docmd("MAIL FROM:<ceo@northwind.test>")[0] == 503  # EHLO again first
        code, text = client.ehlo("whatever")
        assert b"Hello whatever [203.0.113.66]" in text
        # (not "From: ceo@northwind.test": northwind.test's DMARC p=reject would refuse it)
        client.sendmail("mallory@phisher.example", ["carol@campus.test"],
                        message("spoof", sender="mallory@phisher.example"))
    [header] = received(mail_lab.mail.messages("carol@campus.test")[0].raw)
    # the name is the lab's reverse DNS (PTR) of the simulated address
    assert header.startswith("from out.phisher.example (out.phisher.example [203.0.113.66]) "
                             "by mx.lab.test")
    logged = [e for e in mail_lab.smtp.log.entries() if e.event == "delivered"]
    assert logged[-1].client.startswith("203.0.113.66 (XCLIENT, really 127.0.0.1:")


@pytest.mark.parametrize("attributes, expected", [
    ("ADDR=203.0.113.10 HELO=out.careless.test",
     "from out.careless.test (unknown [203.0.113.10])"),  # no PTR on purpose
    ("ADDR=192.0.2.10 NAME=[UNAVAILABLE] HELO=out.northwind.test",
     "from out.northwind.test (unknown [192.0.2.10])"),
    ("ADDR=IPV6:2001:db8:1::10 NAME=out.northwind.test HELO=out.northwind.test",
     "from out.northwind.test (out.northwind.test [IPv6:2001:db8:1::10])"),
    ("ADDR=192.0.2.10 HELO=out+2Enorthwind.test PROTO=SMTP",
     "from out.northwind.test (out.northwind.test [192.0.2.10]) by mx.lab.test "
     "(Mail Labs mx role) with SMTP id"),
    ("ADDR=192.0.2.10 DESTADDR=198.51.100.26", "by mx-b.campus.test (Mail Labs mx role)"),
    ("ADDR=192.0.2.10 NAME=a(b)c HELO=x)y", "from x?y (a?b?c [192.0.2.10])"),  # no injection
])
def test_xclient_attributes(mail_lab: labsupport.Lab, attributes: str, expected: str) -> None:
    with mx(mail_lab) as client:
        client.ehlo("localhost")
        assert client.docmd("XCLIENT", attributes)[0] == 220
        client.ehlo("localhost")  # a new session: smtplib does not know it must EHLO again
        # campus.test's DMARC policy is p=none: stored whichever address the client claims
        client.sendmail("dave@campus.test", ["carol@campus.test"],
                        message("x", sender="dave@campus.test"))
    [header] = received(mail_lab.mail.messages("carol@campus.test")[0].raw)
    assert expected in header


def test_xclient_mistakes(mail_lab: labsupport.Lab) -> None:
    raw = Raw(mail_lab.smtp.port("mx"))
    try:
        raw.cmd("EHLO client.example")
        assert raw.cmd("XCLIENT").startswith("501 5.5.4 Syntax: XCLIENT")
        assert raw.cmd("XCLIENT LOGIN=alice").startswith("501 5.5.4 Bad XCLIENT attribute name")
        assert raw.cmd("XCLIENT ADDR=999.1.1.1").startswith("501 5.5.4 Bad XCLIENT ADDR syntax")
        assert raw.cmd("XCLIENT PROTO=HTTP").startswith("501 5.5.4 Bad XCLIENT PROTO syntax")
        assert raw.cmd("XCLIENT HELO=a+zz").startswith("501 5.5.4 Bad XCLIENT HELO syntax")
        raw.cmd("MAIL FROM:<bob@northwind.test>")
        assert raw.cmd("XCLIENT ADDR=192.0.2.10").startswith("503 5.5.1 Error: MAIL transaction")
    finally:
        raw.close()
    # only the MX role stands for the Internet side
    with submission(mail_lab) as client:
        code, text = client.docmd("XCLIENT", "ADDR=192.0.2.10")
        assert (code, text[:5]) == (500, b"5.5.1") and b"not recognized" in text


# -- submission, submissions, legacy ----------------------------------------------------------


def test_submission_needs_starttls_before_mail_and_auth(mail_lab: labsupport.Lab) -> None:
    with smtplib.SMTP("127.0.0.1", mail_lab.smtp.port("submission"), timeout=TIMEOUT) as client:
        assert client.ehlo("client.example")[1].startswith(b"smtp.lab.test Hello")
        assert client.has_extn("starttls") and not client.has_extn("auth")
        code, text = client.docmd("MAIL FROM:<alice@northwind.test>")
        assert (code, text[:5]) == (530, b"5.7.0") and b"STARTTLS" in text
        assert client.docmd("AUTH", "PLAIN AGFsaWNlAHg=")[0] == 530
        client.starttls(context=mail_lab.ca.client_context())
        client.ehlo("client.example")
        assert client.esmtp_features["auth"].split() == ["LOGIN", "PLAIN"]
        assert not client.has_extn("starttls") and not client.has_extn("xclient")


@pytest.mark.parametrize("mechanism", ["PLAIN", "LOGIN"])
def test_submission_login_then_send(mail_lab: labsupport.Lab, mechanism: str,
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(mail_lab, "queue", None)  # no delivering MTA: straight to the mailbox
    alice = mail_lab.accounts.get("alice@northwind.test")
    assert alice is not None
    with submission(mail_lab, login=False) as client:
        client.ehlo("laptop.example")
        client.user, client.password = alice.address, alice.password
        code, text = client.auth(mechanism, getattr(client, f"auth_{mechanism.lower()}"))
        assert (code, text) == (235, b"2.7.0 Authentication successful")
        client.mail(alice.address)
        client.rcpt("carol@campus.test")
        code, text = client.data(b"Subject: no date\r\n\r\nsent from a phone\r\n")
        assert code == 250 and text.startswith(b"2.0.0 Ok: delivered as")
    [stored] = mail_lab.mail.messages("carol@campus.test")
    [header] = received(stored.raw)
    assert header.startswith("from laptop.example (localhost [127.0.0.1]) (using TLSv1.")
    assert f"by {SUBMISSION_HOSTNAME} (Mail Labs submission role) with ESMTPSA id" in header
    # RFC 6409 section 8: the submission server adds what the message lacks
    assert stored.message["Date"] and stored.message["Message-ID"].endswith("@smtp.lab.test>")
    assert [e.detail for e in mail_lab.smtp.log.entries() if e.event == "auth"] == [
        f"{mechanism} as alice@northwind.test"]


def test_submission_refuses_the_unauthenticated_and_the_outside(
        mail_lab: labsupport.Lab, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(mail_lab, "queue", None)
    with submission(mail_lab, login=False) as client:
        client.ehlo("laptop.example")
        client.mail("alice@northwind.test")
        code, text = client.rcpt("carol@campus.test")
        assert (code, text[:5]) == (550, b"5.7.1") and b"log in (AUTH)" in text
    with submission(mail_lab) as client:
        client.mail("alice@northwind.test")
        code, text = client.rcpt("friend@gmail.com")
        assert (code, text[:5]) == (550, b"5.7.1") and b"never to the Internet" in text
        code, text = client.rcpt("nobody@campus.test")  # no queue: only real mailboxes
        assert (code, text[:5]) == (550, b"5.1.1")
    assert mail_lab.mail.count() == 0


def test_submitted_mail_goes_to_the_queue_when_there_is_one(
        mail_lab: labsupport.Lab, monkeypatch: pytest.MonkeyPatch) -> None:
    queue = FakeQueue()
    monkeypatch.setattr(mail_lab, "queue", queue)
    with submission(mail_lab) as client:
        client.mail("ceo@campus.test")  # the envelope may name anyone: spoofing lessons
        assert client.rcpt("nobody@campus.test")[0] == 250  # the MX decides later (a bounce)
        assert client.rcpt("dave@campus.test")[0] == 250
        code, text = client.data(message("queued"))
    assert (code, text) == (250, b"2.0.0 Ok: queued as Q1")
    [(mail_from, rcpts, raw, sender_domain)] = queue.submitted
    assert (mail_from, rcpts, sender_domain) == (
        "ceo@campus.test", ["nobody@campus.test", "dave@campus.test"], "northwind.test")
    assert raw.startswith(b"Received: from ") and b"\r\n" in raw
    header = received(raw)[0]
    assert "with ESMTPSA id" in header and " for <" not in header  # two recipients: no "for"
    assert queue.kicked == 1 and mail_lab.mail.count() == 0
    assert "queued" in [e.event for e in mail_lab.smtp.log.entries()]


def test_submitted_mail_is_delivered_by_the_lab_queue(mail_lab: labsupport.Lab) -> None:
    if mail_lab.queue is None:
        pytest.skip("labsupport.mail.delivery is not available: the lab has no queue")
    with submission(mail_lab) as client:
        client.sendmail("alice@northwind.test", ["carol@campus.test"], message("via queue"))
    assert mail_lab.queue.wait_idle(TIMEOUT)
    [stored] = mail_lab.mail.messages("carol@campus.test")
    mx_hop, submission_hop = received(stored.raw)
    assert mx_hop.startswith("from out.northwind.test (out.northwind.test [192.0.2.10])")
    assert "Mail Labs mx role" in mx_hop and "with ESMTPSA" in submission_hop


def test_a_failed_login_answers_535_at_once(mail_lab: labsupport.Lab) -> None:
    # A failure aiosmtpd thinks "handled" sends no reply at all: the client would hang
    # until its timeout. TIMEOUT is only a bound; the 535 must come.
    with submission(mail_lab, login=False) as client:
        with pytest.raises(smtplib.SMTPAuthenticationError) as wrong:
            client.login("alice@northwind.test", "wrong password")
        assert wrong.value.smtp_code == 535 and wrong.value.smtp_error.startswith(b"5.7.8")
        with pytest.raises(smtplib.SMTPAuthenticationError):
            client.login("nobody@northwind.test", "x")
        alice = mail_lab.accounts.get("alice@northwind.test")
        assert alice is not None
        assert client.login(alice.address, alice.password)[0] == 235  # the same connection
        assert client.docmd("AUTH", "PLAIN")[0] == 503  # already authenticated
    failures = [e for e in mail_lab.smtp.log.entries() if e.event == "auth failed"]
    assert failures and all("wrong password" not in e.detail for e in failures)


def test_auth_login_step_by_step_and_aborted(mail_lab: labsupport.Lab) -> None:
    raw = Raw(mail_lab.smtp.port("submissions"), mail_lab.ca.client_context())
    b64 = lambda text: base64.b64encode(text.encode()).decode()  # noqa: E731
    try:
        raw.cmd("EHLO client.example")
        assert raw.cmd("AUTH LOGIN") == "334 " + b64("User Name\x00")
        assert raw.cmd(b64("alice@northwind.test")) == "334 " + b64("Password\x00")
        assert raw.cmd(b64("nope")).startswith("535 5.7.8 ")
        raw.cmd("AUTH LOGIN")
        assert raw.cmd("*").startswith("501 5.7.0 ")  # the client gives up (RFC 4954)
        assert raw.cmd("AUTH PLAIN !!!").startswith("501 5.5.2 ")
        assert raw.cmd("AUTH CRAM-MD5").startswith("504 5.5.4 ")
        assert raw.cmd("NOOP").startswith("250 2.0.0")
    finally:
        raw.close()


def test_submissions_is_tls_from_the_first_byte_with_auth(
        mail_lab: labsupport.Lab, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(mail_lab, "queue", None)
    alice = mail_lab.accounts.get("alice@northwind.test")
    assert alice is not None
    with smtplib.SMTP_SSL("127.0.0.1", mail_lab.smtp.port("submissions"), timeout=TIMEOUT,
                          context=mail_lab.ca.client_context()) as client:
        client.ehlo("client.example")
        assert client.has_extn("auth") and not client.has_extn("starttls")
        client.login(alice.address, alice.password)
        client.sendmail(alice.address, ["dave@campus.test"], message("465"))
    [header] = received(mail_lab.mail.messages("dave@campus.test")[0].raw)
    assert "(using TLSv1." in header and "submissions role) with ESMTPSA" in header
    assert mail_lab.smtp.log.entries()[0].detail.startswith("TLSv1.")  # connect, inside TLS


def test_stock_aiosmtpd_hides_auth_on_implicit_tls(small: PrivateServer) -> None:
    """The aiosmtpd bug LabSMTP mends: in SMTPS mode it never advertises or allows AUTH
    (it counts only TLS it started itself). If this fails, aiosmtpd fixed it upstream and
    the workaround in LabSMTP.connection_made can go."""

    class Handler:
        pass

    def always(*_args: object) -> AuthResult:
        return AuthResult(success=True)

    async def stock() -> int:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(
            lambda: SMTP(Handler(), hostname="stock", authenticator=always, loop=loop),
            "127.0.0.1", 0, ssl=small.ca.server_context())
        stock_servers.append(server)
        return int(server.sockets[0].getsockname()[1])

    stock_servers: list[asyncio.base_events.Server] = []
    port = small.call(stock())
    try:
        with smtplib.SMTP_SSL("127.0.0.1", port, timeout=TIMEOUT,
                              context=small.ca.client_context()) as client:
            client.ehlo("client.example")
            assert not client.has_extn("auth")
            assert client.docmd("AUTH", "PLAIN AGEAYg==")[0] == 538  # "encryption required"
    finally:
        async def close() -> None:
            stock_servers[0].close()  # on the server's own loop, never from this thread
            await stock_servers[0].wait_closed()

        small.call(close())
    with smtplib.SMTP_SSL("127.0.0.1", small.server.port("submissions"), timeout=TIMEOUT,
                          context=small.ca.client_context()) as client:
        client.ehlo("client.example")
        assert client.has_extn("auth")


def test_legacy_is_off_until_asked_and_says_it_is_insecure(
        mail_lab: labsupport.Lab, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(mail_lab, "queue", None)
    with pytest.raises(LabError, match="legacy role is not running.*enable_legacy"):
        mail_lab.smtp.port("legacy")
    assert "legacy" not in mail_lab.info()["smtp"]
    port = mail_lab.smtp.enable_legacy()
    assert mail_lab.smtp.enable_legacy() == port and mail_lab.info()["smtp"]["legacy"]["port"] \
        == port
    alice = mail_lab.accounts.get("alice@northwind.test")
    assert alice is not None
    with smtplib.SMTP("127.0.0.1", port, timeout=TIMEOUT) as client:
        code, text = client.ehlo("client.example")
        assert client.has_extn("auth") and not client.has_extn("starttls")
        client.login(alice.address, alice.password)  # the password crosses in clear text
        client.sendmail(alice.address, ["carol@campus.test"], message("clear"))
    banner = Raw(port)
    assert "INSECURE" in banner.banner and "clear text" in banner.banner
    banner.close()
    assert "with ESMTPA id" in received(mail_lab.mail.messages("carol@campus.test")[0].raw)[0]
    mail_lab.reset()  # the known state has no legacy role
    assert "legacy" not in mail_lab.smtp.ports()
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT).close()
    mail_lab.smtp.disable_legacy()  # already off: nothing to do


# -- malformed input: each gets its reply, and the server goes on -----------------------------


def test_over_long_command_lines(mail_lab: labsupport.Lab) -> None:
    raw = Raw(mail_lab.smtp.port("mx"))
    try:
        raw.cmd("EHLO client.example")
        reply = raw.cmd("NOOP " + "x" * 600)
        assert reply.startswith("500 5.5.2 Line too long") and "512" in reply
        assert raw.cmd("NOOP " + "y" * 5000).startswith("500 5.5.2 Line too long")
        assert raw.cmd("NOOP").startswith("250 2.0.0")  # the same connection goes on
    finally:
        raw.close()


def test_over_long_message_lines_are_not_stored(mail_lab: labsupport.Lab) -> None:
    with mx(mail_lab) as client:
        client.ehlo("client.example")
        client.mail("bob@northwind.test")
        client.rcpt("carol@campus.test")
        code, text = client.data(b"Subject: long\r\n\r\n" + b"z" * 1100 + b"\r\n")
        assert (code, text[:5]) == (500, b"5.5.2") and b"1000 octets" in text
        client.sendmail("bob@northwind.test", ["carol@campus.test"], message("short"))
    assert subjects(mail_lab) == ["short"]


@pytest.mark.parametrize("commands, expected", [
    (["RCPT TO:<carol@campus.test>"], "503 5.5.1 Bad sequence of commands: MAIL FROM"),
    (["MAIL FROM:<bob@northwind.test>", "DATA"], "503 5.5.1 Bad sequence of commands: RCPT TO"),
    (["MAIL FROM:<a@b>", "MAIL FROM:<a@b>"], "503 5.5.1 Bad sequence of commands: the sender"),
    (["MAIL FROM:<bob@>"], "553 5.1.3 Malformed address"),
    (["MAIL FROM:<bob>"], "553 5.1.7 <bob>: a sender is local-part@domain"),
    (["MAIL FROM:<a@b>", "RCPT TO:<carol>"], "553 5.1.3 <carol>: a recipient is"),
    (["MAIL TO:<bob@northwind.test>"], "501 5.5.4 Syntax: MAIL FROM:<address>"),
    (["VRFY"], "501 5.5.4 Syntax: VRFY"),
    (["EXPN staff"], "502 5.5.1 EXPN not implemented"),
    (["RSET now"], "501 5.5.4 Syntax: RSET"),
    (["STARTTLS please"], "501 5.5.4 Syntax: STARTTLS"),
])
def test_commands_out_of_sequence_or_malformed(mail_lab: labsupport.Lab, commands: list[str],
                                               expected: str) -> None:
    raw = Raw(mail_lab.smtp.port("mx"))
    try:
        raw.cmd("EHLO client.example")
        for command in commands[:-1]:
            raw.cmd(command)
        assert raw.cmd(commands[-1]).startswith(expected)
        assert raw.cmd("RSET").startswith("250 2.0.0")
    finally:
        raw.close()


def test_commands_before_ehlo(mail_lab: labsupport.Lab) -> None:
    raw = Raw(mail_lab.smtp.port("mx"))
    try:
        assert raw.cmd("MAIL FROM:<bob@northwind.test>").startswith(
            "503 5.5.1 Bad sequence of commands: say HELO first")
        assert raw.cmd("HELO").startswith("501 Syntax: HELO hostname")
        assert raw.cmd("HELO old.example").startswith("250 mx.lab.test Hello old.example")
        assert raw.cmd("AUTH PLAIN x").startswith("503 5.5.1")
    finally:
        raw.close()


def test_garbage_bytes_get_500_and_are_never_echoed(mail_lab: labsupport.Lab) -> None:
    raw = Raw(mail_lab.smtp.port("mx"))
    try:
        assert raw.cmd(b"\xff\xfe\x00garbage").startswith("500 5.5.2 Syntax error")
        assert raw.cmd(b"").startswith("500 5.5.2 Syntax error")
        reply = raw.cmd(b"\x01\x02X\x7f")
        assert reply.startswith('500 5.5.1 Command not recognized: "??X?"')
        assert raw.cmd(b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03").startswith("500 5.5.2")
        assert raw.cmd("NOOP").startswith("250 2.0.0")
    finally:
        raw.close()


def test_too_many_unknown_commands_close_the_connection(mail_lab: labsupport.Lab) -> None:
    raw = Raw(mail_lab.smtp.port("mx"))
    try:
        replies = [raw.cmd(f"BOGUS{n}") for n in range(5)]
        assert all(r.startswith('500 5.5.1 Command not recognized: "BOGUS') for r in replies[:4])
        assert replies[4].startswith("421 4.7.0 Too many unrecognized commands")
        assert raw.closed()
    finally:
        raw.close()


def test_too_many_errors_close_the_connection(mail_lab: labsupport.Lab) -> None:
    raw = Raw(mail_lab.smtp.port("mx"))
    try:
        for _ in range(MAX_ERRORS - 1):
            assert raw.cmd("RCPT TO:<carol@campus.test>").startswith("503 5.5.1")
        raw.send(b"DATA\r\n")
        assert raw.reply().startswith("503 5.5.1")
        assert raw.reply().startswith(f"421 4.7.0 Too many errors ({MAX_ERRORS})")
        assert raw.closed()
    finally:
        raw.close()
    closed = [e for e in mail_lab.smtp.log.entries() if e.event == "closed"]
    assert closed and "Too many" in closed[-1].detail


def test_an_idle_client_is_told_before_the_server_hangs_up(tmp_path: Path) -> None:
    impatient = PrivateServer(tmp_path, idle_timeout=0.3)
    try:
        raw = Raw(impatient.server.port("mx"))
        try:
            assert raw.cmd("EHLO client.example").startswith("250-")
            assert raw.reply().startswith("421 4.4.2 Idle for too long")  # nothing sent
            assert raw.closed()
        finally:
            raw.close()
    finally:
        impatient.close()


def test_others_are_served_while_one_client_misbehaves(mail_lab: labsupport.Lab) -> None:
    stuck = Raw(mail_lab.smtp.port("mx"))
    stalled = Raw(mail_lab.smtp.port("submissions"), mail_lab.ca.client_context())
    try:
        stuck.cmd("EHLO client.example")
        stuck.cmd("MAIL FROM:<bob@northwind.test>")
        stuck.cmd("RCPT TO:<carol@campus.test>")
        assert stuck.cmd("DATA").startswith("354 ")
        stuck.send(b"Subject: never finished\r\n\r\nhalf a li")  # and then nothing
        stalled.send(b"EHLO half a comm")  # no end of line
        with mx(mail_lab) as client:
            client.sendmail("bob@northwind.test", ["carol@campus.test"], message("meanwhile"))
    finally:
        stuck.close()
        stalled.close()
    assert subjects(mail_lab) == ["meanwhile"]  # and nothing of the unfinished message


def test_concurrent_clients_each_message_stored_once(mail_lab: labsupport.Lab) -> None:
    clients, per_client = 10, 5
    errors: list[BaseException] = []

    def send(n: int) -> None:
        try:
            with mx(mail_lab) as client:
                for m in range(per_client):
                    client.sendmail("bob@northwind.test", ["carol@campus.test"],
                                    message(f"c{n}-m{m}"))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=send, args=(n,)) for n in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors, errors
    got = subjects(mail_lab)
    assert len(got) == clients * per_client
    assert sorted(got) == sorted(f"c{n}-m{m}" for n in range(clients) for m in range(per_client))


# -- lesson faults, applied by the server -------------------------------------------------------


def test_banner_554_refuses_the_session(mail_lab: labsupport.Lab) -> None:
    mail_lab.faults.add("banner", "554 5.3.2 No service here today")
    raw = Raw(mail_lab.smtp.port("mx"))
    try:
        assert raw.banner == "554 5.3.2 No service here today"
        assert raw.cmd("EHLO client.example").startswith("503 5.5.1 Bad sequence")
        assert raw.cmd("QUIT").startswith("221 2.0.0")  # RFC 5321 section 3.1
    finally:
        raw.close()
    mail_lab.faults.add("banner", "554 5.3.2 No service", role="submission")
    with pytest.raises(smtplib.SMTPConnectError) as refused:
        smtplib.SMTP("127.0.0.1", mail_lab.smtp.port("submission"), timeout=TIMEOUT)
    assert refused.value.smtp_code == 554
    with mx(mail_lab) as client:  # used up: the next session is normal
        assert client.noop()[0] == 250


def test_banner_421_closes_at_once(mail_lab: labsupport.Lab) -> None:
    mail_lab.faults.add("banner", "421 4.3.2 Too busy, try later", role="*")
    raw = Raw(mail_lab.smtp.port("submission"))
    try:
        assert raw.banner.startswith("421 4.3.2") and raw.closed()
    finally:
        raw.close()


def test_delay_before_the_banner(mail_lab: labsupport.Lab) -> None:
    mail_lab.faults.add("delay-banner", delay=1.0)
    sock = socket.create_connection(("127.0.0.1", mail_lab.smtp.port("mx")), timeout=TIMEOUT)
    try:
        sock.settimeout(0.2)
        with pytest.raises(TimeoutError):  # not there yet: the server is waiting
            sock.recv(100)
        sock.settimeout(TIMEOUT)
        assert sock.recv(100).startswith(b"220 mx.lab.test")
    finally:
        sock.close()
    fault = [e for e in mail_lab.smtp.log.entries() if e.event == "fault"]
    assert "1 s before the greeting" in fault[0].detail


def test_ehlo_and_mail_faults(mail_lab: labsupport.Lab) -> None:
    mail_lab.faults.add("ehlo", "550 5.7.1 We do not talk to you", match="spammer")
    mail_lab.faults.add("mail", "451 4.3.0 Try again in a minute", match="bob@")
    raw = Raw(mail_lab.smtp.port("mx"))
    try:
        assert raw.cmd("EHLO spammer.example") == "550 5.7.1 We do not talk to you"
        assert raw.cmd("MAIL FROM:<bob@northwind.test>").startswith("503 5.5.1")  # no EHLO
        assert raw.cmd("EHLO spammer.example").startswith("250-")  # used up
        assert raw.cmd("MAIL FROM:<bob@northwind.test>") == "451 4.3.0 Try again in a minute"
        assert raw.cmd("MAIL FROM:<bob@northwind.test>").startswith("250 2.1.0")
    finally:
        raw.close()


def test_greylisting_the_next_rcpt_to_bob(mail_lab: labsupport.Lab) -> None:
    mail_lab.faults.add("rcpt", "451 4.7.1 Greylisted, try again later", match="bob@")
    with mx(mail_lab) as client:
        client.ehlo("client.example")
        client.mail("carol@campus.test")
        assert client.rcpt("bob@northwind.test") == (451, b"4.7.1 Greylisted, try again later")
        assert client.rcpt("alice@northwind.test")[0] == 250
        assert client.data(message("first try"))[0] == 250
        client.sendmail("carol@campus.test", ["bob@northwind.test"], message("retry"))
    assert subjects(mail_lab, "bob@northwind.test") == ["retry"]
    assert subjects(mail_lab, "alice@northwind.test") == ["first try"]


def test_421_after_data_loses_the_message_and_closes(mail_lab: labsupport.Lab) -> None:
    mail_lab.faults.add("data", "421 4.3.2 System shutting down")
    client = mx(mail_lab)
    client.ehlo("client.example")
    with pytest.raises(smtplib.SMTPDataError) as failed:
        client.sendmail("bob@northwind.test", ["carol@campus.test"], message("lost"))
    assert failed.value.smtp_code == 421
    client.close()
    assert mail_lab.mail.count() == 0
    assert any(e.event == "not stored" for e in mail_lab.smtp.log.entries())


def test_faults_on_every_role_with_a_delay_and_a_2xx_text(mail_lab: labsupport.Lab,
                                                          monkeypatch: pytest.MonkeyPatch
                                                          ) -> None:
    monkeypatch.setattr(mail_lab, "queue", None)
    mail_lab.faults.add("rcpt", "452 4.2.2 Mailbox full", role="*", times=None, match="dave@",
                        delay=0.1)
    mail_lab.faults.add("data", "250 2.0.0 Thank you very much", role="submission")
    with submission(mail_lab) as client:
        assert client.rcpt("dave@campus.test") == (503, b"5.5.1 Bad sequence of commands: "
                                                        b"MAIL FROM comes first")
        client.mail("alice@northwind.test")
        assert client.rcpt("dave@campus.test")[0] == 452
        assert client.rcpt("carol@campus.test")[0] == 250
        assert client.data(message("kind"))[1] == b"2.0.0 Thank you very much"
    with mx(mail_lab) as client:
        with pytest.raises(smtplib.SMTPRecipientsRefused):
            client.sendmail("bob@northwind.test", ["dave@campus.test"], message("x"))
    assert subjects(mail_lab) == ["kind"]  # a 2xx fault changes the text only


def test_reset_clears_mail_and_faults(lab: labsupport.Lab) -> None:
    lab.faults.add("banner", "554 5.3.2 No service")
    lab.faults.host_down("mx1.northwind.test")
    lab.mail.deliver("carol@campus.test", message("old"))
    lab.reset()
    assert lab.faults.rules() == [] and not lab.faults.is_down("mx1.northwind.test")
    assert lab.mail.count() == 0 and len(lab.smtp.log) == 0


# -- the lab: info, restart, serve --------------------------------------------------------------


def test_info_names_roles_ca_and_accounts(lab: labsupport.Lab) -> None:
    info = lab.info()
    assert set(info["smtp"]) == {"mx", "submission", "submissions"}
    assert info["smtp"]["mx"] == {"host": "127.0.0.1", "port": lab.smtp.port("mx")}
    assert Path(info["ca_file"]) == lab.ca.ca_file and lab.ca.ca_file.exists()
    assert info["accounts"] == [{"address": a.address, "password": a.password}
                                for a in lab.accounts.all()]
    assert json.loads(json.dumps(info)) == info
    runtime = read_runtime(lab.state_dir)
    assert runtime["smtp"] == info["smtp"] and runtime["ca_file"] == info["ca_file"]
    assert f"SMTP MX on 127.0.0.1:{lab.smtp.port('mx')}" in repr(lab)
    assert "SMTP submission role" in str(lab) and "CA certificate" in lab._repr_html_()
    assert "mx" in str(lab.smtp) and "MailServer" in repr(lab.smtp)
    assert "submission" in lab.smtp._repr_html_()


def test_a_restarted_lab_keeps_mail_ca_and_passwords(tmp_path: Path) -> None:
    first = labsupport.start(tmp_path / "lab")
    try:
        with mx(first) as client:
            client.sendmail("bob@northwind.test", ["carol@campus.test"], message("kept"))
        ca_pem = first.ca.ca_file.read_bytes()
        key_mtime = first.ca.key_file.stat().st_mtime_ns
        passwords = [a.password for a in first.accounts.all()]
    finally:
        first.stop()
    again = labsupport.start(tmp_path / "lab")
    try:
        assert subjects(again) == ["kept"]
        assert again.ca.ca_file.read_bytes() == ca_pem and not again.ca.created
        assert again.ca.key_file.stat().st_mtime_ns == key_mtime
        assert [a.password for a in again.accounts.all()] == passwords
        alice = again.accounts.get("alice@northwind.test")
        assert alice is not None
        with smtplib.SMTP_SSL("127.0.0.1", again.smtp.port("submissions"), timeout=TIMEOUT,
                              context=ssl.create_default_context(cafile=again.ca.ca_file)
                              ) as client:
            assert client.login(alice.address, alice.password)[0] == 235
    finally:
        again.stop()


def test_roles_are_what_the_issue_says() -> None:
    assert ROLES["mx"].xclient and not ROLES["mx"].auth and ROLES["mx"].starttls
    assert ROLES["submission"].require_tls and ROLES["submission"].auth
    assert ROLES["submissions"].implicit_tls and not ROLES["submissions"].starttls
    assert not ROLES["legacy"].auth_require_tls and "INSECURE" in ROLES["legacy"].greeting
    with pytest.raises(LabError, match="unknown role 'pop3'"):
        MailServer(accounts=Accounts([]), store=None, faults=Faults(), ca=None,  # type: ignore[arg-type]
                   domains=[], roles=["pop3"])


def test_the_serve_banner_lists_roles_ca_accounts_and_commands(lab: labsupport.Lab) -> None:
    banner = cli._banner(lab)
    for role, port in lab.smtp.ports().items():
        assert f"{role:<12} 127.0.0.1 port {port}" in banner
    assert str(lab.ca.ca_file) in banner
    for account in lab.accounts.all():
        assert account.address in banner and account.password in banner
    sub, subs = lab.smtp.port("submission"), lab.smtp.port("submissions")
    assert f"swaks --server 127.0.0.1:{lab.smtp.port('mx')} --from" in banner
    assert f"swaks --server 127.0.0.1:{sub} --tls --tls-verify" in banner
    assert f"swaks --server 127.0.0.1:{subs} --tls-on-connect" in banner
    assert f"openssl s_client -starttls smtp -connect 127.0.0.1:{sub} -CAfile " \
           f"{lab.ca.ca_file}" in banner
    assert f"curl --ssl-reqd --url smtp://127.0.0.1:{sub} --cacert {lab.ca.ca_file}" in banner


def test_example_commands_follow_the_running_roles() -> None:
    only_mx = example_commands({"mx": 2525}, "/ca.pem", "a@b.test", "pw")
    assert [what for what, _ in only_mx] == [
        "plain SMTP to the MX role",
        "the attacker's forgery (XCLIENT): refused by Northwind's DMARC p=reject"]
    legacy = example_commands({"legacy": 2626}, "/ca.pem", "a@b.test", "pw")
    assert legacy == [("INSECURE legacy role: AUTH in clear text",
                       "swaks --server 127.0.0.1:2626 --auth PLAIN --auth-user a@b.test "
                       "--auth-password pw --from a@b.test --to carol@campus.test")]


# -- another user on the same host ----------------------------------------------------------


def test_another_user_gets_a_554_greeting_and_only_quit(mail_lab: labsupport.Lab,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    from labsupport.core.peers import PeerCheck
    from labsupport.mail import server_session

    def another_user(transport: object) -> PeerCheck:  # made up: no second Unix user here
        return PeerCheck(verdict="other-user", summary="127.0.0.1:4242 belongs to uid 4242",
                         transport="tcp", local=("127.0.0.1", 25), peer=("127.0.0.1", 4242),
                         own_uid=0, peer_uid=4242, supported=True)

    monkeypatch.setattr(server_session, "check_transport", another_user)
    lab = mail_lab
    for role in ("mx", "submission"):
        with socket.create_connection(("127.0.0.1", lab.smtp.port(role)), timeout=TIMEOUT) as s:
            reader = s.makefile("rb")
            assert reader.readline() == (server_session.OTHER_USER_GREETING + "\r\n").encode()
            if role == "mx":
                s.sendall(b"EHLO intruder.test\r\nMAIL FROM:<x@phisher.example>\r\n")
                replies = [reader.readline() for _ in range(2)]
                assert all(r.startswith(b"503 5.5.1 ") for r in replies), replies  # only QUIT
            s.sendall(b"QUIT\r\n")
            assert reader.readline().startswith(b"221 ")
    refused = [e for e in lab.smtp.log.entries(20) if e.event == "refused"]
    assert [e.role for e in refused] == ["mx", "submission"]
    assert "uid 4242" in refused[0].detail
    assert lab.mail.messages("carol@campus.test") == []


def test_signing_keys_dir_is_public(lab: labsupport.Lab) -> None:
    assert lab.smtp.signing_keys_dir == lab.data_dir / "keys"
    assert lab.smtp.signing_key("northwind.test") is not None
