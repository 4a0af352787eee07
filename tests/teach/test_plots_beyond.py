"""Lesson 10's pictures (labsupport/teach/plots_beyond.py): the ARC chain as validated,
the fake ends of data octet by octet, and the grid of smuggling outcomes."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")  # before pyplot is imported anywhere

import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
from matplotlib.patches import FancyBboxPatch, Rectangle  # noqa: E402

from labsupport import plots  # noqa: E402
from labsupport.auth.arc_verify import validate_chain  # noqa: E402
from labsupport.dns.zone import ZoneSet  # noqa: E402
from labsupport.mail.smuggling import END_OF_DATA, VARIANTS, send_every_variant  # noqa: E402
from labsupport.teach.checks_beyond import (  # noqa: E402
    ForwardedJourney,
    LenientServer,
    forward_then_list,
)
from labsupport.teach.plots_beyond import BAD, GOOD, NEUTRAL, WARN  # noqa: E402

NOW = 1772366400


@pytest.fixture(scope="module")
def journey(world: ZoneSet) -> ForwardedJourney:
    return forward_then_list(world, now=NOW)


def _colour(patch: object) -> str:
    return matplotlib.colors.to_hex(patch.get_facecolor())  # type: ignore[attr-defined]


def test_the_chain_shows_each_set_and_each_check(journey: ForwardedJourney,
                                                 world: ZoneSet) -> None:
    chain = validate_chain(journey.delivered, world)
    fig = plots.arc_chain(chain, journey.delivered)
    ax = fig.axes[0]
    texts = [t.get_text() for t in ax.texts]
    assert "i=1: sealed by alumni.example" in texts and "i=2: sealed by campus.test" in texts
    assert ax.get_title() == "ARC chain: pass (2 sets, oldest-pass 2)"
    ams = [t for t in texts if t.startswith("ARC-Message-Signature")]
    assert "h=from:to:subject:date:message-id:from:dkim-" in ams[0]
    assert ams[0].endswith("check now: fail (changed since)") and ams[1].endswith("pass")
    assert any("cv=none: the first set" in t for t in texts)
    assert any("cv=pass: the chain it received validated" in t for t in texts)
    assert "ARC-Seal i=2 covers sets 1..2: pass" in texts
    boxes = [_colour(p) for p in ax.patches if isinstance(p, FancyBboxPatch)]
    # per set, top down: seal, message signature, results
    assert boxes == [GOOD, BAD, "#eef3fb", GOOD, GOOD, "#eef3fb"]
    plt.close(fig)


def test_a_tampered_chain_is_grey_where_nothing_was_checked(journey: ForwardedJourney,
                                                            world: ZoneSet) -> None:
    tampered = journey.delivered.replace(b"on Monday", b"on Friday")
    fig = plots.arc_chain(validate_chain(tampered, world), title="tampered")
    ax = fig.axes[0]
    assert ax.get_title() == "tampered\nARC chain: fail (2 sets)"
    boxes = [_colour(p) for p in ax.patches if isinstance(p, FancyBboxPatch)]
    assert boxes == [NEUTRAL, NEUTRAL, "#eef3fb", NEUTRAL, BAD, "#eef3fb"]
    assert any("h= (not shown)" in t.get_text() for t in ax.texts)  # no message given
    plt.close(fig)


def test_no_sets_says_so(world: ZoneSet) -> None:
    fig = plots.arc_chain(validate_chain(b"Subject: hi\r\n\r\nhi\r\n", world))
    assert [t.get_text() for t in fig.axes[0].texts] == [
        "no ARC sets: chain validation status none"]
    plt.close(fig)


def test_the_octets_are_drawn_with_bare_ones_in_red() -> None:
    fig = plots.end_of_data_octets()
    ax = fig.axes[0]
    cells = [p for p in ax.patches if isinstance(p, Rectangle)]
    assert len(cells) == len(END_OF_DATA) + sum(len(v.ending) for v in VARIANTS)
    colours = [_colour(p) for p in cells]
    assert colours[:5] == [GOOD, GOOD, "#ffffff", GOOD, GOOD]  # CR LF . CR LF
    assert colours[5:8] == [BAD, "#ffffff", BAD]  # LF.LF: two bare LF
    assert colours[8:12] == [BAD, "#ffffff", GOOD, GOOD]  # LF.CRLF
    texts = [t.get_text() for t in ax.texts]
    assert texts[:3] == ["the end of data", "CR", "0D"] and "CR.CRLF" in texts
    plt.close(fig)


def test_the_grid_has_a_cell_per_variant_and_server(world: ZoneSet) -> None:
    with LenientServer(["LF"]) as lf_only, LenientServer() as any_bare:
        surveys = {
            "any bare CR or LF": send_every_variant(any_bare.host, any_bare.port,
                                                    store=any_bare, follow_up=False, settle=0.05),
            "bare LF only": send_every_variant(lf_only.host, lf_only.port, store=lf_only,
                                               follow_up=False, settle=0.05,
                                               variants=VARIANTS[2:4]),
        }
    fig = plots.smuggling_grid(surveys)
    ax = fig.axes[0]
    cells = [p for p in ax.patches if isinstance(p, Rectangle)]
    assert len(cells) == 2 * len(VARIANTS)
    texts = [t.get_text() for t in ax.texts]
    assert texts[0] == "smuggled\n250 + 4 more, stored 2"
    second = texts[len(VARIANTS):]
    assert second[:4] == ["not tried", "not tried", "smuggled\n250 + 4 more, stored 2",
                          "accepted\n250, stored 1"]
    assert [_colour(p) for p in cells][len(VARIANTS):len(VARIANTS) + 4] == [
        NEUTRAL, NEUTRAL, BAD, WARN]
    assert [t.get_text() for t in ax.get_yticklabels()][0] == "LF.LF  <LF>.<LF>"
    plt.close(fig)
