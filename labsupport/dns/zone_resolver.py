"""The resolver contract of the lab's zones: dnspython's ``Resolver.resolve``, in memory.

:class:`_ZoneResolver` gives :class:`~labsupport.dns.zone.ZoneSet` its
:meth:`~_ZoneResolver.resolve`, which follows ``dns.resolver.Resolver.resolve(qname,
rdtype)`` without any network: it returns ``dns.resolver.Answer`` objects and raises
``NXDOMAIN``, ``NoAnswer``, ``LifetimeTimeout`` and ``NoNameservers`` exactly as dnspython
does; and :meth:`~_ZoneResolver.response_for`, the response message a server sends for a
query given a :class:`~labsupport.dns.zone_records.Lookup`.

Part of :mod:`labsupport.dns.zone`.
"""

from __future__ import annotations

from typing import Any

import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.resolver

from .zone_lookup import _ZoneLookup
from .zone_records import IN, Lookup, to_name


class _ZoneResolver(_ZoneLookup):
    """The in-memory resolver of a :class:`~labsupport.dns.zone.ZoneSet`."""

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
