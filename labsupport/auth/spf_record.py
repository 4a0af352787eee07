"""SPF records, read whole: the terms of a record and their syntax (RFC 7208 sections 4.5,
4.6, 5, 6 and 12).

:func:`parse_record` reads a record without evaluating it; a syntax error anywhere makes
the whole record an error (section 4.6), raised as :class:`SPFSyntaxError`. The
evaluation itself is in :mod:`labsupport.auth.spf`.

Introduced in ``notebooks/04-spf.ipynb``.
"""

from __future__ import annotations

import html
import ipaddress
import re
from dataclasses import dataclass, field
from functools import lru_cache
from typing import TYPE_CHECKING, Any, Protocol

from ..core.errors import LabError
from ..core.results import html_table, text_table
from .spf_macros import (
    MacroString,
    MacroSyntaxError,
    parse_domain_spec,
    parse_macro_string,
)

if TYPE_CHECKING:
    pass


# -- the rules, with their place in RFC 7208 ----------------------------------------------

RFC_IDENTITIES = "RFC 7208 section 2.4"
RFC_HELO = "RFC 7208 section 2.3"
RFC_ASCII = "RFC 7208 section 3.1"
RFC_STRINGS = "RFC 7208 section 3.3"
RFC_CHECK_HOST = "RFC 7208 section 4"
RFC_INITIAL = "RFC 7208 section 4.3"
RFC_LOOKUP = "RFC 7208 section 4.4"
RFC_SELECT = "RFC 7208 section 4.5"
RFC_EVALUATION = "RFC 7208 section 4.6"
RFC_LIMITS = "RFC 7208 section 4.6.4"
RFC_DEFAULT = "RFC 7208 section 4.7"
RFC_MECHANISMS = "RFC 7208 section 5"
RFC_REDIRECT = "RFC 7208 section 6.1"
RFC_EXP = "RFC 7208 section 6.2"
RFC_MACROS = "RFC 7208 section 7"

#: The seven results of check_host() (RFC 7208 section 2.6).
RESULTS = ("pass", "fail", "softfail", "neutral", "none", "permerror", "temperror")

#: What each result means for the receiver (RFC 7208 sections 2.6 and 8).
RESULT_MEANINGS = {
    "pass": "the client is authorized to send mail for the domain",
    "fail": "the domain says the client is not authorized",
    "softfail": "the domain says the client is probably not authorized",
    "neutral": "the domain makes no assertion about the client",
    "none": "the domain publishes no SPF record (or is not a domain)",
    "permerror": "the domain's SPF records cannot be interpreted; it must fix them",
    "temperror": "a DNS failure stopped the check; try again later",
}

#: Qualifier -> result when the mechanism matches (RFC 7208 section 4.6.2).
QUALIFIERS = {"+": "pass", "-": "fail", "~": "softfail", "?": "neutral"}

#: The mechanisms and their sections (RFC 7208 section 5).
MECHANISMS = {"all": "5.1", "include": "5.2", "a": "5.3", "mx": "5.4", "ptr": "5.5",
              "ip4": "5.6", "ip6": "5.6", "exists": "5.7"}

#: Mechanisms that query DNS, counted against the limit; ``redirect`` counts too.
DNS_MECHANISMS = frozenset({"include", "a", "mx", "ptr", "exists"})

#: At most 10 terms that cause DNS queries per check (RFC 7208 section 4.6.4).
MAX_DNS_TERMS = 10
#: At most 10 MX names per "mx" mechanism, or permerror (section 4.6.4).
MAX_MX_NAMES = 10
#: At most 10 PTR names are checked; the rest are ignored (section 4.6.4).
MAX_PTR_NAMES = 10
#: At most 2 lookups that find nothing (NXDOMAIN or no answer) per check (section 4.6.4).
MAX_VOID_LOOKUPS = 2

#: The receiver's explanation for a fail when the domain gives none (section 6.2).
DEFAULT_EXPLANATION = "%{o} does not authorize %{c} to send mail for it (SPF fail)"

RESULT_COLOURS = {
    "pass": "#2f8f2f", "fail": "#c0392b", "softfail": "#e67e22", "neutral": "#7f8c8d",
    "none": "#bdc3c7", "permerror": "#8e44ad", "temperror": "#2471a3",
}


class ResolverLike(Protocol):
    def resolve(self, qname: Any, rdtype: Any = ..., *args: Any, **kwargs: Any) -> Any: ...


class SPFSyntaxError(LabError, ValueError):
    """An SPF record does not follow RFC 7208's grammar; check_host() gives permerror.

    ``term`` is the offending term (or None for the record as a whole) and ``rfc`` the
    section whose rule it breaks.
    """

    def __init__(self, message: str, term: str | None = None, rfc: str | None = None) -> None:
        super().__init__(message)
        self.term = term
        self.rfc = rfc


class SPFArgumentError(LabError, ValueError):
    """check_host() or spf_verdict() was called with an argument it cannot use."""


# -- reading a record (RFC 7208 sections 4.5, 4.6, 5, 6 and 12) ---------------------------


@dataclass(frozen=True, slots=True)
class Term:
    """One term of an SPF record: a mechanism (with its qualifier) or a modifier.

    ``target`` is the domain-spec, parsed; ``cidr4``/``cidr6`` the prefix lengths written
    on ``a``/``mx``; ``network``/``prefix`` the network of ``ip4``/``ip6`` as an integer
    and its length.
    """

    text: str
    name: str
    is_modifier: bool = False
    qualifier: str = "+"
    target: MacroString | None = None
    cidr4: int | None = None
    cidr6: int | None = None
    network: int | None = None
    prefix: int | None = None
    dns: bool = False
    meaning: str = field(default="", compare=False, repr=False)
    section: str = field(default="", compare=False, repr=False)

    def __post_init__(self) -> None:
        # Worked out once per record (records are cached), read at every evaluation.
        if self.is_modifier:
            section = {"redirect": RFC_REDIRECT, "exp": RFC_EXP}.get(self.name,
                                                                     "RFC 7208 section 6")
        else:
            section = f"RFC 7208 section {MECHANISMS[self.name]}"
        object.__setattr__(self, "section", section)
        object.__setattr__(self, "meaning", self.describe())

    @property
    def result(self) -> str:
        """The result when this mechanism matches (section 4.6.2)."""
        return QUALIFIERS.get(self.qualifier, "pass")

    @property
    def queries_dns(self) -> bool:
        """True for the terms counted against the limit of 10 (section 4.6.4)."""
        return self.dns

    @property
    def rfc(self) -> str:
        """The section of RFC 7208 that defines this term."""
        return self.section

    def describe(self) -> str:
        """What this term does, in words."""
        spec = self.target.text if self.target else "the domain"
        name = self.name
        if self.is_modifier:
            if name == "redirect":
                return f"if no mechanism matched, the result is that of {spec}'s record"
            if name == "exp":
                return f"the explanation for a fail is the TXT record of {spec}"
            return "an unknown modifier: ignored"
        cidr = ""
        if self.cidr4 is not None or self.cidr6 is not None:
            cidr = " (" + ", ".join(
                f"{label} /{n}" for label, n in (("IPv4", self.cidr4), ("IPv6", self.cidr6))
                if n is not None) + ")"
        if name == "all":
            what = "every client"
        elif name == "include":
            what = f"the clients {spec}'s SPF record passes"
        elif name == "a":
            what = f"the addresses of {spec}{cidr}"
        elif name == "mx":
            what = f"the addresses of {spec}'s mail servers{cidr}"
        elif name == "ptr":
            what = f"clients whose validated reverse name ends in {spec} (discouraged)"
        elif name == "exists":
            what = f"every client, if {spec} has an A record"
        else:
            what = f"the IPv{name[-1]} network {self._network_text()}"
        return f"{self.result} for {what}"

    def _network_text(self) -> str:
        if self.network is None or self.prefix is None:
            return "?"
        if self.name == "ip4":
            return f"{ipaddress.IPv4Address(self.network)}/{self.prefix}"
        return f"{ipaddress.IPv6Address(self.network)}/{self.prefix}"


@dataclass(frozen=True)
class SPFRecord:
    """A whole SPF record, read and checked (RFC 7208 section 4.6): its mechanisms in
    order, and its ``redirect`` and ``exp`` modifiers. Renders as a table of its terms.
    """

    text: str
    terms: tuple[Term, ...]
    mechanisms: tuple[Term, ...]
    redirect: Term | None = None
    exp: Term | None = None

    @property
    def dns_terms(self) -> int:
        """How many of its terms query DNS (each include adds its own record's)."""
        return sum(1 for t in self.terms if t.queries_dns)

    def rows(self) -> list[list[object]]:
        return [[i + 1, t.text, "modifier" if t.is_modifier else "mechanism",
                 "yes" if t.queries_dns else "", t.meaning]
                for i, t in enumerate(self.terms)]

    _HEADERS = ["#", "term", "kind", "DNS", "meaning"]

    def __str__(self) -> str:
        return f"{self.text}\n\n" + text_table(self._HEADERS, self.rows())

    def _repr_html_(self) -> str:
        return (f"<code>{html.escape(self.text)}</code>"
                + html_table(self._HEADERS, self.rows()))


_MODIFIER = re.compile(r"([A-Za-z][A-Za-z0-9_.\-]*)=(.*)\Z", re.S)
_MECHANISM = re.compile(r"([+\-~?]?)([A-Za-z0-9]*)(.*)\Z", re.S)
_DUAL_CIDR = re.compile(r"(.*?)(?:/(0|[1-9][0-9]*))?(?://(0|[1-9][0-9]*))?\Z", re.S)
_QNUM = r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9][0-9]|[0-9])"
_IP4_NETWORK = re.compile(rf"({_QNUM}(?:\.{_QNUM}){{3}})(?:/(0|[1-9][0-9]*))?\Z")
_IP6_NETWORK = re.compile(r"([0-9A-Fa-f:.]+)(?:/(0|[1-9][0-9]*))?\Z")


def _error(term: str, why: str, rfc: str) -> SPFSyntaxError:
    return SPFSyntaxError(f"{term!r}: {why} ({rfc})", term, rfc)


def _domain_spec(term: str, text: str, rfc: str) -> MacroString:
    try:
        return parse_domain_spec(text)
    except MacroSyntaxError as exc:
        raise SPFSyntaxError(f"{term!r}: {exc}", term, rfc) from None


def _parse_modifier(text: str, name: str, value: str) -> Term:
    lower = name.lower()
    if lower in ("redirect", "exp"):
        rfc = RFC_REDIRECT if lower == "redirect" else RFC_EXP
        if not value:
            raise _error(text, f"{lower}= needs a domain name after the '='", rfc)
        return Term(text, lower, True, "", _domain_spec(text, value, rfc),
                    dns=lower == "redirect")
    try:
        parse_macro_string(value)
    except MacroSyntaxError as exc:
        raise SPFSyntaxError(f"{text!r}: {exc}", text, "RFC 7208 section 6") from None
    return Term(text, lower, True, "")


def _parse_mechanism(text: str) -> Term:
    match = _MECHANISM.match(text)
    assert match is not None  # the pattern matches every string
    qualifier, raw_name, rest = match.groups()
    name = raw_name.lower()
    if name not in MECHANISMS:
        if not raw_name:
            why = "is neither a mechanism nor a modifier (name=value)"
        else:
            why = (f"{raw_name!r} is not a mechanism; the mechanisms are "
                   f"{', '.join(MECHANISMS)}, and a modifier is written name=value")
        raise _error(text, why, RFC_EVALUATION)
    rfc = f"RFC 7208 section {MECHANISMS[name]}"
    qualifier = qualifier or "+"
    if rest and rest[0] not in ":/":
        raise _error(text, f"unexpected {rest!r} after {name!r}", rfc)
    if name == "all":
        if rest:
            raise _error(text, "'all' takes no argument and no prefix length", rfc)
        return Term(text, name, False, qualifier)
    if name in ("include", "exists"):
        if not rest.startswith(":"):
            raise _error(text, f"{name} needs a domain: {name}:example.com", rfc)
        return Term(text, name, False, qualifier, _domain_spec(text, rest[1:], rfc), dns=True)
    if name == "ptr":
        if rest.startswith("/"):
            raise _error(text, "ptr takes no prefix length", rfc)
        target = _domain_spec(text, rest[1:], rfc) if rest else None
        return Term(text, name, False, qualifier, target, dns=True)
    if name in ("a", "mx"):
        body = rest[1:] if rest.startswith(":") else rest
        cidr = _DUAL_CIDR.match(body)
        assert cidr is not None
        spec, four, six = cidr.groups()
        if not rest.startswith(":") and spec:
            raise _error(text, "the prefix lengths must be /N for IPv4 and //N for IPv6, "
                               "such as a/24 or a/24//64", rfc)
        if rest.startswith(":") and not spec:
            raise _error(text, "the domain after ':' is empty", rfc)
        cidr4 = int(four) if four is not None else None
        cidr6 = int(six) if six is not None else None
        if cidr4 is not None and cidr4 > 32:
            raise _error(text, f"an IPv4 prefix length is 0 to 32, not {cidr4}", rfc)
        if cidr6 is not None and cidr6 > 128:
            raise _error(text, f"an IPv6 prefix length is 0 to 128, not {cidr6}", rfc)
        target = _domain_spec(text, spec, rfc) if rest.startswith(":") else None
        return Term(text, name, False, qualifier, target, cidr4, cidr6, dns=True)
    # ip4 and ip6
    if not rest.startswith(":"):
        raise _error(text, f"{name} needs an address: {name}:"
                     + ("192.0.2.0/24" if name == "ip4" else "2001:db8::/32"), rfc)
    body = rest[1:]
    if name == "ip4":
        found = _IP4_NETWORK.match(body)
        if not found:
            raise _error(text, "ip4 needs a full dotted-quad address without leading zeros, "
                               "optionally /0 to /32, such as ip4:192.0.2.0/24", rfc)
        prefix = int(found.group(2)) if found.group(2) is not None else 32
        if prefix > 32:
            raise _error(text, f"an IPv4 prefix length is 0 to 32, not {prefix}", rfc)
        network = int(ipaddress.IPv4Address(found.group(1)))
        return Term(text, name, False, qualifier, network=network, prefix=prefix)
    found = _IP6_NETWORK.match(body)
    address = None
    if found:
        try:
            address = ipaddress.IPv6Address(found.group(1))
        except ValueError:
            address = None
    if found is None or address is None:
        raise _error(text, "ip6 needs an IPv6 address, optionally /0 to /128, such as "
                           "ip6:2001:db8::/32", rfc)
    prefix = int(found.group(2)) if found.group(2) is not None else 128
    if prefix > 128:
        raise _error(text, f"an IPv6 prefix length is 0 to 128, not {prefix}", rfc)
    return Term(text, name, False, qualifier, network=int(address), prefix=prefix)


def is_spf_record(text: str | bytes) -> bool:
    """True when a TXT record is an SPF record: ``v=spf1`` (any case) alone or followed
    by a space (RFC 7208 section 4.5)."""
    raw = text.encode("latin-1", "replace") if isinstance(text, str) else text
    return raw[:6].lower() == b"v=spf1" and (len(raw) == 6 or raw[6:7] == b" ")


def parse_record(text: str) -> SPFRecord:
    """Read a whole SPF record and check its syntax (RFC 7208 sections 4.6 and 12).

    Raises :class:`SPFSyntaxError` with the offending term and the rule it breaks; a
    record with a syntax error anywhere is a permerror before any term is evaluated.
    """
    if not isinstance(text, str):
        raise SPFSyntaxError("an SPF record is text")
    parsed = _parse_cached(text)
    if isinstance(parsed, SPFSyntaxError):
        raise SPFSyntaxError(str(parsed), parsed.term, parsed.rfc)
    return parsed


@lru_cache(maxsize=2048)
def _parse_cached(text: str) -> SPFRecord | SPFSyntaxError:
    """The parsed record, or the syntax error (both kept: records repeat)."""
    try:
        return _parse(text)
    except SPFSyntaxError as exc:
        exc.__traceback__ = None
        return exc


def _parse(text: str) -> SPFRecord:
    if not text.isascii():
        raise SPFSyntaxError(
            "the record contains characters outside US-ASCII; SPF records are ASCII "
            f"({RFC_ASCII})", None, RFC_ASCII)
    if not is_spf_record(text):
        raise SPFSyntaxError(
            f"{text[:20]!r} is not an SPF record: it must start with 'v=spf1' followed by "
            f"a space or nothing ({RFC_SELECT})", None, RFC_SELECT)
    terms: list[Term] = []
    mechanisms: list[Term] = []
    redirect = exp = None
    for part in text[6:].split(" "):
        if not part:
            continue  # terms are separated by one or more spaces (section 4.6.1)
        modifier = _MODIFIER.match(part)
        if modifier:
            term = _parse_modifier(part, *modifier.groups())
            if term.name == "redirect":
                if redirect is not None:
                    raise _error(part, "redirect= may appear only once", "RFC 7208 section 6")
                redirect = term
            elif term.name == "exp":
                if exp is not None:
                    raise _error(part, "exp= may appear only once", "RFC 7208 section 6")
                exp = term
        else:
            term = _parse_mechanism(part)
            mechanisms.append(term)
        terms.append(term)
    return SPFRecord(text, tuple(terms), tuple(mechanisms), redirect, exp)


