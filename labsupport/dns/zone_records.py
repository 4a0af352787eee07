"""Names, record types and record values as the lab's zones take them, and :class:`Lookup`.

:func:`to_name`, :func:`to_rdtype` and :func:`make_rdata` turn what a student or a
lesson types ("mx1.northwind.test", "MX", "10 mx1.northwind.test.") into dnspython
objects, with a sentence instead of dnspython's exception when the text does not parse.
:class:`Lookup` is what an authoritative server answers for one question. The settings
the zones share (:data:`MAX_CNAME_CHAIN`, :data:`DEFAULT_TTL`) live here too.

Part of :mod:`labsupport.dns.zone`, which re-exports its public names.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import dns.exception
import dns.name
import dns.rcode
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rrset

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
