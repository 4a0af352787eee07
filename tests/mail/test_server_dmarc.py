"""DMARC on the MX role (labsupport.mail.server with labsupport.auth.dmarc): the one
Authentication-Results field carries dmarc=, and the policy is applied end to end: reject
(550 5.7.1, nothing stored), quarantine (Junk), none (INBOX); the forwarder keeps DKIM,
the mailing list rewrites From for strict domains and signs as campus.test; aggregate
reports built from the recorded traffic parse back to the same counts."""

from __future__ import annotations

import email
import email.policy
from email.message import Message

import labsupport
from labsupport import send_mail
from labsupport.auth.authres import AuthResults, parse_authres
from labsupport.auth.dmarc_reports import parse_report, validate_report
from labsupport.mail.mailstore import JUNK
from labsupport.mail.server import LAB_ALIASES, LOOPBACK_OVERRIDE, MailingList
from labsupport.mail.smtp import Transcript

ATTACKER = {"ADDR": "203.0.113.66", "HELO": "out.phisher.example"}


def text(subject: str, sender: str, rcpt: str = "carol@campus.test", extra: str = "") -> str:
    return (f"From: {sender}\r\nTo: {rcpt}\r\nSubject: {subject}\r\n{extra}"
            f"Message-ID: <{subject.replace(' ', '-')}@test>\r\n\r\nHello.\r\n")


def to_mx(lab: labsupport.Lab, subject: str, header_from: str, *,
          mail_from: str = "mallory@phisher.example", rcpt: str = "carol@campus.test",
          xclient: dict[str, str] | None = ATTACKER) -> Transcript:
    return send_mail("127.0.0.1", lab.smtp.port("mx"), mail_from=mail_from, rcpt_to=[rcpt],
                     message=text(subject, header_from, rcpt), xclient=xclient)


def submit(lab: labsupport.Lab, sender: str, rcpt: str, subject: str) -> None:
    account = lab.accounts.get(sender)
    assert account is not None
    sent = send_mail("127.0.0.1", lab.smtp.port("submission"), mail_from=sender,
                     rcpt_to=[rcpt], message=text(subject, sender, rcpt), tls="starttls",
                     auth=(sender, account.password), ca_file=lab.ca.ca_file)
    assert sent.verdict == "accepted", sent.text()
    assert lab.queue.wait_idle(15)


def stored(lab: labsupport.Lab, address: str, subject: str,
           folder: str = "INBOX") -> Message:
    found = [m for m in lab.mail.messages(address, folder) if subject in (m.subject or "")]
    assert len(found) == 1, [m.subject for m in lab.mail.messages(address, folder)]
    return email.message_from_bytes(found[0].raw, policy=email.policy.compat32)


def authres(parsed: Message) -> AuthResults:
    fields = parsed.get_all("Authentication-Results") or []
    assert len(fields) == 1, fields  # the one field, with spf, dkim and dmarc
    return parse_authres(fields[0])


def dmarc_of(parsed: Message) -> tuple[str, str | None]:
    found = authres(parsed).find("dmarc")
    assert found is not None
    return found.result, found.get("header.from")


# -- the three dispositions ----------------------------------------------------------------


def test_reject_the_spoofed_ceo_with_550_and_store_nothing(mail_lab: labsupport.Lab) -> None:
    sent = to_mx(mail_lab, "urgent transfer", "CEO <ceo@northwind.test>")
    assert sent.verdict != "accepted"
    assert "550 5.7.1 Message rejected: DMARC policy of northwind.test (p=reject)" \
        in sent.text()
    assert not mail_lab.mail.messages("carol@campus.test")
    evaluation = mail_lab.smtp.evaluations.last()
    assert evaluation is not None
    assert (evaluation.dmarc_result, evaluation.disposition) == ("fail", "reject")
    assert evaluation.action == "rejected (550 5.7.1)"
    assert evaluation.results.find("dmarc") is not None  # the header it would have had
    rejected = [e for e in mail_lab.smtp.log.entries() if e.event == "rejected"]
    assert len(rejected) == 1 and "203.0.113.66" in rejected[0].client


def test_reject_applies_to_every_recipient_and_to_the_list(mail_lab: labsupport.Lab) -> None:
    sent = to_mx(mail_lab, "to the list", "ceo@northwind.test",
                 rcpt="course@lists.campus.test")
    assert "550 5.7.1" in sent.text()
    assert mail_lab.queue.wait_idle(15)
    assert not any(e.event == "re-sent" for e in mail_lab.smtp.log.entries())


def test_quarantine_goes_to_junk(mail_lab: labsupport.Lab) -> None:
    sent = to_mx(mail_lab, "cheap offer", "news@mailcloud.example")
    assert sent.verdict == "accepted", sent.text()
    assert "DMARC quarantine" in sent.text()
    assert not mail_lab.mail.messages("carol@campus.test")  # not in INBOX
    junk = stored(mail_lab, "carol@campus.test", "cheap offer", JUNK)
    assert dmarc_of(junk) == ("fail", "mailcloud.example")
    assert mail_lab.smtp.evaluations[-1].action == "Junk"


def test_none_delivers_a_failing_message_to_inbox(mail_lab: labsupport.Lab) -> None:
    # campus.test is at the start of its rollout: p=none, monitor only
    sent = to_mx(mail_lab, "from the dean", "dean@campus.test")
    assert sent.verdict == "accepted", sent.text()
    parsed = stored(mail_lab, "carol@campus.test", "from the dean")
    assert dmarc_of(parsed) == ("fail", "campus.test")
    assert mail_lab.smtp.evaluations[-1].disposition == "none"


def test_no_record_is_dmarc_none(mail_lab: labsupport.Lab) -> None:
    to_mx(mail_lab, "from mallory", "mallory@phisher.example")
    parsed = stored(mail_lab, "carol@campus.test", "from mallory")
    results = authres(parsed)
    assert [r.method for r in results.results] == ["spf", "dkim", "dmarc"]
    assert dmarc_of(parsed) == ("none", "phisher.example")


def test_signed_mail_passes_dmarc(mail_lab: labsupport.Lab) -> None:
    submit(mail_lab, "alice@northwind.test", "carol@campus.test", "signed notes")
    parsed = stored(mail_lab, "carol@campus.test", "signed notes")
    assert dmarc_of(parsed) == ("pass", "northwind.test")
    evaluation = mail_lab.smtp.evaluations[-1]
    assert evaluation.dmarc.spf_aligned and evaluation.dmarc.dkim_aligned


def test_the_loopback_client_is_trusted_but_still_evaluated(mail_lab: labsupport.Lab) -> None:
    sent = to_mx(mail_lab, "from the terminal", "ceo@northwind.test",
                 mail_from="ceo@northwind.test", xclient=None)
    assert sent.verdict == "accepted", sent.text()
    parsed = stored(mail_lab, "carol@campus.test", "from the terminal")
    assert dmarc_of(parsed) == ("fail", "northwind.test")
    evaluation = mail_lab.smtp.evaluations[-1]
    assert evaluation.requested_disposition == "reject"
    assert evaluation.disposition == "none" and evaluation.policy_override == LOOPBACK_OVERRIDE
    assert evaluation.dmarc_reasons == (("local_policy", LOOPBACK_OVERRIDE),)
    assert any(e.event == "policy not applied" for e in mail_lab.smtp.log.entries())


def test_forged_dmarc_results_are_replaced(mail_lab: labsupport.Lab) -> None:
    forged = "Authentication-Results: mx.lab.test; dmarc=pass header.from=campus.test\r\n"
    send_mail("127.0.0.1", mail_lab.smtp.port("mx"), mail_from="mallory@phisher.example",
              rcpt_to=["carol@campus.test"],
              message=text("forged dmarc", "dean@campus.test", extra=forged), xclient=ATTACKER)
    parsed = stored(mail_lab, "carol@campus.test", "forged dmarc")
    assert dmarc_of(parsed) == ("fail", "campus.test")


# -- forwarding and the mailing list (RFC 7960) ----------------------------------------------


def test_forwarded_mail_passes_dmarc_through_dkim(mail_lab: labsupport.Lab) -> None:
    submit(mail_lab, "alice@northwind.test", "carol@alumni.example", "forward me")
    parsed = stored(mail_lab, "carol@campus.test", "forward me")
    results = authres(parsed)
    assert results.find("spf").result == "fail"  # type: ignore[union-attr]
    assert results.find("dkim").result == "pass"  # type: ignore[union-attr]
    assert dmarc_of(parsed) == ("pass", "northwind.test")
    final = mail_lab.smtp.evaluations[-1].dmarc
    assert final.dkim_aligned and not final.spf_aligned


def test_the_list_rewrites_from_for_a_reject_domain_and_passes(
        mail_lab: labsupport.Lab) -> None:
    submit(mail_lab, "alice@northwind.test", "course@lists.campus.test", "exam dates")
    for member in ("carol@campus.test", "dave@campus.test", "bob@northwind.test"):
        parsed = stored(mail_lab, member, "exam dates")
        assert parsed["From"] == "alice via course <course@lists.campus.test>"
        assert parsed["Reply-To"] == "alice@northwind.test"
        results = authres(parsed)
        signatures = {r.get("header.d"): r.result for r in results.all("dkim")}
        # the author's signature still fails (the footer); the list's own passes
        assert signatures == {"northwind.test": "fail", "campus.test": "pass"}
        assert results.find("spf").result == "pass"  # type: ignore[union-attr]
        assert dmarc_of(parsed) == ("pass", "lists.campus.test")
    assert any(e.event == "from rewritten" for e in mail_lab.smtp.log.entries())


def test_the_list_keeps_from_for_a_p_none_domain(mail_lab: labsupport.Lab) -> None:
    submit(mail_lab, "dave@campus.test", "course@lists.campus.test", "office hours")
    parsed = stored(mail_lab, "carol@campus.test", "office hours")
    assert parsed["From"] == "dave@campus.test" and parsed["Reply-To"] is None
    assert dmarc_of(parsed) == ("pass", "campus.test")  # the list's d=campus.test aligns


def test_from_rewriting_keeps_the_authors_name_and_reply_to() -> None:
    course = next(a for a in LAB_ALIASES if isinstance(a, MailingList))
    assert course.from_rewritten('"Alice Adams" <alice@northwind.test>') == (
        "Alice Adams via course <course@lists.campus.test>",
        "Alice Adams <alice@northwind.test>")
    post = course.post(b"From: Alice\r\n <alice@northwind.test>\r\nReply-To: alice@home.example"
                       b"\r\nSubject: hi\r\n\r\nbody\r\n", rewrite_from=True)
    head = post.split(b"\r\n\r\n")[0]
    assert b"From: Alice via course <course@lists.campus.test>" in head
    assert b"Reply-To: alice@home.example" in head and head.count(b"Reply-To") == 1
    assert b"<alice@northwind.test>" not in head
    untouched = course.post(b"From: a@b.example\r\nSubject: x\r\n\r\nbody\r\n")
    assert untouched.startswith(b"From: a@b.example\r\n")


# -- aggregate reports from recorded traffic -----------------------------------------------------


def test_reports_from_recorded_traffic_count_what_happened(mail_lab: labsupport.Lab) -> None:
    begin = mail_lab.clock.time()
    submit(mail_lab, "alice@northwind.test", "carol@campus.test", "legit one")
    submit(mail_lab, "alice@northwind.test", "carol@campus.test", "legit two")
    to_mx(mail_lab, "spoof one", "ceo@northwind.test")
    to_mx(mail_lab, "spoof two", "ceo@northwind.test")
    to_mx(mail_lab, "junk", "news@mailcloud.example")
    to_mx(mail_lab, "monitored", "dean@campus.test")
    to_mx(mail_lab, "no policy", "mallory@phisher.example")
    reports = mail_lab.dmarc_reports(begin, mail_lab.clock.time() + 1)
    assert sorted(reports) == ["campus.test", "mailcloud.example", "northwind.test"]
    for xml in reports.values():
        assert validate_report(xml) == []
    northwind = parse_report(reports["northwind.test"])
    assert northwind.total == 4 and northwind.count(dmarc="pass") == 2
    assert northwind.count(disposition="reject") == 2
    assert northwind.by("source_ip") == {"192.0.2.10": 2, "203.0.113.66": 2}
    assert northwind.policy.p == "reject" and northwind.policy.discovery_method == "treewalk"
    assert parse_report(reports["mailcloud.example"]).count(disposition="quarantine") == 1
    campus = parse_report(reports["campus.test"])
    assert campus.total == 1 and campus.records[0].disposition == "none"
    # the same counts as the evaluations themselves
    evaluations = [e for e in mail_lab.smtp.evaluations
                   if e.dmarc is not None and e.dmarc.record_domain == "northwind.test"]
    assert len(evaluations) == northwind.total


def test_report_shows_the_local_policy_override(mail_lab: labsupport.Lab) -> None:
    begin = mail_lab.clock.time()
    to_mx(mail_lab, "from the terminal", "ceo@northwind.test",
          mail_from="ceo@northwind.test", xclient=None)
    report = parse_report(mail_lab.dmarc_reports(begin)["northwind.test"])
    (record,) = report.records
    assert record.disposition == "none" and record.dmarc == "fail"
    assert record.reasons[0][0] == "local_policy"


def test_charts_draw_the_mx_roles_evaluations(mail_lab: labsupport.Lab) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from labsupport.teach.plots import dmarc_by_alignment, dmarc_by_source, dmarc_over_time

    submit(mail_lab, "alice@northwind.test", "carol@campus.test", "charted")
    to_mx(mail_lab, "charted spoof", "ceo@northwind.test")
    evaluations = mail_lab.smtp.evaluations.all()
    for draw in (dmarc_over_time, dmarc_by_source, dmarc_by_alignment):
        fig = draw(evaluations)
        assert fig.axes[0].patches  # some bars
        plt.close(fig)
    fig = dmarc_by_source(evaluations)
    labels = {t.get_text() for t in fig.axes[0].get_yticklabels()}
    assert {"192.0.2.10", "203.0.113.66"} <= labels
    plt.close(fig)
