"""DMARC aggregate reports, the model: the format's constants and the plain records a
report is read into or built from.

The RFC numbers, the RFC 9990 namespace, who the lab's reports say they come from, the
elements and values RFC 9990 section 3 allows; :class:`DMARCReportError`; and the plain
records: :class:`DKIMAuth`, :class:`SPFAuth`, :class:`ReportRecord` (one ``record``,
flattened), :class:`PolicyPublished` and :class:`AggregateReport` (a whole report, with
its text and HTML views). Part of :mod:`labsupport.auth.dmarc_reports`.
"""

from __future__ import annotations

import html
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime

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
