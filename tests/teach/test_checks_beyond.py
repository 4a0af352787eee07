"""Lesson 10's helpers and exercise checks (labsupport/teach/checks_beyond.py): the
forwarder-then-list journey, the survey of lenient servers, and the judges saying right, wrong
(with a hint) and unanswered."""

from __future__ import annotations

import pytest

import labsupport
from labsupport.auth.arc_verify import validate_chain
from labsupport.core.errors import CheckFailed
from labsupport.dns.zone import ZoneSet
from labsupport.mail.aliases import LAB_ALIASES, Forwarder
from labsupport.mail.smtp_encoding import dot_stuff
from labsupport.teach import checks
from labsupport.teach.checks_beyond import (
    DATA_DRAFT,
    SMUGGLING_LETTERS,
    ForwardedJourney,
    forward_then_list,
    lenient_survey,
)

NOW = 1772366400  # 2026-03-01 12:00 UTC
SETTLE = 0.1  # seconds to wait for replies a lenient server adds (never a measurement)
FAST = 0.05  # the same where a late reply would only show up as a failed assertion


def unanswered() -> object:
    raise NotImplementedError


@pytest.fixture(scope="module")
def journey(world: ZoneSet) -> ForwardedJourney:
    return forward_then_list(world, now=NOW)


# -- the journey -----------------------------------------------------------------------------


def test_the_journey_breaks_spf_then_dkim_and_keeps_an_arc_chain(
        journey: ForwardedJourney, world: ZoneSet) -> None:
    first, second, third = (h.evaluation for h in journey.hops)
    assert [h.client_ip for h in journey.hops] == ["192.0.2.10", "198.51.100.61", "198.51.100.40"]
    assert [h.helo for h in journey.hops] == ["out.northwind.test", "out.alumni.example",
                                               "out.lists.campus.test"]
    assert (first.spf_result, first.dkim_results, first.dmarc_result) == ("pass", ("pass",), "pass")
    assert (second.spf_result, second.dkim_results, second.dmarc_result) == \
        ("fail", ("pass",), "pass")
    assert (third.dmarc_result, third.requested_disposition) == ("fail", "reject")
    assert journey.final is third and third.arc_result == "pass"
    forwarded, listed = journey.sealing_by("alumni.example"), journey.sealing_by("campus.test")
    assert (forwarded.instance, forwarded.cv, listed.instance, listed.cv) == (1, "none", 2, "pass")
    assert journey.delivered == listed.sealed_message
    assert b"Subject: [course] Exam dates" in journey.posted
    chain = validate_chain(journey.delivered, world)
    assert chain.sealers == ("alumni.example", "campus.test") and chain.oldest_pass == 2
    assert "i=2 cv=pass by campus.test" in str(journey)
    assert "The message, hop by hop" in journey._repr_html_()
    with pytest.raises(KeyError, match="no hop sealed as phisher.example; the sealers were "
                                       "alumni.example, campus.test"):
        journey.sealing_by("phisher.example")


def test_a_list_that_rewrites_from_gets_dmarc_to_pass_for_itself(world: ZoneSet) -> None:
    rewritten = forward_then_list(world, now=NOW, rewrite_from=True)
    final = rewritten.final
    assert final.dmarc_result == "pass"
    assert final.dmarc.from_domain == "lists.campus.test"
    assert b"From: Alice Adams via course <course@lists.campus.test>" in rewritten.posted


def test_the_journey_needs_both_aliases_and_an_author(world: ZoneSet) -> None:
    forwarder = [a for a in LAB_ALIASES if isinstance(a, Forwarder)]
    with pytest.raises(ValueError, match="needs a forwarder and a mailing list"):
        forward_then_list(world, forwarder, now=NOW)
    with pytest.raises(ValueError, match="needs a From field"):
        forward_then_list(world, message=b"Subject: nobody\r\n\r\nhi\r\n", now=NOW)


# -- the lenient server, surveyed (its own tests: tests/mail/test_smuggling_lenient.py) --


def test_each_kind_of_lenient_server_is_surveyed() -> None:
    def smuggled(reads_bare: list[str]) -> list[str]:
        survey = lenient_survey(reads_bare, settle=FAST)
        return [r.variant.name for r in survey.results if r.verdict == "smuggled"]

    assert smuggled(["LF"]) == ["LF.LF", "LF.CRLF", "CRLF.LF"]
    assert smuggled(["CR"]) == ["CR.CR", "CRLF.CR", "CR.CRLF"]
    assert len(smuggled(["lf", "CR"])) == 8
    strict = lenient_survey([], settle=FAST)  # CR LF only, but it takes anything
    assert strict.verdict == "lenient" and {r.verdict for r in strict.results} == {"accepted"}


# -- exercise 1: which variants ---------------------------------------------------------------


def test_judge_lenient_variants() -> None:
    assert [v.name for v in SMUGGLING_LETTERS.values()][:3] == ["LF.LF", "LF.CRLF", "CRLF.LF"]
    right = checks.judge_lenient_variants({"d", "f", "h"}, ["CR"], settle=FAST)
    assert right.right and "<CR>.<CR>, <CR><LF>.<CR>, <CR>.<CR><LF> end the data" in right.message
    assert checks.judge_lenient_variants("abc", ["LF"], settle=FAST).right
    wrong = checks.judge_lenient_variants({"d", "e"}, ["CR"], settle=FAST)
    assert wrong.status == "wrong"
    assert "(e) <CR>.<LF> did not end the data there" in wrong.message
    assert "(f) <CR><LF>.<CR>, (h) <CR>.<CR><LF> did" in wrong.message
    assert "Hint: split each variant where that server sees a line end (CR LF, and bare CR)" \
        in wrong.message
    assert "there is no variant z" in checks.judge_lenient_variants("az", ["CR"]).message
    assert "give letters" in checks.judge_lenient_variants(4, ["CR"]).message
    assert checks.judge_lenient_variants(unanswered, ["CR"]).status == "unanswered"
    with pytest.raises(CheckFailed, match="not quite"):
        checks.check_lenient_variants(lambda: {"a"}, ["CR"], settle=FAST)


# -- exercise 2: the list's set -----------------------------------------------------------------


def test_judge_list_set(journey: ForwardedJourney) -> None:
    assert checks.judge_list_set((2, "pass"), journey).right
    assert checks.judge_list_set(("2", " PASS "), journey).right
    wrong_i = checks.judge_list_set((1, "pass"), journey)
    assert wrong_i.status == "wrong" and "who sealed before the list?" in wrong_i.message
    wrong_cv = checks.judge_list_set((2, "none"), journey)
    assert wrong_cv.status == "wrong" and "i=2 is right, but not cv=none" in wrong_cv.message
    assert "give a pair" in checks.judge_list_set("2 pass", journey).message
    assert checks.judge_list_set(unanswered, journey).status == "unanswered"
    # the forwarder's own set, if the list were the forwarder
    assert checks.judge_list_set((1, "none"), journey, "alumni.example").right
    with pytest.raises(ValueError, match="no ARC set sealed by phisher.example"):
        checks.judge_list_set((1, "none"), journey, "phisher.example")
    with pytest.raises(CheckFailed):
        checks.check_list_set(lambda: (3, "pass"), journey)


# -- exercise 3: the octets after 354 ---------------------------------------------------------


def test_judge_data_octets_sends_a_right_answer(clean_lab: labsupport.Lab) -> None:
    port, store = clean_lab.smtp.port("mx"), clean_lab.mail
    right = checks.judge_data_octets(dot_stuff(DATA_DRAFT), port, store)
    assert right.right, right.message
    assert "stored one message whose body is the draft's" in right.message
    stored = [m for m in store.messages("carol@campus.test")
              if m.subject == "Notes for the exam"]
    assert len(stored) == 1
    body = stored[0].raw.replace(b"\r\n", b"\n").split(b"\n\n", 1)[1]  # Maildir keeps LF
    assert body == b"The notes, one per line:\n.\n.profile is a hidden file\nEnd of the notes.\n"


def test_judge_data_octets_explains_wrong_answers(clean_lab: labsupport.Lab) -> None:
    port, store = clean_lab.smtp.port("mx"), clean_lab.mail
    crlf = DATA_DRAFT.replace("\n", "\r\n").encode()

    def judged(answer: object) -> str:
        verdict = checks.judge_data_octets(answer, port, store)
        assert verdict.status == "wrong", verdict
        return verdict.message

    assert "give bytes" in judged(DATA_DRAFT)
    assert "give the octets as bytes" in judged(42)
    assert "a bare LF (line feed without carriage return) in line 1" in judged(
        DATA_DRAFT.encode() + b".\r\n")
    assert "not with <CR><LF>.<CR><LF>" in judged(crlf)
    assert "line 6 holds only '.'" in judged(crlf + b".\r\n")
    assert "not the draft's lines exactly" in judged(dot_stuff(DATA_DRAFT.replace("notes", "x")))
    assert checks.judge_data_octets(unanswered, port, store).status == "unanswered"
    assert store.count("carol@campus.test") == 0  # nothing wrong was sent
    with pytest.raises(CheckFailed):
        checks.check_data_octets(lambda: crlf, port, store)
