"""DKIM: sign a message and verify its signatures, showing every step.

DomainKeys Identified Mail (RFC 6376) lets a domain sign the mail it sends. The signer
picks header fields (``h=``), puts header and body into a canonical form (``c=``, see
:mod:`labsupport.auth.dkim_canon`), hashes the body (``bh=``), then signs the hash of the
chosen header fields plus the new DKIM-Signature field itself (``b=``). A receiver finds
the public key in DNS at ``<s=>._domainkey.<d=>`` and repeats the computation.

* :func:`verify` checks every DKIM-Signature of a message and returns a
  :class:`DKIMVerification` holding one :class:`DKIMResult` per signature (pass, fail,
  neutral, temperror or permerror, the names RFC 8601 gives them), each with a trace:
  the parsed tags, the canonicalized header and body exactly as hashed (CR LF, spaces
  and tabs made visible), the computed and claimed body hashes, the DNS query and key
  record, and the signature check with its reason.
* :func:`sign` adds a DKIM-Signature (rsa-sha256, or ed25519-sha256 from RFC 8463);
  :func:`sign_traced` does the same and shows each step.

RFC 8301 is enforced on both sides: rsa-sha1 and RSA keys under 1024 bits are refused,
with the reason. All cryptography goes through the ``cryptography`` package. Keys:
:mod:`labsupport.auth.dkim_keys`.

Introduced in ``notebooks/05-dkim.ipynb``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, NoReturn

import dns.exception
import dns.name
import dns.resolver
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed

from ..core.clock import LabClock
from ..core.results import Result, Step, TraceBuilder, html_table
from ..dns.mx import ResolverLike
from .dkim_canon import (
    CANONICALIZATIONS,
    CRLF,
    ParsedMessage,
    _relaxed_header,
    canonical_body,
    canonicalize_body,
    canonicalize_body_relaxed,
    canonicalize_body_simple,
    canonicalize_header,
    canonicalize_header_relaxed,
    canonicalize_header_simple,
    parse_message,
    show_whitespace,
)
from .dkim_keys import (
    MIN_RSA_BITS,
    DKIMError,
    DKIMKeyError,
    KeyRecord,
    KeyRecordError,
    LabKey,
    TagListError,
    generate_key,
    key_name,
    key_type_for,
    lab_key,
    load_private_key,
    parse_key_record,
    parse_tag_list,
    publish,
    revoke,
    rotate,
)

RFC_DKIM = "RFC 6376"
RFC_SIG_TAGS = "RFC 6376 section 3.5"
RFC_VERIFY_SIG = "RFC 6376 section 6.1.1"
RFC_GET_KEY = "RFC 6376 section 6.1.2"
RFC_COMPUTE = "RFC 6376 section 6.1.3"
RFC_BODY_HASH = "RFC 6376 section 3.7"
RFC_SELECT = "RFC 6376 section 5.4.2"
RFC_OVERSIGN = "RFC 6376 section 8.15"
RFC_LENGTH = "RFC 6376 section 8.2"
RFC_KEY_FLAGS = "RFC 6376 section 3.6.1"
RFC_SHA1 = "RFC 8301 section 3.1"
RFC_KEY_SIZE = "RFC 8301 section 3.2"
RFC_ED25519 = "RFC 8463 section 3"
RFC_RESULTS = "RFC 8601 section 2.7.1"
RFC_BODY_CANON = {"simple": "RFC 6376 section 3.4.3", "relaxed": "RFC 6376 section 3.4.4"}
RFC_HEADER_CANON = {"simple": "RFC 6376 section 3.4.1", "relaxed": "RFC 6376 section 3.4.2"}
RFC_UTF8 = "RFC 8616 section 4"

#: The signing algorithms the lab signs and verifies with (a=).
SIGNATURE_ALGORITHMS = ("rsa-sha256", "ed25519-sha256")

#: One signature's possible results, as RFC 8601 section 2.7.1 names them.
RESULTS = ("pass", "fail", "neutral", "temperror", "permerror")

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

#: The summary verdict of a message: the first of these that any signature has.
#: A temporary error comes before a failure: trying later might still give a pass.
VERDICT_ORDER = ("pass", "temperror", "fail", "neutral", "permerror")

#: How much of a canonicalized body a trace shows before it cuts (after a whole line);
#: the whole body as hashed is always on the result (``canonical_body``), and
#: :meth:`DKIMResult.show_body` shows all of it.
MAX_SHOWN_LINES = 24

_REQUIRED_TAGS = ("v", "a", "b", "bh", "d", "h", "s")
_B_TAG_LATER = re.compile(rb";[ \t\r\n]*b[ \t\r\n]*=")
_B_TAG_FIRST = re.compile(rb"[ \t\r\n]*b[ \t\r\n]*=")
_DIGITS = re.compile(r"[0-9]{1,76}\Z")
_LABEL = re.compile(r"(?!-)[A-Za-z0-9_-]{1,63}(?<!-)\Z")
_ASCII_DOMAIN = re.compile(
    r"(?!-)[A-Za-z0-9_-]{1,63}(?<!-)(?:\.(?!-)[A-Za-z0-9_-]{1,63}(?<!-))*\Z")
_CANONICALIZATION_VALUES = {
    None: ("simple", "simple"), "simple": ("simple", "simple"),
    "relaxed": ("relaxed", "simple"), "simple/simple": ("simple", "simple"),
    "simple/relaxed": ("simple", "relaxed"), "relaxed/simple": ("relaxed", "simple"),
    "relaxed/relaxed": ("relaxed", "relaxed"),
}
_SIG_HEADER = "DKIM-Signature"
_HEADER_NAME = re.compile(r"[\x21-\x39\x3b-\x7e]+\Z")
# h=: header field names separated by colons, white space allowed around them (3.5).
_H_VALUE = re.compile(r"[ \t]*[\x21-\x39\x3b-\x7e]+[ \t]*(?::[ \t]*[\x21-\x39\x3b-\x7e]+[ \t]*)*\Z")
_DEFAULT_CLOCK = LabClock()
_KEY_CACHE: dict[str, KeyRecord | KeyRecordError] = {}
_KEY_CACHE_SIZE = 512

Now = float | int | datetime | LabClock | None


class DKIMSigningError(DKIMError):
    """A signing request refused, with the reason (too short a key, rsa-sha1, ...)."""


# -- results -----------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class DKIMResult(Result):
    """The result of checking one DKIM-Signature (RFC 6376 section 6.1).

    ``verdict`` (also ``result``) is ``pass``, ``fail``, ``neutral``, ``temperror`` or
    ``permerror`` (RFC 8601 section 2.7.1) and ``summary`` says why in words.
    ``index`` counts signatures from the top (0 is the topmost). The tags are in
    ``tags``; ``canonical_headers`` and ``canonical_body`` are the exact bytes that were
    hashed (``None`` when the check stopped before hashing); ``body_hash`` is the hash
    computed here and ``claimed_body_hash`` the signer's ``bh=``.
    """

    index: int = 0
    domain: str | None = None
    selector: str | None = None
    algorithm: str | None = None
    identity: str | None = None
    canonicalization: tuple[str, str] | None = None
    tags: tuple[tuple[str, str], ...] = ()
    signed_headers: tuple[str, ...] = ()
    header_field: bytes = field(default=b"", repr=False)
    canonical_headers: bytes | None = field(default=None, repr=False)
    canonical_body: bytes | None = field(default=None, repr=False)
    body_hash: str | None = None
    claimed_body_hash: str | None = None
    body_length: int | None = None
    body_octets: int | None = None
    key_name: str | None = None
    key_record: str | None = None
    key_type: str | None = None
    key_bits: int | None = None
    testing: bool = False
    timestamp: int | None = None
    expiration: int | None = None

    @property
    def result(self) -> str:
        """The result word (RFC 8601 section 2.7.1); the same as ``verdict``."""
        return self.verdict

    @property
    def passed(self) -> bool:
        return self.verdict == "pass"

    @property
    def unsigned_body_octets(self) -> int:
        """Octets of the canonical body after ``l=``: content nobody signed."""
        if self.body_length is None or self.body_octets is None:
            return 0
        return max(0, self.body_octets - self.body_length)

    def show_body(self) -> str:
        """The whole body as hashed, with CR LF, spaces and tabs made visible."""
        return show_whitespace(self.canonical_body or b"")

    def show_headers(self) -> str:
        """The header data as hashed, with CR LF, spaces and tabs made visible."""
        return show_whitespace(self.canonical_headers or b"")

    def title(self) -> str:
        who = f"d={self.domain} s={self.selector}" if self.domain else "unreadable"
        return f"DKIM signature {self.index + 1} ({who}): {self.verdict}"

    def authres(self) -> str:
        """This result as a ``dkim=`` entry of an Authentication-Results field
        (RFC 8601 section 2.7.1; ``header.b`` as RFC 6008 gives it)."""
        reason = self.summary.replace("(", "[").replace(")", "]")
        parts = [f"dkim={self.verdict} ({reason})"]
        tags = dict(self.tags)
        if self.domain:
            parts.append(f"header.d={self.domain}")
        if self.identity:
            parts.append(f"header.i={self.identity}")
        if self.selector:
            parts.append(f"header.s={self.selector}")
        if self.algorithm:
            parts.append(f"header.a={self.algorithm}")
        b = "".join(tags.get("b", "").split())[:8]
        if b:
            parts.append(f"header.b={b}")
        return " ".join(parts)


@dataclass(frozen=True, kw_only=True)
class DKIMVerification(Result):
    """Every DKIM-Signature of a message, each checked separately.

    ``signatures`` holds one :class:`DKIMResult` per DKIM-Signature field, topmost first.
    ``verdict`` sums them up: ``none`` when the message has no signature, otherwise the
    first of :data:`VERDICT_ORDER` that any signature has (``pass`` if one passes).
    ``lf_fixed`` counts bare LF line ends that were read as CR LF.
    """

    signatures: tuple[DKIMResult, ...] = ()
    lf_fixed: int = 0
    problems: tuple[str, ...] = ()

    @property
    def results(self) -> tuple[str, ...]:
        return tuple(s.verdict for s in self.signatures)

    @property
    def passing_domains(self) -> tuple[str, ...]:
        """The ``d=`` domains of the signatures that pass (what DMARC looks at)."""
        return tuple(s.domain for s in self.signatures if s.passed and s.domain)

    def __getitem__(self, index: int) -> DKIMResult:
        return self.signatures[index]

    def __len__(self) -> int:
        return len(self.signatures)

    def title(self) -> str:
        return f"DKIM: {self.verdict}"

    def authres(self) -> list[str]:
        """One ``dkim=`` entry per signature (``["dkim=none"]`` without any)."""
        return [s.authres() for s in self.signatures] or ["dkim=none"]

    def text(self) -> str:
        parts = [super().text()]
        for sig in self.signatures:
            parts.append("\n".join("  " + line for line in sig.text().splitlines()))
        return "\n".join(parts)

    def _repr_html_(self) -> str:
        rows: list[list[object]] = [
            [s.index + 1, s.verdict, s.domain or "-", s.selector or "-", s.algorithm or "-",
             s.summary] for s in self.signatures
        ]
        table = html_table(["#", "result", "d=", "s=", "a=", "reason"], rows) if rows else ""
        details = "".join(
            f"<details><summary>{s.title()}</summary>{s._repr_html_()}</details>"
            for s in self.signatures
        )
        return super()._repr_html_() + table + details


@dataclass(frozen=True, kw_only=True)
class DKIMSigning(Result):
    """The outcome of signing: ``verdict`` is ``signed`` or ``refused`` (with the reason).

    ``signed_message`` is the message with the new DKIM-Signature on top,
    ``signature_field`` that field alone; ``canonical_headers`` and ``canonical_body``
    are the exact bytes hashed; ``body_hash`` is the ``bh=`` value.
    """

    domain: str
    selector: str
    algorithm: str | None = None
    canonicalization: tuple[str, str] | None = None
    signed_headers: tuple[str, ...] = ()
    tags: tuple[tuple[str, str], ...] = ()
    signed_message: bytes | None = field(default=None, repr=False)
    signature_field: bytes | None = field(default=None, repr=False)
    canonical_headers: bytes | None = field(default=None, repr=False)
    canonical_body: bytes | None = field(default=None, repr=False)
    body_hash: str | None = None

    def title(self) -> str:
        return f"DKIM signing for d={self.domain} s={self.selector}: {self.verdict}"


# -- small helpers -----------------------------------------------------------------------


_END_KIND = {"pass": "ok", "fail": "error", "permerror": "error"}
_KEY_NAMES = {"rsa": "RSA", "ed25519": "Ed25519"}


class _Stop(Exception):
    """Ends a check early with a result and a reason."""

    def __init__(self, verdict: str, reason: str, rfc: str | None = None) -> None:
        super().__init__(reason)
        self.verdict = verdict
        self.reason = reason
        self.rfc = rfc


def _seconds(when: Now) -> float:
    """Seconds since the epoch from a number, an aware datetime or a LabClock."""
    if when is None:
        return _DEFAULT_CLOCK.time()
    if isinstance(when, LabClock):
        return when.time()
    if isinstance(when, datetime):
        return when.timestamp()
    return float(when)


def _utc(seconds: float) -> str:
    try:
        return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(seconds))
    except (OverflowError, OSError, ValueError):
        return f"{seconds:.0f} seconds after 1970"


def _duration(seconds: float) -> str:
    seconds = abs(seconds)
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= size:
            n = int(seconds // size)
            return f"{n} {unit}{'s' if n != 1 else ''}"
    return f"{int(seconds)} second{'s' if int(seconds) != 1 else ''}"


def _valid_domain(name: str) -> bool:
    if _ASCII_DOMAIN.match(name):
        return len(name) <= 253
    if not name or len(name) > 253 or name.startswith(".") or name.endswith("."):
        return False
    for label in name.split("."):
        if label.isascii():
            if not _LABEL.match(label):
                return False
        elif not label or len(label.encode("utf-8")) > 63:  # a U-label (RFC 8616)
            return False
    return True


def _b64(value: str, tag: str) -> bytes:
    compact = "".join(value.split())
    if not compact:
        raise _Stop("permerror", f"the {tag}= tag is empty", RFC_SIG_TAGS)
    try:
        return base64.b64decode(compact, validate=True)
    except (binascii.Error, ValueError):
        raise _Stop("permerror", f"the {tag}= value is not valid base64", RFC_SIG_TAGS) \
            from None


def _parse_canonicalization(value: str | None) -> tuple[str, str]:
    if value is None:
        return ("simple", "simple")
    header, _, body = value.partition("/")
    body = body or "simple"
    if header not in CANONICALIZATIONS or body not in CANONICALIZATIONS:
        raise _Stop("permerror", f"c={value} is not a known canonicalization (simple or "
                                 "relaxed, for header/body)", "RFC 6376 section 3.5")
    return (header, body)


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


def _key_record(text: str) -> KeyRecord:
    found = _KEY_CACHE.get(text)
    if found is None:
        try:
            found = parse_key_record(text)
        except KeyRecordError as exc:
            found = exc
        if len(_KEY_CACHE) >= _KEY_CACHE_SIZE:
            _KEY_CACHE.clear()
        _KEY_CACHE[text] = found
    if isinstance(found, KeyRecordError):
        raise found
    return found


# -- verifying ---------------------------------------------------------------------------


class _Check:
    """One DKIM-Signature being checked; each step adds to the trace or stops."""

    def __init__(self, parsed: ParsedMessage, position: int, number: int,
                 index: dict[bytes, list[int]], resolver: ResolverLike, now: float,
                 bodies: dict[tuple[str, int | None], tuple[bytes, int, str]],
                 want_detail: bool) -> None:
        self.parsed = parsed
        self.position = position
        self.number = number
        self.index = index
        self.resolver = resolver
        self.now = now
        self.bodies = bodies
        self.want = want_detail
        self.trace = TraceBuilder(depth=1)
        self.raw = parsed.headers[position].raw
        self.fields: dict[str, Any] = {"index": number, "header_field": self.raw}

    def stop(self, verdict: str, reason: str, rfc: str | None = None) -> NoReturn:
        raise _Stop(verdict, reason, rfc)

    def run(self) -> DKIMResult:
        head = Step(f"DKIM-Signature {self.number + 1} (header field {self.position + 1} "
                    "from the top)",
                    detail=self.raw[:-2].decode("utf-8", "replace") if self.want else None)
        try:
            verdict, reason = self._check()
        except _Stop as stop:
            kind = "warning" if stop.verdict in ("neutral", "temperror") else "error"
            end = Step(f"{stop.verdict}: {stop.reason}", kind=kind, rfc=stop.rfc)
            verdict, reason = stop.verdict, stop.reason
        else:
            end = Step(f"{verdict}: {reason}", kind=_END_KIND.get(verdict, "warning"),
                       rfc=RFC_RESULTS)
        return DKIMResult(verdict=verdict, summary=reason,
                          trace=(head, *self.trace.freeze(), end), **self.fields)

    # The steps of RFC 6376 section 6.1, in order.

    def _check(self) -> tuple[str, str]:
        tags = self._parse_tags()
        sig = self._validate(tags)
        key = self._get_key(sig)
        body_ok = self._body_hash(sig)
        if not body_ok:
            return self._after_failure(key, "the body hash did not verify: the body was "
                                            "changed after signing")
        signature_ok = self._header_hash_and_signature(sig, key)
        if not signature_ok:
            return self._after_failure(key, "the signature did not verify: a signed header "
                                            "field was changed, or the key does not match")
        if key.testing:
            self.trace.add("the key says the domain is testing DKIM (t=y): receivers treat "
                           "the message as unsigned whatever the result", kind="warning",
                           rfc=RFC_KEY_FLAGS)
            return "pass", ("the signature verified (but the domain is testing DKIM, t=y, "
                            "so receivers treat the message as unsigned)")
        d = self.fields["domain"]
        return "pass", f"the signature by {d} verified"

    def _after_failure(self, key: KeyRecord, reason: str) -> tuple[str, str]:
        if key.testing:
            self.trace.add("the key says the domain is testing DKIM (t=y): a failure must "
                           "not count against the message, so it is reported as neutral",
                           kind="warning", rfc=RFC_KEY_FLAGS)
            return "neutral", reason + " (the domain is testing DKIM, t=y)"
        return "fail", reason

    def _parse_tags(self) -> dict[str, str]:
        text = self.raw.partition(b":")[2][:-2].decode("utf-8", "replace")
        try:
            tags = parse_tag_list(text)
        except TagListError as exc:
            self.stop("permerror", f"the signature is not a valid tag list: {exc}",
                      "RFC 6376 section 3.2")
        self.fields["tags"] = tuple(tags.items())
        return tags

    def _validate(self, tags: dict[str, str]) -> dict[str, Any]:
        fields = self.fields
        domain = tags.get("d")
        selector = tags.get("s")
        algorithm = tags.get("a")
        fields["domain"], fields["selector"], fields["algorithm"] = domain, selector, algorithm
        if domain is None or selector is None or algorithm is None or "v" not in tags \
                or "b" not in tags or "bh" not in tags or "h" not in tags:
            missing = [name for name in _REQUIRED_TAGS if name not in tags]
            self.stop("permerror", "the signature lacks the required tag"
                      f"{'s' if len(missing) > 1 else ''} "
                      + ", ".join(f"{m}=" for m in missing), RFC_VERIFY_SIG)
        if tags["v"] != "1":
            self.stop("permerror", f"v={tags['v']}: this verifier knows DKIM version 1 only",
                      RFC_VERIFY_SIG)
        if algorithm not in SIGNATURE_ALGORITHMS:
            if algorithm == "rsa-sha1":
                self.stop("permerror", "a=rsa-sha1: SHA-1 is broken, and RFC 8301 says "
                          "verifiers MUST NOT accept rsa-sha1 signatures", RFC_SHA1)
            self.stop("permerror", f"a={algorithm} is not a known signing algorithm "
                      f"(known: {', '.join(SIGNATURE_ALGORITHMS)})", RFC_VERIFY_SIG)
        canon = _CANONICALIZATION_VALUES.get(tags.get("c"))
        if canon is None:
            canon = _parse_canonicalization(tags.get("c"))
        fields["canonicalization"] = canon
        if not _valid_domain(domain):
            self.stop("permerror", f"d={domain!r} is not a domain name", RFC_SIG_TAGS)
        if not _valid_domain(selector):
            self.stop("permerror", f"s={selector!r} is not a valid selector (dot-separated "
                      "labels)", RFC_SIG_TAGS)
        query = tags.get("q")
        if query is not None and query != "dns/txt" \
                and "dns/txt" not in [q.strip() for q in query.split(":")]:
            self.stop("permerror", f"q={query}: the only key query method is dns/txt",
                      RFC_SIG_TAGS)
        h = tags["h"]
        if not _H_VALUE.match(h):
            self.stop("permerror", f"h={h!r} holds an empty or invalid header field name",
                      RFC_SIG_TAGS)
        names = h.split(":")
        if " " in h or "\t" in h:
            names = [n.strip(" \t") for n in names]
        keys = [n.lower() for n in names]
        fields["signed_headers"] = tuple(names)
        if "from" not in keys:
            self.stop("permerror", "h= does not include From; a signature must cover the "
                      "From field", RFC_VERIFY_SIG)
        identity = tags.get("i")
        if identity is not None:
            at = identity.rfind("@")
            if at < 0:
                self.stop("permerror", f"i={identity!r} is not an identity (it has no @)",
                          RFC_SIG_TAGS)
            low, dlow = identity[at + 1:].lower(), domain.lower()
            if low != dlow and not low.endswith("." + dlow):
                self.stop("permerror", f"the identity i={identity} is not in the signing "
                          f"domain d={domain} or a subdomain of it", RFC_VERIFY_SIG)
        else:
            identity = "@" + domain
        fields["identity"] = identity
        length = tags.get("l")
        if length is not None:
            if not _DIGITS.match(length):
                self.stop("permerror", f"l={length!r} is not a number", RFC_SIG_TAGS)
            fields["body_length"] = int(length)
        signed_at = tags.get("t")
        expires = tags.get("x")
        for name, value in (("t", signed_at), ("x", expires)):
            if value is not None and not _DIGITS.match(value):
                self.stop("permerror", f"{name}={value!r} is not a number of seconds",
                          RFC_SIG_TAGS)
        t_value = fields["timestamp"] = int(signed_at) if signed_at is not None else None
        x_value = fields["expiration"] = int(expires) if expires is not None else None
        claimed_bh = _b64(tags["bh"], "bh")
        signature = _b64(tags["b"], "b")
        fields["claimed_body_hash"] = base64.b64encode(claimed_bh).decode()
        if self.want:
            detail = "\n".join([f"{k}={''.join(v.split())}" if k == "b" or k == "bh"
                                 else f"{k}={v}" for k, v in tags.items()])
        else:
            detail = None
        text = (f"read the tags: signed by d={domain} with s={selector}, a={algorithm}, "
                f"c={canon[0]}/{canon[1]}, identity {identity}")
        try:
            when = self._times(t_value, x_value)
        finally:
            self.trace.add(text, kind="decision", rfc=RFC_SIG_TAGS, detail=detail)
        if when:
            self.trace.add(when, rfc=RFC_SIG_TAGS)
        if t_value is not None and self.now - t_value < -300:
            self.trace.add("the signature claims a time in the future: the signer's clock "
                           "(or this one) is wrong", kind="warning", rfc=RFC_SIG_TAGS)
        if not domain.isascii():
            self.trace.add("the domain is written in UTF-8", rfc=RFC_UTF8)
        return {"algorithm": algorithm, "canon": canon, "domain": domain,
                "selector": selector, "names": names, "keys": keys,
                "length": fields.get("body_length"), "bh": claimed_bh, "b": signature}

    def _times(self, signed: int | None, expires: int | None) -> str:
        """t= and x= in words (RFC 6376 section 3.5); an expired signature stops."""
        if signed is None and expires is None:
            return ""
        if signed is not None and expires is not None and expires <= signed:
            self.stop("permerror", f"x= ({_utc(expires)}) is not later than t= "
                      f"({_utc(signed)})", RFC_SIG_TAGS)
        if expires is not None and self.now > expires:
            self.stop("permerror", f"the signature expired at {_utc(expires)} (x=), "
                      f"{_duration(self.now - expires)} ago", RFC_VERIFY_SIG)
        if signed is None:
            when = "no signing time (no t=)"
        else:
            ago = self.now - signed
            when = f"signed at {_utc(signed)} (t=), " + (
                f"{_duration(ago)} ago" if ago >= 0 else
                f"{_duration(ago)} in the future by the verifier's clock")
        if expires is None:
            return when + "; no expiry (no x=)"
        return when + f"; expires at {_utc(expires)} (x=), in {_duration(expires - self.now)}"

    def _get_key(self, sig: dict[str, Any]) -> KeyRecord:
        t = self.trace
        name = key_name(sig["domain"], sig["selector"])
        self.fields["key_name"] = name
        t.add(f"ask DNS for the TXT record at {name}", kind="query", rfc=RFC_GET_KEY)
        try:
            answer = self.resolver.resolve(name, "TXT")
        except dns.resolver.NXDOMAIN:
            self.stop("permerror", f"no key for the signature: {name} does not exist "
                      "(NXDOMAIN)", RFC_GET_KEY)
        except dns.resolver.NoAnswer:
            self.stop("permerror", f"no key for the signature: {name} has no TXT record",
                      RFC_GET_KEY)
        except dns.exception.Timeout:
            self.stop("temperror", f"the key could not be fetched: the DNS query for {name} "
                      "timed out; try again later", RFC_GET_KEY)
        except dns.resolver.NoNameservers as exc:
            what = ("the DNS server refused (the name is outside its zones)"
                    if "REFUSED" in str(exc) else "the DNS server failed (SERVFAIL)")
            self.stop("temperror", f"the key could not be fetched: {what}; try again later",
                      RFC_GET_KEY)
        except (dns.name.NameTooLong, dns.name.LabelTooLong, dns.name.EmptyLabel,
                dns.name.IDNAException, ValueError, UnicodeError) as exc:
            self.stop("permerror", f"{name!r} cannot be asked in DNS: {exc}", RFC_GET_KEY)
        except dns.exception.DNSException as exc:
            self.stop("temperror", f"the key could not be fetched: {exc}", RFC_GET_KEY)
        except Exception as exc:  # a resolver of another kind failing in its own way
            self.stop("temperror", f"the key could not be fetched: {type(exc).__name__}: "
                      f"{exc}", RFC_GET_KEY)
        texts: list[tuple[str, int]] = []
        for rdata in answer:
            strings = getattr(rdata, "strings", None)
            if strings is None:
                continue
            texts.append((b"".join(strings).decode("utf-8", "replace"), len(strings)))
        if self.want:
            detail = "\n".join(f'{name}. TXT "{text}"' + (f"  ({n} strings joined)"
                                                          if n > 1 else "")
                               for text, n in texts)
        else:
            detail = None
        if not texts:
            t.add("no TXT record", kind="answer")
            self.stop("permerror", f"no key for the signature: {name} has no TXT record",
                      RFC_GET_KEY)
        errors: list[str] = []
        key: KeyRecord | None = None
        for text, _n in texts:
            try:
                key = _key_record(text)
            except KeyRecordError as exc:
                errors.append(str(exc))
                if exc.revoked and len(texts) == 1:
                    self.fields["key_record"] = text
                    self.stop("permerror", f"the key for {name} has been revoked (empty p=)",
                              RFC_KEY_FLAGS)
                continue
            self.fields["key_record"] = text
            break
        if key is None:
            self.fields["key_record"] = texts[0][0]
            self.stop("permerror", "the key record is not usable: " + "; ".join(errors),
                      RFC_KEY_FLAGS)
        if errors:
            t.add(f"skipped {len(errors)} unusable record(s): {'; '.join(errors)}",
                  kind="warning", rfc=RFC_GET_KEY)
        self.fields["key_type"] = key.key_type
        self.fields["key_bits"] = key.bits
        self.fields["testing"] = key.testing
        flags = f", flags t={':'.join(key.flags)}" if key.flags else ""
        notes = f", notes: {key.notes}" if key.notes else ""
        records = f"{len(texts)} TXT records; the first usable: " if len(texts) > 1 else ""
        t.add(f"{records}an {_KEY_NAMES.get(key.key_type, key.key_type)} key of {key.bits} "
              f"bits{flags}{notes}", kind="answer", rfc=RFC_KEY_FLAGS, detail=detail)
        if key.key_type == "rsa" and key.bits < 2048:
            t.add(f"{key.bits} bits is accepted, but RFC 8301 recommends 2048", kind="info",
                  rfc=RFC_KEY_SIZE)
        wanted = key_type_for(sig["algorithm"])
        if key.key_type != wanted:
            self.stop("permerror", f"a={sig['algorithm']} needs a {wanted} key, but the key "
                      f"record holds k={key.key_type}", RFC_GET_KEY)
        if key.key_type == "rsa" and key.bits < MIN_RSA_BITS:  # parse_key_record refuses it
            self.stop("permerror", f"the RSA key has {key.bits} bits, under {MIN_RSA_BITS}",
                      RFC_KEY_SIZE)
        if key.strict:
            idomain = self.fields["identity"].rpartition("@")[2].lower()
            if idomain != sig["domain"].lower():
                self.stop("permerror", f"the key is strict (t=s): the identity's domain "
                          f"{idomain} must be exactly d={sig['domain']}", RFC_KEY_FLAGS)
            t.add("t=s: the identity's domain is exactly d=, as the key requires",
                  rfc=RFC_KEY_FLAGS)
        return key

    def _body_hash(self, sig: dict[str, Any]) -> bool:
        t = self.trace
        algorithm = sig["canon"][1]
        length = sig["length"]
        cached = self.bodies.get((algorithm, length))
        if cached is None:
            full = canonical_body(self.parsed.body, algorithm)
            hashed = full if length is None or length > len(full) else full[:length]
            digest = base64.b64encode(_digest(hashed)).decode()
            self.bodies[(algorithm, length)] = (hashed, len(full), digest)
        else:
            hashed, _full_length, digest = cached
        full_length = self.bodies[(algorithm, length)][1]
        self.fields["body_octets"] = full_length
        if length is not None and length > full_length:
            self.stop("permerror", f"l={length} claims more body than there is (the "
                      f"canonicalized body has {full_length} octets)", RFC_SIG_TAGS)
        self.fields["canonical_body"] = hashed
        self.fields["body_hash"] = digest
        if length is not None:
            left = full_length - length
            t.add(f"l={length}: only the first {length} of {full_length} octets of the "
                  "canonicalized body are signed"
                  + (f"; the last {left} could be anything (a list footer, or an attacker's "
                     "text)" if left else ""), kind="warning", rfc=RFC_LENGTH)
        claimed = self.fields["claimed_body_hash"]
        same = claimed == digest
        t.add(f"canonicalize the body ({algorithm}, {RFC_BODY_CANON[algorithm]}) and hash "
              f"its {len(hashed)} octets: computed {digest}, claimed bh={claimed}: "
              + ("they match" if same else "they differ"), kind="ok" if same else "error",
              rfc=RFC_BODY_HASH, detail=_shown(hashed, self.want))
        return same

    def _header_hash_and_signature(self, sig: dict[str, Any], key: KeyRecord) -> bool:
        t = self.trace
        algorithm = sig["canon"][0]
        chosen, found, absent = _select(self.parsed, self.index, sig["names"], sig["keys"],
                                        algorithm)
        own = _signature_part(self.raw[:-2], algorithm)
        data = b"".join(chosen) + own
        self.fields["canonical_headers"] = data
        if absent:
            t.add(f"h= names {', '.join(absent)} once more than the message has: that "
                  "signs their absence, so adding such a field breaks the signature",
                  rfc=RFC_OVERSIGN)
        from_fields = len(self.index.get(b"from", ()))
        from_signed = sig["keys"].count("from")
        if from_fields > from_signed:
            t.add(f"the message has {from_fields} From fields but the signature covers "
                  f"{from_signed}: a From added above the signed one is not protected "
                  "(oversigning, h=from:from, would have prevented it)", kind="warning",
                  rfc=RFC_OVERSIGN)
        t.add(f"select the signed header fields (h=), each from the bottom up "
              f"({', '.join(found) or 'none'}), canonicalize them ({algorithm}, "
              f"{RFC_HEADER_CANON[algorithm]}) and add this DKIM-Signature with b= emptied "
              "and no final CR LF", rfc=RFC_SELECT, detail=_shown(data, self.want))
        digest = _digest(data)
        what = ("Ed25519 over the SHA-256 hash" if key.key_type == "ed25519"
                else "RSASSA-PKCS1-v1_5 with SHA-256")
        ok = _verify_signature(key.public_key, sig["b"], digest)
        t.add(f"hash the header data (SHA-256 {digest.hex()[:16]}…) and check b= with the "
              f"public key ({what}): "
              + ("the signature is valid" if ok else "the signature does not match"),
              kind="ok" if ok else "error",
              rfc=RFC_ED25519 if key.key_type == "ed25519" else RFC_COMPUTE)
        return ok


def verify(message: bytes | str, resolver: ResolverLike, *, now: Now = None,
           trace: bool = True) -> DKIMVerification:
    """Check every DKIM-Signature of ``message`` (RFC 6376 section 6).

    ``resolver`` follows dnspython's ``Resolver.resolve(qname, rdtype)`` contract (the
    lab's resolver or a :class:`~labsupport.dns.zone.ZoneSet`). ``now`` is the time used
    for ``x=`` (expiry): seconds, a datetime, or a :class:`~labsupport.core.clock.LabClock`
    such as ``lab.clock`` (by default a lab clock on real time). With ``trace=False`` the
    trace leaves out the verbatim details (the raw bytes stay on the results).

    Bare LF line ends are read as CR LF; a malformed message or signature gives
    ``permerror`` and a DNS failure ``temperror``, each with a reason, never an
    exception.
    """
    if isinstance(message, str):
        message = message.encode("utf-8")
    parsed = parse_message(message)
    t = TraceBuilder()
    if parsed.lf_fixed:
        t.add(f"{parsed.lf_fixed} line end{'s' if parsed.lf_fixed != 1 else ''} with LF "
              "alone read as CR LF, as on the wire", rfc="RFC 5322 section 2.1")
    if parsed.mbox_line is not None:
        t.add("a first line in mbox style ('From ...') set aside: it is not part of the "
              "message", kind="info")
    if not parsed.separator and not parsed.problems and parsed.headers:
        t.add("no empty line after the header: the message has no body (allowed, RFC 5322 "
              "section 3.5), so the body is empty", rfc="RFC 5322 section 3.5")
    for problem in parsed.problems:
        t.add(problem, kind="error", rfc="RFC 5322 section 2.2")
    positions = [i for i, h in enumerate(parsed.headers) if h.key == b"dkim-signature"]
    if len(positions) != 1:
        t.add(f"{len(positions)} DKIM-Signature header fields"
              + (", each checked on its own" if positions else ""), rfc=RFC_DKIM)
    if not positions:
        if parsed.problems:
            return DKIMVerification(
                verdict="permerror", trace=t.freeze(), lf_fixed=parsed.lf_fixed,
                problems=parsed.problems,
                summary="The message's header cannot be read, so no signature can be "
                        f"checked: {parsed.problems[0]}.")
        return DKIMVerification(verdict="none", trace=t.freeze(), lf_fixed=parsed.lf_fixed,
                                summary="The message has no DKIM-Signature: it is not "
                                        "signed.")
    clock = _seconds(now)
    index = _header_index(parsed)
    bodies: dict[tuple[str, int | None], tuple[bytes, int, str]] = {}
    results = []
    for number, position in enumerate(positions):
        if parsed.problems:
            reason = f"the message's header cannot be read: {parsed.problems[0]}"
            results.append(DKIMResult(
                verdict="permerror", index=number, header_field=parsed.headers[position].raw,
                summary=reason, trace=(
                    Step(f"DKIM-Signature {number + 1}"),
                    Step(f"permerror: {reason}", kind="error", depth=1,
                         rfc="RFC 5322 section 2.2"))))
            continue
        results.append(_Check(parsed, position, number, index, resolver, clock, bodies,
                              trace).run())
    if len(results) == 1:
        verdict = results[0].verdict
        reason = results[0].summary.rstrip(".")
        summary = f"{reason[:1].upper()}{reason[1:]}."
    else:
        verdicts = [r.verdict for r in results]
        verdict = next(v for v in VERDICT_ORDER if v in verdicts)
        described = "; ".join(f"{r.index + 1}: {r.verdict} (d={r.domain or '?'})"
                              for r in results)
        if verdict == "pass":
            good = ", ".join(sorted({r.domain or "?" for r in results if r.passed}))
            summary = f"Signed by {good}, verified. Signatures {described}."
        else:
            summary = f"No signature verified. Signatures {described}."
    return DKIMVerification(verdict=verdict, summary=summary, trace=t.freeze(),
                            signatures=tuple(results), lf_fixed=parsed.lf_fixed,
                            problems=parsed.problems)


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


__all__ = [
    "DEFAULT_SIGNED_HEADERS", "RESULTS", "SIGNATURE_ALGORITHMS", "DKIMError", "DKIMKeyError",
    "DKIMResult", "DKIMSigning", "DKIMSigningError", "DKIMVerification", "LabKey",
    "canonicalize_body", "canonicalize_body_relaxed", "canonicalize_body_simple",
    "canonicalize_header", "canonicalize_header_relaxed", "canonicalize_header_simple",
    "generate_key", "lab_key", "parse_message", "publish", "revoke", "rotate",
    "show_whitespace", "sign", "sign_traced", "verify",
]
