"""Authenticated denial of existence: what NSEC records prove (RFC 4035 section 5.4).

An NSEC record at owner O names the next owner N in the zone's canonical order (RFC 4034
section 6.1) and lists the types O has. So it proves two things: no name lies strictly
between O and N (the name *covered* is NXDOMAIN), and O has no type missing from its
list (NODATA). The functions here check, in words, the proofs a validator needs after
it has checked the NSEC records' signatures: :func:`prove_nxdomain`,
:func:`prove_nodata` and :func:`prove_wildcard`. Each returns None when the proof holds,
or the reason it does not.

Part of :mod:`labsupport.dns.dnssec_validate`.
"""

from __future__ import annotations

from collections.abc import Sequence

import dns.name
import dns.rdatatype
import dns.rdtypes.ANY.NSEC
import dns.rrset

from ..core.results import TraceBuilder

RFC_DENIAL = "RFC 4035 section 5.4"


def nsec_types(rrset: dns.rrset.RRset) -> set[dns.rdatatype.RdataType]:
    """The types an NSEC record says its owner has."""
    nsec = rrset[0]
    assert isinstance(nsec, dns.rdtypes.ANY.NSEC.NSEC)
    # RFC 4034 section 4.1.2: window blocks of 256 types, one bit per type, high bit first.
    return {
        dns.rdatatype.RdataType.make(window * 256 + i * 8 + bit)
        for window, bitmap in nsec.windows
        for i, octet in enumerate(bitmap)
        for bit in range(8) if octet & (0x80 >> bit)
    }


def next_name(rrset: dns.rrset.RRset) -> dns.name.Name:
    nsec = rrset[0]
    assert isinstance(nsec, dns.rdtypes.ANY.NSEC.NSEC)
    return nsec.next


def covers(rrset: dns.rrset.RRset, name: dns.name.Name) -> bool:
    """Whether ``name`` falls strictly between the NSEC's owner and its next name (the
    last NSEC of a zone wraps round to the apex)."""
    owner, nxt = rrset.name, next_name(rrset)
    if owner < nxt:
        return owner < name < nxt
    return name > owner and name.is_subdomain(nxt)  # the last NSEC: next is the apex


def describe(rrset: dns.rrset.RRset) -> str:
    types = " ".join(sorted(dns.rdatatype.to_text(t) for t in nsec_types(rrset)))
    return f"NSEC {rrset.name.to_text()} -> {next_name(rrset).to_text()} [{types}]"


def _closest_encloser(qname: dns.name.Name, nsec: dns.rrset.RRset) -> dns.name.Name:
    """RFC 4035 section 5.4: the longest name shared by qname and the covering NSEC's
    owner or next name is the closest encloser that exists."""
    common = max(qname.fullcompare(nsec.name)[2], qname.fullcompare(next_name(nsec))[2])
    return qname.split(common)[1]


def prove_nxdomain(qname: dns.name.Name, nsecs: Sequence[dns.rrset.RRset],
                   trace: TraceBuilder) -> str | None:
    """NXDOMAIN: an NSEC covers the name, and one covers the wildcard that could have
    matched it (RFC 4035 section 3.1.3.2)."""
    covering = next((n for n in nsecs if covers(n, qname)), None)
    if covering is None:
        return f"no NSEC record covers {qname.to_text()}, so nothing proves it does not exist"
    trace.add(f"{describe(covering)} covers {qname.to_text()}: no name lies between, so "
              f"{qname.to_text()} does not exist", kind="ok", rfc=RFC_DENIAL)
    encloser = _closest_encloser(qname, covering)
    star = dns.name.Name((b"*",) + encloser.labels)
    wildcard = next((n for n in nsecs if covers(n, star)), None)
    if wildcard is None:
        return (f"no NSEC record covers {star.to_text()}, so a wildcard might have answered "
                f"for {qname.to_text()}")
    trace.add(f"{describe(wildcard)} covers {star.to_text()}: no wildcard at the closest "
              f"encloser {encloser.to_text()} could have answered", kind="ok",
              rfc="RFC 4035 section 3.1.3.2")
    return None


def prove_nodata(qname: dns.name.Name, rdtype: dns.rdatatype.RdataType,
                 nsecs: Sequence[dns.rrset.RRset], trace: TraceBuilder) -> str | None:
    """NODATA: the name's own NSEC lacks the type (and CNAME), or, for an empty
    non-terminal, an NSEC covers the name and its next name lies below it."""
    type_text = dns.rdatatype.to_text(rdtype)
    own = next((n for n in nsecs if n.name == qname), None)
    if own is not None:
        types = nsec_types(own)
        if rdtype in types or dns.rdatatype.CNAME in types:
            return (f"the NSEC at {qname.to_text()} lists {type_text} or CNAME, so it does "
                    f"not prove that {type_text} is absent")
        trace.add(f"{describe(own)}: {qname.to_text()} exists and has no {type_text} "
                  "record", kind="ok", rfc="RFC 4035 section 3.1.3.1")
        return None
    covering = next((n for n in nsecs if covers(n, qname)), None)
    if covering is not None and next_name(covering).is_subdomain(qname):
        trace.add(f"{describe(covering)}: {qname.to_text()} is an empty non-terminal (names "
                  "exist below it), so it has no records of any type", kind="ok",
                  rfc="RFC 4035 section 3.1.3.1")
        return None
    return f"no NSEC record proves that {qname.to_text()} has no {type_text} record"


def prove_wildcard(qname: dns.name.Name, nsecs: Sequence[dns.rrset.RRset],
                   trace: TraceBuilder) -> str | None:
    """An answer made from a wildcard: an NSEC must prove that the name asked for does
    not exist itself (RFC 4035 section 5.3.4)."""
    covering = next((n for n in nsecs if covers(n, qname)), None)
    if covering is None:
        return (f"the answer was made from a wildcard, but no NSEC proves that "
                f"{qname.to_text()} itself does not exist")
    trace.add(f"{describe(covering)} covers {qname.to_text()}: the wildcard answer is the "
              "closest match", kind="ok", rfc="RFC 4035 section 5.3.4")
    return None
