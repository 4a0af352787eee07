"""Exercise checks of notebooks/04-spf.ipynb (labsupport/teach/checks.py), on the lab's zones."""

from __future__ import annotations

import pytest

import labsupport
from labsupport.core.errors import CheckFailed, ZoneEditError
from labsupport.dns.zone import ZoneSet
from labsupport.teach.checks import (
    SPF_OUTSIDERS,
    check_spf_fix,
    check_spf_result,
    judge_spf_fix,
    judge_spf_result,
    put_spf_record,
    spf_intended,
    spf_record_of,
    spf_scratch_zones,
)

#: Careless Ltd.'s eleven senders, as its includes name them (data/zones/careless.test.zone).
CARELESS = ["203.0.113.11", "203.0.113.12", "203.0.113.13", "203.0.113.14", "203.0.113.15",
            "203.0.113.16", "203.0.113.17", "203.0.113.18", "203.0.113.19", "203.0.113.110",
            "203.0.113.111"]
FLAT = "v=spf1 " + " ".join(f"ip4:{ip}" for ip in CARELESS) + " -all"


def _placeholder() -> str:
    raise NotImplementedError("your answer here")


# -- the scratch zones -------------------------------------------------------------------


def test_scratch_copy_leaves_the_original_alone(zones: ZoneSet) -> None:
    before = spf_record_of("northwind.test", zones)
    scratch = spf_scratch_zones(zones)
    put_spf_record(scratch, "northwind.test", "v=spf1 -all")
    assert spf_record_of("northwind.test", scratch) == "v=spf1 -all"
    assert spf_record_of("northwind.test", zones) == before
    scratch.reset()
    assert spf_record_of("northwind.test", scratch) == before


def test_put_spf_record_keeps_other_txt_records(zones: ZoneSet) -> None:
    zones.add("campus.test", "TXT", "site-verification=abc")
    put_spf_record(zones, "campus.test", "v=spf1 mx -all")
    texts = sorted(b"".join(r.strings).decode() for r in zones.resolve("campus.test", "TXT"))
    assert texts == ["site-verification=abc", "v=spf1 mx -all"]
    with pytest.raises(ZoneEditError):
        put_spf_record(zones, "outside.invalid", "v=spf1 -all")


def test_spf_record_of_a_name_without_one(zones: ZoneSet) -> None:
    assert spf_record_of("www.northwind.test", zones) is None
    assert spf_record_of("nosuch.northwind.test", zones) is None


def test_intended_ignores_the_limit(zones: ZoneSet) -> None:
    original = spf_record_of("careless.test", zones)
    assert original is not None
    meant = spf_intended(original, "careless.test", [*CARELESS, "203.0.113.66"], zones)
    assert all(meant[ip] == "pass" for ip in CARELESS)
    assert meant["203.0.113.66"] == "fail"
    # What check_host() itself says: over the limit for the 11th and for strangers.
    assert labsupport.auth.spf.check_host("203.0.113.111", "careless.test", "x@careless.test",
                                     resolver=zones).verdict == "permerror"


def test_intended_follows_redirect_and_defaults_to_neutral(zones: ZoneSet) -> None:
    meant = spf_intended("v=spf1 ip4:192.0.2.99 redirect=_spf.mailcloud.example",
                         "northwind.test", ["192.0.2.99", "198.51.100.150", "203.0.113.66"],
                         zones)
    assert meant == {"192.0.2.99": "pass", "198.51.100.150": "pass", "203.0.113.66": "fail"}
    assert spf_intended("v=spf1 ip4:192.0.2.99", "northwind.test", ["203.0.113.66"],
                        zones) == {"203.0.113.66": "neutral"}


# -- exercise 1: which result? ---------------------------------------------------------------


def test_result_right(zones: ZoneSet) -> None:
    verdict = judge_spf_result("fail", "198.51.100.100", "northwind.test", zones)
    assert verdict.right and "may not send" in verdict.message
    assert judge_spf_result(" PASS ", "198.51.100.150", "northwind.test", zones).right
    assert judge_spf_result("softfail", "203.0.113.66", "campus.test", zones).right


def test_result_wrong(zones: ZoneSet) -> None:
    wrong = judge_spf_result("pass", "198.51.100.100", "northwind.test", zones)
    assert wrong.status == "wrong" and "left to right" in wrong.message
    assert "fail" not in wrong.message  # the hint does not give the answer away
    not_a_result = judge_spf_result("rejected", "198.51.100.100", "northwind.test", zones)
    assert not_a_result.status == "wrong" and "seven results" in not_a_result.message
    assert judge_spf_result("softfail", "198.51.100.100", "northwind.test", zones).status == \
        "wrong"


def test_result_unanswered(zones: ZoneSet) -> None:
    for answer in (None, ..., _placeholder, lambda: undefined_name):  # noqa: F821
        verdict = judge_spf_result(answer, "198.51.100.100", "northwind.test", zones)
        assert verdict.status == "unanswered" and "not answered yet" in verdict.message


def test_check_result_reports(zones: ZoneSet, capsys: pytest.CaptureFixture[str]) -> None:
    check_spf_result("fail", "198.51.100.100", "northwind.test", zones)
    assert capsys.readouterr().out.startswith("✔ right")
    with pytest.raises(CheckFailed):
        check_spf_result("neutral", "198.51.100.100", "northwind.test", zones)


# -- exercise 2: fix careless.test ----------------------------------------------------------


def test_fix_right(zones: ZoneSet) -> None:
    before = zones.zone_text("careless.test")
    verdict = judge_spf_fix(FLAT, "careless.test", zones)
    assert verdict.right, verdict.message
    assert "11 may send" in verdict.message and "0 of 10" in verdict.message
    assert zones.zone_text("careless.test") == before  # tried in a scratch copy only
    compact = ("v=spf1 ip4:203.0.113.11 ip4:203.0.113.12/30 ip4:203.0.113.16/30 "
               "ip4:203.0.113.110/31 -all")
    assert judge_spf_fix(compact, "careless.test", zones).right
    nine = ("v=spf1 " + " ".join(f"include:_s{n}.careless.test" for n in range(1, 10))
            + " ip4:203.0.113.110 ip4:203.0.113.111 -all")
    kept = judge_spf_fix(nine, "careless.test", zones)
    assert kept.right and "9 of 10" in kept.message


def test_fix_wrong_senders(zones: ZoneSet) -> None:
    missing = judge_spf_fix(FLAT.replace(" ip4:203.0.113.111", ""), "careless.test", zones)
    assert missing.status == "wrong" and "may no longer send: 203.0.113.111" in missing.message
    wide = judge_spf_fix("v=spf1 ip4:203.0.113.0/24 -all", "careless.test", zones)
    assert wide.status == "wrong" and "lets these send" in wide.message
    assert "203.0.113.66" in wide.message
    soft = judge_spf_fix(FLAT.replace("-all", "~all"), "careless.test", zones)
    assert soft.status == "wrong" and "gives softfail" in soft.message
    assert "means fail" in soft.message
    open_end = judge_spf_fix(FLAT.replace(" -all", ""), "careless.test", zones)
    assert open_end.status == "wrong" and "neutral" in open_end.message


def test_fix_wrong_still_over_the_limit(zones: ZoneSet) -> None:
    original = spf_record_of("careless.test", zones)
    verdict = judge_spf_fix(original, "careless.test", zones)
    assert verdict.status == "wrong" and "permerror" in verdict.message
    assert "Too many DNS lookups" in verdict.message


def test_fix_wrong_shapes(zones: ZoneSet) -> None:
    typo = judge_spf_fix(FLAT.replace("-all", "-al"), "careless.test", zones)
    assert typo.status == "wrong" and "syntax error" in typo.message and "'-al'" in typo.message
    no_version = judge_spf_fix("ip4:203.0.113.11 -all", "careless.test", zones)
    assert no_version.status == "wrong" and "v=spf1" in no_version.message
    listed = judge_spf_fix(CARELESS, "careless.test", zones)
    assert listed.status == "wrong" and "one string" in listed.message


def test_fix_unanswered(zones: ZoneSet) -> None:
    for answer in (None, _placeholder, lambda: undefined_name):  # noqa: F821
        assert judge_spf_fix(answer, "careless.test", zones).status == "unanswered"


def test_fix_when_the_lab_record_is_gone(zones: ZoneSet) -> None:
    zones.remove("careless.test", "TXT")
    verdict = judge_spf_fix(FLAT, "careless.test", zones)
    assert verdict.status == "wrong" and "reset" in verdict.message


def test_fix_tries_the_outsiders(zones: ZoneSet) -> None:
    assert "203.0.113.66" in SPF_OUTSIDERS
    # A network the answer adds is tried too, even without any outsider.
    sneaky = FLAT.replace(" -all", " ip4:192.0.2.254 -all")
    verdict = judge_spf_fix(sneaky, "careless.test", zones)
    assert verdict.status == "wrong" and "192.0.2.254" in verdict.message
    assert judge_spf_fix(sneaky, "careless.test", zones, outsiders=()).status == "wrong"
    # The outsiders are where a '+all' shows: here only 203.0.113.66 and friends reveal it.
    everyone = judge_spf_fix(FLAT.replace("-all", "+all"), "careless.test", zones)
    assert everyone.status == "wrong" and "lets these send" in everyone.message


def test_check_fix_reports(zones: ZoneSet, capsys: pytest.CaptureFixture[str]) -> None:
    check_spf_fix(FLAT, "careless.test", zones)
    assert "✔ right" in capsys.readouterr().out
    check_spf_fix(None, "careless.test", zones)
    assert "not answered yet" in capsys.readouterr().out
    with pytest.raises(CheckFailed):
        check_spf_fix("v=spf1 -all", "careless.test", zones)
