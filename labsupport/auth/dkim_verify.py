"""Verifying DKIM: check every DKIM-Signature of a message, showing every step.

:func:`verify` finds the DKIM-Signature fields of a message and checks each on its own
(RFC 6376 section 6.1): read its tags (:mod:`labsupport.auth.dkim_sigtags`), fetch the
public key from DNS at ``<s=>._domainkey.<d=>``, hash the canonicalized body and
compare with ``bh=``, then hash the signed header fields and check ``b=`` with the key
(:mod:`labsupport.auth.dkim_hashing`). Each signature gives a
:class:`~labsupport.auth.dkim_results.DKIMResult` with its trace, and the message a
:class:`~labsupport.auth.dkim_results.DKIMVerification` that sums them up.

A malformed message or signature gives ``permerror``, a DNS failure ``temperror``, a
key in testing mode (``t=y``) turns a failure into ``neutral``; each with a reason,
never an exception. RFC 8301 is enforced: rsa-sha1 and RSA keys under 1024 bits are
refused.

Introduced in ``notebooks/05-dkim.ipynb``.
"""

from __future__ import annotations

import base64
from typing import Any

import dns.exception
import dns.name
import dns.resolver

from ..core.results import Step, TraceBuilder
from ..dns.mx import ResolverLike
from .dkim_canon import ParsedMessage, canonical_body, parse_message
from .dkim_hashing import (
    _digest,
    _header_index,
    _select,
    _shown,
    _signature_part,
    _verify_signature,
)
from .dkim_keyrecord import MIN_RSA_BITS, KeyRecord, KeyRecordError, parse_key_record
from .dkim_keys import key_name, key_type_for
from .dkim_results import VERDICT_ORDER, DKIMResult, DKIMVerification
from .dkim_sigtags import (
    _KEY_NAMES,
    RFC_BODY_CANON,
    RFC_BODY_HASH,
    RFC_COMPUTE,
    RFC_DKIM,
    RFC_ED25519,
    RFC_GET_KEY,
    RFC_HEADER_CANON,
    RFC_KEY_FLAGS,
    RFC_KEY_SIZE,
    RFC_LENGTH,
    RFC_OVERSIGN,
    RFC_RESULTS,
    RFC_SELECT,
    RFC_SIG_TAGS,
    Now,
    _seconds,
    _SignatureReader,
    _Stop,
)

_KEY_CACHE: dict[str, KeyRecord | KeyRecordError] = {}
_KEY_CACHE_SIZE = 512

_END_KIND = {"pass": "ok", "fail": "error", "permerror": "error"}


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


class _Check(_SignatureReader):
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
