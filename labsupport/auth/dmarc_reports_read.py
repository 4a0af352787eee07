"""DMARC aggregate reports, reading: the XML (RFC 9990 or RFC 7489, plain or gzipped)
back into plain records.

The element helpers the reader and the validator share (``_local``, ``_children``,
``_child``, ``_text``), the guarded loader ``_load`` (no DTDs, no entities),
:func:`parse_report` and :func:`report_records`. Part of
:mod:`labsupport.auth.dmarc_reports`.
"""

from __future__ import annotations

import gzip
import xml.etree.ElementTree as ET
from collections.abc import Iterable

from .dmarc_reports_model import (
    NAMESPACE,
    RFC_FORMAT,
    AggregateReport,
    DKIMAuth,
    DMARCReportError,
    PolicyPublished,
    ReportRecord,
    SPFAuth,
)

# -- reading ------------------------------------------------------------------------------


def _local(tag: str) -> str:
    return tag.rpartition("}")[2]


def _children(element: ET.Element, name: str) -> list[ET.Element]:
    return [c for c in element if _local(c.tag) == name]


def _child(element: ET.Element | None, name: str) -> ET.Element | None:
    if element is None:
        return None
    return next(iter(_children(element, name)), None)


def _text(element: ET.Element | None, name: str, default: str | None = None) -> str | None:
    found = _child(element, name)
    if found is None or found.text is None:
        return default
    return found.text.strip()


def _load(xml: bytes | str) -> ET.Element:
    data = xml.encode("utf-8") if isinstance(xml, str) else bytes(xml)
    if data[:2] == b"\x1f\x8b":
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError) as exc:
            raise DMARCReportError(f"a gzip file that cannot be read: {exc}") from exc
    if b"<!DOCTYPE" in data.upper() or b"<!ENTITY" in data.upper():
        # RFC 9990 section 9: reports are attack surface (XML bombs); none needs a DTD.
        raise DMARCReportError("the report has a DOCTYPE or ENTITY declaration; aggregate "
                               "reports need none and the lab does not expand them "
                               "(RFC 9990, Security Considerations)")
    try:
        root = ET.fromstring(data)
    except ET.ParseError as exc:
        raise DMARCReportError(f"not well-formed XML: {exc}") from exc
    if _local(root.tag) != "feedback":
        raise DMARCReportError(f"the root element is <{_local(root.tag)}>, not <feedback>: "
                               f"this is not a DMARC aggregate report ({RFC_FORMAT})")
    return root


def _int(text: str | None, what: str) -> int:
    try:
        return int((text or "").strip())
    except ValueError:
        raise DMARCReportError(f"{what} is {text!r}, not a whole number") from None


def parse_report(xml: bytes | str) -> AggregateReport:
    """Read an aggregate report (RFC 9990, or the older RFC 7489 format; plain XML or
    gzipped) into an :class:`AggregateReport` of plain :class:`ReportRecord` rows.

    Reading is lenient where real reports are sloppy (stray text, missing optional
    elements, upper-case values); :func:`validate_report` is the strict check.
    """
    root = _load(xml)
    namespace = root.tag[1:].partition("}")[0] if root.tag.startswith("{") else ""
    fmt = "rfc9990" if namespace == NAMESPACE else "rfc7489"
    meta = _child(root, "report_metadata")
    if meta is None:
        raise DMARCReportError(f"the report has no <report_metadata> ({RFC_FORMAT})")
    dates = _child(meta, "date_range")
    begin = _int(_text(dates, "begin"), "date_range/begin")
    end = _int(_text(dates, "end"), "date_range/end")
    pub = _child(root, "policy_published")
    if pub is None or not _text(pub, "domain"):
        raise DMARCReportError(f"the report has no <policy_published> domain ({RFC_FORMAT})")

    def low(name: str) -> str | None:
        value = _text(pub, name)
        return value.lower() if value else None

    policy = PolicyPublished(
        domain=str(_text(pub, "domain")).lower().rstrip("."), p=low("p") or "none",
        sp=low("sp"), np=low("np"), adkim=low("adkim"), aspf=low("aspf"),
        testing=low("testing"), fo=_text(pub, "fo"), discovery_method=low("discovery_method"),
        pct=_text(pub, "pct"))
    records: list[ReportRecord] = []
    for number, record in enumerate(_children(root, "record"), start=1):
        row = _child(record, "row")
        evaluated = _child(row, "policy_evaluated")
        if row is None or evaluated is None:
            raise DMARCReportError(f"record {number} has no <row>/<policy_evaluated>")
        ids = _child(record, "identifiers")
        auth = _child(record, "auth_results")
        dkim = tuple(DKIMAuth((_text(d, "domain") or "").lower(), _text(d, "selector") or "",
                              (_text(d, "result") or "none").lower(), _text(d, "human_result"))
                     for d in (_children(auth, "dkim") if auth is not None else []))
        spf = tuple(SPFAuth((_text(s, "domain") or "").lower(),
                            (_text(s, "result") or "none").lower(),
                            (_text(s, "scope") or "mfrom").lower(), _text(s, "human_result"))
                    for s in (_children(auth, "spf") if auth is not None else []))
        reasons = tuple((_text(r, "type") or "other", _text(r, "comment"))
                        for r in _children(evaluated, "reason"))
        records.append(ReportRecord(
            source_ip=_text(row, "source_ip") or "",
            count=_int(_text(row, "count"), f"record {number} count"),
            disposition=(_text(evaluated, "disposition") or "none").lower(),
            dkim=(_text(evaluated, "dkim") or "fail").lower(),
            spf=(_text(evaluated, "spf") or "fail").lower(),
            header_from=(_text(ids, "header_from") or "").lower(),
            envelope_from=(_text(ids, "envelope_from") or "").lower(),
            envelope_to=(_text(ids, "envelope_to") or "").lower(),
            dkim_results=dkim, spf_results=spf, reasons=reasons, time=float(begin),
            policy_domain=policy.domain))
    return AggregateReport(
        format=fmt, org_name=_text(meta, "org_name") or "", email=_text(meta, "email") or "",
        report_id=_text(meta, "report_id") or "", begin=begin, end=end, policy=policy,
        records=tuple(records), version=_text(root, "version"),
        extra_contact_info=_text(meta, "extra_contact_info"),
        generator=_text(meta, "generator"),
        errors=tuple(e.text.strip() for e in _children(meta, "error") if e.text))


def report_records(reports: Iterable[AggregateReport | bytes]) -> list[ReportRecord]:
    """Every record of several reports (bytes are parsed first), oldest period first:
    what the plots take."""
    parsed = [r if isinstance(r, AggregateReport) else parse_report(r) for r in reports]
    parsed.sort(key=lambda r: r.begin)
    return [record for report in parsed for record in report.records]
