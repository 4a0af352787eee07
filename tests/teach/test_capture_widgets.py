"""The TLS lesson's panel and round-trip chart (presentation of labsupport.mail.mitm results)."""

from __future__ import annotations

import matplotlib

import labsupport

matplotlib.use("Agg")


def test_tls_panel_runs_a_scenario(clean_lab: labsupport.Lab) -> None:
    panel = labsupport.teach.widgets.tls_panel(clean_lab, capture_mode="relay")
    controls = panel.children[0].children
    controls[2].value = True  # attacker on, opportunistic STARTTLS
    scenario = panel.run()
    assert scenario.password_exposed and panel.scenario() is scenario
    assert "password exposed: yes" in panel.children[1].value
    controls[1].value = True  # now the client requires TLS
    assert not panel.run().password_exposed
    assert "password exposed: no" in panel.children[1].value


def test_round_trips_chart() -> None:
    import matplotlib.pyplot as plt

    fig = labsupport.teach.plots.round_trips_chart({"plain": None, "STARTTLS": 4, "implicit": 2})
    labels = [t.get_text() for t in fig.axes[0].texts]
    assert labels == ["never protected", "4", "2"]
    plt.close(fig)
