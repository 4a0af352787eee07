"""DNSSEC in the lab DNS: signing, DO answers, DNSKEY/DS/NSEC, and the validating look-up."""

from __future__ import annotations

import shutil
import subprocess

import dns.dnssec
import dns.flags
import dns.message
import dns.name
import dns.rdatatype
import dns.rrset
import pytest
from lab_helpers import ServerThread, udp_send

from labsupport.core.clock import LabClock
from labsupport.core.errors import LabError, ZoneEditError
from labsupport.dns.dnssec_proofs import covers
from labsupport.dns.dnssec_sign import (
    ALGORITHM,
    SIGNATURE_LIFETIME,
    ZoneSigner,
    load_or_create_key,
)
from labsupport.dns.dnssec_validate import validate
from labsupport.dns.nameserver import DNSServer
from labsupport.dns.zone import ZoneSet

SOA = "@ IN SOA ns.lab.test. hostmaster.lab.test. ( 2026112801 3600 600 604800 300 )"
#: A lab that also serves the parent ``test.``: DS records then live in the parent.
TEST_ZONE = f"$ORIGIN test.\n$TTL 3600\n{SOA}\n@ IN NS ns.lab.test.\n"
#: A child of ``test.`` left unsigned: an unsigned delegation.
PLAIN_ZONE = f"$ORIGIN plain.test.\n$TTL 3600\n{SOA}\n@ IN NS ns.lab.test.\nwww IN A 192.0.2.7\n"


def ask(server: DNSServer, name: str, rdtype: str, do: bool = True,
        edns: bool = True) -> dns.message.Message:
    query = dns.message.make_query(name, rdtype, use_edns=0 if edns else None,
                                   want_dnssec=do)
    wire = server.answer(query.to_wire(), "test", "tcp")
    assert wire is not None
    return dns.message.from_wire(wire)


def sigs(section: list[dns.rrset.RRset]) -> list[dns.rrset.RRset]:
    return [r for r in section if r.rdtype == dns.rdatatype.RRSIG]


@pytest.fixture
def frozen() -> LabClock:
    clock = LabClock()
    clock.freeze(at=1_800_000_000)
    return clock


@pytest.fixture
def server(zones: ZoneSet, frozen: LabClock) -> DNSServer:
    """The lab world's server, in memory, on a frozen clock."""
    return DNSServer(zones, clock=frozen)


@pytest.fixture
def nested(zones: ZoneSet, frozen: LabClock) -> DNSServer:
    """The lab world plus a signed ``test.`` parent and an unsigned ``plain.test``."""
    zones.load_text(TEST_ZONE, "test.")
    zones.load_text(PLAIN_ZONE, "plain.test.")
    signer = ZoneSigner(zones, clock=frozen, unsigned=["plain.test"])
    return DNSServer(zones, clock=frozen, dnssec=signer)


# -- signing ---------------------------------------------------------------------------------


def test_every_rrset_of_every_lab_zone_is_signed_validly(world: ZoneSet) -> None:
    clock = LabClock()
    signer = ZoneSigner(world, clock=clock)
    seconds = signer.sign_all()
    assert seconds > 0
    checked = 0
    for origin in world.origins:
        signed = signer.signed(origin)
        assert signed is not None
        apex = signed.zone.get_rdataset(signed.origin, "DNSKEY")
        assert apex is not None and len(apex) == 1
        key = apex[0]
        assert key.algorithm == ALGORITHM and key.flags == 257
        keys = {signed.origin: apex}
        for name, rds in signed.zone.iterate_rdatasets():
            if rds.rdtype == dns.rdatatype.RRSIG:
                continue
            rrsigs = signed.zone.get_rdataset(name, "RRSIG", rds.rdtype)
            assert rrsigs is not None, f"{name} {dns.rdatatype.to_text(rds.rdtype)} unsigned"
            # dnspython's validator is the oracle; it raises on any bad signature.
            dns.dnssec.validate((name, rds), (name, rrsigs), keys, now=clock.time())
            checked += 1
        # The NSEC chain is closed: it visits every owner and wraps to the apex.
        assert signed.nsec_names[0] == signed.origin
        last = signed.nsec_at(signed.nsec_names[-1])
        assert last is not None and last[0].next == signed.origin
    assert checked > 300


def test_signatures_are_valid_for_the_lifetime_from_the_lab_clock(zones: ZoneSet,
                                                                  frozen: LabClock) -> None:
    signed = ZoneSigner(zones, clock=frozen).signed("northwind.test")
    assert signed is not None
    assert signed.inception <= frozen.time() < signed.expiration
    assert signed.expiration - signed.inception > SIGNATURE_LIFETIME - 86400


def test_keys_are_kept_in_a_key_directory(tmp_path, zones: ZoneSet) -> None:
    first = load_or_create_key("northwind.test", tmp_path)
    again = load_or_create_key("northwind.test", tmp_path)
    assert first.dnskey == again.dnskey
    assert (tmp_path / "northwind.test.dnssec.pem").stat().st_mode & 0o077 == 0
    signer = ZoneSigner(zones, key_dir=tmp_path)
    assert signer.key("northwind.test").key_tag == first.key_tag
    assert signer.key("campus.test").key_tag != first.key_tag


def test_a_name_outside_the_lab_is_refused_with_a_sentence(zones: ZoneSet) -> None:
    with pytest.raises(ZoneEditError, match="not a lab zone"):
        ZoneSigner(zones).key("example.com")


# -- the server ------------------------------------------------------------------------------


def test_rrsig_only_with_the_do_bit(server: DNSServer) -> None:
    with_do = ask(server, "mx1.northwind.test", "A")
    assert with_do.ednsflags & dns.flags.DO
    assert with_do.flags & dns.flags.AA and not with_do.flags & dns.flags.AD
    [rrsig] = sigs(with_do.answer)
    assert rrsig.covers == dns.rdatatype.A
    assert rrsig[0].signer == dns.name.from_text("northwind.test")
    assert not sigs(ask(server, "mx1.northwind.test", "A", do=False).answer)
    assert not sigs(ask(server, "mx1.northwind.test", "A", do=False, edns=False).answer)


@pytest.mark.parametrize("edns", [True, False])
def test_without_do_the_answers_are_exactly_as_unsigned(zones: ZoneSet, edns: bool) -> None:
    signed = DNSServer(zones)
    plain = DNSServer(zones, dnssec=False)
    questions = [("mx1.northwind.test", "A"), ("northwind.test", "MX"),
                 ("nope.northwind.test", "A"), ("northwind.test", "AAAA"),
                 ("mail.careless.test", "A"), ("northwind.test", "ANY"),
                 ("www.example.com", "A")]
    for name, rdtype in questions:
        query = dns.message.make_query(name, rdtype, use_edns=0 if edns else None)
        a = signed.answer(query.to_wire(), "t", "udp")
        b = plain.answer(query.to_wire(), "t", "udp")
        assert a is not None and b is not None
        # Compared as messages: dnspython shuffles the records of an RRset on the wire.
        got, expected = dns.message.from_wire(a), dns.message.from_wire(b)
        assert got == expected and len(a) == len(b), (name, rdtype)
        assert got.ednsflags == expected.ednsflags and got.edns == expected.edns


def test_dnskey_and_ds_questions(server: DNSServer) -> None:
    keys = ask(server, "northwind.test", "DNSKEY")
    [dnskey] = [r for r in keys.answer if r.rdtype == dns.rdatatype.DNSKEY]
    assert dnskey[0] == server.dnssec.key("northwind.test").dnskey
    assert [r.covers for r in sigs(keys.answer)] == [dns.rdatatype.DNSKEY]
    # Asked by type, DNSKEY is answered without DO too, but without its RRSIG.
    plain = ask(server, "northwind.test", "DNSKEY", do=False)
    assert [r.rdtype for r in plain.answer] == [dns.rdatatype.DNSKEY]
    # The lab serves no parent of northwind.test: the child says NODATA.
    ds = ask(server, "northwind.test", "DS")
    assert not ds.answer and any(r.rdtype == dns.rdatatype.SOA for r in ds.authority)


def test_ds_is_served_by_the_parent_when_the_lab_has_it(nested: DNSServer) -> None:
    signer = nested.dnssec
    assert signer is not None
    response = ask(nested, "northwind.test", "DS")
    [ds] = [r for r in response.answer if r.rdtype == dns.rdatatype.DS]
    assert ds[0] == signer.ds("northwind.test")[0]
    [rrsig] = sigs(response.answer)
    assert rrsig[0].signer == dns.name.from_text("test.")
    # No DS for the unsigned child: the parent's NSEC shows NS but no DS.
    none = ask(nested, "plain.test", "DS")
    assert not none.answer
    [nsec] = [r for r in none.authority if r.rdtype == dns.rdatatype.NSEC]
    assert "NS" in nsec[0].to_text() and " DS" not in nsec[0].to_text()
    anchors = signer.trust_anchors()
    assert dns.name.from_text("test.") in anchors
    assert dns.name.from_text("northwind.test.") not in anchors


def test_nsec_proves_a_name_does_not_exist(server: DNSServer) -> None:
    qname = dns.name.from_text("nope.northwind.test")
    response = ask(server, "nope.northwind.test", "A")
    assert response.rcode() == dns.rcode.NXDOMAIN
    nsecs = [r for r in response.authority if r.rdtype == dns.rdatatype.NSEC]
    assert any(covers(n, qname) for n in nsecs)
    wildcard = dns.name.from_text("*.northwind.test")
    assert any(covers(n, wildcard) for n in nsecs)
    covered = {r.covers for r in sigs(response.authority)}
    assert covered == {dns.rdatatype.SOA, dns.rdatatype.NSEC}


def test_an_edit_is_signed_again(server: DNSServer) -> None:
    server.zones.set("mx1.northwind.test", "A", "192.0.2.99")
    result = validate("mx1.northwind.test", "A", server)
    assert result.verdict == "secure"
    assert any("192.0.2.99" in line for line in result.answer)


@pytest.mark.skipif(shutil.which("dig") is None, reason="dig is not installed")
def test_dig_dnssec_shows_rrsig(private_server: ServerThread) -> None:
    def dig(*args: str) -> str:
        return subprocess.run(["dig", "@127.0.0.1", "-p", str(private_server.port), *args],
                              capture_output=True, text=True, timeout=10, check=True).stdout

    out = dig("+dnssec", "+norec", "mx1.northwind.test", "A")
    assert "status: NOERROR" in out and "RRSIG\tA 13 3 3600" in out
    flags = next(line for line in out.splitlines() if line.startswith(";; flags:"))
    assert " aa" in flags and " ad" not in flags
    assert "flags: do;" in out
    assert "RRSIG" not in dig("+norec", "mx1.northwind.test", "A")
    keys = dig("+dnssec", "+norec", "northwind.test", "DNSKEY")
    assert "DNSKEY\t257 3 13" in keys and "RRSIG\tDNSKEY" in keys
    missing = dig("+dnssec", "+norec", "nope.northwind.test", "A")
    assert "status: NXDOMAIN" in missing and "\tNSEC\t" in missing


def test_udp_answers_carry_rrsig_only_with_do(private_server: ServerThread) -> None:
    query = dns.message.make_query("northwind.test", "MX", want_dnssec=True)
    reply = dns.message.from_wire(udp_send(private_server.port, query.to_wire()))
    assert sigs(reply.answer)
    query = dns.message.make_query("northwind.test", "MX", use_edns=0)
    assert not sigs(dns.message.from_wire(udp_send(private_server.port, query.to_wire())).answer)


# -- validation ------------------------------------------------------------------------------


def test_validation_secure_with_the_chain_in_words(server: DNSServer) -> None:
    result = validate("mx1.northwind.test", "A", server)
    assert result.verdict == "secure" and result.secure
    assert result.chain == ("northwind.test.",)
    text = result.text()
    tag = server.dnssec.key("northwind.test").key_tag
    assert f"key tag {tag}" in text and "ECDSAP256SHA256 (13)" in text
    assert "matches the trust anchor" in text and "valid " in text
    assert "DNSSEC for mx1.northwind.test. A: secure" in result._repr_html_()


@pytest.mark.parametrize(("name", "rdtype", "words"), [
    ("nope.northwind.test", "A", "does not exist"),
    ("northwind.test", "AAAA", "no AAAA record"),
    ("mail.careless.test", "A", "answer"),
])
def test_validation_secure_for_denials_and_cnames(server: DNSServer, name: str, rdtype: str,
                                                  words: str) -> None:
    result = validate(name, rdtype, server)
    assert result.verdict == "secure", result.text()
    assert words in result.summary


def test_validation_walks_down_from_the_parent(nested: DNSServer) -> None:
    result = validate("mx1.northwind.test", "A", nested)
    assert result.verdict == "secure", result.text()
    assert result.chain == ("test.", "northwind.test.")
    assert "the DS in test." in result.text()


def test_validation_insecure_for_an_unsigned_child(nested: DNSServer) -> None:
    result = validate("www.plain.test", "A", nested)
    assert result.verdict == "insecure", result.text()
    assert "unsigned delegation" in result.text()


def test_corrupted_signature_is_bogus_and_says_why(server: DNSServer) -> None:
    signer = server.dnssec
    assert signer is not None
    signer.corrupt("mx1.northwind.test", "A")
    result = validate("mx1.northwind.test", "A", server)
    assert result.verdict == "bogus"
    assert "does not match the records" in result.summary
    signer.repair()
    assert validate("mx1.northwind.test", "A", server).verdict == "secure"


def test_edit_without_re_signing_is_bogus(server: DNSServer) -> None:
    signer = server.dnssec
    assert signer is not None
    signer.hold()
    server.zones.set("mx1.northwind.test", "A", "192.0.2.99")
    assert validate("mx1.northwind.test", "A", server).verdict == "bogus"
    server.zones.add("new.northwind.test", "A", "192.0.2.98")
    added = validate("new.northwind.test", "A", server)
    assert added.verdict == "bogus" and "has no RRSIG" in added.summary
    signer.hold(False)
    assert validate("new.northwind.test", "A", server).verdict == "secure"


def test_old_signatures_expire_on_the_lab_clock(server: DNSServer, frozen: LabClock) -> None:
    signer = server.dnssec
    assert signer is not None
    signer.hold()
    frozen.advance(SIGNATURE_LIFETIME + 86400)
    result = validate("mx1.northwind.test", "A", server)
    assert result.verdict == "bogus" and "expired" in result.summary
    signer.hold(False)  # a running signer signs again as the days pass
    assert validate("mx1.northwind.test", "A", server).verdict == "secure"


def test_wildcard_answer_is_secure_with_its_proof(server: DNSServer) -> None:
    server.zones.add("*.northwind.test", "TXT", "made by a wildcard")
    result = validate("anything.northwind.test", "TXT", server)
    assert result.verdict == "secure", result.text()
    assert "wildcard answer is the closest match" in result.text()


def test_wrong_trust_anchor_is_bogus(server: DNSServer, zones: ZoneSet) -> None:
    other = ZoneSigner(zones).ds("northwind.test")
    result = validate("mx1.northwind.test", "A", server, trust_anchor=other)
    assert result.verdict == "bogus" and "matches the trust anchor" in result.summary


def test_trust_anchor_as_text_and_indeterminate_without_one(server: DNSServer) -> None:
    ds = server.dnssec.ds("northwind.test")
    assert validate("mx1.northwind.test", "A", server, trust_anchor=ds.to_text()).secure
    result = validate("mx-a.campus.test", "A", server, trust_anchor=ds)
    assert result.verdict == "indeterminate"
    with pytest.raises(LabError, match="DS or DNSKEY"):
        validate("mx1.northwind.test", "A", server, trust_anchor="not a record")


def test_validation_over_the_wire(private_server: ServerThread) -> None:
    signer = private_server.server.dnssec
    assert signer is not None
    result = validate("northwind.test", "MX", ("127.0.0.1", private_server.port),
                      trust_anchor=signer)
    assert result.verdict == "secure", result.text()


def test_the_server_keeps_its_keys_where_asked(tmp_path, zones: ZoneSet) -> None:
    first = DNSServer(zones, dnssec_keys=tmp_path)
    assert first.dnssec is not None
    tag = first.dnssec.key("northwind.test").key_tag
    again = DNSServer(zones, dnssec_keys=tmp_path)
    assert again.dnssec is not None and again.dnssec.key("northwind.test").key_tag == tag
    assert DNSServer(zones, dnssec=False).dnssec is None
