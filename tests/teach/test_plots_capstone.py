"""The capstone's pictures (labsupport.teach.plots_capstone): the scorecard grades a domain
by what the receiver did, and the journey puts every step side by side."""

from __future__ import annotations

from dataclasses import dataclass

import matplotlib

matplotlib.use("Agg")  # before pyplot is imported anywhere

import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402

from labsupport import plots  # noqa: E402
from labsupport.teach.plots_capstone import grade  # noqa: E402


@dataclass(frozen=True)
class Outcome:
    label: str
    legitimate: bool
    action: str
    spf: str
    dkim: str
    dmarc: str


@dataclass(frozen=True)
class Report:
    domain: str
    receiving: str
    outcomes: tuple[Outcome, ...]


def report(receiving: str, genuine: tuple[str, str, str, str],
           forged: tuple[str, str, str, str], forged_envelope_spf: str) -> Report:
    """A report like checks.receiver_report's: (action, spf, dkim, dmarc) for the genuine
    message and for the forgeries (forgery 1 with the attacker's own envelope passes SPF,
    forgery 2's SPF is ``forged_envelope_spf``)."""
    action, spf, dkim, dmarc = forged
    return Report("newco.test", receiving, (
        Outcome("Nina through out.newco.test", True, *genuine),
        Outcome("forgery from 203.0.113.66, MAIL FROM mallory@phisher.example", False,
                action, "pass", dkim, dmarc),
        Outcome("forgery from 203.0.113.66, MAIL FROM nina@newco.test", False,
                action, forged_envelope_spf, dkim, dmarc),
    ))


NOTHING = report("undeliverable (no-mail-host)", ("INBOX", "none", "none", "none"),
                 ("INBOX", "", "none", "none"), "none")
MONITORING = report("deliverable (mx: mx.newco.test)", ("INBOX", "pass", "pass", "pass"),
                    ("INBOX", "", "none", "fail"), "fail")
SECURED = report("deliverable (mx: mx.newco.test)", ("INBOX", "pass", "pass", "pass"),
                 ("rejected (550 5.7.1)", "", "none", "fail"), "fail")


@pytest.mark.parametrize(("the_report", "grades"), [
    (NOTHING, ["bad", "bad", "bad", "bad"]),
    (MONITORING, ["good", "good", "good", "partial"]),
    (SECURED, ["good", "good", "good", "good"]),
])
def test_the_grades_follow_the_receivers_behaviour(the_report: Report,
                                                   grades: list[str]) -> None:
    assert [g for _, g, _ in grade(the_report)] == grades


def test_spf_without_a_hard_fail_is_only_half_way() -> None:
    soft = report("deliverable", ("INBOX", "pass", "none", "none"),
                  ("INBOX", "", "none", "none"), "softfail")
    assert grade(soft)[1][:2] == ("SPF", "partial")


def test_quarantine_is_half_way_and_says_so() -> None:
    junk = report("deliverable", ("INBOX", "pass", "pass", "pass"),
                  ("Junk", "", "none", "fail"), "fail")
    assert grade(junk)[3] == ("DMARC", "partial", "forgeries go to Junk (quarantine)")


def test_the_scorecard_names_every_message_and_counts_good_checks() -> None:
    fig = plots.capstone_scorecard(MONITORING, step="DMARC p=none")
    texts = [t.get_text() for t in fig.axes[0].texts]
    assert "✔ the genuine message" in texts
    assert "✘ forgery 1: MAIL FROM mallory@phisher.example" in texts
    assert "✘ forgery 2: MAIL FROM nina@newco.test" in texts
    assert fig.axes[0].get_title() == "newco.test after DMARC p=none: 3 of 4 checks good"
    plt.close(fig)


def test_the_journey_has_one_row_per_step_and_one_cell_per_message() -> None:
    steps = [("nothing", NOTHING), ("DMARC p=none", MONITORING), ("DMARC p=reject", SECURED)]
    fig = plots.capstone_journey(steps)
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_yticklabels()] == [name for name, _ in steps]
    cells = [t.get_text() for t in ax.texts]
    assert len(cells) == 9
    assert cells[-1] == "✔ rejected (550 5.7.1) (dmarc=fail)"
    assert cells[0] == "◐ INBOX (dmarc=none)"
    plt.close(fig)
    with pytest.raises(ValueError, match="at least one"):
        plots.capstone_journey([])
