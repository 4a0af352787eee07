"""labsupport.dns.zone: the in-memory zones, their resolver contract and live edits."""

from __future__ import annotations

import dns.exception
import dns.flags
import dns.name
import dns.rcode
import dns.rdatatype
import dns.resolver
import pytest
from lab_helpers import ZONES_DIR

from labsupport.core.errors import LabError, ZoneEditError
from labsupport.dns.zone import (
    DEFAULT_TTL,
    MAX_CNAME_CHAIN,
    ZoneSet,
    make_rdata,
    to_name,
    to_rdtype,
)

#: A small zone for the corners the lab world does not have: an empty non-terminal
#: (sub.ent.test), wildcards (RFC 4592), a CNAME loop, and an SOA whose TTL is below
#: its MINIMUM.
ENT_ZONE = """\
$ORIGIN ent.test.
$TTL 300
@            IN SOA   ns.ent.test. hostmaster.ent.test. 1 3600 600 604800 900
@            IN NS    ns
ns           IN A     192.0.2.1
host.sub     IN A     192.0.2.2
*.wild       IN A     192.0.2.3
*.wild       IN MX    10 ns.ent.test.
real.wild    IN TXT   "I exist"
*.alias      IN CNAME host.sub
loop1        IN CNAME loop2
loop2        IN CNAME loop1
"""


@pytest.fixture
def ent() -> ZoneSet:
    return ZoneSet.from_text(ENT_ZONE, "ent.test")


def _strings(answer: dns.resolver.Answer) -> tuple[bytes, ...]:
    return answer.rrset[0].strings


# -- building --------------------------------------------------------------------------


def test_from_directory_serves_every_zone_file(world: ZoneSet) -> None:
    files = sorted(p.name[: -len(".zone")] for p in ZONES_DIR.glob("*.zone"))
    assert world.origins == files
    assert "northwind.test" in world.mail_domains()
    assert not any(d.endswith(".arpa") for d in world.mail_domains())


def test_from_directory_without_zone_files_fails(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match="no \\*.zone files"):
        ZoneSet.from_directory(tmp_path)


def test_zone_text_that_does_not_parse_is_a_zone_edit_error() -> None:
    with pytest.raises(ZoneEditError, match="does not parse"):
        ZoneSet.from_text("@ IN SOA this is not an soa", "broken.test")


def test_zone_for_finds_the_longest_match(world: ZoneSet) -> None:
    assert world.zone_for("mx1.northwind.test") == dns.name.from_text("northwind.test.")
    assert world.zone_for("25.2.0.192.in-addr.arpa") == dns.name.from_text(
        "2.0.192.in-addr.arpa.")
    assert world.zone_for("example.com") is None


def test_names_and_zone_text(world: ZoneSet) -> None:
    assert "mx1.northwind.test" in world.names()
    text = world.zone_text("northwind.test")
    assert "mx1.northwind.test." in text and "SOA" in text
    with pytest.raises(ZoneEditError, match="not a lab zone"):
        world.zone_text("nosuch.test")


def test_load_text_replaces_a_zone(zones: ZoneSet) -> None:
    before = zones.generation
    zones.load_text("$TTL 60\n@ SOA ns.lab.test. h.lab.test. 1 2 3 4 5\n@ NS ns.lab.test.\n"
                    "@ A 192.0.2.99\n", "northwind.test")
    assert zones.generation > before
    assert [r.address for r in zones.resolve("northwind.test", "A")] == ["192.0.2.99"]
    with pytest.raises(dns.resolver.NXDOMAIN):
        zones.resolve("mx1.northwind.test", "A")


# -- the resolver contract -----------------------------------------------------------------


def test_resolve_returns_a_dnspython_answer(world: ZoneSet) -> None:
    answer = world.resolve("northwind.test", "MX")
    assert isinstance(answer, dns.resolver.Answer)
    assert sorted((r.preference, r.exchange.to_text()) for r in answer) == [
        (10, "mx1.northwind.test."), (20, "mx2.northwind.test.")]
    assert answer.rrset.ttl == 3600
    assert answer.response.flags & dns.flags.AA
    assert answer.qname == dns.name.from_text("northwind.test.")


def test_resolve_accepts_names_and_numbers(world: ZoneSet) -> None:
    by_text = world.resolve("mx1.northwind.test", "A")
    by_objects = world.resolve(dns.name.from_text("mx1.northwind.test"), dns.rdatatype.A)
    relative = world.resolve(dns.name.from_text("mx1.northwind.test", origin=None), 1)
    assert [r.address for r in by_text] == [r.address for r in by_objects] == [
        r.address for r in relative] == ["192.0.2.25"]


def test_nxdomain_carries_the_response_with_the_soa(world: ZoneSet) -> None:
    with pytest.raises(dns.resolver.NXDOMAIN) as caught:
        world.resolve("nosuch.northwind.test", "A")
    name = dns.name.from_text("nosuch.northwind.test.")
    assert caught.value.qnames() == [name]
    response = caught.value.responses()[name]
    assert response.rcode() == dns.rcode.NXDOMAIN
    assert [r.rdtype for r in response.authority] == [dns.rdatatype.SOA]


def test_nodata_raises_no_answer(world: ZoneSet) -> None:
    # README: northwind.test has no AAAA at the apex, on purpose.
    with pytest.raises(dns.resolver.NoAnswer):
        world.resolve("northwind.test", "AAAA")


def test_nodata_without_raising_gives_an_answer_with_no_rrset(world: ZoneSet) -> None:
    answer = world.resolve("northwind.test", "AAAA", raise_on_no_answer=False)
    assert isinstance(answer, dns.resolver.Answer)
    assert answer.rrset is None
    assert answer.response.rcode() == dns.rcode.NOERROR
    assert [r.rdtype for r in answer.response.authority] == [dns.rdatatype.SOA]


def test_a_name_set_to_time_out_raises_lifetime_timeout(zones: ZoneSet) -> None:
    zones.fail("mx1.northwind.test", "timeout")
    with pytest.raises(dns.resolver.LifetimeTimeout):
        zones.resolve("mx1.northwind.test", "A")
    # A LifetimeTimeout is a dns.exception.Timeout, which is what callers catch.
    with pytest.raises(dns.exception.Timeout):
        zones.resolve("mx1.northwind.test", "AAAA")
    assert [r.address for r in zones.resolve("mx2.northwind.test", "A")] == ["192.0.2.26"]


def test_servfail_raises_no_nameservers(zones: ZoneSet) -> None:
    zones.fail("northwind.test", "servfail")
    with pytest.raises(dns.resolver.NoNameservers, match="SERVFAIL"):
        zones.resolve("northwind.test", "MX")


def test_clear_failures_answers_again(zones: ZoneSet) -> None:
    zones.fail("northwind.test", "servfail")
    zones.clear_failures()
    assert len(zones.resolve("northwind.test", "MX")) == 2


def test_fail_knows_only_timeout_and_servfail(zones: ZoneSet) -> None:
    with pytest.raises(ValueError, match="timeout"):
        zones.fail("northwind.test", "sometimes")


def test_names_outside_every_zone_are_refused(world: ZoneSet) -> None:
    with pytest.raises(dns.resolver.NoNameservers, match="REFUSED"):
        world.resolve("www.example.com", "A")


def test_other_classes_and_meta_queries_are_refused_as_dnspython_does(world: ZoneSet) -> None:
    world.resolve("northwind.test", "MX")  # an IN answer is ready for the same text...
    with pytest.raises(dns.resolver.NoNameservers):
        world.resolve("northwind.test", "MX", rdclass="CH")  # ...but CH must not get it
    with pytest.raises(dns.resolver.NoMetaqueries):
        world.resolve("northwind.test", "ANY")


def test_cname_chain_inside_the_zones(world: ZoneSet) -> None:
    answer = world.resolve("www.tinyshop.test", "A")
    assert answer.canonical_name == dns.name.from_text("tinyshop.test.")
    assert [r.address for r in answer] == ["198.51.100.90"]
    kinds = [r.rdtype for r in answer.response.answer]
    assert kinds == [dns.rdatatype.CNAME, dns.rdatatype.A]


def test_cname_to_a_name_without_that_type_is_nodata(world: ZoneSet) -> None:
    # www.tinyshop.test -> tinyshop.test, which has no MX.
    found = world.lookup("www.tinyshop.test", "MX")
    assert found.rcode == dns.rcode.NOERROR and found.nodata
    assert [r.rdtype for r in found.answer] == [dns.rdatatype.CNAME]
    with pytest.raises(dns.resolver.NoAnswer):
        world.resolve("www.tinyshop.test", "MX")


def test_cname_query_returns_the_cname_itself(world: ZoneSet) -> None:
    answer = world.resolve("mail.careless.test", "CNAME")
    assert answer.rrset[0].target == dns.name.from_text("server.careless.test.")


def test_cname_chain_across_zones(zones: ZoneSet) -> None:
    zones.add("alias.northwind.test", "CNAME", "mx-a.campus.test.")
    answer = zones.resolve("alias.northwind.test", "A")
    assert answer.canonical_name == dns.name.from_text("mx-a.campus.test.")
    assert [r.address for r in answer] == ["198.51.100.25"]


def test_cname_leaving_the_lab_answers_what_it_has(zones: ZoneSet) -> None:
    zones.add("away.northwind.test", "CNAME", "www.example.com.")
    found = zones.lookup("away.northwind.test", "A")
    assert found.rcode == dns.rcode.NOERROR
    assert [r.rdtype for r in found.answer] == [dns.rdatatype.CNAME]


def test_empty_non_terminal_is_nodata_not_nxdomain(ent: ZoneSet) -> None:
    found = ent.lookup("sub.ent.test", "A")
    assert found.rcode == dns.rcode.NOERROR and found.nodata
    assert found.authority and found.authority[0].rdtype == dns.rdatatype.SOA
    with pytest.raises(dns.resolver.NoAnswer):
        ent.resolve("sub.ent.test", "A")
    with pytest.raises(dns.resolver.NXDOMAIN):
        ent.resolve("nosuch.ent.test", "A")
    assert [r.address for r in ent.resolve("host.sub.ent.test", "A")] == ["192.0.2.2"]


def test_wildcard_synthesises_records_for_the_asked_name(ent: ZoneSet) -> None:
    answer = ent.resolve("anything.wild.ent.test", "A")
    assert answer.rrset.name == dns.name.from_text("anything.wild.ent.test.")
    assert [r.address for r in answer] == ["192.0.2.3"]
    # Deeper names match too: the closest encloser is wild.ent.test (RFC 4592 3.3.1).
    deeper = ent.resolve("a.b.wild.ent.test", "MX")
    assert deeper.rrset.name == dns.name.from_text("a.b.wild.ent.test.")


def test_wildcard_without_the_type_is_nodata(ent: ZoneSet) -> None:
    found = ent.lookup("anything.wild.ent.test", "AAAA")
    assert found.rcode == dns.rcode.NOERROR and found.nodata


def test_wildcard_does_not_cover_existing_names_or_its_parent(ent: ZoneSet) -> None:
    # real.wild.ent.test exists (TXT only): no A is synthesised for it (RFC 4592 2.2.1).
    with pytest.raises(dns.resolver.NoAnswer):
        ent.resolve("real.wild.ent.test", "A")
    assert ent.resolve("real.wild.ent.test", "TXT").rrset[0].strings == (b"I exist",)
    # wild.ent.test itself is an empty non-terminal: NODATA.
    with pytest.raises(dns.resolver.NoAnswer):
        ent.resolve("wild.ent.test", "A")
    # Below an existing name with no wildcard of its own: NXDOMAIN.
    with pytest.raises(dns.resolver.NXDOMAIN):
        ent.resolve("x.real.wild.ent.test", "A")
    with pytest.raises(dns.resolver.NXDOMAIN):
        ent.resolve("x.host.sub.ent.test", "A")


def test_wildcard_cname_is_followed(ent: ZoneSet) -> None:
    answer = ent.resolve("www.alias.ent.test", "A")
    assert answer.canonical_name == dns.name.from_text("host.sub.ent.test.")
    assert answer.response.answer[0].name == dns.name.from_text("www.alias.ent.test.")


def test_cname_loop_is_servfail(ent: ZoneSet) -> None:
    found = ent.lookup("loop1.ent.test", "A")
    assert found.rcode == dns.rcode.SERVFAIL
    assert not found.authoritative
    with pytest.raises(dns.resolver.NoNameservers, match="SERVFAIL"):
        ent.resolve("loop1.ent.test", "A")


def test_cname_chain_limit(zones: ZoneSet) -> None:
    def chain(prefix: str, links: int) -> str:
        for i in range(links):
            zones.add(f"{prefix}{i}.northwind.test", "CNAME", f"{prefix}{i + 1}.northwind.test.")
        zones.add(f"{prefix}{links}.northwind.test", "A", "192.0.2.200")
        return f"{prefix}0.northwind.test"

    ok = zones.lookup(chain("ok", MAX_CNAME_CHAIN), "A")
    assert ok.rcode == dns.rcode.NOERROR
    assert len(ok.answer) == MAX_CNAME_CHAIN + 1 and ok.answer[-1][0].address == "192.0.2.200"
    assert zones.lookup(chain("long", MAX_CNAME_CHAIN + 1), "A").rcode == dns.rcode.SERVFAIL
    short = zones.resolve(chain("short", 3), "A")
    assert [r.address for r in short] == ["192.0.2.200"]


# -- caching -------------------------------------------------------------------------------


def test_answers_are_cached_until_an_edit(zones: ZoneSet) -> None:
    first = zones.resolve("northwind.test", "MX")
    assert zones.resolve("northwind.test", "MX") is first
    assert zones.resolve(dns.name.from_text("northwind.test."), "MX") is first
    generation = zones.generation
    zones.add("northwind.test", "MX", "30 mx3.northwind.test.")
    assert zones.generation > generation
    again = zones.resolve("northwind.test", "MX")
    assert again is not first
    assert len(again) == 3 and len(first) == 2


def test_failures_invalidate_the_cache(zones: ZoneSet) -> None:
    zones.resolve("northwind.test", "MX")
    zones.fail("northwind.test", "timeout")
    with pytest.raises(dns.resolver.LifetimeTimeout):
        zones.resolve("northwind.test", "MX")


def test_cached_negative_answers_still_raise(world: ZoneSet) -> None:
    for _ in range(2):
        with pytest.raises(dns.resolver.NXDOMAIN):
            world.resolve("nosuch.campus.test", "A")
        with pytest.raises(dns.resolver.NoNameservers, match="REFUSED"):
            world.resolve("nosuch.example.com", "A")


def test_queries_are_counted(zones: ZoneSet) -> None:
    zones.resolve("northwind.test", "MX")
    zones.resolve("northwind.test", "MX")
    assert list(zones.queries) == [("northwind.test.", "MX")] * 2


def test_lookup_is_cached_until_an_edit(zones: ZoneSet) -> None:
    first = zones.lookup("northwind.test", "MX")
    assert zones.lookup("northwind.test", "MX") is first
    zones.add("northwind.test", "TXT", "v=spf1 -all")
    assert zones.lookup("northwind.test", "MX") is not first


# -- an empty root zone --------------------------------------------------------------------


def test_empty_root_zone_answers_any_name_after_add() -> None:
    zones = ZoneSet.empty()
    zones.add("mail.example.com", "A", "192.0.2.9")
    zones.add("example.com", "MX", "10 mail.example.com.")
    assert [r.address for r in zones.resolve("mail.example.com", "A")] == ["192.0.2.9"]
    assert zones.resolve("example.com", "MX")[0].preference == 10
    # Authoritative for everything: an unknown name does not exist (not REFUSED).
    with pytest.raises(dns.resolver.NXDOMAIN):
        zones.resolve("nosuch.example.org", "A")


def test_empty_zone_at_an_origin_refuses_other_names() -> None:
    zones = ZoneSet.empty("example.test")
    zones.add("www.example.test", "A", "192.0.2.80")
    assert zones.resolve("www.example.test", "A")[0].address == "192.0.2.80"
    with pytest.raises(ZoneEditError, match="not in any lab zone"):
        zones.add("www.example.org", "A", "192.0.2.80")
    with pytest.raises(dns.resolver.NoNameservers, match="REFUSED"):
        zones.resolve("www.example.org", "A")


# -- TXT values ----------------------------------------------------------------------------


def test_long_plain_text_txt_is_split_into_character_strings(zones: ZoneSet) -> None:
    value = "v=spf1 " + " ".join(f"ip4:192.0.2.{i}" for i in range(40)) + " -all"
    assert len(value.encode()) > 255
    zones.add("www.northwind.test", "TXT", value)
    strings = _strings(zones.resolve("www.northwind.test", "TXT"))
    assert len(strings) == 3
    assert all(len(s) <= 255 for s in strings) and len(strings[0]) == 255
    assert b"".join(strings) == value.encode()


def test_short_txt_is_one_string(zones: ZoneSet) -> None:
    zones.add("www.northwind.test", "TXT", "v=spf1 -all")
    assert _strings(zones.resolve("www.northwind.test", "TXT")) == (b"v=spf1 -all",)


def test_txt_list_value_makes_several_strings(zones: ZoneSet) -> None:
    zones.add("www.northwind.test", "TXT", ["v=spf1 ", "-all"])
    answer = zones.resolve("www.northwind.test", "TXT")
    assert len(answer) == 1
    assert _strings(answer) == (b"v=spf1 ", b"-all")


def test_txt_in_zone_file_syntax(zones: ZoneSet) -> None:
    zones.add("www.northwind.test", "TXT", '"one" "two"')
    assert _strings(zones.resolve("www.northwind.test", "TXT")) == (b"one", b"two")


def test_txt_list_with_an_overlong_string_is_refused() -> None:
    with pytest.raises(ZoneEditError, match="255 octets"):
        make_rdata("TXT", ["x" * 256])


# -- live edits ----------------------------------------------------------------------------


def test_add_creates_a_name_and_appends_to_an_rrset(zones: ZoneSet) -> None:
    zones.add("new.northwind.test", "A", "192.0.2.77")
    assert zones.resolve("new.northwind.test", "A")[0].address == "192.0.2.77"
    assert zones.resolve("new.northwind.test", "A").rrset.ttl == DEFAULT_TTL
    zones.add("new.northwind.test", "A", "192.0.2.78", ttl=60)
    answer = zones.resolve("new.northwind.test", "A")
    assert sorted(r.address for r in answer) == ["192.0.2.77", "192.0.2.78"]
    assert answer.rrset.ttl == 60


def test_set_replaces_every_record_of_the_type(zones: ZoneSet) -> None:
    zones.set("northwind.test", "MX", "5 mx2.northwind.test.")
    answer = zones.resolve("northwind.test", "MX")
    assert [(r.preference, r.exchange.to_text()) for r in answer] == [(5, "mx2.northwind.test.")]
    assert answer.rrset.ttl == 3600  # the TTL the type had
    zones.set("northwind.test", "MX", "10 a.northwind.test.", "20 b.northwind.test.")
    assert len(zones.resolve("northwind.test", "MX")) == 2


def test_set_needs_a_value(zones: ZoneSet) -> None:
    with pytest.raises(ZoneEditError, match="at least one value"):
        zones.set("northwind.test", "MX")


def test_remove_one_value_a_type_or_a_name(zones: ZoneSet) -> None:
    zones.remove("northwind.test", "MX", "20 mx2.northwind.test.")
    assert [r.preference for r in zones.resolve("northwind.test", "MX")] == [10]
    zones.remove("mx1.northwind.test", "AAAA")
    with pytest.raises(dns.resolver.NoAnswer):
        zones.resolve("mx1.northwind.test", "AAAA")
    zones.remove("mx2.northwind.test")
    with pytest.raises(dns.resolver.NXDOMAIN):
        zones.resolve("mx2.northwind.test", "A")


def test_removing_the_last_record_removes_the_name(zones: ZoneSet) -> None:
    zones.remove("smtp.northwind.test", "A", "192.0.2.30")
    with pytest.raises(dns.resolver.NXDOMAIN):
        zones.resolve("smtp.northwind.test", "A")


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda z: z.add("mx.example.com", "A", "192.0.2.1"), "not in any lab zone"),
        (lambda z: z.add("x.northwind.test", "XYZ", "1"), "not a DNS record type"),
        (lambda z: z.add("x.northwind.test", "A", "192.0.2.300"),
         "not a valid A value \\(for example '192.0.2.25'\\)"),
        (lambda z: z.add("northwind.test", "MX", "mx1.northwind.test."), "not a valid MX value"),
        (lambda z: z.add("mx1.northwind.test", "CNAME", "mx2.northwind.test."),
         "can have no other data"),
        (lambda z: z.add("mail.careless.test", "A", "203.0.113.1"), "is a CNAME"),
        (lambda z: z.add("mail.careless.test", "CNAME", "out.careless.test."),
         "at most one CNAME"),
        (lambda z: z.set("new.careless.test", "CNAME", "a.careless.test.", "b.careless.test."),
         "at most one CNAME"),
        (lambda z: z.remove("northwind.test"), "apex"),
        (lambda z: z.remove("nosuch.northwind.test"), "no records to remove"),
        (lambda z: z.remove("mx1.northwind.test", "TXT"), "has no TXT record"),
        (lambda z: z.remove("northwind.test", "MX", "30 mx9.northwind.test."),
         "has no MX record 30 mx9.northwind.test."),
        (lambda z: z.reset("nosuch.test"), "not a lab zone"),
        (lambda z: z.add("bad..name.northwind.test", "A", "192.0.2.1"),
         "not a valid domain name"),
        (lambda z: z.add("x" * 64 + ".northwind.test", "A", "192.0.2.1"),
         "not a valid domain name"),
        (lambda z: z.apply({"op": "rename"}), "unknown zone edit"),
    ],
    ids=["outside", "bad-type", "bad-a", "bad-mx", "cname-beside-data", "data-beside-cname",
         "second-cname", "two-cnames", "apex", "no-name", "no-type", "no-value", "reset-unknown",
         "empty-label", "long-label", "unknown-op"],
)
def test_edit_errors_explain_themselves(zones: ZoneSet, edit, message: str) -> None:
    generation = zones.generation
    with pytest.raises(ZoneEditError, match=message) as caught:
        edit(zones)
    assert isinstance(caught.value, LabError) and isinstance(caught.value, ValueError)
    assert zones.generation == generation  # a refused edit changes nothing
    assert len(zones.resolve("northwind.test", "MX")) == 2


def test_to_rdtype_and_to_name() -> None:
    assert to_rdtype(" mx ") == dns.rdatatype.MX
    assert to_rdtype(15) == dns.rdatatype.MX
    assert to_name("northwind.test").is_absolute()
    assert to_name(dns.name.from_text("a", origin=None)) == dns.name.from_text("a.")


def test_reset_one_zone_keeps_the_others(zones: ZoneSet) -> None:
    zones.set("careless.test", "MX", "10 server.careless.test.")
    zones.add("out.campus.test", "TXT", "edited")
    zones.reset("careless.test")
    assert zones.resolve("careless.test", "MX")[0].exchange.to_text() == "mail.careless.test."
    assert _strings(zones.resolve("out.campus.test", "TXT")) == (b"edited",)


def test_reset_all_restores_files_and_clears_failures(zones: ZoneSet) -> None:
    zones.remove("mx1.northwind.test")
    zones.fail("campus.test", "servfail")
    zones.reset()
    assert zones.resolve("mx1.northwind.test", "A")[0].address == "192.0.2.25"
    assert len(zones.resolve("campus.test", "MX")) == 2


def test_reset_of_an_empty_zone_empties_it() -> None:
    zones = ZoneSet.empty()
    zones.add("a.example", "A", "192.0.2.1")
    zones.reset()
    with pytest.raises(dns.resolver.NXDOMAIN):
        zones.resolve("a.example", "A")


def test_edits_are_reported_and_can_be_replayed(zones: ZoneSet) -> None:
    ops: list[dict] = []
    zones.on_edit(ops.append)
    zones.set("careless.test", "MX", "10 server.careless.test.")
    zones.add("www.northwind.test", "TXT", ["v=spf1 ", "-all"], ttl=300)
    zones.remove("out.careless.test")
    zones.reset("campus.test")
    assert [op["op"] for op in ops] == ["set", "add", "remove", "reset"]
    zones.fail("northwind.test")  # failures are not edits
    assert len(ops) == 4

    replayed = ZoneSet.from_directory(ZONES_DIR)
    for op in ops:
        replayed.apply(op)
    assert replayed.resolve("careless.test", "MX")[0].exchange.to_text() == "server.careless.test."
    txt = replayed.resolve("www.northwind.test", "TXT")
    assert _strings(txt) == (b"v=spf1 ", b"-all") and txt.rrset.ttl == 300
    with pytest.raises(dns.resolver.NXDOMAIN):
        replayed.resolve("out.careless.test", "A")


# -- authoritative look-ups and transfers ----------------------------------------------------


def test_nxdomain_lookup_has_the_soa_with_the_negative_ttl(world: ZoneSet) -> None:
    found = world.lookup("nosuch.northwind.test", "A")
    assert found.rcode == dns.rcode.NXDOMAIN
    assert found.authoritative and not found.nodata
    (soa,) = found.authority
    assert soa.rdtype == dns.rdatatype.SOA
    assert soa.name == dns.name.from_text("northwind.test.")
    assert soa.ttl == min(3600, soa[0].minimum) == 300  # RFC 2308 section 3


def test_negative_ttl_is_the_soa_ttl_when_that_is_lower(ent: ZoneSet) -> None:
    (soa,) = ent.lookup("nosuch.ent.test", "A").authority
    assert soa[0].minimum == 900
    assert soa.ttl == 300


def test_the_zone_soa_keeps_its_own_ttl(world: ZoneSet) -> None:
    # The negative TTL applies to the copy in AUTHORITY, not to the zone's SOA record.
    assert world.resolve("northwind.test", "SOA").rrset.ttl == 3600


def test_lookup_of_an_answer_and_of_a_name_outside(world: ZoneSet) -> None:
    found = world.lookup("northwind.test", "MX")
    assert found.rcode == dns.rcode.NOERROR and not found.nodata
    assert found.zone == dns.name.from_text("northwind.test.")
    assert not found.authority
    outside = world.lookup("www.example.com", "A")
    assert outside.rcode == dns.rcode.REFUSED and not outside.authoritative


def test_lookup_any_returns_every_rrset(world: ZoneSet) -> None:
    found = world.lookup("northwind.test", "ANY")
    types = {r.rdtype for r in found.answer}
    assert {dns.rdatatype.SOA, dns.rdatatype.NS, dns.rdatatype.MX, dns.rdatatype.A} <= types


def test_lookup_reports_failures(zones: ZoneSet) -> None:
    zones.fail("northwind.test", "timeout")
    found = zones.lookup("northwind.test", "MX")
    assert found.failure == "timeout" and found.rcode == dns.rcode.SERVFAIL


def test_transfer_is_soa_everything_soa(world: ZoneSet) -> None:
    records = world.transfer("northwind.test")
    assert records is not None
    assert records[0].rdtype == records[-1].rdtype == dns.rdatatype.SOA
    assert records[0].ttl == 3600
    middle = records[1:-1]
    assert dns.rdatatype.SOA not in {r.rdtype for r in middle}
    owners = {(r.name.to_text(), r.rdtype) for r in middle}
    assert ("northwind.test.", dns.rdatatype.MX) in owners
    assert ("mx1.northwind.test.", dns.rdatatype.A) in owners
    assert ("www.northwind.test.", dns.rdatatype.A) in owners


def test_transfer_of_a_name_that_is_not_an_apex(world: ZoneSet) -> None:
    assert world.transfer("mx1.northwind.test") is None
    assert world.transfer("example.com") is None


def test_repr_names_the_generation(world: ZoneSet) -> None:
    assert f"generation {world.generation}" in repr(world)
