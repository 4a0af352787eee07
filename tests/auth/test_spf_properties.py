"""Property-based tests of labsupport.auth.spf (hypothesis, a test-only dependency).

Random and mutated records, random DNS answers (addresses, MX and PTR sets of any size,
several TXT records, aliases, timeouts and server failures), random client addresses,
senders and HELO names: check_host() always returns one of the seven results and never
raises anything else, and the limits of RFC 7208 section 4.6.4 always hold, counted on
the resolver's side: 10 DNS-querying terms, 10 MX or PTR names per term, 2 void lookups.
"""

from __future__ import annotations

import ipaddress
from collections import Counter
from typing import Any

import pytest

hypothesis = pytest.importorskip("hypothesis", reason="hypothesis is not installed (a "
                                                      "test-only dependency)")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from labsupport.auth.spf import (  # noqa: E402
    MAX_DNS_TERMS,
    MAX_MX_NAMES,
    MAX_PTR_NAMES,
    MAX_VOID_LOOKUPS,
    RESULTS,
    SPFArgumentError,
    SPFSyntaxError,
    check_host,
    parse_record,
    spf_verdict,
)
from labsupport.dns.zone import ZoneSet  # noqa: E402

SETTINGS = settings(max_examples=200, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.too_slow])

#: Every DNS question check_host() may ask, at most: the domain's TXT; per DNS-querying
#: term one question plus, for mx and ptr, one per name (at most 10); the %{p} macro's
#: PTR and address questions once per check; and the explanation's TXT.
MAX_QUERIES = 1 + MAX_DNS_TERMS * (1 + max(MAX_MX_NAMES, MAX_PTR_NAMES)) + \
    (1 + MAX_PTR_NAMES) + 1


class CountingResolver:
    """The zone, counting every question asked of it."""

    def __init__(self, zones: ZoneSet) -> None:
        self.zones = zones
        self.asked: list[tuple[str, str]] = []

    def resolve(self, qname: Any, rdtype: Any = "A", *args: Any, **kwargs: Any) -> Any:
        self.asked.append((str(qname).lower(), str(rdtype)))
        return self.zones.resolve(qname, rdtype, *args, **kwargs)


# -- strategies ---------------------------------------------------------------------------

NAMES = ["d.test", "a.test", "b.test", "mx.test", "inc1.test", "inc2.test", "gone.test",
         "slow.test", "broken.test", "alias.test", "loop.test"]
TARGETS = [*NAMES, "%{d}", "%{o}", "%{h}", "%{l}.a.test", "%{ir}.%{v}.b.test", "%{d2}",
           "%{p}.a.test", "%{L}.b.test", "%{s}", "%{i}.x.test", "%{d1r}", "%{h2}.test",
           "%{l1r-}.a.test", "%{o}."]

# Strategies are made once, here: hypothesis validates every new strategy object, which
# costs far more than drawing from one.
qualifier = st.sampled_from(["", "+", "-", "~", "?"])
cidr4 = st.one_of(st.just(""), st.just(""), st.integers(0, 33).map(lambda n: f"/{n}"))
cidr6 = st.one_of(st.just(""), st.just(""), st.integers(0, 129).map(lambda n: f"//{n}"))
prefix6 = st.one_of(st.just(""), st.integers(0, 129).map(lambda n: f"/{n}"))
target = st.sampled_from(TARGETS)
kinds = st.sampled_from(["all", "include", "include", "a", "a", "a", "mx", "mx", "ptr", "ip4",
                         "ip6", "exists", "exists", "redirect", "exp", "unknown"])
modifier_name = st.sampled_from(["moo", "x-y", "a.b_c", "default", "op", "v"])
ip4s = st.ip_addresses(v=4)
ip6s = st.ip_addresses(v=6)


@st.composite
def mechanism(draw: st.DrawFn) -> str:
    kind = draw(kinds)
    q = draw(qualifier)
    if kind == "all":
        return q + "all"
    if kind in ("include", "exists"):
        return f"{q}{kind}:{draw(target)}"
    if kind in ("a", "mx"):
        spec = ":" + draw(target) if draw(st.booleans()) else ""
        return f"{q}{kind}{spec}{draw(cidr4)}{draw(cidr6)}"
    if kind == "ptr":
        return q + "ptr" + (":" + draw(target) if draw(st.booleans()) else "")
    if kind == "ip4":
        return f"{q}ip4:{draw(ip4s)}{draw(cidr4)}"
    if kind == "ip6":
        return f"{q}ip6:{draw(ip6s)}{draw(prefix6)}"
    if kind in ("redirect", "exp"):
        return f"{kind}={draw(target)}"
    return f"{draw(modifier_name)}={draw(target)}"


terms_list = st.lists(mechanism(), min_size=2, max_size=14)
mutations = st.sampled_from([0, 0, 0, 0, 1, 2, 3])
insertions = st.text(min_size=1, max_size=3)
positions = st.floats(0, 1)


@st.composite
def record(draw: st.DrawFn) -> str:
    """An SPF record from the grammar, sometimes mutated into something else."""
    text = " ".join(["v=spf1", *draw(terms_list)])
    for _ in range(draw(mutations)):
        at = 6 + int(draw(positions) * (len(text) - 6))
        if draw(st.booleans()) and at < len(text):
            text = text[:at] + text[at + 1:]
        else:
            text = text[:at] + draw(insertions) + text[at:]
    return text


txt_value = st.one_of(
    record(),
    record(),
    record(),
    st.text(max_size=80),
    st.text(max_size=40).map(lambda t: "v=spf1 " + t),
    st.just("v=spf1"),
)
address4 = st.ip_addresses(v=4).map(str)
address6 = st.ip_addresses(v=6).map(str)
host = st.sampled_from([*NAMES, "mail.a.test", "h.b.test", "."])
alias_target = st.sampled_from(["a.test.", "gone.test.", "loop.test."])
txt_lists = {n: st.lists(txt_value, max_size=n) for n in (1, 3)}
a_lists = st.lists(address4, max_size=3)
aaaa_lists = st.lists(address6, max_size=1)
mx_lists = {n: st.lists(st.tuples(st.integers(0, 65535), host), max_size=n,
                        unique_by=lambda m: m[1]) for n in (2, 13)}


@st.composite
def zone(draw: st.DrawFn) -> ZoneSet:
    """A zone of random answers for the names the records talk about."""
    zones = ZoneSet.empty()
    for name in NAMES:
        if name == "alias.test":
            zones.add(name, "CNAME", draw(alias_target))
            continue
        if name == "loop.test":
            zones.add(name, "CNAME", "alias.test.")
            continue
        if name == "gone.test":
            continue
        many = name in ("d.test", "mx.test")
        for value in draw(txt_lists[3 if name.startswith("inc") else 1]):
            zones.add(name, "TXT", [value[i:i + 200] for i in range(0, len(value), 200)]
                      or [""])
        for value in draw(a_lists):
            zones.add(name, "A", value)
        for value in draw(aaaa_lists):
            zones.add(name, "AAAA", value)
        exchanges = draw(mx_lists[13 if many else 2])
        if exchanges:
            zones.set(name, "MX", *(f"{p} {h.rstrip('.')}." for p, h in exchanges))
    for name in ("mail.a.test", "h.b.test"):
        zones.add(name, "A", draw(address4))
    zones.fail("slow.test", "timeout")
    zones.fail("broken.test", "servfail")
    return zones


client = st.one_of(address4, address6, st.sampled_from(["::ffff:192.0.2.1", "192.0.2.1"]))


def add_reverse(zones: ZoneSet, ip: str, names: list[str]) -> None:
    if names:
        reverse = ipaddress.ip_address(ip).reverse_pointer
        zones.set(reverse, "PTR", *(n if n == "." else n.rstrip(".") + "." for n in names))


# -- the properties -----------------------------------------------------------------------


def assert_within_limits(result: Any, asked: list[tuple[str, str]]) -> None:
    assert result.verdict in RESULTS
    assert result.dns_terms <= MAX_DNS_TERMS
    assert result.void_lookups <= MAX_VOID_LOOKUPS + 1
    if result.void_lookups > MAX_VOID_LOOKUPS:
        assert result.verdict == "permerror"
    assert result.dns_queries == len(asked)
    assert len(asked) <= MAX_QUERIES, (len(asked), asked)
    by_type = Counter(rdtype for _name, rdtype in asked)
    assert by_type["MX"] <= MAX_DNS_TERMS
    assert by_type["PTR"] <= MAX_DNS_TERMS + 1  # ptr terms, and %{p} once
    assert by_type["TXT"] <= 1 + MAX_DNS_TERMS + 1  # the domain, includes/redirects, exp
    assert by_type["A"] + by_type["AAAA"] <= MAX_DNS_TERMS * (1 + MAX_MX_NAMES) + \
        MAX_PTR_NAMES


@SETTINGS
@given(zones=zone(), top=record(), ip=client,
       ptrs=st.lists(host, max_size=13, unique=True),
       sender=st.one_of(st.text(max_size=30), st.sampled_from(["bob@d.test", "@d.test",
                                                                "x-y+z@d.test", ""])),
       helo=st.one_of(st.none(), st.text(max_size=30), st.just("mail.a.test")))
def test_any_record_and_answers_give_a_result_within_the_limits(
        zones: ZoneSet, top: str, ip: str, ptrs: list[str], sender: str,
        helo: str | None) -> None:
    zones.set("d.test", "TXT", [top[i:i + 200] for i in range(0, len(top), 200)] or [""])
    add_reverse(zones, ip, ptrs)
    resolver = CountingResolver(zones)
    result = check_host(ip, "d.test", sender, helo=helo, resolver=resolver)
    assert_within_limits(result, resolver.asked)
    assert str(result) and result._repr_html_()
    # The trace is for people; turning it off changes nothing else.
    quiet = check_host(ip, "d.test", sender, helo=helo, resolver=CountingResolver(zones),
                       trace=False)
    assert (quiet.verdict, quiet.explanation, quiet.dns_terms) == \
        (result.verdict, result.explanation, result.dns_terms)
    assert not quiet.trace


def _identity_zone() -> ZoneSet:
    zones = ZoneSet.empty()
    zones.add("d.test", "TXT", "v=spf1 a:%{h} mx exists:%{l}.%{o}.b.test -all")
    zones.add("a.test", "TXT", "v=spf1 -a:%{h} ~all exp=b.test")
    zones.add("b.test", "TXT", "%{s} %{l} %{o} %{d} %{h} %{c} %{r} %{t} %{i} %{p} %{v}")
    zones.add("mail.a.test", "A", "192.0.2.1")
    zones.add("mail.a.test", "TXT", "v=spf1 a -all")
    return zones


IDENTITY_ZONE = _identity_zone()
identity_text = st.one_of(st.text(max_size=40), st.sampled_from(
    ["bob@d.test", "<bob@a.test>", "<>", "@d.test", "d.test", "x@mail.a.test", "a@[1.2.3.4]",
     "mail.a.test", "[192.0.2.1]", "OEMCOMPUTER", "a..b.test", "x" * 70 + ".test"]))


@SETTINGS
@given(ip=client, mail_from=identity_text, helo=st.one_of(st.none(), identity_text),
       check_helo=st.booleans())
def test_any_identity_gives_a_result(ip: str, mail_from: str, helo: str | None,
                                     check_helo: bool) -> None:
    resolver = CountingResolver(IDENTITY_ZONE)
    result = spf_verdict(ip, mail_from, helo, resolver, check_helo=check_helo)
    assert result.verdict in RESULTS
    assert result.identity in ("mailfrom", "helo")


@SETTINGS
@given(text=st.one_of(record(), st.text(max_size=120)))
def test_a_record_parses_or_fails_with_a_syntax_error(text: str) -> None:
    try:
        parsed = parse_record(text)
    except SPFSyntaxError as exc:
        assert str(exc)
        zones = ZoneSet.empty()
        if text.isascii() and text[:7].lower() in ("v=spf1 ", "v=spf1"):
            zones.add("d.test", "TXT", [text[i:i + 200] for i in range(0, len(text), 200)])
            result = check_host("192.0.2.1", "d.test", "a@d.test", resolver=zones)
            assert result.verdict == "permerror"
    else:
        assert parsed.text == text and len(parsed.mechanisms) <= len(parsed.terms)


@SETTINGS
@given(ip=st.one_of(st.text(max_size=45), st.integers(), st.none(), st.binary(max_size=16)))
def test_any_ip_argument_is_a_result_or_a_clear_value_error(ip: Any) -> None:
    zones = ZoneSet.empty()
    try:
        result = check_host(ip, "d.test", "a@d.test", resolver=zones)
    except SPFArgumentError as exc:
        assert isinstance(exc, ValueError) and "IP" in str(exc)
    else:
        assert result.verdict == "none"


# -- the limits, with an exact expectation ------------------------------------------------


def _limits_zone() -> ZoneSet:
    zones = ZoneSet.empty()
    zones.add("far.test", "A", "203.0.113.1")  # exists, but never the client
    for n in range(12):
        zones.add(f"far{n}.test", "A", "203.0.113.1")
    return zones


@SETTINGS
@given(top=st.lists(st.one_of(st.just(-1), st.integers(0, 6)), max_size=14),
       voids=st.integers(0, 4), ip_terms=st.integers(0, 3))
def test_the_dns_term_and_void_limits_are_exact(top: list[int], voids: int,
                                                ip_terms: int) -> None:
    """A record of ``a`` terms that find an address but do not match, includes of
    records made of such terms (-1 stands for one ``a`` term, n for an include of n),
    ``ip4`` terms (which count for nothing) and lookups that find nothing: permerror
    exactly when more than 10 DNS-querying terms, or more than 2 void lookups, would be
    evaluated (RFC 7208 section 4.6.4); neutral otherwise."""
    zones = _limits_zone()
    terms: list[str] = ["ip4:198.51.100.0/24"] * ip_terms
    events: list[str] = []  # "term" or "void", in evaluation order
    for i, item in enumerate(top):
        if item < 0:
            terms.append(f"a:far{i % 12}.test")
            events.append("term")
        else:
            name = f"inc{i}.test"
            zones.add(name, "TXT", " ".join(["v=spf1", *[f"a:far{j}.test" for j in range(item)]]))
            terms.append(f"include:{name}")
            events.extend(["term"] * (1 + item))
    for v in range(voids):
        terms.append(f"a:gone{v}.test")
        events.extend(["term", "void"])
    zones.add("d.test", "TXT", " ".join(["v=spf1", *terms]))
    expected = "neutral"
    counted = {"term": 0, "void": 0}
    for event in events:
        counted[event] += 1
        if counted["term"] > MAX_DNS_TERMS or counted["void"] > MAX_VOID_LOOKUPS:
            expected = "permerror"
            break
    resolver = CountingResolver(zones)
    result = check_host("192.0.2.1", "d.test", "a@d.test", resolver=resolver)
    assert result.verdict == expected, result.text()
    assert_within_limits(result, resolver.asked)


@SETTINGS
@given(mx_count=st.integers(0, 14), ptr_count=st.integers(0, 14),
       match_at=st.integers(0, 14))
def test_the_mx_and_ptr_name_limits_are_exact(mx_count: int, ptr_count: int,
                                              match_at: int) -> None:
    """More than 10 MX names is a permerror; of more than 10 PTR names only the first
    10 are checked (RFC 7208 section 4.6.4). The client is the address of name number
    ``match_at`` (if there is one)."""
    zones = ZoneSet.empty()
    for n in range(14):
        zones.add(f"h{n}.d.test", "A", "192.0.2.1" if n == match_at else "203.0.113.1")
    if mx_count:
        zones.set("mx.test", "MX", *(f"{n} h{n}.d.test." for n in range(mx_count)))
    if ptr_count:
        zones.set("1.2.0.192.in-addr.arpa", "PTR",
                  *(f"h{n}.d.test." for n in range(ptr_count)))
    zones.add("m.test", "TXT", "v=spf1 mx:mx.test")
    zones.add("p.test", "TXT", "v=spf1 ptr:d.test")
    mx = check_host("192.0.2.1", "m.test", "a@m.test", resolver=zones)
    if mx_count > MAX_MX_NAMES:
        assert mx.verdict == "permerror"
    else:
        assert mx.verdict == ("pass" if match_at < mx_count else "neutral")
    resolver = CountingResolver(zones)
    ptr = check_host("192.0.2.1", "p.test", "a@p.test", resolver=resolver)
    # PTR answers come back in the order they were added; the first 10 count.
    assert ptr.verdict == ("pass" if match_at < min(ptr_count, MAX_PTR_NAMES) else "neutral")
    assert sum(1 for _n, t in resolver.asked if t == "A") <= MAX_PTR_NAMES
