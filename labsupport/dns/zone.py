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

The code lives in five parts; :class:`ZoneSet` itself is defined here from them:
:mod:`~labsupport.dns.zone_records` holds the settings (:data:`MAX_CNAME_CHAIN`,
:data:`DEFAULT_TTL`), the parsing of names, record types and values (:func:`to_name`,
:func:`to_rdtype`, :func:`make_rdata`) and the :class:`Lookup` result;
:mod:`~labsupport.dns.zone_store` holds the zones' state: reading zone files, the caches
and listeners, and what is served; :mod:`~labsupport.dns.zone_lookup` the authoritative
look-up and zone transfers; :mod:`~labsupport.dns.zone_resolver` the dnspython resolver
contract; :mod:`~labsupport.dns.zone_edits` the live edits and failures on purpose.

Introduced in ``notebooks/01-dns-mx.ipynb``.
"""

from __future__ import annotations

from pathlib import Path

from .zone_edits import _ZoneEdits
from .zone_records import DEFAULT_TTL as DEFAULT_TTL
from .zone_records import IN as IN
from .zone_records import MAX_CNAME_CHAIN as MAX_CNAME_CHAIN
from .zone_records import Lookup as Lookup
from .zone_records import make_rdata as make_rdata
from .zone_records import to_name as to_name
from .zone_records import to_rdtype as to_rdtype
from .zone_resolver import _ZoneResolver


class ZoneSet(_ZoneEdits, _ZoneResolver):
    """A set of zones answering authoritatively and resolving in memory.

    Build one from the lab's files (:meth:`from_directory`), from zone-file text
    (:meth:`from_text`), or empty with a root origin (:meth:`empty`) and fill it with
    :meth:`add`; an empty root zone is authoritative for every name, which is what tests
    and conformance suites want.
    """

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

    def __repr__(self) -> str:
        return f"<ZoneSet {len(self._zones)} zones, generation {self.generation}>"
