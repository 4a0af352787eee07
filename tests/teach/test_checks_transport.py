"""Lesson 09's teaching code (labsupport.teach.checks_transport): the chain of trust checked
by hand, deliveries against each defence through the downgrade relay, and the exercise
judges, right, wrong (with their hints) and unanswered."""

from __future__ import annotations

import hashlib
import re
import ssl
from collections.abc import Iterator
from pathlib import Path

import pytest
from lab_helpers import ROOT

import labsupport
from labsupport import checks
from labsupport.core.errors import CheckFailed, LabError
from labsupport.dns.dnssec_validate import validate
from labsupport.dns.nameserver import DNSServer
from labsupport.dns.zone import ZoneSet
from labsupport.mail.dane import lab_tlsa
from labsupport.mail.delivery_items import DeliveryAttempt
from labsupport.mail.mtasts_policy import MTASTSError
from labsupport.teach.checks_transport import PATHS, DefenceRun, served_mode

NOTEBOOK = "09-transport-security.ipynb"
CAMPUS = ("mx-a.campus.test", "mx-b.campus.test")
GOOD_POLICY = ("version: STSv1\nmode: enforce\nmx: mx-a.campus.test\nmx: mx-b.campus.test\n"
               "max_age: 1209600\n")


def unanswered() -> object:
    raise NotImplementedError


@pytest.fixture
def server(zones: ZoneSet) -> DNSServer:
    """A DNS server of its own over a fresh copy of the zones: its signer may be broken."""
    return DNSServer(zones)


# -- the chain of trust ---------------------------------------------------------------------


def test_the_chain_of_trust_of_a_signed_answer(server: DNSServer) -> None:
    chain = checks.trust_chain(server, "mx1.northwind.test")
    assert server.dnssec is not None
    tag = server.dnssec.key("northwind.test").key_tag
    assert chain.verdict == "secure" == validate("mx1.northwind.test", "A", server).verdict
    assert [(link.how, link.ok, link.reached) for link in chain.links] == [
        (f"SHA-256 digest of DNSKEY {tag}", True, True),
        (f"RRSIG by key {tag} over the DNSKEY RRset", True, True),
        (f"RRSIG by key {tag} over mx1.northwind.test. A", True, True)]
    assert chain.anchor.startswith(f"DS {tag} 13 2 ")
    assert chain.data == "mx1.northwind.test. A 192.0.2.25"
    assert chain.zone == "northwind.test."


def test_a_denial_is_checked_through_its_nsec(server: DNSServer) -> None:
    chain = checks.trust_chain(server, "nothere.northwind.test")
    assert chain.verdict == "secure"
    assert chain.links[-1].how.endswith("over mx2.northwind.test. NSEC")


def test_a_broken_link_and_the_links_below_it(server: DNSServer) -> None:
    assert server.dnssec is not None
    server.dnssec.corrupt("mx1.northwind.test", "A")
    chain = checks.trust_chain(server, "mx1.northwind.test")
    assert chain.verdict == "bogus"
    assert [(link.ok, link.reached) for link in chain.links] == [
        (True, True), (True, True), (False, True)]
    assert "fails: a validator answers SERVFAIL" in chain.summary
    server.dnssec.repair()
    server.dnssec.corrupt("campus.test", "DNSKEY")
    keys_broken = checks.trust_chain(server, "mx-a.campus.test")
    assert [(link.ok, link.reached) for link in keys_broken.links] == [
        (True, True), (False, True), (True, False)]
    assert "not reached" in keys_broken.text()


def test_trust_chain_explains_what_it_cannot_check(server: DNSServer) -> None:
    with pytest.raises(LabError, match="is in no signed lab zone"):
        checks.trust_chain(server, "www.example.invalid")
    with pytest.raises(LabError, match="pass the lab or lab.dns"):
        checks.trust_chain(object(), "mx1.northwind.test")


def test_failing_rrset_reads_the_trace(server: DNSServer) -> None:
    assert checks.failing_rrset(validate("mx1.northwind.test", "A", server)) is None
    assert server.dnssec is not None
    server.dnssec.corrupt("mx1.northwind.test", "A")
    assert checks.failing_rrset(validate("mx1.northwind.test", "A", server)) == \
        "mx1.northwind.test. A"
    server.dnssec.repair()
    server.dnssec.corrupt("campus.test", "DNSKEY")
    assert checks.failing_rrset(validate("mx-b.campus.test", "A", server)) == \
        "campus.test. DNSKEY"


def test_break_for_exercise_damages_the_key_set(clean_lab: labsupport.Lab) -> None:
    target = checks.break_for_exercise(clean_lab)
    assert target == CAMPUS[0]
    result = validate(target, "A", clean_lab)
    assert (result.verdict, checks.failing_rrset(result)) == ("bogus", "campus.test. DNSKEY")
    clean_lab.reset()
    assert validate(target, "A", clean_lab).verdict == "secure"


# -- deliveries under attack ----------------------------------------------------------------


@pytest.fixture(scope="module")
def compared(lab: labsupport.Lab) -> Iterator[dict[str, dict[str, DefenceRun]]]:
    yield checks.compare_defences(lab)
    lab.reset()


def test_every_case_with_and_without_the_relay(
        compared: dict[str, dict[str, DefenceRun]]) -> None:
    outcomes = {case: {path: run.verdict for path, run in runs.items()}
                for case, runs in compared.items()}
    calm, attacked = PATHS[False], PATHS[True]
    assert outcomes == {
        # opportunistic STARTTLS: encrypted when offered, stripped by the relay unnoticed
        "no defence": {calm: "delivered over TLS", attacked: "delivered in the clear"},
        "MTA-STS testing": {calm: "delivered over TLS",
                            attacked: "delivered in the clear, reported"},
        "MTA-STS enforce": {calm: "delivered over TLS", attacked: "deferred (454 4.7.4)"},
        "DANE": {calm: "delivered over TLS", attacked: "deferred (454 4.7.4)"},
    }
    assert {case: runs[attacked].exposure for case, runs in compared.items()} == {
        "no defence": "exposed", "MTA-STS testing": "reported", "MTA-STS enforce": "protected",
        "DANE": "protected"}
    assert all(runs[attacked].stripped and not runs[calm].stripped
               for runs in compared.values())
    assert {case: (runs[calm].sts, runs[calm].dane) for case, runs in compared.items()} == {
        "no defence": ("no-policy", "none"), "MTA-STS testing": ("testing", "none"),
        "MTA-STS enforce": ("enforce", "none"), "DANE": ("no-policy", "dane")}
    assert compared["MTA-STS testing"][attacked].reported == ("starttls-not-supported",)
    assert compared["DANE"][attacked].reported == ()  # the lab's reports cover MTA-STS only


def test_a_run_says_what_happened_in_words(compared: dict[str, dict[str, DefenceRun]]) -> None:
    run = compared["DANE"][PATHS[True]]
    assert run.title() == ("Mail to campus.test (DANE), through the downgrade relay: deferred "
                           "(454 4.7.4)")
    assert run.summary.startswith("the message waits in the queue: Not yet delivered")
    page = run._repr_html_()
    assert "<b>Mail to campus.test (DANE), through the downgrade relay" in page
    assert "does not offer STARTTLS, yet its signed TLSA records promise TLS" in page
    assert run.domain == "campus.test" and not run.delivered and not run.exposed


def test_the_lab_policy_is_served_as_before_after_a_run(clean_lab: labsupport.Lab) -> None:
    before = clean_lab.mta_sts.policy("northwind.test")
    run = checks.try_delivery(clean_lab, "MTA-STS testing")
    assert run.sts == "testing" and run.verdict == "delivered over TLS"
    assert clean_lab.mta_sts.policy("northwind.test") == before
    with pytest.raises(LabError, match="unknown case 'DNSSEC'; the cases are: no defence, "):
        checks.try_delivery(clean_lab, "DNSSEC")


def test_policy_with_mode_and_served_mode(clean_lab: labsupport.Lab) -> None:
    before = clean_lab.mta_sts.policy("northwind.test")
    assert before is not None
    testing = checks.policy_with_mode(before, "testing")
    assert "mode: testing\r\n" in testing and testing.count("mx:") == 2
    with pytest.raises(MTASTSError, match="mode 'strict' is not enforce, testing or none"):
        checks.policy_with_mode(before, "strict")
    with served_mode(clean_lab, "northwind.test", "none"):
        assert "mode: none" in (clean_lab.mta_sts.policy("northwind.test") or "")
    assert clean_lab.mta_sts.policy("northwind.test") == before
    with served_mode(clean_lab, "alumni.example", "enforce"):  # no policy: nothing to switch
        assert clean_lab.mta_sts.policy("alumni.example") is None


def test_exposure_of_a_run_made_by_hand() -> None:
    attempt = DeliveryAttempt(verdict="delivered", summary="", item_id="X", domain="a.test",
                              mail_from="", recipients=("u@a.test",), at=0.0)
    clear = DefenceRun(verdict="delivered in the clear", summary="", case="no defence",
                       recipient="u@a.test", relay=True, attempt=attempt)
    assert clear.exposed and clear.exposure == "exposed"
    reported = DefenceRun(verdict="", summary="", case="x", recipient="u@a.test", relay=True,
                          attempt=attempt, reported=("starttls-not-supported",))
    assert reported.exposure == "reported"
    over_tls = DefenceRun(verdict="", summary="", case="x", recipient="u@a.test", relay=False,
                          attempt=attempt, tls=True)
    assert over_tls.exposure == "protected"


# -- exercise 1: TLSA association data --------------------------------------------------------


def _spki_sha256(pem_file: Path) -> str:
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    key = x509.load_pem_x509_certificate(pem_file.read_bytes()).public_key()
    return hashlib.sha256(key.public_bytes(serialization.Encoding.DER,
                                           serialization.PublicFormat.SubjectPublicKeyInfo)
                          ).hexdigest()


def test_tlsa_data(lab: labsupport.Lab) -> None:
    ca = lab.ca
    ta = _spki_sha256(ca.ca_file)
    ee = _spki_sha256(ca.server_cert_file)
    assert checks.judge_tlsa_data(ta, ca).right
    assert checks.judge_tlsa_data(ta.upper(), ca).right
    assert checks.judge_tlsa_data(bytes.fromhex(ta), ca).right
    assert checks.judge_tlsa_data(f"2 1 1 {ta}", ca).right
    assert checks.judge_tlsa_data(ee, ca, usage=3).right
    assert ee == lab_tlsa(ca).data.hex()
    other = checks.judge_tlsa_data(ee, ca)
    assert other.status == "wrong" and "the other certificate's key" in other.message
    whole = hashlib.sha256(ssl.PEM_cert_to_DER_cert(ca.ca_file.read_text())).hexdigest()
    cert = checks.judge_tlsa_data(whole, ca)
    assert cert.status == "wrong" and "selector 0 (Cert)" in cert.message
    short = checks.judge_tlsa_data(ta[:40], ca)
    assert short.status == "wrong" and "that is 20 bytes" in short.message
    near = checks.judge_tlsa_data("0" * 64, ca)
    assert near.status == "wrong" and "x509.load_pem_x509_certificate" in near.message
    assert "hex digits" in checks.judge_tlsa_data("not hex", ca).message
    assert checks.judge_tlsa_data(unanswered, ca).status == "unanswered"
    with pytest.raises(CheckFailed):
        checks.check_tlsa_data(lambda: ee, ca)
    checks.check_tlsa_data(lambda: ta, ca)


# -- exercise 2: an MTA-STS policy ------------------------------------------------------------


def test_sts_policy_right(world: ZoneSet) -> None:
    assert checks.judge_sts_policy(GOOD_POLICY, world).right
    wildcard = GOOD_POLICY.replace("mx: mx-a.campus.test\nmx: mx-b.campus.test",
                                   "mx: *.campus.test")
    verdict = checks.judge_sts_policy(wildcard.replace("\n", "\r\n"), world)
    assert verdict.right and "kept 14 days" in verdict.message
    checks.check_sts_policy(lambda: GOOD_POLICY, world)


@pytest.mark.parametrize(("change", "hint"), [
    (("mode: enforce", "mode: testing"), "mode testing does not refuse a downgrade"),
    (("mx: mx-b.campus.test\n", ""), "mx-b.campus.test matches no mx line"),
    (("mx: mx-b.campus.test\n", "mx: mx-b.campus.test\nmx: mx1.northwind.test\n"),
     "mx mx1.northwind.test is none of campus.test's MX hosts"),
    (("max_age: 1209600", "max_age: 86400"), "shorter than a week"),
    (("version: STSv1\n", ""), "the policy does not parse: the policy has no 'version' field"),
    (("mx: mx-a.campus.test", "mx: *.*.campus.test"), "the policy does not parse"),
])
def test_sts_policy_wrong(world: ZoneSet, change: tuple[str, str], hint: str) -> None:
    verdict = checks.judge_sts_policy(GOOD_POLICY.replace(*change), world)
    assert verdict.status == "wrong" and hint in verdict.message, verdict.message


def test_sts_policy_not_text_or_unanswered(world: ZoneSet) -> None:
    assert "the policy is text" in checks.judge_sts_policy(42, world).message
    assert checks.judge_sts_policy(unanswered, world).status == "unanswered"
    with pytest.raises(CheckFailed):
        checks.check_sts_policy(lambda: GOOD_POLICY.replace("enforce", "testing"), world)


def test_sts_policy_follows_the_zone(zones: ZoneSet) -> None:
    zones.set("campus.test", "MX", "10 mail.campus.test.")
    moved = checks.judge_sts_policy(GOOD_POLICY, zones)
    assert moved.status == "wrong" and "mail.campus.test matches no mx line" in moved.message


# -- exercise 3: a broken chain ---------------------------------------------------------------


def test_broken_chain(server: DNSServer) -> None:
    assert server.dnssec is not None
    server.dnssec.corrupt("campus.test", "DNSKEY")
    host = CAMPUS[0]
    assert checks.judge_broken_chain(("bogus", "campus.test. DNSKEY"), server, host).right
    assert checks.judge_broken_chain(["Bogus", "CAMPUS.TEST dnskey"], server, host).right
    own = checks.judge_broken_chain(("bogus", "mx-a.campus.test. A"), server, host)
    assert own.status == "wrong" and "not the answer's own RRset" in own.message
    other = checks.judge_broken_chain(("bogus", "campus.test. MX"), server, host)
    assert other.status == "wrong" and "find the ✘ line in the trace" in other.message
    missing = checks.judge_broken_chain(("bogus", None), server, host)
    assert missing.status == "wrong"
    verdict = checks.judge_broken_chain(("insecure", "campus.test. DNSKEY"), server, host)
    assert verdict.status == "wrong" and "does not end 'insecure'" in verdict.message
    assert "a pair" in checks.judge_broken_chain("bogus", server, host).message
    assert checks.judge_broken_chain(unanswered, server, host).status == "unanswered"
    with pytest.raises(CheckFailed):
        checks.check_broken_chain(lambda: ("secure", None), server, host)
    checks.check_broken_chain(lambda: ("bogus", "campus.test. DNSKEY"), server, host)


def test_broken_chain_when_nothing_is_broken(server: DNSServer) -> None:
    assert checks.judge_broken_chain(("secure", None), server, CAMPUS[1]).right
    wrong = checks.judge_broken_chain(("secure", "campus.test. DNSKEY"), server, CAMPUS[1])
    assert wrong.status == "wrong" and "no signature failed" in wrong.message


# -- where lesson 09 is taught --------------------------------------------------------------


def test_the_lessons_modules_point_at_the_notebook() -> None:
    """The protocol modules lesson 09 introduces name its notebook, which exists."""
    assert (ROOT / "notebooks" / NOTEBOOK).exists()
    for module in ("dns/dnssec_sign.py", "dns/dnssec_validate.py", "mail/dane.py",
                   "mail/dane_enforce.py", "teach/plots_transport.py"):
        text = (ROOT / "labsupport" / module).read_text(encoding="utf-8")
        named = re.findall(r"Introduced in ``notebooks/([^`]+)``", text)
        assert named == [NOTEBOOK], (module, named)
    assert labsupport.where_taught("plots.chain_of_trust") == NOTEBOOK
    assert labsupport.where_taught("widgets.defence_explorer") == NOTEBOOK
