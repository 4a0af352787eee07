"""DMARC aggregate reports, writing: the lab's observations as RFC 9990 XML.

:func:`aggregate_report` writes one report for a policy domain and a period;
:func:`reports_by_domain` one per policy domain, :func:`reports_by_period` one per
domain and reporting period (a day by default); :func:`report_filename` names the
attachment as RFC 9990 section 4 asks. Part of :mod:`labsupport.auth.dmarc_reports`.
"""

from __future__ import annotations

import secrets
import xml.etree.ElementTree as ET
from collections.abc import Iterable
from typing import Any

from .dmarc_reports_model import (
    DISPOSITIONS,
    GENERATOR,
    LAB_ORG_NAME,
    LAB_REPORT_EMAIL,
    LAB_REPORTER,
    NAMESPACE,
    RFC_FORMAT,
    AggregateReport,
    DMARCReportError,
    PolicyPublished,
)
from .dmarc_reports_observe import Observation, observations
from .dmarc_reports_read import parse_report

# -- writing ------------------------------------------------------------------------------


def _disposition_shown(seen: Observation) -> str:
    """What ``policy_evaluated/disposition`` says: the action taken; RFC 9990's
    ``pass`` when the message passed under an enforcing policy (p=quarantine/reject)."""
    if seen.dmarc == "pass":
        enforcing = seen.policy is not None and seen.policy.p in ("quarantine", "reject")
        return "pass" if enforcing else "none"
    return seen.disposition if seen.disposition in DISPOSITIONS else "none"


def _sub(parent: ET.Element, name: str, text: object | None = None) -> ET.Element:
    child = ET.SubElement(parent, name)
    if text is not None:
        child.text = str(text)
    return child


def aggregate_report(records: Iterable[Any], *, domain: str, begin: float, end: float,
                     org_name: str = LAB_ORG_NAME, email: str = LAB_REPORT_EMAIL,
                     report_id: str | None = None, policy: PolicyPublished | None = None,
                     generator: str = GENERATOR) -> bytes:
    """An RFC 9990 aggregate report for ``domain`` (a policy domain) over
    ``[begin, end]`` (seconds since the epoch, on the lab clock), as XML bytes.

    ``records`` are MX-role evaluations (``lab.smtp.evaluations``) or
    :class:`Observation` objects; only those whose policy domain is ``domain`` and whose
    time is in the period count. Messages with the same source address, identifiers,
    results and disposition share one ``record`` with their ``count`` (RFC 9990
    section 3: "one record per (IP, result, IDs, auths) tuple"). ``policy`` is the
    ``policy_published`` element; by default the one the latest message found.
    A period without messages gives a :class:`DMARCReportError` (a report needs at least
    one record).
    """
    domain = domain.lower().rstrip(".")
    seen = [o for o in observations(records)
            if o.policy_domain == domain and begin <= o.time <= end]
    if not seen:
        raise DMARCReportError(f"no message with a DMARC policy at {domain} between "
                               f"{int(begin)} and {int(end)}: a report needs at least one "
                               f"record ({RFC_FORMAT})")
    seen.sort(key=lambda o: o.time)
    published = policy or next((o.policy for o in reversed(seen) if o.policy is not None),
                               PolicyPublished(domain=domain, p="none"))
    groups: dict[tuple[Any, ...], list[Observation]] = {}
    for o in seen:
        key = (o.source_ip, o.header_from, o.envelope_from, o.envelope_to,
               _disposition_shown(o), o.dkim_aligned, o.spf_aligned, o.dkim_results,
               o.spf_results, o.reasons)
        groups.setdefault(key, []).append(o)

    root = ET.Element("feedback", xmlns=NAMESPACE)  # the default namespace for all
    _sub(root, "version", "1.0")
    meta = _sub(root, "report_metadata")
    _sub(meta, "org_name", org_name)
    _sub(meta, "email", email)
    _sub(meta, "report_id", report_id or secrets.token_hex(12))
    dates = _sub(meta, "date_range")
    _sub(dates, "begin", int(begin))
    _sub(dates, "end", int(end))
    _sub(meta, "generator", generator)
    pub = _sub(root, "policy_published")
    _sub(pub, "domain", domain)
    if published.discovery_method:
        _sub(pub, "discovery_method", published.discovery_method)
    _sub(pub, "p", published.p)
    for name in ("sp", "np", "fo", "adkim", "aspf", "testing"):
        value = getattr(published, name)
        if value is not None:
            _sub(pub, name, value)
    for key, members in groups.items():
        first = members[0]
        record = _sub(root, "record")
        row = _sub(record, "row")
        _sub(row, "source_ip", first.source_ip)
        _sub(row, "count", len(members))
        evaluated = _sub(row, "policy_evaluated")
        _sub(evaluated, "disposition", key[4])
        _sub(evaluated, "dkim", "pass" if first.dkim_aligned else "fail")
        _sub(evaluated, "spf", "pass" if first.spf_aligned else "fail")
        for kind, comment in first.reasons:
            reason = _sub(evaluated, "reason")
            _sub(reason, "type", kind)
            if comment:
                _sub(reason, "comment", comment)
        ids = _sub(record, "identifiers")
        _sub(ids, "header_from", first.header_from)
        _sub(ids, "envelope_from", first.envelope_from)
        if first.envelope_to:
            _sub(ids, "envelope_to", first.envelope_to)
        auth = _sub(record, "auth_results")
        for sig in first.dkim_results:
            dkim = _sub(auth, "dkim")
            _sub(dkim, "domain", sig.domain)
            _sub(dkim, "selector", sig.selector)
            _sub(dkim, "result", sig.result)
            if sig.human_result:
                _sub(dkim, "human_result", sig.human_result)
        for spf_result in first.spf_results[:1]:  # RFC 9990: MAIL FROM only, at most one
            spf = _sub(auth, "spf")
            _sub(spf, "domain", spf_result.domain)
            _sub(spf, "scope", "mfrom")
            _sub(spf, "result", spf_result.result)
    ET.indent(root)
    return ET.tostring(root, encoding="utf-8", xml_declaration=True) + b"\n"


def report_filename(report: AggregateReport | bytes, receiver: str = LAB_REPORTER, *,
                    gzipped: bool = False) -> str:
    """The attachment's file name RFC 9990 section 4 asks for:
    ``receiver!policy-domain!begin!end.xml`` (``.xml.gz`` when compressed)."""
    parsed = parse_report(report) if isinstance(report, bytes) else report
    return (f"{receiver}!{parsed.domain}!{parsed.begin}!{parsed.end}"
            f".{'xml.gz' if gzipped else 'xml'}")


def reports_by_domain(evaluations: Iterable[Any], *, begin: float, end: float,
                      **options: Any) -> dict[str, bytes]:
    """One aggregate report per policy domain seen in ``[begin, end]``: what
    ``lab.dmarc_reports`` returns. ``options`` go to :func:`aggregate_report`."""
    seen = [o for o in observations(evaluations) if begin <= o.time <= end]
    domains = sorted({o.policy_domain for o in seen})
    return {d: aggregate_report(seen, domain=d, begin=begin, end=end, **options)
            for d in domains}


def reports_by_period(evaluations: Iterable[Any], *, begin: float, end: float,
                      period: float = 86400.0, **options: Any) -> dict[str, list[bytes]]:
    """Aggregate reports for consecutive reporting periods of ``period`` seconds (a day
    by default, as receivers usually send them) from ``begin`` to ``end``: for each
    policy domain, its reports oldest first (a period without its mail has none).
    ``options`` go to :func:`aggregate_report`."""
    if period <= 0:
        raise DMARCReportError(f"a reporting period of {period} seconds is not a period")
    seen = [o for o in observations(evaluations) if begin <= o.time <= end]
    found: dict[str, list[bytes]] = {}
    start = begin
    while start <= end:
        stop = min(start + period - 1, end)  # the end of a period is inclusive (RFC 9990)
        here = [o for o in seen if start <= o.time <= stop]
        for domain in sorted({o.policy_domain for o in here}):
            found.setdefault(domain, []).append(
                aggregate_report(here, domain=domain, begin=start, end=stop, **options))
        start += period
    return found
