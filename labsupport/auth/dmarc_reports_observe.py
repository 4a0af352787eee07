"""DMARC aggregate reports, what the MX role saw: one message at a time.

:class:`Observation` is one message as a report counts it; :func:`observation` takes it
from an MX-role evaluation (``lab.smtp.evaluations``), :func:`observations` from many.
Part of :mod:`labsupport.auth.dmarc_reports`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from .dmarc_reports_model import DKIMAuth, PolicyPublished, SPFAuth

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
