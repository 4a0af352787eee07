"""SPF: may this client send mail for this domain? (RFC 7208)

:func:`check_host` is the function RFC 7208 section 4 defines: given the client's IP
address, a domain and the sender, it finds the domain's SPF record, reads it whole
(a syntax error anywhere is a permerror, section 4.6), evaluates its terms left to
right, follows ``include`` and ``redirect``, keeps the limits of section 4.6.4 (10
DNS-querying terms, 10 MX or PTR names each, 2 void lookups), and answers with one of
seven results: pass, fail, softfail, neutral, none, permerror, temperror. A fail carries
the domain's explanation (``exp=``, section 6.2) or the receiver's default one.

:func:`spf_verdict` does what a receiving mail server does with it: check the MAIL FROM
identity, or ``postmaster@`` the HELO name when the reverse-path is empty (section 2.4),
and optionally the HELO identity first (section 2.3).

Every step is in the result's trace: each term in order, each DNS query and its answer,
the counters as they rise, and why evaluation stopped; includes and redirects are
indented under the term that led to them. :func:`parse_record` reads a record without
evaluating it, for looking at its anatomy.

The resolver follows dnspython's ``Resolver.resolve(qname, rdtype)`` contract: the lab's
resolver, a real one, or a :class:`~labsupport.dns.zone.ZoneSet`.

Introduced in ``notebooks/04-spf.ipynb``.
"""

from __future__ import annotations

import html
import ipaddress
import re
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, NamedTuple

import dns.exception
import dns.name
import dns.resolver

from ..core.results import Result, Step, html_table
from .spf_macros import (
    MacroContext,
    MacroString,
    MacroSyntaxError,
    expand,
    parse_macro_string,
    truncate_domain,
)
from .spf_record import (  # noqa: F401 - public names re-exported
    DEFAULT_EXPLANATION,
    MAX_DNS_TERMS,
    MAX_MX_NAMES,
    MAX_PTR_NAMES,
    MAX_VOID_LOOKUPS,
    RESULT_COLOURS,
    RESULT_MEANINGS,
    RESULTS,
    RFC_ASCII,
    RFC_CHECK_HOST,
    RFC_DEFAULT,
    RFC_EVALUATION,
    RFC_EXP,
    RFC_HELO,
    RFC_IDENTITIES,
    RFC_INITIAL,
    RFC_LIMITS,
    RFC_LOOKUP,
    RFC_MACROS,
    RFC_MECHANISMS,
    RFC_REDIRECT,
    RFC_SELECT,
    ResolverLike,
    SPFArgumentError,
    SPFRecord,
    SPFSyntaxError,
    Term,
    is_spf_record,
    parse_record,
)

# -- the result -----------------------------------------------------------------------


class SPFNode(NamedTuple):
    """One record evaluated: the top domain, or one reached by include or redirect."""

    number: int
    parent: int | None
    via: str
    term: str | None
    domain: str
    record: str | None
    result: str


class TermOutcome(NamedTuple):
    """What became of one term of one record: matched, did not match, not reached..."""

    node: int
    depth: int
    domain: str
    term: str
    outcome: str


@dataclass(frozen=True, kw_only=True)
class SPFResult(Result):
    """The outcome of check_host() (RFC 7208 section 4) with its full trace.

    ``verdict`` (also ``result``) is one of :data:`RESULTS`. ``explanation`` is set for
    a fail: the domain's ``exp=`` text or the receiver's default. ``records`` lists
    every (domain, record) evaluated, in order; ``mechanism`` is the term that decided,
    in the record of ``mechanism_domain``. ``dns_terms``, ``void_lookups`` and
    ``dns_queries`` are the counters at the end. ``chain`` is the include/redirect tree
    and ``terms`` the outcome of every term. ``identity`` says which identity was checked
    (``"mailfrom"`` or ``"helo"``); ``helo_check`` holds a HELO check made first.
    """

    ip: str
    domain: str
    sender: str
    helo: str | None = None
    identity: str = "mailfrom"
    explanation: str | None = None
    records: tuple[tuple[str, str], ...] = ()
    mechanism: str | None = None
    mechanism_domain: str | None = None
    dns_terms: int = 0
    void_lookups: int = 0
    dns_queries: int = 0
    chain: tuple[SPFNode, ...] = ()
    terms: tuple[TermOutcome, ...] = field(default=(), repr=False)
    helo_check: SPFResult | None = field(default=None, repr=False)

    @property
    def result(self) -> str:
        """The SPF result, one of :data:`RESULTS`."""
        return self.verdict

    @property
    def meaning(self) -> str:
        return RESULT_MEANINGS.get(self.verdict, "")

    def title(self) -> str:
        who = "HELO" if self.identity == "helo" else "MAIL FROM"
        return f"SPF {self.verdict} for {self.domain} ({who}) from {self.ip}"

    def _facts(self) -> list[tuple[str, str]]:
        facts = [("result", f"{self.verdict}: {self.meaning}")]
        if self.explanation is not None:
            facts.append(("explanation", self.explanation))
        if self.mechanism:
            facts.append(("decided by", f"{self.mechanism} (record of {self.mechanism_domain})"))
        for domain, record in self.records:
            facts.append(("record", f"{domain}: {record}"))
        facts.append(("counters", f"{self.dns_terms} of {MAX_DNS_TERMS} DNS-querying terms, "
                                  f"{self.void_lookups} of {MAX_VOID_LOOKUPS} void lookups, "
                                  f"{self.dns_queries} DNS queries"))
        if self.helo_check is not None:
            facts.append(("HELO check", f"{self.helo_check.verdict} for "
                                        f"{self.helo_check.domain}"))
        return facts

    def text(self) -> str:
        lines = [self.title(), f"  {self.summary}"]
        lines.extend(f"  {name}: {value}" for name, value in self._facts()[1:])
        if self.trace:
            lines.append("Trace:")
            lines.extend("  " + step.as_text().replace("\n", "\n  ") for step in self.trace)
        return "\n".join(lines)

    def term_rows(self) -> list[list[object]]:
        return [[("  " * t.depth) + t.domain, t.term, t.outcome] for t in self.terms]

    def _repr_html_(self) -> str:
        colour = RESULT_COLOURS.get(self.verdict, "#888")
        facts = "".join(f"<tr><th style='text-align:left;padding-right:1em'>"
                        f"{html.escape(k)}</th><td style='text-align:left'>{html.escape(v)}"
                        "</td></tr>" for k, v in self._facts())
        table = html_table(["record of", "term", "outcome"], self.term_rows()) \
            if self.terms else ""
        steps = "".join(step.as_html() for step in self.trace)
        return (
            f'<div style="border-left:4px solid {colour};padding-left:8px">'
            f"<b>{html.escape(self.title())}</b><br>{html.escape(self.summary)}"
            f"<table>{facts}</table>{table}"
            f'<details><summary>trace ({len(self.trace)} steps)</summary>'
            f'<div style="margin-top:4px">{steps}</div></details></div>'
        )


# -- evaluation ---------------------------------------------------------------------------


class _Stop(Exception):
    """permerror or temperror: evaluation ends at once, wherever it is."""

    def __init__(self, result: str, reason: str, rfc: str | None = None) -> None:
        super().__init__(reason)
        self.result = result
        self.reason = reason
        self.rfc = rfc


#: Steps are made without the dataclass __init__ (half the cost, and an evaluation makes
#: a few dozen); every kind used here is one Step accepts. A slotted Step has no
#: __dict__, and then its constructor is used.
_FAST_STEPS = not hasattr(Step, "__slots__")
_new = object.__new__


class _Trace:
    """The steps of one evaluation; ``with trace:`` indents (cheaper than TraceBuilder's
    generator-based context manager, which matters at a few thousand checks a second)."""

    __slots__ = ("steps", "depth", "on")

    def __init__(self, on: bool) -> None:
        self.steps: list[Step] = []
        self.depth = 0
        self.on = on

    def add(self, text: str, kind: str = "info", rfc: str | None = None,
            detail: str | None = None) -> None:
        if self.on:
            if _FAST_STEPS:
                step = _new(Step)
                step.__dict__.update(text=text, kind=kind, depth=self.depth, rfc=rfc,
                                     detail=detail)
            else:
                step = Step(text, kind, self.depth, rfc, detail)
            self.steps.append(step)

    def __enter__(self) -> None:
        self.depth += 1

    def __exit__(self, *exc: object) -> None:
        self.depth -= 1


@dataclass(slots=True)
class _Node:
    parent: int | None
    via: str
    term: str | None
    domain: str
    record: str | None = None
    result: str = "not finished"


@dataclass(slots=True)
class _Outcome:
    result: str
    reason: str
    explanation: str | None = None
    term: str | None = None
    term_domain: str | None = None


def _octets(text: str) -> bytes:
    return text.encode("utf-8", "replace")


def _name_problem(name: str) -> str | None:
    """Why ``name`` (no trailing dot) cannot be asked of DNS, or None."""
    if not name:
        return "is empty"
    ascii_only = name.isascii()
    if len(name) > 253 or (not ascii_only and len(_octets(name)) > 253):
        return "is longer than 253 octets"
    for label in name.split("."):
        if not label:
            return "has an empty label"
        if len(label) > 63 or (not ascii_only and len(_octets(label)) > 63):
            return "has a label longer than 63 octets"
    return None


def domain_problem(domain: str) -> str | None:
    """Why ``domain`` is not a domain check_host() can look up (RFC 7208 section 4.3:
    a malformed name, or not a multi-label one, gives none), or None."""
    name = domain[:-1] if domain.endswith(".") else domain
    if name.startswith("["):
        return "is an address literal, not a domain name"
    if not name.isascii():
        return "is not an ASCII domain name (write an IDN as its xn-- form)"
    problem = _name_problem(name)
    if problem:
        return problem
    if "." not in name:
        return "is not a multi-label domain name"
    return None


_SAFE_NAME = re.compile(r"[!-\[\]-~]+\Z")  # visible ASCII except the backslash


def _qname(name: str) -> str:
    """The absolute name to ask for, in text dnspython reads back exactly: escapes for
    backslashes, spaces and non-ASCII octets, which the ``from_text`` path would read."""
    if _SAFE_NAME.match(name) and name != "@":
        return name + "."
    try:
        return dns.name.Name([*(_octets(label) for label in name.split(".")), b""]).to_text()
    except dns.exception.DNSException:
        return name + "."  # the lookup itself will then fail, as a DNS error


def _name_text(name: dns.name.Name) -> str:
    """A name from an answer as text without the final dot ("." for the root); plain
    names the quick way, others through dnspython's escaping."""
    labels = name.labels
    if labels == (b"",):
        return "."
    if labels and labels[-1] == b"":
        labels = labels[:-1]
    try:
        text = b".".join(labels).decode("ascii")
    except UnicodeDecodeError:
        return name.to_text(omit_final_dot=True)
    if _SAFE_NAME.match(text):
        return text
    return name.to_text(omit_final_dot=True)


def _name_query(name: dns.name.Name, shown: str) -> str:
    """The text to ask for ``name`` (whose :func:`_name_text` is ``shown``)."""
    if _SAFE_NAME.match(shown) and name.is_absolute():
        return shown + "."
    return name.to_text()


def _read_addresses(answer: Any) -> list[str]:
    return [rdata.address for rdata in answer]


def _read_mx(answer: Any) -> list[tuple[int, dns.name.Name]]:
    return [(int(rdata.preference), rdata.exchange) for rdata in answer]


def _read_ptr(answer: Any) -> list[dns.name.Name]:
    return [rdata.target for rdata in answer]


def _read_txt(answer: Any) -> list[bytes]:
    return [b"".join(rdata.strings) for rdata in answer]


_READERS: dict[str, Callable[[Any], list[Any]]] = {
    "A": _read_addresses, "AAAA": _read_addresses, "MX": _read_mx, "PTR": _read_ptr,
    "TXT": _read_txt,
}


def _show_txt(record: bytes) -> str:
    return '"' + record.decode("ascii", "backslashreplace") + '"'


class _Evaluation:
    """The state of one check_host() call, shared by its includes and redirects."""

    __slots__ = ("ip", "version", "bits", "ip_int", "ip_text", "dotted", "family",
                 "address_type", "resolver", "sender", "local", "sender_domain", "helo",
                 "receiver", "timestamp", "default_explanation", "max_void", "trace",
                 "dns_terms", "void_lookups", "queries", "records", "nodes", "rows", "stack",
                 "_validated", "_context", "_explaining")

    def __init__(self, *, client: _Client, sender: str, local: str, sender_domain: str,
                 helo: str, resolver: ResolverLike, receiver: str, timestamp: int | None,
                 default_explanation: str, max_void: int, trace: bool) -> None:
        self.ip = client.address
        self.version = version = client.version
        self.bits = 32 if version == 4 else 128
        self.ip_int = client.value
        self.ip_text = client.text
        self.dotted = client.dotted
        self.family = socket.AF_INET if version == 4 else socket.AF_INET6
        self.address_type = "A" if version == 4 else "AAAA"
        self.resolver = resolver
        self.sender = sender
        self.local = local
        self.sender_domain = sender_domain
        self.helo = helo
        self.receiver = receiver
        self.timestamp = timestamp
        self.default_explanation = default_explanation
        self.max_void = max_void
        self.trace = _Trace(trace)
        self.dns_terms = 0
        self.void_lookups = 0
        self.queries = 0
        self.records: list[tuple[str, str]] = []
        self.nodes: list[_Node] = []
        self.rows: list[TermOutcome] = []
        self.stack: list[str] = []
        self._validated: list[str] | None = None
        self._context: MacroContext | None = None
        self._explaining = False

    def context(self, domain: str) -> MacroContext:
        """The macro values (section 7.2) with ``domain`` as %{d}; made when first needed."""
        context = self._context
        if context is None:
            context = self._context = MacroContext(
                sender=self.sender, local=self.local, sender_domain=self.sender_domain,
                domain=domain, ip_dotted=self.dotted, ip_readable=self.ip_text,
                ip_version=self.version, helo=self.helo, receiver=self.receiver,
                timestamp=int(time.time()) if self.timestamp is None else self.timestamp,
                validated_name=self._validated_name,
            )
        else:
            context.domain = domain
        return context

    # -- DNS ------------------------------------------------------------------------

    def lookup(self, qname: str, shown: str, rdtype: str) -> tuple[str, list[Any], str]:
        """One DNS question, traced as one step: the question and its answer. Returns
        (status, values, why) with status "ok", "nxdomain", "nodata" or "error"."""
        self.queries += 1
        trace = self.trace
        try:
            answer = self.resolver.resolve(qname, rdtype)
        except dns.resolver.NXDOMAIN:
            trace.add(f"DNS {shown} {rdtype}? {shown} does not exist (NXDOMAIN)", "query")
            return "nxdomain", [], ""
        except dns.resolver.NoAnswer:
            trace.add(f"DNS {shown} {rdtype}? no {rdtype} record (NODATA)", "query")
            return "nodata", [], ""
        except dns.exception.Timeout:
            why = "the query timed out"
        except dns.resolver.NoNameservers:
            why = "no server could answer (SERVFAIL or REFUSED)"
        except dns.exception.DNSException as exc:
            why = f"the lookup failed: {exc or type(exc).__name__}"
        except Exception as exc:  # noqa: BLE001 - any resolver failure is a DNS error
            why = f"the resolver failed: {type(exc).__name__}: {exc}"
        else:
            try:
                values = _READERS[rdtype](answer)
            except Exception as exc:  # noqa: BLE001 - a malformed answer is a DNS error
                why = f"the answer could not be read: {type(exc).__name__}: {exc}"
            else:
                if not values:
                    trace.add(f"DNS {shown} {rdtype}? no {rdtype} record (empty answer)",
                              "query")
                    return "nodata", [], ""
                if trace.on:
                    self._trace_answer(shown, rdtype, values)
                return "ok", values, ""
        trace.add(f"DNS {shown} {rdtype}? error: {why}", "error")
        return "error", [], why

    def _trace_answer(self, shown: str, rdtype: str, values: list[Any]) -> None:
        question = f"DNS {shown} {rdtype}? "
        if rdtype == "TXT":
            count = len(values)
            self.trace.add(f"{question}{count} TXT record{'s' if count != 1 else ''}",
                           "query", detail="\n".join(_show_txt(v) for v in values))
        elif rdtype == "MX":
            self.trace.add(question + ", ".join(f"{p} {_name_text(n)}" for p, n in values),
                           "query")
        elif rdtype == "PTR":
            self.trace.add(question + ", ".join(_name_text(n) for n in values), "query")
        else:
            self.trace.add(question + ", ".join(values), "query")

    def count_void(self, shown: str) -> None:
        """Count a lookup that found nothing; over the limit is a permerror (4.6.4).
        The explanation's lookups are never counted (it is fetched after the result)."""
        if self._explaining:
            return
        self.void_lookups += 1
        self.trace.add(f"void lookup {self.void_lookups} of {self.max_void} allowed",
                       kind="warning" if self.void_lookups > self.max_void else "info",
                       rfc=RFC_LIMITS)
        if self.void_lookups > self.max_void:
            raise _Stop("permerror",
                        f"Too many void lookups: the lookup of {shown} is number "
                        f"{self.void_lookups} that found nothing, and at most "
                        f"{self.max_void} are allowed ({RFC_LIMITS}).", RFC_LIMITS)

    def count_dns_term(self, term: Term) -> int:
        """Count one term that queries DNS; over the limit is a permerror (4.6.4)."""
        if self.dns_terms >= MAX_DNS_TERMS:
            self.trace.add(f"{term.text!r} would be DNS-querying term number "
                           f"{self.dns_terms + 1}: over the limit of {MAX_DNS_TERMS}",
                           kind="error", rfc=RFC_LIMITS)
            raise _Stop("permerror",
                        f"Too many DNS lookups: {term.text!r} would be DNS-querying term "
                        f"number {self.dns_terms + 1}, and at most {MAX_DNS_TERMS} are "
                        f"allowed per check, includes and redirects counted ({RFC_LIMITS}).",
                        RFC_LIMITS)
        self.dns_terms += 1
        return self.dns_terms

    def address_in(self, addresses: list[str], prefix: int) -> str | None:
        """The first address whose /prefix network holds the client, or None."""
        shift = self.bits - prefix
        for text in addresses:
            try:
                value = int.from_bytes(socket.inet_pton(self.family, text), "big")
            except (OSError, ValueError, TypeError):
                continue
            if (value ^ self.ip_int) >> shift == 0:
                return text
        return None

    # -- check_host() ------------------------------------------------------------------

    def check(self, domain: str, via: str, via_term: str | None, in_include: bool,
              parent: int | None) -> _Outcome:
        index = len(self.nodes)
        node = _Node(parent, via, via_term, domain)
        self.nodes.append(node)
        self.stack.append(domain.rstrip(".").lower())
        try:
            outcome = self._check(domain, index, in_include)
        except _Stop as stop:
            node.result = stop.result
            raise
        finally:
            self.stack.pop()
        node.result = outcome.result
        return outcome

    def _check(self, domain: str, index: int, in_include: bool) -> _Outcome:
        trace = self.trace
        problem = domain_problem(domain)
        if problem:
            trace.add(f"{domain!r} {problem}: check_host() returns none", kind="decision",
                      rfc=RFC_INITIAL)
            return _Outcome("none", f"{domain!r} {problem}, so it has no SPF record "
                                    f"({RFC_INITIAL}).")
        name = domain[:-1] if domain.endswith(".") else domain
        text = self.fetch_record(name)
        if text is None:
            return _Outcome("none", f"{name} publishes no SPF record ({RFC_SELECT}).")
        self.nodes[index].record = text
        self.records.append((name, text))
        try:
            record = parse_record(text)
        except SPFSyntaxError as exc:
            trace.add(f"the SPF record of {name}: {text}", kind="decision", rfc=RFC_SELECT)
            self.rows.append(TermOutcome(index, trace.depth, name, text, "syntax error"))
            trace.add(f"syntax error: {exc}", kind="error", rfc=exc.rfc or RFC_EVALUATION)
            raise _Stop("permerror", f"The SPF record of {name} has a syntax error: {exc}. "
                                     "A record is read whole before any term is evaluated "
                                     f"({RFC_EVALUATION}).", RFC_EVALUATION) from None
        if trace.on:
            count = len(record.terms)
            trace.add(f"the SPF record of {name}, read whole, {count} "
                      f"term{'s' if count != 1 else ''} and no syntax error: {text}",
                      kind="decision", rfc=RFC_EVALUATION)
        return self.evaluate(record, name, index, in_include)

    def fetch_record(self, name: str) -> str | None:
        """The domain's one SPF record (sections 4.4 and 4.5), or None."""
        trace = self.trace
        status, values, why = self.lookup(_qname(name), name, "TXT")
        if status == "error":
            raise _Stop("temperror", f"The TXT lookup for {name} failed ({why}), so its SPF "
                                     f"record cannot be read now ({RFC_LOOKUP}).", RFC_LOOKUP)
        if status != "ok":
            trace.add(f"no TXT records at {name}: no SPF record", kind="decision",
                      rfc=RFC_SELECT)
            return None
        spf = [v for v in values if is_spf_record(v)]
        if not spf:
            trace.add(f"none of the {len(values)} TXT records starts with 'v=spf1': "
                      "no SPF record", kind="decision", rfc=RFC_SELECT)
            return None
        if len(spf) > 1:
            trace.add(f"{len(spf)} records start with 'v=spf1'", kind="error", rfc=RFC_SELECT)
            raise _Stop("permerror", f"{name} publishes {len(spf)} SPF records; a domain "
                                     f"must publish exactly one ({RFC_SELECT}).", RFC_SELECT)
        try:
            text: str = spf[0].decode("ascii")
        except UnicodeDecodeError:
            trace.add("the SPF record holds non-ASCII characters", kind="error", rfc=RFC_ASCII)
            raise _Stop("permerror", f"The SPF record of {name} holds characters outside "
                                     f"US-ASCII ({RFC_ASCII}).", RFC_ASCII) from None
        return text

    def evaluate(self, record: SPFRecord, domain: str, node: int,
                 in_include: bool) -> _Outcome:
        """Evaluate the mechanisms left to right, then redirect (sections 4.6.2, 4.7)."""
        trace = self.trace
        depth = trace.depth
        rows = self.rows
        mechanisms = record.mechanisms
        if record.redirect and any(t.name == "all" for t in mechanisms):
            trace.add("the record has both 'all' and redirect=: redirect is never used",
                      kind="warning", rfc=RFC_REDIRECT)
        for position, term in enumerate(mechanisms):
            if term.dns:
                try:
                    number = self.count_dns_term(term)
                except _Stop as stop:
                    rows.append(TermOutcome(node, depth, domain, term.text, stop.result))
                    self._rest(mechanisms[position + 1:], record, node, depth, domain)
                    raise
                if trace.on:
                    trace.add(f"term {term.text!r} (DNS-querying term {number} of "
                              f"{MAX_DNS_TERMS}): {term.meaning}", rfc=term.rfc)
            elif trace.on:
                trace.add(f"term {term.text!r}: {term.meaning}", rfc=term.rfc)
            trace.depth += 1
            try:
                matched = self.mechanism(term, domain, node)
            except _Stop as stop:
                trace.depth -= 1
                rows.append(TermOutcome(node, depth, domain, term.text, stop.result))
                self._rest(mechanisms[position + 1:], record, node, depth, domain)
                raise
            trace.depth -= 1
            if matched:
                rows.append(TermOutcome(node, depth, domain, term.text,
                                        f"match: {term.result}"))
                self._rest(mechanisms[position + 1:], record, node, depth, domain)
                result = term.result
                trace.add(f"{term.text!r} matches: the result is {result}", kind="decision",
                          rfc="RFC 7208 section 4.6.2")
                explanation = None
                if result == "fail":
                    if in_include:
                        trace.add("inside an include, a fail only means 'no match': no "
                                  "explanation is needed", rfc=RFC_EXP)
                    else:
                        explanation = self.explain(record, domain)
                return _Outcome(result, f"{term.text!r} matched in the record of {domain}.",
                                explanation, term.text, domain)
            rows.append(TermOutcome(node, depth, domain, term.text, "no match"))
        for term in record.terms:
            if term.is_modifier and term.name != "redirect":
                rows.append(TermOutcome(node, depth, domain, term.text,
                                        "used only for a fail" if term.name == "exp"
                                        else "ignored (unknown modifier)"))
        if record.redirect is not None:
            return self.redirect(record.redirect, domain, node, in_include)
        trace.add("no mechanism matched and there is no redirect=: the result is neutral",
                  kind="decision", rfc=RFC_DEFAULT)
        return _Outcome("neutral", f"No mechanism in the record of {domain} matched, and "
                                   f"it has no redirect= ({RFC_DEFAULT}).")

    def _rest(self, rest: tuple[Term, ...], record: SPFRecord, node: int, depth: int,
              domain: str) -> None:
        for term in rest:
            self.rows.append(TermOutcome(node, depth, domain, term.text, "not reached"))
        for term in record.terms:
            if term.is_modifier:
                outcome = {"redirect": "not used (a mechanism matched first)",
                           "exp": "used only for a fail"}.get(term.name,
                                                             "ignored (unknown modifier)")
                self.rows.append(TermOutcome(node, depth, domain, term.text, outcome))

    def target(self, spec: MacroString | None, domain: str) -> tuple[str, str | None]:
        """The domain a term names, macros expanded (section 7): (text, why it cannot
        be looked up or None)."""
        if spec is None:
            return domain, None
        if len(spec.tokens) == 1 and isinstance(spec.tokens[0], str):
            name = truncate_domain(spec.tokens[0])
        else:
            if "p" in spec.letters:
                self.trace.add("%{p} asks for the client's validated host name: PTR and "
                               "address lookups, slow and discouraged", kind="warning",
                               rfc="RFC 7208 section 7.3")
            expanded = expand(spec, self.context(domain))
            name = truncate_domain(expanded)
            if self.trace.on:
                shortened = " (shortened from the left to 253 characters)" \
                    if len(expanded.rstrip(".")) != len(name) else ""
                self.trace.add(f"macros: {spec.text!r} expands to {name!r}{shortened}",
                               rfc=RFC_MACROS)
        return name, _name_problem(name)

    def mechanism(self, term: Term, domain: str, node: int) -> bool:
        name = term.name
        trace = self.trace
        if name == "all":
            return True
        if name == "ip4" or name == "ip6":
            wanted = 4 if name == "ip4" else 6
            if self.version != wanted:
                trace.add(f"the client is IPv{self.version}: {name} cannot match",
                          rfc=RFC_MECHANISMS)
                return False
            assert term.network is not None and term.prefix is not None
            inside = (term.network ^ self.ip_int) >> (self.bits - term.prefix) == 0
            trace.add(f"{self.ip_text} is {'in' if inside else 'not in'} "
                      f"{term._network_text()}", rfc=term.rfc)
            return inside
        if name == "include":
            return self.include(term, domain, node)
        target, problem = self.target(term.target, domain)
        if problem:
            trace.add(f"{target!r} {problem}: it cannot exist in DNS, so {name} does not "
                      "match (RFC 7208 section 4.8 leaves this case open)", kind="warning",
                      rfc="RFC 7208 section 4.8")
            return False
        if name == "a":
            prefix = (term.cidr4 if self.version == 4 else term.cidr6)
            return self.addresses_match(target, self.bits if prefix is None else prefix)
        if name == "mx":
            return self.mx(term, target)
        if name == "ptr":
            return self.ptr(target)
        # exists: an A query, whatever the client's address family (section 5.7)
        status, _values, why = self.lookup(_qname(target), target, "A")
        if status == "error":
            raise _Stop("temperror", f"The A lookup for {target} (exists) failed ({why}) "
                                     f"({RFC_MECHANISMS}).", RFC_MECHANISMS)
        if status != "ok":
            self.count_void(target)
            return False
        return True

    def addresses_match(self, target: str, prefix: int, qname: str | None = None) -> bool:
        rdtype = self.address_type
        status, values, why = self.lookup(qname or _qname(target), target, rdtype)
        if status == "error":
            raise _Stop("temperror", f"The {rdtype} lookup for {target} failed ({why}) "
                                     f"({RFC_MECHANISMS}).", RFC_MECHANISMS)
        if status != "ok":
            self.count_void(target)
            return False
        found = self.address_in(values, prefix)
        if found is not None:
            self.trace.add(f"{self.ip_text} is in {found}/{prefix}", kind="ok")
            return True
        self.trace.add(f"{self.ip_text} is not in any of these /{prefix} networks")
        return False

    def mx(self, term: Term, target: str) -> bool:
        trace = self.trace
        status, values, why = self.lookup(_qname(target), target, "MX")
        if status == "error":
            raise _Stop("temperror", f"The MX lookup for {target} failed ({why}) "
                                     f"({RFC_MECHANISMS}).", RFC_MECHANISMS)
        if status != "ok":
            self.count_void(target)
            return False
        if len(values) > MAX_MX_NAMES:
            trace.add(f"{len(values)} MX records: more than {MAX_MX_NAMES}", kind="error",
                      rfc=RFC_LIMITS)
            raise _Stop("permerror", f"{target} has {len(values)} MX records; the mx "
                                     f"mechanism may look up at most {MAX_MX_NAMES} "
                                     f"({RFC_LIMITS}).", RFC_LIMITS)
        prefix = term.cidr4 if self.version == 4 else term.cidr6
        prefix = self.bits if prefix is None else prefix
        hosts = sorted((preference, _name_text(exchange), exchange)
                       for preference, exchange in values)
        for _preference, shown, exchange in hosts:
            if shown == ".":
                trace.add("a null MX ('.'): no host to look up", rfc="RFC 7505")
                continue
            trace.add(f"mail server {shown}")
            with trace:
                if self.addresses_match(shown, prefix, _name_query(exchange, shown)):
                    return True
        return False

    def ptr(self, target: str) -> bool:
        trace = self.trace
        suffix = target.lower()
        reverse = self.ip.reverse_pointer
        status, names, why = self.lookup(reverse + ".", reverse, "PTR")
        if status == "error":
            trace.add("a DNS error in the PTR lookup: ptr does not match",
                      rfc="RFC 7208 section 5.5")
            return False
        if status != "ok":
            self.count_void(reverse)
            return False
        if len(names) > MAX_PTR_NAMES:
            trace.add(f"{len(names)} PTR names: only the first {MAX_PTR_NAMES} are checked",
                      kind="warning", rfc=RFC_LIMITS)
        for name in names[:MAX_PTR_NAMES]:
            shown = _name_text(name)
            low = shown.lower()
            if low != suffix and not low.endswith("." + suffix):
                trace.add(f"{shown} is not {target} or below it: not looked up")
                continue
            trace.add(f"{shown} is below {target}: is it validated (does it point back)?",
                      rfc="RFC 7208 section 5.5")
            with trace:
                if self.validates(name, shown):
                    trace.add(f"{shown} is a validated name of {self.ip_text}", kind="ok")
                    return True
        return False

    def validates(self, name: dns.name.Name, shown: str) -> bool:
        """Does ``name`` have the client's address (section 5.5)? A DNS error skips the
        name; an empty answer is a void lookup, as for any other term's query."""
        status, values, _why = self.lookup(_name_query(name, shown), shown,
                                           self.address_type)
        if status in ("nxdomain", "nodata"):
            self.count_void(shown)
        return status == "ok" and self.address_in(values, self.bits) is not None

    def _validated_name(self, domain: str) -> str:
        """The p macro: a validated name of the client, preferring ``domain`` or a name
        below it; "unknown" when there is none or DNS fails (section 7.3)."""
        if self._validated is None:
            validated: list[str] = []
            self.trace.add("the %{p} macro: find the client's validated names",
                           rfc="RFC 7208 section 7.3")
            with self.trace:
                reverse = self.ip.reverse_pointer
                status, names, _why = self.lookup(reverse + ".", reverse, "PTR")
                if status in ("nxdomain", "nodata"):
                    self.count_void(reverse)
                for name in names[:MAX_PTR_NAMES]:
                    shown = _name_text(name)
                    if self.validates(name, shown):
                        validated.append(shown)
            self._validated = validated
        names = self._validated
        if not names:
            return "unknown"
        wanted = domain.lower().rstrip(".")
        for name in names:
            if name.lower() == wanted:
                return name
        for name in names:
            if name.lower().endswith("." + wanted):
                return name
        return names[0]

    def include(self, term: Term, domain: str, node: int) -> bool:
        """include (section 5.2): pass matches; fail, softfail and neutral do not;
        temperror and permerror stop; none is a permerror."""
        trace = self.trace
        target, problem = self.target(term.target, domain)
        if problem:
            raise _Stop("permerror", f"{term.text!r} names {target!r}, which {problem}: "
                                     "check_host() on it gives none, and an include of none "
                                     "is a permerror (RFC 7208 section 5.2).",
                        "RFC 7208 section 5.2")
        self._loop(term, target)
        trace.add(f"check_host() for {target}, included", kind="decision",
                  rfc="RFC 7208 section 5.2")
        with trace:
            outcome = self.check(target, "include", term.text, True, node)
        result = outcome.result
        if result == "none":
            trace.add(f"{target} has no SPF record: an include of none is a permerror",
                      kind="error", rfc="RFC 7208 section 5.2")
            raise _Stop("permerror", f"{term.text!r}: {target} has no SPF record, and an "
                                     "include of a domain without one is a permerror "
                                     "(RFC 7208 section 5.2).", "RFC 7208 section 5.2")
        if result == "pass":
            trace.add(f"{target} gives pass: the include matches", rfc="RFC 7208 section 5.2")
            return True
        trace.add(f"{target} gives {result}: the include does not match",
                  rfc="RFC 7208 section 5.2")
        return False

    def _loop(self, term: Term, target: str) -> None:
        key = target.rstrip(".").lower()
        if key in self.stack:
            chain = " -> ".join([*self.stack[self.stack.index(key):], key])
            self.trace.add(f"loop: {chain}", kind="error", rfc=RFC_LIMITS)
            raise _Stop("permerror", f"{term.text!r} leads back to a record already being "
                                     f"evaluated ({chain}): a loop, which would run into "
                                     f"the limit of {MAX_DNS_TERMS} DNS-querying terms "
                                     f"({RFC_LIMITS}).", RFC_LIMITS)

    def redirect(self, term: Term, domain: str, node: int, in_include: bool) -> _Outcome:
        """redirect= (section 6.1): the result is the target's; none is a permerror."""
        trace = self.trace
        depth = trace.depth
        try:
            number = self.count_dns_term(term)
            trace.add(f"no mechanism matched: follow {term.text!r} (DNS-querying term "
                      f"{number} of {MAX_DNS_TERMS})", kind="decision", rfc=RFC_REDIRECT)
            target, problem = self.target(term.target, domain)
            if problem:
                raise _Stop("permerror", f"{term.text!r} names {target!r}, which {problem} "
                                         f"({RFC_REDIRECT}).", RFC_REDIRECT)
            self._loop(term, target)
            with trace:
                outcome = self.check(target, "redirect", term.text, in_include, node)
        except _Stop as stop:
            self.rows.append(TermOutcome(node, depth, domain, term.text, stop.result))
            raise
        self.rows.append(TermOutcome(node, depth, domain, term.text,
                                     f"followed: {outcome.result}"))
        if outcome.result == "none":
            trace.add(f"{target} has no SPF record: a redirect to none is a permerror",
                      kind="error", rfc=RFC_REDIRECT)
            raise _Stop("permerror", f"{term.text!r}: {target} has no SPF record, and a "
                                     f"redirect to a domain without one is a permerror "
                                     f"({RFC_REDIRECT}).", RFC_REDIRECT)
        trace.add(f"the result of {domain} is that of {target}: {outcome.result}",
                  kind="decision", rfc=RFC_REDIRECT)
        return outcome

    # -- the explanation (section 6.2) -------------------------------------------------

    def explain(self, record: SPFRecord, domain: str) -> str:
        self._explaining = True
        try:
            return self._explain(record, domain)
        finally:
            self._explaining = False

    def _explain(self, record: SPFRecord, domain: str) -> str:
        trace = self.trace
        if record.exp is None or record.exp.target is None:
            trace.add("no exp= modifier: the receiver's default explanation", rfc=RFC_EXP)
            return self.default(domain)
        trace.add(f"the result is fail: fetch the explanation named by {record.exp.text!r}",
                  rfc=RFC_EXP)
        with trace:
            target, problem = self.target(record.exp.target, domain)
            if problem:
                trace.add(f"{target!r} {problem}: use the default explanation",
                          kind="warning", rfc=RFC_EXP)
                return self.default(domain)
            status, values, _why = self.lookup(_qname(target), target, "TXT")
            if status != "ok" or len(values) != 1:
                if status == "error":
                    what = "a DNS error"
                elif values:
                    what = f"{len(values)} TXT records, not exactly one"
                else:
                    what = "no TXT record (not counted as a void lookup)"
                trace.add(f"{what}: use the default explanation", kind="warning",
                          rfc=RFC_EXP)
                return self.default(domain)
            try:
                spec = parse_macro_string(values[0].decode("ascii"), explanation=True)
            except (UnicodeDecodeError, MacroSyntaxError) as exc:
                why = "non-ASCII text" if isinstance(exc, UnicodeDecodeError) else str(exc)
                trace.add(f"the explanation has a syntax error ({why}): use the default",
                          kind="warning", rfc=RFC_EXP)
                return self.default(domain)
            text = expand(spec, self.context(domain))
            trace.add(f"explanation: {text}", kind="decision", rfc=RFC_EXP)
            return text

    def default(self, domain: str) -> str:
        try:
            spec = parse_macro_string(self.default_explanation, explanation=True)
        except MacroSyntaxError:
            return self.default_explanation
        tokens = spec.tokens
        if len(tokens) == 1 and isinstance(tokens[0], str):
            return tokens[0]
        return expand(spec, self.context(domain))


# -- the public functions -----------------------------------------------------------------


@lru_cache(maxsize=1024)
def _address_from_text(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    if "%" in text:  # a scoped IPv6 address names an interface, not a client
        raise ValueError(text)
    return ipaddress.ip_address(text)


class _Client(NamedTuple):
    """What evaluation needs to know about the client address, worked out once."""

    address: ipaddress.IPv4Address | ipaddress.IPv6Address
    version: int
    text: str
    value: int
    dotted: str


@lru_cache(maxsize=1024)
def _client(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> _Client:
    text = str(address)
    if address.version == 4:
        dotted = text
    else:
        dotted = ".".join(address.exploded.replace(":", "").upper())
    return _Client(address, address.version, text, int(address), dotted)


@lru_cache(maxsize=1024)
def _client_from_text(ip: str) -> _Client:
    return _client(_client_address(ip))


def _client_address(ip: object) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    """The client address; an IPv4-mapped IPv6 address is IPv4 (RFC 7208 section 5)."""
    if isinstance(ip, (ipaddress.IPv4Address, ipaddress.IPv6Address)):
        address: ipaddress.IPv4Address | ipaddress.IPv6Address = ip
    elif isinstance(ip, str):
        try:
            address = _address_from_text(ip.strip())
        except ValueError:
            raise SPFArgumentError(
                f"{ip!r} is not an IP address; give the client's address, such as "
                "'192.0.2.10' or '2001:db8::10'") from None
    else:
        raise SPFArgumentError(f"the client IP must be a string such as '192.0.2.10', "
                               f"not {type(ip).__name__}")
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _text_argument(value: object, what: str, *, optional: bool = False) -> str:
    if value is None and optional:
        return ""
    if not isinstance(value, str):
        raise SPFArgumentError(f"{what} must be a string, not {type(value).__name__}")
    return value


def _split_sender(sender: str, domain: str) -> tuple[str, str, str]:
    """(sender, local-part, domain) with "postmaster" for a missing local-part (4.3)."""
    local, at, sender_domain = sender.rpartition("@")
    if not at:
        local, sender_domain = "", sender or domain
    if not local:
        local = "postmaster"
    return f"{local}@{sender_domain}", local, sender_domain


def check_host(
    ip: str | ipaddress.IPv4Address | ipaddress.IPv6Address,
    domain: str,
    sender: str,
    *,
    helo: str | None = None,
    resolver: ResolverLike,
    receiver: str = "unknown",
    default_explanation: str = DEFAULT_EXPLANATION,
    timestamp: int | None = None,
    max_void_lookups: int = MAX_VOID_LOOKUPS,
    trace: bool = True,
) -> SPFResult:
    """Evaluate ``domain``'s SPF record for a client at ``ip`` (RFC 7208 section 4).

    ``sender`` is the identity checked (``local@domain``; a missing local-part is
    ``postmaster``), ``helo`` the HELO/EHLO name (for the ``%{h}`` macro), ``receiver``
    this host's name (``%{r}``, explanations only) and ``timestamp`` the time for
    ``%{t}``. ``default_explanation`` (a macro string) explains a fail when the domain
    gives no ``exp=``. ``trace=False`` skips the trace, for speed.

    Always returns an :class:`SPFResult`; a bad ``ip`` (not an address) or an argument
    of the wrong type raises :class:`SPFArgumentError`, a ``ValueError``.
    """
    return _check_host(ip, domain, sender, helo, resolver, receiver, default_explanation,
                       timestamp, max_void_lookups, trace)


def _check_host(ip: object, domain: object, sender: object, helo: object, resolver: Any,
                receiver: object, default_explanation: object, timestamp: int | None,
                max_void_lookups: int, trace: bool, identity: str = "mailfrom",
                note: tuple[str, str] | None = None) -> SPFResult:
    client = _client_from_text(ip) if type(ip) is str else _client(_client_address(ip))
    if type(domain) is not str:
        domain = _text_argument(domain, "the domain")
    if type(sender) is not str:
        sender = _text_argument(sender, "the sender")
    helo_text = helo if type(helo) is str else _text_argument(helo, "the HELO name",
                                                              optional=True)
    if type(receiver) is not str:
        receiver = _text_argument(receiver, "the receiver name")
    if type(default_explanation) is not str:
        default_explanation = _text_argument(default_explanation, "the default explanation")
    if not callable(getattr(resolver, "resolve", None)):
        raise SPFArgumentError("the resolver must have a resolve(qname, rdtype) method, like "
                               "dns.resolver.Resolver or labsupport.ZoneSet")
    full_sender, local, sender_domain = _split_sender(sender, domain)
    evaluation = _Evaluation(
        client=client, sender=full_sender, local=local, sender_domain=sender_domain,
        helo=helo_text or "unknown", resolver=resolver, receiver=receiver or "unknown",
        timestamp=None if timestamp is None else int(timestamp),
        default_explanation=default_explanation, max_void=max_void_lookups, trace=trace,
    )
    steps = evaluation.trace
    if note is not None and trace:
        steps.add(note[0], "info", note[1])
    if trace:
        steps.add(f"check_host(ip={client.text}, domain={domain}, sender={full_sender})",
                  kind="info", rfc=RFC_CHECK_HOST)
    explanation = term = term_domain = None
    try:
        with steps:
            outcome = evaluation.check(domain, "check_host", None, False, None)
        result, reason = outcome.result, outcome.reason
        explanation, term, term_domain = outcome.explanation, outcome.term, outcome.term_domain
    except _Stop as stop:
        result, reason = stop.result, stop.reason
        steps.add(f"stop: {result}", kind="error", rfc=stop.rfc)
    summary = _summary(result, reason, evaluation.ip_text, domain, term)
    if trace:
        steps.add(f"result: {result} ({RESULT_MEANINGS[result]})",
                  kind="ok" if result == "pass" else "decision")
    return SPFResult(
        verdict=result, summary=summary, trace=tuple(steps.steps), ip=evaluation.ip_text,
        domain=domain, sender=full_sender, helo=helo_text or None, identity=identity,
        explanation=explanation,
        records=tuple(evaluation.records), mechanism=term, mechanism_domain=term_domain,
        dns_terms=evaluation.dns_terms, void_lookups=evaluation.void_lookups,
        dns_queries=evaluation.queries,
        chain=tuple([SPFNode(i, n.parent, n.via, n.term, n.domain, n.record, n.result)
                     for i, n in enumerate(evaluation.nodes)]),
        terms=tuple(evaluation.rows),
    )


def _summary(result: str, reason: str, ip: str, domain: str, term: str | None) -> str:
    if result == "pass":
        return f"{ip} may send mail for {domain}: {reason}"
    if result == "fail":
        return f"{domain} says {ip} may not send its mail: {reason}"
    if result == "softfail":
        return f"{domain} says {ip} is probably not one of its senders: {reason}"
    if result == "neutral":
        return f"{domain} makes no assertion about {ip}: {reason}"
    return reason


def _strip_path(mail_from: str) -> str:
    text = mail_from.strip()
    if text.startswith("<") and text.endswith(">"):
        text = text[1:-1].strip()
    return text


def spf_verdict(
    ip: str | ipaddress.IPv4Address | ipaddress.IPv6Address,
    mail_from: str | None,
    helo: str | None,
    resolver: ResolverLike,
    *,
    check_helo: bool = False,
    receiver: str = "unknown",
    default_explanation: str = DEFAULT_EXPLANATION,
    timestamp: int | None = None,
    trace: bool = True,
) -> SPFResult:
    """What a receiving server does: check the MAIL FROM identity, or
    ``postmaster@<HELO>`` when the reverse-path is empty (RFC 7208 section 2.4).

    With ``check_helo``, the HELO identity is checked first (section 2.3); a fail there
    is conclusive and is returned (identity ``"helo"``); otherwise the MAIL FROM result
    is returned with the HELO result in ``helo_check``.
    """
    mail_from = _strip_path(_text_argument(mail_from, "MAIL FROM", optional=True))
    helo_name = _text_argument(helo, "the HELO name", optional=True).strip()
    helo_result = None
    if check_helo or not mail_from:
        if mail_from:
            note = ("first the HELO identity, postmaster@ the HELO name", RFC_HELO)
        else:
            note = ("the reverse-path is empty: the identity checked is postmaster@ the "
                    "HELO name", RFC_IDENTITIES)
        helo_result = _check_host(ip, helo_name, f"postmaster@{helo_name}", helo_name,
                                  resolver, receiver, default_explanation, timestamp,
                                  MAX_VOID_LOOKUPS, trace, "helo", note)
        if not mail_from:
            return helo_result
        if helo_result.verdict == "fail":
            step = Step("the HELO check failed, which is conclusive: the MAIL FROM identity "
                        "need not be checked", "decision", 0, RFC_HELO)
            return _replace(helo_result, trace=(*helo_result.trace, step))
    _local, at, domain = mail_from.rpartition("@")
    if not at:
        address = _client_address(ip)
        return SPFResult(verdict="none", ip=str(address), domain="", sender=mail_from,
                         helo=helo, helo_check=helo_result,
                         summary=f"MAIL FROM {mail_from!r} is not an address with a domain, "
                                 f"so there is no domain to check ({RFC_IDENTITIES}).")
    result = _check_host(ip, domain, mail_from, helo_name, resolver, receiver,
                         default_explanation, timestamp, MAX_VOID_LOOKUPS, trace)
    if helo_result is not None:
        result = _replace(result, helo_check=helo_result)
    return result


def _replace(result: SPFResult, **changes: Any) -> SPFResult:
    import dataclasses

    return dataclasses.replace(result, **changes)


__all__ = [
    "DEFAULT_EXPLANATION", "MAX_DNS_TERMS", "MAX_MX_NAMES", "MAX_PTR_NAMES",
    "MAX_VOID_LOOKUPS", "RESULTS", "SPFArgumentError", "SPFNode", "SPFRecord", "SPFResult",
    "SPFSyntaxError", "Term", "TermOutcome", "check_host", "domain_problem", "is_spf_record",
    "parse_record", "spf_verdict",
]
