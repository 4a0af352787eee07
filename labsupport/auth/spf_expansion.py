"""SPF macros during evaluation: the values they expand to, the domains the terms name,
and the explanation of a fail (RFC 7208 sections 6.2 and 7).

A term's domain-spec may hold macros (``include:%{d}._spf.example``); before the name
is looked up they are expanded with the values of this check (section 7.2): the sender,
its local-part and domain, the current domain, the client address, the HELO name, the
receiver and the time. The ``%{p}`` macro, the client's validated host name (section
7.3), is found on first use, with PTR and address lookups.

A fail carries an explanation (section 6.2): the TXT record named by the record's
``exp=`` modifier, itself a macro string, or the receiver's default. Its lookups come
after the result and are never counted against the limits.

:class:`_Expanding` adds this to the DNS state of :mod:`labsupport.auth.spf_dns`; the
evaluation of :mod:`labsupport.auth.spf_eval` builds on it. The macro language itself
is in :mod:`labsupport.auth.spf_macros`.
"""

from __future__ import annotations

import time

from .spf_dns import _Client, _Lookups, _name_problem, _name_text, _qname
from .spf_macros import (
    MacroContext,
    MacroString,
    MacroSyntaxError,
    expand,
    parse_macro_string,
    truncate_domain,
)
from .spf_record import MAX_PTR_NAMES, RFC_EXP, RFC_MACROS, ResolverLike, SPFRecord


class _Expanding(_Lookups):
    """The macro values of one check_host() call, and what is expanded with them."""

    __slots__ = ("sender", "local", "sender_domain", "helo", "receiver", "timestamp",
                 "default_explanation", "_validated", "_context")

    def __init__(self, *, client: _Client, sender: str, local: str, sender_domain: str,
                 helo: str, resolver: ResolverLike, receiver: str, timestamp: int | None,
                 default_explanation: str, max_void: int, trace: bool) -> None:
        super().__init__(client=client, resolver=resolver, max_void=max_void, trace=trace)
        self.sender = sender
        self.local = local
        self.sender_domain = sender_domain
        self.helo = helo
        self.receiver = receiver
        self.timestamp = timestamp
        self.default_explanation = default_explanation
        self._validated: list[str] | None = None
        self._context: MacroContext | None = None

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

    # -- the domains terms name (section 7) --------------------------------------------

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
