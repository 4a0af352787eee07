"""labsupport.teach.widgets.alignment_explorer: From, MAIL FROM, d=, aspf/adkim -> alignment and
the DMARC verdict (notebook 06), on the lab's zones in memory."""

from __future__ import annotations

import pytest

from labsupport import dmarc
from labsupport.dns.zone import ZoneSet

pytest.importorskip("ipywidgets")

from labsupport.teach.widgets import alignment_explorer  # noqa: E402


def test_explorer_builds_with_the_attackers_case(world: ZoneSet) -> None:
    panel = alignment_explorer(world)
    result = panel.result()
    assert (result.verdict, result.disposition) == ("fail", "reject")
    assert "DMARC fail" in panel.children[2].value and "reject" in panel.children[2].value
    table = panel.children[3].value
    assert "phisher.example" in table and "not aligned" in table


def test_typing_changes_alignment_and_verdict(world: ZoneSet) -> None:
    panel = alignment_explorer(world)
    panel.controls["mail_from_domain"].value = "mail.northwind.test"   # as a student types
    assert panel.result().verdict == "pass" and panel.result().spf_aligned
    panel.controls["aspf"].value = "s"
    assert panel.result().verdict == "fail"
    panel.controls["dkim_domain"].value = "northwind.test"
    assert panel.result().verdict == "pass" and panel.result().dkim_aligned
    panel.controls["adkim"].value = "s"
    assert panel.result().dkim_aligned  # the very same name aligns in strict mode too
    assert panel.set(from_domain="billing.northwind.test").verdict == "fail"


def test_set_and_empty_fields(world: ZoneSet) -> None:
    panel = alignment_explorer(world, "campus.test", "", "lists.campus.test")
    result = panel.result()
    assert [a.mechanism for a in result.alignments] == ["dkim"]
    assert result.verdict == "pass" and result.disposition == "none"  # campus: p=none
    assert panel.set(from_domain="") is None
    assert "type a From domain" in panel.children[2].value
    with pytest.raises(TypeError):
        panel.set(colour="blue")


def test_the_lab_zones_never_change(zones: ZoneSet) -> None:
    before = dmarc.discover("northwind.test", zones).record.text
    panel = alignment_explorer(zones)
    panel.set(aspf="s", adkim="s", dkim_domain="northwind.test")
    assert dmarc.discover("northwind.test", zones).record.text == before
