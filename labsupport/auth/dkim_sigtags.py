"""The DKIM-Signature header field's tags, and reading them as a verifier does.

A DKIM-Signature field is a tag list (RFC 6376 section 3.5): ``v=1`` the version,
``a=`` the algorithm, ``d=`` the signing domain and ``s=`` the selector, ``h=`` the
signed header fields, ``bh=`` the body hash, ``b=`` the signature, and the optional
``c=`` (canonicalization), ``i=`` (identity), ``l=`` (body length), ``q=`` (query
method), ``t=`` (signing time) and ``x=`` (expiry).

This module holds what both signing and verifying need to know about those tags: the
RFC sections the traces cite, the algorithms the lab accepts, how a domain name and a
time are read. Its :class:`_SignatureReader` is the first step of checking one
signature (RFC 6376 section 6.1.1): read the tags, check that each is there and well
formed, and say in the trace what they claim, stopping with ``permerror`` and the
reason when they cannot be used. The rest of the check (the key, the hashes) is
:mod:`labsupport.auth.dkim_verify`.

Introduced in ``notebooks/05-dkim.ipynb``.
"""

from __future__ import annotations

import base64
import binascii
import re
import time
from datetime import datetime
from typing import Any, NoReturn

from ..core.clock import LabClock
from ..core.results import TraceBuilder
from .dkim_canon import CANONICALIZATIONS
from .dkim_taglist import TagListError, parse_tag_list

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

_REQUIRED_TAGS = ("v", "a", "b", "bh", "d", "h", "s")
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
# h=: header field names separated by colons, white space allowed around them (3.5).
_H_VALUE = re.compile(r"[ \t]*[\x21-\x39\x3b-\x7e]+[ \t]*(?::[ \t]*[\x21-\x39\x3b-\x7e]+[ \t]*)*\Z")
_DEFAULT_CLOCK = LabClock()

Now = float | int | datetime | LabClock | None


# -- small helpers -----------------------------------------------------------------------


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




class _SignatureReader:
    """The tags of one DKIM-Signature being read: the first steps of checking it
    (RFC 6376 section 6.1.1), each adding to the trace or stopping.

    The check that goes on to fetch the key and compare the hashes
    (``_Check`` in :mod:`labsupport.auth.dkim_verify`) builds on this and sets the
    attributes below.
    """

    raw: bytes
    fields: dict[str, Any]
    trace: TraceBuilder
    now: float
    want: bool

    def stop(self, verdict: str, reason: str, rfc: str | None = None) -> NoReturn:
        raise _Stop(verdict, reason, rfc)

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
