"""DKIM keys: make a key pair, publish its public half in DNS, rotate a selector.

A DKIM signer holds a private key; receivers find the matching public key in DNS, in a
TXT record at ``<selector>._domainkey.<domain>`` (RFC 6376 section 3.6.2), written as a
tag list such as ``v=DKIM1; k=rsa; p=MIIBIjANBg...`` (section 3.6.1). The selector lets a
domain have several keys at once, which is how keys are rotated: publish a new selector,
sign with it, and retire the old one once mail signed with it has been delivered.

* :func:`generate_key` makes a :class:`LabKey` (RSA or Ed25519, RFC 8463), refusing RSA
  keys under 1024 bits as RFC 8301 requires;
* :func:`publish`, :func:`revoke` and :func:`rotate` edit a :class:`~labsupport.dns.zone.ZoneSet`
  (the running lab's ``lab.zones``);
* :func:`lab_key` loads the lab's own signing keys from ``data/keys/`` (lab-only keys,
  published in the lab's zones, so notebook outputs are reproducible);
* :func:`parse_key_record` reads a key record the way a verifier does (it lives in
  :mod:`labsupport.auth.dkim_keyrecord`, and the tag-list syntax both key records and
  signatures are written in, :func:`parse_tag_list`, in :mod:`labsupport.auth.dkim_taglist`;
  both are importable from here too).

All cryptography goes through the ``cryptography`` package.

Introduced in ``notebooks/05-dkim.ipynb``.
"""

from __future__ import annotations

import base64
import sys
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from ..core.errors import LabError
from ..core.paths import DATA_DIR
from ..core.results import Result, TraceBuilder
from .dkim_keyrecord import MIN_RSA_BITS as MIN_RSA_BITS
from .dkim_keyrecord import RECOMMENDED_RSA_BITS as RECOMMENDED_RSA_BITS
from .dkim_keyrecord import RFC_ED25519 as RFC_ED25519
from .dkim_keyrecord import KeyRecord as KeyRecord
from .dkim_keyrecord import KeyRecordError as KeyRecordError
from .dkim_keyrecord import PublicKey as PublicKey
from .dkim_keyrecord import parse_key_record as parse_key_record
from .dkim_taglist import RFC_TAG_LIST as RFC_TAG_LIST
from .dkim_taglist import DKIMError as DKIMError
from .dkim_taglist import TagListError as TagListError
from .dkim_taglist import _short
from .dkim_taglist import parse_tag_list as parse_tag_list

if TYPE_CHECKING:
    from ..dns.zone import ZoneSet

RFC_KEY_RECORD = "RFC 6376 section 3.6.1"
RFC_KEY_LOOKUP = "RFC 6376 section 3.6.2"
RFC_KEY_SIZES = "RFC 8301 section 3.2"
RFC_ROTATION = "RFC 6376 section 3.1"

#: The lab's own keys: ``data/keys/<domain>/<LAB_SELECTOR>.<kind>.pem``.
LAB_KEY_DIR = DATA_DIR / "keys"
LAB_SELECTOR = "lab2026"
#: The lab's sending domains that sign their mail.
LAB_SIGNING_DOMAINS = ("northwind.test", "campus.test", "mailcloud.example")

KeyType = Literal["rsa", "ed25519"]
PrivateKey = rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey

_ALGORITHM_OF = {"rsa": "rsa-sha256", "ed25519": "ed25519-sha256"}
_KEY_TYPE_OF: dict[str, KeyType] = {
    "rsa": "rsa", "rsa-sha256": "rsa", "ed25519": "ed25519", "ed25519-sha256": "ed25519",
}


class DKIMKeyError(DKIMError):
    """A key that cannot be made, read or used (too short, wrong type, not a key)."""


def key_type_for(algorithm: str) -> KeyType:
    """``"rsa"`` or ``"ed25519"`` for an algorithm or key type name; refuses rsa-sha1."""
    name = algorithm.strip().lower()
    if name == "rsa-sha1":
        raise DKIMKeyError("rsa-sha1 is not allowed: SHA-1 is broken, and RFC 8301 section "
                           "3.1 says signers MUST NOT use it; use rsa-sha256 or ed25519-sha256")
    try:
        return _KEY_TYPE_OF[name]
    except KeyError:
        raise DKIMKeyError(f"unknown DKIM algorithm {algorithm!r}; use rsa-sha256 or "
                           "ed25519-sha256") from None


def algorithm_for(key_type: str) -> str:
    """The signing algorithm (``a=``) for a key type: rsa-sha256 or ed25519-sha256."""
    return _ALGORITHM_OF[key_type_for(key_type)]


def public_key_b64(public: PublicKey) -> str:
    """The ``p=`` value: base64 of the DER SubjectPublicKeyInfo for RSA (RFC 6376
    section 3.6.1), of the raw 32-octet key for Ed25519 (RFC 8463 section 4)."""
    if isinstance(public, ed25519.Ed25519PublicKey):
        raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    else:
        raw = public.public_bytes(serialization.Encoding.DER,
                                  serialization.PublicFormat.SubjectPublicKeyInfo)
    return base64.b64encode(raw).decode("ascii")


def key_record(key_type: str, public_b64: str, *, testing: bool = False,
               strict: bool = False, notes: str | None = None) -> str:
    """A key record's text (RFC 6376 section 3.6.1): ``v=DKIM1; k=rsa; p=...``.

    ``testing`` adds the flag ``t=y`` (the domain is testing DKIM: receivers treat its
    mail as unsigned whatever the result); ``strict`` adds ``t=s`` (an ``i=`` identity
    must be in exactly the ``d=`` domain, not a subdomain).
    """
    parts = ["v=DKIM1", f"k={key_type_for(key_type)}"]
    flags = [f for f, on in (("y", testing), ("s", strict)) if on]
    if flags:
        parts.append("t=" + ":".join(flags))
    if notes:
        parts.append(f"n={notes}")
    parts.append(f"p={public_b64}")
    return "; ".join(parts)


def txt_strings(value: str, size: int = 255) -> list[str]:
    """``value`` cut into the character-strings of one TXT record (255 octets at most
    each, RFC 1035 section 3.3.14); a verifier joins them back without spaces."""
    raw = value.encode("utf-8")
    return [raw[i:i + size].decode("utf-8") for i in range(0, len(raw), size)] or [""]


def key_name(domain: str, selector: str) -> str:
    """Where the key lives in DNS: ``<selector>._domainkey.<domain>`` (RFC 6376 3.6.2)."""
    return f"{selector}._domainkey.{domain.rstrip('.')}"


def zone_line(domain: str, selector: str, record: str, ttl: int = 3600) -> str:
    """The record in zone-file syntax, an absolute name and 255-octet quoted strings."""
    strings = " ".join(f'"{s}"' for s in txt_strings(record))
    return f"{key_name(domain, selector)}. {ttl} IN TXT ( {strings} )"


@dataclass(frozen=True)
class LabKey:
    """A DKIM key pair for the lab.

    ``private_pem`` is the private key (PKCS#8 PEM, unencrypted: lab use only), ``public``
    the ``p=`` value, ``record`` the whole TXT value to publish. ``domain`` and
    ``selector`` say where it is published, when known. The private key never shows in
    ``repr()``.
    """

    key_type: KeyType
    private_pem: bytes = field(repr=False)
    public: str = field(repr=False)
    bits: int
    domain: str | None = None
    selector: str | None = None
    path: Path | None = None

    @property
    def algorithm(self) -> str:
        """The signing algorithm this key makes: rsa-sha256 or ed25519-sha256."""
        return _ALGORITHM_OF[self.key_type]

    @cached_property
    def private_key(self) -> PrivateKey:
        """The private key as a ``cryptography`` object (loaded once)."""
        return load_private_key(self.private_pem)

    @property
    def record(self) -> str:
        """The TXT value to publish at ``<selector>._domainkey.<domain>``."""
        return key_record(self.key_type, self.public)

    def txt_record(self, *, testing: bool = False, strict: bool = False,
                   notes: str | None = None) -> str:
        """The TXT value, with the flags ``t=y`` (testing) and ``t=s`` (strict) if asked."""
        return key_record(self.key_type, self.public, testing=testing, strict=strict,
                          notes=notes)

    @property
    def dns_name(self) -> str | None:
        """``<selector>._domainkey.<domain>``, when both are known."""
        if self.domain and self.selector:
            return key_name(self.domain, self.selector)
        return None

    def zone_line(self, domain: str | None = None, selector: str | None = None,
                  ttl: int = 3600) -> str:
        """The record in zone-file syntax (strings of at most 255 octets)."""
        domain = domain or self.domain
        selector = selector or self.selector
        if not domain or not selector:
            raise DKIMKeyError("say which domain and selector the key is published under")
        return zone_line(domain, selector, self.record, ttl)

    def at(self, domain: str, selector: str) -> LabKey:
        """The same key, labelled with the domain and selector it is published under."""
        return LabKey(self.key_type, self.private_pem, self.public, self.bits, domain,
                      selector, self.path)

    def __str__(self) -> str:
        where = f" for {self.dns_name}" if self.dns_name else ""
        kind = "Ed25519" if self.key_type == "ed25519" else "RSA"
        return f"{kind} key ({self.bits} bits){where}"


def _from_private(private: PrivateKey, **where: str | None) -> LabKey:
    pem = private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    public = private.public_key()
    if isinstance(private, rsa.RSAPrivateKey):
        return LabKey("rsa", pem, public_key_b64(public), private.key_size,
                      where.get("domain"), where.get("selector"))
    return LabKey("ed25519", pem, public_key_b64(public), 256, where.get("domain"),
                  where.get("selector"))


def generate_key(algorithm: str = "rsa-sha256", bits: int = RECOMMENDED_RSA_BITS, *,
                 domain: str | None = None, selector: str | None = None) -> LabKey:
    """A new key pair: ``"rsa-sha256"`` (or ``"rsa"``) of ``bits`` bits, or
    ``"ed25519-sha256"`` (or ``"ed25519"``, RFC 8463; ``bits`` does not apply).

    RSA keys under 1024 bits are refused (RFC 8301 section 3.2: receivers ignore their
    signatures); 2048 bits is what RFC 8301 recommends.
    """
    kind = key_type_for(algorithm)
    if kind == "ed25519":
        return _from_private(ed25519.Ed25519PrivateKey.generate(), domain=domain,
                             selector=selector)
    if bits < MIN_RSA_BITS:
        raise DKIMKeyError(f"an RSA key of {bits} bits is too short: RFC 8301 section 3.2 "
                           f"says receivers MUST NOT accept signatures by RSA keys under "
                           f"{MIN_RSA_BITS} bits (use {RECOMMENDED_RSA_BITS})")
    private = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    return _from_private(private, domain=domain, selector=selector)


def load_private_key(key: object) -> PrivateKey:
    """A ``cryptography`` private key from a :class:`LabKey`, a key object, PEM text
    or bytes, or the path of a PEM file. Raises :class:`DKIMKeyError` with a reason."""
    if isinstance(key, LabKey):
        return key.private_key
    if isinstance(key, (rsa.RSAPrivateKey, ed25519.Ed25519PrivateKey)):
        return key
    if isinstance(key, Path):
        path = key
        try:
            key = path.read_bytes()
        except OSError as exc:
            raise DKIMKeyError(f"cannot read the key file {path}: {exc.strerror}") from exc
    if isinstance(key, str):
        key = key.encode("ascii", "replace")
    if not isinstance(key, bytes):
        raise DKIMKeyError(f"a private key is a LabKey, a cryptography key, or PEM text; "
                           f"got {type(key).__name__}")
    try:
        loaded = serialization.load_pem_private_key(key, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise DKIMKeyError(f"this is not an unencrypted PEM private key: {exc}") from exc
    if not isinstance(loaded, (rsa.RSAPrivateKey, ed25519.Ed25519PrivateKey)):
        raise DKIMKeyError(f"DKIM signs with RSA or Ed25519 keys, not "
                           f"{type(loaded).__name__}")
    return loaded


def load_key(path: str | Path, *, domain: str | None = None,
             selector: str | None = None) -> LabKey:
    """A :class:`LabKey` from a PEM file."""
    path = Path(path)
    private = load_private_key(path)
    key = _from_private(private, domain=domain, selector=selector)
    return LabKey(key.key_type, key.private_pem, key.public, key.bits, domain, selector, path)


def lab_selector(key_type: str) -> str:
    """The selector of the lab's own key of a type: ``lab2026-rsa``, ``lab2026-ed25519``."""
    return f"{LAB_SELECTOR}-{key_type_for(key_type)}"


def lab_key_path(domain: str, key_type: str = "rsa", directory: Path | None = None) -> Path:
    """``data/keys/<domain>/lab2026.<rsa|ed25519>.pem``."""
    return (directory or LAB_KEY_DIR) / domain / f"{LAB_SELECTOR}.{key_type_for(key_type)}.pem"


def lab_key(domain: str, key_type: str = "rsa", directory: Path | None = None) -> LabKey:
    """One of the lab's own signing keys (lab-only, never for real mail).

    ``lab_key("northwind.test")`` is Northwind's RSA key, published at
    ``lab2026-rsa._domainkey.northwind.test``; ``lab_key("northwind.test", "ed25519")``
    its Ed25519 key at ``lab2026-ed25519._domainkey.northwind.test``.
    """
    path = lab_key_path(domain, key_type, directory)
    if not path.exists():
        known = ", ".join(LAB_SIGNING_DOMAINS)
        raise DKIMKeyError(f"the lab has no {key_type_for(key_type)} key for {domain} "
                           f"(no file {path}); the lab's signing domains are {known}")
    return load_key(path, domain=domain, selector=lab_selector(key_type))


def lab_keys(directory: Path | None = None) -> list[LabKey]:
    """Every key in ``data/keys/``, sorted by domain then type."""
    base = directory or LAB_KEY_DIR
    keys = []
    for path in sorted(base.glob(f"*/{LAB_SELECTOR}.*.pem")):
        kind = path.name.split(".")[1]
        keys.append(load_key(path, domain=path.parent.name, selector=lab_selector(kind)))
    return keys


def records_fragment(keys: list[LabKey]) -> str:
    """Zone-file text publishing every key (absolute names, so it fits any zone file)."""
    lines = [
        "; DKIM public keys of the lab's own signing keys (data/keys/).",
        "; LAB-ONLY keys: their private halves are public in this repository; never use",
        "; them for real mail. Regenerate with: python -m labsupport.auth.dkim_keys regenerate",
        "; Each line goes into the zone file of its domain (names are absolute).",
    ]
    domain = None
    for key in keys:
        if key.domain != domain:
            domain = key.domain
            lines.append("")
            lines.append(f"; {domain}")
        lines.append(key.zone_line())
    return "\n".join(lines) + "\n"


def write_lab_keys(directory: Path | None = None,
                   domains: tuple[str, ...] = LAB_SIGNING_DOMAINS) -> list[LabKey]:
    """Make new lab keys (RSA-2048 and Ed25519 for every domain), write them under
    ``directory`` (``data/keys``) and write ``dkim-records.txt`` beside them.

    This replaces the old keys: the zones must then publish the new records.
    """
    base = directory or LAB_KEY_DIR
    for domain in domains:
        for kind in ("rsa", "ed25519"):
            key = generate_key(kind)
            path = lab_key_path(domain, kind, base)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(key.private_pem)
    keys = lab_keys(base)
    (base / "dkim-records.txt").write_text(records_fragment(keys), encoding="utf-8")
    return keys


# -- publishing in a zone ----------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class KeyPublication(Result):
    """A key record published (or revoked, or removed) in the lab's zones."""

    name: str
    record: str | None = None

    def title(self) -> str:
        return f"DKIM key at {self.name}: {self.verdict}"


def publish(zones: ZoneSet, domain: str, selector: str, key: LabKey | str, *,
            testing: bool = False, strict: bool = False, ttl: int | None = None
            ) -> KeyPublication:
    """Publish ``key`` at ``<selector>._domainkey.<domain>`` in ``zones`` (the running
    lab's ``lab.zones``), replacing any TXT record there (RFC 6376 section 3.6.2).

    ``key`` is a :class:`LabKey` or a record's text (to publish a broken one on purpose).
    ``testing`` and ``strict`` add the key flags ``t=y`` and ``t=s``. A value longer than
    255 octets is stored as several strings of one record, as DNS requires.
    """
    name = key_name(domain, selector)
    if isinstance(key, LabKey):
        record = key.txt_record(testing=testing, strict=strict)
    else:
        record = key
    zones.set(name, "TXT", record, ttl=ttl)
    trace = TraceBuilder()
    strings = txt_strings(record)
    trace.add(f"publish a TXT record at {name}", kind="decision", rfc=RFC_KEY_LOOKUP,
              detail=zone_line(domain, selector, record, ttl or 3600))
    if len(strings) > 1:
        trace.add(f"the value is {len(record)} octets: stored as {len(strings)} strings of "
                  "at most 255, which a verifier joins back together",
                  rfc="RFC 6376 section 3.6.2.2")
    return KeyPublication(verdict="published", name=name, record=record,
                          summary=f"{name} now publishes the key: {_short(record)}",
                          trace=trace.freeze())


def revoke(zones: ZoneSet, domain: str, selector: str) -> KeyPublication:
    """Revoke the key at a selector: publish it with an empty ``p=`` (RFC 6376 3.6.1),
    so every signature made with it fails with "key revoked"."""
    name = key_name(domain, selector)
    record = "v=DKIM1; p="
    zones.set(name, "TXT", record)
    trace = TraceBuilder()
    trace.add(f"replace the key at {name} with an empty p= (revoked)", kind="decision",
              rfc=RFC_KEY_RECORD, detail=zone_line(domain, selector, record))
    return KeyPublication(verdict="revoked", name=name, record=record, trace=trace.freeze(),
                          summary=f"{name} is revoked: signatures made with its key no "
                                  "longer verify.")


@dataclass(frozen=True, kw_only=True)
class KeyRotation(Result):
    """A selector rotated: the new key, where it is, and what became of the old one."""

    domain: str
    old_selector: str
    new_selector: str
    key: LabKey = field(repr=False)
    old: str


def rotate(zones: ZoneSet, domain: str, old_selector: str, new_selector: str, *,
           key: LabKey | None = None, algorithm: str = "rsa-sha256",
           bits: int = RECOMMENDED_RSA_BITS, old: str = "keep") -> KeyRotation:
    """Rotate ``domain``'s signing key from ``old_selector`` to ``new_selector``.

    A new key (``key``, or one made with ``algorithm`` and ``bits``) is published at the
    new selector; sign with ``result.key`` from now on. ``old`` says what happens to the
    old selector: ``"keep"`` (published still, so mail signed before the switch and
    still on its way verifies; the usual first step), ``"revoke"`` (empty ``p=``:
    signatures by the old key fail) or ``"remove"`` (no record: they fail too).
    """
    if old not in ("keep", "revoke", "remove"):
        raise DKIMKeyError("old is 'keep', 'revoke' or 'remove'")
    if old_selector == new_selector:
        raise DKIMKeyError("a rotation moves to a new selector; the old and new are the "
                           f"same ({new_selector!r})")
    new_key = (key or generate_key(algorithm, bits)).at(domain, new_selector)
    trace = TraceBuilder()
    published = publish(zones, domain, new_selector, new_key)
    trace.extend(published.trace)
    trace.add(f"sign new mail with {new_selector} from now on", kind="decision",
              rfc=RFC_ROTATION)
    old_name = key_name(domain, old_selector)
    if old == "keep":
        trace.add(f"keep {old_name} published for now: mail signed with it may still be "
                  "on its way; revoke it once that mail has been delivered",
                  kind="info", rfc=RFC_ROTATION)
    elif old == "revoke":
        trace.extend(revoke(zones, domain, old_selector).trace)
    else:
        try:
            zones.remove(old_name, "TXT")
            trace.add(f"remove the TXT record at {old_name}", kind="decision")
        except LabError as exc:
            trace.add(f"nothing to remove at {old_name}: {exc}", kind="warning")
    summary = (f"{domain} now signs with selector {new_selector} ({new_key}); the old "
               f"selector {old_selector} is "
               + {"keep": "still published", "revoke": "revoked",
                  "remove": "removed"}[old] + ".")
    return KeyRotation(verdict="rotated", summary=summary, trace=trace.freeze(),
                       domain=domain, old_selector=old_selector, new_selector=new_selector,
                       key=new_key, old=old)



def main(argv: list[str] | None = None) -> int:
    """``python -m labsupport.auth.dkim_keys regenerate [DIRECTORY]``: new lab keys."""
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] != "regenerate":
        print("usage: python -m labsupport.auth.dkim_keys regenerate [DIRECTORY]", file=sys.stderr)
        return 2
    directory = Path(args[1]) if len(args) > 1 else LAB_KEY_DIR
    keys = write_lab_keys(directory)
    for key in keys:
        print(f"{key.path}: {key}")
    print(f"wrote {directory / 'dkim-records.txt'}: put its lines into the zone files")
    return 0


if __name__ == "__main__":
    sys.exit(main())
