"""labsupport.dns.mx: MX selection for every domain of the lab world (RFC 5321 section 5.1,
RFC 7505), through the lab's DNS server and through the in-memory zones alike."""

from __future__ import annotations

import random
from collections.abc import Iterator

import dns.resolver
import pytest

from labsupport.dns.mx import (
    RFC_ALIAS,
    RFC_EXCHANGE,
    RFC_MX,
    RFC_NULL_MX,
    MXHost,
    MXResult,
    mx_hosts,
    order_by_preference,
)
from labsupport.dns.zone import ZoneSet


@pytest.fixture(params=["lab", "memory"])
def resolver(request: pytest.FixtureRequest):
    """The lab's resolver (real UDP to the lab's server) or the in-memory ZoneSet."""
    if request.param == "lab":
        return request.getfixturevalue("lab").resolver
    return request.getfixturevalue("world")


@pytest.fixture(params=["lab", "memory"])
def editable(request: pytest.FixtureRequest) -> Iterator[tuple[ZoneSet, object]]:
    """(zones a test may edit, a resolver that sees the edits), put back afterwards."""
    if request.param == "memory":
        zones = request.getfixturevalue("zones")
        yield zones, zones
        return
    lab = request.getfixturevalue("clean_lab")
    # The lab's resolver waits up to 4 s for a name set to time out; the same resolver
    # with a short lifetime keeps this fast.
    fast = dns.resolver.Resolver(configure=False)
    fast.nameservers = list(lab.resolver.nameservers)
    fast.port = lab.resolver.port
    fast.timeout = fast.lifetime = 0.3
    yield lab.zones, fast


def rfcs(result: MXResult) -> set[str]:
    return {step.rfc for step in result.trace if step.rfc}


# -- the lab world -------------------------------------------------------------------------


def test_northwind_primary_then_backup(resolver) -> None:
    result = mx_hosts("northwind.test", resolver, rng=random.Random(1))
    assert result.verdict == "mx" and result.deliverable
    assert result.order == ["mx1.northwind.test", "mx2.northwind.test"]
    assert result.records == ((10, "mx1.northwind.test"), (20, "mx2.northwind.test"))
    assert result.hosts[0].addresses == ("192.0.2.25", "2001:db8:1::25")
    assert result.problems == [] and result.smtp_reply is None
    assert RFC_MX in rfcs(result)
    assert result.summary == ("Mail for northwind.test goes to mx1.northwind.test, then "
                              "mx2.northwind.test if that fails.")


def test_northwind_order_never_changes(resolver) -> None:
    orders = {tuple(mx_hosts("northwind.test", resolver, rng=random.Random(s)).order)
              for s in range(10)}
    assert orders == {("mx1.northwind.test", "mx2.northwind.test")}


def test_campus_equal_preferences_are_shuffled(resolver) -> None:
    orders = {tuple(mx_hosts("campus.test", resolver, rng=random.Random(s)).order)
              for s in range(20)}
    assert orders == {("mx-a.campus.test", "mx-b.campus.test"),
                      ("mx-b.campus.test", "mx-a.campus.test")}
    again = [mx_hosts("campus.test", resolver, rng=random.Random(7)).order for _ in range(3)]
    assert again[0] == again[1] == again[2]
    result = mx_hosts("campus.test", resolver, rng=random.Random(7))
    assert any("share preference 10" in s.text and s.rfc == RFC_MX for s in result.trace)


def test_tinyshop_implicit_mx(resolver) -> None:
    result = mx_hosts("tinyshop.test", resolver)
    assert result.verdict == "implicit-mx" and result.deliverable
    assert result.records == ()
    (host,) = result.hosts
    assert (host.preference, host.name) == (0, "tinyshop.test")
    assert host.addresses == ("198.51.100.90", "2001:db8:3::90")
    assert RFC_MX in rfcs(result)


def test_parked_null_mx(resolver) -> None:
    result = mx_hosts("parked.test", resolver)
    assert result.verdict == "null-mx" and not result.deliverable
    assert result.smtp_reply == "556 5.1.10 Recipient address has null MX"
    assert result.records == ((0, "."),)
    assert result.hosts == ()
    assert RFC_NULL_MX in rfcs(result)


def test_careless_alias_is_a_problem_but_deliverable(resolver) -> None:
    result = mx_hosts("careless.test", resolver)
    assert result.verdict == "mx" and result.deliverable
    assert result.problems == ["alias"]
    (host,) = result.hosts
    assert host.usable and host.addresses == ("203.0.113.25",)
    assert "server.careless.test" in (host.problem or "")
    assert RFC_ALIAS in rfcs(result)
    assert "But:" in result.summary


def test_oldsite_mx_host_without_address(resolver) -> None:
    result = mx_hosts("oldsite.example", resolver)
    assert result.verdict == "no-mail-host" and not result.deliverable
    assert result.problems == ["no-address"]
    assert result.smtp_reply == "550 5.1.2 Bad destination system address"
    assert RFC_MX in rfcs(result)


def test_homebrew_ip_literal(resolver) -> None:
    result = mx_hosts("homebrew.example", resolver)
    assert result.verdict == "no-mail-host" and not result.deliverable
    assert result.problems == ["ip-literal"]
    assert result.hosts[0].name == "203.0.113.82"
    assert RFC_EXCHANGE in rfcs(result)


@pytest.mark.parametrize(("domain", "host"), [
    ("mailcloud.example", "mx.mailcloud.example"),
    ("alumni.example", "mx.alumni.example"),
    ("phisher.example", "mx.phisher.example"),
])
def test_plain_single_mx_domains(resolver, domain: str, host: str) -> None:
    result = mx_hosts(domain, resolver)
    assert result.verdict == "mx" and result.order == [host] and result.problems == []


def test_every_mail_domain_gets_a_verdict(resolver, world: ZoneSet) -> None:
    expected = {
        "alumni.example": "mx", "brightside.test": "mx", "campus.test": "mx",
        "careless.test": "mx", "fernhill.test": "no-mail-host",
        "homebrew.example": "no-mail-host", "lab.test": "no-mail-host",
        "mailcloud.example": "mx", "newco.test": "no-mail-host", "northwind.test": "mx",
        "oldsite.example": "no-mail-host",
        "parked.test": "null-mx", "phisher.example": "mx", "riverbank.example": "mx",
        "tinyshop.test": "implicit-mx",
    }
    got = {d: mx_hosts(d, resolver, rng=random.Random(0)).verdict for d in world.mail_domains()}
    assert got == expected


def test_a_name_outside_the_lab(resolver) -> None:
    result = mx_hosts("example.com", resolver)
    assert result.verdict == "outside-lab" and not result.deliverable


def test_a_domain_that_does_not_exist(resolver) -> None:
    result = mx_hosts("nosuch.northwind.test", resolver)
    assert result.verdict == "no-domain"
    assert result.smtp_reply.startswith("550 ")


@pytest.mark.parametrize("text", ["bad..name", "", "x" * 300, "   ", None, "x", "test."],
                         ids=["empty-label", "empty", "too-long", "blank", "none",
                              "single-label", "top-level-only"])
def test_invalid_names_are_a_verdict_not_an_exception(resolver, text) -> None:
    result = mx_hosts(text, resolver)
    assert result.verdict == "invalid-name"
    assert "is not a fully qualified domain name" in result.summary
    assert not result.deliverable and result.hosts == ()


def test_names_with_a_final_dot_or_capitals(resolver) -> None:
    # Over the wire, name compression may give the MX targets the question's spelling
    # (mx1.NorthWind.TEST): DNS names compare without regard to case.
    for text in ("northwind.test.", "NorthWind.TEST"):
        result = mx_hosts(text, resolver)
        assert result.verdict == "mx"
        assert [h.lower() for h in result.order] == ["mx1.northwind.test", "mx2.northwind.test"]


# -- made by live edits --------------------------------------------------------------------


def test_a_domain_set_to_time_out_is_a_temporary_failure(editable) -> None:
    zones, resolver = editable
    zones.fail("northwind.test", "timeout")
    result = mx_hosts("northwind.test", resolver)
    assert result.verdict == "temporary-failure" and not result.deliverable
    assert result.smtp_reply == "451 4.4.3 Directory server failure"


def test_a_domain_set_to_servfail_is_a_temporary_failure(editable) -> None:
    zones, resolver = editable
    zones.fail("campus.test", "servfail")
    assert mx_hosts("campus.test", resolver).verdict == "temporary-failure"


def test_hosts_that_fail_only_for_now_are_a_temporary_failure(editable) -> None:
    zones, resolver = editable
    zones.fail("mx1.northwind.test", "servfail")
    zones.fail("mx2.northwind.test", "servfail")
    result = mx_hosts("northwind.test", resolver)
    assert result.verdict == "temporary-failure"
    assert result.problems == ["temporary", "temporary"]


def test_one_failing_host_leaves_the_other(editable) -> None:
    zones, resolver = editable
    zones.fail("mx1.northwind.test", "servfail")
    result = mx_hosts("northwind.test", resolver)
    assert result.verdict == "mx" and result.order == ["mx2.northwind.test"]
    assert result.problems == ["temporary"]


def test_null_mx_beside_another_mx_warns_and_uses_the_other(editable) -> None:
    zones, resolver = editable
    zones.add("northwind.test", "MX", "0 .")
    result = mx_hosts("northwind.test", resolver)
    assert result.verdict == "mx" and result.deliverable
    assert result.order == ["mx1.northwind.test", "mx2.northwind.test"]
    assert "null-mx" in result.problems
    warnings = [s for s in result.trace if s.kind == "warning"]
    assert any(s.rfc == RFC_NULL_MX and "null MX" in s.text for s in warnings)
    assert result.records[0] == (0, ".")


def test_fixing_careless_removes_the_alias_problem(editable) -> None:
    zones, resolver = editable
    zones.set("careless.test", "MX", "10 server.careless.test.")
    result = mx_hosts("careless.test", resolver)
    assert result.verdict == "mx" and result.problems == []
    assert result.order == ["server.careless.test"]


def test_an_mx_host_outside_the_lab(editable) -> None:
    zones, resolver = editable
    zones.set("northwind.test", "MX", "10 mx.example.com.")
    result = mx_hosts("northwind.test", resolver)
    assert result.verdict == "no-mail-host" and result.problems == ["outside-lab"]


def test_a_domain_that_is_an_alias(editable) -> None:
    zones, resolver = editable
    zones.add("mail-alias.northwind.test", "CNAME", "campus.test.")
    result = mx_hosts("mail-alias.northwind.test", resolver, rng=random.Random(0))
    assert result.verdict == "mx"
    assert sorted(result.order) == ["mx-a.campus.test", "mx-b.campus.test"]
    assert any("is an alias of campus.test" in s.text for s in result.trace)


def test_a_domain_with_no_mx_and_no_address(editable) -> None:
    zones, resolver = editable
    zones.add("empty.northwind.test", "TXT", "nothing here")
    result = mx_hosts("empty.northwind.test", resolver)
    assert result.verdict == "no-mail-host" and result.problems == ["no-address"]


# -- ordering ------------------------------------------------------------------------------


def test_order_by_preference_sorts_and_drops_null_mx() -> None:
    records = [(20, "b.test"), (0, "."), (10, "a.test"), (30, "c.test")]
    assert order_by_preference(records, random.Random(0)) == [
        (10, "a.test"), (20, "b.test"), (30, "c.test")]
    assert order_by_preference([(0, ".")], random.Random(0)) == []
    assert order_by_preference([], random.Random(0)) == []


def test_order_by_preference_shuffles_only_within_a_preference() -> None:
    records = [(10, "a.test"), (10, "b.test"), (10, "c.test"), (5, "first.test"),
               (50, "last.test")]
    seen = set()
    for seed in range(30):
        ordered = order_by_preference(records, random.Random(seed))
        assert ordered[0] == (5, "first.test") and ordered[-1] == (50, "last.test")
        seen.add(tuple(h for _, h in ordered[1:4]))
    assert len(seen) > 1
    # The input order does not matter for a given seed: only the records do.
    assert order_by_preference(list(reversed(records)), random.Random(3)) == (
        order_by_preference(records, random.Random(3)))


# -- rendering -----------------------------------------------------------------------------


def test_result_renders_as_text_and_html(world: ZoneSet) -> None:
    result = mx_hosts("careless.test", world)
    text = str(result)
    assert text.startswith("Mail for careless.test: mx\n")
    assert "Trace:" in text and f"[{RFC_ALIAS}]" in text
    page = result._repr_html_()
    assert page.count("<table>") == 1 and "mail.careless.test" in page
    assert page.index("<table>") < page.index('<div style="margin-top:4px">')


def test_mx_host_text() -> None:
    assert str(MXHost(10, "mx1.northwind.test", ("192.0.2.25",))) == (
        " 10 mx1.northwind.test -> 192.0.2.25")
    broken = MXHost(10, "mx.oldsite.example", usable=False, problem_kind="no-address")
    assert str(broken).endswith("no address  (no-address)")
