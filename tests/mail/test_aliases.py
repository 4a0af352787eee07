"""The lab's re-sending addresses (labsupport.mail.aliases): the list's own decisions, and
the ARC sets the forwarder and the list add as they re-send (RFC 8617)."""

from __future__ import annotations

import email
import email.policy
from email.message import Message
from typing import Any

import pytest

from labsupport import aliases, server
from labsupport.dns.zone import ZoneSet

LIST = next(a for a in aliases.LAB_ALIASES if isinstance(a, aliases.MailingList))


def _post(author: str) -> bytes:
    return (f"From: Someone <{author}>\r\nTo: {LIST.address}\r\nSubject: hi\r\n\r\n"
            "Hello list.\r\n").encode()


def test_server_re_exports_the_same_objects() -> None:
    assert server.MailingList is aliases.MailingList
    assert server.LAB_ALIASES is aliases.LAB_ALIASES


def test_the_list_signs_as_its_organisation() -> None:
    assert LIST.sender_domain == "lists.campus.test"
    assert LIST.signing_domain == "campus.test"


@pytest.mark.parametrize(("author", "rewrites"), [
    ("bob@northwind.test", True),        # p=reject
    ("frank@mailcloud.example", True),   # p=quarantine
    ("carol@campus.test", False),        # p=none
    ("mallory@phisher.example", False),  # no DMARC record
])
def test_the_list_rewrites_from_only_for_strict_policies(world: ZoneSet, author: str,
                                                         rewrites: bool) -> None:
    assert LIST.rewrites_from(_post(author), world) is rewrites


def test_no_resolver_or_no_from_means_no_rewrite(world: ZoneSet) -> None:
    assert LIST.rewrites_from(_post("bob@northwind.test"), None) is False
    assert LIST.rewrites_from(b"Subject: no author\r\n\r\nbody\r\n", world) is False


def test_a_post_that_went_through_the_list_is_recognised() -> None:
    posted = LIST.post(_post("carol@campus.test"))
    assert LIST.carries_own_id(posted)
    assert not LIST.carries_own_id(_post("carol@campus.test"))


# -- ARC: the forwarder and the list seal what they re-send (RFC 8617) --------------------

FORWARDER = next(a for a in aliases.LAB_ALIASES if isinstance(a, aliases.Forwarder))
NOW = 1772366400


def _signed_post() -> bytes:
    from labsupport.auth.dkim import sign
    from labsupport.auth.dkim_keys import lab_key

    message = (b"From: Alice <alice@northwind.test>\r\nTo: carol@alumni.example\r\n"
               b"Subject: exam dates\r\nMessage-ID: <arc-exam@northwind.test>\r\n\r\n"
               b"The exam is on Monday.\r\n")
    return sign(message, domain="northwind.test", selector="lab2026-rsa",
                private_key=lab_key("northwind.test"))


def test_each_alias_seals_as_its_own_domain() -> None:
    assert FORWARDER.arc_domain == "alumni.example"
    assert FORWARDER.arc_key().selector == "arc2026"
    assert LIST.arc_domain == "campus.test" and LIST.arc_key().selector == "lab2026-rsa"
    assert "ARC-sealed as alumni.example" in FORWARDER.describe()
    assert "ARC-sealed as campus.test" in LIST.describe()
    stranger = aliases.Forwarder("x@phisher.example", "carol@campus.test", "phisher.example")
    refused = stranger.seal(_post("bob@northwind.test"), "mx.lab.test; none")
    assert refused.verdict == "refused" and "no key to seal for phisher.example" in refused.summary


def test_forwarder_then_list_make_a_chain_of_two(world: ZoneSet) -> None:
    from labsupport.auth.arc_verify import validate_chain
    from labsupport.auth.authres import authenticate
    from labsupport.auth.dkim import sign

    original = _signed_post()
    # 1. the forwarder's MX: Northwind's own host, SPF, DKIM and DMARC pass
    at_forwarder = authenticate(original, client_ip="192.0.2.10",
                                mail_from="alice@northwind.test", helo="out.northwind.test",
                                resolver=world, now=NOW)
    assert (at_forwarder.spf_result, at_forwarder.dmarc_result) == ("pass", "pass")
    first = FORWARDER.seal(original, at_forwarder.header, chain=at_forwarder.arc, timestamp=NOW)
    assert (first.verdict, first.instance, first.cv) == ("sealed", 1, "none"), first.text()
    assert first.sealed_message is not None
    # 2. the list's MX: sent from alumni.example's host, SPF fails, DKIM still passes
    at_list = authenticate(first.sealed_message, client_ip="198.51.100.61",
                           mail_from="alice@northwind.test", helo="out.alumni.example",
                           resolver=world, now=NOW)
    assert (at_list.spf_result, at_list.dmarc_result, at_list.arc_result) == \
        ("fail", "pass", "pass")
    posted = LIST.post(first.sealed_message)  # the author's From kept (no rewriting here)
    posted = sign(posted, domain="campus.test", selector="lab2026-rsa",
                  private_key=LIST.arc_key())
    second = LIST.seal(posted, at_list.header, chain=at_list.arc, timestamp=NOW + 60)
    assert (second.verdict, second.instance, second.cv) == ("sealed", 2, "pass"), second.text()
    assert second.sealed_message is not None
    # 3. the members' MX: the list's host passes SPF for lists.campus.test, but neither
    # that nor the list's DKIM signature aligns with northwind.test, and the list's
    # changes broke the author's signature: DMARC fails, p=reject.
    final = authenticate(second.sealed_message, client_ip="198.51.100.40",
                         mail_from=LIST.bounce_address, helo="out.lists.campus.test",
                         resolver=world, now=NOW)
    assert final.dmarc_result == "fail" and final.requested_disposition == "reject"
    assert final.arc is not None and final.arc_result == "pass"
    assert final.arc.sealers == ("alumni.example", "campus.test")
    assert final.arc.oldest_pass == 2  # the list changed what the forwarder signed
    arc = final.results.find("arc")
    assert arc is not None and arc.get("header.oldest-pass") == "2"
    earlier = final.arc_earlier_results
    assert earlier is not None
    assert {r.method: r.result for r in earlier.results} == {
        "spf": "pass", "dkim": "pass", "dmarc": "pass"}
    by_forwarder = final.trusting_sealers("alumni.example")
    assert (by_forwarder.verdict, by_forwarder.relied_on) == ("pass", 1)
    by_list = final.trusting_sealers("campus.test")
    assert (by_list.verdict, by_list.relied_on) == ("pass", 2)  # the list saw dmarc=pass too
    assert final.trusting_sealers("phisher.example").verdict == "fail"
    assert final.dmarc_result == "fail"  # nothing changed
    assert validate_chain(second.sealed_message.replace(b"Monday", b"Friday"),
                          world).verdict == "fail"


def _submit(lab: Any, sender: str, rcpt: str, subject: str) -> None:
    from labsupport import send_mail

    account = lab.accounts.get(sender)
    assert account is not None
    message = (f"From: {sender}\r\nTo: {rcpt}\r\nSubject: {subject}\r\n"
               f"Message-ID: <{subject.replace(' ', '-')}@test>\r\n\r\nHello.\r\n")
    sent = send_mail("127.0.0.1", lab.smtp.port("submission"), mail_from=sender,
                     rcpt_to=[rcpt], message=message, tls="starttls",
                     auth=(sender, account.password), ca_file=lab.ca.ca_file)
    assert sent.verdict == "accepted", sent.text()
    assert lab.queue.wait_idle(15)


def _stored(lab: Any, address: str, subject: str) -> Message:
    found = [m for m in lab.mail.messages(address) if subject in (m.subject or "")]
    assert len(found) == 1, [m.subject for m in lab.mail.messages(address)]
    return email.message_from_bytes(found[0].raw, policy=email.policy.compat32)


def test_the_lab_forwarder_seals_and_campus_sees_arc_pass(mail_lab: Any) -> None:
    _submit(mail_lab, "alice@northwind.test", "carol@alumni.example", "arc forward")
    stored = _stored(mail_lab, "carol@campus.test", "arc forward")
    seal = " ".join(str(stored["ARC-Seal"]).split())
    assert seal.startswith("i=1; cv=none; a=rsa-sha256; d=alumni.example; s=arc2026;")
    aar = " ".join(str(stored["ARC-Authentication-Results"]).split())
    assert aar.startswith("i=1; mx.lab.test; spf=pass")
    field = stored.get_all("Authentication-Results") or []
    assert len(field) == 1 and "arc=pass" in " ".join(field[0].split())
    last = mail_lab.smtp.evaluations.last()
    assert last is not None and last.arc_result == "pass" and last.spf_result == "fail"
    assert last.arc_earlier_results is not None
    assert last.arc_earlier_results.find("spf").result == "pass"
    assert any(e.event == "arc sealed" and "d=alumni.example" in e.detail
               for e in mail_lab.smtp.log.entries())


def test_the_lab_list_seals_every_copy(mail_lab: Any) -> None:
    _submit(mail_lab, "carol@campus.test", "course@lists.campus.test", "arc list")
    for member in ("dave@campus.test", "bob@northwind.test"):
        copy = _stored(mail_lab, member, "arc list")
        assert " ".join(str(copy["ARC-Seal"]).split()).startswith(
            "i=1; cv=none; a=rsa-sha256; d=campus.test; s=lab2026-rsa;")
    results = [e for e in mail_lab.smtp.evaluations if "dave@campus.test" in e.recipients]
    assert results and results[-1].arc_result == "pass"
