"""labsupport.auth.spf and labsupport.auth.spf_macros, rule by rule, on small hand-built zones.

Each test names the rule of RFC 7208 it checks. The OpenSPF suite runs in
test_spf_conformance.py, the cross-check with pyspf in test_spf_oracle.py and the
property-based tests in test_spf_properties.py.
"""

from __future__ import annotations

import ipaddress
import subprocess
import sys
from pathlib import Path
from typing import Any

import dns.exception
import dns.resolver
import pytest

import labsupport
from labsupport.auth.spf import (
    DEFAULT_EXPLANATION,
    MAX_DNS_TERMS,
    RESULTS,
    SPFArgumentError,
    SPFRecord,
    SPFResult,
    SPFSyntaxError,
    check_host,
    domain_problem,
    is_spf_record,
    parse_record,
    spf_verdict,
)
from labsupport.auth.spf_macros import (
    MacroContext,
    MacroSyntaxError,
    expand,
    parse_domain_spec,
    parse_macro_string,
    truncate_domain,
)
from labsupport.dns.zone import ZoneSet

ROOT = Path(__file__).resolve().parents[2]

Records = dict[str, str | list[tuple[str, Any]]]


def zone(records: Records) -> ZoneSet:
    """A zone from {name: TXT text, or [(type, value), ...]}."""
    zones = ZoneSet.empty()
    for name, entries in records.items():
        if isinstance(entries, str):
            entries = [("TXT", entries)]
        for rdtype, value in entries:
            zones.add(name, rdtype, value)
    return zones


def check(records: Records, ip: str = "192.0.2.10", domain: str = "example.test",
          sender: str | None = None, **options: Any) -> SPFResult:
    zones = zone(records)
    return check_host(ip, domain, sender or f"alice@{domain}", resolver=zones,
                      **{"helo": "mail.example.test", **options})


def verdict(record: str, ip: str = "192.0.2.10", extra: Records | None = None,
            **options: Any) -> str:
    return check({"example.test": record, **(extra or {})}, ip, **options).verdict


def texts(result: SPFResult) -> list[str]:
    return [step.text for step in result.trace]


# -- 2.3, 2.4: the identities ---------------------------------------------------------------


def test_2_4_mail_from_identity_is_checked() -> None:
    zones = zone({"example.test": "v=spf1 ip4:192.0.2.10 -all"})
    result = spf_verdict("192.0.2.10", "<alice@example.test>", "mail.other.test", zones)
    assert result.verdict == "pass" and result.identity == "mailfrom"
    assert result.domain == "example.test" and result.sender == "alice@example.test"


def test_2_4_empty_reverse_path_checks_postmaster_at_helo() -> None:
    """RFC 7208 section 2.4: a null reverse-path means the HELO identity."""
    zones = zone({"mail.example.test": "v=spf1 a -all",
                  "mail.example.test.": [("A", "192.0.2.10")]})
    for empty in ("", "<>", None):
        result = spf_verdict("192.0.2.10", empty, "mail.example.test", zones)
        assert result.verdict == "pass" and result.identity == "helo"
        assert result.sender == "postmaster@mail.example.test"
        assert result.trace[0].rfc == "RFC 7208 section 2.4"


def test_2_3_helo_check_first_a_fail_is_conclusive() -> None:
    zones = zone({"mail.example.test": "v=spf1 -all",
                  "example.test": "v=spf1 +all"})
    result = spf_verdict("192.0.2.10", "a@example.test", "mail.example.test", zones,
                         check_helo=True)
    assert result.verdict == "fail" and result.identity == "helo"
    assert "conclusive" in texts(result)[-1]


def test_2_3_helo_check_first_otherwise_mail_from_decides() -> None:
    zones = zone({"mail.example.test": "v=spf1 ?all", "example.test": "v=spf1 +all"})
    result = spf_verdict("192.0.2.10", "a@example.test", "mail.example.test", zones,
                         check_helo=True)
    assert result.verdict == "pass" and result.identity == "mailfrom"
    assert result.helo_check is not None and result.helo_check.verdict == "neutral"
    assert "HELO check" in result.text()


def test_2_4_mail_from_without_a_domain_is_none() -> None:
    result = spf_verdict("192.0.2.10", "alice", "mail.example.test", ZoneSet.empty())
    assert result.verdict == "none" and "no domain" in result.summary


# -- 4.3: initial processing --------------------------------------------------------------


@pytest.mark.parametrize("domain", ["localhost", "a..b.test", "x" * 64 + ".test", "",
                                    "[192.0.2.1]", "bücher.test", "a." * 130 + "test"])
def test_4_3_malformed_or_single_label_domain_is_none_without_a_query(domain: str) -> None:
    zones = ZoneSet.empty()
    result = check_host("192.0.2.1", domain, "a@b.test", resolver=zones)
    assert result.verdict == "none" and result.dns_queries == 0
    assert "RFC 7208 section 4.3" in result.summary
    assert domain_problem(domain)


def test_4_3_a_trailing_dot_is_fine() -> None:
    assert domain_problem("example.test.") is None
    assert verdict("v=spf1 -all", domain="example.test.") == "fail"


def test_4_3_missing_local_part_is_postmaster() -> None:
    result = check({"example.test": "v=spf1 -all exp=why.example.test",
                    "why.example.test": "%{l} via %{s}"}, sender="@example.test")
    assert result.explanation == "postmaster via postmaster@example.test"


def test_4_3_nxdomain_is_none() -> None:
    result = check({}, domain="nowhere.test")
    assert result.verdict == "none" and result.dns_queries == 1


# -- 4.4: record lookup ------------------------------------------------------------------


@pytest.mark.parametrize("how", ["timeout", "servfail"])
def test_4_4_dns_failure_of_the_record_lookup_is_temperror(how: str) -> None:
    zones = zone({"example.test": "v=spf1 +all"})
    zones.fail("example.test", how)
    result = check_host("192.0.2.1", "example.test", "a@example.test", resolver=zones)
    assert result.verdict == "temperror" and "RFC 7208 section 4.4" in result.summary


def test_4_4_only_txt_is_consulted_not_type_spf() -> None:
    assert check({"example.test": [("SPF", "v=spf1 +all")]}).verdict == "none"
    assert check({"example.test": [("SPF", "v=spf1 +all"), ("TXT", "v=spf1 -all")]}
                 ).verdict == "fail"


def test_4_4_a_resolver_outside_the_contract_is_a_temperror_not_a_crash() -> None:
    class Broken:
        def resolve(self, qname: Any, rdtype: Any) -> Any:
            raise RuntimeError("socket on fire")

    result = check_host("192.0.2.1", "example.test", "a@example.test", resolver=Broken())
    assert result.verdict == "temperror" and "socket on fire" in result.text()


def test_4_4_an_answer_that_cannot_be_read_is_a_temperror() -> None:
    class Odd:
        def resolve(self, qname: Any, rdtype: Any) -> Any:
            return [object()]

    result = check_host("192.0.2.1", "example.test", "a@example.test", resolver=Odd())
    assert result.verdict == "temperror" and "could not be read" in result.text()


def test_4_4_other_dns_exceptions_are_temperrors() -> None:
    class Yx:
        def resolve(self, qname: Any, rdtype: Any) -> Any:
            raise dns.resolver.YXDOMAIN

    assert check_host("192.0.2.1", "example.test", "a@e.test", resolver=Yx()).verdict == \
        "temperror"


# -- 4.5: selecting the record -----------------------------------------------------------


def test_4_5_no_spf_among_txt_records_is_none() -> None:
    result = check({"example.test": [("TXT", "google-site-verification=abc"),
                                     ("TXT", "v=spf10 +all"), ("TXT", "v=spf1x")]})
    assert result.verdict == "none"


def test_4_5_version_is_case_insensitive_and_alone_is_neutral() -> None:
    assert verdict("V=SpF1 -all") == "fail"
    assert verdict("v=spf1") == "neutral"
    assert is_spf_record(b"v=spf1") and is_spf_record("v=spf1 a")
    assert not is_spf_record("v=spf1\ta") and not is_spf_record("v=spf12")


def test_4_5_two_spf_records_are_a_permerror() -> None:
    result = check({"example.test": [("TXT", "v=spf1 -all"), ("TXT", "v=spf1 +all")]})
    assert result.verdict == "permerror" and "2 SPF records" in result.summary


def test_3_3_strings_of_one_record_are_joined_without_spaces() -> None:
    assert check({"example.test": [("TXT", ["v=spf1 ip4:192.0.2.", "10 -all"])]}
                 ).verdict == "pass"
    assert check({"example.test": [("TXT", ["v=spf1", "+all"])]}).verdict == "none"


def test_3_1_non_ascii_record_is_a_permerror_other_txt_is_ignored() -> None:
    assert verdict("v=spf1 a:caf\u00e9.test -all") == "permerror"
    assert check({"example.test": [("TXT", "v=spf1 -all"), ("TXT", "\u00e9t\u00e9")]}
                 ).verdict == "fail"


# -- 4.6: reading the record whole, then left to right ----------------------------------------


def test_4_6_a_syntax_error_anywhere_is_a_permerror_even_after_a_match() -> None:
    result = check({"example.test": "v=spf1 +all moo"})
    assert result.verdict == "permerror" and result.dns_queries == 1
    assert "'moo' is not a mechanism" in result.summary
    assert [t.outcome for t in result.terms] == ["syntax error"]


def test_4_6_1_terms_are_separated_by_spaces_only() -> None:
    assert verdict("v=spf1   ip4:192.0.2.10    -all  ") == "pass"
    assert verdict("v=spf1 ip4:192.0.2.10\t-all") == "permerror"
    assert verdict("v=spf1 ip4:192.0.2.10,-all") == "permerror"


def test_4_6_2_first_match_wins_and_qualifiers_give_the_result() -> None:
    for qualifier, result in (("", "pass"), ("+", "pass"), ("-", "fail"), ("~", "softfail"),
                              ("?", "neutral")):
        assert verdict(f"v=spf1 {qualifier}ip4:192.0.2.0/24 -all") == result
    result = check({"example.test": "v=spf1 ip4:192.0.2.0/24 -all a"})
    assert [t.outcome for t in result.terms] == ["match: pass", "not reached", "not reached"]
    assert result.mechanism == "ip4:192.0.2.0/24" and result.mechanism_domain == "example.test"


def test_4_7_no_match_and_no_redirect_is_neutral() -> None:
    result = check({"example.test": "v=spf1 ip4:198.51.100.0/24"})
    assert result.verdict == "neutral" and "RFC 7208 section 4.7" in result.summary


# -- 4.6.4: the limits ---------------------------------------------------------------------


def test_4_6_4_ten_dns_terms_are_allowed_the_eleventh_is_a_permerror() -> None:
    hosts: Records = {f"h{i}.example.test": [("A", "203.0.113.1")] for i in range(11)}
    ten = " ".join(f"a:h{i}.example.test" for i in range(10))
    assert check({"example.test": f"v=spf1 {ten} ip4:192.0.2.10", **hosts}).verdict == "pass"
    result = check({"example.test": f"v=spf1 {ten} a:h10.example.test ip4:192.0.2.10",
                    **hosts})
    assert result.verdict == "permerror" and result.dns_terms == MAX_DNS_TERMS
    assert "Too many DNS lookups" in result.summary
    assert "DNS-querying term 10 of 10" in " ".join(texts(result))


def test_4_6_4_terms_count_across_includes_and_redirects_but_ip_and_all_do_not() -> None:
    hosts: Records = {f"h{i}.example.test": [("A", "203.0.113.1")] for i in range(10)}
    records: Records = {
        "example.test": "v=spf1 ip4:198.51.100.1 ip6:2001:db8::1 a:h0.example.test "
                        "include:inc.example.test redirect=r.example.test",
        "inc.example.test": "v=spf1 " + " ".join(f"a:h{i}.example.test" for i in range(1, 5)),
        "r.example.test": "v=spf1 " + " ".join(f"a:h{i}.example.test" for i in range(5, 8))
                          + " -all",
        **hosts,
    }
    result = check(records)
    assert result.verdict == "fail" and result.dns_terms == 1 + 1 + 4 + 1 + 3


def test_4_6_4_two_void_lookups_are_allowed_the_third_is_a_permerror() -> None:
    assert verdict("v=spf1 a:gone1.test a:gone2.test ip4:192.0.2.10") == "pass"
    result = check({"example.test": "v=spf1 a:gone1.test mx:gone2.test exists:gone3.test "
                                    "ip4:192.0.2.10"})
    assert result.verdict == "permerror" and result.void_lookups == 3
    assert "void lookup" in result.summary


def test_4_6_4_the_void_limit_is_configurable() -> None:
    assert verdict("v=spf1 a:gone1.test a:gone2.test a:gone3.test ip4:192.0.2.10",
                   max_void_lookups=3) == "pass"


def test_4_6_4_more_than_ten_mx_names_is_a_permerror() -> None:
    mx = [("MX", f"{i} h{i}.example.test.") for i in range(11)]
    result = check({"example.test": [("TXT", "v=spf1 mx"), *mx]})
    assert result.verdict == "permerror" and "11 MX records" in result.summary
    hosts: Records = {f"h{i}.example.test": [("A", f"203.0.113.{i}")] for i in range(9)}
    result = check({"example.test": [("TXT", "v=spf1 mx"), *mx[:10]], **hosts,
                    "h9.example.test": [("A", "192.0.2.10")]})
    assert result.verdict == "pass" and result.dns_queries == 1 + 1 + 10


def test_4_6_4_each_lookup_that_finds_nothing_is_a_void_lookup() -> None:
    """As Mail::SPF and pyspf count them: an mx term whose mail servers have no address
    adds one void lookup per server asked."""
    mx = [("MX", f"{i} h{i}.example.test.") for i in range(3)]
    result = check({"example.test": [("TXT", "v=spf1 mx ?all"), *mx]})
    assert result.verdict == "permerror" and result.void_lookups == 3


def test_4_6_4_only_the_first_ten_ptr_names_are_checked() -> None:
    names = [("PTR", f"h{i}.example.test.") for i in range(11)]
    records: Records = {"example.test": "v=spf1 ptr -all",
                        "10.2.0.192.in-addr.arpa": names,
                        **{f"h{i}.example.test": [("A", "203.0.113.1")] for i in range(10)},
                        "h10.example.test": [("A", "192.0.2.10")]}
    result = check(records)
    assert result.verdict == "fail"
    assert any("only the first 10" in t for t in texts(result))


def test_4_6_4_include_and_redirect_loops_are_permerrors() -> None:
    result = check({"example.test": "v=spf1 include:b.example.test",
                    "b.example.test": "v=spf1 include:example.test"})
    assert result.verdict == "permerror" and "loop" in result.summary
    assert "example.test -> b.example.test -> example.test" in result.summary
    result = check({"example.test": "v=spf1 redirect=%{d}"})
    assert result.verdict == "permerror" and "loop" in result.summary


def test_4_6_4_the_explanation_lookup_is_no_void_lookup() -> None:
    result = check({"example.test": "v=spf1 a:gone1.test a:gone2.test -all "
                                    "exp=gone3.test"})
    assert result.verdict == "fail" and result.void_lookups == 2
    assert result.explanation == "example.test does not authorize 192.0.2.10 to send " \
                                 "mail for it (SPF fail)"


# -- 5: the mechanisms ---------------------------------------------------------------------


def test_5_1_all_matches_and_takes_no_argument() -> None:
    assert verdict("v=spf1 -all") == "fail"
    for bad in ("-all.", "-all:x", "-all/8", "-alll"):
        assert verdict(f"v=spf1 {bad}") == "permerror"


@pytest.mark.parametrize(("inner", "expected"), [
    ("v=spf1 +all", "pass"),        # pass: the include matches
    ("v=spf1 -all", "neutral"),     # fail: no match
    ("v=spf1 ~all", "neutral"),     # softfail: no match
    ("v=spf1 ?all", "neutral"),     # neutral: no match
    ("v=spf1 moo", "permerror"),    # permerror: permerror
    ("not spf", "permerror"),       # none: permerror
])
def test_5_2_include_turns_each_result_into_match_no_match_or_error(
        inner: str, expected: str) -> None:
    result = check({"example.test": "v=spf1 include:inc.example.test ?all",
                    "inc.example.test": inner})
    assert result.verdict == expected
    assert [n.via for n in result.chain] == ["check_host", "include"]


def test_5_2_include_temperror_is_temperror() -> None:
    zones = zone({"example.test": "v=spf1 include:inc.example.test -all"})
    zones.fail("inc.example.test", "timeout")
    assert check_host("192.0.2.1", "example.test", "a@example.test",
                      resolver=zones).verdict == "temperror"


def test_5_2_include_needs_a_domain() -> None:
    assert verdict("v=spf1 include -all") == "permerror"
    assert verdict("v=spf1 include: -all") == "permerror"
    assert verdict("v=spf1 include:example.test/24 -all") == "permerror"


def test_5_3_a_matches_the_domains_addresses_with_prefix_lengths() -> None:
    extra: Records = {"example.test.": [("A", "192.0.2.200"), ("AAAA", "2001:db8::200")],
                      "other.test": [("A", "198.51.100.1")]}
    assert verdict("v=spf1 a -all", "192.0.2.10", extra) == "fail"
    assert verdict("v=spf1 a/24 -all", "192.0.2.10", extra) == "pass"
    assert verdict("v=spf1 a:other.test -all", "198.51.100.1", extra) == "pass"
    assert verdict("v=spf1 a//64 -all", "2001:db8::1", extra) == "pass"
    assert verdict("v=spf1 a/24 -all", "2001:db8::1", extra) == "fail"
    assert verdict("v=spf1 a/24//128 -all", "2001:db8::200", extra) == "pass"
    for bad in ("a/33", "a//129", "a/24/64", "a:", "a:other.test:25", "a:1.2.3.4",
                "a:museum", "a:example.-test", "a/032"):
        assert verdict(f"v=spf1 {bad} -all", extra=extra) == "permerror", bad


def test_5_3_a_with_no_address_does_not_match_even_with_slash_zero() -> None:
    result = check({"example.test": "v=spf1 a/0 -all"})
    assert result.verdict == "fail" and result.void_lookups == 1


def test_5_4_mx_matches_the_mail_servers_addresses_and_has_no_implicit_mx() -> None:
    records: Records = {"example.test": [("TXT", "v=spf1 mx -all"),
                                         ("MX", "10 mx1.example.test."),
                                         ("MX", "20 mx2.example.test.")],
                        "mx1.example.test": [("A", "192.0.2.25")],
                        "mx2.example.test": [("A", "192.0.2.26")]}
    assert check(records, "192.0.2.26").verdict == "pass"
    assert check(records, "192.0.2.27").verdict == "fail"
    implicit = {"example.test": [("TXT", "v=spf1 mx -all"), ("A", "192.0.2.10")]}
    assert check(implicit).verdict == "fail"


def test_5_4_mx_skips_a_null_mx_and_a_dns_error_is_temperror() -> None:
    records: Records = {"example.test": [("TXT", "v=spf1 mx ?all"), ("MX", "0 .")]}
    assert check(records).verdict == "neutral"
    zones = zone({"example.test": [("TXT", "v=spf1 mx -all"), ("MX", "10 mx.example.test.")]})
    zones.fail("mx.example.test", "servfail")
    assert check_host("192.0.2.1", "example.test", "a@example.test",
                      resolver=zones).verdict == "temperror"


def test_5_5_ptr_matches_validated_names_under_the_target() -> None:
    records: Records = {
        "example.test": "v=spf1 ptr -all",
        "10.2.0.192.in-addr.arpa": [("PTR", "forged.example.test."),
                                    ("PTR", "mail.other.test."),
                                    ("PTR", "mail.example.test.")],
        "forged.example.test": [("A", "203.0.113.9")],
        "mail.example.test": [("A", "192.0.2.10")],
    }
    result = check(records)
    assert result.verdict == "pass"
    assert any("not example.test or below it" in t for t in texts(result))
    assert check({**records, "example.test": "v=spf1 ptr:other.test -all"}).verdict == "fail"


def test_5_5_ptr_dns_errors_are_no_match_not_temperror() -> None:
    zones = zone({"example.test": "v=spf1 ptr ?all",
                  "10.2.0.192.in-addr.arpa": [("PTR", "mail.example.test.")]})
    zones.fail("mail.example.test", "timeout")
    assert check_host("192.0.2.10", "example.test", "a@example.test",
                      resolver=zones).verdict == "neutral"
    zones.fail("10.2.0.192.in-addr.arpa", "servfail")
    assert check_host("192.0.2.10", "example.test", "a@example.test",
                      resolver=zones).verdict == "neutral"


def test_5_5_ptr_takes_no_prefix_length() -> None:
    assert verdict("v=spf1 ptr/24 -all") == "permerror"
    assert verdict("v=spf1 ptr: -all") == "permerror"


def test_5_6_ip4_and_ip6_networks() -> None:
    assert verdict("v=spf1 ip4:192.0.2.0/24 -all") == "pass"
    assert verdict("v=spf1 ip4:192.0.2.11 -all") == "fail"
    assert verdict("v=spf1 ip4:0.0.0.0/0 -all") == "pass"
    assert verdict("v=spf1 ip6:2001:db8::/32 -all", "2001:db8:5::1") == "pass"
    assert verdict("v=spf1 ip6:::/0 -all", "192.0.2.10") == "fail"   # ip6 never matches v4
    assert verdict("v=spf1 ip4:0.0.0.0/0 -all", "2001:db8::1") == "fail"
    for bad in ("ip4", "ip4:192.0.2", "ip4:192.0.2.1/33", "ip4:192.0.2.1/032",
                "ip4:192.0.02.1", "ip4:192.0.2.1//32", "ip4:192.0.2.1:25", "ip6:2001:db8::/129",
                "ip6:2001:db8::1//64", "ip6::CAFE::BABE", "ip6:fe80::1%eth0", "ip6"):
        assert verdict(f"v=spf1 {bad} -all") == "permerror", bad


def test_5_ipv4_mapped_ipv6_client_is_treated_as_ipv4() -> None:
    result = check({"example.test": "v=spf1 ip6:::ffff:0:0/96 ip4:192.0.2.10 -all"},
                   "::ffff:192.0.2.10")
    assert result.verdict == "pass" and result.ip == "192.0.2.10"
    assert result.mechanism == "ip4:192.0.2.10"


def test_5_7_exists_asks_for_an_a_record_even_for_ipv6_clients() -> None:
    records: Records = {"example.test": "v=spf1 exists:%{l}.ok.example.test -all",
                        "alice.ok.example.test": [("A", "127.0.0.2")]}
    assert check(records, "2001:db8::1").verdict == "pass"
    assert check(records, "2001:db8::1", sender="bob@example.test").verdict == "fail"
    assert verdict("v=spf1 exists -all") == "permerror"
    assert verdict("v=spf1 exists:example.test/24 -all") == "permerror"


def test_5_dns_errors_in_a_mechanism_are_temperror() -> None:
    zones = zone({"example.test": "v=spf1 a:slow.example.test -all"})
    zones.fail("slow.example.test", "timeout")
    result = check_host("192.0.2.1", "example.test", "a@example.test", resolver=zones)
    assert result.verdict == "temperror" and "timed out" in result.summary


def test_4_8_a_target_that_cannot_exist_in_dns_does_not_match() -> None:
    result = check({"example.test": "v=spf1 a:mail.example...test -all"})
    assert result.verdict == "fail" and result.dns_queries == 1


# -- 6: modifiers ---------------------------------------------------------------------------


def test_6_1_redirect_is_used_only_when_nothing_matched() -> None:
    records: Records = {"example.test": "v=spf1 ip4:192.0.2.10 redirect=r.example.test",
                        "r.example.test": "v=spf1 -all"}
    assert check(records).verdict == "pass"
    result = check(records, "192.0.2.11")
    assert result.verdict == "fail" and result.mechanism_domain == "r.example.test"
    assert [n.via for n in result.chain] == ["check_host", "redirect"]


def test_6_1_redirect_is_never_used_beside_all() -> None:
    result = check({"example.test": "v=spf1 redirect=r.example.test ~all"})
    assert result.verdict == "softfail" and result.dns_terms == 0
    assert any("redirect is never used" in t for t in texts(result))


def test_6_1_redirect_to_no_record_is_a_permerror() -> None:
    assert verdict("v=spf1 redirect=nowhere.test") == "permerror"
    assert verdict("v=spf1 redirect=") == "permerror"
    assert verdict("v=spf1 redirect=-all ?all") == "permerror"
    assert verdict("v=spf1 redirect:r.example.test") == "permerror"


def test_6_1_redirect_changes_the_domain_for_macros() -> None:
    records: Records = {"example.test": "v=spf1 redirect=r.example.test",
                        "r.example.test": [("TXT", "v=spf1 a -all"), ("A", "192.0.2.10")]}
    assert check(records).verdict == "pass"


def test_6_modifiers_may_appear_once_and_unknown_ones_are_ignored_but_checked() -> None:
    assert verdict("v=spf1 redirect=a.test redirect=a.test") == "permerror"
    assert verdict("v=spf1 -all exp=a.test exp=b.test") == "permerror"
    assert verdict("v=spf1 moo.cow-far_out=man:dog/cat -all") == "fail"
    assert verdict("v=spf1 foo=%abc -all") == "permerror"
    assert verdict("v=spf1 1up=foo -all") == "permerror"
    assert verdict("v=spf1 =all") == "permerror"
    assert verdict("v=spf1 default=+") == "neutral"


def test_6_2_the_explanation_is_fetched_and_expanded_for_a_fail() -> None:
    records: Records = {"example.test": "v=spf1 -all exp=why.example.test",
                        "why.example.test": [("TXT", ["%{i} is not one of %{d}'s ",
                                                      "servers (asked by %{r}, %{c})."])]}
    result = check(records, receiver="mx.receiver.test")
    assert result.verdict == "fail"
    assert result.explanation == ("192.0.2.10 is not one of example.test's servers "
                                  "(asked by mx.receiver.test, 192.0.2.10).")
    assert check({**records, "example.test": "v=spf1 ~all exp=why.example.test"}
                 ).explanation is None


@pytest.mark.parametrize("why", [
    [("TXT", "one"), ("TXT", "two")],  # more than one record
    [("A", "192.0.2.1")],              # no TXT record
    [("TXT", "100%")],                 # a syntax error in the text
    [("TXT", "caf\u00e9")],            # not ASCII
])
def test_6_2_a_faulty_explanation_falls_back_to_the_default(why: list[Any]) -> None:
    result = check({"example.test": "v=spf1 -all exp=why.example.test",
                    "why.example.test": why}, default_explanation="DEFAULT %{d}")
    assert result.verdict == "fail" and result.explanation == "DEFAULT example.test"


def test_6_2_an_empty_or_invalid_exp_is_a_permerror() -> None:
    assert verdict("v=spf1 exp= -all") == "permerror"
    assert verdict("v=spf1 exp=-all") == "permerror"
    assert verdict("v=spf1 -all exp=%{r}.example.test") == "permerror"


def test_6_2_include_ignores_its_exp_redirect_uses_the_target_s() -> None:
    records: Records = {
        "example.test": "v=spf1 include:inc.example.test -all exp=top.example.test",
        "inc.example.test": "v=spf1 -all exp=inc-why.example.test",
        "top.example.test": "top says no",
        "inc-why.example.test": "include says no",
        "r.example.test": "v=spf1 exp=top.example.test redirect=inc.example.test",
    }
    assert check(records).explanation == "top says no"
    assert check(records, domain="r.example.test").explanation == "include says no"


def test_6_2_the_default_explanation_is_a_macro_string() -> None:
    result = check({"example.test": "v=spf1 -all"})
    assert result.explanation == ("example.test does not authorize 192.0.2.10 to send "
                                  "mail for it (SPF fail)")
    assert "%{o}" in DEFAULT_EXPLANATION
    assert check({"example.test": "v=spf1 -all"}, default_explanation="%{bad").explanation \
        == "%{bad"


# -- 7: macros ------------------------------------------------------------------------------


def context(**changes: Any) -> MacroContext:
    values: dict[str, Any] = {
        "sender": "strong-bad@email.example.com", "local": "strong-bad",
        "sender_domain": "email.example.com", "domain": "email.example.com",
        "ip_dotted": "192.0.2.3", "ip_readable": "192.0.2.3", "ip_version": 4,
        "helo": "mx.example.org", "receiver": "rcv.example.net", "timestamp": 1400000000,
        "validated_name": lambda domain: "mx.example.org",
    }
    values.update(changes)
    return MacroContext(**values)


@pytest.mark.parametrize(("macro", "expanded"), [
    # RFC 7208 section 7.4, the examples
    ("%{s}", "strong-bad@email.example.com"),
    ("%{o}", "email.example.com"),
    ("%{d}", "email.example.com"),
    ("%{d4}", "email.example.com"),
    ("%{d3}", "email.example.com"),
    ("%{d2}", "example.com"),
    ("%{d1}", "com"),
    ("%{dr}", "com.example.email"),
    ("%{d2r}", "example.email"),
    ("%{l}", "strong-bad"),
    ("%{l-}", "strong.bad"),
    ("%{lr}", "strong-bad"),
    ("%{lr-}", "bad.strong"),
    ("%{l1r-}", "strong"),
    ("%{ir}.%{v}._spf.%{d2}", "3.2.0.192.in-addr._spf.example.com"),
    ("%{lr-}.lp._spf.%{d2}", "bad.strong.lp._spf.example.com"),
    ("%{ir}.%{v}.%{l1r-}.lp._spf.%{d2}", "3.2.0.192.in-addr.strong.lp._spf.example.com"),
    ("%{d2}.trusted-domains.example.net", "example.com.trusted-domains.example.net"),
    # the other letters, escapes and delimiters
    ("%{h}", "mx.example.org"),
    ("%{p}", "mx.example.org"),
    ("%{p2}", "example.org"),
    ("%{l+-}", "strong.bad"),
    ("%{d999}", "email.example.com"),
    ("%%%_%-", "% %20"),
    ("%{S}", "strong-bad%40email.example.com"),
])
def test_7_macro_expansion(macro: str, expanded: str) -> None:
    assert expand(parse_macro_string(macro), context()) == expanded


def test_7_explanation_only_letters_and_ipv6() -> None:
    six = context(ip_dotted=".".join("20010DB8000000000000000000000001"),
                  ip_readable="2001:db8::1", ip_version=6)
    spec = parse_macro_string("%{c} %{i} %{v} %{r} %{t}", explanation=True)
    assert expand(spec, six) == ("2001:db8::1 2.0.0.1.0.D.B.8.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0"
                                 ".0.0.0.0.0.0.0.1 ip6 rcv.example.net 1400000000")
    for letter in "crt":
        with pytest.raises(MacroSyntaxError, match="only in explanation"):
            parse_macro_string(f"%{{{letter}}}.example.com")


def test_7_upper_case_letters_are_url_escaped() -> None:
    spec = parse_macro_string("%{L}")
    assert expand(spec, context(local="~jack&jill=up-a_b3.c")) == "~jack%26jill%3Dup-a_b3.c"


@pytest.mark.parametrize("bad", ["%", "%a", "%(ir)", "%{", "%{ir", "%{x}", "%{d0}", "%{i2q}",
                                 "a b", "caf\u00e9", "tab\t"])
def test_7_1_macro_syntax_errors(bad: str) -> None:
    with pytest.raises(MacroSyntaxError):
        parse_macro_string(bad)


@pytest.mark.parametrize(("spec", "valid"), [
    ("example.com", True), ("example.com.", True), ("%{d}", True), ("foo.%{d}", True),
    ("_spf.%{d2}", True), ("foo.xn--zckzah", True), ("foo:bar/baz.example.com", True),
    ("com", False), ("museum.", False), ("foo.123", False), ("foo.-com", False),
    ("foo.com-", False), ("%{d}.", False), ("", False), ("example.com:8080", False),
])
def test_7_1_domain_spec_ends_with_a_macro_or_a_top_label(spec: str, valid: bool) -> None:
    if valid:
        parse_domain_spec(spec)
    else:
        with pytest.raises(MacroSyntaxError):
            parse_domain_spec(spec)


def test_7_3_long_expansions_lose_labels_on_the_left() -> None:
    long = ".".join(["label"] * 60) + ".example.com."
    shortened = truncate_domain(long)
    assert len(shortened) <= 253 and shortened.endswith("label.example.com")
    assert not shortened.startswith(".")
    assert truncate_domain("example.com.") == "example.com"


def test_7_macros_in_a_record_expand_with_the_current_domain() -> None:
    records: Records = {"example.test": "v=spf1 exists:%{ir}.%{v}.%{d} -all",
                        "10.2.0.192.in-addr.example.test": [("A", "127.0.0.2")]}
    result = check(records)
    assert result.verdict == "pass"
    assert any("expands to '10.2.0.192.in-addr.example.test'" in t for t in texts(result))


def test_7_3_p_macro_prefers_the_domain_and_falls_back_to_unknown() -> None:
    records: Records = {
        "example.test": "v=spf1 -all exp=why.example.test",
        "why.example.test": "from %{p}",
        "10.2.0.192.in-addr.arpa": [("PTR", "other.test."), ("PTR", "mx.example.test.")],
        "other.test": [("A", "192.0.2.10")],
        "mx.example.test": [("A", "192.0.2.10")],
    }
    assert check(records).explanation == "from mx.example.test"
    assert check(records, "192.0.2.11").explanation == "from unknown"


# -- the result: trace, renderings, picture ---------------------------------------------------


def _include_chain() -> SPFResult:
    return check({
        "example.test": "v=spf1 include:_spf.example.test redirect=r.example.test",
        "_spf.example.test": "v=spf1 ip4:198.51.100.0/24 ~all",
        "r.example.test": "v=spf1 include:cloud.test -all",
        "cloud.test": "v=spf1 ip4:192.0.2.0/24 -all",
    })


def test_trace_shows_terms_queries_counters_and_nesting() -> None:
    result = _include_chain()
    assert result.verdict == "pass" and result.mechanism == "include:cloud.test"
    lines = texts(result)
    assert lines[0].startswith("check_host(ip=192.0.2.10, domain=example.test")
    assert any(t.startswith("DNS example.test TXT? 1 TXT record") for t in lines)
    assert any("DNS-querying term 1 of 10" in t for t in lines)
    assert any("DNS-querying term 3 of 10" in t for t in lines)
    assert lines[-1].startswith("result: pass")
    depths = {s.text.split("?")[0]: s.depth for s in result.trace if s.kind == "query"}
    assert depths["DNS example.test TXT"] < depths["DNS _spf.example.test TXT"]
    assert depths["DNS cloud.test TXT"] > depths["DNS r.example.test TXT"]
    assert [(n.via, n.domain, n.result) for n in result.chain] == [
        ("check_host", "example.test", "pass"), ("include", "_spf.example.test", "softfail"),
        ("redirect", "r.example.test", "pass"), ("include", "cloud.test", "pass")]
    assert result.records[0] == ("example.test", "v=spf1 include:_spf.example.test "
                                                 "redirect=r.example.test")
    assert all(step.rfc is None or step.rfc.startswith("RFC") for step in result.trace)


def test_trace_says_why_evaluation_stopped() -> None:
    result = check({"example.test": "v=spf1 a:gone1.test a:gone2.test a:gone3.test -all"})
    assert result.trace[-2].text == "stop: permerror" and result.trace[-2].kind == "error"
    assert "void lookup 3 of 2" in " ".join(texts(result))


def test_renderings_text_html_and_the_terms_table() -> None:
    result = _include_chain()
    text = str(result)
    assert text.startswith("SPF pass for example.test (MAIL FROM) from 192.0.2.10")
    assert "counters: 3 of 10 DNS-querying terms" in text and "Trace:" in text
    page = result._repr_html_()
    assert "<table>" in page and "include:cloud.test" in page and "<details>" in page
    assert ["_spf.example.test" in row[0] for row in result.term_rows()].count(True) == 2
    hostile = check({"example.test": "v=spf1 -all exp=x.example.test",
                     "x.example.test": "<script>alert(1)</script>"})
    assert "<script>" not in hostile._repr_html_()


def test_plot_draws_the_include_redirect_tree() -> None:
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from labsupport.teach.plots import spf_tree

    figure = spf_tree(_include_chain())
    texts_drawn = [t.get_text() for t in figure.axes[0].texts]
    assert any(t.startswith("cloud.test") for t in texts_drawn)
    assert "include" in texts_drawn and "redirect" in texts_drawn
    plt.close(figure)
    lone = spf_tree(check({}, domain="nowhere.test"))
    assert lone.axes[0].texts
    plt.close(lone)


def test_importing_the_module_does_not_import_matplotlib() -> None:
    code = "import sys, labsupport.auth.spf; print('matplotlib' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=ROOT, check=True)
    assert done.stdout.strip() == "False"


def test_trace_off_gives_the_same_result_without_steps() -> None:
    loud = _include_chain()
    quiet = check_host("192.0.2.10", "example.test", "alice@example.test", resolver=zone({
        "example.test": "v=spf1 include:_spf.example.test redirect=r.example.test",
        "_spf.example.test": "v=spf1 ip4:198.51.100.0/24 ~all",
        "r.example.test": "v=spf1 include:cloud.test -all",
        "cloud.test": "v=spf1 ip4:192.0.2.0/24 -all"}), trace=False)
    assert quiet.trace == () and quiet.verdict == loud.verdict
    assert quiet.chain == loud.chain and quiet.dns_terms == loud.dns_terms


def test_results_are_results() -> None:
    result = _include_chain()
    assert isinstance(result, labsupport.Result) and result.result == result.verdict
    assert result.verdict in RESULTS and result.meaning


# -- reading a record ------------------------------------------------------------------------


def test_parse_record_gives_the_anatomy() -> None:
    record = parse_record("v=spf1 ip4:192.0.2.0/24 a:mail.%{d}/28//64 ~include:_spf.x.test "
                          "-all exp=why.%{d} moo=cow")
    assert isinstance(record, SPFRecord)
    assert [t.name for t in record.terms] == ["ip4", "a", "include", "all", "exp", "moo"]
    assert record.dns_terms == 2 and record.exp is not None and record.redirect is None
    assert record.terms[1].cidr4 == 28 and record.terms[1].cidr6 == 64
    assert record.terms[2].qualifier == "~" and record.terms[2].result == "softfail"
    assert "the IPv4 network 192.0.2.0/24" in record.terms[0].describe()
    assert "term" in str(record) and "<table>" in record._repr_html_()


def test_parse_record_errors_name_the_term_and_the_rule() -> None:
    with pytest.raises(SPFSyntaxError) as caught:
        parse_record("v=spf1 ip4:192.0.2.300 -all")
    assert caught.value.term == "ip4:192.0.2.300"
    assert caught.value.rfc == "RFC 7208 section 5.6"
    assert isinstance(caught.value, ValueError)
    with pytest.raises(SPFSyntaxError, match="not an SPF record"):
        parse_record("v=spf2 -all")
    with pytest.raises(SPFSyntaxError):
        parse_record(None)  # type: ignore[arg-type]


# -- caller errors ---------------------------------------------------------------------------


@pytest.mark.parametrize("ip", ["", "not-an-ip", "192.0.2", "192.0.2.256", "fe80::1%eth0",
                                "[192.0.2.1]", 42, None, b"\xc0\x00\x02\x01"])
def test_a_bad_client_ip_is_a_clear_value_error(ip: Any) -> None:
    with pytest.raises(ValueError, match="IP"):
        check_host(ip, "example.test", "a@example.test", resolver=ZoneSet.empty())


def test_ip_address_objects_are_accepted() -> None:
    zones = zone({"example.test": "v=spf1 ip4:192.0.2.0/24 ip6:2001:db8::/32 -all"})
    for ip in (ipaddress.ip_address("192.0.2.1"), ipaddress.ip_address("2001:db8::1")):
        assert check_host(ip, "example.test", "a@example.test", resolver=zones).verdict == \
            "pass"


def test_other_bad_arguments_are_value_errors() -> None:
    zones = ZoneSet.empty()
    with pytest.raises(SPFArgumentError, match="resolve"):
        check_host("192.0.2.1", "example.test", "a@example.test", resolver=object())
    with pytest.raises(SPFArgumentError, match="domain"):
        check_host("192.0.2.1", 42, "a@example.test", resolver=zones)  # type: ignore[arg-type]
    with pytest.raises(SPFArgumentError, match="HELO"):
        spf_verdict("192.0.2.1", "a@example.test", 42, zones)  # type: ignore[arg-type]


# -- against a real dnspython resolver and the lab's DNS server --------------------------------


def test_a_real_dnspython_resolver_over_udp_gives_the_same_result() -> None:
    from lab_helpers import ServerThread

    zones = ZoneSet.from_directory(ROOT / "data" / "zones")
    zones.add("northwind.test", "TXT", "v=spf1 mx a:out.northwind.test -all")
    zones.add("_spf.mailcloud.example", "TXT", "v=spf1 ip4:198.51.100.128/25 -all")
    zones.add("mailcloud.example", "TXT", "v=spf1 redirect=_spf.mailcloud.example")
    running = ServerThread(zones)
    try:
        resolver = dns.resolver.Resolver(configure=False)
        resolver.nameservers = ["127.0.0.1"]
        resolver.port = running.port
        resolver.timeout = resolver.lifetime = 2.0
        for ip, domain in (("192.0.2.10", "northwind.test"), ("192.0.2.26", "northwind.test"),
                           ("203.0.113.66", "northwind.test"),
                           ("198.51.100.200", "mailcloud.example"),
                           ("198.51.100.10", "mailcloud.example"),
                           ("192.0.2.10", "campus.test")):
            over_udp = check_host(ip, domain, f"a@{domain}", resolver=resolver)
            in_memory = check_host(ip, domain, f"a@{domain}", resolver=zones)
            assert over_udp.verdict == in_memory.verdict, over_udp.text()
            assert [t.outcome for t in over_udp.terms] == [t.outcome for t in in_memory.terms]
    finally:
        running.close()


def test_a_dnspython_timeout_is_a_temperror() -> None:
    class Slow:
        def resolve(self, qname: Any, rdtype: Any) -> Any:
            raise dns.resolver.LifetimeTimeout(timeout=1.0, errors=[])

    result = check_host("192.0.2.1", "example.test", "a@example.test", resolver=Slow())
    assert result.verdict == "temperror" and isinstance(dns.resolver.LifetimeTimeout(
        timeout=1.0, errors=[]), dns.exception.Timeout)
