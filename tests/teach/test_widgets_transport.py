"""labsupport.teach.widgets.defence_explorer (notebook 09): pick a defence and whether the
attacker relays; the panel sends a real message and shows the delivering MTA's decision."""

from __future__ import annotations

import pytest

import labsupport

pytest.importorskip("ipywidgets")

from labsupport.teach.widgets import defence_explorer  # noqa: E402


def test_the_explorer_starts_with_dane_under_attack(clean_lab: labsupport.Lab) -> None:
    panel = defence_explorer(clean_lab)
    run = panel.result()
    assert (run.case, run.relay, run.verdict) == ("DANE", True, "deferred (454 4.7.4)")
    verdict, detail = panel.children[1].value, panel.children[2].value
    assert "deferred (454 4.7.4)" in verdict and "to carol@campus.test" in verdict
    assert "MTA-STS: no-policy, DANE: dane, STARTTLS stripped by the relay" in verdict
    assert "does not offer STARTTLS, yet its signed TLSA records promise TLS" in detail


def test_choosing_changes_the_delivery(clean_lab: labsupport.Lab) -> None:
    panel = defence_explorer(clean_lab, "no defence", relay=False)
    assert panel.result().verdict == "delivered over TLS"  # opportunistic STARTTLS
    panel.controls["relay"].value = True  # as a student ticks the box
    assert panel.result().stripped and panel.result().verdict == "delivered in the clear"
    panel.controls["case"].value = "MTA-STS enforce"
    assert panel.result().verdict == "deferred (454 4.7.4)"
    testing = panel.set(case="MTA-STS testing", relay=False)
    assert testing.verdict == "delivered over TLS" and testing.sts == "testing"
    assert "delivered over TLS" in panel.children[1].value
    assert clean_lab.mta_sts.policy("northwind.test") is not None
    assert "mode: enforce" in (clean_lab.mta_sts.policy("northwind.test") or "")


def test_set_refuses_unknown_fields(clean_lab: labsupport.Lab) -> None:
    panel = defence_explorer(clean_lab, "DANE", relay=False)
    with pytest.raises(TypeError, match="unknown field"):
        panel.set(colour="blue")
    assert panel.result().verdict == "delivered over TLS"
