"""The transcript client (labsupport/mail/smtp.py) against throwaway aiosmtpd servers.

Every server here binds 127.0.0.1 on an ephemeral port: aiosmtpd's Controller cannot
bind port 0 as shipped (it connects to ``self.port`` to trigger its factory), so
:class:`PortZeroController` reads the bound port from ``self.server.sockets`` first.
"""

from __future__ import annotations

import email
import email.policy
from collections.abc import Callable, Iterator
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # before pyplot is imported anywhere

import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from smtp_servers import (  # noqa: E402
    HOSTNAME,
    MESSAGE,
    MULTI_HOP,
    PASSWORD,
    USER,
    BannerSMTP,
    Certificates,
    Running,
    Sink,
    XClientSMTP,
    one_shot_server,
    refused_port,
    texts_of,
)

from labsupport.core.errors import LabError  # noqa: E402
from labsupport.core.results import Result  # noqa: E402
from labsupport.mail.received import parse_received  # noqa: E402
from labsupport.mail.smtp import (  # noqa: E402
    ENHANCED_CODES,
    REPLY_CODES,
    Reply,
    ReplyCodeError,
    SMTPConnectError,
    SMTPDisconnected,
    SMTPProtocolError,
    SMTPSession,
    SMTPTimeout,
    SMTPTLSError,
    SMTPUsageError,
    dot_stuff,
    explain_reply,
    parse_reply,
    received_chain,
    reply_code_table,
    send_mail,
)
from labsupport.teach.plots import smtp_sequence  # noqa: E402

# -- replies ------------------------------------------------------------------------------


def test_parse_multi_line_reply_with_enhanced_codes() -> None:
    reply = parse_reply(["250-mx.lab.test Hello", "250-2.0.0 SIZE 1000", "250 2.0.0 HELP"])
    assert reply.code == 250 and reply.enhanced is None  # first line has no enhanced code
    reply = parse_reply(["550-5.7.1 SPF says no:", "550 5.7.1 see the policy"])
    assert (reply.code, reply.enhanced) == (550, "5.7.1")
    assert reply.lines == ("SPF says no:", "see the policy")
    assert reply.is_permanent and not reply.is_transient and reply.reply_class == "5yz"
    assert str(reply) == "550-5.7.1 SPF says no:\n550 5.7.1 see the policy"
    bare = parse_reply(["250"])
    assert bare.code == 250 and bare.lines == ("",) and bare.is_positive


def test_enhanced_code_must_match_the_reply_class() -> None:
    assert parse_reply(["250 5.7.1 odd"]).enhanced is None
    assert parse_reply(["451 4.7.1 Greylisted"]).enhanced == "4.7.1"
    assert parse_reply(["354 End data with <CR><LF>.<CR><LF>"]).is_intermediate


@pytest.mark.parametrize("lines, message", [
    (["HTTP/1.1 400 Bad Request"], "not an SMTP reply line"),
    (["250-first", "251 second"], "different codes"),
    (["250 done", "250 more"], "more lines came after it"),
    (["250-and more"], "more lines follow"),
])
def test_malformed_replies_are_explained(lines: list[str], message: str) -> None:
    with pytest.raises(SMTPProtocolError, match=message):
        parse_reply(lines)


def test_explain_reply_classes_and_codes() -> None:
    assert explain_reply(354).startswith("354: Start mail input; end with <CRLF>.<CRLF>")
    assert "3yz positive intermediate" in explain_reply("354")
    assert "server challenge in AUTH" in explain_reply(334)
    assert "RFC 4954" in explain_reply(334)
    assert "try again later" in explain_reply(451)
    assert "should not repeat the exact request" in explain_reply(550)
    assert "2yz positive completion" in explain_reply(250)
    assert "No SMTP service here" in explain_reply(554)
    assert "not one of the reply codes listed" in explain_reply(299)
    assert "Second digit 5: mail system" in explain_reply(550)


def test_explain_enhanced_codes() -> None:
    text = explain_reply("550 5.1.1 no such user")
    basic, enhanced = text.split("\n")
    assert basic.startswith("550: Requested action not taken: mailbox unavailable")
    assert enhanced.startswith("5.1.1: Bad destination mailbox address")
    assert "Subject 1: addressing status" in enhanced
    assert "permanent failure" in enhanced
    assert explain_reply("X.7.8").startswith("X.7.8: Authentication credentials invalid")
    assert "Class" not in explain_reply("X.7.8")
    assert "persistent transient failure" in explain_reply("4.7.1")
    for code, meaning in [("X.1.2", "Bad destination system address"),
                          ("X.1.10", "Recipient address has null MX"),
                          ("X.2.2", "Mailbox full"), ("X.3.4", "Message too big for system"),
                          ("X.4.3", "Directory server failure"),
                          ("X.5.3", "Too many recipients"),
                          ("X.7.0", "Other or undefined security status"),
                          ("X.7.1", "Delivery not authorized, message refused")]:
        assert ENHANCED_CODES[code][0].startswith(meaning)
        assert meaning in explain_reply(code.replace("X", "5"))
    assert "should match the reply's first digit" in explain_reply("250 5.7.1")
    assert "not in this table" in explain_reply("5.9.99")


@pytest.mark.parametrize("bad", ["hello", "600", "99", "2500", "6.1.1", ""])
def test_explain_reply_rejects_non_codes(bad: str) -> None:
    with pytest.raises(ReplyCodeError, match="is not an SMTP reply code"):
        explain_reply(bad)
    assert issubclass(ReplyCodeError, LabError)


def test_reply_code_table_is_consistent() -> None:
    for code, (meaning, source) in REPLY_CODES.items():
        assert 200 <= code < 600 and meaning and source.startswith("RFC ")
    table = reply_code_table()
    assert ("354", "positive intermediate", REPLY_CODES[354][0], REPLY_CODES[354][1]) \
        in table.rows
    assert "<table>" in table._repr_html_() and "SMTP reply codes" in str(table)
    assert len(reply_code_table(enhanced=True).rows) == len(ENHANCED_CODES)


def test_dot_stuffing_and_line_ends() -> None:
    wire = dot_stuff("a\n.b\r\n.\rc")
    assert wire == b"a\r\n..b\r\n..\r\nc\r\n.\r\n"
    assert dot_stuff(b"") == b".\r\n"
    assert dot_stuff("x\r\n") == b"x\r\n.\r\n"


# -- step by step -------------------------------------------------------------------------


def test_step_by_step_session_records_every_line(plain: Running) -> None:
    with SMTPSession("127.0.0.1", plain.port) as session:
        banner = session.connect()
        assert banner.code == 220 and HOSTNAME in banner.text
        ehlo = session.ehlo("client.lab.test")
        assert ehlo.code == 250 and len(ehlo.lines) > 2  # a multi-line reply
        assert session.has_extension("SIZE") and session.has_extension("8bitmime")
        assert session.transcript.verdict == "open"
        assert "last reply: 250-mx.lab.test" in session.transcript.summary
        assert session.mail("alice@northwind.test", {"BODY": "8BITMIME"}).code == 250
        assert session.rcpt("bob@campus.test").code == 250
        assert session.send("DATA").code == 354 and session.in_data
        with pytest.raises(SMTPUsageError, match="data_line"):
            session.send("NOOP")
        assert session.data_line("Subject: typed by hand") is None
        assert session.data_line("") is None
        final = session.data_line(".")
        assert final is not None and final.code == 250 and not session.in_data
        assert session.quit().code == 221
        assert not session.connected
    transcript = session.transcript
    assert transcript.verdict == "closed" and isinstance(transcript, Result)
    ehlo_lines = [line for line in transcript.lines if line.text.startswith("250")]
    assert ehlo_lines[0].text.startswith("250-") and not ehlo_lines[0].end
    assert texts_of(transcript, "->")[:3] == [
        "EHLO client.lab.test", "MAIL FROM:<alice@northwind.test> BODY=8BITMIME",
        "RCPT TO:<bob@campus.test>"]
    assert transcript.codes() == [220, 250, 250, 250, 354, 250, 221]
    assert plain.handler.received[-1][2] == b"Subject: typed by hand\r\n\r\n"
    assert transcript.lines[0].direction == "===" and "Trying" in transcript.lines[0].text
    assert transcript.lines[-1].text == "Connection closed."


def test_a_command_is_one_line(plain: Running) -> None:
    with SMTPSession("127.0.0.1", plain.port) as session:
        session.connect()
        with pytest.raises(SMTPUsageError, match="single line"):
            session.send("NOOP\r\nRSET")
        assert session.noop().code == 250  # the session is still usable


def test_send_raw_sends_exact_octets_and_records_them(plain: Running) -> None:
    with SMTPSession("127.0.0.1", plain.port) as session:
        session.connect()
        session.send_raw(b"NOOP\r\n", what="a NOOP typed raw")
        reply = session.read_reply()
        assert reply is not None and reply.code == 250
        assert session.read_reply(wait=0.05) is None  # nothing more comes
        session.ehlo()
        session.mail("alice@northwind.test")
        session.rcpt("bob@campus.test")
        assert session.send("DATA").code == 354
        # A bare LF inside a line, and a line starting with "." sent without stuffing.
        session.send_raw(b"Subject: raw\r\n\r\nbare\nLF\r\n..two\r\n.\r\n")
        assert not session.in_data  # CRLF.CRLF ended the message
        final = session.read_reply(wait=5)
        assert final is not None and final.code == 250
    assert plain.handler.received[-1][2] == b"Subject: raw\r\n\r\nbare\nLF\r\n.two\r\n"
    rows = [(line.text, line.kind) for line in session.transcript.lines if line.direction == "->"]
    assert rows[0] == ("NOOP", "command")
    assert rows[-5:] == [("Subject: raw", "data"), ("", "data"), ("bare<LF>LF", "data"),
                         ("..two", "data"), (".", "data")]


def test_sending_before_connecting_says_so() -> None:
    with pytest.raises(LabError, match="call connect"):
        SMTPSession("127.0.0.1", 1).send("NOOP")


# -- whole dialogues ----------------------------------------------------------------------


def test_plain_delivery_keeps_dot_lines_intact(plain: Running) -> None:
    result = send_mail("127.0.0.1", plain.port, mail_from="alice@northwind.test",
                       rcpt_to="bob@campus.test", message=MESSAGE)
    assert result.verdict == "accepted", result.text()
    assert result.accepted == ("bob@campus.test",) and result.refused == ()
    assert "accepted the message for bob@campus.test" in result.summary
    mail_from, rcpts, content = plain.handler.received[-1]
    assert (mail_from, rcpts) == ("alice@northwind.test", ["bob@campus.test"])
    # The server took the stuffing off: every line arrives as written, with CRLF.
    assert content == MESSAGE.replace("\n", "\r\n").encode()
    data = [line.text for line in result.lines if line.kind == "data"]
    assert "..a line that starts with a dot" in data and ".." in data  # as on the wire
    assert "...two dots" in data
    assert data[-1] == "."
    assert result.codes() == [220, 250, 250, 250, 354, 250, 221]
    assert not result.used_tls and not result.exposed_credentials


def test_message_objects_are_accepted(plain: Running) -> None:
    msg = email.message.EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = "a@lab.test", "b@lab.test", "object"
    msg.set_content(".starts with a dot\n")
    result = send_mail("127.0.0.1", plain.port, mail_from="", rcpt_to=["b@lab.test"],
                       message=msg)
    assert result.verdict == "accepted"
    assert "MAIL FROM:<>" in texts_of(result, "->")  # the null reverse-path
    parsed = email.message_from_bytes(plain.handler.received[-1][2],
                                      policy=email.policy.default)
    assert parsed.get_content().replace("\r\n", "\n") == ".starts with a dot\n"


def test_starttls_lines_are_marked(starttls: Running, certs: Certificates) -> None:
    result = send_mail("127.0.0.1", starttls.port, mail_from="a@lab.test",
                       rcpt_to="b@lab.test", message="Subject: tls\n\nhi\n", tls="starttls",
                       ca_file=certs.ca_file)
    assert result.verdict == "accepted", result.text()
    assert texts_of(result, "->") == ["EHLO client.lab.test", "STARTTLS"]
    assert texts_of(result, "~>")[:3] == ["EHLO client.lab.test", "MAIL FROM:<a@lab.test>",
                                          "RCPT TO:<b@lab.test>"]
    start = next(i for i, line in enumerate(result.lines) if line.text.startswith(
        "TLS started with cipher"))
    assert all(line.tls for line in result.lines[start:] if line.kind != "note")
    assert not any(line.tls for line in result.lines[:start])
    assert any("certificate verified for 127.0.0.1" in line.text for line in result.lines)
    text = str(result)
    assert " -> STARTTLS" in text and " ~> EHLO client.lab.test" in text and "<~  250" in text
    assert 'background:#e6f2e6' in result._repr_html_()


def test_tls_keys_can_be_logged_for_a_capture(starttls: Running, certs: Certificates,
                                              tmp_path: Path) -> None:
    keylog = tmp_path / "keys.log"
    result = send_mail("127.0.0.1", starttls.port, mail_from="a@lab.test",
                       rcpt_to="b@lab.test", message="x\n", tls="starttls",
                       ca_file=certs.ca_file, keylog_file=keylog)
    assert result.verdict == "accepted"
    assert "CLIENT_TRAFFIC_SECRET_0" in keylog.read_text()  # NSS key log format, TLS 1.3


def test_implicit_tls_from_the_first_byte(implicit: Running, certs: Certificates) -> None:
    result = send_mail("127.0.0.1", implicit.port, mail_from="a@lab.test",
                       rcpt_to="b@lab.test", message="Subject: 465\n\nhi\n", tls="implicit",
                       ca_file=certs.ca_file, server_hostname=HOSTNAME)
    assert result.verdict == "accepted", result.text()
    assert all(line.tls for line in result.lines if line.kind != "note")
    assert result.lines[2].text.startswith("TLS started")
    assert texts_of(result, "->") == [] and texts_of(result, "<-") == []


def test_auth_plain_is_decoded_beside_the_line(authserver: Running,
                                               certs: Certificates) -> None:
    result = send_mail("127.0.0.1", authserver.port, mail_from=USER, rcpt_to="b@lab.test",
                       message="Subject: auth\n\nhi\n", tls="starttls", ca_file=certs.ca_file,
                       auth=(USER, PASSWORD))
    assert result.verdict == "accepted", result.text()
    (auth_line,) = [line for line in result.lines if line.text.startswith("AUTH PLAIN ")]
    assert auth_line.decoded == f"\\0{USER}\\0{PASSWORD}"
    assert auth_line.credentials and auth_line.tls and not auth_line.exposed
    assert f"[base64 of: \\0{USER}\\0{PASSWORD}]" in auth_line.as_text()
    assert 235 in result.codes() and not result.exposed_credentials


def test_auth_login_is_decoded_line_by_line(authserver: Running,
                                            certs: Certificates) -> None:
    result = send_mail("127.0.0.1", authserver.port, mail_from=USER, rcpt_to="b@lab.test",
                       message="Subject: login\n\nhi\n", tls="starttls",
                       ca_file=certs.ca_file, auth=(USER, PASSWORD), mechanism="login")
    assert result.verdict == "accepted", result.text()
    decoded = [(line.direction, line.decoded) for line in result.lines if line.decoded]
    assert decoded == [("<~", "User Name\\0"), ("~>", USER), ("<~", "Password\\0"),
                       ("~>", PASSWORD)]


def test_wrong_password_is_rejected(authserver: Running, certs: Certificates) -> None:
    result = send_mail("127.0.0.1", authserver.port, mail_from=USER, rcpt_to="b@lab.test",
                       message="x", tls="starttls", ca_file=certs.ca_file,
                       auth=(USER, "wrong"))
    assert result.verdict == "rejected"
    assert result.stopped_by is not None and result.stopped_by.code == 535
    assert result.stopped_by.enhanced == "5.7.8" and not result.temporary
    assert "AUTH PLAIN" in result.summary and "permanent" in result.summary
    assert texts_of(result, "~>")[-1] == "QUIT"
    assert not any(line.text.startswith("MAIL") for line in result.lines)


def test_no_password_in_the_clear_unless_asked(legacy: Running) -> None:
    refused = send_mail("127.0.0.1", legacy.port, mail_from=USER, rcpt_to="b@lab.test",
                        message="x", auth=(USER, PASSWORD))
    assert refused.verdict == "failed"
    assert "refused to send the password over an unencrypted connection" in refused.summary
    assert not any(line.text.startswith("AUTH") for line in refused.lines)
    assert texts_of(refused, "->")[-1] == "QUIT"

    loud = send_mail("127.0.0.1", legacy.port, mail_from=USER, rcpt_to="b@lab.test",
                     message="Subject: clear\n\nhi\n", auth=(USER, PASSWORD),
                     allow_plaintext_auth=True)
    assert loud.verdict == "accepted", loud.text()
    assert loud.exposed_credentials
    assert any(line.text.startswith("WARNING: AUTH WITHOUT TLS") for line in loud.lines)
    assert "!! credentials sent in the clear" in str(loud)
    assert "credentials sent in the clear</b>" in loud._repr_html_()
    assert f"\\0{USER}\\0{PASSWORD}" in str(loud)


def test_greylisted_recipient_makes_a_partial_delivery(greylisting: Running) -> None:
    result = send_mail("127.0.0.1", greylisting.port, mail_from="a@lab.test",
                       rcpt_to=["carol@campus.test", "bob@campus.test"],
                       message="Subject: two\n\nhi\n")
    assert result.verdict == "partly accepted", result.text()
    assert result.accepted == ("carol@campus.test",)
    ((who, reply),) = result.refused
    assert who == "bob@campus.test" and reply.code == 451 and reply.is_transient
    assert "bob@campus.test (451 4.7.1 Greylisted, try again later: temporary)" in \
        result.summary
    assert greylisting.handler.received[-1][1] == ["carol@campus.test"]


def test_only_recipient_greylisted_is_a_temporary_rejection(greylisting: Running) -> None:
    result = send_mail("127.0.0.1", greylisting.port, mail_from="a@lab.test",
                       rcpt_to="bob@campus.test", message="x")
    assert result.verdict == "rejected" and result.temporary
    assert "Every recipient was refused" in result.summary and "451 4.7.1" in result.summary
    assert result.summary.endswith("a sender keeps the message and tries again later.")
    assert "DATA" not in texts_of(result, "->")
    assert texts_of(result, "->")[-1] == "QUIT"


def test_unknown_recipient_is_a_permanent_refusal(greylisting: Running) -> None:
    result = send_mail("127.0.0.1", greylisting.port, mail_from="a@lab.test",
                       rcpt_to=["nobody@campus.test", "carol@campus.test"], message="x\n")
    assert result.verdict == "partly accepted"
    assert "nobody@campus.test (550 5.1.1 No such user: permanent)" in result.summary


def test_banner_554_is_recorded(start_server: Callable[..., Running]) -> None:
    server = start_server(smtp_class=BannerSMTP)
    result = send_mail("127.0.0.1", server.port, mail_from="a@lab.test", rcpt_to="b@lab.test",
                       message="x")
    assert result.verdict == "rejected" and not result.temporary
    assert result.stopped_by is not None and result.stopped_by.code == 554
    assert "the banner" in result.summary
    assert texts_of(result, "->") == ["QUIT"]  # RFC 5321 section 3.1: the client quits


def test_421_after_data_is_a_temporary_rejection(start_server: Callable[..., Running]) -> None:
    server = start_server(Sink(data_reply="421 4.3.2 Closing", close_after_data=True))
    result = send_mail("127.0.0.1", server.port, mail_from="a@lab.test", rcpt_to="b@lab.test",
                       message="Subject: x\n\nhi\n")
    assert result.verdict == "rejected" and result.temporary
    assert result.stopped_by is not None and result.stopped_by.code == 421
    assert "end of the message" in result.summary
    assert "QUIT" not in texts_of(result, "->")  # nothing more after 421 (section 3.8)
    assert result.codes()[-1] == 421


def test_lost_connection_after_the_message_is_a_doubt(
        start_server: Callable[..., Running]) -> None:
    server = start_server(Sink(hang_up_in_data=True))
    result = send_mail("127.0.0.1", server.port, mail_from="a@lab.test", rcpt_to="b@lab.test",
                       message="Subject: lost\n\nhi\n")
    assert result.verdict == "failed"
    assert "closed the connection without a reply" in result.summary
    assert "cannot know whether it was delivered" in result.summary
    assert result.codes()[-1] == 354


def test_ehlo_refused_falls_back_to_helo(start_server: Callable[..., Running]) -> None:
    server = start_server(Sink(ehlo_reply="502 5.5.1 EHLO not implemented"))
    result = send_mail("127.0.0.1", server.port, mail_from="a@lab.test", rcpt_to="b@lab.test",
                       message="Subject: helo\n\nhi\n")
    assert result.verdict == "accepted", result.text()
    assert texts_of(result, "->")[:2] == ["EHLO client.lab.test", "HELO client.lab.test"]
    assert any("fall back to HELO" in step.text for step in result.trace)


def test_xclient_is_sent_as_xtext_and_followed_by_ehlo(
        start_server: Callable[..., Running]) -> None:
    server = start_server(smtp_class=XClientSMTP)
    XClientSMTP.xclient_args.clear()
    result = send_mail("127.0.0.1", server.port, mail_from="a@northwind.test",
                       rcpt_to="b@lab.test", message="x\n",
                       xclient={"addr": "192.0.2.10", "helo": "out.northwind.test",
                                "login": "a b+c"})
    assert result.verdict == "accepted", result.text()
    assert XClientSMTP.xclient_args == [
        "ADDR=192.0.2.10 HELO=out.northwind.test LOGIN=a+20b+2Bc"]
    sent = texts_of(result, "->")
    assert sent[:3] == ["EHLO client.lab.test",
                        "XCLIENT ADDR=192.0.2.10 HELO=out.northwind.test LOGIN=a+20b+2Bc",
                        "EHLO client.lab.test"]
    assert any("does not advertise XCLIENT" in line.text for line in result.lines)


# -- what goes wrong, in words ------------------------------------------------------------


def test_wrong_ca_is_reported_clearly(starttls: Running, certs: Certificates) -> None:
    result = send_mail("127.0.0.1", starttls.port, mail_from="a@lab.test",
                       rcpt_to="b@lab.test", message="x", tls="starttls",
                       ca_file=certs.wrong_ca_file)
    assert result.verdict == "failed"
    assert "TLS certificate verification failed for 127.0.0.1" in result.summary
    assert str(certs.wrong_ca_file) in result.summary
    assert any(line.text.startswith("ERROR: TLS certificate verification failed")
               for line in result.lines)
    with SMTPSession("127.0.0.1", starttls.port, ca_file=certs.wrong_ca_file) as session:
        session.connect()
        session.ehlo()
        with pytest.raises(SMTPTLSError, match="certificate verification failed"):
            session.starttls()
        assert not session.connected


def test_hostname_mismatch_and_no_verification(starttls: Running,
                                               certs: Certificates) -> None:
    wrong_name = send_mail("127.0.0.1", starttls.port, mail_from="a@lab.test",
                           rcpt_to="b@lab.test", message="x", tls="starttls",
                           ca_file=certs.ca_file, server_hostname="mx.elsewhere.test")
    assert wrong_name.verdict == "failed" and "mx.elsewhere.test" in wrong_name.summary
    unchecked = send_mail("127.0.0.1", starttls.port, mail_from="a@lab.test",
                          rcpt_to="b@lab.test", message="x\n", tls="starttls", verify=False)
    assert unchecked.verdict == "accepted"
    assert any("NOT verified" in line.text for line in unchecked.lines)


def test_connection_refused_is_reported_clearly() -> None:
    port = refused_port()
    session = SMTPSession("127.0.0.1", port)
    with pytest.raises(SMTPConnectError, match=f"connection to 127.0.0.1:{port} refused"):
        session.connect()
    assert session.transcript.lines[-1].text.startswith("ERROR: connection to")
    result = send_mail("127.0.0.1", port, mail_from="a@lab.test", rcpt_to="b@lab.test",
                       message="x")
    assert result.verdict == "failed" and "nothing is listening" in result.summary


def test_timeout_is_reported_clearly(silent_port: int) -> None:
    session = SMTPSession("127.0.0.1", silent_port, timeout=0.2)
    with pytest.raises(SMTPTimeout, match="no reply from 127.0.0.1:.* within 0.2 seconds"):
        session.connect()
    assert isinstance(SMTPTimeout("x"), TimeoutError)
    result = send_mail("127.0.0.1", silent_port, mail_from="a@lab.test",
                       rcpt_to="b@lab.test", message="x", timeout=0.2)
    assert result.verdict == "failed" and "within 0.2 seconds" in result.summary


def test_a_server_that_hangs_up_or_speaks_nonsense() -> None:
    port, thread = one_shot_server(b"220 mx.lab.test hi\r\n")
    session = SMTPSession("127.0.0.1", port)
    assert session.connect().code == 220
    thread.join(5)
    with pytest.raises(SMTPDisconnected, match="closed the connection without a reply"):
        session.ehlo()
    port, thread = one_shot_server(b"HTTP/1.1 400 Bad Request\r\n\r\n")
    result = send_mail("127.0.0.1", port, mail_from="a@lab.test", rcpt_to="b@lab.test",
                       message="x")
    thread.join(5)
    assert result.verdict == "failed" and "not an SMTP reply line" in result.summary
    assert "HTTP/1.1 400 Bad Request" in texts_of(result, "<-")


def test_bad_options_are_sentences() -> None:
    with pytest.raises(SMTPUsageError, match="tls='ssl'"):
        send_mail("127.0.0.1", 1, mail_from="a", rcpt_to="b", message="x", tls="ssl")
    with pytest.raises(SMTPUsageError, match="PLAIN or LOGIN"):
        send_mail("127.0.0.1", 1, mail_from="a", rcpt_to="b", message="x", mechanism="CRAM")
    with pytest.raises(SMTPUsageError, match="at least one recipient"):
        send_mail("127.0.0.1", 1, mail_from="a", rcpt_to=[], message="x")


# -- renderings ---------------------------------------------------------------------------


def test_transcript_renders_as_text_and_html(plain: Running) -> None:
    result = send_mail("127.0.0.1", plain.port, mail_from="a@lab.test", rcpt_to="b@lab.test",
                       message="Subject: <b>\n\nhi\n")
    text = str(result)
    assert text.startswith(f"SMTP dialogue with 127.0.0.1:{plain.port}: accepted")
    assert " -> EHLO client.lab.test" in text and "<-  220 " in text
    assert "=== Connected to" in text
    page = result._repr_html_()
    assert "Subject: &lt;b&gt;" in page and "<b>SMTP dialogue" in page
    assert "color:#2f6f2f" in page  # 2yz replies in green


@pytest.fixture
def close_figures() -> Iterator[None]:
    yield
    plt.close("all")


def test_sequence_diagram(authserver: Running, certs: Certificates,
                          close_figures: None) -> None:
    result = send_mail("127.0.0.1", authserver.port, mail_from=USER, rcpt_to="b@lab.test",
                       message="Subject: diagram\n\nhi\n.dot\n", tls="starttls",
                       ca_file=certs.ca_file, auth=(USER, PASSWORD))
    fig = smtp_sequence(result)
    assert isinstance(fig, Figure)
    (ax,) = fig.axes
    arrows = [t for t in ax.texts if t.get_gid() in ("command", "reply", "data")]
    commands = sum(1 for line in result.lines if line.kind == "command")
    replies = len(result.replies)
    assert [t.get_gid() for t in arrows].count("command") == commands
    assert [t.get_gid() for t in arrows].count("reply") == replies
    assert [t.get_gid() for t in arrows].count("data") == 1  # the message is one arrow
    shaded = [p for p in ax.patches if p.get_gid() == "tls"]
    assert len(shaded) == 1
    labels = {t.get_text()[:3]: t.get_color() for t in ax.texts
              if t.get_gid() == "reply-label"}
    assert labels["354"] == "#1f5f9f" and labels["250"] == "#2f6f2f"
    assert any(f"= \\0{USER}\\0{PASSWORD}" in t.get_text() for t in ax.texts)
    assert result.title() in ax.get_title(loc="left")


def test_sequence_diagram_colours_refusals_and_draws_into_axes(
        greylisting: Running, close_figures: None) -> None:
    result = send_mail("127.0.0.1", greylisting.port, mail_from="a@lab.test",
                       rcpt_to="bob@campus.test", message="x")
    fig, ax = plt.subplots()
    assert smtp_sequence(result, ax=ax) is fig
    colours = {t.get_text()[:3]: t.get_color() for t in ax.texts
               if t.get_gid() == "reply-label"}
    assert colours["451"] == "#c07000"
    assert not [p for p in ax.patches if p.get_gid() == "tls"]


def test_plaintext_auth_is_red_in_the_diagram(legacy: Running, close_figures: None) -> None:
    result = send_mail("127.0.0.1", legacy.port, mail_from=USER, rcpt_to="b@lab.test",
                       message="x\n", auth=(USER, PASSWORD), allow_plaintext_auth=True)
    fig = smtp_sequence(result)
    flagged = [t for t in fig.axes[0].texts if "(in the clear!)" in t.get_text()]
    assert len(flagged) == 1 and flagged[0].get_color() == "#b00020"


# -- Received chains ----------------------------------------------------------------------



def test_received_chain_reads_hops_oldest_first() -> None:
    hops = received_chain(MULTI_HOP)
    assert [h.number for h in hops] == [1, 2, 3, 4]
    first, second, third, last = hops
    assert (first.from_, first.from_ip, first.by, first.with_, first.id, first.for_) == (
        "[198.51.100.7]", "198.51.100.7", "out.northwind.test", "ESMTPSA", "1F2E3D4C",
        "carol@campus.test")
    assert first.from_info == "laptop.example [198.51.100.7]"
    assert first.by_info == "Postfix"
    assert first.protocol == "ESMTP with both STARTTLS and successful AUTH"
    assert (second.from_, second.from_ip, second.by, second.id) == (
        "out.northwind.test", "192.0.2.10", "mx1.relay.test", "a1sor123456")
    assert (third.from_ip, third.by, third.with_) == ("2001:db8::25", "mx-a.campus.test",
                                                     "ESMTPS")
    assert third.from_info is not None and "using TLSv1.3" in third.from_info
    assert (last.from_, last.by, last.id) == (None, "mail.campus.test", "4Q2b9x0ZqLz9")
    assert last.by_info == "Postfix, from userid 1001"
    times = [h.date for h in hops]
    assert all(t is not None for t in times)
    seconds = [t.timestamp() for t in times if t is not None]
    assert seconds == sorted(seconds) and seconds[-1] - seconds[0] == 8
    assert str(first).startswith("hop 1: from [198.51.100.7] (laptop.example")
    msg = email.message_from_bytes(MULTI_HOP, policy=email.policy.default)
    assert [h.by for h in received_chain(msg)] == [h.by for h in hops]


def test_received_oddities() -> None:
    hop = parse_received("from a.test by b.test; not a date")
    assert (hop.from_, hop.by, hop.date, hop.date_text) == ("a.test", "b.test", None,
                                                            "not a date")
    hop = parse_received("from x.test (comment (nested; with semicolon)) by y.test")
    assert hop.from_info == "comment (nested; with semicolon)" and hop.date_text == ""
    assert received_chain("Subject: none\n\nbody\n") == []


def test_reply_helpers() -> None:
    reply = Reply(code=250, lines=("ok",))
    assert reply.first_line == "250 ok" and "250: Requested mail action okay" in \
        reply.explain()
    assert parse_reply(["451 4.7.1 later"]).explain().count("\n") == 1
