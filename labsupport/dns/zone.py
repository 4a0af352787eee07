"""The lab's zones in memory: authoritative look-ups, live edits, and a resolver.

:class:`ZoneSet` holds a set of dnspython zones (one per origin) and answers three kinds
of caller:

* the lab's DNS server asks :meth:`ZoneSet.lookup` for an authoritative answer
  (RFC 1034 section 4.3.2: answers, CNAME chains, NXDOMAIN and NODATA with the SOA);
* evaluators and tests call :meth:`ZoneSet.resolve`, which follows dnspython's
  ``Resolver.resolve(qname, rdtype)`` contract without any network: it returns
  ``dns.resolver.Answer`` objects and raises ``NXDOMAIN``, ``NoAnswer``,
  ``LifetimeTimeout`` and ``NoNameservers`` exactly as dnspython does;
* students and lessons edit records while the lab runs (:meth:`ZoneSet.add`,
  :meth:`ZoneSet.set`, :meth:`ZoneSet.remove`) and put a zone back as its file has it
  (:meth:`ZoneSet.reset`).

Every answer is built once and reused until the next edit: building a dnspython
``Answer`` costs tens of microseconds, more than a whole SPF evaluation should.

Introduced in ``notebooks/01-dns-mx.ipynb``.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.node
import dns.rcode
import dns.rdata
import dns.rdataclass
import dns.rdataset
import dns.rdatatype
import dns.resolver
import dns.rrset
import dns.zone

from ..core.errors import ZoneEditError

IN = dns.rdataclass.IN

#: RFC 1034 section 4.3.2 does not bound CNAME chains; resolvers stop somewhere. BIND's
#: limit is 16, and so is ours.
MAX_CNAME_CHAIN = 16

#: Default TTL for records added by a live edit when the name has none of that type yet.
DEFAULT_TTL = 3600

#: Example values shown when a live edit's value does not parse.
_VALUE_EXAMPLES = {
    "A": "192.0.2.25",
    "AAAA": "2001:db8::25",
    "MX": "10 mx1.northwind.test.",
    "CNAME": "server.careless.test.",
    "TXT": "v=spf1 -all",
    "PTR": "mx1.northwind.test.",
    "NS": "ns.lab.test.",
}


def to_name(name: str | dns.name.Name) -> dns.name.Name:
    """A domain name as an absolute dnspython name ("mx1.northwind.test" is absolute).

    Text that is not a domain name (an empty label, a label over 63 octets) raises
    :class:`~labsupport.core.errors.ZoneEditError` with a sentence, not dnspython's exception.
    """
    if isinstance(name, dns.name.Name):
        return name if name.is_absolute() else name.concatenate(dns.name.root)
    try:
        return dns.name.from_text(name, origin=dns.name.root)
    except dns.exception.DNSException as exc:
        raise ZoneEditError(
            f"{name!r} is not a valid domain name (for example mx1.northwind.test): {exc}"
        ) from exc


def to_rdtype(rdtype: str | int) -> dns.rdatatype.RdataType:
    """A record type from its name ("MX") or number, with a clear error."""
    try:
        if isinstance(rdtype, str):
            return dns.rdatatype.from_text(rdtype.strip().upper())
        return dns.rdatatype.RdataType.make(rdtype)
    except (dns.rdatatype.UnknownRdatatype, ValueError) as exc:
        raise ZoneEditError(f"{rdtype!r} is not a DNS record type (try A, AAAA, MX, TXT)") from exc


def make_rdata(rdtype: str | int, value: str | Iterable[str]) -> dns.rdata.Rdata:
    """Parse one record value as a zone file would, names taken as absolute.

    TXT values may be given as plain text (``"v=spf1 -all"``), which becomes one record
    split into 255-octet character-strings as RFC 7208 section 3.3 describes, or as a
    list of strings (several character-strings of one record), or in zone-file syntax
    with quotes.
    """
    rdt = to_rdtype(rdtype)
    if rdt in (dns.rdatatype.TXT, dns.rdatatype.SPF):
        if isinstance(value, str) and not value.lstrip().startswith('"'):
            raw = value.encode("utf-8")
            strings = [raw[i : i + 255] for i in range(0, len(raw), 255)] or [b""]
            return dns.rdata.get_rdata_class(IN, rdt)(IN, rdt, strings)
        if not isinstance(value, str):
            strings = [s.encode("utf-8") if isinstance(s, str) else bytes(s) for s in value]
            if any(len(s) > 255 for s in strings):
                raise ZoneEditError("a TXT character-string holds at most 255 octets")
            return dns.rdata.get_rdata_class(IN, rdt)(IN, rdt, strings)
    if not isinstance(value, str):
        raise ZoneEditError(f"a {dns.rdatatype.to_text(rdt)} value is one string")
    try:
        return dns.rdata.from_text(IN, rdt, value, origin=dns.name.root, relativize=False)
    except dns.exception.DNSException as exc:
        example = _VALUE_EXAMPLES.get(dns.rdatatype.to_text(rdt))
        hint = f" (for example {example!r})" if example else ""
        raise ZoneEditError(
            f"{value!r} is not a valid {dns.rdatatype.to_text(rdt)} value{hint}: {exc}"
        ) from exc


@dataclass(frozen=True)
class Lookup:
    """What an authoritative server answers for one question.

    ``rcode`` is a ``dns.rcode.Rcode``; ``failure`` is ``"timeout"`` or ``"servfail"``
    for names a lesson made fail on purpose (see :meth:`ZoneSet.fail`).
    """

    qname: dns.name.Name
    rdtype: dns.rdatatype.RdataType
    rcode: dns.rcode.Rcode
    answer: tuple[dns.rrset.RRset, ...] = ()
    authority: tuple[dns.rrset.RRset, ...] = ()
    authoritative: bool = True
    zone: dns.name.Name | None = None
    failure: str | None = None

    @property
    def nodata(self) -> bool:
        """NOERROR with no record of the asked type at the end of the chain."""
        if self.rcode != dns.rcode.NOERROR or self.failure:
            return False
        final = self.answer[-1] if self.answer else None
        return final is None or (final.rdtype == dns.rdatatype.CNAME != self.rdtype)


class ZoneSet:
    """A set of zones answering authoritatively and resolving in memory.

    Build one from the lab's files (:meth:`from_directory`), from zone-file text
    (:meth:`from_text`), or empty with a root origin (:meth:`empty`) and fill it with
    :meth:`add`; an empty root zone is authoritative for every name, which is what tests
    and conformance suites want.
    """

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._zones: dict[dns.name.Name, dns.zone.Zone] = {}
        self._sources: dict[dns.name.Name, str | None] = {}
        self._failures: dict[dns.name.Name, str] = {}
        self._existing: dict[dns.name.Name, frozenset[dns.name.Name]] = {}
        self._lookups: dict[tuple[dns.name.Name, int], Lookup] = {}
        self._answers: dict[tuple[dns.name.Name, int], tuple[str, Any]] = {}
        # (qname, rdtype) exactly as given -> (outcome, the question as logged); class IN.
        self._answers_by_text: dict[tuple[str, str | int],
                                    tuple[tuple[str, Any], tuple[str, str]]] = {}
        self._listeners: list[Callable[[dict[str, Any]], None]] = []
        self.generation = 0
        #: The questions :meth:`resolve` was asked, newest last (for tests and counters).
        self.queries: deque[tuple[str, str]] = deque(maxlen=10_000)

    # -- building ---------------------------------------------------------------------

    @classmethod
    def empty(cls, origin: str = ".") -> ZoneSet:
        """One empty zone at ``origin`` (the root by default: authoritative for all)."""
        zones = cls()
        zones._install(to_name(origin), None)
        return zones

    @classmethod
    def from_text(cls, text: str, origin: str) -> ZoneSet:
        """One zone from master-file text."""
        zones = cls()
        zones.load_text(text, origin)
        return zones

    @classmethod
    def from_directory(cls, directory: str | Path) -> ZoneSet:
        """Every ``<origin>.zone`` file in ``directory``."""
        zones = cls()
        paths = sorted(Path(directory).glob("*.zone"))
        if not paths:
            raise FileNotFoundError(f"no *.zone files in {directory}")
        for path in paths:
            zones.load_text(path.read_text(encoding="utf-8"), path.name[: -len(".zone")], path)
        return zones

    def load_text(self, text: str, origin: str, filename: Path | None = None) -> None:
        """Add (or replace) one zone from master-file text."""
        name = to_name(origin)
        zone = self._parse(text, name, filename)
        with self._lock:
            self._zones[name] = zone
            self._sources[name] = text
            self._changed({"op": "load", "zone": name.to_text()}, record=False)

    def _install(self, origin: dns.name.Name, text: str | None) -> None:
        with self._lock:
            if text is None:
                self._zones[origin] = dns.zone.Zone(origin, relativize=False)
            else:
                self._zones[origin] = self._parse(text, origin, None)
            self._sources[origin] = text
            self._changed({"op": "load", "zone": origin.to_text()}, record=False)

    @staticmethod
    def _parse(text: str, origin: dns.name.Name, filename: Path | None) -> dns.zone.Zone:
        try:
            return dns.zone.from_text(
                text, origin=origin, relativize=False, filename=str(filename or origin)
            )
        except dns.exception.DNSException as exc:
            where = filename or origin.to_text()
            raise ZoneEditError(f"the zone file {where} does not parse: {exc}") from exc

    # -- what is there ----------------------------------------------------------------

    @property
    def origins(self) -> list[str]:
        """The zones served, as text without the trailing dot, sorted."""
        with self._lock:
            return sorted(o.to_text(omit_final_dot=True) for o in self._zones)

    def zone_for(self, name: str | dns.name.Name) -> dns.name.Name | None:
        """The origin of the zone that holds ``name`` (longest match), or None."""
        n = to_name(name)
        with self._lock:
            while True:
                if n in self._zones:
                    return n
                if n == dns.name.root:
                    return None
                n = n.parent()

    def zone_text(self, origin: str) -> str:
        """The zone as it stands now, in master-file format."""
        zone = self._zone(origin)
        with self._lock:
            return zone.to_text(relativize=False, want_comments=False)

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

    def names(self) -> list[str]:
        """Every owner name in every zone, sorted, without trailing dots."""
        with self._lock:
            return sorted(
                n.to_text(omit_final_dot=True) for z in self._zones.values() for n in z.nodes
            )

    def mail_domains(self) -> list[str]:
        """Zone origins outside the reverse trees: the lab's organisations' domains."""
        return [o for o in self.origins if not o.endswith(".arpa") and o not in ("", ".")]

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

    # -- the resolver contract ----------------------------------------------------------

    def resolve(
        self,
        qname: str | dns.name.Name,
        rdtype: str | int = "A",
        rdclass: str | int = "IN",
        tcp: bool = False,
        source: str | None = None,
        raise_on_no_answer: bool = True,
        source_port: int = 0,
        lifetime: float | None = None,
        search: bool | None = None,
    ) -> dns.resolver.Answer:
        """Answer as ``dns.resolver.Resolver.resolve`` would, from memory.

        Raises ``dns.resolver.NXDOMAIN``, ``NoAnswer`` (unless ``raise_on_no_answer``
        is false), ``LifetimeTimeout`` for names set to time out, and ``NoNameservers``
        for SERVFAIL and for names outside every zone (REFUSED), as dnspython does.
        """
        by_text = isinstance(qname, str) and rdclass in ("IN", IN)
        fast = (str(qname), rdtype)
        known = self._answers_by_text.get(fast) if by_text else None
        if known is not None:
            self.queries.append(known[1])
            return self._deliver(known[0], raise_on_no_answer, lifetime)
        name = to_name(qname) if isinstance(qname, dns.name.Name) else dns.name.from_text(qname)
        rdt = dns.rdatatype.RdataType.make(rdtype)
        if dns.rdatatype.is_metatype(rdt):
            raise dns.resolver.NoMetaqueries
        if dns.rdataclass.RdataClass.make(rdclass) != IN:
            raise dns.resolver.NoNameservers(
                request=dns.message.make_query(name, rdt), errors=[]
            )
        asked = (name.to_text(), dns.rdatatype.to_text(rdt))
        self.queries.append(asked)
        key = (name, int(rdt))
        with self._lock:
            outcome = self._answers.get(key)
            if outcome is None:
                outcome = self._answer(name, rdt)
                self._answers[key] = outcome
            if by_text and isinstance(rdtype, (str, int)):
                self._answers_by_text[fast] = (outcome, asked)
        return self._deliver(outcome, raise_on_no_answer, lifetime)

    @staticmethod
    def _deliver(outcome: tuple[str, Any], raise_on_no_answer: bool, lifetime: float | None
                 ) -> dns.resolver.Answer:
        """Return the stored answer, or raise the stored failure, as dnspython would."""
        kind, value = outcome
        if kind == "answer":
            return value
        if kind == "noanswer":
            if raise_on_no_answer:
                raise dns.resolver.NoAnswer(response=value.response)
            return value
        if kind == "nxdomain":
            name = value.question[0].name
            raise dns.resolver.NXDOMAIN(qnames=[name], responses={name: value})
        if kind == "timeout":
            raise dns.resolver.LifetimeTimeout(timeout=lifetime or 0.0, errors=[])
        rcode, response = value
        raise dns.resolver.NoNameservers(
            request=response, errors=[("memory", False, 53, rcode, response)],
        )

    def _answer(self, name: dns.name.Name, rdtype: dns.rdatatype.RdataType) -> tuple[str, Any]:
        found = self._lookup(name, rdtype)
        if found.failure == "timeout":
            return ("timeout", None)
        response = self.response_for(dns.message.make_query(name, rdtype), found)
        if found.rcode == dns.rcode.NXDOMAIN:
            return ("nxdomain", response)
        if found.rcode != dns.rcode.NOERROR:
            return ("error", (dns.rcode.to_text(found.rcode), response))
        answer = dns.resolver.Answer(name, rdtype, IN, response, "memory", 53)  # type: ignore[arg-type]
        return ("noanswer" if answer.rrset is None else "answer", answer)

    @staticmethod
    def response_for(query: dns.message.Message, found: Lookup) -> dns.message.Message:
        """The response message a server sends for ``query`` given ``found``."""
        response = dns.message.make_response(query)
        if found.authoritative:
            response.flags |= dns.flags.AA
        response.set_rcode(found.rcode)
        # Add through find_rrset(create=True) so the message's own index knows each RRset
        # (dnspython's CNAME chaining looks them up there).
        for section, rrsets in ((response.answer, found.answer),
                                (response.authority, found.authority)):
            for rrset in rrsets:
                added = response.find_rrset(section, rrset.name, rrset.rdclass, rrset.rdtype,
                                            rrset.covers, create=True, force_unique=True)
                added.update(rrset)
        return response

    # -- failures on purpose (tests, lessons about temperror) ----------------------------

    def fail(self, name: str, how: str = "timeout") -> None:
        """Make every question about ``name`` time out (``"timeout"``) or fail with
        SERVFAIL (``"servfail"``), until :meth:`clear_failures`."""
        if how not in ("timeout", "servfail"):
            raise ValueError("how is 'timeout' or 'servfail'")
        with self._lock:
            self._failures[to_name(name)] = how
            self._changed({"op": "fail", "name": name, "how": how}, record=False)

    def clear_failures(self) -> None:
        with self._lock:
            self._failures.clear()
            self._changed({"op": "clear_failures"}, record=False)

    # -- live edits ---------------------------------------------------------------------

    def add(self, name: str, rdtype: str, value: str | list[str], ttl: int | None = None) -> None:
        """Add one record to ``name`` (creating the name if needed)."""
        self._edit("add", name, rdtype, [value], ttl)

    def set(self, name: str, rdtype: str, *values: str | list[str], ttl: int | None = None) -> None:
        """Replace every ``rdtype`` record at ``name`` with ``values``."""
        if not values:
            raise ZoneEditError("set() needs at least one value; use remove() to delete")
        self._edit("set", name, rdtype, list(values), ttl)

    def remove(self, name: str, rdtype: str | None = None, value: str | None = None) -> None:
        """Remove one record, every record of a type, or (no type) the whole name."""
        owner = to_name(name)
        origin = self._origin_or_error(owner)
        with self._lock:
            zone = self._zones[origin]
            node = zone.get_node(owner)
            if node is None:
                raise ZoneEditError(f"{owner.to_text()} has no records to remove")
            if rdtype is None:
                if owner == origin:
                    raise ZoneEditError("the zone's apex (SOA and NS) cannot be removed")
                zone.delete_node(owner)
            else:
                rdt = to_rdtype(rdtype)
                rds = node.get_rdataset(IN, rdt)
                if rds is None:
                    raise ZoneEditError(
                        f"{owner.to_text()} has no {dns.rdatatype.to_text(rdt)} record"
                    )
                if value is None:
                    zone.delete_rdataset(owner, rdt)
                else:
                    rdata = make_rdata(rdt, value)
                    if rdata not in rds:
                        raise ZoneEditError(
                            f"{owner.to_text()} has no {dns.rdatatype.to_text(rdt)} "
                            f"record {rdata.to_text()}"
                        )
                    rds.discard(rdata)
                    if not rds:
                        zone.delete_rdataset(owner, rdt)
                if not node.rdatasets and owner != origin:
                    zone.delete_node(owner)
            self._changed({"op": "remove", "name": owner.to_text(), "type": rdtype,
                           "value": value})

    def reset(self, origin: str | None = None) -> None:
        """Put one zone, or every zone, back as its file has it."""
        with self._lock:
            targets = list(self._zones) if origin is None else [self._zone_name(origin)]
            for name in targets:
                source = self._sources[name]
                self._zones[name] = (
                    dns.zone.Zone(name, relativize=False)
                    if source is None
                    else self._parse(source, name, None)
                )
            if origin is None:
                self._failures.clear()
            self._changed({"op": "reset", "zone": origin})

    def apply(self, op: Mapping[str, Any]) -> None:
        """Replay one edit as :meth:`on_edit` listeners received it (journal replay)."""
        kind = op.get("op")
        if kind in ("add", "set"):
            self._edit(kind, op["name"], op["type"], list(op["values"]), op.get("ttl"))
        elif kind == "remove":
            self.remove(op["name"], op.get("type"), op.get("value"))
        elif kind == "reset":
            self.reset(op.get("zone"))
        else:
            raise ZoneEditError(f"unknown zone edit {kind!r}")

    def on_edit(self, listener: Callable[[dict[str, Any]], None]) -> None:
        """Call ``listener(op)`` after every live edit (add, set, remove, reset)."""
        self._listeners.append(listener)

    def _edit(self, kind: str, name: str, rdtype: str, values: list[Any], ttl: int | None) -> None:
        owner = to_name(name)
        origin = self._origin_or_error(owner)
        rdt = to_rdtype(rdtype)
        rdatas = [make_rdata(rdt, v) for v in values]
        with self._lock:
            zone = self._zones[origin]
            node = zone.get_node(owner)
            others = {r.rdtype for r in node.rdatasets} - {rdt} if node else set()
            others -= {dns.rdatatype.RRSIG, dns.rdatatype.NSEC}
            if rdt == dns.rdatatype.CNAME and others:
                raise ZoneEditError(
                    f"{owner.to_text()} already has other records; a name with a CNAME "
                    "can have no other data (RFC 1034 section 3.6.2, RFC 2181 section 10.1)"
                )
            if dns.rdatatype.CNAME in others:
                raise ZoneEditError(
                    f"{owner.to_text()} is a CNAME (an alias); an alias can have no other "
                    "records (RFC 2181 section 10.1). Remove the CNAME first."
                )
            if rdt == dns.rdatatype.CNAME and (len(rdatas) > 1 or (
                    kind == "add" and node and node.get_rdataset(IN, rdt))):
                raise ZoneEditError("a name has at most one CNAME record (RFC 2181 section 10.1)")
            existing = node.get_rdataset(IN, rdt) if node else None
            if ttl is None:
                ttl = existing.ttl if existing is not None else DEFAULT_TTL
            rds = dns.rdataset.Rdataset(IN, rdt)
            if kind == "add" and existing is not None:
                rds.update(existing)
            for rdata in rdatas:
                rds.add(rdata)
            rds.update_ttl(ttl)
            rds.ttl = ttl
            zone.replace_rdataset(owner, rds)
            self._changed({"op": kind, "name": owner.to_text(), "type": dns.rdatatype.to_text(rdt),
                           "values": values, "ttl": ttl})

    def _changed(self, op: dict[str, Any], record: bool = True) -> None:
        self.generation += 1
        self._lookups.clear()
        self._answers.clear()
        self._answers_by_text.clear()
        self._existing.clear()
        if record:
            for listener in list(self._listeners):
                listener(op)

    def _origin_or_error(self, owner: dns.name.Name) -> dns.name.Name:
        origin = self.zone_for(owner)
        if origin is None:
            raise ZoneEditError(
                f"{owner.to_text(omit_final_dot=True)} is not in any lab zone; the lab "
                f"serves: {', '.join(self.mail_domains())}"
            )
        return origin

    def _zone_name(self, origin: str) -> dns.name.Name:
        name = to_name(origin)
        if name not in self._zones:
            raise ZoneEditError(
                f"{origin} is not a lab zone; the lab serves: {', '.join(self.origins)}"
            )
        return name

    def _zone(self, origin: str) -> dns.zone.Zone:
        return self._zones[self._zone_name(origin)]

    def __repr__(self) -> str:
        return f"<ZoneSet {len(self._zones)} zones, generation {self.generation}>"
