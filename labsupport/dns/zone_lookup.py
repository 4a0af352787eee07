"""Authoritative look-ups in the lab's zones (RFC 1034 section 4.3.2) and zone transfers.

:class:`_ZoneLookup` gives :class:`~labsupport.dns.zone.ZoneSet` its
:meth:`~_ZoneLookup.lookup`: answers, CNAME chains, wildcards (RFC 4592), NXDOMAIN and
NODATA with the SOA (RFC 2308), cached until the next edit; and
:meth:`~_ZoneLookup.transfer`, a zone's records as a zone transfer sends them (RFC 5936).

Part of :mod:`labsupport.dns.zone`.
"""

from __future__ import annotations

import dns.name
import dns.node
import dns.rcode
import dns.rdataset
import dns.rdatatype
import dns.rrset

from .zone_records import IN, MAX_CNAME_CHAIN, Lookup, to_name, to_rdtype
from .zone_store import _ZoneStore


class _ZoneLookup(_ZoneStore):
    """The authoritative answers of a :class:`~labsupport.dns.zone.ZoneSet`."""

    # -- authoritative look-up (RFC 1034 section 4.3.2) --------------------------------

    def lookup(self, qname: str | dns.name.Name, rdtype: str | int) -> Lookup:
        """The authoritative answer for one question, cached until the next edit."""
        name = to_name(qname)
        rdt = to_rdtype(rdtype)
        key = (name, int(rdt))
        with self._lock:
            found = self._lookups.get(key)
            if found is None or found.qname.to_text() != name.to_text():
                found = self._lookup(name, rdt)
                self._lookups[key] = found
            return found

    def _lookup(self, qname: dns.name.Name, rdtype: dns.rdatatype.RdataType) -> Lookup:
        chain: list[dns.rrset.RRset] = []
        name = qname
        first_zone = None
        for _ in range(MAX_CNAME_CHAIN + 1):
            origin = self.zone_for(name)
            if origin is None:
                if not chain:
                    return Lookup(qname, rdtype, dns.rcode.REFUSED, authoritative=False)
                # The chain leaves the lab's zones: answer what we have (RFC 1034 4.3.2).
                return Lookup(qname, rdtype, dns.rcode.NOERROR, tuple(chain), zone=first_zone)
            first_zone = first_zone or origin
            failure = self._failure_for(name)
            if failure:
                rcode = dns.rcode.SERVFAIL
                return Lookup(qname, rdtype, rcode, authoritative=False, failure=failure)
            zone = self._zones[origin]
            node = zone.get_node(name)
            owner = name
            if node is None:
                if name in self._existing_names(origin):
                    # An empty non-terminal exists: NODATA, not NXDOMAIN (RFC 8020).
                    return Lookup(
                        qname, rdtype, dns.rcode.NOERROR, tuple(chain), self._soa(origin),
                        zone=first_zone,
                    )
                node = self._wildcard(origin, name)
                if node is None:
                    return Lookup(
                        qname, rdtype, dns.rcode.NXDOMAIN, tuple(chain), self._soa(origin),
                        zone=first_zone,
                    )
            if rdtype == dns.rdatatype.ANY:
                rrsets = [self._rrset(owner, rds) for rds in node.rdatasets]
                return Lookup(qname, rdtype, dns.rcode.NOERROR, tuple(chain + rrsets),
                              zone=first_zone)
            rds = node.get_rdataset(IN, rdtype)
            if rds is not None:
                chain.append(self._rrset(owner, rds))
                return Lookup(qname, rdtype, dns.rcode.NOERROR, tuple(chain), zone=first_zone)
            cname = node.get_rdataset(IN, dns.rdatatype.CNAME)
            if cname is not None and rdtype != dns.rdatatype.CNAME:
                chain.append(self._rrset(owner, cname))
                name = cname[0].target
                continue
            return Lookup(
                qname, rdtype, dns.rcode.NOERROR, tuple(chain), self._soa(origin),
                zone=first_zone,
            )
        # A CNAME loop or an over-long chain: a server gives up with SERVFAIL.
        return Lookup(qname, rdtype, dns.rcode.SERVFAIL, tuple(chain), authoritative=False)

    def _wildcard(self, origin: dns.name.Name, name: dns.name.Name) -> dns.node.Node | None:
        """RFC 4592: the wildcard at the closest encloser, if there is one."""
        existing = self._existing_names(origin)
        encloser = name.parent()
        while encloser not in existing and encloser != origin and encloser != dns.name.root:
            encloser = encloser.parent()
        star = dns.name.Name((b"*",) + encloser.labels)
        return self._zones[origin].get_node(star)

    def _existing_names(self, origin: dns.name.Name) -> frozenset[dns.name.Name]:
        names = self._existing.get(origin)
        if names is None:
            found = set()
            for owner in self._zones[origin].nodes:
                n = owner
                while n not in found and n != origin and n != dns.name.root:
                    found.add(n)
                    n = n.parent()
            found.add(origin)
            names = frozenset(found)
            self._existing[origin] = names
        return names

    def _soa(self, origin: dns.name.Name) -> tuple[dns.rrset.RRset, ...]:
        rds = self._zones[origin].get_rdataset(origin, dns.rdatatype.SOA)
        if rds is None:
            return ()
        rrset = self._rrset(origin, rds)
        # RFC 2308 section 3: the negative-caching TTL is min(SOA TTL, SOA MINIMUM).
        rrset.ttl = min(rds.ttl, rds[0].minimum)
        return (rrset,)

    @staticmethod
    def _rrset(owner: dns.name.Name, rds: dns.rdataset.Rdataset) -> dns.rrset.RRset:
        rrset = dns.rrset.RRset(owner, rds.rdclass, rds.rdtype, rds.covers)
        rrset.update(rds)
        return rrset

    def _failure_for(self, name: dns.name.Name) -> str | None:
        return self._failures.get(name) if self._failures else None

    # -- zone transfer (RFC 5936) -----------------------------------------------------

    def transfer(self, origin: str | dns.name.Name) -> list[dns.rrset.RRset] | None:
        """A zone transfer's records (RFC 5936): SOA, every other RRset, SOA again.

        None when ``origin`` is not the apex of a zone served here.
        """
        name = to_name(origin)
        with self._lock:
            zone = self._zones.get(name)
            if zone is None:
                return None
            body = [
                self._rrset(owner, rds)
                for owner, rds in zone.iterate_rdatasets()
                if rds.rdtype != dns.rdatatype.SOA
            ]
            soa_rds = zone.get_rdataset(name, dns.rdatatype.SOA)
            if soa_rds is None:
                return body
            full_soa = self._rrset(name, soa_rds)
            return [full_soa, *body, full_soa]
