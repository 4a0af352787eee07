"""MX selection: where does mail for a domain go? (RFC 5321 section 5.1, RFC 7505)

:func:`mx_hosts` does what a sending mail server does before it connects: it asks for the
domain's MX records, orders them by preference, spreads the load over hosts of equal
preference at random, falls back to the domain's own address when there is no MX
(the "implicit MX"), recognises a null MX (the domain accepts no mail), looks up each
host's addresses, and reports the broken cases (an MX naming an alias, a host with no
address, an IP address where a host name belongs) with the rule they break.

Introduced in ``notebooks/01-dns-mx.ipynb``.
"""

from __future__ import annotations

import ipaddress
import random
from dataclasses import dataclass
from typing import Any, Protocol

import dns.exception
import dns.name
import dns.rdatatype
import dns.resolver

from ..core.results import Result, TraceBuilder, html_table

RFC_MX = "RFC 5321 section 5.1"
RFC_NULL_MX = "RFC 7505 section 3"
RFC_ALIAS = "RFC 2181 section 10.3"
RFC_EXCHANGE = "RFC 1035 section 3.3.9"

#: The problems a host can have, and what each one means for a sender.
PROBLEM_KINDS = {
    "alias": "the MX names an alias (a CNAME), not a host",
    "no-address": "the MX host has no address (no A or AAAA record)",
    "ip-literal": "the MX names an IP address where a host name belongs",
    "null-mx": "a null MX among other MX records",
    "outside-lab": "the host is outside the lab's zones",
    "temporary": "the address lookup failed for now",
}


class ResolverLike(Protocol):
    def resolve(self, qname: Any, rdtype: Any = ..., *args: Any, **kwargs: Any) -> Any: ...


@dataclass(frozen=True)
class MXHost:
    """One mail host a sender may try, in the order it would try it."""

    preference: int
    name: str
    addresses: tuple[str, ...] = ()
    usable: bool = True
    problem: str | None = None
    problem_kind: str | None = None

    def __str__(self) -> str:
        where = ", ".join(self.addresses) or "no address"
        flag = f"  ({self.problem_kind})" if self.problem_kind else ""
        return f"{self.preference:>3} {self.name} -> {where}{flag}"


@dataclass(frozen=True, kw_only=True)
class MXResult(Result):
    """The outcome of MX selection for one domain.

    ``verdict`` is one of:

    * ``"mx"``: MX records name at least one usable host;
    * ``"implicit-mx"``: no MX records; the domain's own address takes mail;
    * ``"null-mx"``: the domain says it accepts no mail (RFC 7505);
    * ``"no-mail-host"``: MX records or the implicit MX exist but no host is usable;
    * ``"no-domain"``: the domain does not exist (NXDOMAIN);
    * ``"temporary-failure"``: DNS did not answer; a sender tries again later;
    * ``"outside-lab"``: the lab's DNS serves no zone for the name;
    * ``"invalid-name"``: the text is not a domain name.

    ``records`` is the MX set as published, sorted by preference; ``hosts`` lists the
    hosts in the order this sender would try them (equal preferences shuffled).
    """

    domain: str
    records: tuple[tuple[int, str], ...] = ()
    hosts: tuple[MXHost, ...] = ()
    smtp_reply: str | None = None

    @property
    def deliverable(self) -> bool:
        """True when a sender has at least one host to try now."""
        return any(h.usable for h in self.hosts)

    @property
    def order(self) -> list[str]:
        """Names of the usable hosts, in the order a sender tries them."""
        return [h.name for h in self.hosts if h.usable]

    @property
    def problems(self) -> list[str]:
        """The problem kinds found (see :data:`PROBLEM_KINDS`), in host order."""
        return [h.problem_kind for h in self.hosts if h.problem_kind]

    def title(self) -> str:
        return f"Mail for {self.domain}: {self.verdict}"

    def _repr_html_(self) -> str:
        table = ""
        if self.hosts:
            rows: list[list[object]] = [
                [i + 1, h.preference, h.name, ", ".join(h.addresses) or "-",
                 "yes" if h.usable else "no", h.problem or ""]
                for i, h in enumerate(self.hosts)
            ]
            table = html_table(
                ["try", "preference", "host", "addresses", "usable", "problem"], rows
            )
        return super()._repr_html_().replace("<div style=\"margin-top:4px\">",
                                             table + "<div style=\"margin-top:4px\">", 1)


def _is_ip_literal(name: str) -> bool:
    text = name.rstrip(".").strip("[]")
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def _ask(resolver: ResolverLike, name: str, rdtype: str, trace: TraceBuilder
         ) -> tuple[str, Any]:
    """One DNS question, recorded in the trace. Returns (status, answer or None).

    status is "ok", "nodata", "nxdomain", "refused" or "temporary".
    """
    trace.add(f"ask DNS for the {rdtype} records of {name}", kind="query")
    try:
        answer = resolver.resolve(name, rdtype)
    except dns.resolver.NXDOMAIN:
        trace.add(f"{name} does not exist (NXDOMAIN)", kind="answer")
        return "nxdomain", None
    except dns.resolver.NoAnswer:
        trace.add(f"{name} exists but has no {rdtype} record (NODATA)", kind="answer")
        return "nodata", None
    except dns.resolver.NoNameservers as exc:
        if "REFUSED" in str(exc):
            trace.add(f"the DNS server refused: {name} is outside the zones it serves",
                      kind="error")
            return "refused", None
        trace.add(f"the DNS server failed (SERVFAIL) for {name}", kind="error")
        return "temporary", None
    except dns.exception.Timeout:
        trace.add(f"no answer for {name} in time (timeout)", kind="error")
        return "temporary", None
    except dns.exception.DNSException as exc:
        # Anything else a resolver can raise (an over-long CNAME chain, a malformed
        # response): the lookup failed, and a sender treats that as temporary.
        trace.add(f"the lookup of {name} failed: {exc}", kind="error")
        return "temporary", None
    records = "\n".join(rrset.to_text() for rrset in answer.response.answer)
    trace.add(f"{len(answer)} {rdtype} record(s)", kind="answer", detail=records)
    return "ok", answer


def _host_name(target: dns.name.Name) -> str:
    return target.to_text(omit_final_dot=True) if target != dns.name.root else "."


def mx_hosts(
    domain: str,
    resolver: ResolverLike,
    *,
    rng: random.Random | None = None,
) -> MXResult:
    """Find the hosts that take mail for ``domain``, in the order a sender tries them.

    ``resolver`` follows dnspython's ``Resolver.resolve(qname, rdtype)`` contract (the
    lab's resolver, a real one, or a :class:`~labsupport.dns.zone.ZoneSet`). ``rng`` picks
    among hosts of equal preference; pass ``random.Random(seed)`` for a repeatable order.
    RFC 5321 section 5.1 and RFC 7505.
    """
    rng = rng or random.Random()
    trace = TraceBuilder()
    text = (domain or "").strip().rstrip(".")
    try:
        name = dns.name.from_text(text)
        if len(name.labels) < 3:  # a mail domain has at least two labels (RFC 5321 2.3.5)
            raise dns.name.EmptyLabel
    except (dns.exception.DNSException, UnicodeError):
        return MXResult(
            verdict="invalid-name", domain=text or repr(domain),
            summary=f"{domain!r} is not a fully qualified domain name (for example "
                    "northwind.test).",
        )

    status, answer = _ask(resolver, text, "MX", trace)
    if status == "nxdomain":
        trace.add("no such domain: there is nowhere to deliver", kind="decision", rfc=RFC_MX)
        return MXResult(
            verdict="no-domain", domain=text, trace=trace.freeze(),
            summary=f"{text} does not exist, so mail to it bounces at once.",
            smtp_reply="550 5.1.2 Bad destination system address",
        )
    if status == "refused":
        return MXResult(
            verdict="outside-lab", domain=text, trace=trace.freeze(),
            summary=f"{text} is outside the lab's world; the lab's DNS answers only for its "
                    "own zones (try northwind.test).",
        )
    if status == "temporary":
        trace.add("a DNS failure is temporary: queue the message and try later",
                  kind="decision", rfc=RFC_MX)
        return MXResult(
            verdict="temporary-failure", domain=text, trace=trace.freeze(),
            summary=f"DNS gave no answer for {text}; a sender keeps the message and retries.",
            smtp_reply="451 4.4.3 Directory server failure",
        )

    if status == "nodata":
        return _implicit_mx(text, resolver, trace)

    assert answer is not None
    canonical = answer.canonical_name.to_text(omit_final_dot=True)
    if canonical.lower() != text.lower():
        trace.add(f"{text} is an alias of {canonical}; it is treated as {canonical}",
                  kind="info", rfc=RFC_MX)
    records = sorted(
        ((rr.preference, _host_name(rr.exchange)) for rr in answer), key=lambda r: (r[0], r[1])
    )

    # RFC 7505 section 3: a null MX is a single MX with preference 0 and the root as host.
    if any(host == "." for _, host in records):
        if len(records) == 1 and records[0][0] == 0:
            trace.add("the only MX is '0 .': a null MX, this domain accepts no mail",
                      kind="decision", rfc=RFC_NULL_MX)
            return MXResult(
                verdict="null-mx", domain=text, records=tuple(records), trace=trace.freeze(),
                summary=f"{text} publishes a null MX: it accepts no mail, so a sender "
                        "bounces the message without trying to connect.",
                smtp_reply="556 5.1.10 Recipient address has null MX",
            )
        trace.add("a null MX ('.') stands beside other MX records; a domain with a null MX "
                  "must publish no other MX, so the '.' entry is skipped",
                  kind="warning", rfc=RFC_NULL_MX)

    ordered = _order(records, rng, trace)
    hosts = []
    for preference, host in ordered:
        with trace.nested():
            hosts.append(_examine_host(preference, host, resolver, trace))
    hosts.extend(_examine_host(p, h, resolver, trace) for p, h in records if h == ".")
    return _conclude(text, tuple(records), tuple(hosts), trace)


def order_by_preference(records: list[tuple[int, str]] | tuple[tuple[int, str], ...],
                        rng: random.Random) -> list[tuple[int, str]]:
    """Sort MX records by preference, lowest first, shuffling each group of equal
    preference to spread the load (RFC 5321 section 5.1). Null-MX entries are dropped."""
    groups: dict[int, list[str]] = {}
    for preference, host in records:
        if host != ".":
            groups.setdefault(preference, []).append(host)
    ordered: list[tuple[int, str]] = []
    for preference in sorted(groups):
        hosts = sorted(groups[preference])
        rng.shuffle(hosts)
        ordered.extend((preference, h) for h in hosts)
    return ordered


def _order(records: list[tuple[int, str]], rng: random.Random, trace: TraceBuilder
           ) -> list[tuple[int, str]]:
    ordered = order_by_preference(records, rng)
    shared: dict[int, list[str]] = {}
    for preference, host in ordered:
        shared.setdefault(preference, []).append(host)
    for preference, hosts in shared.items():
        if len(hosts) > 1:
            trace.add(f"{len(hosts)} hosts share preference {preference}: picked in random "
                      f"order to spread the load ({', '.join(hosts)})",
                      kind="decision", rfc=RFC_MX)
    trace.add("order by preference, lowest first: "
              + ", ".join(f"{p} {h}" for p, h in ordered), kind="decision", rfc=RFC_MX)
    return ordered


def _examine_host(preference: int, host: str, resolver: ResolverLike, trace: TraceBuilder
                  ) -> MXHost:
    if host == ".":
        return MXHost(preference, host, usable=False, problem_kind="null-mx",
                      problem="a null MX host ('.') beside other MX records (RFC 7505)")
    trace.add(f"host {host} (preference {preference})", kind="info")
    if _is_ip_literal(host):
        trace.add(f"{host} is an IP address, not a host name: the MX exchange must be a "
                  "domain name, so a sender looks up a name made of digits and finds nothing",
                  kind="error", rfc=RFC_EXCHANGE)
        return MXHost(preference, host, usable=False, problem_kind="ip-literal",
                      problem=f"the MX names the IP address {host}; an MX must name a host "
                              f"that has an A or AAAA record ({RFC_EXCHANGE})")
    addresses: list[str] = []
    statuses = []
    alias_of = None
    with trace.nested():
        for rdtype in ("A", "AAAA"):
            status, answer = _ask(resolver, host, rdtype, trace)
            statuses.append(status)
            if answer is not None:
                addresses.extend(rr.address for rr in answer)
                target = answer.canonical_name.to_text(omit_final_dot=True)
                if target.lower() != host.lower():
                    alias_of = target
    if "refused" in statuses:
        return MXHost(preference, host, usable=False, problem_kind="outside-lab",
                      problem=f"{host} is outside the lab's zones")
    if not addresses and "temporary" in statuses:
        return MXHost(preference, host, usable=False, problem_kind="temporary",
                      problem=f"the address lookup for {host} failed; try again later")
    if not addresses:
        trace.add(f"{host} has no address: a sender cannot connect to it and moves on",
                  kind="error", rfc=RFC_MX)
        return MXHost(preference, host, usable=False, problem_kind="no-address",
                      problem=f"{host} has no A or AAAA record ({RFC_MX})")
    if alias_of:
        trace.add(f"{host} is an alias (CNAME) of {alias_of}: an MX must name the host "
                  "itself; many senders follow the alias anyway, some refuse",
                  kind="warning", rfc=RFC_ALIAS)
        return MXHost(preference, host, tuple(addresses), usable=True, problem_kind="alias",
                      problem=f"{host} is an alias of {alias_of}; the MX should name "
                              f"{alias_of} ({RFC_ALIAS})")
    return MXHost(preference, host, tuple(addresses))


def _implicit_mx(text: str, resolver: ResolverLike, trace: TraceBuilder) -> MXResult:
    trace.add("no MX records: the domain itself is the mail host (implicit MX, "
              "preference 0)", kind="decision", rfc=RFC_MX)
    with trace.nested():
        host = _examine_host(0, text, resolver, trace)
    if not host.usable:
        trace.add(f"{text} has neither MX nor address records: mail to it cannot be "
                  "delivered", kind="decision", rfc=RFC_MX)
        return MXResult(
            verdict="no-mail-host", domain=text, hosts=(host,), trace=trace.freeze(),
            summary=f"{text} has no MX and no address, so there is nowhere to deliver.",
            smtp_reply="550 5.1.2 Bad destination system address",
        )
    return MXResult(
        verdict="implicit-mx", domain=text, trace=trace.freeze(),
        hosts=(MXHost(0, text, host.addresses, problem=host.problem,
                      problem_kind=host.problem_kind),),
        summary=f"{text} has no MX records, so a sender delivers to the domain's own "
                f"address ({', '.join(host.addresses)}): the implicit MX.",
    )


def _conclude(text: str, records: tuple[tuple[int, str], ...], hosts: tuple[MXHost, ...],
              trace: TraceBuilder) -> MXResult:
    usable = [h for h in hosts if h.usable]
    broken = [h for h in hosts if h.problem_kind]
    if not usable:
        trace.add("no MX host is usable: the message cannot be delivered", kind="decision",
                  rfc=RFC_MX)
        reasons = "; ".join(h.problem or h.name for h in hosts)
        temporary = all(h.problem_kind == "temporary" for h in hosts)
        return MXResult(
            verdict="temporary-failure" if temporary else "no-mail-host", domain=text,
            records=records, hosts=hosts, trace=trace.freeze(),
            summary=f"{text} publishes MX records but no host can be reached: {reasons}.",
            smtp_reply="451 4.4.3 Directory server failure" if temporary
            else "550 5.1.2 Bad destination system address",
        )
    order = ", ".join(h.name for h in usable)
    trace.add(f"a sender tries, in order: {order}", kind="ok")
    summary = f"Mail for {text} goes to {usable[0].name}"
    if len(usable) > 1:
        summary += f", then {', '.join(h.name for h in usable[1:])} if that fails"
    summary += "."
    if broken:
        summary += " But: " + "; ".join(h.problem or "" for h in broken) + "."
    return MXResult(verdict="mx", domain=text, records=records, hosts=hosts,
                    trace=trace.freeze(), summary=summary)
