"""The troubleshooting lab (labsupport.teach.troubleshoot): each ticket's fault is really there,
the lab's tools find it, a fix makes it go away, and the checks judge diagnoses by what
the tools find."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

import labsupport
from labsupport import plots
from labsupport import troubleshoot as ts
from labsupport.auth.dkim_keys import txt_strings
from labsupport.core.errors import CheckFailed


@pytest.fixture
def hunt(clean_lab: labsupport.Lab) -> Iterator[ts.BugHunt]:
    opened = ts.BugHunt(clean_lab)
    yield opened
    clean_lab.reset()


def test_every_ticket_names_a_known_cause_and_the_tickets_are_numbered() -> None:
    assert [t.number for t in ts.TICKETS] == list(range(1, len(ts.TICKETS) + 1))
    assert all(t.cause in ts.CAUSES for t in ts.TICKETS)
    assert len({t.cause for t in ts.TICKETS}) == len(ts.TICKETS)
    with pytest.raises(ts.TroubleshootError, match="no ticket 9"):
        ts.ticket(9)


def test_triage_finds_each_ticket_s_intended_cause(hunt: ts.BugHunt) -> None:
    found = {t.number: hunt.triage(t.number) for t in ts.TICKETS}
    assert {n: tr.cause for n, tr in found.items()} == {t.number: t.cause for t in ts.TICKETS}
    assert all(tr.verdict == "broken" and tr.trace for tr in found.values())
    assert "mail.fernhill.test" in found[1].summary
    assert "255 of" in found[3].summary
    assert "p=none" in found[4].summary


def test_reproductions_show_what_the_user_saw(hunt: ts.BugHunt) -> None:
    shown = {n: hunt.reproduce(n).shown for n in range(1, 9)}
    assert "550 5.1.2" in shown[1] and "Undelivered Mail" in shown[1]
    assert "spf=permerror" in shown[2]
    assert "dkim=permerror" in shown[3] and "header.s=news2026" in shown[3]
    assert "Filed as: INBOX" in shown[4] and "dmarc=fail" in shown[4]
    assert "certificate has expired" in shown[5]
    assert "Hostname mismatch" in shown[6]
    first, at_once, later, next_one = shown[7].split("\n\n")
    assert "451 4.7.1 Greylisted: this sender is new here" in first
    assert "retried too soon" in at_once
    assert "451" not in later and "250 2.0.0" in later
    assert "451" not in next_one and "250 2.0.0" in next_one
    assert "550 5.7.1" in shown[8]


def test_the_truncated_key_is_the_real_key_cut_at_255(hunt: ts.BugHunt,
                                                      clean_lab: labsupport.Lab) -> None:
    answer = clean_lab.resolver.resolve(hunt.key_name, "TXT")
    published = b"".join(b"".join(rr.strings) for rr in answer).decode()
    assert published == hunt.key_record[:255] != hunt.key_record


def test_the_fixes_make_the_fixable_tickets_fixed(hunt: ts.BugHunt,
                                                  clean_lab: labsupport.Lab) -> None:
    zones = clean_lab.zones
    for number in (1, 3, 4, 8):
        assert ts.judge_fixed(lambda: None, hunt, number).status == "unanswered"
    zones.set("fernhill.test", "MX", "10 mx.fernhill.test.")
    zones.set(hunt.key_name, "TXT", txt_strings(hunt.key_record))
    zones.set("_dmarc.riverbank.example", "TXT",
              "v=DMARC1; p=reject; rua=mailto:dmarc@riverbank.example")
    zones.set("northwind.test", "TXT",
              "v=spf1 ip4:192.0.2.10 ip6:2001:db8:1::10 ip4:203.0.113.150 "
              "include:_spf.mailcloud.example -all")
    for number in (1, 3, 4, 8):
        verdict = ts.judge_fixed(lambda: "done", hunt, number)
        assert verdict.status == "right", verdict
    # a fixed ticket still counts with its original cause in the diagnosis
    answer = {t.number: t.cause for t in ts.TICKETS}
    assert ts.judge_diagnoses(lambda: answer, hunt).status == "right"


def test_a_wrong_fix_is_judged_wrong_with_a_hint(hunt: ts.BugHunt,
                                                 clean_lab: labsupport.Lab) -> None:
    clean_lab.zones.set("_dmarc.riverbank.example", "TXT", "v=DMARC1; p=rejct")
    verdict = ts.judge_fixed(lambda: "v=DMARC1; p=rejct", hunt, 4)
    assert verdict.status == "wrong" and "still broken" in verdict.message
    with pytest.raises(CheckFailed):
        ts.check_fixed(lambda: "v=DMARC1; p=rejct", hunt, 4)
    with pytest.raises(ts.TroubleshootError, match="not one the lab lets you fix"):
        ts.judge_fixed(lambda: 1, hunt, 5)


def test_judge_diagnoses(hunt: ts.BugHunt, capsys: pytest.CaptureFixture[str]) -> None:
    right = {t.number: t.cause for t in ts.TICKETS}

    def missing() -> dict[int, str]:
        raise NotImplementedError("your answer here")

    assert ts.judge_diagnoses(missing, hunt).status == "unanswered"
    ts.check_diagnoses(missing, hunt)
    assert "not answered yet" in capsys.readouterr().out
    partial = {1: "mx-host-missing", 2: "spf too many lookups"}  # spaces are accepted
    verdict = ts.judge_diagnoses(lambda: partial, hunt)
    assert verdict.status == "unanswered" and "2 right so far" in verdict.message
    wrong = {**right, 8: "blocklisted"}
    verdict = ts.judge_diagnoses(lambda: wrong, hunt)
    assert verdict.status == "wrong" and "ticket 8" in verdict.message
    assert "no blocklist" in verdict.message
    verdict = ts.judge_diagnoses(lambda: {**right, 3: "the key"}, hunt)
    assert verdict.status == "wrong" and "not one of the causes" in verdict.message
    assert ts.judge_diagnoses(lambda: ["mx-host-missing"], hunt).status == "wrong"
    ts.check_diagnoses(lambda: right, hunt)
    assert "all 8 diagnoses are right" in capsys.readouterr().out


def test_reset_closes_the_hunt(clean_lab: labsupport.Lab) -> None:
    opened = ts.BugHunt(clean_lab)
    port = opened.port("smtp.brightside.test")
    assert port > 0
    clean_lab.reset()
    assert opened.closed
    with pytest.raises(ts.TroubleshootError, match="closed"):
        opened.port("smtp.brightside.test")
    with pytest.raises(ts.TroubleshootError, match="no server called"):
        opened.port("smtp.nowhere.test")
    # the truncated key is gone with the hunt
    assert not clean_lab.zones.lookup(opened.key_name, "TXT").answer


def test_renderings(hunt: ts.BugHunt) -> None:
    assert "Fernhill" in str(hunt) and "<table" in hunt._repr_html_()
    assert "office@fernhill.test" in str(hunt.show(1))
    assert "Tools that help" in hunt.show(2)._repr_html_()
    assert "greylisting" in str(ts.cause_table())
    table = hunt.triage_all()
    assert "certificate-expired" in str(table) and "<table" in table._repr_html_()
    assert "Ticket 5" in hunt.triage(5)._repr_html_()


def test_the_journey_places_every_ticket_once() -> None:
    placed = [n for _stage, numbers in ts.JOURNEY for n in numbers]
    assert sorted(placed) == [t.number for t in ts.TICKETS]
    import matplotlib

    matplotlib.use("Agg")
    fig = plots.troubleshooting_journey()
    texts = [t.get_text() for t in fig.axes[0].texts]
    assert "#1\nfernhill.test" in texts and "#7\ntinyshop.test" in texts


def test_the_certificates_show_why_they_fail(hunt: ts.BugHunt) -> None:
    from datetime import UTC, datetime

    expired = hunt.certificate("smtp.brightside.test")
    assert expired.names == ("smtp.brightside.test",)
    assert expired.not_after < datetime.now(UTC) and "Mail Labs" in expired.issuer
    wrong = hunt.certificate("smtp.riverbank.example")
    assert "smtp.riverbank.example" not in wrong.names
    assert wrong.names == ("mail.hostingco.example", "*.hostingco.example")
    assert wrong.not_after > datetime.now(UTC)
    assert "notAfter" in str(expired) and "<table" in wrong._repr_html_()
