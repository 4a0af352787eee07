"""DMARC identifier alignment: does an authenticated domain belong with the Author Domain?

An SPF pass for the MAIL FROM domain, or a DKIM pass for a signature's ``d=`` domain,
counts for DMARC only when that domain is *aligned* with the domain in the From field
(RFC 9989 section 4.4). In strict mode the two names must be identical; in relaxed mode
(the default) they must share one Organizational Domain, which the DNS Tree Walk of
:mod:`labsupport.auth.dmarc_discovery` finds (or, with ``method="psl"``, the lab's
public-suffix list).

:class:`Alignment` is one identifier and its test, with the reason in words; ``_align``
performs the test, and ``_OrgDomains`` finds the Organizational Domains of several
identifiers with one shared DNS cache. :func:`labsupport.auth.dmarc.evaluate` puts them
together.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..core.results import TraceBuilder
from .dmarc_discovery import _DNS, RFC_7489_ORG, RFC_ORG_DOMAIN, _Walk
from .dmarc_domains import _normalize, lab_public_suffix_list
from .dmarc_record import RFC

RFC_ALIGNMENT = f"{RFC} section 4.4"


@dataclass(frozen=True)
class Alignment:
    """One authenticated (or not) identifier and its alignment test (section 4.4).

    ``mechanism`` is ``"spf"`` or ``"dkim"``; ``domain`` the SPF MAIL FROM domain or the
    DKIM ``d=``; ``result`` that mechanism's own result; ``mode`` ``"relaxed"`` or
    ``"strict"``; ``organizational_domain`` the identifier's (relaxed mode); ``aligned``
    is True only for a passing identifier that aligns; ``reason`` says why in words.
    """

    mechanism: str
    domain: str
    result: str
    mode: str
    aligned: bool
    reason: str
    organizational_domain: str | None = None
    selector: str | None = None


class _OrgDomains:
    """Organizational Domains of several names, sharing one DNS cache."""

    def __init__(self, dnsq: _DNS, method: str, trace: TraceBuilder) -> None:
        self.dnsq = dnsq
        self.method = method
        self.trace = trace
        self.known: dict[str, str | None] = {}

    def get(self, domain: str) -> str | None:
        if domain in self.known:
            return self.known[domain]
        if self.method == "psl":
            org: str | None = lab_public_suffix_list().organizational_domain(domain)
            self.trace.add(f"Organizational Domain of {domain} from the list: {org}",
                           rfc=RFC_7489_ORG)
        else:
            self.trace.add(f"Organizational Domain of {domain}:", rfc=RFC_ORG_DOMAIN)
            with self.trace.nested():
                walk = _Walk(domain, self.dnsq, self.trace)
                org = None if walk.error else walk.organizational_domain(self.trace)
        self.known[domain] = org
        return org


def _align(mechanism: str, domain: str, result: str, author: str, author_org: str,
           mode: str, orgs: _OrgDomains, selector: str | None = None) -> Alignment:
    domain = _normalize(domain)
    if result != "pass":
        return Alignment(mechanism, domain, result, mode, False,
                         f"{mechanism.upper()} did not pass ({result}): not an authenticated "
                         f"identifier", selector=selector)
    if mode == "strict":
        same = domain == author
        why = (f"identical to {author}" if same else f"{domain} is not {author} (strict mode "
               f"asks for the very same name)")
        return Alignment(mechanism, domain, result, mode, same, why, selector=selector)
    if domain == author:
        return Alignment(mechanism, domain, result, mode, True, f"identical to {author}",
                         author_org, selector=selector)
    org = orgs.get(domain)
    if org is None:
        return Alignment(mechanism, domain, result, mode, False, "a DNS error stopped the "
                         "tree walk for this identifier", selector=selector)
    same = org == author_org
    why = (f"same Organizational Domain {org}" if same else f"Organizational Domain {org}, "
           f"not {author_org}")
    return Alignment(mechanism, domain, result, mode, same, why, org, selector=selector)

