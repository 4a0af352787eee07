"""Pictures of the capstone: a domain's scorecard, and its defences growing step by step.

Public mail-configuration checkers grade a domain by looking up its records. The
capstone's :func:`capstone_scorecard` grades it by what a receiver *did*: each line is
evidence from one run of ``checks.receiver_report`` (three messages in the domain's name,
one genuine and two forged, sent to another organisation's MX role):

* **MX**: can mail *to* the domain be delivered (replies, bounces, reports)?
* **SPF**: did the genuine message pass SPF, and did the forgery that put the domain in
  its envelope fail it?
* **DKIM**: did the genuine message carry a signature that passed?
* **DMARC**: did the genuine message pass DMARC, and what happened to the forgeries:
  delivered (no record, or ``p=none``), filed as Junk (``p=quarantine``) or refused
  (``p=reject``)?

Beside the four checks, one card per message shows the receiver's action and its
``spf=``, ``dkim=`` and ``dmarc=`` results. :func:`capstone_journey` puts the reports of
every step side by side, one row per step, one column per message.

Presentation only: the receiver decided; these functions draw what it decided.

Introduced in ``notebooks/07-capstone-secure-a-domain.ipynb``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

#: Grades and their colours: good, half-way, missing or harmful.
GRADE_COLOURS = {"good": "#c9e9d2", "partial": "#fbe3b5", "bad": "#f6c9c9"}
GRADE_MARKS = {"good": "✔", "partial": "◐", "bad": "✘"}


class Outcome(Protocol):
    """What the scorecard reads of one message's outcome (``checks.ReceiverOutcome``)."""

    @property
    def label(self) -> str: ...
    @property
    def legitimate(self) -> bool: ...
    @property
    def action(self) -> str: ...
    @property
    def spf(self) -> str: ...
    @property
    def dkim(self) -> str: ...
    @property
    def dmarc(self) -> str: ...


class Report(Protocol):
    """What the scorecard reads of a receiver's report (``checks.ReceiverReport``)."""

    @property
    def domain(self) -> str: ...
    @property
    def receiving(self) -> str: ...
    @property
    def outcomes(self) -> tuple[Outcome, ...]: ...


def grade(report: Report) -> list[tuple[str, str, str]]:
    """The four checks as (name, grade, what the receiver's behaviour shows)."""
    genuine = [o for o in report.outcomes if o.legitimate]
    forged = [o for o in report.outcomes if not o.legitimate]
    rows: list[tuple[str, str, str]] = []
    if report.receiving.startswith("deliverable"):
        rows.append(("MX", "good", "mail to the domain is delivered"))
    else:
        rows.append(("MX", "bad", "mail to the domain has nowhere to go"))
    envelope_forgeries = [o for o in forged if o.spf != "pass"]
    if genuine and all(o.spf == "pass" for o in genuine):
        if envelope_forgeries and all(o.spf == "fail" for o in envelope_forgeries):
            rows.append(("SPF", "good", "its own host passes, the forged envelope fails"))
        else:
            rows.append(("SPF", "partial", "its own host passes; forgers are not refused (~all?)"))
    else:
        spf = genuine[0].spf if genuine else "no genuine message"
        rows.append(("SPF", "bad", f"the genuine message gets spf={spf}"))
    if genuine and all(o.dkim == "pass" for o in genuine):
        rows.append(("DKIM", "good", "the genuine message is signed and verifies"))
    else:
        dkim = genuine[0].dkim if genuine else "none"
        rows.append(("DKIM", "bad", f"the genuine message gets dkim={dkim}"))
    if genuine and all(o.dmarc == "pass" for o in genuine):
        if forged and all(o.action.startswith("rejected") for o in forged):
            rows.append(("DMARC", "good", "genuine mail passes, forgeries are refused"))
        elif forged and all(o.action == "Junk" for o in forged):
            rows.append(("DMARC", "partial", "forgeries go to Junk (quarantine)"))
        else:
            rows.append(("DMARC", "partial", "forgeries fail DMARC but are delivered (p=none)"))
    else:
        dmarc = genuine[0].dmarc if genuine else "none"
        rows.append(("DMARC", "bad", f"dmarc={dmarc}: receivers cannot tell forgeries apart"))
    return rows


def _message_grade(outcome: Outcome) -> str:
    if outcome.legitimate:
        if outcome.action == "INBOX" and outcome.dmarc == "pass":
            return "good"
        return "partial" if outcome.action == "INBOX" else "bad"
    if outcome.action.startswith("rejected"):
        return "good"
    return "partial" if outcome.action == "Junk" else "bad"


def _labels(outcomes: Sequence[Outcome], sep: str = ": ") -> list[str]:
    """Short names for the messages: the genuine one, then forgery 1, 2... with the
    envelope sender each used (the outcome's label says it after a comma)."""
    names = []
    forgeries = 0
    for outcome in outcomes:
        if outcome.legitimate:
            names.append("the genuine message")
            continue
        forgeries += 1
        how = outcome.label.split(", ", 1)[1] if ", " in outcome.label else outcome.label
        names.append(f"forgery {forgeries}{sep}{how}")
    return names


def capstone_scorecard(report: Report, step: str = "", ax: Axes | None = None) -> Figure:
    """The domain's scorecard after one step: four checks on the left, the receiver's
    action on each test message on the right."""
    import matplotlib.pyplot as plt
    from matplotlib.patches import FancyBboxPatch

    if ax is None:
        fig, ax = plt.subplots(figsize=(10, 3.4))
    else:
        fig = ax.figure  # type: ignore[assignment]
    ax.set_axis_off()
    ax.set_xlim(0, 10)
    ax.set_ylim(4.3, -0.3)
    checks = grade(report)
    for y, (name, mark, why) in enumerate(checks):
        ax.add_patch(FancyBboxPatch((0.05, y + 0.08), 4.6, 0.84, boxstyle="round,pad=0.02",
                                    fc=GRADE_COLOURS[mark], ec="#999999", lw=0.6))
        ax.text(0.2, y + 0.5, f"{GRADE_MARKS[mark]} {name}", fontsize=11, weight="bold",
                va="center")
        ax.text(1.55, y + 0.5, why, fontsize=8, va="center")
    outcomes = list(report.outcomes)
    size = 4.0 / max(1, len(outcomes))
    for n, (outcome, name) in enumerate(zip(outcomes, _labels(outcomes), strict=True)):
        top = n * size
        mark = _message_grade(outcome)
        ax.add_patch(FancyBboxPatch((5.0, top + 0.08), 4.95, size - 0.16,
                                    boxstyle="round,pad=0.02", fc=GRADE_COLOURS[mark],
                                    ec="#999999", lw=0.6))
        ax.text(5.15, top + size * 0.33, f"{GRADE_MARKS[mark]} {name}", fontsize=9,
                weight="bold", va="center")
        ax.text(5.15, top + size * 0.66, f"{outcome.action}   spf={outcome.spf} "
                f"dkim={outcome.dkim} dmarc={outcome.dmarc}", fontsize=8, va="center",
                family="DejaVu Sans Mono")
    good = sum(1 for _, mark, _ in checks if mark == "good")
    where = f" after {step}" if step else ""
    ax.set_title(f"{report.domain}{where}: {good} of {len(checks)} checks good", fontsize=10)
    ax.text(2.35, 4.15, "what the records achieve", ha="center", fontsize=8, color="#555555")
    ax.text(7.45, 4.15, "what the receiver did with each message", ha="center", fontsize=8,
            color="#555555")
    fig.tight_layout()
    return fig


def capstone_journey(steps: Sequence[tuple[str, Report]], ax: Axes | None = None) -> Figure:
    """Every step's report side by side: one row per step (``(name, report)``), one
    column per test message, each cell the receiver's action and DMARC result."""
    import matplotlib.pyplot as plt

    if not steps:
        raise ValueError("capstone_journey needs at least one (step, report) pair")
    columns = _labels(steps[0][1].outcomes, sep="\n")
    if ax is None:
        fig, ax = plt.subplots(figsize=(10, 0.55 * len(steps) + 1.3))
    else:
        fig = ax.figure  # type: ignore[assignment]
    ax.set_xlim(0, len(columns))
    ax.set_ylim(len(steps), 0)
    for y, (_name, report) in enumerate(steps):
        for x, outcome in enumerate(report.outcomes):
            mark = _message_grade(outcome)
            ax.add_patch(plt.Rectangle((x + 0.02, y + 0.06), 0.96, 0.88,
                                       fc=GRADE_COLOURS[mark]))
            ax.text(x + 0.5, y + 0.5, f"{GRADE_MARKS[mark]} {outcome.action} "
                    f"(dmarc={outcome.dmarc})", ha="center", va="center", fontsize=8)
    ax.set_xticks([x + 0.5 for x in range(len(columns))], columns, fontsize=8.5)
    ax.xaxis.tick_top()
    ax.set_yticks([y + 0.5 for y in range(len(steps))], [name for name, _ in steps],
                  fontsize=9)
    ax.tick_params(length=0)
    for side in ax.spines.values():
        side.set_visible(False)
    ax.set_title(f"Securing {steps[0][1].domain}, step by step: what the receiver does",
                 fontsize=10, pad=22)
    fig.tight_layout()
    return fig


__all__ = ["GRADE_COLOURS", "capstone_journey", "capstone_scorecard", "grade"]
