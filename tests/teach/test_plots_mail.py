"""Pictures of mail on its way (labsupport.teach.plots_mail) and the SPF lookup budget
(labsupport.teach.plots.spf_lookup_budget)."""

from __future__ import annotations

from dataclasses import dataclass

import matplotlib

matplotlib.use("Agg")  # before pyplot is imported anywhere

import matplotlib.pyplot as plt  # noqa: E402

from labsupport import plots  # noqa: E402
from labsupport.auth import spf  # noqa: E402
from labsupport.dns.zone import ZoneSet  # noqa: E402

TWO_HOPS = (
    "Received: from out.northwind.test (out.northwind.test [192.0.2.10])\r\n"
    "\tby mx-a.campus.test with ESMTPS id B2; Sat, 28 Nov 2026 10:00:03 +0000\r\n"
    "Received: from laptop.northwind.test (unknown [192.0.2.100])\r\n"
    "\tby smtp.northwind.test with ESMTPSA id A1; Sat, 28 Nov 2026 10:00:00 +0000\r\n"
    "From: alice@northwind.test\r\nTo: carol@campus.test\r\nSubject: hi\r\n\r\nhello\r\n"
)


def _texts(fig: matplotlib.figure.Figure) -> list[str]:
    return [t.get_text() for ax in fig.axes for t in ax.texts]


def test_the_hops_run_from_the_bottom_field_up() -> None:
    fig = plots.received_hops(TWO_HOPS)
    texts = _texts(fig)
    hosts = [t for t in texts if t.endswith(".test")]
    assert hosts == ["laptop.northwind.test", "smtp.northwind.test", "mx-a.campus.test"]
    first, second = [t for t in texts if t.startswith("ESMTP")]
    assert first.splitlines()[0] == "ESMTPSA" and "seen from 192.0.2.100" in first
    assert "+0 s" in first
    assert second.splitlines()[0] == "ESMTPS" and "+3 s" in second
    plt.close(fig)


def test_a_message_without_received_fields_says_so() -> None:
    fig = plots.received_hops("From: a@b.test\r\n\r\nbody\r\n")
    assert _texts(fig) == ["no Received fields: the message never crossed a server"]
    plt.close(fig)


@dataclass(frozen=True)
class Tried:
    worked: bool


def test_the_pairing_grid_marks_which_pairs_work() -> None:
    tries = {
        ("submission", "STARTTLS"): Tried(True),
        ("submission", "implicit TLS"): Tried(False),
        ("submissions", "STARTTLS"): Tried(False),
        ("submissions", "implicit TLS"): Tried(True),
    }
    fig = plots.pairing_grid(tries)
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["client uses STARTTLS",
                                                            "client uses implicit TLS"]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["submission", "submissions"]
    assert [t.get_text() for t in ax.texts] == ["✔ works", "✘ fails", "✘ fails", "✔ works"]
    plt.close(fig)


def test_the_lookup_budget_shows_both_counts_and_marks_the_failures(world: ZoneSet) -> None:
    own = spf.check_host("192.0.2.10", "northwind.test", "a@northwind.test", resolver=world)
    careless = spf.check_host("203.0.113.66", "careless.test", "b@careless.test", resolver=world)
    oldsite = spf.check_host("203.0.113.81", "oldsite.example", "c@oldsite.example",
                             resolver=world)
    fig = plots.spf_lookup_budget({"own": own, "careless": careless, "oldsite": oldsite})
    terms_ax, void_ax = fig.axes
    assert [t.get_text() for t in terms_ax.get_yticklabels()] == [
        "own: pass", "careless: permerror", "oldsite: permerror"]
    widths = [bar.get_width() for bar in terms_ax.patches]
    assert widths == [own.dns_terms, careless.dns_terms, oldsite.dns_terms]
    red = matplotlib.colors.to_rgba("#c44e52")
    assert [bar.get_facecolor() == red for bar in terms_ax.patches] == [False, True, False]
    assert [bar.get_facecolor() == red for bar in void_ax.patches] == [False, False, True]
    plt.close(fig)
