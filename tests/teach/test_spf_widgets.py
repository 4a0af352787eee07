"""The SPF explorer of notebooks/04-spf.ipynb (labsupport/teach/widgets.py), on the lab's zones."""

from __future__ import annotations

import pytest

from labsupport.dns.zone import ZoneSet
from labsupport.teach.checks import spf_record_of

pytest.importorskip("ipywidgets")

from labsupport.teach.widgets import spf_explorer  # noqa: E402

NORTHWIND = "v=spf1 ip4:192.0.2.10 ip6:2001:db8:1::10 include:_spf.mailcloud.example -all"


def _status(panel) -> str:  # type: ignore[no-untyped-def]
    return panel.children[2].value


def test_explorer_builds_with_the_published_record(zones: ZoneSet) -> None:
    panel = spf_explorer(zones, "northwind.test", "198.51.100.150")
    record_box = panel.children[1]
    assert record_box.value == NORTHWIND
    result = panel.result()
    assert result.verdict == "pass" and result.mechanism == "include:_spf.mailcloud.example"
    assert "scratch copy" in _status(panel)


def test_changing_the_record_changes_the_verdict(zones: ZoneSet) -> None:
    panel = spf_explorer(zones, "northwind.test", "198.51.100.150")
    record_box = panel.children[1]
    record_box.value = "v=spf1 ip4:192.0.2.10 -all"          # typed, as a student would
    assert panel.result().verdict == "fail"
    record_box.value = "v=spf1 ip4:192.0.2.10 ~all"
    assert panel.result().verdict == "softfail"
    record_box.value = "v=spf1 ip4:192.0.2.10 -al"
    assert panel.result().verdict == "permerror"
    assert "'-al'" in panel.result().summary
    # The lab's zone never changed.
    assert spf_record_of("northwind.test", zones) == NORTHWIND


def test_changing_the_ip_and_the_domain(zones: ZoneSet) -> None:
    panel = spf_explorer(zones)
    assert panel.result().verdict == "pass"  # 192.0.2.10 for northwind.test
    assert panel.set(ip="203.0.113.66").verdict == "fail"
    assert panel.set(domain="campus.test", record="v=spf1 mx ~all").verdict == "softfail"
    assert panel.set(ip="198.51.100.25").verdict == "pass"
    # Back to what the domain publishes.
    panel.children[0].children[2].click()
    assert panel.children[1].value == spf_record_of("campus.test", zones)
    assert spf_record_of("campus.test", zones) != "v=spf1 mx ~all"


def test_explorer_edits_do_not_leak_between_domains(zones: ZoneSet) -> None:
    panel = spf_explorer(zones, "northwind.test", "198.51.100.150")
    panel.set(domain="_spf.mailcloud.example", record="v=spf1 -all")
    assert panel.set(domain="northwind.test", record=NORTHWIND).verdict == "pass"


def test_explorer_speaks_in_sentences(zones: ZoneSet) -> None:
    panel = spf_explorer(zones)
    assert panel.set(ip="not an address") is None
    assert "not an IP address" in _status(panel)
    assert panel.set(ip="192.0.2.10", domain="nowhere.invalid") is None
    assert "cannot be tried here" in _status(panel)
    assert panel.set(domain="northwind.test", record="").verdict == "none"
