"""ARC (RFC 8617): the lab's sealer and validator (labsupport.auth.arc_*), against each
other, against dkimpy (the test-only oracle) in both directions, on tampered and broken
chains, and in the MX role's evaluation (labsupport.auth.authres_evaluation)."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import pytest
from dkimpy_helpers import dkimpy_key, dnsfunc_for

from labsupport.auth.arc_results import ARCSealing, ARCValidation
from labsupport.auth.arc_sets import ARCError
from labsupport.auth.arc_sign import ARC_SELECTOR, arc_key, seal, seal_traced
from labsupport.auth.arc_trust import TRUSTED_FORWARDER, trusted_sealer_verdict
from labsupport.auth.arc_verify import validate_chain
from labsupport.auth.authres import METHOD_RESULTS, authenticate, parse_authres
from labsupport.auth.dkim import sign
from labsupport.auth.dkim_keys import LabKey, lab_key
from labsupport.dns.zone import ZoneSet

NOW = 1772366400  # 2026-03-01 12:00 UTC

MESSAGE = (b"From: Alice <alice@northwind.test>\r\nTo: carol@alumni.example\r\n"
           b"Subject: Course notes\r\nDate: Sun, 01 Mar 2026 12:00:00 +0000\r\n"
           b"Message-ID: <arc-notes@northwind.test>\r\n\r\nHello Carol,\r\n\r\nthe notes.\r\n")

#: What the forwarder's MX found for the message as it arrived from Northwind.
FIRST_RESULTS = ("mx.lab.test; spf=pass smtp.mailfrom=alice@northwind.test; "
                 "dkim=pass header.d=northwind.test; dmarc=pass header.from=northwind.test; "
                 "arc=none")


@functools.cache
def dkim_key(domain: str) -> LabKey:
    """The lab's DKIM key of ``domain``, read once (reading an RSA key takes a while)."""
    return lab_key(domain)


def signed(message: bytes = MESSAGE) -> bytes:
    return sign(message, domain="northwind.test", selector="lab2026-rsa",
                private_key=dkim_key("northwind.test"))


def forwarder_seal(message: bytes, results: str = FIRST_RESULTS, **options: object) -> bytes:
    key = arc_key("alumni.example")
    return seal(message, domain="alumni.example", selector=key.selector or "", private_key=key,
                authentication_results=results, timestamp=NOW, **options)  # type: ignore[arg-type]


def list_changes(message: bytes) -> bytes:
    """What a mailing list does to a post: a subject tag and a footer."""
    return message.replace(b"Subject: ", b"Subject: [course] ", 1) + b"-- \r\nthe list\r\n"


# -- sealing and validating with the lab's code ----------------------------------------------


def test_seal_then_validate_one_set(world: ZoneSet) -> None:
    done = seal_traced(signed(), domain="alumni.example", selector=ARC_SELECTOR,
                       private_key=arc_key("alumni.example"),
                       authentication_results=FIRST_RESULTS, timestamp=NOW)
    assert isinstance(done, ARCSealing) and done.verdict == "sealed", done.text()
    assert (done.instance, done.cv, done.domain) == (1, "none", "alumni.example")
    assert done.sealed_message is not None and done.arc_set is not None
    assert done.sealed_message.startswith(b"ARC-Seal: i=1; cv=none; a=rsa-sha256; "
                                          b"d=alumni.example; s=arc2026;\r\n\tt=1772366400;")
    assert b"\r\nARC-Message-Signature: i=1; a=rsa-sha256; c=relaxed/relaxed;" in done.arc_set
    assert b"\r\nARC-Authentication-Results: i=1; mx.lab.test;\r\n\tspf=pass" in done.arc_set
    assert "dkim-signature" in done.signed_headers and "arc-seal" not in done.signed_headers
    assert "this first set" in done.text() and "RFC 8617 section 5.1.1" in done.text()
    assert "ARC-Seal" in done._repr_html_()

    chain = validate_chain(done.sealed_message, world)
    assert isinstance(chain, ARCValidation)
    assert chain.verdict == "pass", chain.text()
    assert (chain.instances, chain.oldest_pass, chain.sealers) == (1, 0, ("alumni.example",))
    first = chain.set(1)
    assert (first.cv, first.seal, first.message_signature, first.sealed_at) == \
        ("none", "pass", "pass", NOW)
    earlier = chain.earliest_results
    assert earlier is not None and earlier.authserv_id == "mx.lab.test"
    assert [(r.method, r.result) for r in earlier.results] == [
        ("spf", "pass"), ("dkim", "pass"), ("dmarc", "pass"), ("arc", "none")]
    text = chain.text()
    for step in (1, 2, 3, 4, 5, 7, 8):
        assert f"RFC 8617 section 5.2 step {step}" in text
    assert "arc2026._domainkey.alumni.example" in text and "alumni.example  none" in text
    assert "ARC sets, oldest first" in chain._repr_html_()
    with pytest.raises(KeyError, match="no ARC set i=2"):
        chain.set(2)


def test_a_message_without_arc_sets_is_none(world: ZoneSet) -> None:
    chain = validate_chain(MESSAGE, world)
    assert chain.verdict == "none" and chain.instances == 0 and chain.earliest_results is None
    assert chain.authres("192.0.2.10") == "arc=none"


def test_the_lab_arc_keys_are_published(world: ZoneSet) -> None:
    forwarder = arc_key("alumni.example")
    assert (forwarder.selector, forwarder.key_type, forwarder.bits) == ("arc2026", "rsa", 2048)
    answer = world.resolve("arc2026._domainkey.alumni.example", "TXT")
    assert b"".join(answer[0].strings).decode() == forwarder.record
    assert arc_key("campus.test").selector == "lab2026-rsa"  # the list seals with its DKIM key
    with pytest.raises(ARCError, match="no key to seal for phisher.example"):
        arc_key("phisher.example")


def test_two_sets_forwarder_then_list(world: ZoneSet) -> None:
    first = forwarder_seal(signed())
    chain1 = validate_chain(first, world)
    posted = list_changes(first)
    campus = arc_key("campus.test")
    second = seal_traced(posted, domain="campus.test", selector=campus.selector or "",
                         private_key=campus, chain=chain1, timestamp=NOW + 60,
                         authentication_results="mx.lab.test; spf=fail "
                                                "smtp.mailfrom=alice@northwind.test; "
                                                "dkim=pass header.d=northwind.test; arc=pass")
    assert second.verdict == "sealed" and (second.instance, second.cv) == (2, "pass")
    assert "every ARC set, 1..2" in second.text()
    assert second.sealed_message is not None
    chain = validate_chain(second.sealed_message, world)
    assert chain.verdict == "pass", chain.text()
    assert chain.sealers == ("alumni.example", "campus.test")
    # The list changed Subject and body after the forwarder sealed: its AMS no longer
    # verifies, which is what oldest-pass says, and the chain still passes.
    assert chain.oldest_pass == 2
    assert [s.message_signature for s in chain.sets] == ["fail", "pass"]
    assert [s.seal for s in chain.sets] == ["pass", "pass"]
    assert "the message changed after that set (oldest-pass 2)" in chain.text()
    assert "header.oldest-pass=2" in chain.authres()
    # Without the list's changes every AMS still verifies: oldest-pass 0.
    unchanged = seal(first, domain="campus.test", selector=campus.selector or "",
                     private_key=campus, chain="pass", timestamp=NOW + 60,
                     authentication_results="mx.lab.test; arc=pass")
    assert validate_chain(unchanged, world).oldest_pass == 0


def test_the_sealer_can_validate_the_chain_itself(world: ZoneSet) -> None:
    first = forwarder_seal(signed())
    campus = arc_key("campus.test")
    done = seal_traced(first, domain="campus.test", selector="lab2026-rsa", private_key=campus,
                       authentication_results="mx.lab.test; arc=pass", resolver=world,
                       timestamp=NOW)
    assert done.cv == "pass" and done.chain is not None and done.chain.verdict == "pass"
    assert "validated here" in done.text()


# -- tampering ---------------------------------------------------------------------------------


def test_a_changed_body_fails_the_newest_message_signature(world: ZoneSet) -> None:
    sealed = forwarder_seal(signed())
    chain = validate_chain(sealed.replace(b"the notes.", b"the bank details."), world)
    assert chain.verdict == "fail" and chain.failed_instance == 1
    assert "the body changed after this set was added" in chain.text()
    assert "RFC 8617 section 5.2 step 4" in chain.text()
    assert chain.set(1).message_signature == "fail" and chain.set(1).seal == "not checked"
    assert chain.authres().startswith("arc=fail (The ARC chain failed: the newest")


def test_changed_recorded_results_fail_the_seal(world: ZoneSet) -> None:
    sealed = forwarder_seal(signed(), results=FIRST_RESULTS.replace("dmarc=pass", "dmarc=fail"))
    forged = sealed.replace(b"dmarc=fail", b"dmarc=pass")
    chain = validate_chain(forged, world)
    assert chain.verdict == "fail" and chain.set(1).seal == "fail"
    assert "the seal does not match" in chain.text()


def test_sealing_a_broken_chain_says_cv_fail_and_then_stops(world: ZoneSet) -> None:
    tampered = forwarder_seal(signed()).replace(b"the notes.", b"other notes.")
    campus = arc_key("campus.test")
    done = seal_traced(tampered, domain="campus.test", selector="lab2026-rsa",
                       private_key=campus, resolver=world, timestamp=NOW,
                       authentication_results="mx.lab.test; arc=fail")
    assert done.verdict == "sealed" and done.cv == "fail", done.text()
    assert "only this set (i=2)" in done.text() and "RFC 8617 section 5.1.2" in done.text()
    assert done.sealed_message is not None
    chain = validate_chain(done.sealed_message, world)
    assert chain.verdict == "fail" and "says cv=fail" in chain.summary
    assert "RFC 8617 section 5.2 step 2" in chain.text()
    again = seal_traced(done.sealed_message, domain="campus.test", selector="lab2026-rsa",
                        private_key=campus, resolver=world,
                        authentication_results="mx.lab.test; arc=fail")
    assert again.verdict == "not sealed" and again.sealed_message is None
    assert "the chain is broken already" in again.summary


@pytest.mark.parametrize(("change", "problem"), [
    (lambda m: m.replace(b"ARC-Message-Signature: i=1;", b"X-Gone: i=1;"),
     "instance i=1 has 0 ARC-Message-Signature fields"),
    (lambda m: m.replace(b"cv=none", b"cv=pass"), "i=1 must say cv=none"),
    (lambda m: m.replace(b"ARC-Seal: i=1;", b"ARC-Seal: i=2;"),
     "instance i=2 has 0 ARC-Authentication-Results fields"),
    (lambda m: m.replace(b"ARC-Seal: i=1;", b"ARC-Seal: i=one;"),
     "has no valid instance tag"),
])
def test_a_broken_structure_fails(world: ZoneSet, change: Callable[[bytes], bytes],
                                  problem: str) -> None:
    chain = validate_chain(change(forwarder_seal(signed())), world)
    assert chain.verdict == "fail"
    assert problem in chain.text() and "RFC 8617 section 5.2 step 3" in chain.text()


def test_a_missing_key_fails_the_chain(world: ZoneSet) -> None:
    key = arc_key("alumni.example")
    sealed = seal(signed(), domain="alumni.example", selector="nokey", private_key=key,
                  authentication_results=FIRST_RESULTS, timestamp=NOW)
    chain = validate_chain(sealed, world)
    assert chain.verdict == "fail" and "nokey._domainkey.alumni.example has no TXT" in chain.text()


# -- requests the sealer refuses -------------------------------------------------------------


@pytest.mark.parametrize(("options", "reason"), [
    ({"chain": "maybe"}, "not a chain validation status"),
    ({"chain": "pass"}, "the first set says cv=none"),
    ({"authentication_results": "spf=pass"}, "cannot be read"),
    ({"headers": ["to", "subject"], "oversign": ()}, "the From field must be signed"),
    ({"headers": ["from", "arc-seal"]}, "signs no ARC field"),
    ({"domain": "not a domain"}, "not a domain and a selector"),
    ({"private_key": "not a key"}, "key"),
])
def test_refused_requests_say_why(options: dict[str, object], reason: str) -> None:
    arguments: dict[str, object] = {
        "domain": "alumni.example", "selector": "arc2026",
        "private_key": arc_key("alumni.example"), "authentication_results": FIRST_RESULTS}
    arguments.update(options)
    done = seal_traced(signed(), **arguments)  # type: ignore[arg-type]
    assert done.verdict == "refused" and done.sealed_message is None
    assert reason in done.summary
    with pytest.raises(ARCError, match="Not sealed"):
        seal(signed(), **arguments)  # type: ignore[arg-type]


def test_a_chain_needs_a_validation_before_sealing_again() -> None:
    first = forwarder_seal(signed())
    with pytest.raises(ARCError, match="give the chain validation"):
        forwarder_seal(first)
    with pytest.raises(ARCError, match="cv=none is only for the first set"):
        forwarder_seal(first, chain="none")


# -- dkimpy, the oracle, both ways -------------------------------------------------------------

@pytest.fixture(scope="module")
def dkimpy() -> Any:
    """dkimpy, a test-only dependency (with authres, which its ARC code needs)."""
    pytest.importorskip("authres", reason="authres is not installed (dkimpy needs it for ARC)")
    return pytest.importorskip("dkim", reason="dkimpy is not installed (pip install dkimpy)")


def test_dkimpy_validates_what_the_lab_seals(world: ZoneSet, dkimpy: Any) -> None:
    first = forwarder_seal(signed())
    cv, results, reason = dkimpy.arc_verify(first, dnsfunc=dnsfunc_for(world))
    assert (cv, reason) == (b"pass", "success")
    assert results[0]["as-domain"] == b"alumni.example"
    campus = arc_key("campus.test")
    second = seal(list_changes(first), domain="campus.test", selector="lab2026-rsa",
                  private_key=campus, chain=validate_chain(first, world), timestamp=NOW,
                  authentication_results="mx.lab.test; arc=pass")
    cv, results, reason = dkimpy.arc_verify(second, dnsfunc=dnsfunc_for(world))
    assert (cv, reason) == (b"pass", "success")
    assert [r["ams-valid"] for r in results] == [True, False]  # newest first: oldest-pass 2
    tampered = second.replace(b"the notes.", b"new notes.")
    assert dkimpy.arc_verify(tampered, dnsfunc=dnsfunc_for(world))[0] == b"fail"
    assert validate_chain(tampered, world).verdict == "fail"


def test_the_lab_validates_what_dkimpy_seals(world: ZoneSet, dkimpy: Any) -> None:
    received = b"Authentication-Results: " + FIRST_RESULTS.encode() + b"\r\n" + signed()
    key = arc_key("alumni.example")
    fields = dkimpy.arc_sign(received, ARC_SELECTOR.encode(), b"alumni.example", dkimpy_key(key),
                             b"mx.lab.test", timestamp=NOW)
    first = b"".join(fields) + signed()  # the receiver's own A-R is not passed on
    chain = validate_chain(first, world)
    assert chain.verdict == "pass", chain.text()
    assert chain.set(1).sealer == "alumni.example" and chain.oldest_pass == 0
    spf = chain.earliest_results.find("spf") if chain.earliest_results else None
    assert spf is not None and spf.result == "pass"
    # dkimpy seals a second set on top of the lab's first, after the list's changes
    posted = b"Authentication-Results: mx.lab.test; arc=pass\r\n" + list_changes(first)
    fields = dkimpy.arc_sign(posted, b"lab2026-rsa", b"campus.test",
                             dkimpy_key(dkim_key("campus.test")), b"mx.lab.test", timestamp=NOW)
    second = validate_chain(b"".join(fields) + list_changes(first), world)
    assert second.verdict == "pass" and second.sealers == ("alumni.example", "campus.test")
    assert second.oldest_pass == 2 and second.set(2).cv == "pass"
    # and a lab seal on a dkimpy chain, checked by dkimpy again
    third = seal(b"".join(fields) + list_changes(first), domain="northwind.test",
                 selector="lab2026-rsa", private_key=dkim_key("northwind.test"),
                 chain=second, authentication_results="mx.lab.test; arc=pass", timestamp=NOW)
    assert dkimpy.arc_verify(third, dnsfunc=dnsfunc_for(world))[0] == b"pass"
    assert validate_chain(third, world).instances == 3


# -- the MX role's evaluation ------------------------------------------------------------------


def test_authres_knows_the_arc_method() -> None:
    assert METHOD_RESULTS["arc"] == ("none", "pass", "fail")


def test_the_evaluation_reports_arc_and_keeps_the_earlier_results(world: ZoneSet) -> None:
    # Alice's mail reaches the forwarder unsigned: only SPF makes DMARC pass there.
    at_forwarder = authenticate(MESSAGE, client_ip="192.0.2.10", mail_from="alice@northwind.test",
                                helo="out.northwind.test", resolver=world, now=NOW)
    assert (at_forwarder.spf_result, at_forwarder.dmarc_result, at_forwarder.arc_result) == \
        ("pass", "pass", "none")
    assert at_forwarder.results.find("arc") is None  # no ARC sets: no arc= written
    assert at_forwarder.arc is not None and at_forwarder.arc.verdict == "none"
    key = arc_key("alumni.example")
    forwarded = seal(MESSAGE, domain="alumni.example", selector=ARC_SELECTOR, private_key=key,
                     authentication_results=at_forwarder.header, chain=at_forwarder.arc,
                     timestamp=NOW)
    # Re-sent from alumni.example's host: SPF fails, no DKIM, so DMARC fails (p=reject).
    at_campus = authenticate(forwarded, client_ip="198.51.100.61",
                             mail_from="alice@northwind.test", helo="out.alumni.example",
                             resolver=world, now=NOW)
    assert (at_campus.spf_result, at_campus.dmarc_result) == ("fail", "fail")
    assert at_campus.requested_disposition == "reject"  # ARC changes no DMARC verdict
    arc = at_campus.results.find("arc")
    assert arc is not None and arc.result == "pass"
    assert arc.props == {"header.oldest-pass": "0", "smtp.remote-ip": "198.51.100.61"}
    assert at_campus.arc_result == "pass"
    earlier = at_campus.arc_earlier_results
    assert earlier is not None and earlier.find("spf") is not None
    assert earlier.find("spf").result == "pass"  # type: ignore[union-attr]
    assert "ARC: The ARC chain of 1 set verified" in at_campus.text()
    assert "ARC: pass" in at_campus._repr_html_()

    trusting = at_campus.trusting_sealers("alumni.example")
    assert trusting.verdict == "pass" and trusting.changed
    assert (trusting.relied_on, trusting.sealer, trusting.override) == \
        (1, "alumni.example", TRUSTED_FORWARDER)
    assert trusting.dmarc == "fail" and "the verdict here is unchanged" in trusting.summary
    assert "recorded: spf=pass dkim=none dmarc=pass" in trusting.text()
    stranger = at_campus.trusting_sealers("lists.example")
    assert stranger.verdict == "fail" and not stranger.changed
    assert "no trusted sealer recorded dmarc=pass" in stranger.text()
    assert at_campus.dmarc_result == "fail"  # still, after asking


def test_trust_needs_a_passing_chain(world: ZoneSet) -> None:
    broken = validate_chain(forwarder_seal(signed()).replace(b"the notes", b"x"), world)
    verdict = trusted_sealer_verdict(broken, "fail", ["alumni.example"])
    assert verdict.verdict == "fail" and "cannot be believed" in verdict.summary
    assert trusted_sealer_verdict(None, "fail", ["alumni.example"]).verdict == "fail"
    assert trusted_sealer_verdict(None, "pass", []).summary == "DMARC passed here; ARC is not " \
                                                               "needed."
    refused = validate_chain(forwarder_seal(signed(), results=FIRST_RESULTS.replace(
        "dmarc=pass", "dmarc=fail")), world)
    cautious = trusted_sealer_verdict(refused, "fail", ["ALUMNI.example."])
    assert cautious.verdict == "fail" and "it recorded dmarc=fail" in cautious.text()


def test_arc_can_be_left_out_of_the_evaluation(world: ZoneSet) -> None:
    evaluation = authenticate(MESSAGE, client_ip="192.0.2.10", mail_from="alice@northwind.test",
                              helo="out.northwind.test", resolver=world, now=NOW, arc=False)
    assert evaluation.arc is None and evaluation.arc_result == "none"
    assert evaluation.results.find("arc") is None
    assert parse_authres(evaluation.header).find("dmarc") is not None
