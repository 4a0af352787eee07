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

This module is the entry point and holds the public functions; the parts live beside
it, and their public names are importable from here too: the result and its trace in
:mod:`labsupport.auth.spf_result`, the names, DNS lookups and limits in
:mod:`labsupport.auth.spf_dns`, the macros during evaluation and the explanation of a
fail in :mod:`labsupport.auth.spf_expansion`, and the evaluation of mechanisms and
modifiers in :mod:`labsupport.auth.spf_eval`. A record's syntax is read by
:mod:`labsupport.auth.spf_record`, and the macro language by
:mod:`labsupport.auth.spf_macros`.

Introduced in ``notebooks/04-spf.ipynb``.
"""

from __future__ import annotations

import ipaddress
from functools import lru_cache
from typing import Any

from ..core.results import Step
from .spf_dns import _Client
from .spf_dns import domain_problem as domain_problem
from .spf_eval import _Evaluation
from .spf_macros import (  # noqa: F401 - importable from here before the split
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
from .spf_result import SPFNode as SPFNode
from .spf_result import SPFResult as SPFResult
from .spf_result import TermOutcome as TermOutcome
from .spf_result import _Stop

# -- the public functions -----------------------------------------------------------------


@lru_cache(maxsize=1024)
def _address_from_text(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    if "%" in text:  # a scoped IPv6 address names an interface, not a client
        raise ValueError(text)
    return ipaddress.ip_address(text)


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
