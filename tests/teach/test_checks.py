"""labsupport.teach.checks: claims and exercise judges, against the in-memory lab world."""

from __future__ import annotations

import pytest

from labsupport import checks
from labsupport.core.errors import CheckFailed, LabError
from labsupport.dns.zone import ZoneSet
from labsupport.teach.checks import (
    Verdict,
    answer_of,
    check_mx_fix,
    check_try_order,
    claim,
    claim_true,
    judge_address,
    judge_diagnosis,
    judge_mx_fix,
    judge_try_order,
)

DOMAINS = ["northwind.test", "careless.test", "oldsite.example", "homebrew.example",
           "parked.test", "tinyshop.test"]
RIGHT_DIAGNOSIS = {
    "northwind.test": "ok", "careless.test": "alias", "oldsite.example": "no-address",
    "homebrew.example": "ip-literal", "parked.test": "null-mx", "tinyshop.test": "implicit-mx",
}


def undefined_name():
    return my_answer  # type: ignore[name-defined] # noqa: F821 - the cell did not run


def placeholder():
    raise NotImplementedError


NOT_ANSWERED = [undefined_name, placeholder, None, Ellipsis, lambda: None, lambda: ...]
NOT_ANSWERED_IDS = ["name-error", "not-implemented", "none", "ellipsis", "returns-none",
                    "returns-ellipsis"]


# -- claims --------------------------------------------------------------------------------


def test_claim_that_holds_prints(capsys: pytest.CaptureFixture[str]) -> None:
    claim("the first host", "mx1.northwind.test", "mx1.northwind.test")
    assert capsys.readouterr().out == (
        "✔ the first host: 'mx1.northwind.test', as the lesson says.\n")


def test_claim_that_fails_says_expected_and_got() -> None:
    with pytest.raises(CheckFailed) as caught:
        claim("the first host", "mx2.northwind.test", "mx1.northwind.test")
    message = str(caught.value)
    assert "expects 'mx1.northwind.test'" in message and "gave 'mx2.northwind.test'" in message
    assert isinstance(caught.value, AssertionError) and isinstance(caught.value, LabError)


def test_claim_true(capsys: pytest.CaptureFixture[str]) -> None:
    claim_true("mail for parked.test bounces", True, "null MX")
    claim_true("no detail needed", True)
    assert capsys.readouterr().out == (
        "✔ mail for parked.test bounces (null MX)\n✔ no detail needed\n")
    with pytest.raises(CheckFailed, match="Expected: it bounces. Observed: it was delivered."):
        claim_true("it bounces", False, "it was delivered")
    with pytest.raises(AssertionError, match="It does not hold."):
        claim_true("it bounces", False)


# -- reading answers -----------------------------------------------------------------------


@pytest.mark.parametrize("answer", NOT_ANSWERED, ids=NOT_ANSWERED_IDS)
def test_answers_not_given_yet(answer) -> None:
    given, _value = answer_of(answer)
    assert given is False


def test_answers_given() -> None:
    assert answer_of(lambda: ["a"]) == (True, ["a"])
    assert answer_of(0) == (True, 0)
    assert answer_of("") == (True, "")
    with pytest.raises(ZeroDivisionError):  # other errors in the answer are the student's
        answer_of(lambda: 1 / 0)


def test_verdict_text() -> None:
    assert str(Verdict("right", "yes")) == "✔ yes"
    assert repr(Verdict("wrong", "no")) == "✘ no"
    assert str(Verdict("unanswered", "later")) == "… later"
    assert Verdict("right", "").right and not Verdict("wrong", "").right


def test_an_answer_not_given_raises_only_under_grading(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    from labsupport.teach.verdicts import GRADING_ENV, report

    monkeypatch.delenv(GRADING_ENV, raising=False)
    report(Verdict("unanswered", "not answered yet"))
    assert capsys.readouterr().out == "… not answered yet\n"
    with pytest.raises(CheckFailed, match="✘ no"):
        report(Verdict("wrong", "no"))
    monkeypatch.setenv(GRADING_ENV, "1")
    with pytest.raises(CheckFailed, match="… not answered yet"):
        report(Verdict("unanswered", "not answered yet"))
    report(Verdict("right", "yes"))
    assert capsys.readouterr().out == "✔ yes\n"


# -- the try order -------------------------------------------------------------------------


@pytest.mark.parametrize("answer", [
    ["mx1.northwind.test", "mx2.northwind.test"],
    ("MX1.northwind.test.", " mx2.northwind.test "),
    lambda: ["mx1.northwind.test", "mx2.northwind.test"],
])
def test_try_order_right(world: ZoneSet, answer) -> None:
    verdict = judge_try_order(answer, "northwind.test", world)
    assert verdict.status == "right", verdict
    assert "mx1.northwind.test, mx2.northwind.test" in verdict.message


def test_try_order_equal_preferences_in_either_order(world: ZoneSet) -> None:
    for answer in (["mx-a.campus.test", "mx-b.campus.test"],
                   ["mx-b.campus.test", "mx-a.campus.test"]):
        verdict = judge_try_order(answer, "campus.test", world)
        assert verdict.status == "right" and "either order" in verdict.message


@pytest.mark.parametrize(("answer", "hint"), [
    (["mx2.northwind.test", "mx1.northwind.test"], "lower preference values are tried first"),
    (["mx1.northwind.test"], "has 2 usable mail host(s), your list has 1"),
    (["mx1.northwind.test", "mx2.northwind.test", "out.northwind.test"], "your list has 3"),
    (["mx1.northwind.test", "mx3.northwind.test"], "position 2 should hold"),
    ("mx1.northwind.test mx2.northwind.test", "should be a list of host names"),
    (42, "should be a list of host names"),
], ids=["reversed", "too-short", "too-long", "wrong-host", "a-string", "a-number"])
def test_try_order_wrong(world: ZoneSet, answer, hint: str) -> None:
    verdict = judge_try_order(answer, "northwind.test", world)
    assert verdict.status == "wrong"
    assert hint in verdict.message


def test_try_order_leaves_out_unusable_hosts(world: ZoneSet) -> None:
    assert judge_try_order([], "oldsite.example", world).status == "right"
    assert judge_try_order(["mx.oldsite.example"], "oldsite.example", world).status == "wrong"


@pytest.mark.parametrize("answer", NOT_ANSWERED, ids=NOT_ANSWERED_IDS)
def test_try_order_not_answered(world: ZoneSet, answer) -> None:
    verdict = judge_try_order(answer, "northwind.test", world)
    assert verdict.status == "unanswered"
    assert verdict.message.startswith("not answered yet")


def test_check_cells_print_or_raise(world: ZoneSet, capsys: pytest.CaptureFixture[str]) -> None:
    check_try_order(["mx1.northwind.test", "mx2.northwind.test"], "northwind.test", world)
    assert capsys.readouterr().out.startswith("✔ right")
    check_try_order(placeholder, "northwind.test", world)  # not answered: no failure
    assert capsys.readouterr().out.startswith("… not answered yet")
    with pytest.raises(CheckFailed, match="lower preference values"):
        check_try_order(["mx2.northwind.test", "mx1.northwind.test"], "northwind.test", world)


# -- the diagnosis -------------------------------------------------------------------------


def test_diagnosis_right(world: ZoneSet) -> None:
    verdict = judge_diagnosis(RIGHT_DIAGNOSIS, world, DOMAINS)
    assert verdict.status == "right" and "all 6" in verdict.message
    shouted = {d: f"  {v.upper()} " for d, v in RIGHT_DIAGNOSIS.items()}
    assert judge_diagnosis(shouted, world, DOMAINS).right


@pytest.mark.parametrize(("change", "hint"), [
    ({"careless.test": "ok"}, "careless.test: not 'ok'"),
    ({"parked.test": "no-address"}, "parked.test: not 'no-address'"),
    ({"oldsite.example": "broken"}, "'broken' is not one of"),
    ({"tinyshop.test": None}, "tinyshop.test: 'no answer' is not one of"),
], ids=["missed-alias", "wrong-kind", "unknown-word", "blank"])
def test_diagnosis_wrong(world: ZoneSet, change: dict, hint: str) -> None:
    answer = {**RIGHT_DIAGNOSIS, **change}
    verdict = judge_diagnosis(answer, world, DOMAINS)
    assert verdict.status == "wrong"
    assert verdict.message.startswith("5 of 6 right.") and hint in verdict.message


def test_diagnosis_missing_domain_and_not_a_dict(world: ZoneSet) -> None:
    missing = {d: v for d, v in RIGHT_DIAGNOSIS.items() if d != "homebrew.example"}
    verdict = judge_diagnosis(missing, world, DOMAINS)
    assert verdict.status == "wrong" and "homebrew.example: 'no answer'" in verdict.message
    listed = judge_diagnosis(list(RIGHT_DIAGNOSIS.items()), world, DOMAINS)
    assert listed.status == "wrong" and "should be a dict" in listed.message


@pytest.mark.parametrize("answer", NOT_ANSWERED, ids=NOT_ANSWERED_IDS)
def test_diagnosis_not_answered(world: ZoneSet, answer) -> None:
    assert judge_diagnosis(answer, world, DOMAINS).status == "unanswered"


# -- the MX fix ----------------------------------------------------------------------------


def test_mx_fix_right_edits_the_zone(zones: ZoneSet) -> None:
    verdict = judge_mx_fix("10 server.careless.test.", "careless.test", zones, zones)
    assert verdict.status == "right", verdict
    assert verdict.message.startswith("fixed: Mail for careless.test goes to server.careless.test")
    assert zones.resolve("careless.test", "MX")[0].exchange.to_text() == "server.careless.test."
    zones.reset("careless.test")
    assert zones.resolve("careless.test", "MX")[0].exchange.to_text() == "mail.careless.test."


def test_mx_fix_a_list_of_values(zones: ZoneSet) -> None:
    answer = ["10 server.careless.test.", "20 mx1.northwind.test."]
    assert judge_mx_fix(answer, "careless.test", zones, zones).right
    assert len(zones.resolve("careless.test", "MX")) == 2


@pytest.mark.parametrize(("answer", "hint"), [
    ("10 mail.careless.test.", "deliverable, but still"),
    ("10 nosuch.careless.test.", "not yet:"),
    ("server.careless.test.", "the zone does not accept that"),
    ("10 bad..name.", "the zone does not accept that"),
    ("0 .", "not yet:"),
], ids=["still-the-alias", "no-such-host", "no-preference", "bad-name", "null-mx"])
def test_mx_fix_wrong(zones: ZoneSet, answer: str, hint: str) -> None:
    verdict = judge_mx_fix(answer, "careless.test", zones, zones)
    assert verdict.status == "wrong"
    assert hint in verdict.message


@pytest.mark.parametrize("answer", NOT_ANSWERED, ids=NOT_ANSWERED_IDS)
def test_mx_fix_not_answered_leaves_the_zone_alone(zones: ZoneSet, answer) -> None:
    generation = zones.generation
    assert judge_mx_fix(answer, "careless.test", zones, zones).status == "unanswered"
    assert zones.generation == generation


def test_check_mx_fix_raises_on_a_wrong_fix(zones: ZoneSet) -> None:
    with pytest.raises(CheckFailed, match="deliverable, but still"):
        check_mx_fix("10 mail.careless.test.", "careless.test", zones, zones)


def test_mx_fix_against_the_running_lab(clean_lab) -> None:
    verdict = judge_mx_fix("10 server.careless.test.", "careless.test", clean_lab.zones,
                           clean_lab.resolver)
    assert verdict.right
    assert clean_lab.query("careless.test", "MX").answers[0].endswith("server.careless.test.")


# -- the address (00-start-here) -----------------------------------------------------------


def test_address(world: ZoneSet) -> None:
    assert judge_address("192.0.2.25", "mx1.northwind.test", world).right
    wrong = judge_address("192.0.2.26", "mx1.northwind.test", world)
    assert wrong.status == "wrong" and "lab.query('mx1.northwind.test', 'A')" in wrong.message
    assert judge_address(placeholder, "mx1.northwind.test", world).status == "unanswered"
    broken = judge_address("192.0.2.1", "www.example.com", world)
    assert broken.status == "wrong" and "could not look www.example.com up" in broken.message


def test_checks_module_names_its_marks() -> None:
    assert (checks.PASS, checks.FAIL, checks.TODO) == ("✔", "✘", "…")


def test_mx_fix_answer_of_the_wrong_kind(zones: ZoneSet) -> None:
    for answer in (42, [10, "x"], {"mx": "10 server.careless.test."}):
        verdict = judge_mx_fix(answer, "careless.test", zones, zones)
        assert verdict.status == "wrong" and "as text" in verdict.message, answer
