"""DMARC aggregate reports (labsupport/auth/dmarc_reports.py): the RFC 9990 format written and
read, the older RFC 7489 format read, the structure checked against the RFC 9990 sample."""

from __future__ import annotations

import gzip
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from labsupport.auth.dmarc_reports import (
    NAMESPACE,
    DKIMAuth,
    DMARCReportError,
    Observation,
    PolicyPublished,
    SPFAuth,
    aggregate_report,
    parse_report,
    report_filename,
    report_records,
    reports_by_domain,
    reports_by_period,
    validate_report,
)

SAMPLES = Path(__file__).resolve().parents[3] / "shared" / "conformance" / "dmarc"
RFC9990_SAMPLE = SAMPLES / "rfc9990-sample.xml"
RFC7489_SAMPLE = SAMPLES / "example.net!example.com!1529366400!1529452799.xml"

NORTHWIND = PolicyPublished("northwind.test", "reject", discovery_method="treewalk")


def seen(time: float, ip: str = "192.0.2.10", *, dmarc: str = "pass", dkim: bool = True,
         spf: bool = True, disposition: str = "none", header_from: str = "northwind.test",
         envelope_from: str = "northwind.test", domain: str = "northwind.test",
         policy: PolicyPublished | None = NORTHWIND) -> Observation:
    return Observation(
        time=time, source_ip=ip, header_from=header_from, policy_domain=domain, dmarc=dmarc,
        disposition=disposition, dkim_aligned=dkim, spf_aligned=spf,
        envelope_from=envelope_from, envelope_to="campus.test",
        dkim_results=(DKIMAuth(header_from, "lab2026-rsa", "pass" if dkim else "fail"),),
        spf_results=(SPFAuth(envelope_from, "pass" if spf else "fail"),), policy=policy)


TRAFFIC = [
    seen(1000), seen(1001), seen(1002),
    # the forwarder: SPF fails, DKIM still aligns
    seen(1003, "198.51.100.61", spf=False),
    # the spoofer: both fail, rejected
    seen(1004, "203.0.113.66", dmarc="fail", dkim=False, spf=False, disposition="reject",
         envelope_from="phisher.example"),
    seen(1005, "203.0.113.66", dmarc="fail", dkim=False, spf=False, disposition="reject",
         envelope_from="phisher.example"),
    # another policy domain, and one outside the period
    seen(1006, "198.51.100.10", domain="campus.test", header_from="campus.test",
         envelope_from="campus.test", policy=PolicyPublished("campus.test", "none")),
    seen(5000),
]


# -- the samples (RFC 9990 section 3 and RFC 7489 appendix C) ----------------------------


def test_rfc9990_sample_parses() -> None:
    report = parse_report(RFC9990_SAMPLE.read_bytes())
    assert report.format == "rfc9990"
    assert (report.org_name, report.report_id) == ("Sample Reporter",
                                                   "3v98abbp8ya9n3va8yr8oa3ya")
    assert (report.begin, report.end) == (302832000, 302918399)
    assert report.generator == "Example DMARC Aggregate Reporter v1.2"
    assert report.policy == PolicyPublished("example.com", "quarantine", sp="none", np="none",
                                            testing="n", discovery_method="treewalk")
    (record,) = report.records
    assert (record.source_ip, record.count, record.disposition) == ("192.0.2.123", 123, "pass")
    assert (record.dkim, record.spf, record.dmarc) == ("pass", "fail", "pass")
    assert record.alignment == "DKIM only"
    assert record.dkim_results == (DKIMAuth("example.com", "abc123", "pass"),)
    assert record.spf_results == (SPFAuth("example.com", "fail"),)
    assert (record.header_from, record.envelope_from) == ("example.com", "example.com")
    assert report.total == 123 and report.count(dmarc="pass") == 123


def test_rfc7489_sample_parses_despite_its_stray_text() -> None:
    report = parse_report(RFC7489_SAMPLE.read_bytes())
    assert report.format == "rfc7489"
    assert report.org_name == "example.net" and report.email == "postmaster@example.net"
    assert report.policy.pct == "100" and report.policy.np is None
    assert (report.policy.adkim, report.policy.aspf, report.policy.fo) == ("r", "r", "0")
    (record,) = report.records
    assert (record.source_ip, record.count, record.disposition) == ("199.230.200.36", 1,
                                                                    "none")
    assert (record.dkim, record.spf, record.dmarc) == ("fail", "fail", "fail")
    assert record.dkim_results == () and record.spf_results == ()


def test_rfc9990_sample_validates() -> None:
    assert validate_report(RFC9990_SAMPLE.read_bytes()) == []


def test_rfc7489_sample_is_not_an_rfc9990_report() -> None:
    problems = validate_report(RFC7489_SAMPLE.read_bytes())
    assert any("namespace" in p for p in problems)
    assert any("stray text '11'" in p for p in problems)
    assert any("<pct>" in p for p in problems)


# -- the lab's own reports ---------------------------------------------------------------


def _paths(element: ET.Element, prefix: str = "") -> set[str]:
    name = element.tag.rpartition("}")[2]
    here = f"{prefix}/{name}"
    found = {here}
    for child in element:
        found |= _paths(child, here)
    return found


def test_lab_report_has_the_structure_of_the_rfc9990_sample() -> None:
    xml = aggregate_report(TRAFFIC, domain="northwind.test", begin=0, end=2000,
                           report_id="lab-1")
    assert validate_report(xml) == []
    ours = ET.fromstring(xml)
    sample = ET.fromstring(RFC9990_SAMPLE.read_bytes())
    assert ours.tag == sample.tag == f"{{{NAMESPACE}}}feedback"
    # version, metadata, policy, then the records (the sample has one, the lab three)
    assert list(dict.fromkeys(c.tag for c in ours)) == [c.tag for c in sample]
    # every element the lab writes is one the sample has, or an optional one of the
    # RFC 9990 tables the sample leaves out
    optional = {"/feedback/record/auth_results/spf/scope",
                "/feedback/record/identifiers/envelope_to"}
    assert _paths(ours) - _paths(sample) <= optional
    assert _paths(sample) - _paths(ours) <= {"/feedback/report_metadata/extra_contact_info",
                                             "/feedback/policy_published/sp",
                                             "/feedback/policy_published/np",
                                             "/feedback/policy_published/testing"}


def test_lab_report_counts_parse_back() -> None:
    xml = aggregate_report(TRAFFIC, domain="northwind.test", begin=0, end=2000)
    report = parse_report(xml)
    assert report.format == "rfc9990" and report.domain == "northwind.test"
    assert report.total == 6  # campus.test and the message at 5000 are not in it
    assert report.count(dmarc="pass") == 4 and report.count(disposition="reject") == 2
    assert report.by("source_ip") == {"192.0.2.10": 3, "198.51.100.61": 1, "203.0.113.66": 2}
    assert report.by("alignment") == {"DKIM and SPF": 3, "DKIM only": 1, "neither": 2}
    # identical messages share one record with their count (RFC 9990 section 3)
    assert sorted(r.count for r in report.records) == [1, 2, 3]
    spoof = next(r for r in report.records if r.source_ip == "203.0.113.66")
    assert (spoof.envelope_from, spoof.header_from) == ("phisher.example", "northwind.test")
    assert spoof.spf_results == (SPFAuth("phisher.example", "fail"),)


def test_disposition_pass_only_under_an_enforcing_policy() -> None:
    enforcing = parse_report(aggregate_report([seen(1)], domain="northwind.test", begin=0,
                                              end=10))
    monitoring = parse_report(aggregate_report(
        [seen(1, policy=PolicyPublished("northwind.test", "none"))], domain="northwind.test",
        begin=0, end=10))
    assert enforcing.records[0].disposition == "pass"
    assert monitoring.records[0].disposition == "none"


def test_policy_published_from_the_latest_message_or_given() -> None:
    report = parse_report(aggregate_report(TRAFFIC, domain="northwind.test", begin=0,
                                           end=2000))
    assert report.policy == NORTHWIND
    given = PolicyPublished("northwind.test", "quarantine", sp="none", testing="y")
    report = parse_report(aggregate_report(TRAFFIC, domain="northwind.test", begin=0,
                                           end=2000, policy=given))
    assert report.policy == given


def test_a_period_without_messages_has_no_report() -> None:
    with pytest.raises(DMARCReportError, match="at least one record"):
        aggregate_report(TRAFFIC, domain="northwind.test", begin=2000, end=3000)


def test_reports_by_domain() -> None:
    reports = reports_by_domain(TRAFFIC, begin=0, end=2000)
    assert sorted(reports) == ["campus.test", "northwind.test"]
    assert parse_report(reports["campus.test"]).total == 1
    records = report_records(reports.values())
    assert sum(r.count for r in records) == 7


def test_report_filename() -> None:
    xml = aggregate_report(TRAFFIC, domain="northwind.test", begin=0, end=2000)
    assert report_filename(xml) == "mx.lab.test!northwind.test!0!2000.xml"
    assert report_filename(parse_report(xml), gzipped=True).endswith(".xml.gz")
    sample = parse_report(RFC7489_SAMPLE.read_bytes())
    assert report_filename(sample, "example.net") == RFC7489_SAMPLE.name


def test_gzipped_reports_parse() -> None:
    report = parse_report(gzip.compress(RFC9990_SAMPLE.read_bytes()))
    assert report.total == 123


@pytest.mark.parametrize(("xml", "message"), [
    (b"<nope/>", "not <feedback>"),
    (b"<feedback><policy_published>", "not well-formed"),
    (b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaa">]><feedback/>', "DOCTYPE"),
    (b"<feedback><version>1.0</version></feedback>", "report_metadata"),
    (b"\x1f\x8bnot gzip", "gzip"),
])
def test_what_is_not_a_report(xml: bytes, message: str) -> None:
    with pytest.raises(DMARCReportError, match=message):
        parse_report(xml)


def test_validate_reports_problems() -> None:
    xml = aggregate_report(TRAFFIC, domain="northwind.test", begin=0, end=2000)
    broken = (xml.replace(b"<disposition>reject</disposition>",
                          b"<disposition>bounce</disposition>")
              .replace(b"<source_ip>192.0.2.10</source_ip>", b"<source_ip>nowhere</source_ip>")
              .replace(b"<p>reject</p>", b""))
    problems = validate_report(broken)
    assert any("'bounce' is not one of" in p for p in problems)
    assert any("'nowhere' is not an IP address" in p for p in problems)
    assert "policy_published: <p> is required" in problems
    assert validate_report(b"<nope/>") != []


def test_report_renders() -> None:
    report = parse_report(aggregate_report(TRAFFIC, domain="northwind.test", begin=0,
                                           end=2000))
    text = str(report)
    assert "6 messages: 4 passed DMARC, 2 failed" in text
    assert "203.0.113.66" in text and "p=reject" in text
    assert "<table" in report._repr_html_()


# -- the charts (labsupport/teach/plots.py) ------------------------------------------------------


@pytest.mark.parametrize("chart", ["dmarc_over_time", "dmarc_by_source", "dmarc_by_alignment"])
def test_dmarc_charts_draw_reports_and_observations(chart: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from labsupport import plots

    draw = getattr(plots, chart)
    reports = reports_by_domain(TRAFFIC, begin=0, end=6000).values()
    for source in (list(reports), report_records(reports), TRAFFIC, []):
        fig = draw(source)
        assert fig.axes and fig.axes[0].get_title()
        plt.close(fig)


def test_dmarc_by_source_counts() -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from labsupport.teach.plots import dmarc_by_alignment, dmarc_by_source

    fig = dmarc_by_source(TRAFFIC)
    labels = [t.get_text() for t in fig.axes[0].get_yticklabels()]
    assert labels[-1] == "192.0.2.10"  # the most messages, on top
    plt.close(fig)
    fig = dmarc_by_alignment(TRAFFIC)
    heights = [p.get_height() for p in fig.axes[0].patches]
    assert heights == [5, 1, 0, 2]  # 192.0.2.10 x4 and campus: both; forwarder; spoofs
    plt.close(fig)


def test_reports_by_period() -> None:
    day = 86400
    traffic = [seen(0), seen(10), seen(day + 5, "203.0.113.66", dmarc="fail", dkim=False,
                                       spf=False, disposition="reject"),
               seen(3 * day + 1)]
    reports = reports_by_period(traffic, begin=0, end=4 * day - 1, period=day)
    assert list(reports) == ["northwind.test"]
    parsed = [parse_report(x) for x in reports["northwind.test"]]
    assert [(r.begin, r.end, r.total) for r in parsed] == [
        (0, day - 1, 2), (day, 2 * day - 1, 1), (3 * day, 4 * day - 1, 1)]  # day 3: no mail
    assert parsed[1].count(disposition="reject") == 1
    records = report_records(reversed(reports["northwind.test"]))
    assert [r.time for r in records] == [0, day, 3 * day]  # oldest period first
    with pytest.raises(DMARCReportError, match="not a period"):
        reports_by_period(traffic, begin=0, end=10, period=0)
