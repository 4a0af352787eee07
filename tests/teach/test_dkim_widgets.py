"""labsupport.teach.widgets.dkim_explorer: sign, change on the way, verify (notebook 05)."""

from __future__ import annotations

import pytest

from labsupport.dns.zone import ZoneSet

pytest.importorskip("ipywidgets")

from labsupport.teach.widgets import dkim_explorer  # noqa: E402


def test_explorer_builds_and_passes_untouched(world: ZoneSet) -> None:
    panel = dkim_explorer(world)
    result = panel.result()
    assert result.verdict == "pass"
    assert panel.signing().verdict == "signed"
    assert panel.signing().tags[2] == ("c", "relaxed/relaxed")
    html = panel.children[-1].value
    assert "body hash signed (bh=)" in html and "␍␊" in html and "match" in html
    assert "dkim=pass" in panel.children[-2].value


def test_changing_the_received_subject_fails(world: ZoneSet) -> None:
    panel = dkim_explorer(world)
    received = panel.controls["received"]
    received.value = received.value.replace("Quarterly figures", "Quarterly figurez")
    assert panel.result().verdict == "fail"
    assert "dkim=fail" in panel.children[-2].value


def test_canonicalization_decides_whether_spaces_break_it(world: ZoneSet) -> None:
    panel = dkim_explorer(world)
    received = panel.controls["received"]
    received.value = received.value.replace("attached.\n", "attached.   \n")
    assert panel.result().verdict == "pass"  # relaxed body forgives trailing spaces
    panel.controls["body_c"].value = "simple"
    assert panel.result().verdict == "fail"
    assert "body hash did not verify" in panel.result()[0].summary
    assert "differ" in panel.children[-1].value


def test_unsigned_header_may_change_signed_one_may_not(world: ZoneSet) -> None:
    panel = dkim_explorer(world)
    panel.controls["headers"].value = ("from", "to", "date")
    assert "h=from:to:date:from" in panel.signing().signature_field.decode()
    received = panel.controls["received"]
    received.value = received.value.replace("Quarterly", "Monthly")
    assert panel.result().verdict == "pass"  # the Subject is not signed
    panel.controls["headers"].value = ("from", "to", "subject", "date")
    assert panel.result().verdict == "fail"


def test_oversigning_catches_an_added_from(world: ZoneSet) -> None:
    panel = dkim_explorer(world)
    received = panel.controls["received"]
    received.value = "From: CEO <ceo@northwind.test>\n" + received.value
    assert panel.result().verdict == "fail"
    panel.controls["oversign"].value = False
    received.value = "From: CEO <ceo@northwind.test>\n" + panel.controls["sent"].value
    assert panel.result().verdict == "pass"


def test_editing_the_sent_message_resets_what_arrives(world: ZoneSet) -> None:
    panel = dkim_explorer(world)
    panel.controls["received"].value = "garbage"
    panel.controls["sent"].value = ("From: alice@northwind.test\nX-Note: hi\n"
                                    "Subject: new\n\nNew body.\n")
    assert panel.controls["received"].value == panel.controls["sent"].value
    assert panel.controls["headers"].options == ("from", "x-note", "subject")
    assert panel.result().verdict == "pass"


def test_a_refused_signing_says_why(world: ZoneSet) -> None:
    panel = dkim_explorer(world, "Subject: no from here\n\nbody\n")
    panel.controls["oversign"].value = False
    assert panel.signing().verdict == "refused" and panel.result() is None
    assert "not signed" in panel.children[-2].value
