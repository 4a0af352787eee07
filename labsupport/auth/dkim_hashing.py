"""What a DKIM signature covers, as bytes, and the signing primitives over it.

Signer and verifier compute the same thing (RFC 6376 sections 3.7 and 5.4.2): the
header fields named in ``h=``, each name taking the next field of that name from the
bottom up, canonicalized, followed by the DKIM-Signature field itself with its ``b=``
value emptied and no final CR LF. That data is hashed with SHA-256 and signed with
RSASSA-PKCS1-v1_5 (rsa-sha256) or Ed25519 (ed25519-sha256, RFC 8463) over the hash.

Here are the pieces of that computation both sides share, and how a trace shows the
bytes hashed. All cryptography goes through the ``cryptography`` package.

Introduced in ``notebooks/05-dkim.ipynb``.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ed25519, padding
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed

from .dkim_canon import CRLF, ParsedMessage, _relaxed_header, show_whitespace

#: How much of a canonicalized body a trace shows before it cuts (after a whole line);
#: the whole body as hashed is always on the result (``canonical_body``), and
#: :meth:`DKIMResult.show_body` shows all of it.
MAX_SHOWN_LINES = 24

_B_TAG_LATER = re.compile(rb";[ \t\r\n]*b[ \t\r\n]*=")
_B_TAG_FIRST = re.compile(rb"[ \t\r\n]*b[ \t\r\n]*=")


def _strip_b_value(raw: bytes) -> bytes:
    """The DKIM-Signature field (no final CR LF) with the b= value emptied, white space
    around it included (RFC 6376 section 3.7)."""
    found = _B_TAG_LATER.search(raw)
    if found is None:  # b= as the first tag, right after the colon
        found = _B_TAG_FIRST.match(raw, raw.find(b":") + 1)
        if found is None:
            return raw
    end = raw.find(b";", found.end())
    return raw[:found.end()] + (raw[end:] if end >= 0 else b"")


def _signature_part(raw_without_crlf: bytes, algorithm: str) -> bytes:
    """The DKIM-Signature field as hashed: canonicalized, b= empty, no final CR LF."""
    emptied = _strip_b_value(raw_without_crlf)
    if algorithm == "relaxed":
        return _relaxed_header(emptied + CRLF)[:-2]
    return emptied


def _header_index(parsed: ParsedMessage) -> dict[bytes, list[int]]:
    index: dict[bytes, list[int]] = {}
    for i, h in enumerate(parsed.headers):
        index.setdefault(h.key, []).append(i)
    return index


def _select(parsed: ParsedMessage, index: dict[bytes, list[int]], names: Sequence[str],
            keys: Sequence[str], algorithm: str) -> tuple[list[bytes], list[str], list[str]]:
    """Header fields for ``names`` (h=; ``keys`` the same in lower case), each name
    taking the next instance from the bottom (RFC 6376 section 5.4.2). Returns the
    canonicalized fields, the names that found a field, and the names that found none
    (they sign the field's absence)."""
    relaxed = algorithm == "relaxed"
    left: dict[str, list[int]] = {}
    chosen: list[bytes] = []
    found: list[str] = []
    absent: list[str] = []
    headers = parsed.headers
    for name, key in zip(names, keys, strict=True):
        stack = left.get(key)
        if stack is None:
            stack = left[key] = list(index.get(key.encode("utf-8", "replace"), ()))
        if stack:
            raw = headers[stack.pop()].raw
            chosen.append(_relaxed_header(raw) if relaxed else raw)
            found.append(name)
        else:
            absent.append(name)
    return chosen, found, absent


def _digest(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


_PKCS1 = padding.PKCS1v15()
_PREHASHED_SHA256 = Prehashed(hashes.SHA256())


def _verify_signature(public: Any, signature: bytes, digest: bytes) -> bool:
    try:
        if isinstance(public, ed25519.Ed25519PublicKey):
            public.verify(signature, digest)
        else:
            public.verify(signature, digest, _PKCS1, _PREHASHED_SHA256)
    except InvalidSignature:
        return False
    return True


def _shown(data: bytes, want: bool) -> str | None:
    if not want:
        return None
    return show_whitespace(data, max_lines=MAX_SHOWN_LINES)

