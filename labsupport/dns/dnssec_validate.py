"""A validating look-up that explains the chain of trust (RFC 4033 section 5, RFC 4035 section 5).

:func:`validate` asks one question with the DO bit set and checks the answer the way a
validating resolver does, writing each step in words:

1. start from a trust anchor (a DS or DNSKEY record the validator is configured to
   trust) and fetch that zone's DNSKEY RRset; one key must match the anchor, and that
   key must have signed the DNSKEY RRset (RFC 4035 section 5.2);
2. walk down towards the zone that signed the answer: at each name ask the parent for
   the DS RRset, check the parent's signature over it, and match it to a key of the
   child; a parent's signed NSEC proving there is no DS means an unsigned delegation:
   *insecure* (RFC 4035 section 5.2);
3. check the RRSIG over each answer RRset with the now trusted keys: key tag,
   algorithm, validity period against the lab clock, then the cryptography
   (:func:`dns.dnssec.validate_rrsig`) (RFC 4035 section 5.3);
4. for "no such name" and "no such record", check the signed NSEC records that prove it
   (:mod:`labsupport.dns.dnssec_proofs`).

The verdict is one of RFC 4035 section 4.3's: ``"secure"``, ``"insecure"``, ``"bogus"``
(with the reason) or ``"indeterminate"`` (no trust anchor covers the name, or the server
gave no answer to check).

Introduced in ``notebooks/09-transport-security.ipynb``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import dns.dnssec
import dns.exception
import dns.message
import dns.name
import dns.query
import dns.rcode
import dns.rdata
import dns.rdataset
import dns.rdatatype
import dns.rdtypes.ANY.DNSKEY
import dns.rdtypes.ANY.DS
import dns.rdtypes.ANY.RRSIG
import dns.rrset

from ..core.errors import LabError
from ..core.results import Result, TraceBuilder
from .dnssec_proofs import (
    covers,
    describe,
    nsec_types,
    prove_nodata,
    prove_nxdomain,
    prove_wildcard,
)
from .zone_records import IN, to_name, to_rdtype

RFC_STATES = "RFC 4035 section 4.3"
RFC_KEYS = "RFC 4035 section 5.2"
RFC_RRSIG = "RFC 4035 section 5.3"

#: What each verdict means for the one who asked.
VERDICTS = {
    "secure": "every record checked from the trust anchor down: the answer is authentic",
    "insecure": "a signed parent proves the zone is not signed: nothing to check, "
                "but nothing forged either",
    "bogus": "a signature or proof that should be there is missing or wrong: a validating "
             "resolver answers SERVFAIL",
    "indeterminate": "the validator cannot tell whether the answer should be signed",
}

Asker = Callable[[dns.name.Name, dns.rdatatype.RdataType], dns.message.Message]
Anchors = dict[dns.name.Name, list[dns.rdata.Rdata]]


@dataclass(frozen=True, kw_only=True)
class DNSSECResult(Result):
    """The outcome of validating one answer, with the chain of trust walked."""

    qname: str
    rdtype: str
    rcode: str = ""
    answer: tuple[str, ...] = ()
    chain: tuple[str, ...] = ()

    @property
    def secure(self) -> bool:
        return self.verdict == "secure"

    def title(self) -> str:
        return f"DNSSEC for {self.qname} {self.rdtype}: {self.verdict}"


class _Stop(Exception):
    def __init__(self, verdict: str, reason: str) -> None:
        super().__init__(reason)
        self.verdict = verdict
        self.reason = reason


def validate(qname: str, rdtype: str = "A", source: Any = None, trust_anchor: Any = None,
             *, now: float | None = None) -> DNSSECResult:
    """Ask ``qname`` ``rdtype`` with DO and validate the answer from ``trust_anchor`` down.

    ``source`` is the lab's :class:`~labsupport.dns.nameserver.DNSServer` (asked in
    memory, its query log shows each question), a lab (its ``dns``), or a
    ``(host, port)`` pair asked over TCP. ``trust_anchor`` is a DS or DNSKEY RRset, a
    mapping of zone names to them, zone-file lines, or anything with
    ``trust_anchors()``; by default the server's own signer's anchors. ``now`` is the
    time to check signatures at (default: the server's lab clock).
    """
    name = to_name(qname)
    rdt = to_rdtype(rdtype)
    server = _server(source)
    ask = _asker(source if server is None else server)
    if trust_anchor is None:
        signer = getattr(server, "dnssec", None)
        if signer is None:
            raise LabError("validate() needs a trust_anchor, or the lab's DNS server whose "
                           "keys it can trust")
        trust_anchor = signer
    anchors = _anchors(trust_anchor)
    if now is None:
        clock = getattr(server, "clock", None)
        now = clock.time() if clock is not None else time.time()
    run = _Validation(ask, anchors, now)
    return run.result(name, rdt)


class _Validation:
    def __init__(self, ask: Asker, anchors: Anchors, now: float) -> None:
        self.ask_raw = ask
        self.anchors = anchors
        self.now = now
        self.trace = TraceBuilder()
        self.keys: dict[dns.name.Name, dns.rrset.RRset] = {}
        self.chain: list[str] = []
        self.statuses: list[str] = []

    # -- the whole run ------------------------------------------------------------------

    def result(self, qname: dns.name.Name, rdtype: dns.rdatatype.RdataType) -> DNSSECResult:
        rdtext = dns.rdatatype.to_text(rdtype)
        t = self.trace
        names = sorted(n.to_text() for n in self.anchors)
        listed = ", ".join(names) if len(names) <= 4 else f"{len(names)} zones"
        t.add(f"validating {qname.to_text()} {rdtext} at lab time {_when(self.now)}; trust "
              f"anchors for: {listed or 'none'}")
        response: dns.message.Message | None = None
        try:
            response = self.ask(qname, rdtype)
            verdict, reason = self._check_response(qname, rdtype, response)
        except _Stop as stop:
            verdict, reason = stop.verdict, stop.reason
        kind = {"secure": "ok", "bogus": "error"}.get(verdict, "warning")
        t.add(f"{verdict}: {reason}", kind=kind, rfc=RFC_STATES)
        answer = tuple(r.to_text() for r in response.answer
                       if r.rdtype != dns.rdatatype.RRSIG) if response else ()
        return DNSSECResult(
            verdict=verdict, summary=f"{reason} ({VERDICTS[verdict]})", trace=t.freeze(),
            qname=qname.to_text(), rdtype=rdtext,
            rcode=dns.rcode.to_text(response.rcode()) if response else "", answer=answer,
            chain=tuple(self.chain),
        )

    def _check_response(self, qname: dns.name.Name, rdtype: dns.rdatatype.RdataType,
                        response: dns.message.Message) -> tuple[str, str]:
        rcode = response.rcode()
        if rcode not in (dns.rcode.NOERROR, dns.rcode.NXDOMAIN):
            raise _Stop("indeterminate", f"the server answered {dns.rcode.to_text(rcode)}; "
                        "there is no answer to check")
        data = [r for r in response.answer if r.rdtype != dns.rdatatype.RRSIG]
        nsecs = [r for r in response.authority if r.rdtype == dns.rdatatype.NSEC]
        final = qname
        for rrset in data:
            self._check_rrset(rrset, response.answer)
            if rrset.rdtype == dns.rdatatype.CNAME and rdtype != dns.rdatatype.CNAME:
                final = rrset[0].target
            elif self._from_wildcard(rrset, response.answer) and "secure" in self.statuses[-1:]:
                self._prove(prove_wildcard(rrset.name, self._checked(nsecs, response), self.trace))
        found = any(r.name == final and r.rdtype == rdtype for r in data)
        if not found:
            soa = [r for r in response.authority if r.rdtype == dns.rdatatype.SOA]
            if not soa:
                raise _Stop("bogus", "a negative answer without the zone's SOA record")
            self._check_rrset(soa[0], response.authority)
            if self.statuses[-1] == "secure":
                checked = self._checked(nsecs, response)
                if rcode == dns.rcode.NXDOMAIN:
                    self._prove(prove_nxdomain(final, checked, self.trace))
                else:
                    self._prove(prove_nodata(final, rdtype, checked, self.trace))
        if "insecure" in self.statuses:
            return "insecure", "the answer comes from an unsigned zone below an unsigned delegation"
        if "indeterminate" in self.statuses:
            return "indeterminate", "no trust anchor covers the zone that answered"
        what = "the answer" if found else (
            "the proof that the name does not exist" if rcode == dns.rcode.NXDOMAIN
            else f"the proof that there is no {dns.rdatatype.to_text(rdtype)} record")
        return "secure", f"{what} is signed and the signatures chain up to a trust anchor"

    def _checked(self, nsecs: list[dns.rrset.RRset], response: dns.message.Message
                 ) -> list[dns.rrset.RRset]:
        for nsec in nsecs:
            self._check_rrset(nsec, response.authority)
        return nsecs

    @staticmethod
    def _prove(failure: str | None) -> None:
        if failure is not None:
            raise _Stop("bogus", failure)

    @staticmethod
    def _from_wildcard(rrset: dns.rrset.RRset, section: list[dns.rrset.RRset]) -> bool:
        sigs = _sigs(section, rrset)
        return bool(sigs) and sigs[0].labels < len(rrset.name.labels) - 1

    # -- one RRset ------------------------------------------------------------------------

    def _check_rrset(self, rrset: dns.rrset.RRset, section: list[dns.rrset.RRset]) -> None:
        label = f"{rrset.name.to_text()} {dns.rdatatype.to_text(rrset.rdtype)}"
        sigs = _sigs(section, rrset)
        self.trace.add(f"check the {label} RRset ({len(rrset)} record(s), "
                       f"{len(sigs)} RRSIG(s))", detail=rrset.to_text())
        with self.trace.nested():
            if not sigs:
                status = self._walk(rrset.name, None)
                if status == "secure":
                    raise _Stop("bogus", f"{label} has no RRSIG, but its zone is signed: a "
                                "signed zone signs every RRset (RFC 4035 section 2.2)")
                self.statuses.append(status)
                return
            signer = sigs[0].signer
            if not rrset.name.is_subdomain(signer):
                raise _Stop("bogus", f"the RRSIG over {label} names {signer.to_text()} as "
                            "its signer, which is not the zone of that name")
            status = self._walk(signer, signer)
            self.statuses.append(status)
            if status == "secure":
                self._verify(rrset, sigs, signer)

    def _verify(self, rrset: dns.rrset.RRset, sigs: list[dns.rdtypes.ANY.RRSIG.RRSIG],
                zone: dns.name.Name, keys: dns.rrset.RRset | None = None) -> None:
        """Check the RRSIGs over ``rrset`` with ``zone``'s trusted keys; one must hold."""
        keys = keys if keys is not None else self.keys[zone]
        label = f"{rrset.name.to_text()} {dns.rdatatype.to_text(rrset.rdtype)}"
        reasons = []
        for sig in sigs:
            self.trace.add(
                f"RRSIG over {label}: signer {sig.signer.to_text()}, key tag {sig.key_tag}, "
                f"algorithm {_algorithm(sig.algorithm)}, valid {_when(sig.inception)} to "
                f"{_when(sig.expiration)}", kind="info", rfc=RFC_RRSIG)
            reason = self._rrsig_problem(rrset, sig, zone, keys)
            if reason is None:
                self.trace.add(f"the signature verifies with DNSKEY key tag {sig.key_tag}: "
                               f"{label} is as {zone.to_text()} signed it", kind="ok")
                return
            self.trace.add(reason, kind="error")
            reasons.append(reason)
        raise _Stop("bogus", f"{label}: " + "; ".join(reasons))

    def _rrsig_problem(self, rrset: dns.rrset.RRset, sig: dns.rdtypes.ANY.RRSIG.RRSIG,
                       zone: dns.name.Name, keys: dns.rrset.RRset) -> str | None:
        if sig.signer != zone:
            return f"signed by {sig.signer.to_text()}, not by the zone {zone.to_text()}"
        matching = [k for k in keys if isinstance(k, dns.rdtypes.ANY.DNSKEY.DNSKEY)
                    and dns.dnssec.key_id(k) == sig.key_tag and k.algorithm == sig.algorithm]
        if not matching:
            return (f"no trusted DNSKEY of {zone.to_text()} has key tag {sig.key_tag} and "
                    f"algorithm {int(sig.algorithm)}")
        if sig.expiration < self.now:
            return f"the signature expired at {_when(sig.expiration)}"
        if sig.inception > self.now:
            return f"the signature is not valid before {_when(sig.inception)}"
        try:
            dns.dnssec.validate_rrsig(rrset, sig, {zone: _rdataset(keys)}, now=self.now)
        except dns.dnssec.UnsupportedAlgorithm:
            return f"algorithm {_algorithm(sig.algorithm)} is not supported here"
        except dns.dnssec.ValidationFailure as exc:
            if str(exc) == "verify failure":
                return ("the signature does not match the records: they were changed after "
                        "signing, or the signature was damaged")
            return f"the signature does not hold: {exc}"
        return None

    # -- the chain of trust ---------------------------------------------------------------

    def _walk(self, target: dns.name.Name, zone: dns.name.Name | None) -> str:
        """Trust the keys of ``zone`` (or, for unsigned data, of the deepest zone above
        ``target``): "secure", "insecure" or "indeterminate"; bogus raises."""
        if zone is not None and zone in self.keys:
            return "secure"
        anchor = next((a for a in _ancestors(target) if a in self.anchors), None)
        if anchor is None:
            self.trace.add(f"no trust anchor is at or above {target.to_text()}",
                           kind="warning", rfc="RFC 4035 section 4.3")
            return "indeterminate"
        if anchor not in self.keys:
            self._trust_anchor_keys(anchor)
        current = anchor
        below = [n for n in reversed(_ancestors(target)) if n.is_subdomain(anchor) and n != anchor]
        for name in below:
            if name in self.keys:
                current = name
                continue
            cut = self._delegation(current, name)
            if cut == "insecure":
                return "insecure"
            if cut == "cut":
                current = name
            if zone is not None and current == zone:
                return "secure"
        if zone is not None and current != zone:
            raise _Stop("bogus", f"the RRSIG names {zone.to_text()} as its signer, but no "
                        f"signed delegation leads from {current.to_text()} to it")
        return "secure"

    def _trust_anchor_keys(self, anchor: dns.name.Name) -> None:
        self.trace.add(f"start at the trust anchor for {anchor.to_text()}: "
                       + "; ".join(_anchor_text(r) for r in self.anchors[anchor]),
                       kind="decision", rfc=RFC_KEYS)
        self._trust_keys(anchor, self.anchors[anchor], "the trust anchor")

    def _trust_keys(self, zone: dns.name.Name, trusted: Iterable[dns.rdata.Rdata],
                    what: str) -> None:
        """Fetch ``zone``'s DNSKEY RRset, match a key to ``trusted`` (DS or DNSKEY
        records), and check that key signed the RRset."""
        response = self.ask(zone, dns.rdatatype.DNSKEY)
        dnskeys = next((r for r in response.answer if r.rdtype == dns.rdatatype.DNSKEY
                        and r.name == zone), None)
        with self.trace.nested():
            if dnskeys is None:
                raise _Stop("bogus", f"{zone.to_text()} publishes no DNSKEY record, yet "
                            f"{what} says it is signed")
            for key in dnskeys:
                assert isinstance(key, dns.rdtypes.ANY.DNSKEY.DNSKEY)
                self.trace.add(f"DNSKEY key tag {dns.dnssec.key_id(key)}, flags {key.flags}"
                               f"{' (SEP)' if key.flags & 1 else ''}, algorithm "
                               f"{_algorithm(key.algorithm)}", kind="answer")
            matched = [k for k in dnskeys if any(_matches(zone, k, t) for t in trusted)]
            if not matched:
                raise _Stop("bogus", f"no DNSKEY of {zone.to_text()} matches {what} "
                            "(key tag, algorithm and digest)")
            for key in matched:
                self.trace.add(f"DNSKEY key tag {dns.dnssec.key_id(key)} matches {what}: "
                               "its digest is the same", kind="ok", rfc=RFC_KEYS)
            key_set = dns.rrset.from_rdata_list(zone, dnskeys.ttl, matched)
            self._verify(dnskeys, _sigs(response.answer, dnskeys), zone, keys=key_set)
        self.keys[zone] = dnskeys
        self.chain.append(zone.to_text())

    def _delegation(self, parent: dns.name.Name, child: dns.name.Name) -> str:
        """Ask ``parent`` for ``child``'s DS: "cut" (a signed delegation, keys now
        trusted), "insecure" (proved unsigned) or "none" (no zone cut at ``child``)."""
        response = self.ask(child, dns.rdatatype.DS)
        ds = next((r for r in response.answer if r.rdtype == dns.rdatatype.DS
                   and r.name == child), None)
        with self.trace.nested():
            if ds is not None:
                self._verify(ds, _sigs(response.answer, ds), parent)
                self.trace.add(f"{parent.to_text()} vouches for {child.to_text()}'s key: "
                               + "; ".join(_anchor_text(r) for r in ds), kind="decision",
                               rfc=RFC_KEYS)
                self._trust_keys(child, list(ds), f"the DS in {parent.to_text()}")
                return "cut"
            nsecs = [r for r in response.authority if r.rdtype == dns.rdatatype.NSEC]
            for nsec in nsecs:
                self._verify(nsec, _sigs(response.authority, nsec), parent)
            own = next((n for n in nsecs if n.name == child), None)
            if own is not None:
                types = nsec_types(own)
                if dns.rdatatype.NS in types and dns.rdatatype.SOA not in types:
                    if dns.rdatatype.DS in types:
                        raise _Stop("bogus", f"{describe(own)} lists a DS that the answer "
                                    "does not hold")
                    self.trace.add(f"{describe(own)}: {child.to_text()} is delegated without "
                                   "a DS record, an unsigned delegation", kind="warning",
                                   rfc=RFC_KEYS)
                    return "insecure"
                self.trace.add(f"{describe(own)}: no zone cut at {child.to_text()}")
                return "none"
            failure = prove_nodata(child, dns.rdatatype.DS, nsecs, self.trace)
            if failure is None or any(covers(n, child) for n in nsecs):
                return "none"
            raise _Stop("bogus", f"{parent.to_text()} gives no signed proof that "
                        f"{child.to_text()} has no DS record")

    # -- asking -----------------------------------------------------------------------------

    def ask(self, qname: dns.name.Name, rdtype: dns.rdatatype.RdataType) -> dns.message.Message:
        text = f"{qname.to_text()} {dns.rdatatype.to_text(rdtype)}"
        self.trace.add(f"ask {text} with the DO bit set", kind="query")
        try:
            response = self.ask_raw(qname, rdtype)
        except (dns.exception.DNSException, OSError) as exc:
            raise _Stop("indeterminate", f"no answer to {text}: {exc}") from exc
        records = "\n".join(r.to_text() for r in response.answer + response.authority)
        with self.trace.nested():
            self.trace.add(f"{dns.rcode.to_text(response.rcode())}, {len(response.answer)} "
                           f"answer RRset(s)", kind="answer", detail=records or None)
        return response


# -- helpers --------------------------------------------------------------------------------


def _server(source: Any) -> Any:
    """The DNSServer behind ``source`` (a server, or a lab with ``.dns``), else None."""
    if hasattr(source, "answer") and callable(source.answer):
        return source
    inner = getattr(source, "dns", None)
    return inner if inner is not None and hasattr(inner, "answer") else None


def _asker(source: Any) -> Asker:
    if hasattr(source, "answer") and callable(source.answer):
        def ask_server(qname: dns.name.Name, rdtype: dns.rdatatype.RdataType
                       ) -> dns.message.Message:
            query = dns.message.make_query(qname, rdtype, want_dnssec=True, payload=1232)
            wire = source.answer(query.to_wire(), "dnssec-validate", "tcp")
            if wire is None:
                raise dns.exception.Timeout()
            return dns.message.from_wire(wire)
        return ask_server
    if isinstance(source, tuple) and len(source) == 2:
        host, port = source

        def ask_wire(qname: dns.name.Name, rdtype: dns.rdatatype.RdataType
                     ) -> dns.message.Message:
            query = dns.message.make_query(qname, rdtype, want_dnssec=True, payload=1232)
            return dns.query.tcp(query, str(host), port=int(port), timeout=5.0)
        return ask_wire
    raise LabError("validate() asks the lab's DNS server (lab.dns), a lab, or a "
                   f"(host, port) pair; got {type(source).__name__}")


def _anchors(given: Any) -> Anchors:
    """Trust anchors as {zone: [DS or DNSKEY rdata]}, from any of the accepted forms."""
    if hasattr(given, "trust_anchors") and callable(given.trust_anchors):
        given = given.trust_anchors()
    if isinstance(given, dns.rrset.RRset):
        given = [given]
    if isinstance(given, str):
        given = [given]
    anchors: Anchors = {}
    items: Iterable[Any] = given.values() if isinstance(given, Mapping) else given
    for item in items:
        rrsets = [item] if isinstance(item, dns.rrset.RRset) else _parse_anchor_text(item)
        for rrset in rrsets:
            if rrset.rdtype not in (dns.rdatatype.DS, dns.rdatatype.DNSKEY):
                raise LabError(f"a trust anchor is a DS or DNSKEY record, not "
                               f"{dns.rdatatype.to_text(rrset.rdtype)}")
            anchors.setdefault(rrset.name, []).extend(rrset)
    return anchors


def _parse_anchor_text(text: Any) -> list[dns.rrset.RRset]:
    if not isinstance(text, str):
        raise LabError(f"a trust anchor is a DS or DNSKEY record; got {type(text).__name__}")
    rrsets = []
    for line in (ln.strip() for ln in text.splitlines()):
        if not line or line.startswith(";"):
            continue
        try:
            rrsets.append(dns.rrset.from_text(*_anchor_fields(line)))
        except (dns.exception.DNSException, ValueError) as exc:
            raise LabError(f"{line!r} is not a DS or DNSKEY record "
                           "(for example 'northwind.test. IN DS 12345 13 2 ABCD...'): "
                           f"{exc}") from exc
    return rrsets


def _anchor_fields(line: str) -> tuple[str, int, str, str, str]:
    fields = line.split()
    owner, rest = fields[0], fields[1:]
    ttl = int(rest.pop(0)) if rest and rest[0].isdigit() else 3600
    if rest and rest[0].upper() == "IN":
        rest.pop(0)
    if len(rest) < 2:
        raise ValueError("missing the type or the data")
    return owner, ttl, "IN", rest[0], " ".join(rest[1:])


def _matches(zone: dns.name.Name, key: dns.rdata.Rdata, trusted: dns.rdata.Rdata) -> bool:
    if isinstance(trusted, dns.rdtypes.ANY.DS.DS):
        if not isinstance(key, dns.rdtypes.ANY.DNSKEY.DNSKEY):
            return False
        if dns.dnssec.key_id(key) != trusted.key_tag or key.algorithm != trusted.algorithm:
            return False
        try:
            digest = dns.dnssec.make_ds(zone, key, trusted.digest_type)
        except dns.dnssec.UnsupportedAlgorithm:
            return False
        return digest.digest == trusted.digest
    return key == trusted


def _sigs(section: list[dns.rrset.RRset], rrset: dns.rrset.RRset
          ) -> list[dns.rdtypes.ANY.RRSIG.RRSIG]:
    return [sig for r in section
            if r.rdtype == dns.rdatatype.RRSIG and r.covers == rrset.rdtype and r.name == rrset.name
            for sig in r if isinstance(sig, dns.rdtypes.ANY.RRSIG.RRSIG)]


def _ancestors(name: dns.name.Name) -> list[dns.name.Name]:
    """``name`` and every name above it, deepest first, the root last."""
    names = [name]
    while names[-1] != dns.name.root:
        names.append(names[-1].parent())
    return names


def _rdataset(rrset: dns.rrset.RRset) -> dns.rdataset.Rdataset:
    rds = dns.rdataset.Rdataset(IN, rrset.rdtype)
    rds.update(rrset)
    return rds


def _anchor_text(record: dns.rdata.Rdata) -> str:
    if isinstance(record, dns.rdtypes.ANY.DS.DS):
        return (f"DS key tag {record.key_tag}, algorithm {_algorithm(record.algorithm)}, "
                f"digest type {int(record.digest_type)}")
    if isinstance(record, dns.rdtypes.ANY.DNSKEY.DNSKEY):
        return f"DNSKEY key tag {dns.dnssec.key_id(record)}"
    return record.to_text()


def _algorithm(number: int) -> str:
    try:
        return f"{dns.dnssec.Algorithm(number).name} ({int(number)})"
    except ValueError:
        return str(int(number))


def _when(stamp: float) -> str:
    return datetime.fromtimestamp(stamp, tz=UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
