"""The DKIM pictures of notebook 05 (labsupport.teach.plots_dkim): what a signature
covers, line by line, as the verifier reads the message; and the tamper grid."""

from __future__ import annotations

import dataclasses

import matplotlib

matplotlib.use("Agg")  # before pyplot is imported anywhere

import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402

from labsupport import plots  # noqa: E402
from labsupport.auth import dkim  # noqa: E402
from labsupport.dns.zone import ZoneSet  # noqa: E402
from labsupport.teach.plots_dkim import _body_lines, _signed_fields  # noqa: E402

MESSAGE = (
    b"From: Alice Adams <alice@northwind.test>\r\n"
    b"To: Bob <bob@northwind.test>\r\n"
    b"Subject: Quarterly figures\r\n"
    b"X-Mailer: lab\r\n"
    b"\r\n"
    b"Hi Bob,\r\n"
    b"\r\n"
    b"the figures are attached.\r\n"
)


@pytest.fixture(scope="module")
def key() -> dkim.LabKey:
    return dkim.lab_key("northwind.test")


def _sign(key: dkim.LabKey, **options: object) -> bytes:
    return dkim.sign(MESSAGE, domain="northwind.test", selector=str(key.selector), private_key=key,
                     **options)  # type: ignore[arg-type]


def test_headers_in_h_are_signed_and_the_extra_from_is_absent(world: ZoneSet,
                                                               key: dkim.LabKey) -> None:
    signed = _sign(key)
    signature = dkim.verify(signed, world)[0]
    rows, absent = _signed_fields(signed, signature)
    kinds = {text.split(":")[0]: (kind, note) for kind, text, note in rows}
    assert kinds["DKIM-Signature"] == ("signature", "b= empty when hashed")
    assert kinds["From"] == ("signed", "h= #1")
    assert kinds["Subject"][0] == "signed"
    assert kinds["X-Mailer"] == ("unsigned", "not in h=")
    assert absent == ["from"]  # oversigned by default


def test_an_added_from_on_top_is_not_the_one_signed(world: ZoneSet, key: dkim.LabKey) -> None:
    added = b"From: Northwind CEO <ceo@northwind.test>\r\n" + _sign(key, oversign=())
    signature = dkim.verify(added, world)[0]
    rows, absent = _signed_fields(added, signature)
    froms = [(kind, text) for kind, text, _ in rows if text.startswith("From:")]
    assert froms == [("unsigned", "From: Northwind CEO <ceo@northwind.test>"),
                     ("signed", "From: Alice Adams <alice@northwind.test>")]
    assert absent == []


def test_the_body_after_l_is_marked_and_trailing_empty_lines_are_dropped(
        world: ZoneSet, key: dkim.LabKey) -> None:
    appended = _sign(key, body_length=True) + b"P.S. pay invoice 4711\r\n\r\n\r\n"
    signature = dkim.verify(appended, world)[0]
    assert signature.verdict == "pass"
    kinds = [kind for kind, _, _ in _body_lines(appended, signature)]
    assert kinds == ["signed", "signed", "signed", "after-l", "ignored", "ignored"]


def test_a_line_cut_by_l_says_how_much_of_it_was_signed(world: ZoneSet,
                                                        key: dkim.LabKey) -> None:
    signed = _sign(key)
    signature = dkim.verify(signed, world)[0]
    cut = dataclasses.replace(signature, body_length=12)  # "Hi Bob,", the empty line, 1 more
    rows = _body_lines(signed, cut)
    assert rows[0] == ("signed", "Hi Bob,", "")
    assert rows[1] == ("signed", "", "")
    assert rows[2] == ("after-l", "the figures are attached.", "only 1 of 27 octets signed")


def test_the_pictures_draw_every_line_and_every_cell(world: ZoneSet, key: dkim.LabKey) -> None:
    signed = _sign(key)
    signature = dkim.verify(signed, world)[0]
    fig = plots.dkim_coverage(signed, signature)
    texts = [t.get_text() for t in fig.axes[0].texts]
    assert "X-Mailer: lab" in texts and "the figures are attached." in texts
    assert "From: (no such field: none may be added)" in texts
    assert "pass" in fig.axes[0].get_title()
    plt.close(fig)
    grid = plots.dkim_tamper_grid({"re-wrap": {"simple": "fail", "relaxed": "pass"},
                                   "new text": {"simple": "fail", "relaxed": "fail"}})
    cells = [t.get_text() for t in grid.axes[0].texts]
    assert cells == ["✘ fail", "✔ pass", "✘ fail", "✘ fail"]
    assert [t.get_text() for t in grid.axes[0].get_xticklabels()] == [
        "c=simple/simple", "c=relaxed/relaxed"]
    plt.close(grid)
