"""labsupport.auth.dmarc against RFC 9989 (DMARCbis), rule by rule.

Each test names the section it checks. Zones are in-memory ZoneSets (an empty root zone
plus the records a test needs), so every DNS answer is known and nothing leaves the
process. The worked examples are those of RFC 9989 sections 4.10, 4.10.2, 5.1.8 and
Appendix B.4.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from labsupport import dmarc
from labsupport.auth.authres import format_authres, parse_authres
from labsupport.auth.dkim import DKIMResult, DKIMVerification
from labsupport.auth.dmarc import (
    MAX_TREE_WALK_QUERIES,
    DMARCRecordError,
    DMARCResult,
    PublicSuffixList,
    discover,
    evaluate,
    lab_public_suffix_list,
    organizational_domain,
    parse_record,
    tree_walk_names,
)
from labsupport.auth.spf import SPFResult
from labsupport.core.errors import LabError
from labsupport.dns.zone import ZoneSet

ROOT = Path(__file__).resolve().parents[2]


def zone(records: dict[str, str | list[str]], **others: str) -> ZoneSet:
    """An empty root zone with TXT ``records`` (name -> value or values) and A records."""
    z = ZoneSet.empty()
    for name, values in records.items():
        for value in [values] if isinstance(values, str) else values:
            z.add(name, "TXT", value)
    for name, address in others.items():
        z.add(name.replace("_", "."), "A", address)
    return z


class Counting:
    """A resolver that counts and remembers every question (and forwards it)."""

    def __init__(self, inner: ZoneSet) -> None:
        self.inner = inner
        self.asked: list[tuple[str, str]] = []

    def resolve(self, qname: str, rdtype: str = "A", *args: object, **kw: object) -> object:
        self.asked.append((str(qname), str(rdtype)))
        return self.inner.resolve(qname, rdtype)


def message(*froms: str, extra: str = "") -> bytes:
    head = "".join(f"From: {f}\r\n" for f in froms)
    return (head + extra + "To: bob@example.net\r\nSubject: hi\r\n\r\nHello.\r\n").encode()


def spf_pass(domain: str, verdict: str = "pass") -> SPFResult:
    return SPFResult(verdict=verdict, summary="test", ip="192.0.2.1", domain=domain,
                     sender=f"bounce@{domain}")


def dkim_of(*sigs: tuple[str, str]) -> DKIMVerification:
    results = tuple(DKIMResult(verdict=v, summary="test", index=i, domain=d, selector="s1")
                    for i, (d, v) in enumerate(sigs))
    overall = "pass" if any(v == "pass" for _d, v in sigs) else (sigs[0][1] if sigs else "none")
    return DKIMVerification(verdict=overall, summary="test", signatures=results)


def run(z: ZoneSet, author: str, *, spf: str | None = None, spf_result: str = "pass",
        dkim: tuple[tuple[str, str], ...] = (), method: str = "treewalk") -> DMARCResult:
    return evaluate(message(f"Alice <alice@{author}>"), mail_from=f"bounce@{spf or author}",
                    spf=spf_pass(spf, spf_result) if spf else None,
                    dkim=dkim_of(*dkim) if dkim else None, resolver=z, method=method)


# -- section 4.7 and 4.8: the record ------------------------------------------------------


def test_4_7_defaults() -> None:
    r = parse_record("v=DMARC1; p=reject")
    assert (r.p, r.sp, r.np, r.psd, r.t, r.adkim, r.aspf, r.fo) == (
        "reject", None, None, "u", "n", "r", "r", "0")
    assert r.rua == () and r.problems == () and r.usable


def test_4_7_every_tag() -> None:
    r = parse_record("v=DMARC1; p=quarantine; sp=reject; np=reject; psd=n; t=y; adkim=s; "
                     "aspf=s; rua=mailto:a@x.test, mailto:b@y.test; ruf=mailto:f@x.test; "
                     "fo=1:d:s")
    assert (r.p, r.sp, r.np, r.psd, r.t, r.adkim, r.aspf) == (
        "quarantine", "reject", "reject", "n", "y", "s", "s")
    assert r.rua == ("mailto:a@x.test", "mailto:b@y.test") and r.ruf == ("mailto:f@x.test",)
    assert r.fo == "1:d:s" and r.testing and r.mode("spf") == "strict"


@pytest.mark.parametrize("text", ["v=DMARC2; p=none", "p=none; v=DMARC1", "v=dmarc1; p=none",
                                  "v=spf1 -all", "", "p=reject"])
def test_4_7_v_must_be_first_and_exactly_DMARC1(text: str) -> None:
    with pytest.raises(DMARCRecordError) as info:
        parse_record(text)
    assert isinstance(info.value, LabError) and "v=DMARC1" in str(info.value)


def test_4_8_whitespace_case_and_trailing_separator() -> None:
    r = parse_record("v = DMARC1 ;  P = Reject ; ADKIM=S;")
    assert r.p == "reject" and r.adkim == "s" and not r.problems


def test_4_7_unknown_tags_are_ignored() -> None:
    r = parse_record("v=DMARC1; p=none; future=1")
    assert r.p == "none" and any("unknown tag future" in p for p in r.problems)


@pytest.mark.parametrize("tag", ["pct=50", "rf=afrf", "ri=3600"])
def test_C_5_2_removed_tags_are_flagged_obsolete(tag: str) -> None:
    r = parse_record(f"v=DMARC1; p=reject; {tag}")
    assert r.p == "reject"
    assert any("removed by RFC 9989" in p for p in r.problems)


def test_4_7_p_absent_means_none() -> None:
    r = parse_record("v=DMARC1; rua=mailto:d@x.test")
    assert r.p == "none" and r.usable and any("no p tag" in p for p in r.problems)


def test_4_10_1_invalid_p_with_rua_acts_as_p_none() -> None:
    r = parse_record("v=DMARC1; p=block; sp=reject; rua=mailto:d@x.test")
    assert r.p == "none" and r.sp is None and r.usable


@pytest.mark.parametrize("text", ["v=DMARC1; p=block", "v=DMARC1; p=reject; sp=bogus",
                                  "v=DMARC1; p=reject; np=maybe; rua=not a uri"])
def test_4_10_1_invalid_policy_without_rua_means_no_processing(text: str) -> None:
    r = parse_record(text)
    assert r.p is None and not r.usable
    assert any("no DMARC processing" in p for p in r.problems)


def test_4_8_invalid_flags_fall_back_to_defaults() -> None:
    r = parse_record("v=DMARC1; p=none; adkim=x; aspf=relaxed; psd=maybe; t=yes; fo=9")
    assert (r.adkim, r.aspf, r.psd, r.t, r.fo) == ("r", "r", "u", "n", "0")
    assert len(r.problems) == 5


@pytest.mark.parametrize(("value", "kept"), [("0", "0"), ("1:d", "1:d"), ("d:s", "d:s"),
                                             ("0:1", "0"), ("x", "0")])
def test_4_7_fo_values(value: str, kept: str) -> None:
    assert parse_record(f"v=DMARC1; p=none; fo={value}").fo == kept


def test_4_8_obsolete_report_size_is_dropped() -> None:
    r = parse_record("v=DMARC1; p=none; rua=mailto:d@x.test!10m")
    assert r.rua == ("mailto:d@x.test",) and any("obsolete" in p for p in r.problems)


def test_4_8_duplicate_tag_keeps_first() -> None:
    r = parse_record("v=DMARC1; p=reject; p=none")
    assert r.p == "reject" and any("twice" in p for p in r.problems)


def test_record_from_bytes_and_str() -> None:
    assert parse_record(b"v=DMARC1; p=none").p == "none"
    assert str(parse_record("v=DMARC1; p=none")) == "v=DMARC1; p=none"


# -- section 4.10: the DNS Tree Walk -------------------------------------------------------


def test_4_10_eight_queries_for_a_long_name() -> None:
    """The section's illustration: a.b.c.d.e.f.g.h.i.j.mail.example.com."""
    assert tree_walk_names("a.b.c.d.e.f.g.h.i.j.mail.example.com") == [
        "a.b.c.d.e.f.g.h.i.j.mail.example.com", "g.h.i.j.mail.example.com",
        "h.i.j.mail.example.com", "i.j.mail.example.com", "j.mail.example.com",
        "mail.example.com", "example.com", "com"]


@pytest.mark.parametrize("labels", range(1, 14))
def test_4_10_never_more_than_eight_queries(labels: int) -> None:
    name = ".".join(f"l{i}" for i in range(labels - 1)) + ("." if labels > 1 else "") + "test"
    names = tree_walk_names(name)
    assert len(names) == min(labels, MAX_TREE_WALK_QUERIES)
    assert names[0] == name and names[-1] == "test"
    asked = Counting(ZoneSet.empty())
    d = discover(name, asked)
    assert len(asked.asked) == len(names) == len(d.queries)
    assert all(rdtype == "TXT" for _q, rdtype in asked.asked)


def test_4_10_seven_labels_walk_one_by_one_and_eight_shorten() -> None:
    seven = "a.b.c.d.e.example.com"
    assert tree_walk_names(seven)[1] == "b.c.d.e.example.com"
    eight = "x.a.b.c.d.e.example.com"
    assert tree_walk_names(eight)[1] == "a.b.c.d.e.example.com"  # 7 labels, same as parent


def test_4_10_names_are_normalized() -> None:
    assert tree_walk_names("Mail.Example.COM.") == ["mail.example.com", "example.com", "com"]


def test_4_10_step_2_non_dmarc_txt_records_are_discarded() -> None:
    z = zone({"_dmarc.example.com": ["v=spf1 -all", "hello"]})
    assert discover("example.com", z).verdict == "none"


def test_4_10_step_2_multiple_dmarc_records_are_all_discarded() -> None:
    z = zone({"_dmarc.mail.example.com": ["v=DMARC1; p=reject", "v=DMARC1; p=none"],
              "_dmarc.example.com": "v=DMARC1; p=quarantine"})
    d = discover("mail.example.com", z)
    assert d.record_domain == "example.com" and d.record is not None
    assert d.record.p == "quarantine"
    assert "all are discarded" in str(d)


def test_4_5_txt_strings_are_concatenated() -> None:
    z = ZoneSet.empty()
    z.add("_dmarc.example.com", "TXT", ["v=DMARC1; ", "p=reject"])
    d = discover("example.com", z)
    assert d.record is not None and d.record.p == "reject"


def test_4_10_step_6_walk_stops_at_psd_n() -> None:
    z = Counting(zone({"_dmarc.mail.example.com": "v=DMARC1; p=none; psd=n",
                       "_dmarc.example.com": "v=DMARC1; p=reject"}))
    d = discover("a.mail.example.com", z)
    assert d.queries == ("_dmarc.a.mail.example.com", "_dmarc.mail.example.com")
    assert d.organizational_domain == "mail.example.com"


def test_4_10_step_2_walk_stops_at_once_when_the_start_has_psd() -> None:
    z = Counting(zone({"_dmarc.example.com": "v=DMARC1; p=none; psd=y",
                       "_dmarc.com": "v=DMARC1; p=reject"}))
    d = discover("example.com", z)
    assert d.queries == ("_dmarc.example.com",)
    # rule 2 does not apply to the start; rule 3: the start is the Organizational Domain
    assert d.organizational_domain == "example.com" and d.record_domain == "example.com"


def test_4_10_dns_error_is_temperror() -> None:
    z = zone({"_dmarc.example.com": "v=DMARC1; p=reject"})
    z.fail("_dmarc.mail.example.com", "servfail")
    d = discover("mail.example.com", z)
    assert d.verdict == "temperror"
    r = run(z, "mail.example.com", spf="example.com")
    assert r.verdict == "temperror" and r.disposition == "none"


# -- section 4.10.2: the Organizational Domain (its three worked examples) ----------------


def test_4_10_2_example_fewest_labels() -> None:
    z = zone({"_dmarc.mail.example.com": "v=DMARC1; p=none",
              "_dmarc.example.com": "v=DMARC1; p=none"})
    d = discover("a.mail.example.com", z)
    assert d.queries == ("_dmarc.a.mail.example.com", "_dmarc.mail.example.com",
                         "_dmarc.example.com", "_dmarc.com")
    assert d.organizational_domain == "example.com"
    assert organizational_domain("a.mail.example.com", z) == "example.com"


def test_4_10_2_example_psd_n() -> None:
    z = zone({"_dmarc.mail.example.com": "v=DMARC1; p=none; psd=n",
              "_dmarc.example.com": "v=DMARC1; p=none"})
    assert organizational_domain("a.mail.example.com", z) == "mail.example.com"


def test_4_10_2_example_psd_y_at_com() -> None:
    z = zone({"_dmarc.com": "v=DMARC1; p=reject; psd=y"})
    assert organizational_domain("a.mail.example.com", z) == "example.com"
    d = discover("a.mail.example.com", z)
    # no record at the author or example.com: the Public Suffix Domain's record applies
    assert d.record_domain == "com" and d.psd_domain == "com"


def test_4_10_2_rule_2_mail_example_com() -> None:
    """Rule 2's own example: _dmarc.example.com has psd=y, so mail.example.com is it."""
    z = zone({"_dmarc.example.com": "v=DMARC1; p=none; psd=y"})
    assert organizational_domain("mail.example.com", z) == "mail.example.com"


def test_4_10_2_no_record_at_all_the_start_is_its_own() -> None:
    assert organizational_domain("a.mail.example.com", ZoneSet.empty()) == "a.mail.example.com"


def test_4_10_2_psd_n_beats_a_longer_record() -> None:
    z = zone({"_dmarc.a.mail.example.com": "v=DMARC1; p=none",
              "_dmarc.mail.example.com": "v=DMARC1; p=none; psd=n"})
    assert organizational_domain("a.mail.example.com", z) == "mail.example.com"


def test_4_10_2_psd_y_without_a_record_below_is_still_the_boundary() -> None:
    z = zone({"_dmarc.example": "v=DMARC1; p=reject; psd=y"})
    d = discover("deep.shop.example", z)
    assert d.organizational_domain == "shop.example" and d.record_domain == "example"


# -- Appendix B.4: the tree walk examples --------------------------------------------------


def test_B_4_1_simple_organizational_and_policy_example() -> None:
    z = zone({"_dmarc.example.com": "v=DMARC1; p=reject",
              "_dmarc.signing.example.com": "v=DMARC1; p=none"})
    asked = Counting(z)
    r = evaluate(message("a@example.com"), mail_from="b@example.com",
                 spf=spf_pass("example.com"), dkim=dkim_of(("signing.example.com", "pass")),
                 resolver=asked)
    assert r.verdict == "pass" and r.spf_aligned and r.dkim_aligned
    assert r.record_domain == "example.com" and r.policy == "p"
    assert r.discovery is not None
    assert r.discovery.queries == ("_dmarc.example.com", "_dmarc.com")
    dkim_row = next(a for a in r.alignments if a.mechanism == "dkim")
    assert dkim_row.organizational_domain == "example.com"
    txt = [q for q, t in asked.asked if t == "TXT"]
    assert txt == ["_dmarc.example.com", "_dmarc.com", "_dmarc.signing.example.com"]


def test_B_4_2_deep_tree_walk_example() -> None:
    z = zone({"_dmarc.example.com": "v=DMARC1; p=reject",
              "_dmarc.signing.example.com": "v=DMARC1; p=none"}, example_com="192.0.2.1")
    z.add("a.b.c.d.e.f.g.h.i.j.k.example.com", "A", "192.0.2.2")
    author = "a.b.c.d.e.f.g.h.i.j.k.example.com"
    d = discover(author, z)
    assert d.queries == tuple("_dmarc." + n for n in (
        author, "g.h.i.j.k.example.com", "h.i.j.k.example.com", "i.j.k.example.com",
        "j.k.example.com", "k.example.com", "example.com", "com"))
    assert d.organizational_domain == "example.com" and d.record_domain == "example.com"
    r = run(z, author, spf="example.com", dkim=(("signing.example.com", "pass"),))
    assert r.verdict == "pass" and r.spf_aligned and r.dkim_aligned
    failed = run(z, author, spf="example.com", spf_result="fail")
    assert failed.verdict == "fail" and failed.policy == "p"  # p: no sp, the author exists
    assert failed.disposition == "reject"


def test_B_4_3_example_with_a_psd_record() -> None:
    z = zone({"_dmarc.bank.example": "v=DMARC1; p=reject; psd=y",
              "_dmarc.giant.bank.example": "v=DMARC1; p=quarantine"})
    assert discover("giant.bank.example", z).organizational_domain == "giant.bank.example"
    assert discover("giant.bank.example", z).record_domain == "giant.bank.example"
    assert organizational_domain("mail.giant.bank.example", z) == "giant.bank.example"
    assert organizational_domain("mail.mega.bank.example", z) == "mega.bank.example"
    r = run(z, "giant.bank.example", spf="mail.giant.bank.example",
            dkim=(("mail.mega.bank.example", "pass"),))
    assert r.verdict == "pass" and r.spf_aligned and not r.dkim_aligned
    only_dkim = run(z, "giant.bank.example", dkim=(("mail.mega.bank.example", "pass"),))
    assert only_dkim.verdict == "fail" and only_dkim.disposition == "quarantine"


def test_B_4_3_the_psl_method_sees_no_boundary_at_bank_example() -> None:
    """bank.example is not on the lab's list: RFC 7489 makes bank.example the
    Organizational Domain of both banks, so the other bank's signature aligns."""
    z = zone({"_dmarc.bank.example": "v=DMARC1; p=reject; psd=y",
              "_dmarc.giant.bank.example": "v=DMARC1; p=quarantine"})
    r = run(z, "giant.bank.example", dkim=(("mail.mega.bank.example", "pass"),), method="psl")
    assert r.verdict == "pass" and r.dkim_aligned and r.method == "psl"


def test_5_1_8_a_psd_n_record_past_the_shortcut_is_never_seen() -> None:
    z = zone({"_dmarc.example.com": "v=DMARC1; p=reject",
              "_dmarc.b.c.d.e.f.g.example.com": "v=DMARC1; p=none; psd=n"})
    author = "mail.a.b.c.d.e.f.g.example.com"
    d = discover(author, z)
    assert d.queries == tuple("_dmarc." + n for n in (
        author, "c.d.e.f.g.example.com", "d.e.f.g.example.com", "e.f.g.example.com",
        "f.g.example.com", "g.example.com", "example.com", "com"))
    assert d.organizational_domain == "example.com" and d.record_domain == "example.com"


# -- section 4.10.1: policy discovery and p / sp / np --------------------------------------


def test_4_10_1_the_author_domains_own_record_uses_p() -> None:
    z = zone({"_dmarc.news.example.com": "v=DMARC1; p=quarantine; sp=reject",
              "_dmarc.example.com": "v=DMARC1; p=none"})
    r = run(z, "news.example.com", spf="other.example.net")
    assert r.record_domain == "news.example.com" and r.policy == "p"
    assert r.disposition == "quarantine" and r.verdict == "fail"


def test_4_10_1_existing_subdomain_uses_sp() -> None:
    z = zone({"_dmarc.example.com": "v=DMARC1; p=none; sp=reject; np=quarantine"},
             news_example_com="192.0.2.1")
    r = run(z, "news.example.com", spf="other.example.net")
    assert r.policy == "sp" and r.requested == "reject" and r.author_domain_exists is True
    assert r.disposition == "reject"


def test_3_2_13_non_existent_subdomain_uses_np() -> None:
    z = zone({"_dmarc.example.com": "v=DMARC1; p=none; sp=reject; np=quarantine"})
    asked = Counting(z)
    r = evaluate(message("x@ghost.example.com"), mail_from="x@ghost.example.com", spf=None,
                 dkim=None, resolver=asked)
    assert r.policy == "np" and r.author_domain_exists is False
    assert r.disposition == "quarantine"
    assert [t for q, t in asked.asked if q.startswith("ghost.")] == ["A", "AAAA", "MX"]


def test_3_2_13_a_name_with_only_an_mx_record_exists() -> None:
    z = zone({"_dmarc.example.com": "v=DMARC1; p=none; np=reject"})
    z.add("mx-only.example.com", "MX", "10 mail.example.com.")
    r = run(z, "mx-only.example.com")
    assert r.author_domain_exists is True and r.policy == "p" and r.disposition == "none"


def test_4_7_np_absent_falls_back_to_sp_then_p() -> None:
    z = zone({"_dmarc.example.com": "v=DMARC1; p=quarantine; sp=reject"})
    assert run(z, "ghost.example.com").policy == "sp"
    z2 = zone({"_dmarc.example.com": "v=DMARC1; p=quarantine"})
    r = run(z2, "ghost.example.com")
    assert r.policy == "p" and r.disposition == "quarantine"


def test_4_10_1_psd_record_applies_sp_and_np_to_organizations_below() -> None:
    z = zone({"_dmarc.example": "v=DMARC1; p=none; psd=y; np=reject"})
    r = run(z, "nobody.example")
    assert r.record_domain == "example" and r.policy == "np" and r.disposition == "reject"


def test_4_10_1_note_psd_policy_is_not_used_when_the_org_has_a_record() -> None:
    z = zone({"_dmarc.example": "v=DMARC1; p=reject; psd=y",
              "_dmarc.shop.example": "v=DMARC1; p=none"})
    r = run(z, "www.shop.example")
    assert r.record_domain == "shop.example" and r.disposition == "none"


def test_4_10_1_no_record_anywhere_is_none() -> None:
    r = run(ZoneSet.empty(), "example.com", spf="example.com")
    assert r.verdict == "none" and r.disposition == "none" and r.record is None


def test_4_10_1_invalid_policy_without_rua_is_permerror() -> None:
    z = zone({"_dmarc.example.com": "v=DMARC1; p=bogus"})
    r = run(z, "example.com")
    assert r.verdict == "permerror" and r.disposition == "none"


def test_4_10_1_invalid_policy_with_rua_is_p_none() -> None:
    z = zone({"_dmarc.example.com": "v=DMARC1; p=bogus; rua=mailto:d@example.com"})
    r = run(z, "example.com")
    assert r.verdict == "fail" and r.disposition == "none" and r.requested == "none"


# -- section 4.7, tag t: testing mode -------------------------------------------------------


@pytest.mark.parametrize(("policy", "expected"), [("reject", "quarantine"),
                                                  ("quarantine", "none"), ("none", "none")])
def test_4_7_t_y_applies_one_level_lower(policy: str, expected: str) -> None:
    z = zone({"_dmarc.example.com": f"v=DMARC1; p={policy}; t=y"})
    r = run(z, "example.com")
    assert r.verdict == "fail" and r.requested == policy and r.disposition == expected
    assert r.testing


def test_4_7_t_n_applies_the_policy() -> None:
    z = zone({"_dmarc.example.com": "v=DMARC1; p=reject; t=n"})
    assert run(z, "example.com").disposition == "reject"


def test_4_7_t_y_on_sp() -> None:
    z = zone({"_dmarc.example.com": "v=DMARC1; p=none; sp=reject; t=y"},
             a_example_com="192.0.2.1")
    r = run(z, "a.example.com")
    assert r.policy == "sp" and r.disposition == "quarantine"


# -- section 4.4: the alignment matrix -------------------------------------------------------

ORGS = {"_dmarc.example.com": "v=DMARC1; p=reject"}


@pytest.mark.parametrize(("mode", "author", "identifier", "aligned"), [
    ("r", "example.com", "example.com", True),
    ("r", "news.example.com", "foo.example.com", True),   # Table 1, relaxed
    ("r", "example.com", "mail.example.com", True),
    ("r", "news.example.com", "example.com", True),
    ("r", "news.example.com", "foo.example.net", False),  # Table 1, none
    ("r", "example.com", "example.com.evil.test", False),
    ("s", "news.example.com", "news.example.com", True),  # Table 1, strict
    ("s", "NEWS.example.com", "news.EXAMPLE.com", True),  # case-insensitive (RFC 4343)
    ("s", "news.example.com", "foo.example.com", False),
    ("s", "example.com", "mail.example.com", False),
    ("s", "mail.example.com", "example.com", False),
])
@pytest.mark.parametrize("mechanism", ["spf", "dkim"])
def test_4_4_alignment_matrix(mechanism: str, mode: str, author: str, identifier: str,
                              aligned: bool) -> None:
    tag = "aspf" if mechanism == "spf" else "adkim"
    z = zone({"_dmarc.example.com": f"v=DMARC1; p=reject; {tag}={mode}"},
             news_example_com="192.0.2.1")
    if mechanism == "spf":
        r = run(z, author, spf=identifier)
    else:
        r = run(z, author, dkim=((identifier, "pass"),))
    assert r.verdict == ("pass" if aligned else "fail")
    assert (r.spf_aligned if mechanism == "spf" else r.dkim_aligned) is aligned
    row = r.alignments[0]
    assert row.mechanism == mechanism and row.aligned is aligned
    assert row.mode == ("strict" if mode == "s" else "relaxed")


def test_4_4_modes_are_independent() -> None:
    z = zone({"_dmarc.example.com": "v=DMARC1; p=reject; aspf=s; adkim=r"})
    r = run(z, "example.com", spf="mail.example.com", dkim=(("mail.example.com", "pass"),))
    assert not r.spf_aligned and r.dkim_aligned and r.verdict == "pass"


@pytest.mark.parametrize("result", ["fail", "softfail", "neutral", "none", "temperror"])
def test_4_4_2_only_an_spf_pass_is_an_identifier(result: str) -> None:
    r = run(zone(ORGS), "example.com", spf="example.com", spf_result=result)
    assert r.verdict == "fail" and not r.spf_aligned
    assert "did not pass" in r.alignments[0].reason


def test_4_4_1_any_aligned_dkim_signature_passes() -> None:
    r = run(zone(ORGS), "example.com", dkim=(("other.example.net", "pass"),
                                             ("example.com", "fail"),
                                             ("mail.example.com", "pass")))
    assert r.verdict == "pass" and r.dkim_aligned
    assert [a.aligned for a in r.alignments] == [False, False, True]


def test_4_4_1_a_failed_aligned_signature_does_not_count() -> None:
    r = run(zone(ORGS), "example.com", dkim=(("example.com", "fail"),))
    assert r.verdict == "fail" and not r.dkim_aligned


def test_4_4_2_the_helo_identity_is_not_used() -> None:
    helo = SPFResult(verdict="pass", summary="t", ip="192.0.2.1", domain="example.com",
                     sender="postmaster@example.com", identity="helo")
    r = evaluate(message("a@example.com"), mail_from="", spf=helo, dkim=None,
                 resolver=zone(ORGS))
    assert r.verdict == "fail" and r.alignments == ()


def test_5_3_5_no_identifiers_at_all_fails() -> None:
    r = run(zone(ORGS), "example.com")
    assert r.verdict == "fail" and r.disposition == "reject" and r.alignments == ()


def test_4_10_2_relaxed_alignment_with_a_psd_boundary() -> None:
    z = zone({"_dmarc.co.example": "v=DMARC1; p=none; psd=y",
              "_dmarc.shop.co.example": "v=DMARC1; p=reject"})
    assert run(z, "shop.co.example", spf="rival.co.example").verdict == "fail"
    assert run(z, "shop.co.example", spf="mail.shop.co.example").verdict == "pass"


def test_4_10_2_relaxed_alignment_without_any_record_for_the_identifier() -> None:
    """An identifier under no record is its own Organizational Domain (mailauth 6.0)."""
    z = zone({"_dmarc.shop.test": "v=DMARC1; p=reject; psd=n"})
    assert run(z, "shop.test", spf="bounce.other.test").verdict == "fail"
    assert run(z, "shop.test", spf="bounce.shop.test").verdict == "pass"


# -- section 5.3.1: the From header field ----------------------------------------------------


def evaluate_raw(raw: bytes, z: ZoneSet | None = None) -> DMARCResult:
    return evaluate(raw, mail_from="x@example.com", spf=spf_pass("example.com"), dkim=None,
                    resolver=z or zone(ORGS))


def test_5_3_1_no_from_field() -> None:
    r = evaluate_raw(b"To: bob@example.net\r\nSubject: x\r\n\r\nbody\r\n")
    assert r.verdict == "permerror" and r.from_domain is None and "no From" in r.summary


def test_5_3_1_from_without_domain() -> None:
    r = evaluate_raw(message("Alice <alice>"))
    assert r.verdict == "permerror" and "has no domain" in r.summary


def test_5_3_1_empty_from() -> None:
    r = evaluate_raw(message(""))
    assert r.verdict == "permerror" and r.from_domain is None


def test_5_3_1_several_addresses_several_domains() -> None:
    r = evaluate_raw(message("a@example.com, b@evil.test"))
    assert r.verdict == "permerror" and "2 domains" in r.summary
    assert r.from_addresses == ("a@example.com", "b@evil.test")
    assert r.disposition == "none"


def test_5_3_1_several_addresses_one_domain_is_one_author_domain() -> None:
    r = evaluate_raw(message("a@example.com, B@Example.COM"))
    assert r.verdict == "pass" and r.from_domain == "example.com"


def test_4_4_several_from_fields() -> None:
    r = evaluate_raw(message("a@example.com", "a@example.com"))
    assert r.verdict == "permerror" and "several From" in r.summary


def test_5_3_1_display_name_does_not_count() -> None:
    r = evaluate_raw(message('"ceo@bank.example" <mallory@example.com>'))
    assert r.from_domain == "example.com" and r.verdict == "pass"


def test_5_3_1_u_label_becomes_an_a_label() -> None:
    z = zone({"_dmarc.xn--bcher-kva.example": "v=DMARC1; p=reject"})
    raw = "From: a@bücher.example\r\n\r\nx\r\n".encode()
    r = evaluate(raw, mail_from="", spf=None, dkim=None, resolver=z)
    assert r.from_domain == "xn--bcher-kva.example" and r.verdict == "fail"


# -- results: rendering, Authentication-Results, the PSL method -------------------------------


def test_result_renders_text_html_and_trace_in_words() -> None:
    z = zone({"_dmarc.example.com": "v=DMARC1; p=reject; t=y"})
    r = run(z, "mail.example.com", spf="other.example.net")
    text = str(r)
    assert "DMARC fail for mail.example.com: disposition quarantine" in text
    assert "DNS Tree Walk" in text and "Trace:" in text and "t=y testing mode" in text
    assert "RFC 9989 section 4.10.1" in text
    assert "<table>" in r._repr_html_() and "Identifier alignment" in r._repr_html_()
    assert "discovery" in str(discover("mail.example.com", z)).lower()


def test_trace_says_which_method_is_in_use() -> None:
    z = zone(ORGS)
    assert "DNS Tree Walk" in run(z, "example.com").trace[0].text
    assert "public-suffix list" in run(z, "example.com", method="psl").trace[0].text


@pytest.mark.parametrize(("spf_result", "verdict"), [("pass", "pass"), ("fail", "fail")])
def test_authres_entry_parses(spf_result: str, verdict: str) -> None:
    r = run(zone(ORGS), "example.com", spf="example.com", spf_result=spf_result)
    entry = r.authres()
    assert entry.startswith(f"dmarc={verdict} (") and "header.from=example.com" in entry
    value = format_authres("mx.lab.test", extra=[entry])
    parsed = parse_authres(value)
    assert value and parsed is not None


def test_authres_policy_property() -> None:
    r = run(zone(ORGS), "example.com")
    assert "policy.dmarc=reject" in r.authres()
    assert "policy.dmarc" not in run(ZoneSet.empty(), "example.com").authres()


def test_unknown_method_is_refused() -> None:
    with pytest.raises(ValueError):
        discover("example.com", ZoneSet.empty(), method="guess")


# -- the lab public-suffix list (RFC 7489 section 3.2) ----------------------------------------


@pytest.mark.parametrize(("domain", "org"), [
    ("northwind.test", "northwind.test"),
    ("mail.northwind.test", "northwind.test"),
    ("a.b.c.example.com", "example.com"),
    ("shop.co.example", "shop.co.example"),
    ("www.shop.co.example", "shop.co.example"),
    ("co.example", "co.example"),
    ("test", "test"),
    ("a.b.sites.example", "a.b.sites.example"),      # wildcard: b.sites.example is a suffix
    ("x.www.sites.example", "www.sites.example"),     # exception beats the wildcard
    ("host.unlisted", "host.unlisted"),               # implicit rule "*"
    ("a.host.unlisted", "host.unlisted"),
])
def test_psl_organizational_domain(domain: str, org: str) -> None:
    assert lab_public_suffix_list().organizational_domain(domain) == org
    assert organizational_domain(domain, None, method="psl") == org


def test_psl_file_is_in_the_real_format() -> None:
    text = dmarc.PSL_PATH.read_text()
    assert "===BEGIN ICANN DOMAINS===" in text and "===END ICANN DOMAINS===" in text
    psl = PublicSuffixList(text)
    assert {"test", "example", "com", "net", "org", "arpa", "co.example"} <= psl.rules


def test_7489_psl_discovery_asks_at_most_two_names() -> None:
    z = Counting(zone({"_dmarc.example.com": "v=DMARC1; p=none; sp=quarantine"},
                      a_b_example_com="192.0.2.1"))
    d = discover("a.b.example.com", z, method="psl")
    assert d.queries == ("_dmarc.a.b.example.com", "_dmarc.example.com")
    assert d.organizational_domain == "example.com" and d.method == "psl"
    r = run(z.inner, "a.b.example.com", method="psl")
    assert r.policy == "sp" and r.disposition == "quarantine"


def test_7489_psl_does_not_walk_to_the_tld() -> None:
    z = zone({"_dmarc.com": "v=DMARC1; p=reject; psd=y"})
    assert discover("a.example.com", z, method="psl").verdict == "none"
    assert discover("a.example.com", z).verdict == "found"


# -- the lab world ---------------------------------------------------------------------------


def test_lab_world_discovery(world: ZoneSet) -> None:
    """The lab serves no zone for test or example: REFUSED there reads as no record."""
    for domain in ("northwind.test", "campus.test", "mailcloud.example", "phisher.example"):
        d = discover(domain, world)
        assert d.verdict in ("found", "none") and d.organizational_domain == domain
    northwind = discover("northwind.test", world)
    if northwind.record is not None:  # the reports engineer's zones publish it
        assert northwind.record.p == "reject" and "REFUSED" in str(northwind)
        lists = discover("lists.campus.test", world)
        assert lists.record_domain == "campus.test"
        assert lists.organizational_domain == "campus.test"


def test_5_3_6_servfail_is_not_read_as_refused() -> None:
    z = zone({"_dmarc.example.com": "v=DMARC1; p=reject"})
    z.fail("_dmarc.com", "servfail")
    assert discover("example.com", z).verdict == "temperror"
    z.clear_failures()
    z.fail("_dmarc.com", "timeout")
    assert discover("example.com", z).verdict == "temperror"


def test_import_is_cheap() -> None:
    code = ("import sys, labsupport.auth.dmarc; "
            "print(sorted(m for m in ('matplotlib', 'ipywidgets', 'labsupport.auth.dkim', "
            "'labsupport.auth.spf', 'cryptography') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                          text=True, check=True)
    assert done.stdout.strip() == "[]"


def test_public_names_are_there() -> None:
    for name in dmarc.__all__:
        assert hasattr(dmarc, name), name


@pytest.mark.parametrize("sender", ["a@[192.0.2.1]", "a@bad..example.com", "a@-x.example.com",
                                    "a@exa!mple.com"])
def test_5_3_1_from_domain_that_is_not_a_domain_name(sender: str) -> None:
    r = evaluate(f"From: {sender}\r\n\r\nx\r\n", mail_from="", spf=None, dkim=None,
                 resolver=zone(ORGS))
    assert r.verdict == "permerror" and r.disposition == "none"


def test_B_3_1_smtp_session_example() -> None:
    z = zone({"_dmarc.example.com": "v=DMARC1; p=reject; aspf=r; "
                                    "rua=mailto:dmarc-feedback@example.com"})
    r = run(z, "example.com", spf="mail.example.com", dkim=(("example.com", "pass"),))
    assert r.verdict == "pass" and r.spf_aligned and r.dkim_aligned
    assert r.disposition == "none" and r.requested == "reject"


def test_4_10_1_an_organizational_domain_the_shortcut_skipped_is_asked() -> None:
    """psd=y at a 7-label name: the Organizational Domain (8 labels) was never on the walk,
    so its record is asked for before falling back to the PSD's."""
    author = "a.b.c.d.e.f.g.h.test"
    z = Counting(zone({"_dmarc.c.d.e.f.g.h.test": "v=DMARC1; p=none; psd=y",
                       "_dmarc.b.c.d.e.f.g.h.test": "v=DMARC1; p=reject"}))
    d = discover(author, z)
    assert d.organizational_domain == "b.c.d.e.f.g.h.test"
    assert d.record_domain == "b.c.d.e.f.g.h.test" and d.record is not None
    assert d.queries == (f"_dmarc.{author}", "_dmarc.c.d.e.f.g.h.test",
                         "_dmarc.b.c.d.e.f.g.h.test")


def test_7489_psl_method_has_no_np() -> None:
    z = zone({"_dmarc.example.com": "v=DMARC1; p=none; sp=quarantine; np=reject"})
    assert run(z, "ghost.example.com", method="psl").policy == "sp"
    assert run(z, "ghost.example.com").policy == "np"
