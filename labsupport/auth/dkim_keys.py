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
* :func:`parse_key_record` reads a key record the way a verifier does.

All cryptography goes through the ``cryptography`` package.

Introduced in ``notebooks/05-dkim.ipynb``.
"""

from __future__ import annotations

import base64
import binascii
import re
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

if TYPE_CHECKING:
    from ..dns.zone import ZoneSet

RFC_KEY_RECORD = "RFC 6376 section 3.6.1"
RFC_KEY_LOOKUP = "RFC 6376 section 3.6.2"
RFC_KEY_SIZES = "RFC 8301 section 3.2"
RFC_ED25519 = "RFC 8463 section 3"
RFC_ROTATION = "RFC 6376 section 3.1"

#: RFC 8301 section 3.2: verifiers refuse RSA keys under 1024 bits; signers use at least
#: 1024 and SHOULD use 2048.
MIN_RSA_BITS = 1024
RECOMMENDED_RSA_BITS = 2048

#: The lab's own keys: ``data/keys/<domain>/<LAB_SELECTOR>.<kind>.pem``.
LAB_KEY_DIR = DATA_DIR / "keys"
LAB_SELECTOR = "lab2026"
#: The lab's sending domains that sign their mail.
LAB_SIGNING_DOMAINS = ("northwind.test", "campus.test", "mailcloud.example")

KeyType = Literal["rsa", "ed25519"]
PrivateKey = rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey
PublicKey = rsa.RSAPublicKey | ed25519.Ed25519PublicKey

_ALGORITHM_OF = {"rsa": "rsa-sha256", "ed25519": "ed25519-sha256"}
_KEY_TYPE_OF: dict[str, KeyType] = {
    "rsa": "rsa", "rsa-sha256": "rsa", "ed25519": "ed25519", "ed25519-sha256": "ed25519",
}


class DKIMError(LabError, ValueError):
    """A DKIM key or signing request that cannot be used, with the reason in words."""


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


# -- tag lists (RFC 6376 section 3.2) ----------------------------------------------------

RFC_TAG_LIST = "RFC 6376 section 3.2"
_TAG_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]*\Z")
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")


class TagListError(DKIMError):
    """Text that is not a DKIM tag list, with what is wrong in words."""


def parse_tag_list(text: str) -> dict[str, str]:
    """Read a DKIM tag list (RFC 6376 section 3.2): ``tag=value`` pairs separated by
    semicolons, white space and folding around them ignored, a final semicolon allowed.

    Tag names are case-sensitive; a tag given twice, a piece without ``=``, an empty
    piece between two semicolons, a bad tag name or a control character is an error
    (:class:`TagListError`). Values keep their inner white space (``b=`` and ``p=`` may
    be folded); unknown tags are kept, for the caller to ignore.

    >>> parse_tag_list("v=DKIM1; k=ed25519; p=11qY...;")
    {'v': 'DKIM1', 'k': 'ed25519', 'p': '11qY...'}
    """
    if "\r\n" in text:
        text = text.replace("\r\n", "")
    specs = text.split(";")
    if specs[-1].strip(" \t") == "":
        specs.pop()
    tags: dict[str, str] = {}
    for spec in specs:
        name, eq, value = spec.partition("=")
        name = name.strip(" \t")
        # A tag name is a letter, then letters, digits or "_": the quick test covers the
        # usual names, the expression the rest.
        if not eq or not (name.isascii() and name.isalnum() and name[0].isalpha()
                          or _TAG_NAME.match(name)):
            raise _tag_spec_error(spec, name, eq)
        if name in tags:
            raise TagListError(f"the tag {name}= appears twice")
        value = value.strip(" \t")
        if not value.isprintable() and _CONTROL.search(value):
            raise TagListError(f"the value of {name}= holds a control character")
        tags[name] = value
    return tags


def _tag_spec_error(spec: str, name: str, eq: str) -> TagListError:
    if not eq:
        if not name:
            return TagListError("there is an empty tag between two semicolons (;;)")
        return TagListError(f"{_short(spec.strip(), 30)!r} is not tag=value (no '=')")
    return TagListError(f"{_short(name, 30)!r} is not a tag name (a letter, then letters, "
                        "digits or _)")


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


def _short(text: str, limit: int = 60) -> str:
    return text if len(text) <= limit else text[:limit] + "…"


# -- reading a key record (the verifier's side) ------------------------------------------


@dataclass(frozen=True)
class KeyRecord:
    """A key record as a verifier reads it (RFC 6376 section 3.6.1)."""

    tags: tuple[tuple[str, str], ...]
    key_type: str
    public_key: PublicKey
    bits: int
    hashes: tuple[str, ...] | None
    services: tuple[str, ...]
    flags: tuple[str, ...]
    notes: str | None

    @property
    def testing(self) -> bool:
        """``t=y``: the domain is testing DKIM."""
        return "y" in self.flags

    @property
    def strict(self) -> bool:
        """``t=s``: the ``i=`` domain must be exactly ``d=``, not a subdomain."""
        return "s" in self.flags


class KeyRecordError(DKIMError):
    """A key record that is not usable; ``revoked`` is true for an empty ``p=``."""

    def __init__(self, reason: str, *, revoked: bool = False) -> None:
        super().__init__(reason)
        self.revoked = revoked


def parse_key_record(text: str, tags: dict[str, str] | None = None) -> KeyRecord:
    """Read a DKIM key record (RFC 6376 section 3.6.1; Ed25519 keys, RFC 8463).

    Raises :class:`KeyRecordError` saying what is wrong: not a tag list, ``v=`` other
    than ``DKIM1``, no ``p=`` or an empty one (revoked), a key that is not valid base64
    or not a key of the type ``k=`` names, an RSA key under 1024 bits (RFC 8301),
    a service type other than email, or hash algorithms (``h=``) without sha256.
    ``tags`` may give the tag list already parsed.
    """
    if tags is None:
        try:
            tags = parse_tag_list(text)
        except TagListError as exc:
            raise KeyRecordError(f"the key record is not a tag list: {exc}") from None
    ordered = tuple(tags.items())
    if "v" in tags:
        if tags["v"] != "DKIM1":
            raise KeyRecordError(f"the key record says v={tags['v']}; a DKIM key record has "
                                 "v=DKIM1 or no v= at all")
        if ordered[0][0] != "v":
            raise KeyRecordError("v=DKIM1 must be the first tag of the key record")
    if "p" not in tags:
        raise KeyRecordError("the key record has no p= tag (the public key)")
    p = "".join(tags["p"].split())
    if not p:
        raise KeyRecordError("the key has been revoked: the record's p= is empty",
                             revoked=True)
    hashes = None
    if "h" in tags:
        hashes = tuple(h.strip() for h in tags["h"].split(":"))
        if "sha256" not in hashes:
            raise KeyRecordError(f"the key allows only the hash algorithms {tags['h']!r}, "
                                 "not sha256")
    services = tuple(s.strip() for s in tags.get("s", "*").split(":"))
    if "*" not in services and "email" not in services:
        raise KeyRecordError(f"the key is for the service types {tags['s']!r}, not for "
                             "email (s= has neither * nor email)")
    flags = tuple(f.strip() for f in tags.get("t", "").split(":") if f.strip())
    key_type = tags.get("k", "rsa")
    try:
        raw = base64.b64decode(p, validate=True)
    except (binascii.Error, ValueError):
        raise KeyRecordError("the key record's p= is not valid base64") from None
    public: PublicKey
    if key_type == "rsa":
        try:
            loaded = serialization.load_der_public_key(raw)
        except (ValueError, UnsupportedAlgorithm):
            raise KeyRecordError("p= does not hold an RSA public key (the octets do not "
                                 "decode as one)") from None
        if not isinstance(loaded, rsa.RSAPublicKey):
            raise KeyRecordError(f"k=rsa, but p= holds a {type(loaded).__name__}")
        public, bits = loaded, loaded.key_size
        if bits < MIN_RSA_BITS:
            raise KeyRecordError(f"the RSA key has only {bits} bits; RFC 8301 section 3.2 "
                                 f"forbids accepting signatures by keys under {MIN_RSA_BITS} "
                                 "bits")
    elif key_type == "ed25519":
        if len(raw) != 32:
            raise KeyRecordError(f"an Ed25519 public key is 32 octets; p= holds {len(raw)} "
                                 f"({RFC_ED25519})")
        public, bits = ed25519.Ed25519PublicKey.from_public_bytes(raw), 256
    else:
        raise KeyRecordError(f"unknown key type k={key_type}; known: rsa, ed25519")
    return KeyRecord(ordered, key_type, public, bits, hashes, services, flags, tags.get("n"))


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
