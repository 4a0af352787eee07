"""SPF and DNS: the names check_host() asks for, the questions it asks, and the limits
on them (RFC 7208 sections 4.3, 4.6.4 and 5).

A domain is checked before it is looked up (:func:`domain_problem`: a malformed or
single-label name gives none). Each DNS question is one step of the trace, the question
and its answer, read into plain values (addresses, MX pairs, PTR names, TXT strings);
a DNS error is reported, not raised, so that each caller decides what it means.

The limits of section 4.6.4 are counted here as the lookups are made: at most 10 terms
that query DNS, includes and redirects counted, and at most 2 lookups that find
nothing (void lookups); going over either ends the evaluation with a permerror.

:class:`_Lookups` holds this part of one evaluation's state, the client address in the
forms the comparisons need, and is the base of the evaluation in
:mod:`labsupport.auth.spf_eval`.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Callable
from typing import Any, NamedTuple

import dns.exception
import dns.name
import dns.resolver

from .spf_record import MAX_DNS_TERMS, RFC_LIMITS, ResolverLike, Term
from .spf_result import _Stop, _Trace

# -- names and answers -------------------------------------------------------------------


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


# -- the lookups and their limits --------------------------------------------------------


class _Client(NamedTuple):
    """What evaluation needs to know about the client address, worked out once."""

    address: ipaddress.IPv4Address | ipaddress.IPv6Address
    version: int
    text: str
    value: int
    dotted: str


class _Lookups:
    """The DNS side of one check_host() call: the client address, the resolver, the
    trace, and the counters of section 4.6.4, shared by its includes and redirects."""

    __slots__ = ("ip", "version", "bits", "ip_int", "ip_text", "dotted", "family",
                 "address_type", "resolver", "max_void", "trace", "dns_terms",
                 "void_lookups", "queries", "_explaining")

    def __init__(self, *, client: _Client, resolver: ResolverLike, max_void: int,
                 trace: bool) -> None:
        self.ip = client.address
        self.version = version = client.version
        self.bits = 32 if version == 4 else 128
        self.ip_int = client.value
        self.ip_text = client.text
        self.dotted = client.dotted
        self.family = socket.AF_INET if version == 4 else socket.AF_INET6
        self.address_type = "A" if version == 4 else "AAAA"
        self.resolver = resolver
        self.max_void = max_void
        self.trace = _Trace(trace)
        self.dns_terms = 0
        self.void_lookups = 0
        self.queries = 0
        self._explaining = False

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

    def validates(self, name: dns.name.Name, shown: str) -> bool:
        """Does ``name`` have the client's address (section 5.5)? A DNS error skips the
        name; an empty answer is a void lookup, as for any other term's query."""
        status, values, _why = self.lookup(_name_query(name, shown), shown,
                                           self.address_type)
        if status in ("nxdomain", "nodata"):
            self.count_void(shown)
        return status == "ok" and self.address_in(values, self.bits) is not None
