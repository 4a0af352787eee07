"""The state of a set of zones: the zones, their sources, and what is in them.

:class:`_ZoneStore` is the base of :class:`~labsupport.dns.zone.ZoneSet`: it holds the
dnspython zones (one per origin), the text each was read from, the caches every edit
clears, and the listeners told of each edit. It reads zone-file text
(:meth:`_ZoneStore.load_text`), finds the zone that holds a name
(:meth:`_ZoneStore.zone_for`) and lists what is served (:attr:`_ZoneStore.origins`,
:meth:`_ZoneStore.names`, :meth:`_ZoneStore.mail_domains`).

Part of :mod:`labsupport.dns.zone`.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

import dns.exception
import dns.name
import dns.zone

from ..core.errors import ZoneEditError
from .zone_records import Lookup, to_name


class _ZoneStore:
    """The zones of a :class:`~labsupport.dns.zone.ZoneSet`, its caches and listeners."""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._zones: dict[dns.name.Name, dns.zone.Zone] = {}
        self._sources: dict[dns.name.Name, str | None] = {}
        self._failures: dict[dns.name.Name, str] = {}
        # Records the lab publishes beside the zone files (the DANE TLSA records made from
        # its certificate): (owner, type, values) per zone, kept by reset().
        self._published: dict[dns.name.Name, dict[tuple[dns.name.Name, int], list[str]]] = {}
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

    # -- reading zone files -----------------------------------------------------------

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

    def names(self) -> list[str]:
        """Every owner name in every zone, sorted, without trailing dots."""
        with self._lock:
            return sorted(
                n.to_text(omit_final_dot=True) for z in self._zones.values() for n in z.nodes
            )

    def mail_domains(self) -> list[str]:
        """Zone origins outside the reverse trees: the lab's organisations' domains."""
        return [o for o in self.origins if not o.endswith(".arpa") and o not in ("", ".")]

    # -- shared by look-ups and edits -------------------------------------------------

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
