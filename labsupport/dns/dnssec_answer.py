"""DNSSEC in the lab server's answers: DNSKEY and DS questions, RRSIG and NSEC with DO.

Two functions the server (:mod:`labsupport.dns.nameserver`) calls:

* :func:`dnssec_lookup` answers the questions only a signed zone can answer: DNSKEY at a
  zone's apex, DS at a child's apex from the parent's side of the cut (RFC 4035
  section 3.1.4.1), NSEC and RRSIG. A signed server answers these whether or not the DO
  bit is set, since the client asked for them by type (RFC 4035 section 3.2.1).
* :func:`add_dnssec_records` completes a response to a query with the DO bit (RFC 3225,
  RFC 4035 section 3.1): the RRSIGs over every RRset of the answer and authority
  sections (RFC 4035 section 3.1.1), and the NSEC records that prove a name does not
  exist, a type is not there, or that a wildcard answer was the closest match (RFC 4035
  sections 3.1.3.1 to 3.1.3.4). Without DO the server adds nothing, as before.

Part of the lab's DNSSEC (:mod:`labsupport.dns.dnssec_sign`).
"""

from __future__ import annotations

import dns.message
import dns.name
import dns.rcode
import dns.rdataset
import dns.rdatatype
import dns.rrset

from .dnssec_sign import SignedZone, ZoneSigner
from .zone_records import IN, Lookup

#: Record types a signed zone holds and a plain look-up does not see.
DNSSEC_TYPES = frozenset({dns.rdatatype.DNSKEY, dns.rdatatype.DS, dns.rdatatype.NSEC,
                          dns.rdatatype.RRSIG})


def dnssec_lookup(signer: ZoneSigner, qname: dns.name.Name, rdtype: int) -> Lookup | None:
    """The authoritative answer to a DNSKEY, DS, NSEC or RRSIG question (None: another type,
    answered by the zones as usual)."""
    if rdtype not in DNSSEC_TYPES:
        return None
    zones = signer.zones
    rdt = dns.rdatatype.RdataType.make(rdtype)
    if rdt == dns.rdatatype.DS and qname != dns.name.root and zones.zone_for(qname) == qname:
        parent = zones.zone_for(qname.parent())
        if parent is not None:
            return _ds_from_parent(signer, qname, parent)
    found = zones.lookup(qname, rdtype)
    if not found.nodata:
        return found
    final = _final_name(found)
    signed = signer.zone_for(final)
    node = signed.node(final) if signed is not None else None
    if node is None:
        return found
    if rdt == dns.rdatatype.RRSIG:
        rrsets = [_rrset(final, rds) for rds in node.rdatasets
                  if rds.rdtype == dns.rdatatype.RRSIG]
    else:
        rds = node.get_rdataset(IN, rdt)
        rrsets = [_rrset(final, rds)] if rds is not None else []
    if not rrsets:
        return found
    return Lookup(qname, rdt, dns.rcode.NOERROR, found.answer + tuple(rrsets), zone=found.zone)


def _ds_from_parent(signer: ZoneSigner, child: dns.name.Name, parent: dns.name.Name) -> Lookup:
    """RFC 4035 section 3.1.4.1: the DS RRset lives on the parent's side of the cut."""
    soa = signer.zones.lookup(parent, "SOA").answer
    negative = tuple(_negative_soa(r) for r in soa)
    signed = signer.signed(parent)
    node = signed.node(child) if signed is not None else None
    rds = node.get_rdataset(IN, dns.rdatatype.DS) if node is not None else None
    if rds is None:
        return Lookup(child, dns.rdatatype.DS, dns.rcode.NOERROR, (), negative, zone=parent)
    return Lookup(child, dns.rdatatype.DS, dns.rcode.NOERROR, (_rrset(child, rds),),
                  zone=parent)


def add_dnssec_records(signer: ZoneSigner, response: dns.message.Message, found: Lookup) -> None:
    """Add RRSIGs and NSEC proofs to ``response`` (a query with DO answered by ``found``)."""
    if found.failure or found.rcode not in (dns.rcode.NOERROR, dns.rcode.NXDOMAIN):
        return
    final = _final_name(found)
    if _from_parent(signer, found, final):
        assert found.zone is not None
        signed = signer.signed(found.zone)
    else:
        signed = signer.zone_for(final)
    proofs = _denial_proofs(signed, found, final) if signed is not None else []
    for rrset in proofs:
        if not _has(response.authority, rrset):
            response.authority.append(rrset)
    for section in (response.answer, response.authority):
        for rrset in list(section):
            if rrset.rdtype == dns.rdatatype.RRSIG:
                continue
            sigs = _signatures(signer, rrset, found)
            if sigs is not None and not _has(section, sigs):
                section.append(sigs)


def _from_parent(signer: ZoneSigner, found: Lookup, final: dns.name.Name) -> bool:
    """Whether this is a DS answer from the parent's side of a zone cut."""
    return (found.rdtype == dns.rdatatype.DS and final == found.qname
            and found.zone is not None and signer.zones.zone_for(final) != found.zone)


def _signatures(signer: ZoneSigner, rrset: dns.rrset.RRset, found: Lookup
                ) -> dns.rrset.RRset | None:
    # A DS RRset, and the proof that there is none, are signed by the parent.
    if _from_parent(signer, found, found.qname) and rrset.rdtype != dns.rdatatype.CNAME:
        assert found.zone is not None
        signed = signer.signed(found.zone)
        rds = signed.rrsigs(rrset.name, rrset.rdtype) if signed is not None else None
        return _rrset(rrset.name, rds) if rds is not None else None
    return signer.rrsigs_for(rrset.name, rrset.rdtype)


def _denial_proofs(signed: SignedZone, found: Lookup, final: dns.name.Name
                   ) -> list[dns.rrset.RRset]:
    """The NSEC records a negative or wildcard answer needs (RFC 4035 section 3.1.3)."""
    proofs: list[dns.rrset.RRset | None] = []
    if found.rcode == dns.rcode.NXDOMAIN:
        # 3.1.3.2: the name does not exist, and no wildcard could have matched it.
        encloser = signed.closest_encloser(final)
        star = dns.name.Name((b"*",) + encloser.labels)
        proofs += [signed.covering_nsec(final), signed.covering_nsec(star)]
    elif found.nodata:
        at = signed.nsec_at(final)
        if at is not None:  # 3.1.3.1: the name's own NSEC lists the types it has
            proofs.append(at)
        else:
            # An empty non-terminal (covering NSEC), or a wildcard without the type
            # (3.1.3.4: the NSEC covering the name and the wildcard's own NSEC).
            proofs.append(signed.covering_nsec(final))
            star = dns.name.Name((b"*",) + signed.closest_encloser(final).labels)
            proofs.append(signed.nsec_at(star))
    elif found.answer and signed.node(final) is None:
        # 3.1.3.3: an answer made from a wildcard; prove no closer name existed.
        proofs.append(signed.covering_nsec(final))
    unique: list[dns.rrset.RRset] = []
    for rrset in proofs:
        if rrset is not None and not _has(unique, rrset):
            unique.append(rrset)
    return unique


def _final_name(found: Lookup) -> dns.name.Name:
    """The name the answer ends at: the question, or the target of the last CNAME."""
    name = found.qname
    for rrset in found.answer:
        if rrset.rdtype == dns.rdatatype.CNAME and rrset.name == name \
                and found.rdtype != dns.rdatatype.CNAME:
            name = rrset[0].target
    return name


def _negative_soa(rrset: dns.rrset.RRset) -> dns.rrset.RRset:
    copy = _rrset(rrset.name, rrset)
    copy.ttl = min(rrset.ttl, rrset[0].minimum)  # RFC 2308 section 3
    return copy


def _rrset(owner: dns.name.Name, rds: dns.rdataset.Rdataset) -> dns.rrset.RRset:
    rrset = dns.rrset.RRset(owner, rds.rdclass, rds.rdtype, rds.covers)
    rrset.update(rds)
    return rrset


def _has(section: list[dns.rrset.RRset], rrset: dns.rrset.RRset) -> bool:
    return any(r.name == rrset.name and r.rdtype == rrset.rdtype and r.covers == rrset.covers
               for r in section)
