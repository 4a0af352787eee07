"""DKIM key records as a verifier reads them (RFC 6376 section 3.6.1; Ed25519, RFC 8463).

A verifier that has fetched the TXT record at ``<selector>._domainkey.<domain>`` reads it
as a tag list (``v=DKIM1; k=rsa; p=MIIBIjANBg...``) and decides whether the key in it can
be used: :func:`parse_key_record` gives a :class:`KeyRecord` (the public key, its type
and size, its flags such as ``t=y`` for testing), or raises :class:`KeyRecordError` with
the reason, marking a revoked key (an empty ``p=``) as such. RSA keys under
:data:`MIN_RSA_BITS` are refused, as RFC 8301 requires.

Making, publishing and rotating keys (the signer's side) is in
:mod:`labsupport.auth.dkim_keys`. All cryptography goes through the ``cryptography``
package.

Introduced in ``notebooks/05-dkim.ipynb``.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from .dkim_taglist import DKIMError, TagListError, parse_tag_list

RFC_ED25519 = "RFC 8463 section 3"

#: RFC 8301 section 3.2: verifiers refuse RSA keys under 1024 bits; signers use at least
#: 1024 and SHOULD use 2048.
MIN_RSA_BITS = 1024
RECOMMENDED_RSA_BITS = 2048

PublicKey = rsa.RSAPublicKey | ed25519.Ed25519PublicKey


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
