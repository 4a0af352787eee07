"""SPF evaluation: check_host() at work on one record after another (RFC 7208 sections
4 to 6).

:class:`_Evaluation` is the state of one check_host() call, shared by its includes and
redirects. For each domain it fetches the one SPF record (sections 4.4 and 4.5), reads
it whole (a syntax error anywhere is a permerror, section 4.6), evaluates the
mechanisms left to right (``all``, ``ip4``, ``ip6``, ``a``, ``mx``, ``ptr``,
``exists``, ``include``, section 5) and, when none matched, follows ``redirect=``
(section 6.1). It records the include/redirect tree and the outcome of every term as
it goes.

It builds on :mod:`labsupport.auth.spf_expansion` (macros and the explanation) and
:mod:`labsupport.auth.spf_dns` (the lookups and their limits); the public functions that
run it are in :mod:`labsupport.auth.spf`.
"""

from __future__ import annotations

from dataclasses import dataclass

from .spf_dns import _Client, _name_query, _name_text, _qname, domain_problem
from .spf_expansion import _Expanding
from .spf_record import (
    MAX_DNS_TERMS,
    MAX_MX_NAMES,
    MAX_PTR_NAMES,
    RFC_ASCII,
    RFC_DEFAULT,
    RFC_EVALUATION,
    RFC_EXP,
    RFC_INITIAL,
    RFC_LIMITS,
    RFC_LOOKUP,
    RFC_MECHANISMS,
    RFC_REDIRECT,
    RFC_SELECT,
    ResolverLike,
    SPFRecord,
    SPFSyntaxError,
    Term,
    is_spf_record,
    parse_record,
)
from .spf_result import TermOutcome, _Stop


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


class _Evaluation(_Expanding):
    """The state of one check_host() call, shared by its includes and redirects."""

    __slots__ = ("records", "nodes", "rows", "stack")

    def __init__(self, *, client: _Client, sender: str, local: str, sender_domain: str,
                 helo: str, resolver: ResolverLike, receiver: str, timestamp: int | None,
                 default_explanation: str, max_void: int, trace: bool) -> None:
        super().__init__(client=client, sender=sender, local=local,
                         sender_domain=sender_domain, helo=helo, resolver=resolver,
                         receiver=receiver, timestamp=timestamp,
                         default_explanation=default_explanation, max_void=max_void,
                         trace=trace)
        self.records: list[tuple[str, str]] = []
        self.nodes: list[_Node] = []
        self.rows: list[TermOutcome] = []
        self.stack: list[str] = []

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
