"""TLS-RPT (RFC 8460): the _smtp._tls record, reports built from the delivering MTA's
sessions, written as JSON, validated and read back; and MTA-STS testing mode, which
delivers through the downgrade relay but reports it."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

import labsupport
from labsupport.dns.zone import ZoneSet
from labsupport.mail.delivery import DeliveryAttempt, Queue
from labsupport.mail.delivery_items import TLSSession
from labsupport.mail.mitm import Downgrader
from labsupport.mail.mtasts_fetch import PolicyFetcher
from labsupport.mail.mtasts_server import PolicyServer
from labsupport.mail.tlsrpt import (
    TLSRPTError,
    build_report,
    parse_report,
    parse_tlsrpt_record,
    read_tlsrpt_record,
    tlsrpt_record,
    validate_report,
)

T0 = datetime(2026, 11, 28, 0, 0, tzinfo=UTC).timestamp()
DAY = 86400.0
LINES = ("version: STSv1", "mode: testing", "mx: *.northwind.test", "max_age: 86400")


# -- the record ----------------------------------------------------------------------------


def test_the_lab_zone_publishes_a_record(world: ZoneSet) -> None:
    found = tlsrpt_record(world, "northwind.test")
    assert found.verdict == "valid" and found.record is not None
    assert found.record.rua == ("mailto:tlsrpt@northwind.test",)
    assert tlsrpt_record(world, "campus.test").verdict == "none"


def test_records_with_several_uris_and_extensions() -> None:
    record = parse_tlsrpt_record(
        "v=TLSRPTv1; rua=mailto:a@x.test, https://reports.x.test/tls; ext=1")
    assert record.rua == ("mailto:a@x.test", "https://reports.x.test/tls")
    assert record.extensions == (("ext", "1"),)


@pytest.mark.parametrize(("text", "message"), [
    ("v=TLSRPTv2; rua=mailto:a@x.test", "'v=TLSRPTv2; rua=mailto:a@x.test' is not a TLS-RPT "
     "record: it must begin with 'v=TLSRPTv1' (RFC 8460 section 3)"),
    ("v=TLSRPTv1;", "'v=TLSRPTv1;' has no rua field: it must say where reports go "
     "(RFC 8460 section 3)"),
    ("v=TLSRPTv1; rua=http://x.test/r", "rua 'http://x.test/r' is neither a mailto: address "
     "nor an https: URL, the two schemes reports go to (RFC 8460 section 3)"),
    ("v=TLSRPTv1; rua=mailto:a@x.test; rua=mailto:b@x.test",
     "'v=TLSRPTv1; rua=mailto:a@x.test; rua=mailto:b@x.test' has more than one rua field "
     "(RFC 8460 section 3)"),
])
def test_bad_records_are_explained(text: str, message: str) -> None:
    with pytest.raises(TLSRPTError) as caught:
        parse_tlsrpt_record(text)
    assert str(caught.value) == message


def test_exactly_one_record_counts() -> None:
    two = read_tlsrpt_record(["v=TLSRPTv1; rua=mailto:a@x.test",
                              "v=TLSRPTv1; rua=mailto:b@x.test"], "x.test")
    assert two.verdict == "invalid" and "there must be exactly one" in two.summary
    assert read_tlsrpt_record(["v=spf1 -all"], "x.test").verdict == "none"


# -- building a report ---------------------------------------------------------------------


def _session(host: str, result: str, at: float, **kw: Any) -> TLSSession:
    return TLSSession(policy_domain="northwind.test", mode="testing", policy_id="2026112801",
                      policy_string=LINES, mx_patterns=("*.northwind.test",), mx_host=host,
                      result=result, at=at, sending_ip="198.51.100.10",
                      receiving_ip=kw.pop("ip", "192.0.2.25"), **kw)


def _attempt(*sessions: TLSSession) -> DeliveryAttempt:
    return DeliveryAttempt(verdict="delivered", summary="", item_id="X", domain="northwind.test",
                           mail_from="carol@campus.test", recipients=("alice@northwind.test",),
                           at=sessions[0].at, tls=sessions)


def test_a_report_counts_sessions_and_groups_failures(tmp_path: Path) -> None:
    attempts = [
        _attempt(_session("mx1.northwind.test", "success", T0 + 10)),
        _attempt(_session("mx1.northwind.test", "starttls-not-supported", T0 + 20,
                          failure_reason="no STARTTLS")),
        _attempt(_session("mx1.northwind.test", "starttls-not-supported", T0 + 30,
                          failure_reason="no STARTTLS"),
                 _session("mx2.northwind.test", "certificate-host-mismatch", T0 + 30,
                          ip="192.0.2.26", failure_reason="wrong name")),
        _attempt(_session("mx1.northwind.test", "success", T0 + DAY + 5)),  # next day
    ]
    report = build_report(attempts, "northwind.test", start=T0, end=T0 + DAY,
                          report_id="2026-11-28-northwind")
    assert report.verdict == "failures"
    assert validate_report(report.json()) == []
    [entry] = report.data["policies"]
    assert entry["policy"] == {"policy-type": "sts", "policy-string": list(LINES),
                               "policy-domain": "northwind.test",
                               "mx-host": ["*.northwind.test"]}
    assert entry["summary"] == {"total-successful-session-count": 1,
                                "total-failure-session-count": 3}
    assert entry["failure-details"] == [
        {"result-type": "starttls-not-supported", "sending-mta-ip": "198.51.100.10",
         "receiving-mx-hostname": "mx1.northwind.test", "receiving-ip": "192.0.2.25",
         "failed-session-count": 2, "failure-reason-code": "no STARTTLS"},
        {"result-type": "certificate-host-mismatch", "sending-mta-ip": "198.51.100.10",
         "receiving-mx-hostname": "mx2.northwind.test", "receiving-ip": "192.0.2.26",
         "failed-session-count": 1, "failure-reason-code": "wrong name"},
    ]
    assert report.data["date-range"] == {"start-datetime": "2026-11-28T00:00:00Z",
                                         "end-datetime": "2026-11-29T00:00:00Z"}
    path = report.write(tmp_path)
    assert path.name == f"lab.test!northwind.test!{int(T0)}!{int(T0 + DAY)}!20261128nort.json"
    back = parse_report(path.read_text())
    assert back.data == report.data and back.verdict == "failures"
    assert "starttls-not-supported (the recipient MX did not support STARTTLS): 2 session(s) " \
           "at mx1.northwind.test" in back.text()
    assert report.text().splitlines()[-2].split() == [
        "starttls-not-supported", "mx1.northwind.test", "192.0.2.25", "2"]
    quiet = build_report(attempts, "northwind.test", start=T0 + DAY, end=T0 + 2 * DAY)
    assert quiet.verdict == "all-successful" and "failure-details" not in \
        quiet.data["policies"][0]


GOOD_REPORT: dict[str, Any] = {
    "organization-name": "Mail Labs",
    "date-range": {"start-datetime": "2026-11-28T00:00:00Z",
                   "end-datetime": "2026-11-28T23:59:59Z"},
    "contact-info": "postmaster@lab.test", "report-id": "r1",
    "policies": [{"policy": {"policy-type": "sts", "policy-domain": "northwind.test"},
                  "summary": {"total-successful-session-count": 5,
                              "total-failure-session-count": 1},
                  "failure-details": [{"result-type": "validation-failure",
                                       "failed-session-count": 1}]}],
}


def _broken(change: Any) -> dict[str, Any]:
    data = json.loads(json.dumps(GOOD_REPORT))
    change(data)
    return data


@pytest.mark.parametrize(("change", "problem"), [
    (lambda d: d.pop("report-id"), "'report-id' is required (RFC 8460 section 4)"),
    (lambda d: d.update({"policy_type": "sts"}),
     "report: 'policy_type' is not a field of the report format (RFC 8460 section 4)"),
    (lambda d: d["date-range"].update({"start-datetime": "28/11/2026"}),
     "date-range.start-datetime: '28/11/2026' is not an RFC 3339 date-time such as "
     "2026-11-28T00:00:00Z"),
    (lambda d: d["date-range"].update({"start-datetime": "2026-11-30T00:00:00Z"}),
     "date-range: start-datetime is after end-datetime"),
    (lambda d: d["policies"][0]["policy"].update({"policy-type": "dane"}),
     "policies[0].policy.policy-type 'dane' is not one of tlsa, sts, no-policy-found"),
    (lambda d: d["policies"][0]["summary"].update({"total-failure-session-count": "1"}),
     "policies[0].summary.total-failure-session-count: '1' is not a whole number"),
    (lambda d: d["policies"][0]["failure-details"][0].update({"result-type": "tls-broken"}),
     "policies[0].failure-details[0].result-type 'tls-broken' is not a result type of "
     "RFC 8460 section 4.3"),
    (lambda d: d["policies"][0]["failure-details"][0].update({"receiving-ip": "mx1"}),
     "policies[0].failure-details[0].receiving-ip: 'mx1' is not an IP address"),
    (lambda d: d["policies"][0]["failure-details"][0].pop("failed-session-count"),
     "policies[0].failure-details[0].failed-session-count is required"),
    (lambda d: d["policies"][0].pop("summary"), "policies[0].summary is required"),
])
def test_bad_reports_are_explained(change: Any, problem: str) -> None:
    assert validate_report(GOOD_REPORT) == []
    data = _broken(change)
    assert problem in validate_report(json.dumps(data))
    with pytest.raises(TLSRPTError, match="not a valid TLS-RPT report: "):
        parse_report(data)


def test_not_json_at_all() -> None:
    [problem] = validate_report("{'report': 1}")
    assert problem.startswith("the report is not JSON: ")
    assert validate_report("[]") == ["the report must be a JSON object, not list"]


# -- testing mode: delivered through the downgrade relay, and reported ---------------------


def test_testing_mode_delivers_through_the_relay_and_reports_it(clean_lab: labsupport.Lab,
                                                                tmp_path: Path) -> None:
    policy = "version: STSv1\r\nmode: testing\r\nmx: *.northwind.test\r\nmax_age: 86400\r\n"
    front = SimpleNamespace(smtp=SimpleNamespace(port=lambda role: clean_lab.smtp.port("mx")))
    start = clean_lab.clock.time()
    with PolicyServer(clean_lab.ca, {"northwind.test": policy}) as server, \
            Downgrader(front, "submission") as mitm:  # type: ignore[arg-type]
        fetcher = PolicyFetcher(clean_lab.resolver, ca_file=clean_lab.ca.ca_file,
                                https_port=lambda: server.port, clock=clean_lab.clock)
        queue = Queue(tmp_path / "q", resolver=clean_lab.resolver, clock=clean_lab.clock,
                      store=clean_lab.mail, mx_port=lambda: mitm.port, mtasts=fetcher,
                      timeout=10)
        queue.submit("carol@campus.test", ["alice@northwind.test"],
                     b"From: carol@campus.test\r\nSubject: testing mode\r\n\r\nHi.\r\n",
                     sender_domain="campus.test")
        [attempt] = queue.run()
    assert attempt.verdict == "delivered" and attempt.host == "mx1.northwind.test"
    assert "MTA-STS testing: mx1.northwind.test does not offer STARTTLS" in attempt.text()
    assert [(s.result, s.delivered) for s in attempt.tls] == [("starttls-not-supported", True)]
    stored = [m for m in clean_lab.mail.messages("alice@northwind.test")
              if m.message["Subject"] == "testing mode"]
    # The MX role saw TLS all the same: from the attacker, who re-encrypted upstream.
    assert len(stored) == 1 and "with ESMTPS" in stored[0].message["Received"]
    report = build_report(queue.history(), "northwind.test", start=start,
                          end=clean_lab.clock.time() + 1)
    assert validate_report(report.json()) == []
    [entry] = parse_report(report.json()).data["policies"]
    assert entry["summary"] == {"total-successful-session-count": 0,
                                "total-failure-session-count": 1}
    [detail] = entry["failure-details"]
    assert detail["result-type"] == "starttls-not-supported"
    assert detail["receiving-mx-hostname"] == "mx1.northwind.test"
    assert detail["sending-mta-ip"] == "198.51.100.10"


def test_a_piece_without_equals_is_named_with_its_record() -> None:
    with pytest.raises(TLSRPTError, match=r"'junk' in 'v=TLSRPTv1; rua=mailto:a@b.test; junk' "
                                          r"is not a name=value field \(RFC 8460"):
        parse_tlsrpt_record("v=TLSRPTv1; rua=mailto:a@b.test; junk")
