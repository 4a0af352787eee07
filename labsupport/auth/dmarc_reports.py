"""DMARC aggregate reports: what receivers tell a domain about the mail sent in its name.

A receiver that evaluates DMARC keeps, for each policy domain, a tally of what it saw:
which address sent mail with that domain in From, how many messages, whether DKIM and
SPF passed and aligned, and what it did with them. Once per reporting period it sends
the domain owner an *aggregate report* (RFC 9990, which obsoletes the reporting part of
RFC 7489): an XML document in the namespace ``urn:ietf:params:xml:ns:dmarc-2.0``::

    feedback
      version                      1.0
      report_metadata              org_name, email, report_id, date_range, generator
      policy_published             domain, discovery_method, p, sp, np, adkim, aspf, testing
      record (one or more)
        row                        source_ip, count,
                                   policy_evaluated: disposition, dkim, spf (aligned?)
        identifiers                header_from, envelope_from, envelope_to
        auth_results               dkim (domain, selector, result) ..., spf (domain, result)

The lab's MX role keeps every evaluation (``lab.smtp.evaluations``), and
``lab.dmarc_reports(begin, end)`` turns them into one report per policy domain with
:func:`aggregate_report` (:func:`reports_by_period`: one per day, or any period).
:func:`parse_report` reads any report back into plain
:class:`ReportRecord` rows, in the RFC 9990 format or the older RFC 7489 one (no
namespace, ``pct`` instead of ``testing``, no ``np``), so the same charts
(:mod:`labsupport.teach.plots`: ``dmarc_over_time``, ``dmarc_by_source``,
``dmarc_by_alignment``) draw the lab's own reports and real ones.
:func:`validate_report` checks a report against the structure RFC 9990 section 3
describes (element order, required elements, the allowed values).

A real receiver mails the report to the ``rua=`` address of the domain's DMARC record,
gzipped, with a file name like ``mx.lab.test!northwind.test!1767225600!1767311999.xml``
(:func:`report_filename`); the lab hands the bytes to the notebook instead.

Introduced in ``notebooks/06-dmarc.ipynb``.
"""

from __future__ import annotations

import gzip
import html
import ipaddress
import secrets
import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from ..core.errors import LabError
from ..core.results import html_table, text_table

RFC_REPORTS = "RFC 9990"
RFC_FORMAT = "RFC 9990 section 3"
RFC_OLD_FORMAT = "RFC 7489 appendix C"

#: The XML namespace of RFC 9990 reports (RFC 9990 section 7).
NAMESPACE = "urn:ietf:params:xml:ns:dmarc-2.0"

#: Who the lab's reports say they come from.
LAB_ORG_NAME = "Mail Labs"
LAB_REPORT_EMAIL = "dmarc-reports@lab.test"
LAB_REPORTER = "mx.lab.test"
GENERATOR = "Mail Labs labsupport.auth.dmarc_reports"

#: RFC 9990 section 3: the first-level elements, in the order they must appear
#: (``True``: required).
FIRST_LEVEL: tuple[tuple[str, bool], ...] = (
    ("version", False), ("report_metadata", True), ("policy_published", True),
    ("extension", False), ("record", True))
METADATA_REQUIRED = ("org_name", "email", "report_id", "date_range")
METADATA_ALLOWED = (*METADATA_REQUIRED, "extra_contact_info", "error", "generator")
POLICY_REQUIRED = ("domain", "p")
POLICY_ALLOWED = ("domain", "discovery_method", "p", "sp", "np", "fo", "adkim", "aspf",
                  "testing")
#: What ``policy_evaluated/disposition`` may say (RFC 9990): ``pass`` is "no action,
#: the message passed DMARC under an enforcing policy".
DISPOSITIONS = ("none", "pass", "quarantine", "reject")
POLICIES = ("none", "quarantine", "reject")
ALIGNED_RESULTS = ("pass", "fail")
DKIM_RESULTS = ("none", "pass", "fail", "policy", "neutral", "temperror", "permerror")
SPF_RESULTS = ("none", "neutral", "pass", "fail", "softfail", "temperror", "permerror")
OVERRIDE_TYPES = ("local_policy", "mailing_list", "other", "policy_test_mode",
                  "trusted_forwarder", "forwarded", "sampled_out")  # the last two: RFC 7489


class DMARCReportError(LabError, ValueError):
    """A document that is not a DMARC aggregate report (or one that cannot be read)."""


# -- the plain records ------------------------------------------------------------------


@dataclass(frozen=True)
class DKIMAuth:
    """One DKIM signature's result in a report (``auth_results/dkim``)."""

    domain: str
    selector: str
    result: str
    human_result: str | None = None


@dataclass(frozen=True)
class SPFAuth:
    """The SPF result in a report (``auth_results/spf``): MAIL FROM only in RFC 9990."""

    domain: str
    result: str
    scope: str = "mfrom"
    human_result: str | None = None


@dataclass(frozen=True)
class ReportRecord:
    """One ``record`` of an aggregate report, flattened.

    ``dkim`` and ``spf`` are the *aligned* results DMARC used (``policy_evaluated``:
    pass or fail); ``dkim_results`` and ``spf_results`` the raw ones (``auth_results``).
    ``time`` is the reporting period's start (a report says no more than that).
    """

    source_ip: str
    count: int
    disposition: str
    dkim: str
    spf: str
    header_from: str
    envelope_from: str = ""
    envelope_to: str = ""
    dkim_results: tuple[DKIMAuth, ...] = ()
    spf_results: tuple[SPFAuth, ...] = ()
    reasons: tuple[tuple[str, str | None], ...] = ()
    time: float = 0.0
    policy_domain: str = ""

    @property
    def dmarc(self) -> str:
        """``pass`` when DKIM or SPF passed aligned, else ``fail``."""
        return "pass" if "pass" in (self.dkim, self.spf) else "fail"

    @property
    def alignment(self) -> str:
        """Which aligned identifier passed: ``DKIM and SPF``, ``DKIM only``, ``SPF only``,
        ``neither``."""
        dkim, spf = self.dkim == "pass", self.spf == "pass"
        if dkim and spf:
            return "DKIM and SPF"
        if dkim:
            return "DKIM only"
        if spf:
            return "SPF only"
        return "neither"

    def as_row(self) -> list[object]:
        dkim = ", ".join(f"{d.result} ({d.domain})" for d in self.dkim_results) or "none"
        spf = ", ".join(f"{s.result} ({s.domain})" for s in self.spf_results) or "none"
        return [self.source_ip, self.count, self.header_from, self.envelope_from or "",
                self.dkim, self.spf, self.disposition, dkim, spf]


ROW_HEADERS = ["source IP", "count", "header_from", "envelope_from", "DKIM aligned",
               "SPF aligned", "disposition", "DKIM results", "SPF results"]


@dataclass(frozen=True)
class PolicyPublished:
    """The ``policy_published`` element: the DMARC record as the reporter found it."""

    domain: str
    p: str
    sp: str | None = None
    np: str | None = None
    adkim: str | None = None
    aspf: str | None = None
    testing: str | None = None
    fo: str | None = None
    discovery_method: str | None = None
    pct: str | None = None  # RFC 7489 only (removed by RFC 9989)


@dataclass(frozen=True)
class AggregateReport:
    """An aggregate report, read (:func:`parse_report`) or built (:func:`aggregate_report`).

    ``format`` is ``"rfc9990"`` (the namespace is there) or ``"rfc7489"`` (the older
    reports without one). ``records`` are plain :class:`ReportRecord` rows.
    """

    format: str
    org_name: str
    email: str
    report_id: str
    begin: int
    end: int
    policy: PolicyPublished
    records: tuple[ReportRecord, ...]
    version: str | None = None
    extra_contact_info: str | None = None
    generator: str | None = None
    errors: tuple[str, ...] = ()

    @property
    def domain(self) -> str:
        """The policy domain the report is about."""
        return self.policy.domain

    @property
    def total(self) -> int:
        """How many messages the report counts."""
        return sum(r.count for r in self.records)

    def count(self, **where: str) -> int:
        """Messages whose records match every ``field=value`` given, e.g.
        ``count(disposition="reject")`` or ``count(dmarc="pass")``."""
        return sum(r.count for r in self.records
                   if all(getattr(r, k) == v for k, v in where.items()))

    def by(self, attribute: str) -> Counter[str]:
        """Message counts by one record attribute (``"source_ip"``, ``"disposition"``,
        ``"alignment"``, ``"dmarc"``...)."""
        counts: Counter[str] = Counter()
        for record in self.records:
            counts[str(getattr(record, attribute))] += record.count
        return counts

    def _period(self) -> str:
        def stamp(t: int) -> str:
            return datetime.fromtimestamp(t, tz=UTC).strftime("%Y-%m-%d %H:%M:%S")
        return f"{stamp(self.begin)} to {stamp(self.end)} UTC"

    def _policy_text(self) -> str:
        policy = self.policy
        parts = [f"p={policy.p}"] + [f"{k}={v}" for k in ("sp", "np", "adkim", "aspf",
                                                         "testing", "pct", "fo")
                                     if (v := getattr(policy, k)) is not None]
        if policy.discovery_method:
            parts.append(f"found by {policy.discovery_method}")
        return " ".join(parts)

    def text(self) -> str:
        head = (f"DMARC aggregate report ({self.format}) for {self.domain} from "
                f"{self.org_name} <{self.email}>, {self._period()}, id {self.report_id}\n"
                f"policy published: {self._policy_text()}\n"
                f"{self.total} messages: {self.count(dmarc='pass')} passed DMARC, "
                f"{self.count(dmarc='fail')} failed")
        return head + "\n" + text_table(ROW_HEADERS, [r.as_row() for r in self.records])

    def __str__(self) -> str:
        return self.text()

    def _repr_html_(self) -> str:
        caption = (f"DMARC aggregate report for {self.domain} from {self.org_name}, "
                   f"{self._period()}: {self.total} messages, "
                   f"{self.count(dmarc='pass')} passed DMARC")
        return (f"<p><b>policy published:</b> <code>{html.escape(self._policy_text())}"
                "</code></p>" + html_table(ROW_HEADERS, [r.as_row() for r in self.records],
                                           caption=caption))


# -- what the MX role saw, one message at a time -----------------------------------------


@dataclass(frozen=True)
class Observation:
    """One message as a report counts it: taken from an MX-role evaluation (an
    :class:`~labsupport.auth.authres.AuthEvaluation` with its DMARC result) by
    :func:`observation`, or written by hand for a lesson."""

    time: float
    source_ip: str
    header_from: str
    policy_domain: str
    dmarc: str
    disposition: str
    dkim_aligned: bool
    spf_aligned: bool
    envelope_from: str = ""
    envelope_to: str = ""
    dkim_results: tuple[DKIMAuth, ...] = ()
    spf_results: tuple[SPFAuth, ...] = ()
    policy: PolicyPublished | None = None
    reasons: tuple[tuple[str, str | None], ...] = ()


def _domain_of(address: str) -> str:
    return address.rpartition("@")[2].strip("<>").lower().rstrip(".")


def _policy_from_result(result: Any, domain: str) -> PolicyPublished | None:
    record = getattr(result, "record", None)
    if record is None:
        return None

    def tag(name: str) -> str | None:
        value = getattr(record, name, None)
        return None if value is None else str(value)

    return PolicyPublished(domain=domain, p=tag("p") or "none", sp=tag("sp"), np=tag("np"),
                           adkim=tag("adkim"), aspf=tag("aspf"), testing=tag("t"),
                           fo=tag("fo"),
                           discovery_method=str(getattr(result, "method", "") or "") or None)


def _record_domain(result: Any) -> str:
    for name in ("record_domain", "policy_domain"):
        value = getattr(result, name, None)
        if value:
            return str(value).lower().rstrip(".")
    discovery = getattr(result, "discovery", None)
    value = getattr(discovery, "record_domain", None)
    if value:
        return str(value).lower().rstrip(".")
    return str(getattr(result, "from_domain", "") or "").lower().rstrip(".")


def observation(evaluation: Any) -> Observation | None:
    """The report's view of one MX-role evaluation (``lab.smtp.evaluations``), or None
    when it has no DMARC result or no policy domain (no record: nobody to report to)."""
    result = getattr(evaluation, "dmarc", None)
    if result is None or getattr(result, "record", None) is None:
        return None
    domain = _record_domain(result)
    if not domain:
        return None
    dkim: list[DKIMAuth] = []
    verification = getattr(evaluation, "dkim", None)
    for sig in getattr(verification, "signatures", ()) or ():
        dkim.append(DKIMAuth(str(sig.domain or ""), str(sig.selector or ""), str(sig.verdict),
                             str(sig.summary or "") or None))
    spf_results: list[SPFAuth] = []
    spf = getattr(evaluation, "spf", None)
    if spf is not None:
        scope = "helo" if getattr(spf, "identity", "") == "helo" else "mfrom"
        spf_domain = str(getattr(spf, "domain", "") or "") or _domain_of(evaluation.mail_from)
        spf_results.append(SPFAuth(spf_domain, str(spf.verdict), scope))
    disposition = str(getattr(evaluation, "disposition", None)
                      or getattr(result, "disposition", "none") or "none")
    verdict = str(getattr(result, "verdict", "none"))
    recipients = getattr(evaluation, "recipients", ()) or ()
    return Observation(
        time=float(evaluation.time), source_ip=str(evaluation.client_ip),
        header_from=str(getattr(result, "from_domain", "") or ""), policy_domain=domain,
        dmarc=verdict, disposition=disposition,
        dkim_aligned=bool(getattr(result, "dkim_aligned", False)),
        spf_aligned=bool(getattr(result, "spf_aligned", False)),
        envelope_from=_domain_of(evaluation.mail_from) if evaluation.mail_from else "",
        envelope_to=_domain_of(recipients[0]) if recipients else "",
        dkim_results=tuple(dkim), spf_results=tuple(spf_results),
        policy=_policy_from_result(result, domain),
        reasons=tuple(getattr(evaluation, "dmarc_reasons", ()) or ()))


def observations(evaluations: Iterable[Any]) -> list[Observation]:
    """:func:`observation` of each evaluation, skipping those with nothing to report;
    :class:`Observation` objects pass through."""
    found: list[Observation] = []
    for item in evaluations:
        seen = item if isinstance(item, Observation) else observation(item)
        if seen is not None:
            found.append(seen)
    return found


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


# -- checking the structure ----------------------------------------------------------------


def _check_order(parent: ET.Element, allowed: tuple[tuple[str, bool], ...], where: str,
                 problems: list[str]) -> None:
    names = [_local(c.tag) for c in parent]
    order = [name for name, _ in allowed]
    for name, required in allowed:
        if required and name not in names:
            problems.append(f"{where}: <{name}> is required")
    known = [n for n in names if n in order]
    positions = [order.index(n) for n in known]
    if positions != sorted(positions):
        problems.append(f"{where}: elements out of order ({', '.join(known)}); RFC 9990 "
                        f"asks for {', '.join(order)}")
    for name in names:
        if name not in order:
            problems.append(f"{where}: <{name}> is not an element here")


def _check_value(element: ET.Element | None, name: str, allowed: tuple[str, ...], where: str,
                 problems: list[str]) -> None:
    value = _text(element, name)
    if value is not None and value not in allowed:
        problems.append(f"{where}/{name}: {value!r} is not one of {', '.join(allowed)}")


def validate_report(xml: bytes | str) -> list[str]:
    """The ways ``xml`` departs from the RFC 9990 report structure (section 3 and the
    XML schema of appendix A): namespace, element order, required elements, allowed
    values, source addresses, counts. An empty list: it conforms."""
    try:
        root = _load(xml)
    except DMARCReportError as exc:
        return [str(exc)]
    problems: list[str] = []
    if not root.tag.startswith("{" + NAMESPACE + "}"):
        problems.append(f"<feedback> is not in the namespace {NAMESPACE} (an RFC 7489 "
                        "report?)")
    for element in root.iter():
        if element.tag.startswith("{") and not element.tag.startswith("{" + NAMESPACE + "}") \
                and element is not root and _local(element.tag) != "extension":
            continue  # namespaced extension elements are allowed
        stray = (element.tail or "").strip()
        if stray:
            problems.append(f"stray text {stray!r} after <{_local(element.tag)}>")
    _check_order(root, FIRST_LEVEL, "feedback", problems)
    version = _text(root, "version")
    if version is not None and version != "1.0":
        problems.append(f"feedback/version: {version!r}, RFC 9990 says 1.0")
    meta = _child(root, "report_metadata")
    if meta is not None:
        names = [_local(c.tag) for c in meta]
        problems += [f"report_metadata: <{n}> is required" for n in METADATA_REQUIRED
                     if n not in names]
        problems += [f"report_metadata: <{n}> is not an element here" for n in names
                     if n not in METADATA_ALLOWED]
        dates = _child(meta, "date_range")
        for bound in ("begin", "end"):
            if not (_text(dates, bound) or "").isdigit():
                problems.append(f"report_metadata/date_range/{bound}: not seconds since the "
                                "epoch")
    pub = _child(root, "policy_published")
    if pub is not None:
        names = [_local(c.tag) for c in pub]
        problems += [f"policy_published: <{n}> is required" for n in POLICY_REQUIRED
                     if n not in names]
        problems += [f"policy_published: <{n}> is not an element here (removed from "
                     f"DMARC?)" for n in names if n not in POLICY_ALLOWED]
        for name in ("p", "sp", "np"):
            _check_value(pub, name, POLICIES, "policy_published", problems)
        for name in ("adkim", "aspf"):
            _check_value(pub, name, ("r", "s"), "policy_published", problems)
        _check_value(pub, "testing", ("n", "y"), "policy_published", problems)
        _check_value(pub, "discovery_method", ("psl", "treewalk"), "policy_published",
                     problems)
    for number, record in enumerate(_children(root, "record"), start=1):
        where = f"record {number}"
        own = tuple((n, True) for n in ("row", "identifiers", "auth_results"))
        names = [_local(c.tag) for c in record if not c.tag.startswith("{") or
                 c.tag.startswith("{" + NAMESPACE + "}")]
        positions = [[n for n, _ in own].index(n) for n in names if n in dict(own)]
        problems += [f"{where}: <{n}> is required" for n, _ in own if n not in names]
        if positions != sorted(positions):
            problems.append(f"{where}: row, identifiers, auth_results out of order")
        row = _child(record, "row")
        if row is not None:
            source = _text(row, "source_ip") or ""
            try:
                ipaddress.ip_address(source)
            except ValueError:
                problems.append(f"{where}/row/source_ip: {source!r} is not an IP address")
            if not (_text(row, "count") or "").isdigit():
                problems.append(f"{where}/row/count: not a whole number")
            evaluated = _child(row, "policy_evaluated")
            if evaluated is None:
                problems.append(f"{where}/row: <policy_evaluated> is required")
            else:
                _check_order(evaluated, (("disposition", True), ("dkim", True),
                                         ("spf", True), ("reason", False)),
                             f"{where}/row/policy_evaluated", problems)
                _check_value(evaluated, "disposition", DISPOSITIONS, where, problems)
                _check_value(evaluated, "dkim", ALIGNED_RESULTS, where, problems)
                _check_value(evaluated, "spf", ALIGNED_RESULTS, where, problems)
                for reason in _children(evaluated, "reason"):
                    _check_value(reason, "type", OVERRIDE_TYPES, f"{where}/reason", problems)
        ids = _child(record, "identifiers")
        if ids is not None and not _text(ids, "header_from"):
            problems.append(f"{where}/identifiers: <header_from> is required")
        auth = _child(record, "auth_results")
        if auth is not None:
            kinds = [_local(c.tag) for c in auth]
            if kinds != sorted(kinds):  # every dkim before the spf
                problems.append(f"{where}/auth_results: <dkim> elements come before <spf>")
            if kinds.count("spf") > 1:
                problems.append(f"{where}/auth_results: at most one <spf> (MAIL FROM)")
            for dkim in _children(auth, "dkim"):
                for name in ("domain", "selector", "result"):
                    if _text(dkim, name) is None:
                        problems.append(f"{where}/auth_results/dkim: <{name}> is required")
                _check_value(dkim, "result", DKIM_RESULTS, f"{where}/auth_results", problems)
            for spf in _children(auth, "spf"):
                for name in ("domain", "result"):
                    if _text(spf, name) is None:
                        problems.append(f"{where}/auth_results/spf: <{name}> is required")
                _check_value(spf, "result", SPF_RESULTS, f"{where}/auth_results", problems)
                _check_value(spf, "scope", ("mfrom",), f"{where}/auth_results", problems)
    return problems


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


__all__ = ["GENERATOR", "LAB_ORG_NAME", "NAMESPACE", "AggregateReport", "DKIMAuth",
           "DMARCReportError", "Observation", "PolicyPublished", "ReportRecord", "SPFAuth",
           "aggregate_report", "observation", "observations", "parse_report",
           "report_filename", "report_records", "reports_by_domain", "reports_by_period",
           "validate_report"]
