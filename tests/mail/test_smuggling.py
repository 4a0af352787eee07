"""labsupport.mail.smuggling, and the lab's mail roles refusing bare CR and LF.

Every fake end of data of :data:`VARIANTS` goes to the lab's MX role with a smuggled
second message after it: the reply must be the 554 5.5.2 of RFC 5321 section 2.3.8,
neither message may be stored, and a correct message on the same connection afterwards
must be. The submission roles refuse the same way (a relay is the party smuggled
through). Raw sockets and swaks send the octets without the transcript client; a
lenient toy server and a bare aiosmtpd show what the other verdicts look like.
"""

from __future__ import annotations

import html
import re
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from lab_helpers import subjects
from smtp_servers import Raw, Running

import labsupport
from labsupport.mail.smtp_replies import SMTPUsageError
from labsupport.mail.smuggling import (
    END_OF_DATA,
    VARIANTS,
    BareLineEnd,
    EndOfDataVariant,
    bare_line_end,
    send_every_variant,
    send_variant,
    smuggling_payload,
    variant,
)
from labsupport.mail.smuggling_lenient import LenientServer

TIMEOUT = 10  # seconds any reply may take before a test fails (never a measurement)
ARRIVAL_TIMEOUT = 20  # seconds for submitted mail to cross the lab's queue to a mailbox
SETTLE = 0.05  # seconds to wait for replies a lenient server would add

LF_REPLY = ("554 5.5.2 Message refused: a bare LF (line feed without carriage return) in "
            "line {line}; SMTP lines end only with CRLF, and only CRLF.CRLF ends the data "
            "(RFC 5321 sections 2.3.8 and 4.1.1.4). A bare CR or LF can fake an end of data "
            "to a lenient server (SMTP smuggling); the message was not stored")
CR_REPLY = ("554 5.5.2 Message refused: a bare CR (carriage return without line feed) in "
            "line {line}; SMTP lines end only with CRLF, and only CRLF.CRLF ends the data "
            "(RFC 5321 sections 2.3.8 and 4.1.1.4). A bare CR or LF can fake an end of data "
            "to a lenient server (SMTP smuggling); the message was not stored")
#: Where each variant's first bare octet falls in smuggling_payload(): the first
#: message's body text is line 5; a variant that starts with CR LF ends that line
#: properly, and its bare octet is in line 6 (after the "." is taken off again).
FIRST_BARE = {"LF.LF": ("LF", 5), "LF.CRLF": ("LF", 5), "CRLF.LF": ("LF", 6),
              "CR.CR": ("CR", 5), "CR.LF": ("CR", 5), "CRLF.CR": ("CR", 6),
              "LF.CR": ("LF", 5), "CR.CRLF": ("CR", 5)}
CAROL = "carol@campus.test"


def expected_reply(name: str) -> str:
    char, line = FIRST_BARE[name]
    return (LF_REPLY if char == "LF" else CR_REPLY).format(line=line)


def follow_up_subject(name: str) -> str:
    return f"smuggling test ({name}): a correct message after it"


# -- the rule, without a server -----------------------------------------------------------


def test_bare_line_end_finds_the_first_bare_octet() -> None:
    assert bare_line_end(b"Subject: hi\r\n\r\nbody\r\n") is None
    assert bare_line_end(b"") is None
    assert bare_line_end(b"a\r\nb\nc\r\n") == BareLineEnd("LF", 4, 2)
    assert bare_line_end(b"a\r\r\n") == BareLineEnd("CR", 1, 1)  # CR before CR LF
    assert bare_line_end(b"\nfirst") == BareLineEnd("LF", 0, 1)
    assert bare_line_end(b"one\r\ntwo\r\nthree\r") == BareLineEnd("CR", 15, 3)
    assert BareLineEnd("LF", 4, 2).describe() == \
        "a bare LF (line feed without carriage return) in line 2 (octet 4)"


def test_every_variant_is_a_fake_end_of_data() -> None:
    assert [v.name for v in VARIANTS] == list(FIRST_BARE)
    for each in VARIANTS:
        assert each.ending != END_OF_DATA and b"." in each.ending
        found = bare_line_end(b"text" + each.ending + b"more\r\n")
        assert found is not None, each.name
        assert "RFC 5321 section 2.3.8" in each.rfc and each.lenient
    assert variant("LF.CRLF").shown == "<LF>.<CR><LF>"
    assert variant("lf.crlf") is variant("<LF>.<CR><LF>") is VARIANTS[1]


def test_an_unknown_variant_names_the_known_ones() -> None:
    with pytest.raises(SMTPUsageError, match=r"no end-of-data variant 'LF\.LF\.LF'; the "
                                             r"variants are LF\.LF, LF\.CRLF, CRLF\.LF"):
        variant("LF.LF.LF")


def test_the_payload_hides_a_second_transaction_before_the_real_end() -> None:
    payload = smuggling_payload("LF.CRLF", mail_from="m@phisher.example", rcpt_to=CAROL,
                                smuggled_from="alice@northwind.test")
    assert payload.endswith(b"\r\n.\r\n") and payload.count(END_OF_DATA) == 1
    first, fake, rest = payload.partition(b"it.\n.\r\n")
    assert fake and first.startswith(b"From: <m@phisher.example>\r\n")
    assert rest.startswith(b"MAIL FROM:<alice@northwind.test>\r\nRCPT TO:<carol@campus.test>"
                           b"\r\nDATA\r\nFrom: <alice@northwind.test>\r\n")


# -- the lab's MX role --------------------------------------------------------------------


@pytest.mark.parametrize("chosen", VARIANTS, ids=[v.name for v in VARIANTS])
def test_the_mx_role_refuses_each_variant_and_stores_nothing(
        mail_lab: labsupport.Lab, chosen: EndOfDataVariant) -> None:
    result = send_variant("127.0.0.1", mail_lab.smtp.port("mx"), chosen, store=mail_lab.mail,
                          settle=SETTLE, timeout=TIMEOUT)
    assert result.reply is not None and result.reply.first_line == expected_reply(chosen.name)
    assert result.verdict == "refused", result.text()
    assert result.extra_replies == ()  # the smuggled MAIL, RCPT and DATA were no commands
    assert result.stored == 0
    # The same connection goes on: the correct message after it is stored, and only it.
    assert result.follow_up is not None
    assert result.follow_up.first_line.startswith("250 2.0.0 Ok: delivered as ")
    assert result.follow_up_stored == 1
    assert subjects(mail_lab) == [follow_up_subject(chosen.name)]
    refusals = [e for e in mail_lab.smtp.log.entries() if e.event == "not stored"]
    char, line = FIRST_BARE[chosen.name]
    assert len(refusals) == 1 and refusals[0].role == "mx"
    assert refusals[0].detail.startswith(f"a bare {char} (")
    assert f"in line {line} (octet " in refusals[0].detail
    assert refusals[0].detail.endswith("(RFC 5321 section 2.3.8): refused as possible SMTP "
                                       "smuggling")


def test_the_result_says_in_words_what_happened(mail_lab: labsupport.Lab) -> None:
    result = send_variant("127.0.0.1", mail_lab.smtp.port("mx"), "CR.CR", store=mail_lab.mail,
                          settle=SETTLE, timeout=TIMEOUT)
    text = result.text()
    assert result.summary == ("The server refused the whole message with 554 and stored "
                              "nothing: <CR>.<CR> did not end the data, and the bare line end "
                              "made the message unacceptable (RFC 5321 section 2.3.8).")
    assert "sent after 354, in one write: a first message, <CR>.<CR>, a smuggled MAIL " \
           "FROM:<alice@northwind.test>" in text
    assert "messages stored for carol@campus.test by this attempt: 0" in text
    assert "then a correct message on the same connection: 250 2.0.0 Ok: delivered as" in text
    assert "; stored: 1" in text
    assert result.transcript is not None
    dialogue = result.transcript.dialogue()
    assert " -> The sending server sees this one message and nothing after it.<CR>.<CR>" \
           "MAIL FROM:<alice@northwind.test>" in dialogue
    assert f"<-  {CR_REPLY.format(line=5)}" in dialogue
    page = result._repr_html_()
    assert "<summary>the dialogue</summary>" in page and "&lt;CR&gt;.&lt;CR&gt;" in page
    assert result.dialogue() == dialogue


def test_a_data_fault_is_not_spent_on_a_refused_message(mail_lab: labsupport.Lab) -> None:
    mail_lab.faults.add("data", "451 4.3.0 Lesson fault: try again later")
    result = send_variant("127.0.0.1", mail_lab.smtp.port("mx"), "LF.LF", store=mail_lab.mail,
                          settle=SETTLE, timeout=TIMEOUT)
    assert result.reply is not None and result.reply.first_line == expected_reply("LF.LF")
    assert result.follow_up is not None
    assert result.follow_up.first_line == "451 4.3.0 Lesson fault: try again later"
    assert result.follow_up_stored == 0 and subjects(mail_lab) == []


def test_a_survey_of_the_mx_role_finds_it_safe(mail_lab: labsupport.Lab) -> None:
    survey = send_every_variant("127.0.0.1", mail_lab.smtp.port("mx"), store=mail_lab.mail,
                                settle=SETTLE, timeout=TIMEOUT)
    assert survey.verdict == "safe"
    assert survey.summary == ("All 8 variants refused, nothing smuggled: only "
                              "<CR><LF>.<CR><LF> ends the data, and a bare CR or LF is refused "
                              "(RFC 5321 sections 2.3.8 and 4.1.1.4).")
    assert [r.verdict for r in survey.results] == ["refused"] * len(VARIANTS)
    text = survey.text()
    assert "variant  octets" in text
    for row in survey.rows():
        assert row[2] == expected_reply(str(row[0]))[:47] + "…"
        assert row[3:] == [0, 0, "250 2.0.0 (stored 1)", "refused"]
    page = survey._repr_html_()
    assert "<table>" in page and page.count("<summary>the dialogue</summary>") == len(VARIANTS)
    for each in VARIANTS:
        assert f"<summary>{html.escape(each.shown)}: refused</summary>" in page
    assert sorted(subjects(mail_lab)) == sorted(follow_up_subject(v.name) for v in VARIANTS)


def test_a_refused_recipient_means_the_variant_was_not_tried(mail_lab: labsupport.Lab) -> None:
    result = send_variant("127.0.0.1", mail_lab.smtp.port("mx"), "LF.LF",
                          rcpt_to="nobody@campus.test", settle=SETTLE, timeout=TIMEOUT)
    assert result.verdict == "failed" and result.reply is None
    assert result.summary.startswith("The variant could not be tried: the server refused "
                                     "RCPT TO with 550 5.1.1 <nobody@campus.test>:")
    assert result.summary.endswith("so the variant was not sent.")


# -- the submission roles -----------------------------------------------------------------


@pytest.mark.parametrize("role", ["submission", "submissions"])
def test_the_submission_roles_refuse_too(mail_lab: labsupport.Lab, role: str) -> None:
    alice = mail_lab.accounts.get("alice@northwind.test")
    assert alice is not None
    result = send_variant("127.0.0.1", mail_lab.smtp.port(role), "LF.CRLF",
                          mail_from=alice.address, smuggled_from="bob@northwind.test",
                          starttls=role == "submission", implicit_tls=role == "submissions",
                          auth=(alice.address, alice.password),
                          ca_file=str(mail_lab.ca.ca_file), settle=SETTLE, timeout=TIMEOUT)
    assert result.reply is not None and result.reply.first_line == expected_reply("LF.CRLF")
    assert result.verdict == "refused" and result.extra_replies == ()
    assert result.follow_up is not None
    assert result.follow_up.first_line.startswith("250 2.0.0 Ok: queued as ")
    # Only the correct message went to the queue, and only it arrives.
    deadline = time.monotonic() + ARRIVAL_TIMEOUT
    while not subjects(mail_lab) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert subjects(mail_lab) == [follow_up_subject("LF.CRLF")]
    log = [e for e in mail_lab.smtp.log.entries() if e.role == role]
    assert [e.event for e in log].count("queued") == 1
    payload = smuggling_payload("LF.CRLF", mail_from=alice.address, rcpt_to=CAROL,
                                smuggled_from="bob@northwind.test")
    octet = payload.index(b"it.\n.\r\n") + len(b"it.")
    assert [e.detail for e in log if e.event == "not stored"] == [
        f"a bare LF (line feed without carriage return) in line 5 (octet {octet}) (RFC 5321 "
        "section 2.3.8): refused as possible SMTP smuggling"]


# -- raw octets, without the transcript client --------------------------------------------


def test_raw_bare_lf_is_refused_and_the_pipelined_session_goes_on(
        mail_lab: labsupport.Lab) -> None:
    raw = Raw(mail_lab.smtp.port("mx"))
    try:
        raw.sock.sendall(b"EHLO raw.test\r\nMAIL FROM:<mallory@phisher.example>\r\n"
                         b"RCPT TO:<carol@campus.test>\r\nDATA\r\n")
        assert raw.reply().startswith("250-mx.lab.test Hello raw.test")
        assert raw.reply() == "250 2.1.0 Sender <mallory@phisher.example> OK"
        assert raw.reply() == "250 2.1.5 Recipient <carol@campus.test> OK"
        assert raw.reply() == "354 End data with <CR><LF>.<CR><LF>"
        # One write: the smuggling message, then (pipelined) a correct one and QUIT.
        raw.sock.sendall(b"Subject: raw first\r\n\r\nfirst\n.\n"
                         b"MAIL FROM:<alice@northwind.test>\r\nRCPT TO:<carol@campus.test>\r\n"
                         b"DATA\r\nSubject: raw smuggled\r\n\r\nsmuggled\r\n.\r\n"
                         b"MAIL FROM:<mallory@phisher.example>\r\n"
                         b"RCPT TO:<carol@campus.test>\r\nDATA\r\n")
        assert raw.reply() == LF_REPLY.format(line=3)
        assert raw.reply() == "250 2.1.0 Sender <mallory@phisher.example> OK"
        assert raw.reply() == "250 2.1.5 Recipient <carol@campus.test> OK"
        assert raw.reply() == "354 End data with <CR><LF>.<CR><LF>"
        raw.sock.sendall(b"Subject: raw after\r\n\r\nfine\r\n.\r\nQUIT\r\n")
        assert re.fullmatch(r"250 2\.0\.0 Ok: delivered as [0-9A-F]{10}", raw.reply())
        assert raw.reply() == "221 2.0.0 Bye"
    finally:
        raw.close()
    assert subjects(mail_lab) == ["raw after"]


def test_raw_bare_cr_alone_is_refused(mail_lab: labsupport.Lab) -> None:
    raw = Raw(mail_lab.smtp.port("mx"))
    try:
        raw.sock.sendall(b"HELO raw.test\r\nMAIL FROM:<mallory@phisher.example>\r\n"
                         b"RCPT TO:<carol@campus.test>\r\nDATA\r\n")
        for _ in range(4):
            last = raw.reply()
        assert last.startswith("354 ")
        raw.sock.sendall(b"Subject: cr\r\n\r\nan old Mac line\rend\r\n.\r\nNOOP\r\n")
        assert raw.reply() == CR_REPLY.format(line=3)
        assert raw.reply() == "250 2.0.0 OK"  # NOOP: the session is still served
    finally:
        raw.close()
    assert subjects(mail_lab) == []


# -- swaks --------------------------------------------------------------------------------


def need_swaks() -> str:
    found = shutil.which("swaks")
    if found is None:
        pytest.skip("swaks is not installed (.ci/run installs it with apt-get)")
    return found


def swaks(port: int, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([need_swaks(), "--server", f"127.0.0.1:{port}", "--to", CAROL,
                           "--from", "mallory@phisher.example", "--helo", "client.lab.test",
                           *extra], capture_output=True, text=True, timeout=30, check=False)


def test_swaks_delivers_a_normal_message(mail_lab: labsupport.Lab) -> None:
    done = swaks(mail_lab.smtp.port("mx"), "--header", "Subject: swaks normal")
    assert done.returncode == 0, done.stdout + done.stderr
    assert re.search(r"<-  250 2\.0\.0 Ok: delivered as [0-9A-F]{10}\n", done.stdout)
    assert subjects(mail_lab) == ["swaks normal"]


def test_swaks_without_data_fixup_sends_bare_lf_and_is_refused(
        mail_lab: labsupport.Lab, tmp_path: Path) -> None:
    # --no-data-fixup sends the file's octets as they are and adds only a final CR LF,
    # so the file ends with the "." of the real end of data.
    data = tmp_path / "smuggle.eml"
    data.write_bytes(b"From: <mallory@phisher.example>\r\nSubject: swaks first\r\n\r\n"
                     b"hello\n.\nMAIL FROM:<alice@northwind.test>\r\n"
                     b"RCPT TO:<carol@campus.test>\r\nDATA\r\nSubject: swaks smuggled\r\n\r\n"
                     b"bad\r\n.")
    done = swaks(mail_lab.smtp.port("mx"), "--no-data-fixup", "--data", f"@{data}")
    assert done.returncode == 26, done.stdout + done.stderr  # "did not accept mail"
    assert f"<** {LF_REPLY.format(line=4)}\n" in done.stdout
    assert "<-  221 2.0.0 Bye" in done.stdout  # the session was still served to the end
    assert subjects(mail_lab) == []


# -- what other servers would do ----------------------------------------------------------


def test_a_lenient_server_is_caught_smuggling() -> None:
    lenient = LenientServer()
    try:
        result = send_variant("127.0.0.1", lenient.port, "LF.CRLF", store=lenient,
                              follow_up=False, settle=1.0, timeout=TIMEOUT)
        assert result.verdict == "smuggled", result.text()
        assert [r.code for r in result.extra_replies] == [250, 250, 354, 250]
        assert result.stored == 2
        assert result.summary == ("The server took <LF>.<CR><LF> as the end of data and "
                                  "answered the smuggled commands, and stored 2 messages: a "
                                  "second message the sender never sent could get in.")
        assert b"the smuggled message" in lenient.messages[1][2]  # (from, to, content)
        survey = send_every_variant("127.0.0.1", lenient.port, store=lenient,
                                    follow_up=False, settle=1.0, timeout=TIMEOUT)
        assert survey.verdict == "vulnerable"
        assert [r.verdict for r in survey.results] == ["smuggled"] * len(VARIANTS)
    finally:
        lenient.close()


class Counted:
    """The messages a throwaway aiosmtpd server (tests/smtp_servers.py) kept, counted."""

    def __init__(self, running: Running) -> None:
        self.running = running

    def count(self, address: str | None = None) -> int:
        return len(self.running.handler.received)


def test_bare_aiosmtpd_keeps_one_message_with_its_bare_line_ends(
        start_server: Callable[..., Running]) -> None:
    running = start_server()
    result = send_variant("127.0.0.1", running.port, "LF.LF", store=Counted(running),
                          follow_up=False, settle=SETTLE, timeout=TIMEOUT)
    assert result.verdict == "accepted", result.text()
    assert result.extra_replies == () and result.stored == 1
    _sender, _rcpts, content = running.handler.received[0]
    assert b"it.\n.\nMAIL FROM:<alice@northwind.test>\r\n" in content
    assert "as a relay it would pass the bare line ends on" in result.summary
