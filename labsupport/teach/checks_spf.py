"""Exercise checks of ``notebooks/04-spf.ipynb`` and the SPF helpers they (and the
capstone, and the SPF widgets) use: scratch zones to try records in, reading and putting
a domain's SPF record, what a record means for each address, and the judges of the SPF
result and the record-fixing exercises. Part of :mod:`labsupport.teach.checks`.
"""

from __future__ import annotations

from typing import Any

from ..dns.mx import ResolverLike
from ..dns.zone import ZoneSet
from .checks_core import _spf
from .verdicts import Verdict, answer_of, report

# -- notebooks/04-spf.ipynb ----------------------------------------------------------------
# Importing labsupport.auth.spf here also makes it an attribute of the package after a plain
# ``import labsupport`` (the index names spf.check_host, spf.spf_verdict, spf.parse_record).

#: Addresses no lab SPF record authorizes, tried by the record-fixing exercise besides the
#: addresses the records themselves name: the lab's attacker, and two unused ones.
SPF_OUTSIDERS = ("203.0.113.66", "192.0.2.254", "2001:db8:ffff::1")


def spf_scratch_zones(zones: ZoneSet) -> ZoneSet:
    """A copy of ``zones`` as they stand now, to try SPF records in without touching the
    lab's own zones; the copy's ``reset()`` puts it back to this snapshot."""
    scratch = ZoneSet()
    for origin in zones.origins:
        scratch.load_text(zones.zone_text(origin), origin)
    return scratch


def spf_record_of(domain: str, resolver: ResolverLike) -> str | None:
    """The SPF record ``domain`` publishes (the first, if it wrongly has several), or None."""
    import dns.exception

    try:
        answer = resolver.resolve(domain, "TXT")
    except dns.exception.DNSException:
        return None
    for rdata in answer:
        text = b"".join(rdata.strings)
        if _spf().is_spf_record(text):
            return text.decode("utf-8", errors="replace")
    return None


def put_spf_record(zones: ZoneSet, domain: str, record: str) -> None:
    """Make ``record`` the one SPF record of ``domain`` in ``zones``; its other TXT records
    stay. Raises :class:`~labsupport.core.errors.ZoneEditError` when no zone holds ``domain``."""
    import dns.exception

    try:
        answer = zones.resolve(domain, "TXT")
        others = [rd.to_text() for rd in answer
                  if not _spf().is_spf_record(b"".join(rd.strings))]
    except dns.exception.DNSException:
        others = []
    zones.set(domain, "TXT", *others, record)


def _spf_sender(domain: str) -> str:
    return f"postmaster@{domain}"


def _spf_candidates(record: str, domain: str, resolver: ResolverLike) -> set[str]:
    """Addresses worth testing a record with: the ends of every network it (or a record it
    includes or redirects to) names, the addresses just outside them, and the addresses
    of its ``a`` and ``mx`` targets."""
    import ipaddress

    import dns.exception

    found: set[str] = set()
    seen: set[str] = set()

    def add(network: ipaddress.IPv4Network | ipaddress.IPv6Network) -> None:
        first, last = int(network.network_address), int(network.broadcast_address)
        top = 2 ** network.max_prefixlen - 1
        cls = ipaddress.IPv4Address if network.version == 4 else ipaddress.IPv6Address
        for value in (first, last, first - 1, last + 1):
            if 0 <= value <= top:
                found.add(str(cls(value)))

    def addresses(name: str) -> None:
        for rdtype in ("A", "AAAA"):
            try:
                for rdata in resolver.resolve(name, rdtype):
                    found.add(rdata.address)
            except dns.exception.DNSException:
                pass

    def walk(text: str, at: str, depth: int) -> None:
        try:
            parsed = _spf().parse_record(text)
        except _spf().SPFSyntaxError:
            return
        for term in parsed.terms:
            target = term.target.text if term.target is not None else at
            if "%" in target:
                continue  # a macro: its target depends on the client
            if term.name in ("ip4", "ip6") and term.network is not None:
                network = ipaddress.ip_network((term.network, term.prefix or 0))
                add(network)
            elif term.name == "a":
                addresses(target)
            elif term.name == "mx":
                try:
                    for rdata in resolver.resolve(target, "MX"):
                        addresses(rdata.exchange.to_text())
                except dns.exception.DNSException:
                    pass
            elif term.name in ("include", "redirect") and depth < _spf().MAX_DNS_TERMS \
                    and target.lower() not in seen:
                seen.add(target.lower())
                inner = spf_record_of(target, resolver)
                if inner is not None:
                    walk(inner, target, depth + 1)

    walk(record, domain, 0)
    return found


def spf_intended(record: str, domain: str, ips: list[str] | set[str],
                 zones: ZoneSet) -> dict[str, str]:
    """What ``record`` at ``domain`` means for each address, the lookup limit aside: its
    mechanisms are tried left to right, each alone (so no evaluation comes near the limit),
    and the first that matches decides (RFC 7208 section 4.6.2); then ``redirect``, or
    neutral (section 4.7). Evaluated in a scratch copy of ``zones``."""
    parsed = _spf().parse_record(record)
    scratch = spf_scratch_zones(zones)
    decided: dict[str, str] = {}
    for term in parsed.mechanisms:
        open_ips = [ip for ip in ips if ip not in decided]
        if not open_ips:
            break
        put_spf_record(scratch, domain, f"v=spf1 {term.text}")
        for ip in open_ips:
            result = _spf().check_host(ip, domain, _spf_sender(domain), resolver=scratch,
                                     trace=False)
            if result.verdict in ("permerror", "temperror") or (
                    result.mechanism == term.text and result.mechanism_domain == domain):
                decided[ip] = result.verdict
    open_ips = [ip for ip in ips if ip not in decided]
    if open_ips and parsed.redirect is not None:
        put_spf_record(scratch, domain, f"v=spf1 {parsed.redirect.text}")
        for ip in open_ips:
            decided[ip] = _spf().check_host(ip, domain, _spf_sender(domain), resolver=scratch,
                                          trace=False).verdict
    return {ip: decided.get(ip, "neutral") for ip in ips}


def _sort_ips(ips: Any) -> list[str]:
    import ipaddress

    return sorted(ips, key=lambda ip: (ipaddress.ip_address(ip).version,
                                       int(ipaddress.ip_address(ip))))


def _listing(ips: list[str], limit: int = 6) -> str:
    shown = ", ".join(ips[:limit])
    return shown + (f" and {len(ips) - limit} more" if len(ips) > limit else "")


def judge_spf_result(answer: Any, ip: str, domain: str, resolver: ResolverLike) -> Verdict:
    """Exercise: the SPF result (one of the seven) that ``ip`` gets for ``domain``."""
    given, value = answer_of(answer)
    if not given:
        return Verdict("unanswered", f"not answered yet: which SPF result does {ip} get for "
                       f"{domain}?")
    said = str(value).strip().lower()
    if said not in _spf().RESULTS:
        return Verdict("wrong", f"{str(value)!r} is not an SPF result; the seven results are "
                       f"{', '.join(_spf().RESULTS)} (RFC 7208 section 2.6).")
    result = _spf().check_host(ip, domain, _spf_sender(domain), resolver=resolver)
    if said == result.verdict:
        return Verdict("right", f"right: {result.summary}")
    return Verdict("wrong", f"{ip} does not get {said} for {domain}. Hint: read {domain}'s "
                   f"record from left to right; the first mechanism that matches {ip} "
                   "decides, and its qualifier (+ - ~ ?) gives the result.")


def judge_spf_fix(answer: Any, domain: str, zones: ZoneSet,
                  outsiders: tuple[str, ...] = SPF_OUTSIDERS) -> Verdict:
    """Exercise: a new SPF record for ``domain`` that stays within the lookup limits and
    authorizes exactly the senders its current record means to authorize.

    The answer (the record as one string) is tried in a scratch copy of ``zones``; the lab's
    zone is not changed. The addresses tried are those either record names (the ends of
    each network and the addresses just outside) and ``outsiders``; for each, the new
    record must give what the current one means (:func:`spf_intended`).
    """
    given, value = answer_of(answer)
    if not given:
        return Verdict("unanswered", f"not answered yet: write the new SPF record of {domain}.")
    if not isinstance(value, str):
        return Verdict("wrong", "the answer should be the record as one string, such as "
                       "'v=spf1 ip4:192.0.2.0/24 -all'.")
    record = " ".join(value.split())
    if not _spf().is_spf_record(record):
        return Verdict("wrong", f"{record[:40]!r} is not an SPF record: it must start with "
                       "'v=spf1' followed by a space (RFC 7208 section 4.5).")
    try:
        _spf().parse_record(record)
    except _spf().SPFSyntaxError as exc:
        return Verdict("wrong", f"the record has a syntax error, so it would be a permerror: "
                       f"{exc}")
    original = spf_record_of(domain, zones)
    if original is None:
        return Verdict("wrong", f"the lab has no SPF record for {domain} to compare with; "
                       f"was it changed? lab.zones.reset({domain!r}) puts it back.")
    scratch = spf_scratch_zones(zones)
    put_spf_record(scratch, domain, record)
    ips = _sort_ips(_spf_candidates(original, domain, zones)
                    | _spf_candidates(record, domain, scratch) | set(outsiders))
    intended = spf_intended(original, domain, ips, zones)
    got = {ip: _spf().check_host(ip, domain, _spf_sender(domain), resolver=scratch,
                               trace=False) for ip in ips}
    errors = [ip for ip in ips if got[ip].verdict in ("permerror", "temperror")
              and intended[ip] != got[ip].verdict]
    if errors:
        first = got[errors[0]]
        return Verdict("wrong", f"for {len(errors)} of {len(ips)} test addresses your record "
                       f"gives {first.verdict}, for example from {errors[0]}: {first.summary}")
    lost = [ip for ip in ips if intended[ip] == "pass" and got[ip].verdict != "pass"]
    gained = [ip for ip in ips if got[ip].verdict == "pass" and intended[ip] != "pass"]
    other = [ip for ip in ips if got[ip].verdict != intended[ip] and ip not in lost + gained]
    problems = []
    if lost:
        problems.append(f"these senders may no longer send: {_listing(lost)}")
    if gained:
        problems.append(f"your record lets these send, the old one does not: "
                        f"{_listing(gained)}")
    if other:
        problems.append(f"from {other[0]} your record gives {got[other[0]].verdict}, the "
                        f"old one means {intended[other[0]]}")
    if problems:
        return Verdict("wrong", "who may send changed: " + "; ".join(problems) + ". Hint: "
                       "list, with ip4:, the addresses the included records name.")
    allowed = sum(1 for ip in ips if intended[ip] == "pass")
    most = max(result.dns_terms for result in got.values())
    return Verdict("right", f"right: for all {len(ips)} test addresses your record gives the "
                   f"result the old one means ({allowed} may send, {len(ips) - allowed} may "
                   f"not), with at most {most} of {_spf().MAX_DNS_TERMS} DNS-querying terms.")


def check_spf_result(answer: Any, ip: str, domain: str, resolver: ResolverLike) -> None:
    """Check cell for :func:`judge_spf_result`."""
    report(judge_spf_result(answer, ip, domain, resolver))


def check_spf_fix(answer: Any, domain: str, zones: ZoneSet,
                  outsiders: tuple[str, ...] = SPF_OUTSIDERS) -> None:
    """Check cell for :func:`judge_spf_fix`."""
    report(judge_spf_fix(answer, domain, zones, outsiders))
