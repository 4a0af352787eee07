"""DMARC policy discovery: which record applies to a domain, and where its organization ends.

A receiver looks for the DMARC record of the Author Domain in DNS, at
``_dmarc.<domain>``, and must also know the domain's Organizational Domain to test
relaxed alignment. RFC 9989 finds both by the DNS Tree Walk (section 4.10): ask the
domain, then its parents, at most 8 queries, stopping at a record with ``psd=y`` or
``psd=n``; the record applied is the domain's own, else its Organizational Domain's,
else its Public Suffix Domain's (section 4.10.1), and section 4.10.2 says which name is
the Organizational Domain. RFC 7489 took the Organizational Domain from a public-suffix
list instead and asked at most 2 names (``method="psl"``, with the lab's list).

:func:`discover` answers both questions as a :class:`Discovery` with its trace;
:func:`organizational_domain` only the second. Every DNS answer goes through one cache
per evaluation (``_DNS``), so a name is asked once, and a DNS error stops the walk
(a ``temperror``, section 5.3.6). The resolver follows dnspython's
``Resolver.resolve(qname, rdtype)`` contract.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import dns.exception
import dns.rcode
import dns.resolver

from ..core.results import Result, TraceBuilder
from .dmarc_domains import (
    _SHORTEN_AT,
    PSL_PATH,
    _labels,
    _normalize,
    _one_label_below,
    lab_public_suffix_list,
    tree_walk_names,
)
from .dmarc_record import RFC, RFC_DISCOVERY, DMARCRecord, is_dmarc_record, parse_record

RFC_TREE_WALK = f"{RFC} section 4.10"
RFC_ORG_DOMAIN = f"{RFC} section 4.10.2"
RFC_DNS_ERRORS = f"{RFC} section 5.3.6"
RFC_7489_ORG = "RFC 7489 section 3.2"
RFC_7489_DISCOVERY = "RFC 7489 section 6.6.3"

METHODS = ("treewalk", "psl")


# -- DNS -------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Answer:
    kind: str  # "records", "nxdomain", "nodata", "refused", "error"
    records: tuple[str, ...] = ()
    error: str = ""


class _DNS:
    """Asks ``resolver``, remembers every answer (one evaluation asks a name once)."""

    def __init__(self, resolver: Any) -> None:
        self.resolver = resolver
        self.cache: dict[tuple[str, str], _Answer] = {}
        self.asked: list[tuple[str, str]] = []

    def query(self, qname: str, rdtype: str) -> tuple[_Answer, bool]:
        key = (qname, rdtype)
        if key in self.cache:
            return self.cache[key], True
        self.asked.append(key)
        try:
            answer = self.resolver.resolve(qname, rdtype)
        except dns.resolver.NXDOMAIN:
            found = _Answer("nxdomain")
        except dns.resolver.NoNameservers as exc:
            errors = exc.kwargs.get("errors") or []
            refused = [e[3] in ("REFUSED", dns.rcode.REFUSED) for e in errors
                       if isinstance(e, tuple) and len(e) > 3]
            if refused and all(refused):
                found = _Answer("refused")
            else:
                found = _Answer("error", error=f"{type(exc).__name__}: {exc}")
        except dns.resolver.NoAnswer:
            found = _Answer("nodata")
        except dns.exception.DNSException as exc:
            found = _Answer("error", error=f"{type(exc).__name__}: {exc}")
        else:
            if rdtype == "TXT":
                texts = tuple(b"".join(r.strings).decode("utf-8", "replace") for r in answer)
            else:
                texts = tuple(r.to_text() for r in answer)
            found = _Answer("records", texts) if texts else _Answer("nodata")
        self.cache[key] = found
        return found, False


@dataclass(frozen=True)
class _Found:
    """What ``_dmarc.<name>`` held for the walk."""

    name: str
    record: DMARCRecord | None
    error: str | None = None


def _fetch(dnsq: _DNS, name: str, trace: TraceBuilder) -> _Found:
    """Query ``_dmarc.<name>`` TXT and keep the one DMARC record, if exactly one."""
    qname = f"_dmarc.{name}"
    answer, cached = dnsq.query(qname, "TXT")
    again = " (answer remembered from an earlier query)" if cached else ""
    trace.add(f"query {qname} TXT{again}", kind="query")
    with trace.nested():
        if answer.kind == "error":
            trace.add(f"DNS error: {answer.error}", kind="error", rfc=RFC_DNS_ERRORS)
            return _Found(name, None, answer.error)
        if answer.kind == "refused":
            trace.add(f"REFUSED: no name server serves {qname}; read as no DMARC record "
                      f"(a lab choice: the lab world has no zone for its top-level names)",
                      kind="warning")
            return _Found(name, None)
        if answer.kind in ("nxdomain", "nodata"):
            word = "no such name" if answer.kind == "nxdomain" else "no TXT records"
            trace.add(f"{word}: no DMARC record at {name}", kind="answer")
            return _Found(name, None)
        dmarc = [t for t in answer.records if is_dmarc_record(t)]
        others = len(answer.records) - len(dmarc)
        if others:
            trace.add(f"{others} TXT record(s) not starting with v=DMARC1 discarded",
                      kind="info", rfc=f"{RFC_TREE_WALK} step 2")
        if not dmarc:
            trace.add(f"no DMARC record at {name}", kind="answer")
            return _Found(name, None)
        if len(dmarc) > 1:
            trace.add(f"{len(dmarc)} DMARC records at {name}: all are discarded",
                      kind="warning", rfc=f"{RFC_TREE_WALK} step 2",
                      detail="\n".join(dmarc))
            return _Found(name, None)
        record = parse_record(dmarc[0])
        trace.add(f"DMARC record at {name}", kind="answer", detail=record.text)
        for problem in record.problems:
            trace.add(problem, kind="warning")
        return _Found(name, record)


# -- discovery ------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class Discovery(Result):
    """Where the DMARC record for ``domain`` is, and where its organization ends.

    ``verdict`` is ``found``, ``none`` (no record applies) or ``temperror`` (a DNS error
    stopped the walk). ``record`` is the record to apply, published at
    ``record_domain`` (the domain itself, its Organizational Domain, or its Public Suffix
    Domain, in that order of preference: RFC 9989 section 4.10.1). ``queries`` lists the
    ``_dmarc`` names asked, in order; ``found`` every (name, record text) the walk saw.
    ``method`` is ``"treewalk"`` (RFC 9989) or ``"psl"`` (RFC 7489 with the lab's list).
    """

    domain: str
    method: str = "treewalk"
    record: DMARCRecord | None = None
    record_domain: str | None = None
    organizational_domain: str = ""
    psd_domain: str | None = None
    queries: tuple[str, ...] = ()
    found: tuple[tuple[str, str], ...] = ()

    def title(self) -> str:
        where = f" at {self.record_domain}" if self.record_domain else ""
        return (f"DMARC discovery for {self.domain} ({self.method}): {self.verdict}{where}; "
                f"Organizational Domain {self.organizational_domain}")


class _Walk:
    """One DNS Tree Walk (section 4.10) from ``start``, its records and its outcome."""

    def __init__(self, start: str, dnsq: _DNS, trace: TraceBuilder) -> None:
        self.start = start
        self.found: list[_Found] = []  # every name with a record, longest first
        self.queries: list[str] = []
        self.error: str | None = None
        names = tree_walk_names(start)
        trace.add(f"DNS Tree Walk from {start}: at most {len(names)} queries "
                  f"({', '.join('_dmarc.' + n for n in names)})", rfc=RFC_TREE_WALK)
        for index, name in enumerate(names):
            if index == 1 and len(_labels(start)) >= _SHORTEN_AT:
                trace.add(f"{start} has {len(_labels(start))} labels: the walk goes on at "
                          f"its last {_SHORTEN_AT - 1} labels, {name}",
                          rfc=f"{RFC_TREE_WALK} step 4")
            self.queries.append(f"_dmarc.{name}")
            got = _fetch(dnsq, name, trace)
            if got.error is not None:
                self.error = got.error
                trace.add("the walk stops on a DNS error", kind="error", rfc=RFC_DNS_ERRORS)
                return
            if got.record is not None:
                self.found.append(got)
                if got.record.psd in ("y", "n"):
                    trace.add(f"the record at {name} has psd={got.record.psd}: the walk stops",
                              kind="decision", rfc=f"{RFC_TREE_WALK} step 6")
                    return
        if names:
            trace.add("no labels left: the walk ends", rfc=f"{RFC_TREE_WALK} step 7")

    def organizational_domain(self, trace: TraceBuilder) -> str:
        """Section 4.10.2: psd=n, else psd=y (not at the start), else the fewest labels."""
        for got in self.found:
            assert got.record is not None
            if got.record.psd == "n":
                trace.add(f"{got.name} has psd=n: it is the Organizational Domain",
                          kind="decision", rfc=f"{RFC_ORG_DOMAIN} rule 1")
                return got.name
            if got.record.psd == "y" and got.name != self.start:
                org = _one_label_below(self.start, got.name)
                trace.add(f"{got.name} has psd=y, a Public Suffix Domain: the Organizational "
                          f"Domain is the name one label below it, {org}", kind="decision",
                          rfc=f"{RFC_ORG_DOMAIN} rule 2")
                return org
        if self.found:
            fewest = min(self.found, key=lambda f: len(_labels(f.name)))
            trace.add(f"the record with the fewest labels is at {fewest.name}: it is the "
                      f"Organizational Domain", kind="decision", rfc=f"{RFC_ORG_DOMAIN} rule 3")
            return fewest.name
        trace.add(f"no DMARC record on the walk: {self.start} is its own Organizational "
                  f"Domain", kind="decision", rfc=RFC_ORG_DOMAIN)
        return self.start

    def psd(self) -> _Found | None:
        for got in self.found:
            if got.record is not None and got.record.psd == "y" and got.name != self.start:
                return got
        return None


def _check_method(method: str) -> None:
    if method not in METHODS:
        raise ValueError(f"method is 'treewalk' (RFC 9989) or 'psl' (RFC 7489), not {method!r}")


def _discover(domain: str, dnsq: _DNS, method: str, trace: TraceBuilder) -> Discovery:
    _check_method(method)
    domain = _normalize(domain)
    if method == "psl":
        return _discover_psl(domain, dnsq, trace)
    trace.add("method: the DNS Tree Walk of RFC 9989 (no public-suffix list)",
              rfc=RFC_TREE_WALK)
    walk = _Walk(domain, dnsq, trace)
    found = tuple((f.name, f.record.text) for f in walk.found if f.record is not None)
    if walk.error is not None:
        return Discovery(verdict="temperror", summary=f"a DNS error stopped the walk: "
                         f"{walk.error}", domain=domain, organizational_domain=domain,
                         queries=tuple(walk.queries), found=found, trace=trace.freeze())
    org = walk.organizational_domain(trace)
    by_name = {f.name: f for f in walk.found}
    psd = walk.psd()
    chosen: _Found | None = None
    queries = list(walk.queries)
    if domain in by_name:
        chosen = by_name[domain]
        trace.add(f"the Author Domain {domain} has a record: it is the one to apply",
                  kind="decision", rfc=RFC_DISCOVERY)
    elif org in by_name:
        chosen = by_name[org]
        trace.add(f"no record at {domain}: the record of its Organizational Domain {org} "
                  f"applies", kind="decision", rfc=RFC_DISCOVERY)
    else:
        if org != domain and org not in {q.removeprefix("_dmarc.") for q in walk.queries}:
            trace.add(f"the Organizational Domain {org} was skipped by the walk: ask it too",
                      rfc=RFC_DISCOVERY)
            queries.append(f"_dmarc.{org}")
            got = _fetch(dnsq, org, trace)
            if got.error is not None:
                return Discovery(verdict="temperror", summary=f"a DNS error: {got.error}",
                                 domain=domain, organizational_domain=org,
                                 queries=tuple(queries), found=found, trace=trace.freeze())
            if got.record is not None:
                chosen = got
                found = (*found, (org, got.record.text))
                trace.add(f"no record at {domain}: the record of its Organizational Domain "
                          f"{org} applies", kind="decision", rfc=RFC_DISCOVERY)
        if chosen is None and psd is not None:
            chosen = psd
            trace.add(f"neither {domain} nor {org} has a record: the record of the Public "
                      f"Suffix Domain {psd.name} applies", kind="decision", rfc=RFC_DISCOVERY)
    return _discovery_result(domain, "treewalk", chosen, org, psd.name if psd else None,
                             tuple(queries), found, trace)


def _discovery_result(domain: str, method: str, chosen: _Found | None, org: str,
                      psd: str | None, queries: tuple[str, ...],
                      found: tuple[tuple[str, str], ...], trace: TraceBuilder) -> Discovery:
    if chosen is None or chosen.record is None:
        trace.add(f"no DMARC record applies to {domain}: DMARC does not apply",
                  kind="decision", rfc=RFC_DISCOVERY)
        return Discovery(verdict="none", summary=f"no DMARC record applies to {domain} "
                         f"({len(queries)} queries); its Organizational Domain is {org}",
                         domain=domain, method=method, organizational_domain=org,
                         psd_domain=psd, queries=queries, found=found, trace=trace.freeze())
    return Discovery(verdict="found", summary=f"the record at _dmarc.{chosen.name} applies to "
                     f"{domain} ({len(queries)} queries); its Organizational Domain is {org}",
                     domain=domain, method=method, record=chosen.record,
                     record_domain=chosen.name, organizational_domain=org, psd_domain=psd,
                     queries=queries, found=found, trace=trace.freeze())


def _discover_psl(domain: str, dnsq: _DNS, trace: TraceBuilder) -> Discovery:
    psl = lab_public_suffix_list()
    trace.add(f"method: RFC 7489, the Organizational Domain from a public-suffix list "
              f"({PSL_PATH.name}, {len(psl)} rules)", rfc=RFC_7489_ORG)
    org = psl.organizational_domain(domain)
    trace.add(f"public suffix {psl.public_suffix(domain)}: the Organizational Domain of "
              f"{domain} is {org}", kind="decision", rfc=RFC_7489_ORG)
    queries = [f"_dmarc.{domain}"]
    got = _fetch(dnsq, domain, trace)
    found: list[tuple[str, str]] = []
    if got.record is not None:
        found.append((domain, got.record.text))
    chosen = got if got.record is not None else None
    if got.error is None and chosen is None and org != domain:
        queries.append(f"_dmarc.{org}")
        got = _fetch(dnsq, org, trace)
        if got.record is not None:
            found.append((org, got.record.text))
            chosen = got
            trace.add(f"no record at {domain}: the record of {org} applies", kind="decision",
                      rfc=RFC_7489_DISCOVERY)
    if got.error is not None:
        return Discovery(verdict="temperror", summary=f"a DNS error: {got.error}",
                         domain=domain, method="psl", organizational_domain=org,
                         queries=tuple(queries), found=tuple(found), trace=trace.freeze())
    return _discovery_result(domain, "psl", chosen, org, None, tuple(queries), tuple(found),
                             trace)


def discover(domain: str, resolver: Any, *, method: str = "treewalk") -> Discovery:
    """Find the DMARC record that applies to ``domain`` and its Organizational Domain.

    ``method="treewalk"``: the DNS Tree Walk of RFC 9989 section 4.10 (the domain, then
    its parents, long names shortened to 7 labels, at most 8 queries, stopping at a
    record with ``psd=y`` or ``psd=n``); the record applied is the domain's own, else
    its Organizational Domain's, else its Public Suffix Domain's (section 4.10.1), and
    the Organizational Domain is chosen as section 4.10.2 says. ``method="psl"``: RFC
    7489 section 6.6.3, the domain's record, else its Organizational Domain's from the
    lab's public-suffix list (:data:`PSL_PATH`).
    """
    return _discover(domain, _DNS(resolver), method, TraceBuilder())


def organizational_domain(domain: str, resolver: Any, *, method: str = "treewalk") -> str:
    """The Organizational Domain of ``domain`` (RFC 9989 section 4.10.2, or RFC 7489
    section 3.2 with ``method="psl"``, which asks no DNS question)."""
    _check_method(method)
    if method == "psl":
        return lab_public_suffix_list().organizational_domain(domain)
    trace = TraceBuilder()
    walk = _Walk(_normalize(domain), _DNS(resolver), trace)
    return walk.organizational_domain(trace)
