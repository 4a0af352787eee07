"""SMTP TLS Reporting (TLS-RPT, RFC 8460): the ``_smtp._tls`` record and the JSON report.

A domain that publishes an MTA-STS policy wants to know when senders could not use it:
its ``_smtp._tls.<domain>`` TXT record (``v=TLSRPTv1; rua=mailto:tlsrpt@northwind.test``,
section 3) says where to send a daily report. The report (section 4) counts, per policy,
the sessions that succeeded and failed, and groups the failures by result type
(``starttls-not-supported`` when a downgrade removed STARTTLS,
``certificate-host-mismatch``, ``validation-failure``...), sending and receiving host.

:func:`read_tlsrpt_record` reads the record (:func:`tlsrpt_record` looks it up);
:func:`build_report` makes a report from the delivering MTA's attempts over a period
(their :attr:`~labsupport.mail.delivery_items.DeliveryAttempt.tls` sessions);
:meth:`TLSReport.write` saves it as JSON under the file name of section 5.1;
:func:`validate_report` lists the ways a JSON report departs from section 4, and
:func:`parse_report` reads one back (raising :class:`TLSRPTError` with every problem).
"""

from __future__ import annotations

import ipaddress
import json
import re
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import dns.exception

from ..core.errors import LabError
from ..core.results import Result, TraceBuilder, html_table, text_table
from ..dns.mx import ResolverLike
from .delivery_items import DeliveryAttempt, TLSSession
from .record_fields import choose_record, fields_after_version

RFC = "RFC 8460"
RFC_RECORD = f"{RFC} section 3"
RFC_REPORT = f"{RFC} section 4"
RFC_RESULT_TYPES = f"{RFC} section 4.3"
RFC_FILENAME = f"{RFC} section 5.1"

#: The result types of section 4.3 (the IANA registry "STARTTLS Validation Result Types").
RESULT_TYPES = {
    "starttls-not-supported": "the recipient MX did not support STARTTLS",
    "certificate-host-mismatch": "the certificate did not match the MX host or the policy",
    "certificate-expired": "the certificate has expired",
    "certificate-not-trusted": "the certificate does not chain to a trusted CA",
    "validation-failure": "a general failure for a reason not matching another type",
    "tlsa-invalid": "no record of the DANE TLSA RRset was valid",
    "dnssec-invalid": "no valid records were returned from the recursive resolver",
    "dane-required": "DANE was required but no DNSSEC-validated TLSA records were present",
    "sts-policy-fetch-error": "the MTA-STS policy could not be fetched",
    "sts-policy-invalid": "the MTA-STS policy did not validate",
    "sts-webpki-invalid": "the MTA-STS policy could not be authenticated (PKIX)",
}
#: The policy types of section 4.4.
POLICY_TYPES = ("tlsa", "sts", "no-policy-found")

_TOP = {"organization-name": str, "date-range": dict, "contact-info": str,
        "report-id": str, "policies": list}
_POLICY = {"policy-type": str, "policy-string": list, "policy-domain": str,
           "mx-host": list}
_POLICY_REQUIRED = ("policy-type", "policy-domain")
_SUMMARY = ("total-successful-session-count", "total-failure-session-count")
_DETAIL = {"result-type": str, "sending-mta-ip": str, "receiving-mx-hostname": str,
           "receiving-mx-helo": str, "receiving-ip": str, "failed-session-count": int,
           "additional-information": str, "failure-reason-code": str}
_JSON_NAMES = {str: "string", list: "array", dict: "object", int: "number"}
_RECORD_START = re.compile(r"\Av=TLSRPTv1[ \t]*(;|\Z)")
_DATETIME = re.compile(r"\A\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)\Z")


class TLSRPTError(LabError, ValueError):
    """A TLS-RPT record or report is malformed; the message says why."""


# -- the _smtp._tls record ----------------------------------------------------------------


@dataclass(frozen=True)
class TLSRPTRecord:
    """The ``_smtp._tls`` TXT record: where reports go (``rua``, mailto: or https:)."""

    text: str
    rua: tuple[str, ...]
    extensions: tuple[tuple[str, str], ...] = ()


def parse_tlsrpt_record(text: str) -> TLSRPTRecord:
    """Read one ``v=TLSRPTv1; rua=...`` record (RFC 8460 section 3) or raise
    :class:`TLSRPTError`."""
    if not _RECORD_START.match(text):
        raise TLSRPTError(f"{text!r} is not a TLS-RPT record: it must begin with "
                          f"'v=TLSRPTv1' ({RFC_RECORD})")
    rua: list[str] | None = None
    extensions: list[tuple[str, str]] = []
    for name, value in fields_after_version(text, TLSRPTError, RFC_RECORD):
        if name == "rua":
            if rua is not None:
                raise TLSRPTError(f"{text!r} has more than one rua field ({RFC_RECORD})")
            rua = [u.strip(" \t") for u in value.split(",")]
            for uri in rua:
                if not re.match(r"\A(mailto:[^@\s]+@[^@\s]+|https://\S+)\Z", uri):
                    raise TLSRPTError(f"rua {uri!r} is neither a mailto: address nor an "
                                      f"https: URL, the two schemes reports go to "
                                      f"({RFC_RECORD})")
        else:
            extensions.append((name, value))
    if not rua:
        raise TLSRPTError(f"{text!r} has no rua field: it must say where reports go "
                          f"({RFC_RECORD})")
    return TLSRPTRecord(text=text, rua=tuple(rua), extensions=tuple(extensions))


@dataclass(frozen=True, kw_only=True)
class TLSRPTRecordResult(Result):
    """The TXT records at ``_smtp._tls.<domain>``, read: ``verdict`` ``"valid"``,
    ``"none"`` or ``"invalid"`` (for a sender, the last two mean: send no report)."""

    domain: str
    record: TLSRPTRecord | None = None

    def title(self) -> str:
        return f"TLS-RPT record of {self.domain}: {self.verdict}"


def read_tlsrpt_record(texts: Sequence[str], domain: str = "") -> TLSRPTRecordResult:
    """Choose and parse the record among the TXT strings (RFC 8460 section 3): those not
    beginning with ``v=TLSRPTv1`` are discarded; exactly one must remain."""
    trace = TraceBuilder()
    name = f"_smtp._tls.{domain}" if domain else "_smtp._tls"
    verdict, summary, record = choose_record(
        texts, trace, name=name, start=_RECORD_START, version="v=TLSRPTv1", kind="TLS-RPT",
        rfc=RFC_RECORD, parse=parse_tlsrpt_record, error=TLSRPTError,
        absent="the domain asks for no reports", consequence="no report is sent")
    if record is None:
        return TLSRPTRecordResult(verdict=verdict, summary=summary, trace=trace.freeze(),
                                  domain=domain)
    summary = f"Reports for {domain or 'the domain'} go to {', '.join(record.rua)}."
    trace.add(summary, kind="ok", rfc=RFC_RECORD)
    return TLSRPTRecordResult(verdict="valid", summary=summary, trace=trace.freeze(),
                              domain=domain, record=record)


def tlsrpt_record(resolver: ResolverLike, domain: str) -> TLSRPTRecordResult:
    """Look up and read ``_smtp._tls.<domain>`` (a DNS failure reads as no record)."""
    name = domain.lower().rstrip(".")
    try:
        answer = resolver.resolve(f"_smtp._tls.{name}", "TXT")
        texts = [b"".join(r.strings).decode("utf-8", "replace") for r in answer]
    except dns.exception.DNSException:
        texts = []
    return read_tlsrpt_record(texts, name)


# -- the report -------------------------------------------------------------------------


def _stamp(ts: float) -> str:
    return datetime.fromtimestamp(ts, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True, kw_only=True)
class TLSReport(Result):
    """A TLS-RPT aggregate report for one policy domain: ``data`` is the JSON object of
    RFC 8460 section 4; ``verdict`` ``"failures"`` or ``"all-successful"``."""

    policy_domain: str
    data: Mapping[str, Any] = field(hash=False)

    def title(self) -> str:
        return f"TLS-RPT report for {self.policy_domain}: {self.verdict}"

    def json(self) -> str:
        return json.dumps(self.data, indent=2) + "\n"

    def rows(self) -> list[list[object]]:
        out: list[list[object]] = []
        for entry in self.data.get("policies", []):
            for detail in entry.get("failure-details", []):
                out.append([detail.get("result-type"),
                            detail.get("receiving-mx-hostname", ""),
                            detail.get("receiving-ip", ""),
                            detail.get("failed-session-count")])
        return out

    def text(self) -> str:
        rows = self.rows()
        table = ("\n" + text_table(["result-type", "MX host", "address", "sessions"], rows)
                 if rows else "")
        return super().text() + table

    def _repr_html_(self) -> str:
        rows = self.rows()
        if not rows:
            return super()._repr_html_()
        table = html_table(["result-type", "MX host", "address", "sessions"], rows)
        marker = '<div style="margin-top:4px">'
        return super()._repr_html_().replace(marker, table + marker, 1)

    def filename(self, sender: str = "lab.test") -> str:
        """``sender!policy-domain!begin!end!unique-id.json`` (RFC 8460 section 5.1)."""
        dates = self.data["date-range"]
        begin = int(_parse_time(dates["start-datetime"]))
        end = int(_parse_time(dates["end-datetime"]))
        unique = re.sub(r"[^A-Za-z0-9]", "", str(self.data["report-id"]))[:12]
        return f"{sender}!{self.policy_domain}!{begin}!{end}!{unique}.json"

    def write(self, directory: str | Path, sender: str = "lab.test") -> Path:
        """Save the report as JSON in ``directory``; returns the file's path."""
        path = Path(directory) / self.filename(sender)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(self.json(), encoding="utf-8")
        return path


def build_report(attempts: Iterable[DeliveryAttempt], policy_domain: str, *, start: float,
                 end: float, organization_name: str = "Mail Labs",
                 contact_info: str = "postmaster@lab.test",
                 report_id: str | None = None) -> TLSReport:
    """The report for ``policy_domain`` over ``start`` <= lab time < ``end`` from the
    sessions the delivering MTA recorded (RFC 8460 section 4): one entry per policy
    (id and text), success and failure counts, failures grouped by result type, sending
    address, MX host, receiving address and reason."""
    domain = policy_domain.lower().rstrip(".")
    trace = TraceBuilder()
    sessions: list[TLSSession] = [s for a in attempts for s in a.tls
                                  if s.policy_domain == domain and start <= s.at < end]
    trace.add(f"{len(sessions)} session(s) under an MTA-STS policy of {domain} between "
              f"{_stamp(start)} and {_stamp(end)}", kind="info", rfc=RFC_REPORT)
    groups: dict[tuple[str, tuple[str, ...]], list[TLSSession]] = {}
    for session in sessions:
        groups.setdefault((session.policy_id, session.policy_string), []).append(session)
    policies: list[dict[str, Any]] = []
    failures_total = 0
    for (policy_id, lines), members in groups.items():
        ok = sum(1 for s in members if s.result == "success")
        failed = [s for s in members if s.result != "success"]
        failures_total += len(failed)
        details: dict[tuple[Any, ...], dict[str, Any]] = {}
        for s in failed:
            key = (s.result, s.sending_ip, s.mx_host, s.receiving_ip, s.failure_reason)
            entry = details.get(key)
            if entry is None:
                entry = {"result-type": s.result}
                if s.sending_ip:
                    entry["sending-mta-ip"] = s.sending_ip
                entry["receiving-mx-hostname"] = s.mx_host
                if s.receiving_ip:
                    entry["receiving-ip"] = s.receiving_ip
                entry["failed-session-count"] = 0
                if s.failure_reason:
                    entry["failure-reason-code"] = s.failure_reason
                details[key] = entry
            entry["failed-session-count"] += 1
        trace.add(f"policy id {policy_id} (mode {members[0].mode}): {ok} successful, "
                  f"{len(failed)} failed session(s)", kind="warning" if failed else "ok")
        with trace.nested():
            for entry in details.values():
                trace.add(f"{entry['result-type']} at {entry['receiving-mx-hostname']}: "
                          f"{entry['failed-session-count']} session(s)", kind="info",
                          rfc=RFC_RESULT_TYPES)
        policy: dict[str, Any] = {"policy-type": "sts", "policy-string": list(lines),
                                  "policy-domain": domain,
                                  "mx-host": list(members[0].mx_patterns)}
        item: dict[str, Any] = {"policy": policy, "summary": {
            "total-successful-session-count": ok,
            "total-failure-session-count": len(failed)}}
        if details:
            item["failure-details"] = list(details.values())
        policies.append(item)
    ident = report_id or str(uuid.uuid5(uuid.NAMESPACE_URL,
                                        f"tlsrpt:{domain}!{int(start)}!{int(end)}"))
    data: dict[str, Any] = {
        "organization-name": organization_name,
        "date-range": {"start-datetime": _stamp(start), "end-datetime": _stamp(end)},
        "contact-info": contact_info, "report-id": ident, "policies": policies}
    verdict = "failures" if failures_total else "all-successful"
    summary = (f"{len(sessions) - failures_total} successful and {failures_total} failed "
               f"session(s) for {domain} in {len(policies)} polic"
               f"{'y' if len(policies) == 1 else 'ies'}.")
    return TLSReport(verdict=verdict, summary=summary, trace=trace.freeze(),
                     policy_domain=domain, data=data)


# -- reading a report back ------------------------------------------------------------


def _parse_time(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def _typed(obj: Mapping[str, Any], spec: Mapping[str, type], where: str,
           problems: list[str]) -> None:
    for key, value in obj.items():
        wanted = spec.get(key)
        if wanted is None:
            problems.append(f"{where}: {key!r} is not a field of the report format "
                            f"({RFC_REPORT})")
        elif wanted is int and (isinstance(value, bool) or not isinstance(value, int)):
            problems.append(f"{where}.{key}: {value!r} is not a whole number")
        elif not isinstance(value, wanted):
            problems.append(f"{where}.{key}: expected a JSON {_JSON_NAMES[wanted]}, found "
                            f"{type(value).__name__}")


def _load(report: str | bytes | Mapping[str, Any]) -> tuple[Any, list[str]]:
    if isinstance(report, Mapping):
        return report, []
    try:
        return json.loads(report), []
    except ValueError as exc:
        return None, [f"the report is not JSON: {exc} ({RFC_REPORT})"]


def validate_report(report: str | bytes | Mapping[str, Any]) -> list[str]:
    """The ways ``report`` departs from the JSON format of RFC 8460 section 4 (required
    fields, types, policy and result types, dates, addresses, counts); empty: it
    conforms."""
    data, problems = _load(report)
    if problems:
        return problems
    if not isinstance(data, dict):
        return [f"the report must be a JSON object, not {type(data).__name__}"]
    for key in _TOP:
        if key not in data:
            problems.append(f"{key!r} is required ({RFC_REPORT})")
    _typed(data, _TOP, "report", problems)
    dates = data.get("date-range")
    if isinstance(dates, dict):
        _typed(dates, {"start-datetime": str, "end-datetime": str}, "date-range", problems)
        times = []
        for key in ("start-datetime", "end-datetime"):
            value = dates.get(key)
            if value is None:
                problems.append(f"date-range.{key} is required")
            elif isinstance(value, str) and not _DATETIME.match(value):
                problems.append(f"date-range.{key}: {value!r} is not an RFC 3339 date-time "
                                "such as 2026-11-28T00:00:00Z")
            elif isinstance(value, str):
                times.append(_parse_time(value))
        if len(times) == 2 and times[0] > times[1]:
            problems.append("date-range: start-datetime is after end-datetime")
    for i, entry in enumerate(data.get("policies") or []):
        _check_policy(entry, f"policies[{i}]", problems)
    return problems


def _check_policy(entry: Any, where: str, problems: list[str]) -> None:
    if not isinstance(entry, dict):
        problems.append(f"{where}: expected an object")
        return
    _typed(entry, {"policy": dict, "summary": dict, "failure-details": list}, where, problems)
    policy = entry.get("policy")
    if not isinstance(policy, dict):
        problems.append(f"{where}.policy is required")
    else:
        _typed(policy, _POLICY, f"{where}.policy", problems)
        for key in _POLICY_REQUIRED:
            if key not in policy:
                problems.append(f"{where}.policy.{key} is required")
        kind = policy.get("policy-type")
        if isinstance(kind, str) and kind not in POLICY_TYPES:
            problems.append(f"{where}.policy.policy-type {kind!r} is not one of "
                            f"{', '.join(POLICY_TYPES)}")
        for key in ("policy-string", "mx-host"):
            value = policy.get(key)
            if isinstance(value, list) and not all(isinstance(v, str) for v in value):
                problems.append(f"{where}.policy.{key} must be an array of strings")
    summary = entry.get("summary")
    if not isinstance(summary, dict):
        problems.append(f"{where}.summary is required")
    else:
        _typed(summary, dict.fromkeys(_SUMMARY, int), f"{where}.summary", problems)
        for key in _SUMMARY:
            value = summary.get(key)
            if value is None:
                problems.append(f"{where}.summary.{key} is required")
            elif isinstance(value, int) and value < 0:
                problems.append(f"{where}.summary.{key} is negative")
    for j, detail in enumerate(entry.get("failure-details") or []):
        at = f"{where}.failure-details[{j}]"
        if not isinstance(detail, dict):
            problems.append(f"{at}: expected an object")
            continue
        _typed(detail, _DETAIL, at, problems)
        kind = detail.get("result-type")
        if kind is None:
            problems.append(f"{at}.result-type is required")
        elif isinstance(kind, str) and kind not in RESULT_TYPES:
            problems.append(f"{at}.result-type {kind!r} is not a result type of "
                            f"{RFC_RESULT_TYPES}")
        count = detail.get("failed-session-count")
        if count is None:
            problems.append(f"{at}.failed-session-count is required")
        elif isinstance(count, int) and count < 0:
            problems.append(f"{at}.failed-session-count is negative")
        for key in ("sending-mta-ip", "receiving-ip"):
            value = detail.get(key)
            if isinstance(value, str):
                try:
                    ipaddress.ip_address(value)
                except ValueError:
                    problems.append(f"{at}.{key}: {value!r} is not an IP address")


def parse_report(report: str | bytes | Mapping[str, Any]) -> TLSReport:
    """Read a JSON report back into a :class:`TLSReport`, or raise :class:`TLSRPTError`
    listing every way it departs from RFC 8460 section 4."""
    problems = validate_report(report)
    if problems:
        raise TLSRPTError("not a valid TLS-RPT report: " + "; ".join(problems))
    data, _ = _load(report)
    domains = sorted({p["policy"]["policy-domain"] for p in data["policies"]})
    ok = sum(p["summary"]["total-successful-session-count"] for p in data["policies"])
    failed = sum(p["summary"]["total-failure-session-count"] for p in data["policies"])
    trace = TraceBuilder()
    trace.add(f"from {data['organization-name']} ({data['contact-info']}), report "
              f"{data['report-id']}, {data['date-range']['start-datetime']} to "
              f"{data['date-range']['end-datetime']}", kind="info", rfc=RFC_REPORT)
    for entry in data["policies"]:
        policy = entry["policy"]
        trace.add(f"{policy['policy-type']} policy of {policy['policy-domain']}: "
                  f"{entry['summary']['total-successful-session-count']} successful, "
                  f"{entry['summary']['total-failure-session-count']} failed",
                  kind="warning" if entry["summary"]["total-failure-session-count"] else "ok")
        with trace.nested():
            for detail in entry.get("failure-details", []):
                meaning = RESULT_TYPES.get(detail["result-type"], "")
                trace.add(f"{detail['result-type']} ({meaning}): "
                          f"{detail['failed-session-count']} session(s) at "
                          f"{detail.get('receiving-mx-hostname', 'an MX host')}",
                          kind="info", rfc=RFC_RESULT_TYPES)
    return TLSReport(verdict="failures" if failed else "all-successful",
                     summary=f"{ok} successful and {failed} failed session(s) for "
                             f"{', '.join(domains) or 'no domain'}.",
                     trace=trace.freeze(), policy_domain=domains[0] if domains else "",
                     data=data)


__all__ = [
    "POLICY_TYPES", "RESULT_TYPES", "TLSRPTError", "TLSRPTRecord", "TLSRPTRecordResult",
    "TLSReport", "build_report", "parse_report", "parse_tlsrpt_record", "read_tlsrpt_record",
    "tlsrpt_record", "validate_report",
]
