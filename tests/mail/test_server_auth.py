"""The lab's MX role checks SPF and DKIM on every message and stamps one
Authentication-Results field; the submission roles sign; the forwarder and the mailing list
re-send through the delivering MTA (labsupport.mail.server with labsupport.auth.authres)."""

from __future__ import annotations

import email
import email.policy
import smtplib
from email.message import Message

import labsupport
from labsupport import send_mail
from labsupport.auth.authres import AuthResults, parse_authres
from labsupport.mail.server import LAB_ALIASES, Forwarder, MailingList

TIMEOUT = 10


def message(subject: str, sender: str = "alice@northwind.test",
            rcpt: str = "carol@campus.test", extra: str = "") -> str:
    return (f"From: {sender}\r\nTo: {rcpt}\r\nSubject: {subject}\r\n{extra}"
            f"Message-ID: <{subject.replace(' ', '-')}@test>\r\n\r\nHello.\r\n")


def to_mx(lab: labsupport.Lab, *, addr: str, helo: str, mail_from: str, subject: str,
          rcpt: str = "carol@campus.test", extra: str = "") -> None:
    sent = send_mail("127.0.0.1", lab.smtp.port("mx"), mail_from=mail_from, rcpt_to=[rcpt],
                     message=message(subject, mail_from or "postmaster@" + helo, rcpt, extra),
                     xclient={"ADDR": addr, "HELO": helo})
    assert sent.verdict == "accepted", sent.text()


def submit(lab: labsupport.Lab, sender: str, rcpt: str, subject: str) -> None:
    account = lab.accounts.get(sender)
    assert account is not None
    sent = send_mail("127.0.0.1", lab.smtp.port("submission"), mail_from=sender,
                     rcpt_to=[rcpt], message=message(subject, sender, rcpt), tls="starttls",
                     auth=(sender, account.password), ca_file=lab.ca.ca_file)
    assert sent.verdict == "accepted", sent.text()
    assert lab.queue.wait_idle(15)


def stored(lab: labsupport.Lab, address: str, subject: str) -> tuple[bytes, Message]:
    found = [m for m in lab.mail.messages(address) if subject in (m.subject or "")]
    assert len(found) == 1, [m.subject for m in lab.mail.messages(address)]
    raw = found[0].raw
    return raw, email.message_from_bytes(raw, policy=email.policy.compat32)


def authres(parsed: Message) -> AuthResults:
    fields = parsed.get_all("Authentication-Results") or []
    assert len(fields) == 1, fields  # one field, never a second one
    return parse_authres(fields[0])


def result(results: AuthResults, method: str) -> tuple[str, dict[str, str]]:
    found = results.find(method)
    assert found is not None, results.text()
    return found.result, found.props


# -- SPF on the MX role ------------------------------------------------------------------


def test_the_right_outbound_host_passes_spf(mail_lab: labsupport.Lab) -> None:
    to_mx(mail_lab, addr="192.0.2.10", helo="out.northwind.test",
          mail_from="alice@northwind.test", subject="from out")
    raw, parsed = stored(mail_lab, "carol@campus.test", "from out")
    results = authres(parsed)
    assert results.authserv_id == "mx.lab.test"
    assert result(results, "spf") == ("pass", {"smtp.mailfrom": "alice@northwind.test"})
    assert result(results, "dkim")[0] == "none"
    # Return-Path, then the MX role's Received, then its Authentication-Results.
    lines = raw.split(b"\n")
    assert lines[0] == b"Return-Path: <alice@northwind.test>"
    assert lines[1].startswith(b"Received: from out.northwind.test (out.northwind.test "
                               b"[192.0.2.10])")
    first_ar = next(i for i, line in enumerate(lines)
                    if line.startswith(b"Authentication-Results:"))
    assert all(line[:1] in (b" ", b"\t") for line in lines[2:first_ar])
    evaluation = mail_lab.smtp.evaluations[-1]
    assert evaluation.client_ip == "192.0.2.10" and evaluation.mail_from == "alice@northwind.test"
    assert evaluation.recipients == ("carol@campus.test",)
    assert evaluation.helo == "out.northwind.test"
    assert evaluation.message_id == "<from-out@test>"
    assert evaluation.spf is not None and evaluation.spf.verdict == "pass"
    assert evaluation.dkim is not None and evaluation.dkim.verdict == "none"
    assert "authenticated" in [e.event for e in mail_lab.smtp.log.entries()]


def test_the_attacker_claiming_northwind_fails_spf(mail_lab: labsupport.Lab) -> None:
    # SPF fails; since northwind.test publishes p=reject, DMARC now refuses the message
    # (test_server_dmarc.py has the rest of that story)
    sent = send_mail("127.0.0.1", mail_lab.smtp.port("mx"), mail_from="ceo@northwind.test",
                     rcpt_to=["carol@campus.test"], message=message("urgent transfer",
                                                                    "ceo@northwind.test"),
                     xclient={"ADDR": "203.0.113.66", "HELO": "out.phisher.example"})
    assert sent.verdict != "accepted" and "550 5.7.1" in sent.text()
    evaluation = mail_lab.smtp.evaluations[-1]
    assert evaluation.spf_result == "fail" and evaluation.disposition == "reject"
    verdict, props = result(evaluation.results, "spf")
    assert (verdict, props) == ("fail", {"smtp.mailfrom": "ceo@northwind.test"})
    assert not mail_lab.mail.messages("carol@campus.test")


def test_careless_record_over_the_lookup_limit_is_a_permerror(mail_lab: labsupport.Lab) -> None:
    to_mx(mail_lab, addr="203.0.113.10", helo="out.careless.test",
          mail_from="sales@careless.test", subject="careless")
    _raw, parsed = stored(mail_lab, "carol@campus.test", "careless")
    assert result(authres(parsed), "spf")[0] == "permerror"
    spf = mail_lab.smtp.evaluations[-1].spf
    assert spf is not None and spf.dns_terms == 10


def test_null_sender_checks_the_helo_identity(mail_lab: labsupport.Lab) -> None:
    # (from alumni.example, which publishes no DMARC policy: a bounce "From:
    # postmaster@out.northwind.test" would meet northwind.test's p=reject)
    to_mx(mail_lab, addr="198.51.100.61", helo="out.alumni.example", mail_from="",
          subject="a bounce")
    _raw, parsed = stored(mail_lab, "carol@campus.test", "a bounce")
    verdict, props = result(authres(parsed), "spf")
    assert props == {"smtp.helo": "out.alumni.example"} and verdict in ("none", "fail")


def test_forged_results_claiming_to_be_ours_are_removed(mail_lab: labsupport.Lab) -> None:
    forged = ("Authentication-Results: mx.lab.test; spf=pass smtp.mailfrom=ceo@northwind.test;"
              "\r\n\tdkim=pass header.d=northwind.test\r\n"
              "Authentication-Results: relay.other.example; spf=pass smtp.mailfrom=x@y.example"
              "\r\n")
    # (a From domain without a DMARC policy, so the message is stored, not rejected)
    to_mx(mail_lab, addr="203.0.113.66", helo="out.phisher.example",
          mail_from="ceo@parked.test", subject="forged", extra=forged)
    raw, parsed = stored(mail_lab, "carol@campus.test", "forged")
    fields = parsed.get_all("Authentication-Results") or []
    ours = [f for f in fields if parse_authres(f).authserv_id == "mx.lab.test"]
    assert len(ours) == 1 and len(fields) == 2
    assert result(parse_authres(ours[0]), "spf")[0] == "fail"
    assert b"relay.other.example" in raw and b"dkim=pass header.d=northwind.test" not in raw


# -- DKIM: signed on submission, verified on the MX role ------------------------------------


def test_mail_submitted_by_alice_is_signed_and_passes(mail_lab: labsupport.Lab) -> None:
    submit(mail_lab, "alice@northwind.test", "carol@campus.test", "signed notes")
    _raw, parsed = stored(mail_lab, "carol@campus.test", "signed notes")
    assert len(parsed.get_all("DKIM-Signature") or []) == 1
    results = authres(parsed)
    verdict, props = result(results, "dkim")
    assert verdict == "pass"
    assert props["header.d"] == "northwind.test" and props["header.s"] == "lab2026-rsa"
    assert result(results, "spf") == ("pass", {"smtp.mailfrom": "alice@northwind.test"})
    assert "dkim signed" in [e.event for e in mail_lab.smtp.log.entries()]


def test_a_domain_without_a_lab_key_is_not_signed(mail_lab: labsupport.Lab) -> None:
    submit(mail_lab, "erin@tinyshop.test", "carol@campus.test", "unsigned shop")
    _raw, parsed = stored(mail_lab, "carol@campus.test", "unsigned shop")
    assert parsed.get_all("DKIM-Signature") is None
    assert result(authres(parsed), "dkim")[0] == "none"


# -- the forwarder and the mailing list ----------------------------------------------------


def test_aliases_are_listed_and_accepted_by_the_mx(mail_lab: labsupport.Lab) -> None:
    aliases = mail_lab.smtp.aliases()
    assert isinstance(aliases["carol@alumni.example"], Forwarder)
    assert isinstance(aliases["course@lists.campus.test"], MailingList)
    assert set(aliases) == {a.address for a in LAB_ALIASES}
    assert all(a.describe() for a in aliases.values())
    with smtplib.SMTP("127.0.0.1", mail_lab.smtp.port("mx"), timeout=TIMEOUT) as client:
        client.ehlo("client.example")
        client.mail("bob@northwind.test")
        assert client.rcpt("carol@alumni.example")[0] == 250
        assert client.rcpt("COURSE@lists.campus.test")[0] == 250
        assert client.rcpt("course-bounces@lists.campus.test")[0] == 250
        assert client.rcpt("nobody@alumni.example")[0] == 550
        client.rset()


def test_forwarding_breaks_spf_but_not_dkim(mail_lab: labsupport.Lab) -> None:
    submit(mail_lab, "alice@northwind.test", "carol@alumni.example", "forward me")
    raw, parsed = stored(mail_lab, "carol@campus.test", "forward me")
    assert parsed["Return-Path"] == "<alice@northwind.test>"  # the original MAIL FROM
    results = authres(parsed)
    assert result(results, "spf") == ("fail", {"smtp.mailfrom": "alice@northwind.test"})
    verdict, props = result(results, "dkim")
    assert verdict == "pass" and props["header.d"] == "northwind.test"
    hops = labsupport.received_chain(parsed)
    assert "198.51.100.61" in str(hops[-1]) and "out.alumni.example" in str(hops[-1])
    assert any("for <carol@alumni.example>" in " ".join(h.split())
               for h in parsed.get_all("Received") or [])
    spf = [e.spf_result for e in mail_lab.smtp.evaluations]
    assert spf == ["pass", "fail"]  # at alumni.example's MX, then at Campus
    assert not mail_lab.mail.messages("carol@alumni.example")


def test_the_mailing_list_tags_adds_a_footer_and_breaks_dkim(mail_lab: labsupport.Lab) -> None:
    submit(mail_lab, "alice@northwind.test", "course@lists.campus.test", "exam dates")
    raw, parsed = stored(mail_lab, "carol@campus.test", "exam dates")
    assert parsed["Subject"] == "[course] exam dates"
    assert parsed["Return-Path"] == "<course-bounces@lists.campus.test>"
    assert parsed["List-Id"] == "Course discussion <course.lists.campus.test>"
    assert raw.rstrip().endswith(b"To leave the list, write to course-bounces@lists.campus.test")
    assert b"Hello.\n-- \ncourse mailing list" in raw
    results = authres(parsed)
    # the author's signature fails; the list's own (d=campus.test, see
    # test_server_dmarc.py) passes
    signatures = {r.get("header.d"): r for r in results.all("dkim")}
    author = signatures["northwind.test"]
    assert author.result == "fail" and "body hash" in (author.comment or "")
    assert signatures["campus.test"].result == "pass"
    assert result(results, "spf") == ("pass",
                                      {"smtp.mailfrom": "course-bounces@lists.campus.test"})
    for member in ("dave@campus.test", "bob@northwind.test"):
        _raw, copy = stored(mail_lab, member, "exam dates")
        assert copy["Subject"] == "[course] exam dates"
    assert "198.51.100.40" in str(labsupport.received_chain(parsed)[-1])


def test_the_list_does_not_send_bounces_or_loop(mail_lab: labsupport.Lab) -> None:
    to_mx(mail_lab, addr="198.51.100.61", helo="out.alumni.example", mail_from="",
          subject="a bounce for the list", rcpt="course@lists.campus.test")
    to_mx(mail_lab, addr="198.51.100.40", helo="out.lists.campus.test",
          mail_from="course-bounces@lists.campus.test", subject="[course] looped",
          rcpt="course@lists.campus.test",
          extra="List-Id: Course discussion <course.lists.campus.test>\r\n")
    assert mail_lab.queue.wait_idle(15)
    assert not mail_lab.mail.messages("carol@campus.test")
    events = [e.detail for e in mail_lab.smtp.log.entries() if e.event == "not re-sent"]
    assert len(events) == 2 and "bounce" in events[0] and "loop" in events[1]


# -- reset -------------------------------------------------------------------------------


def test_reset_clears_the_evaluations(mail_lab: labsupport.Lab) -> None:
    to_mx(mail_lab, addr="192.0.2.10", helo="out.northwind.test",
          mail_from="alice@northwind.test", subject="to be forgotten")
    assert len(mail_lab.smtp.evaluations) == 1
    assert "alice@northwind.test" in str(mail_lab.smtp.evaluations)
    mail_lab.reset()
    assert len(mail_lab.smtp.evaluations) == 0 and mail_lab.smtp.evaluations.last() is None
