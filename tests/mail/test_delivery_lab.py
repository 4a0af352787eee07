"""The delivering MTA inside a running lab: submission -> queue -> MX lookup -> MX role."""

from __future__ import annotations

import labsupport
from labsupport import send_mail


def _submit(lab: labsupport.Lab, sender: str, to: str, subject: str) -> None:
    account = lab.accounts.get(sender)
    assert account is not None
    sent = send_mail("127.0.0.1", lab.smtp.port("submission"), mail_from=sender, rcpt_to=[to],
                     message=f"From: {sender}\r\nSubject: {subject}\r\n\r\nHello.\r\n",
                     tls="starttls", auth=(sender, account.password), ca_file=lab.ca.ca_file)
    assert sent.verdict == "accepted", sent.text()
    assert lab.queue.wait_idle(15)


def test_falls_back_to_the_second_mx_when_the_first_is_down(clean_lab: labsupport.Lab) -> None:
    clean_lab.faults.host_down("mx1.northwind.test")
    _submit(clean_lab, "carol@campus.test", "alice@northwind.test", "fallback")
    attempt = clean_lab.queue.history(1)[-1]
    assert [t.host for t in attempt.tried] == ["mx1.northwind.test", "mx2.northwind.test"]
    assert attempt.verdict == "delivered" and attempt.host == "mx2.northwind.test"
    stored = [m for m in clean_lab.mail.messages("alice@northwind.test")
              if m.message["Subject"] == "fallback"]
    assert len(stored) == 1
    assert "from out.campus.test" in stored[0].message.get_all("Received")[0]


def test_retries_after_4xx_when_the_lab_clock_moves(clean_lab: labsupport.Lab) -> None:
    clean_lab.faults.add("rcpt", "451 4.7.1 Greylisted", match="bob@", times=2)
    _submit(clean_lab, "carol@campus.test", "bob@northwind.test", "greylisted")
    first = clean_lab.queue.history(1)[-1]
    assert first.verdict == "deferred" and len(clean_lab.queue.items()) == 1
    assert not clean_lab.mail.messages("bob@northwind.test")
    clean_lab.clock.advance(5 * 60)
    assert clean_lab.queue.wait_idle(15)
    second = clean_lab.queue.history(1)[-1]
    assert second.verdict == "delivered" and clean_lab.queue.items() == []
    assert len(clean_lab.mail.messages("bob@northwind.test")) == 1


def test_bounces_to_the_sender_on_5xx(clean_lab: labsupport.Lab) -> None:
    _submit(clean_lab, "alice@northwind.test", "nobody@campus.test", "lost")
    attempt = clean_lab.queue.history(1)[-1]
    assert attempt.verdict == "bounced"
    bounces = [m.message for m in clean_lab.mail.messages("alice@northwind.test")
               if m.message.get_content_type() == "multipart/report"]
    assert len(bounces) == 1
    report = bounces[0]
    assert report.get_param("report-type") == "delivery-status"
    status = [p for p in report.walk() if p.get_content_type() == "message/delivery-status"]
    assert status and "5.1.1" in status[0].as_string()
