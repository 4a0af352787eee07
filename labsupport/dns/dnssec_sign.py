"""DNSSEC signing of the lab's zones: keys, signed copies, DS records and trust anchors.

:class:`ZoneSigner` keeps one key per lab zone and a signed copy of each zone, made with
dnspython's :func:`dns.dnssec.sign_zone`: the DNSKEY at the apex, an RRSIG over every
authoritative RRset, and the NSEC chain that proves what does not exist (RFC 4034,
RFC 4035 section 2). Where the lab serves a zone's parent too, the parent's copy holds
the child's delegation (its NS) and its DS record (RFC 4035 section 2.4), so a validator
can walk down from the parent's key.

Choices, each said once:

* One key per zone, a *combined signing key* (CSK): flags 257 (zone key and SEP), ECDSA
  P-256 with SHA-256 (algorithm 13, RFC 6605). An ECDSA key is small and its signatures
  short, so the usual reason to split a key-signing key from a zone-signing key (a big
  RSA key signs only the DNSKEY set) does not apply, and one key tag is easier to follow
  through a trace: DS -> DNSKEY -> RRSIG all name the same key (RFC 6781 section 3.1.4
  allows this "single-type signing scheme").
* Zones are signed lazily, on the first question that needs their signatures (about
  8 ms a zone; all 19 lab zones take about 0.15 s, as long as the whole lab's start-up).
  A copy is signed again when its zone changed (every live edit of ``lab.zones``), when
  a child zone appeared or changed its delegation, and once a lab day
  (:data:`RESIGN_INTERVAL`), so signatures stay valid when the lab clock is advanced.
* Signature times come from the lab clock (:mod:`labsupport.core.clock`): inception an
  hour before the start of the current lab day, expiration :data:`SIGNATURE_LIFETIME`
  after it. ECDSA signatures are deterministic (RFC 6979), so the same data, key and
  day give the very same signature.

For exercises (see :meth:`ZoneSigner.hold` and :meth:`ZoneSigner.corrupt`): "forget to
re-sign" after an edit, or damage one signature, and see a validator say bogus and why.

Introduced in ``notebooks/09-transport-security.ipynb``.
"""

from __future__ import annotations

import os
import threading
import time
from bisect import bisect_right
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import dns.dnssec
import dns.name
import dns.node
import dns.rdataset
import dns.rdatatype
import dns.rdtypes.ANY.DNSKEY
import dns.rdtypes.ANY.RRSIG
import dns.rrset
import dns.zone
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from ..core.clock import LabClock
from ..core.errors import ZoneEditError
from .zone import ZoneSet
from .zone_records import IN, to_name, to_rdtype

#: RFC 6605: ECDSA Curve P-256 with SHA-256, the algorithm RFC 8624 recommends signing with.
ALGORITHM = dns.dnssec.Algorithm.ECDSAP256SHA256
#: RFC 4034 section 2.1.1: bit 7 is the Zone Key flag, bit 15 the Secure Entry Point.
CSK_FLAGS = 257
#: RFC 4509: the DS digest type every validator supports (SHA-256).
DS_DIGEST = dns.dnssec.DSDigest.SHA256
#: How long a signature is valid after the start of the lab day it was made in (seconds).
SIGNATURE_LIFETIME = 14 * 86400
#: Inception this long before signing time, for clocks slightly behind (seconds).
INCEPTION_SKEW = 3600
#: Zones are signed again once per this many seconds of lab time.
RESIGN_INTERVAL = 86400

_Input = frozenset[tuple[dns.name.Name, int, int, int, frozenset[object]]]


@dataclass(frozen=True)
class ZoneKey:
    """A zone's signing key: the private key and the DNSKEY record that publishes it."""

    origin: dns.name.Name
    private_key: ec.EllipticCurvePrivateKey = field(repr=False)
    dnskey: dns.rdtypes.ANY.DNSKEY.DNSKEY

    @property
    def key_tag(self) -> int:
        """RFC 4034 appendix B: the 16-bit tag RRSIG and DS records use to name the key."""
        return dns.dnssec.key_id(self.dnskey)

    def ds(self, ttl: int = 3600) -> dns.rrset.RRset:
        """The DS record a parent publishes for this key (RFC 4034 section 5)."""
        record = dns.dnssec.make_ds(self.origin, self.dnskey, DS_DIGEST)
        return dns.rrset.from_rdata(self.origin, ttl, record)

    def __str__(self) -> str:
        return (f"{self.origin.to_text()} key tag {self.key_tag}, algorithm "
                f"{ALGORITHM.name} ({int(ALGORITHM)}), flags {self.dnskey.flags}")


def generate_key(origin: str | dns.name.Name) -> ZoneKey:
    """A new ECDSA P-256 combined signing key for ``origin``."""
    private = ec.generate_private_key(ec.SECP256R1())
    return _zone_key(to_name(origin), private)


def _zone_key(origin: dns.name.Name, private: ec.EllipticCurvePrivateKey) -> ZoneKey:
    dnskey = dns.dnssec.make_dnskey(private.public_key(), ALGORITHM, flags=CSK_FLAGS)
    return ZoneKey(origin, private, dnskey)


def load_or_create_key(origin: str | dns.name.Name, key_dir: Path) -> ZoneKey:
    """The key stored for ``origin`` in ``key_dir`` (PEM, PKCS#8), made and saved if new."""
    name = to_name(origin)
    path = key_dir / f"{name.to_text(omit_final_dot=True) or 'root'}.dnssec.pem"
    if path.exists():
        private = serialization.load_pem_private_key(path.read_bytes(), password=None)
        if isinstance(private, ec.EllipticCurvePrivateKey):
            return _zone_key(name, private)
    key = generate_key(name)
    key_dir.mkdir(parents=True, exist_ok=True)
    pem = key.private_key.private_bytes(serialization.Encoding.PEM,
                                        serialization.PrivateFormat.PKCS8,
                                        serialization.NoEncryption())
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(pem)
    return key


@dataclass
class SignedZone:
    """One zone's signed copy, and what it was made from."""

    origin: dns.name.Name
    zone: dns.zone.Zone = field(repr=False)
    key: ZoneKey
    inception: int
    expiration: int
    day: int
    source: _Input = field(repr=False)
    generation: int
    seconds: float
    #: NSEC owners in canonical order (RFC 4034 section 6.1), for finding proofs.
    nsec_names: list[dns.name.Name] = field(default_factory=list, repr=False)
    #: Every name that exists in the zone, empty non-terminals included.
    existing: frozenset[dns.name.Name] = field(default_factory=frozenset, repr=False)

    def node(self, name: dns.name.Name) -> dns.node.Node | None:
        return self.zone.get_node(name)

    def rrsigs(self, name: dns.name.Name, covers: int) -> dns.rdataset.Rdataset | None:
        node = self.zone.get_node(name)
        if node is None:
            return None
        return node.get_rdataset(IN, dns.rdatatype.RRSIG, dns.rdatatype.RdataType.make(covers))

    def nsec_at(self, name: dns.name.Name) -> dns.rrset.RRset | None:
        """The NSEC record owned by ``name``, if the name is in the chain."""
        node = self.zone.get_node(name)
        rds = node.get_rdataset(IN, dns.rdatatype.NSEC) if node else None
        return _rrset(name, rds) if rds is not None else None

    def covering_nsec(self, name: dns.name.Name) -> dns.rrset.RRset | None:
        """The NSEC whose owner comes last before ``name`` in canonical order: the one
        that covers ``name`` when ``name`` does not exist (RFC 4035 section 3.1.3.2)."""
        if not self.nsec_names:
            return None
        index = bisect_right(self.nsec_names, name) - 1
        return self.nsec_at(self.nsec_names[index])

    def closest_encloser(self, name: dns.name.Name) -> dns.name.Name:
        """The longest existing ancestor of ``name`` (RFC 4592 section 3.3.1)."""
        encloser = name.parent()
        while encloser not in self.existing and encloser != self.origin:
            encloser = encloser.parent()
        return encloser


def _rrset(owner: dns.name.Name, rds: dns.rdataset.Rdataset) -> dns.rrset.RRset:
    rrset = dns.rrset.RRset(owner, rds.rdclass, rds.rdtype, rds.covers)
    rrset.update(rds)
    return rrset


class ZoneSigner:
    """Signs the zones of a :class:`~labsupport.dns.zone.ZoneSet` and keeps the copies.

    ``key_dir`` keeps the keys between runs (the lab's state directory); without it the
    keys live as long as this object. ``unsigned`` names zones to leave unsigned.
    """

    def __init__(self, zones: ZoneSet, clock: LabClock | None = None,
                 key_dir: str | Path | None = None, unsigned: Iterable[str] = ()) -> None:
        self.zones = zones
        self.clock = clock or LabClock()
        self.key_dir = Path(key_dir) if key_dir is not None else None
        self._unsigned = {to_name(o) for o in unsigned}
        self._keys: dict[dns.name.Name, ZoneKey] = {}
        self._signed: dict[dns.name.Name, SignedZone] = {}
        self._held = False
        self._lock = threading.RLock()
        #: Bumped by every change a cached DNS reply cannot see (hold, corrupt, unsign).
        self.version = 0

    # -- keys and trust anchors -------------------------------------------------------

    def key(self, origin: str | dns.name.Name) -> ZoneKey:
        """The signing key of zone ``origin`` (made on first use)."""
        name = self._origin(origin)
        with self._lock:
            key = self._keys.get(name)
            if key is None:
                key = (load_or_create_key(name, self.key_dir) if self.key_dir is not None
                       else generate_key(name))
                self._keys[name] = key
            return key

    def is_signed(self, origin: str | dns.name.Name) -> bool:
        return self._origin(origin) not in self._unsigned

    def ds(self, origin: str | dns.name.Name) -> dns.rrset.RRset:
        """The DS record for zone ``origin``: what its parent (or a registrar) publishes."""
        return self.key(origin).ds()

    def trust_anchors(self) -> dict[dns.name.Name, dns.rrset.RRset]:
        """The DS records a validator must trust to reach every signed lab zone.

        A signed zone whose parent the lab serves and signs is reached through the
        parent's DS; every other signed zone (in the lab world: all of them, since the
        lab serves no ``test.`` or root zone) is an island of security whose DS is
        configured as a trust anchor, as in a resolver's trust-anchor file.
        """
        anchors = {}
        for origin in self._origins():
            if self.is_signed(origin) and self._signed_parent(origin) is None:
                anchors[origin] = self.ds(origin)
        return anchors

    # -- the signed copies ------------------------------------------------------------

    def signed(self, origin: str | dns.name.Name) -> SignedZone | None:
        """The signed copy of zone ``origin`` as it stands now (None: left unsigned)."""
        name = self._origin(origin)
        if name in self._unsigned:
            return None
        if self.zones.lookup(name, "SOA").nodata:
            return None  # an empty zone (ZoneSet.empty()) has nothing to sign
        with self._lock:
            cached = self._signed.get(name)
            if cached is not None and (self._held or (
                    cached.generation == self.zones.generation and cached.day == self._day())):
                return cached
            source = self._input(name)
            if cached is not None and cached.source == source and cached.day == self._day():
                cached.generation = self.zones.generation
                return cached
            signed = self._sign(name, source)
            self._signed[name] = signed
            return signed

    def sign_all(self) -> float:
        """Sign every zone now (not only when asked); returns the seconds it took."""
        start = time.perf_counter()
        for origin in self._origins():
            self.signed(origin)
        return time.perf_counter() - start

    def state(self) -> tuple[int, int]:
        """What, besides the zones' generation, a cached reply depends on."""
        return (self.version, self._day())

    def zone_for(self, name: dns.name.Name) -> SignedZone | None:
        """The signed copy of the zone that holds ``name`` (None: none, or unsigned)."""
        origin = self.zones.zone_for(name)
        return self.signed(origin) if origin is not None else None

    def rrsigs_for(self, owner: dns.name.Name, rdtype: int) -> dns.rrset.RRset | None:
        """The RRSIGs over ``owner``'s ``rdtype`` RRset, owner as asked; for a name made
        by a wildcard, the wildcard's RRSIGs (RFC 4035 section 3.1.3.3)."""
        signed = self.zone_for(owner)
        if signed is None:
            return None
        rds = signed.rrsigs(owner, rdtype)
        if rds is None and signed.node(owner) is None:
            star = dns.name.Name((b"*",) + signed.closest_encloser(owner).labels)
            rds = signed.rrsigs(star, rdtype)
        return _rrset(owner, rds) if rds is not None else None

    # -- breaking signatures on purpose (exercises) -------------------------------------

    def hold(self, on: bool = True) -> None:
        """Stop re-signing (``on``) or start again: edits of the zones are then served
        with the old signatures and NSEC chain, as when an operator edits a signed zone
        and forgets to sign it again. A validator finds the signatures do not match."""
        with self._lock:
            for origin in self._origins():
                if on and origin not in self._unsigned:
                    self.signed(origin)
            self._held = on
            self.version += 1

    def corrupt(self, name: str, rdtype: str) -> None:
        """Damage the signature over ``name``'s ``rdtype`` records (flip one bit of each
        RRSIG), until the zone is signed again (:meth:`repair`, or any edit of it)."""
        owner = to_name(name)
        rdt = to_rdtype(rdtype)
        with self._lock:
            signed = self.zone_for(owner)
            rds = signed.rrsigs(owner, rdt) if signed is not None else None
            if signed is None or rds is None:
                raise ZoneEditError(f"{owner.to_text()} has no signed "
                                    f"{dns.rdatatype.to_text(rdt)} records to corrupt")
            damaged = dns.rdataset.Rdataset(IN, dns.rdatatype.RRSIG, rdt)
            for rrsig in rds:
                assert isinstance(rrsig, dns.rdtypes.ANY.RRSIG.RRSIG)
                sig = bytearray(rrsig.signature)
                sig[len(sig) // 2] ^= 0x01
                damaged.add(rrsig.replace(signature=bytes(sig)), rds.ttl)
            signed.zone.replace_rdataset(owner, damaged)
            self.version += 1

    def leave_unsigned(self, origin: str, unsigned: bool = True) -> None:
        """Serve zone ``origin`` without DNSSEC (``unsigned``), or sign it again."""
        name = self._origin(origin)
        with self._lock:
            if unsigned:
                self._unsigned.add(name)
            else:
                self._unsigned.discard(name)
            self._signed.clear()  # its parent's copy holds (or drops) its DS
            self.version += 1

    def repair(self) -> None:
        """Forget every signed copy and re-sign from the zones as they stand now."""
        with self._lock:
            self._signed.clear()
            self._held = False
            self.version += 1

    # -- signing ------------------------------------------------------------------------

    def _day(self) -> int:
        return int(self.clock.time() // RESIGN_INTERVAL)

    def _origins(self) -> list[dns.name.Name]:
        return [to_name(o) for o in self.zones.origins]

    def _origin(self, origin: str | dns.name.Name) -> dns.name.Name:
        name = to_name(origin)
        if self.zones.zone_for(name) != name:
            raise ZoneEditError(f"{origin} is not a lab zone; the lab serves: "
                                f"{', '.join(self.zones.mail_domains())}")
        return name

    def _signed_parent(self, origin: dns.name.Name) -> dns.name.Name | None:
        if origin == dns.name.root:
            return None
        parent = self.zones.zone_for(origin.parent())
        return parent if parent is not None and self.is_signed(parent) else None

    def _children(self, origin: dns.name.Name) -> list[dns.name.Name]:
        return [o for o in self._origins()
                if o != origin and o != dns.name.root and self.zones.zone_for(o.parent()) == origin]

    def _input(self, origin: dns.name.Name) -> _Input:
        """What the signed copy is made from: the zone's RRsets, plus each served child's
        NS and DS (the delegation, RFC 4035 section 2.4), as a comparable set."""
        rrsets = list(self.zones.transfer(origin) or [])
        if len(rrsets) > 1 and rrsets[0].rdtype == dns.rdatatype.SOA:
            rrsets.pop()  # a transfer ends with the SOA again (RFC 5936 section 2.2)
        for child in self._children(origin):
            ns = self.zones.lookup(child, "NS").answer
            rrsets.extend(r for r in ns if r.name == child)
            if self.is_signed(child):
                rrsets.append(self.key(child).ds(ttl=ns[0].ttl if ns else 3600))
        return frozenset((r.name, int(r.rdtype), int(r.covers), r.ttl, frozenset(r))
                         for r in rrsets
                         if r.rdtype not in (dns.rdatatype.RRSIG, dns.rdatatype.NSEC))

    def _sign(self, origin: dns.name.Name, source: _Input) -> SignedZone:
        start = time.perf_counter()
        zone = dns.zone.Zone(origin, relativize=False)
        for owner, rdtype, covers, ttl, rdatas in source:
            rds = dns.rdataset.Rdataset(IN, dns.rdatatype.RdataType.make(rdtype),
                                        dns.rdatatype.RdataType.make(covers))
            for rdata in rdatas:
                rds.add(rdata, ttl)  # type: ignore[arg-type]
            if zone.get_rdataset(owner, rds.rdtype) is None:  # a parent's own NS wins
                zone.replace_rdataset(owner, rds)
        key = self.key(origin)
        day = self._day()
        inception = max(0, day * RESIGN_INTERVAL - INCEPTION_SKEW)
        expiration = day * RESIGN_INTERVAL + SIGNATURE_LIFETIME
        dns.dnssec.sign_zone(zone, keys=[(key.private_key, key.dnskey)], inception=inception,
                             expiration=expiration, deterministic=True)
        names = sorted(n for n, rds in zone.iterate_rdatasets(dns.rdatatype.NSEC))
        existing: set[dns.name.Name] = {origin}
        for owner in zone.nodes:
            while owner != origin and owner not in existing and owner != dns.name.root:
                existing.add(owner)
                owner = owner.parent()
        return SignedZone(origin, zone, key, inception, expiration, day, source,
                          self.zones.generation, time.perf_counter() - start, names,
                          frozenset(existing))

    def __repr__(self) -> str:
        return (f"<ZoneSigner {len(self._signed)} of {len(self.zones.origins)} zones signed"
                f"{', held' if self._held else ''}>")
