"""Signing with DKIM: add a DKIM-Signature to a message, showing every step.

:func:`sign` gives the message with a new DKIM-Signature field on top (rsa-sha256, or
ed25519-sha256 from RFC 8463); :func:`sign_traced` does the same and returns a
:class:`~labsupport.auth.dkim_results.DKIMSigning` whose trace shows each step: the
header fields chosen (``h=``, with oversigning), the canonicalized body and its hash
(``bh=``), the header data hashed and the signature made over it (``b=``).

RFC 8301 is enforced: rsa-sha1 and RSA keys under 1024 bits are refused, with the
reason (:class:`DKIMSigningError`). Keys: :mod:`labsupport.auth.dkim_keys`.

Introduced in ``notebooks/05-dkim.ipynb``.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Iterable, Sequence
from datetime import timedelta
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from ..core.results import TraceBuilder
from .dkim_canon import CANONICALIZATIONS, CRLF, ParsedMessage, canonical_body, parse_message
from .dkim_hashing import (
    _PKCS1,
    _PREHASHED_SHA256,
    _digest,
    _header_index,
    _select,
    _shown,
    _signature_part,
)
from .dkim_keyrecord import MIN_RSA_BITS
from .dkim_keys import DKIMKeyError, key_type_for, load_private_key
from .dkim_results import DKIMSigning
from .dkim_sigtags import (
    _DEFAULT_CLOCK,
    _KEY_NAMES,
    RFC_BODY_CANON,
    RFC_BODY_HASH,
    RFC_COMPUTE,
    RFC_DKIM,
    RFC_ED25519,
    RFC_KEY_SIZE,
    RFC_LENGTH,
    RFC_OVERSIGN,
    RFC_SHA1,
    RFC_SIG_TAGS,
    SIGNATURE_ALGORITHMS,
    Now,
    _seconds,
    _valid_domain,
)
from .dkim_taglist import DKIMError

#: Header fields signed by default when present, in the spirit of RFC 6376 section 5.4.1
#: (the fields that carry what a reader sees and relies on).
DEFAULT_SIGNED_HEADERS = (
    "from", "sender", "reply-to", "subject", "date", "message-id", "to", "cc",
    "in-reply-to", "references", "mime-version", "content-type",
    "content-transfer-encoding", "content-disposition", "resent-date", "resent-from",
    "resent-sender", "resent-to", "resent-cc", "resent-message-id", "list-id",
    "list-help", "list-unsubscribe", "list-subscribe", "list-post", "list-owner",
    "list-archive",
)

_SIG_HEADER = "DKIM-Signature"
_HEADER_NAME = re.compile(r"[\x21-\x39\x3b-\x7e]+\Z")


class DKIMSigningError(DKIMError):
    """A signing request refused, with the reason (too short a key, rsa-sha1, ...)."""


# -- signing -----------------------------------------------------------------------------


def _canonicalization_arg(value: str | Sequence[str]) -> tuple[str, str]:
    if isinstance(value, str):
        header, _, body = value.partition("/")
        pair = (header, body or "simple")
    else:
        items = list(value)
        if len(items) != 2:
            raise DKIMSigningError("canonicalization is (header, body), e.g. "
                                   "('relaxed', 'simple'), or 'relaxed/simple'")
        pair = (str(items[0]), str(items[1]))
    pair = (pair[0].strip().lower(), pair[1].strip().lower())
    for part in pair:
        if part not in CANONICALIZATIONS:
            raise DKIMSigningError(f"unknown canonicalization {part!r}: use 'simple' or "
                                   "'relaxed' (RFC 6376 section 3.4)")
    return pair


def _header_names(parsed: ParsedMessage, headers: Iterable[str] | None,
                  oversign: Iterable[str]) -> list[str]:
    if headers is None:
        default = set(DEFAULT_SIGNED_HEADERS)
        names = [h.name.decode("ascii", "replace").lower() for h in parsed.headers
                 if h.key.decode("ascii", "replace") in default]
    else:
        if isinstance(headers, str):
            headers = headers.split(":")
        names = [n.strip().lower() for n in headers]
    for name in names:
        if not _HEADER_NAME.match(name):
            raise DKIMSigningError(f"{name!r} is not a header field name")
    if isinstance(oversign, str):
        oversign = [oversign]
    for extra in oversign:
        extra = extra.strip().lower()
        present = parsed.count(extra)
        listed = names.count(extra)
        names.extend([extra] * max(0, present + 1 - listed))
    return names


def _fold(tags: list[tuple[str, str]], start: int) -> str:
    """Tags joined as ``a=b; c=d;``, folded (CR LF TAB) so that lines stay short."""
    out = ""
    column = start
    for name, value in tags:
        if name == "h" and len(value) > 64:
            segments: list[str] = []
            segment = ""
            for piece in value.split(":"):
                if segment and len(segment) + 1 + len(piece) > 64:
                    segments.append(segment + ":")
                    segment = piece
                else:
                    segment = f"{segment}:{piece}" if segment else piece
            segments.append(segment)
            text = "h=" + "\r\n\t".join(segments) + ";"
        else:
            text = f"{name}={value};"
        first = text.split("\r\n", 1)[0]
        if out and column + 1 + len(first) > 78:
            out += "\r\n\t"
            column = 8
        elif out:
            out += " "
            column += 1
        out += text
        tail = text.rsplit("\r\n\t", 1)
        column = column + len(text) if len(tail) == 1 else 8 + len(tail[1])
    return out


def _refuse(result_fields: dict[str, Any], trace: TraceBuilder, reason: str,
            rfc: str | None = None) -> DKIMSigning:
    trace.add(f"refused: {reason}", kind="error", rfc=rfc)
    return DKIMSigning(verdict="refused", summary=f"Not signed: {reason}.",
                       trace=trace.freeze(), **result_fields)


def _time_arg(value: Now | bool) -> int | None:
    if value is None or value is False:
        return None
    if value is True:
        return int(_DEFAULT_CLOCK.time())
    return int(_seconds(value))


def sign_traced(
    message: bytes | str,
    *,
    domain: str,
    selector: str,
    private_key: Any,
    algorithm: str | None = None,
    canonicalization: str | Sequence[str] = ("relaxed", "relaxed"),
    headers: Iterable[str] | None = None,
    oversign: Iterable[str] = ("from",),
    body_length: int | bool | None = None,
    identity: str | None = None,
    timestamp: Now | bool = None,
    expire: Now | timedelta = None,
    trace: bool = True,
) -> DKIMSigning:
    """Sign ``message`` and show every step; the result holds the signed message.

    The arguments are those of :func:`sign`. A request that cannot be honoured (rsa-sha1,
    an RSA key under 1024 bits, a key that does not match ``algorithm``, ``h=`` without
    From, an identity outside the domain, a message whose header cannot be read) gives
    the verdict ``refused`` with the reason, never an exception.
    """
    t = TraceBuilder()
    fields: dict[str, Any] = {"domain": domain, "selector": selector}
    try:
        return _sign(message, t, fields, domain=domain, selector=selector,
                     private_key=private_key, algorithm=algorithm,
                     canonicalization=canonicalization, headers=headers, oversign=oversign,
                     body_length=body_length, identity=identity, timestamp=timestamp,
                     expire=expire, want=trace)
    except DKIMError as exc:
        return _refuse(fields, t, str(exc))


def _sign(message: bytes | str, t: TraceBuilder, fields: dict[str, Any], *, domain: str,
          selector: str, private_key: Any, algorithm: str | None,
          canonicalization: str | Sequence[str], headers: Iterable[str] | None,
          oversign: Iterable[str], body_length: int | bool | None, identity: str | None,
          timestamp: Now | bool, expire: Now | timedelta, want: bool) -> DKIMSigning:
    if isinstance(message, str):
        message = message.encode("utf-8")
    domain = domain.strip().rstrip(".")
    fields["domain"] = domain
    if not _valid_domain(domain):
        return _refuse(fields, t, f"{domain!r} is not a domain name", RFC_SIG_TAGS)
    if not _valid_domain(selector):
        return _refuse(fields, t, f"{selector!r} is not a valid selector", RFC_SIG_TAGS)
    try:
        key = load_private_key(private_key)
    except DKIMKeyError as exc:
        return _refuse(fields, t, str(exc))
    key_type = "ed25519" if isinstance(key, ed25519.Ed25519PrivateKey) else "rsa"
    if algorithm is None:
        algorithm = "ed25519-sha256" if key_type == "ed25519" else "rsa-sha256"
    else:
        algorithm = algorithm.strip().lower()
        if algorithm == "rsa-sha1":
            return _refuse(fields, t, "rsa-sha1 is not allowed: SHA-1 is broken and RFC 8301 "
                           "says signers MUST NOT use it (use rsa-sha256 or ed25519-sha256)",
                           RFC_SHA1)
        if algorithm not in SIGNATURE_ALGORITHMS:
            return _refuse(fields, t, f"unknown algorithm {algorithm!r} (use "
                           f"{' or '.join(SIGNATURE_ALGORITHMS)})", RFC_SIG_TAGS)
        if key_type_for(algorithm) != key_type:
            return _refuse(fields, t, f"a={algorithm} needs a {key_type_for(algorithm)} key, "
                           f"but the key given is {key_type}", RFC_SIG_TAGS)
    fields["algorithm"] = algorithm
    bits = key.key_size if isinstance(key, rsa.RSAPrivateKey) else 256
    if isinstance(key, rsa.RSAPrivateKey) and bits < MIN_RSA_BITS:
        return _refuse(fields, t, f"the RSA key has only {bits} bits: RFC 8301 says signers "
                       f"MUST use at least {MIN_RSA_BITS} (and SHOULD use 2048), and "
                       "receivers ignore signatures by shorter keys", RFC_KEY_SIZE)
    canon = _canonicalization_arg(canonicalization)
    fields["canonicalization"] = canon
    t.add(f"sign for d={domain} with selector s={selector}: a={algorithm}, "
          f"c={canon[0]}/{canon[1]}, {_KEY_NAMES[key_type]} key of {bits} bits",
          kind="decision", rfc=RFC_DKIM)

    parsed = parse_message(message)
    if parsed.problems:
        return _refuse(fields, t, "the message's header cannot be read: "
                       + parsed.problems[0], "RFC 5322 section 2.2")
    if parsed.lf_fixed:
        t.add(f"{parsed.lf_fixed} LF line ends read as CR LF for hashing",
              rfc="RFC 5322 section 2.1")

    if identity is not None:
        local, at, idomain = identity.rpartition("@")
        low = idomain.lower()
        if not at or (low != domain.lower() and not low.endswith("." + domain.lower())):
            return _refuse(fields, t, f"the identity {identity!r} must be an address (or "
                           f"@domain) in {domain} or a subdomain of it", RFC_SIG_TAGS)

    names = _header_names(parsed, headers, oversign)
    if "from" not in names:
        return _refuse(fields, t, "the From field must be signed (add 'from' to headers)",
                       "RFC 6376 section 5.4")
    fields["signed_headers"] = tuple(names)
    if not parsed.count("from"):
        t.add("the message has no From field: the signature covers its absence, but a "
              "message must have exactly one From (RFC 5322 section 3.6)", kind="warning")
    extra = [n for n in dict.fromkeys(names) if names.count(n) > parsed.count(n)]
    t.add(f"header fields to sign (h=): {':'.join(names)}", kind="decision",
          rfc="RFC 6376 section 5.4")
    if extra:
        t.add(f"oversigned: {', '.join(extra)} listed once more than the message has, so "
              "a field of that name added later breaks the signature", rfc=RFC_OVERSIGN)

    signed_at = _time_arg(timestamp)
    expires: int | None = None
    if isinstance(expire, timedelta):
        if signed_at is None:
            return _refuse(fields, t, "an expiry given as a duration needs a timestamp "
                           "to count from", RFC_SIG_TAGS)
        expires = signed_at + int(expire.total_seconds())
    elif expire is not None:
        expires = int(_seconds(expire))
    if expires is not None and signed_at is not None and expires <= signed_at:
        return _refuse(fields, t, "the expiry (x=) must be later than the timestamp (t=)",
                       RFC_SIG_TAGS)

    full = canonical_body(parsed.body, canon[1])
    if body_length is True:
        length: int | None = len(full)
    elif body_length is None or body_length is False:
        length = None
    else:
        length = int(body_length)
        if length < 0 or length > len(full):
            return _refuse(fields, t, f"l={length} is more than the canonicalized body "
                           f"({len(full)} octets)", RFC_SIG_TAGS)
    hashed = full if length is None else full[:length]
    body_hash = base64.b64encode(_digest(hashed)).decode()
    t.add(f"canonicalize the body ({canon[1]}): {len(hashed)} octets to hash",
          rfc=RFC_BODY_CANON[canon[1]], detail=_shown(hashed, want))
    if length is not None:
        t.add(f"l={length}: only these octets are signed; anything appended later (a list "
              "footer, or an attacker's text) still verifies", kind="warning",
              rfc=RFC_LENGTH)
    t.add(f"body hash bh={body_hash} (SHA-256, base64)", rfc=RFC_BODY_HASH)

    tags: list[tuple[str, str]] = [("v", "1"), ("a", algorithm), ("c", "/".join(canon)),
                                   ("d", domain), ("s", selector)]
    if identity is not None:
        tags.append(("i", identity))
    if length is not None:
        tags.append(("l", str(length)))
    if signed_at is not None:
        tags.append(("t", str(signed_at)))
    if expires is not None:
        tags.append(("x", str(expires)))
    tags.append(("h", ":".join(names)))
    tags.append(("bh", body_hash))
    head = f"{_SIG_HEADER}: " + _fold(tags, len(_SIG_HEADER) + 2) + "\r\n\tb="
    head_bytes = head.encode("utf-8")

    chosen, _found, _absent = _select(parsed, _header_index(parsed), names, names, canon[0])
    own = _signature_part(head_bytes, canon[0])
    data = b"".join(chosen) + own
    digest = _digest(data)
    t.add(f"canonicalize the signed header fields ({canon[0]}), then this DKIM-Signature "
          "with an empty b= and no final CR LF", rfc="RFC 6376 section 3.7",
          detail=_shown(data, want))
    if isinstance(key, ed25519.Ed25519PrivateKey):
        signature = key.sign(digest)
        how = "Ed25519 over the SHA-256 hash"
    else:
        signature = key.sign(digest, _PKCS1, _PREHASHED_SHA256)
        how = "RSASSA-PKCS1-v1_5 with SHA-256"
    b64 = base64.b64encode(signature).decode()
    t.add(f"sign the SHA-256 hash ({digest.hex()[:16]}…) with the private key ({how})",
          rfc=RFC_ED25519 if key_type == "ed25519" else RFC_COMPUTE)
    folded_b = "\r\n\t ".join(b64[i:i + 72] for i in range(0, len(b64), 72))
    field_bytes = head_bytes + folded_b.encode("ascii") + CRLF
    tags.append(("b", b64))
    if b"\r\n" not in message and b"\n" in message:
        out_field = field_bytes.replace(CRLF, b"\n")
    else:
        out_field = field_bytes
    signed = out_field + message
    t.add("add the DKIM-Signature on top of the message", kind="ok", rfc=RFC_DKIM,
          detail=field_bytes.decode("utf-8", "replace").rstrip("\r\n").replace("\r\n", "\n")
          if want else None)
    return DKIMSigning(verdict="signed", trace=t.freeze(),
                       summary=f"Signed for {domain} (selector {selector}, {algorithm}, "
                               f"c={canon[0]}/{canon[1]}, h={':'.join(names)}).",
                       tags=tuple(tags), signed_message=signed, signature_field=out_field,
                       canonical_headers=data, canonical_body=hashed, body_hash=body_hash,
                       **fields)


def sign(
    message: bytes | str,
    *,
    domain: str,
    selector: str,
    private_key: Any,
    algorithm: str | None = None,
    canonicalization: str | Sequence[str] = ("relaxed", "relaxed"),
    headers: Iterable[str] | None = None,
    oversign: Iterable[str] = ("from",),
    body_length: int | bool | None = None,
    identity: str | None = None,
    timestamp: Now | bool = None,
    expire: Now | timedelta = None,
) -> bytes:
    """``message`` with a new DKIM-Signature header field on top (RFC 6376 section 5).

    * ``private_key``: a :class:`~labsupport.auth.dkim_keys.LabKey`, a ``cryptography`` RSA or
      Ed25519 private key, or PEM text; ``algorithm`` is ``"rsa-sha256"`` or
      ``"ed25519-sha256"`` (by default the one that fits the key). rsa-sha1 and RSA keys
      under 1024 bits are refused (RFC 8301).
    * ``canonicalization``: ``(header, body)``, each ``"simple"`` or ``"relaxed"``.
    * ``headers``: the fields to sign (``h=``); by default those of
      :data:`DEFAULT_SIGNED_HEADERS` present in the message, once per occurrence.
      ``oversign`` names fields listed once more than the message has them, so that a
      field of that name added later (a second From) breaks the signature.
    * ``body_length``: sign only that many octets of the canonicalized body (``l=``), or
      ``True`` for all of it as it is now. Risky: text appended later still verifies.
    * ``identity``: the ``i=`` agent or user, in ``domain`` or a subdomain.
    * ``timestamp``: ``t=``, as seconds, a datetime or a LabClock (``True``: now by
      the lab's clock; ``None``: no ``t=``). ``expire``: ``x=``, the same, or a
      ``timedelta`` after the timestamp.

    Raises :class:`DKIMSigningError` with the reason when the request is refused.
    """
    done = sign_traced(message, domain=domain, selector=selector, private_key=private_key,
                       algorithm=algorithm, canonicalization=canonicalization,
                       headers=headers, oversign=oversign, body_length=body_length,
                       identity=identity, timestamp=timestamp, expire=expire, trace=False)
    if done.signed_message is None:
        raise DKIMSigningError(done.summary)
    return done.signed_message
