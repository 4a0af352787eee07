"""Live edits of the lab's zones, and failures on purpose.

:class:`_ZoneEdits` gives :class:`~labsupport.dns.zone.ZoneSet` the edits students and
lessons make while the lab runs (:meth:`~_ZoneEdits.add`, :meth:`~_ZoneEdits.set`,
:meth:`~_ZoneEdits.remove`), putting a zone back as its file has it
(:meth:`~_ZoneEdits.reset`), records the lab itself publishes beside the files
(:meth:`~_ZoneEdits.publish`), replaying a journal (:meth:`~_ZoneEdits.apply`,
:meth:`~_ZoneEdits.on_edit`), and names made to time out or fail with SERVFAIL
(:meth:`~_ZoneEdits.fail`).

Part of :mod:`labsupport.dns.zone`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import dns.rdataset
import dns.rdatatype
import dns.zone

from ..core.errors import ZoneEditError
from .zone_records import DEFAULT_TTL, IN, make_rdata, to_name, to_rdtype
from .zone_store import _ZoneStore


class _ZoneEdits(_ZoneStore):
    """The live edits of a :class:`~labsupport.dns.zone.ZoneSet`."""

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

    def publish(self, name: str, rdtype: str, *values: str) -> None:
        """Publish ``values`` as ``name``'s ``rdtype`` records as if the zone file had
        them: not a live edit (no :meth:`on_edit` journal), and :meth:`reset` keeps them.
        The lab publishes its DANE TLSA records this way, made from its certificate."""
        owner = to_name(name)
        origin = self._origin_or_error(owner)
        rdt = to_rdtype(rdtype)
        with self._lock:
            self._published.setdefault(origin, {})[(owner, rdt)] = list(values)
            self._edit("set", name, rdtype, list(values), None, record=False)

    def reset(self, origin: str | None = None) -> None:
        """Put one zone, or every zone, back as its file has it (with what the lab
        :meth:`publish`-ed)."""
        with self._lock:
            targets = list(self._zones) if origin is None else [self._zone_name(origin)]
            for name in targets:
                source = self._sources[name]
                self._zones[name] = (
                    dns.zone.Zone(name, relativize=False)
                    if source is None
                    else self._parse(source, name, None)
                )
                for (owner, rdt), values in self._published.get(name, {}).items():
                    self._edit("set", owner.to_text(), dns.rdatatype.RdataType(rdt).name, values,
                               None, record=False)
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

    def _edit(self, kind: str, name: str, rdtype: str, values: list[Any], ttl: int | None,
              *, record: bool = True) -> None:
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
                           "values": values, "ttl": ttl}, record=record)
