"""DMARC: does the From domain a reader sees stand behind this message? (RFC 9989)

DMARC ties the two authentication results a reader never sees (SPF's MAIL FROM domain,
DKIM's ``d=`` domain) to the domain in the From header field, the Author Domain, and
lets that domain's owner say what a receiver should do with mail that does not pass.

- :func:`parse_record` reads a DMARC Policy Record (RFC 9989 sections 4.7 and 4.8).
- :func:`discover` finds the record that applies to a domain and the domain's
  Organizational Domain by the DNS Tree Walk (section 4.10: at most 8 queries, the
  ``psd=`` flag decides where an organization ends), or, with ``method="psl"``, the
  RFC 7489 way: a public-suffix list (the lab's own, ``data/psl``) and at most 2 queries.
- :func:`organizational_domain` answers only the second question.
- :func:`evaluate` does what a receiver does with a message (section 5.3): extract the
  Author Domain, discover the policy, check each SPF and DKIM identifier for alignment
  (relaxed or strict, section 4.4), decide pass or fail and the disposition the policy
  asks for (``p``, ``sp`` or ``np``, softened by ``t=y`` testing mode).

Every result keeps a trace in words; the resolver follows dnspython's
``Resolver.resolve(qname, rdtype)`` contract (the lab's resolver, a real one, or a
:class:`~labsupport.dns.zone.ZoneSet`).

The parts live in modules of their own, and every name above stays importable from
here: the record in :mod:`labsupport.auth.dmarc_record`, domain names and the
public-suffix list in :mod:`labsupport.auth.dmarc_domains`, the DNS Tree Walk and policy
discovery in :mod:`labsupport.auth.dmarc_discovery`, identifier alignment in
:mod:`labsupport.auth.dmarc_alignment`. This module holds the evaluation of a message
and its result.

To be taught in ``notebooks/06-dmarc.ipynb`` (issue 7).
"""

from __future__ import annotations

import email.parser
import email.policy
import email.utils
import html
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..core.results import Result, TraceBuilder, html_table, text_table
from .dmarc_alignment import RFC_ALIGNMENT as RFC_ALIGNMENT
from .dmarc_alignment import Alignment as Alignment
from .dmarc_alignment import _align, _OrgDomains
from .dmarc_discovery import _DNS, _check_method, _discover
from .dmarc_discovery import METHODS as METHODS
from .dmarc_discovery import RFC_7489_DISCOVERY as RFC_7489_DISCOVERY
from .dmarc_discovery import RFC_7489_ORG as RFC_7489_ORG
from .dmarc_discovery import RFC_DNS_ERRORS as RFC_DNS_ERRORS
from .dmarc_discovery import RFC_ORG_DOMAIN as RFC_ORG_DOMAIN
from .dmarc_discovery import RFC_TREE_WALK as RFC_TREE_WALK
from .dmarc_discovery import Discovery as Discovery
from .dmarc_discovery import discover as discover
from .dmarc_discovery import organizational_domain as organizational_domain
from .dmarc_domains import MAX_TREE_WALK_QUERIES as MAX_TREE_WALK_QUERIES
from .dmarc_domains import PSL_PATH as PSL_PATH
from .dmarc_domains import PublicSuffixList as PublicSuffixList
from .dmarc_domains import _is_subdomain, _normalize
from .dmarc_domains import lab_public_suffix_list as lab_public_suffix_list
from .dmarc_domains import tree_walk_names as tree_walk_names
from .dmarc_record import POLICIES as POLICIES
from .dmarc_record import RFC as RFC
from .dmarc_record import RFC_DISCOVERY as RFC_DISCOVERY
from .dmarc_record import RFC_FORMAT as RFC_FORMAT
from .dmarc_record import RFC_GRAMMAR as RFC_GRAMMAR
from .dmarc_record import DMARCRecord as DMARCRecord
from .dmarc_record import DMARCRecordError as DMARCRecordError
from .dmarc_record import is_dmarc_record as is_dmarc_record
from .dmarc_record import parse_record as parse_record

if TYPE_CHECKING:  # the evaluators are only read, never imported at run time
    from .dkim import DKIMVerification
    from .spf import SPFResult

__all__ = [
    "MAX_TREE_WALK_QUERIES",
    "PSL_PATH",
    "Alignment",
    "DMARCRecord",
    "DMARCRecordError",
    "DMARCResult",
    "Discovery",
    "PublicSuffixList",
    "discover",
    "evaluate",
    "is_dmarc_record",
    "lab_public_suffix_list",
    "organizational_domain",
    "parse_record",
    "tree_walk_names",
]

RFC_AUTHOR = f"{RFC} section 5.3.1"
RFC_PASS_FAIL = f"{RFC} section 5.3.5"
RFC_NONEXISTENT = f"{RFC} section 3.2.13"
RFC_RESULTS = f"{RFC} section 9.2"

VERDICTS = ("pass", "fail", "none", "temperror", "permerror")
#: What ``t=y`` makes of each policy: one level below (RFC 9989 section 4.7, tag t).
_TESTING = {"reject": "quarantine", "quarantine": "none", "none": "none"}
_LABEL = re.compile(r"\A(?!-)[a-z0-9_-]{1,63}(?<!-)\Z")


# -- evaluation -----------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class DMARCResult(Result):
    """The outcome of DMARC for one message (RFC 9989 section 5.3).

    ``verdict``: ``pass`` (an aligned identifier), ``fail`` (a record applies and none
    aligns), ``none`` (no record applies), ``temperror`` (a DNS error) or ``permerror``
    (no single Author Domain, or a record that asks for no DMARC processing).
    ``disposition`` is what the policy asks for: ``none`` unless the verdict is fail;
    then the ``p``, ``sp`` or ``np`` value (``policy`` names the tag), one level lower
    when the record says ``t=y`` (``testing``); ``requested`` is the tag's value before
    testing mode. ``alignments`` lists every SPF and DKIM identifier with its test.
    """

    from_domain: str | None = None
    from_addresses: tuple[str, ...] = ()
    mail_from: str = ""
    method: str = "treewalk"
    record: DMARCRecord | None = None
    record_domain: str | None = None
    organizational_domain: str | None = None
    policy: str | None = None
    requested: str | None = None
    disposition: str = "none"
    testing: bool = False
    author_domain_exists: bool | None = None
    spf_aligned: bool = False
    dkim_aligned: bool = False
    alignments: tuple[Alignment, ...] = ()
    discovery: Discovery | None = field(default=None, repr=False)

    @property
    def result(self) -> str:
        return self.verdict

    def title(self) -> str:
        who = self.from_domain or "no Author Domain"
        return f"DMARC {self.verdict} for {who}: disposition {self.disposition}"

    def _facts(self) -> list[tuple[str, str]]:
        facts = [("method", "DNS Tree Walk (RFC 9989)" if self.method == "treewalk"
                  else "public-suffix list (RFC 7489)")]
        if self.record is not None:
            facts.append(("record", f"_dmarc.{self.record_domain}: {self.record.text}"))
        if self.organizational_domain:
            facts.append(("Organizational Domain", self.organizational_domain))
        if self.policy:
            test = " (t=y testing mode)" if self.testing else ""
            facts.append(("policy", f"{self.policy}={self.requested}{test}"))
        return facts

    def alignment_rows(self) -> list[list[object]]:
        return [[a.mechanism, a.domain, a.result, a.mode, "yes" if a.aligned else "no",
                 a.reason] for a in self.alignments]

    def text(self) -> str:
        lines = [self.title(), f"  {self.summary}"]
        lines.extend(f"  {name}: {value}" for name, value in self._facts())
        if self.alignments:
            table = text_table(["id", "domain", "result", "mode", "aligned", "why"],
                               self.alignment_rows())
            lines.extend("  " + line for line in table.splitlines())
        if self.trace:
            lines.append("Trace:")
            lines.extend("  " + step.as_text().replace("\n", "\n  ") for step in self.trace)
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        facts = "".join(f"<div><b>{html.escape(k)}</b>: {html.escape(v)}</div>"
                        for k, v in self._facts())
        table = (html_table(["id", "domain", "result", "mode", "aligned", "why"],
                            self.alignment_rows(), caption="Identifier alignment")
                 if self.alignments else "")
        steps = "".join(step.as_html() for step in self.trace)
        return (
            '<div style="border-left:4px solid #888;padding-left:8px">'
            f"<b>{html.escape(self.title())}</b><br>{html.escape(self.summary)}"
            f"{facts}{table}<details><summary>Trace</summary>{steps}</details></div>"
        )

    def authres(self) -> str:
        """This result as a ``dmarc=`` entry of an Authentication-Results field (RFC 8601,
        with the ``header.from`` and ``policy.dmarc`` properties of RFC 9989 section 9.1)."""
        reason = re.sub(r"[();\\]", " ", self.summary)
        reason = " ".join(reason.split())
        parts = [f"dmarc={self.verdict} ({reason})"]
        if self.from_domain:
            parts.append(f"header.from={self.from_domain}")
        if self.record is not None and self.verdict in ("pass", "fail"):
            parts.append(f"policy.dmarc={self.disposition}")
        return " ".join(parts)


def _author_domains(message: bytes, trace: TraceBuilder) -> tuple[list[str], list[str], str]:
    """The From addresses, their domains, and a problem sentence ('' when fine)."""
    # 8-bit headers (RFC 6532) are read as UTF-8
    parser = email.parser.HeaderParser(policy=email.policy.compat32)
    headers = parser.parsestr(message.decode("utf-8", "replace"))
    fields = headers.get_all("From") or []
    if not fields:
        return [], [], "the message has no From header field"
    if len(fields) > 1:
        trace.add(f"{len(fields)} From header fields: the message is not valid RFC 5322",
                  kind="warning", rfc=f"{RFC} section 4.4")
    values = [str(v) for v in fields]
    addresses = [addr for _name, addr in email.utils.getaddresses(values) if addr]
    if not addresses:
        return [], [], f"the From field {values[0]!r} holds no address"
    domains: list[str] = []
    for addr in addresses:
        local, at, dom = addr.rpartition("@")
        dom = _normalize(dom) if at and local else ""
        if not dom:
            return addresses, [], f"the From address {addr!r} has no domain"
        if len(dom) > 253 or not all(_LABEL.match(label) for label in dom.split(".")):
            return addresses, [], f"the From address {addr!r} has no valid domain name"
        if dom not in domains:
            domains.append(dom)
    if len(domains) > 1:
        return addresses, domains, (f"the From field names {len(domains)} domains "
                                    f"({', '.join(domains)})")
    if len(fields) > 1:
        return addresses, domains, "the message has several From header fields"
    if len(addresses) > 1:
        trace.add(f"{len(addresses)} From addresses, all at {domains[0]}: one Author Domain",
                  rfc=RFC_AUTHOR)
    return addresses, domains, ""


def _domain_exists(dnsq: _DNS, domain: str, trace: TraceBuilder) -> bool | None:
    """Section 3.2.13: a domain with NXDOMAIN or NODATA for A, AAAA and MX does not
    exist. ``None`` on a DNS error."""
    trace.add(f"does {domain} exist? (A, AAAA and MX)", rfc=RFC_NONEXISTENT)
    with trace.nested():
        for rdtype in ("A", "AAAA", "MX"):
            answer, _cached = dnsq.query(domain, rdtype)
            if answer.kind == "error":
                trace.add(f"{domain} {rdtype}: DNS error {answer.error}", kind="error")
                return None
            if answer.kind == "records":
                trace.add(f"{domain} {rdtype}: {', '.join(answer.records)}: it exists",
                          kind="answer")
                return True
            trace.add(f"{domain} {rdtype}: {answer.kind}", kind="answer")
    trace.add(f"{domain} does not exist", kind="decision", rfc=RFC_NONEXISTENT)
    return False


def evaluate(message: bytes | str, *, mail_from: str, spf: SPFResult | None,
             dkim: DKIMVerification | None, resolver: Any,
             method: str = "treewalk") -> DMARCResult:
    """DMARC for one message, as a receiver applies it (RFC 9989 section 5.3).

    ``message`` is the message as received (its From field gives the Author Domain);
    ``mail_from`` the SMTP MAIL FROM (kept for reports); ``spf`` the SPF result of the MAIL
    FROM identity and ``dkim`` the verification of every signature (either may be None:
    no identifier of that kind). ``method`` chooses how Organizational Domains are found:
    ``"treewalk"`` (RFC 9989) or ``"psl"`` (RFC 7489 with the lab's list).
    """
    _check_method(method)
    if isinstance(message, str):
        message = message.encode("utf-8")
    trace = TraceBuilder()
    dnsq = _DNS(resolver)
    base: dict[str, Any] = {"mail_from": mail_from, "method": method}
    trace.add("method: " + ("DNS Tree Walk (RFC 9989 section 4.10)" if method == "treewalk"
                            else "public-suffix list (RFC 7489 section 3.2), the lab's list"))
    addresses, domains, problem = _author_domains(message, trace)
    base["from_addresses"] = tuple(addresses)
    if problem:
        trace.add(f"{problem}: DMARC validation is not possible and stops", kind="error",
                  rfc=RFC_AUTHOR)
        return DMARCResult(verdict="permerror", summary=f"{problem}; DMARC needs exactly one "
                           f"Author Domain ({RFC_AUTHOR})", trace=trace.freeze(),
                           from_domain=domains[0] if len(domains) == 1 else None, **base)
    author = domains[0]
    trace.add(f"Author Domain: {author} (From: {', '.join(addresses)})", kind="ok",
              rfc=RFC_AUTHOR)
    trace.add("policy discovery", rfc=RFC_DISCOVERY)
    with trace.nested():
        disc = _discover(author, dnsq, method, TraceBuilder())
        trace.extend(disc.trace)
    base.update(from_domain=author, discovery=disc,
                organizational_domain=disc.organizational_domain)
    if disc.verdict == "temperror":
        return DMARCResult(verdict="temperror", summary=f"policy discovery for {author} met a "
                           f"DNS error: DMARC can neither pass nor fail ({RFC_DNS_ERRORS})",
                           trace=trace.freeze(), **base)
    record = disc.record
    if record is None:
        return DMARCResult(verdict="none", summary=f"no DMARC record applies to {author}: the "
                           f"DMARC mechanism does not apply ({RFC_DISCOVERY})",
                           trace=trace.freeze(), **base)
    base.update(record=record, record_domain=disc.record_domain, testing=record.testing)
    if not record.usable:
        trace.add("the record's policy is invalid and it has no valid rua: no DMARC "
                  "processing", kind="error", rfc=RFC_DISCOVERY)
        return DMARCResult(verdict="permerror", summary=f"the DMARC record at "
                           f"_dmarc.{disc.record_domain} is not valid, so no DMARC "
                           f"processing is applied ({RFC_DISCOVERY})", trace=trace.freeze(),
                           **base)
    # which policy tag applies (section 4.10.1)
    tag, exists = "p", None
    if disc.record_domain != author and _is_subdomain(author, disc.record_domain or ""):
        exists = _domain_exists(dnsq, author, trace)
        if exists is None:
            return DMARCResult(verdict="temperror", summary=f"a DNS error while checking "
                               f"whether {author} exists ({RFC_DNS_ERRORS})",
                               trace=trace.freeze(), **base)
        if method == "treewalk" and not exists and record.np is not None:
            tag = "np"
        elif record.sp is not None:
            tag = "sp"
    requested = {"p": record.p, "sp": record.sp, "np": record.np}[tag] or "none"
    trace.add(f"the policy that applies: {tag}={requested}"
              + ("" if tag == "p" and disc.record_domain == author else
                 f" ({author} is a {'non-existent ' if exists is False else ''}subdomain of "
                 f"{disc.record_domain})"), kind="decision", rfc=RFC_DISCOVERY)
    base.update(policy=tag, requested=requested, author_domain_exists=exists)
    # alignment (sections 4.4 and 4.10.2)
    orgs = _OrgDomains(dnsq, method, trace)
    if disc.organizational_domain:
        orgs.known[author] = disc.organizational_domain
    author_org = disc.organizational_domain or author
    alignments: list[Alignment] = []
    trace.add("identifier alignment", rfc=RFC_ALIGNMENT)
    with trace.nested():
        if spf is not None and spf.identity == "mailfrom":
            alignments.append(_align("spf", spf.domain, spf.verdict, author, author_org,
                                     record.mode("spf"), orgs))
        elif spf is not None:
            trace.add("the SPF result is for the HELO identity: DMARC uses only the MAIL FROM "
                      "identity", kind="info", rfc=f"{RFC} section 4.4.2")
        for sig in (dkim.signatures if dkim is not None else ()):
            if sig.domain:
                alignments.append(_align("dkim", sig.domain, sig.verdict, author, author_org,
                                         record.mode("dkim"), orgs, sig.selector))
        for a in alignments:
            trace.add(f"{a.mechanism} {a.domain} ({a.result}, {a.mode}): "
                      f"{'aligned' if a.aligned else 'not aligned'}, {a.reason}",
                      kind="ok" if a.aligned else "info")
    spf_ok = any(a.aligned for a in alignments if a.mechanism == "spf")
    dkim_ok = any(a.aligned for a in alignments if a.mechanism == "dkim")
    base.update(spf_aligned=spf_ok, dkim_aligned=dkim_ok, alignments=tuple(alignments))
    if spf_ok or dkim_ok:
        which = " and ".join(n for n, ok in (("SPF", spf_ok), ("DKIM", dkim_ok)) if ok)
        trace.add(f"pass: {which} aligned with {author}", kind="ok", rfc=RFC_PASS_FAIL)
        return DMARCResult(verdict="pass", summary=f"{which} passed for a domain aligned with "
                           f"{author}", trace=trace.freeze(), disposition="none", **base)
    if any(a.result == "pass" and a.aligned is False and "DNS error" in a.reason
           for a in alignments):
        return DMARCResult(verdict="temperror", summary="a DNS error stopped an alignment "
                           f"check ({RFC_DNS_ERRORS})", trace=trace.freeze(), **base)
    disposition = requested
    if record.testing and requested != "none":
        disposition = _TESTING[requested]
        trace.add(f"t=y testing mode: {requested} is applied one level lower, as "
                  f"{disposition}", kind="decision", rfc=f"{RFC_FORMAT}, tag t")
    trace.add(f"fail: no aligned identifier; the policy asks for {disposition}",
              kind="error", rfc=RFC_PASS_FAIL)
    summary = (f"no SPF or DKIM identifier that passed is aligned with {author}; "
               f"{tag}={requested}" + (" in testing mode" if record.testing else "")
               + f" asks for {disposition}")
    return DMARCResult(verdict="fail", summary=summary, trace=trace.freeze(),
                       disposition=disposition, **base)

