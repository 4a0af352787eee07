"""Exercise checks and helpers of notebooks/06-dmarc.ipynb (labsupport/teach/checks.py), on the
lab's zones in memory: right, wrong and unanswered answers."""

from __future__ import annotations

import pytest

from labsupport import dmarc
from labsupport.core.errors import CheckFailed
from labsupport.dns.zone import ZoneSet
from labsupport.teach.checks import (
    DMARC_PAIRS,
    alignment_of,
    check_relaxed_pairs,
    check_subdomain_record,
    dmarc_scratch_zones,
    judge_relaxed_pairs,
    judge_subdomain_record,
    relaxed_pairs,
)

GOOD_RECORD = "v=DMARC1; p=quarantine; sp=reject; rua=mailto:dmarc@campus.test"


def _placeholder() -> str:
    raise NotImplementedError("your answer here")


def _campus_record(zones: ZoneSet) -> str:
    return b"".join(zones.resolve("_dmarc.campus.test", "TXT")[0].strings).decode()


# -- the scratch zones and alignment_of -----------------------------------------------------


def test_scratch_copy_answers_for_any_name_and_leaves_the_lab_alone(zones: ZoneSet) -> None:
    before = _campus_record(zones)
    scratch = dmarc_scratch_zones(zones)
    scratch.set("_dmarc.campus.test", "TXT", "v=DMARC1; p=reject")
    scratch.set("_dmarc.outside.invalid", "TXT", "v=DMARC1; p=none")  # the root zone takes it
    assert dmarc.discover("campus.test", scratch).record.p == "reject"
    assert _campus_record(zones) == before
    scratch.reset()
    assert dmarc.discover("campus.test", scratch).record.text == before
    assert dmarc.discover("outside.invalid", scratch).record is None


def test_spf_passes_and_dmarc_fails_for_the_attacker(world: ZoneSet) -> None:
    r = alignment_of("northwind.test", mail_from_domain="phisher.example", dkim_domain=None,
                     zones=world)
    assert (r.verdict, r.disposition, r.spf_aligned) == ("fail", "reject", False)
    assert r.alignments[0].result == "pass"


def test_relaxed_and_strict_for_spf_and_dkim(world: ZoneSet) -> None:
    relaxed = alignment_of("billing.northwind.test", mail_from_domain="northwind.test",
                           dkim_domain="mail.northwind.test", zones=world)
    assert relaxed.verdict == "pass" and relaxed.spf_aligned and relaxed.dkim_aligned
    strict = alignment_of("billing.northwind.test", mail_from_domain="northwind.test",
                          dkim_domain="mail.northwind.test", zones=world, aspf="s", adkim="s")
    assert strict.verdict == "fail" and not strict.spf_aligned and not strict.dkim_aligned
    assert {a.mode for a in strict.alignments} == {"strict"}
    same = alignment_of("northwind.test", mail_from_domain=None,
                        dkim_domain="northwind.test", zones=world, adkim="s")
    assert same.verdict == "pass" and same.dkim_aligned


def test_a_failed_identifier_never_aligns(world: ZoneSet) -> None:
    r = alignment_of("northwind.test", mail_from_domain="northwind.test",
                     dkim_domain="northwind.test", zones=world, spf_result="softfail",
                     dkim_result="fail")
    assert r.verdict == "fail" and not r.spf_aligned and not r.dkim_aligned


def test_a_domain_without_a_record_gets_one_for_the_question(world: ZoneSet) -> None:
    r = alignment_of("phisher.example", mail_from_domain="phisher.example",
                     dkim_domain=None, zones=world)
    assert r.verdict == "pass" and r.record_domain == "phisher.example"
    assert "p=reject" in r.record.text


def test_the_lab_record_keeps_its_other_tags(world: ZoneSet) -> None:
    r = alignment_of("campus.test", mail_from_domain=None, dkim_domain="lists.campus.test",
                     zones=world, adkim="s")
    assert r.record.rua == ("mailto:dmarc@campus.test",) and r.record.adkim == "s"
    assert r.record.p == "none" and not r.dkim_aligned


def test_psl_method(world: ZoneSet) -> None:
    r = alignment_of("campus.test", mail_from_domain=None, dkim_domain="lists.campus.test",
                     zones=world, method="psl")
    assert r.method == "psl" and r.dkim_aligned


# -- exercise 1: which pairs align in relaxed mode ------------------------------------------


def test_the_relaxed_pairs_are_computed(world: ZoneSet) -> None:
    assert relaxed_pairs(world) == {"a", "b", "d", "e"}
    assert set(DMARC_PAIRS) == set("abcdefg")


@pytest.mark.parametrize("answer", [{"a", "b", "d", "e"}, "abde", ["A", "B", "D", "E"],
                                    "a, b, d, e"])
def test_relaxed_pairs_right(world: ZoneSet, answer: object) -> None:
    verdict = judge_relaxed_pairs(lambda: answer, world)
    assert verdict.right, verdict
    check_relaxed_pairs(lambda: answer, world)  # prints, does not raise


def test_relaxed_pairs_wrong(world: ZoneSet) -> None:
    verdict = judge_relaxed_pairs(lambda: {"a", "b", "d", "e", "f"}, world)
    assert verdict.status == "wrong"
    assert "(f) northwind.test / northwind.test.phisher.example" in verdict.message
    missing = judge_relaxed_pairs(lambda: {"a"}, world)
    assert missing.status == "wrong" and "3 aligned pair(s) are missing" in missing.message
    assert "not one of the pairs" in judge_relaxed_pairs(lambda: "az", world).message
    assert judge_relaxed_pairs(lambda: 42, world).status == "wrong"
    with pytest.raises(CheckFailed):
        check_relaxed_pairs(lambda: {"c"}, world)


def test_relaxed_pairs_unanswered(world: ZoneSet) -> None:
    assert judge_relaxed_pairs(_placeholder, world).status == "unanswered"
    assert judge_relaxed_pairs(lambda: undefined_name, world).status == "unanswered"  # type: ignore[name-defined]  # noqa: F821
    check_relaxed_pairs(_placeholder, world)  # does not raise


def test_relaxed_pairs_follow_the_zones(zones: ZoneSet) -> None:
    """The answer is computed from the zones: a psd=n record at lists.campus.test makes it
    an organization of its own, and pair d stops aligning."""
    zones.add("_dmarc.lists.campus.test", "TXT", "v=DMARC1; p=none; psd=n")
    assert relaxed_pairs(zones) == {"a", "b", "e"}


# -- exercise 2: quarantine for the domain, reject for subdomains -----------------------------


@pytest.mark.parametrize("record", [GOOD_RECORD, "v=DMARC1; p=quarantine; sp=reject",
                                    "v=DMARC1;p=quarantine;sp=reject;np=reject"])
def test_subdomain_record_right(world: ZoneSet, record: str) -> None:
    verdict = judge_subdomain_record(lambda: record, world)
    assert verdict.right, verdict
    check_subdomain_record(lambda: record, world)


@pytest.mark.parametrize(("record", "says"), [
    ("v=DMARC1; p=quarantine", "lists.campus.test (an existing subdomain) gets quarantine"),
    ("v=DMARC1; p=reject; sp=quarantine", "campus.test (the domain itself) gets reject"),
    ("v=DMARC1; p=quarantine; sp=reject; np=none", "nosuch.campus.test"),
    ("v=DMARC1; p=quarantine; sp=reject; t=y", "t=y (testing mode)"),
    ("v=DMARC1; p=quarantine; sp=reject; pct=100", "removed by RFC 9989"),
    ("p=quarantine; sp=reject", "must start with the tag v=DMARC1"),
    ("v=DMARC1; p=quarantine; sp=rejekt", "not none, quarantine or reject"),
])
def test_subdomain_record_wrong(world: ZoneSet, record: str, says: str) -> None:
    verdict = judge_subdomain_record(lambda: record, world)
    assert verdict.status == "wrong" and says in verdict.message, verdict
    with pytest.raises(CheckFailed):
        check_subdomain_record(lambda: record, world)


def test_subdomain_record_unanswered_and_not_a_string(world: ZoneSet) -> None:
    assert judge_subdomain_record(_placeholder, world).status == "unanswered"
    assert judge_subdomain_record(lambda: ["v=DMARC1"], world).status == "wrong"


def test_subdomain_record_leaves_the_zones_alone(zones: ZoneSet) -> None:
    before = _campus_record(zones)
    judge_subdomain_record(lambda: GOOD_RECORD, zones)
    assert _campus_record(zones) == before
