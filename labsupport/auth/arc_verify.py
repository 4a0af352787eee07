"""Validating an ARC chain, step by step (RFC 8617 section 5.2).

:func:`validate_chain` follows the validator's steps of RFC 8617 section 5.2 in order,
each one in the trace:

1. collect the ARC sets; none means the chain validation status is ``none``; more
   than 50 is ``fail``;
2. if the newest ARC-Seal says ``cv=fail``, the chain has failed already: ``fail``;
3. check the structure: instances 1..N, each with exactly one ARC-Authentication-Results,
   ARC-Message-Signature and ARC-Seal, ``cv=none`` at i=1 and ``cv=pass`` above it;
4. verify the newest ARC-Message-Signature (the message as the last handler sent it);
5. and 6. find the oldest-pass: verify the older ARC-Message-Signatures, newest first,
   down to the first that fails (its changes are where the message was modified);
7. verify every ARC-Seal, newest first, each over the sets 1..i;
8. all of that done: ``pass``.

The keys are fetched from DNS at ``<s=>._domainkey.<d=>`` exactly as DKIM does
(RFC 6376 section 3.6.2); the hashing and the signature checks are the lab's DKIM ones
(:mod:`labsupport.auth.dkim_hashing`). The result is an
:class:`~labsupport.auth.arc_results.ARCValidation`; a malformed chain is a ``fail``
with the reason, never an exception.

Introduced with the forwarder and the list (``labsupport.mail.aliases``).
"""

from __future__ import annotations

import base64
import binascii

import dns.exception
import dns.resolver

from ..core.results import TraceBuilder
from ..dns.mx import ResolverLike
from .arc_results import ARCSetResult, ARCValidation
from .arc_sets import (
    AAR,
    AMS,
    AS,
    MAX_INSTANCE,
    RFC_AMS,
    RFC_AS,
    RFC_SEAL_SCOPE,
    RFC_VALIDATOR,
    ARCSet,
    CollectedFields,
    collect_arc_fields,
    message_signature_input,
    results_text_of,
    seal_input,
)
from .dkim_canon import ParsedMessage, canonical_body, parse_message
from .dkim_hashing import _digest, _shown, _verify_signature
from .dkim_keyrecord import KeyRecord, KeyRecordError
from .dkim_keys import key_name, key_type_for
from .dkim_sigtags import (
    RFC_BODY_HASH,
    RFC_GET_KEY,
    SIGNATURE_ALGORITHMS,
    _parse_canonicalization,
    _Stop,
    _utc,
    _valid_domain,
)
from .dkim_verify import _key_record

_AMS_TAGS = ("i", "a", "b", "bh", "d", "h", "s")
_AS_TAGS = ("i", "a", "b", "cv", "d", "s")


def _step(n: int | str) -> str:
    return f"{RFC_VALIDATOR} step {n}"


class _Validator:
    """One chain being validated; each step adds to the trace."""

    def __init__(self, parsed: ParsedMessage, resolver: ResolverLike, want: bool) -> None:
        self.parsed = parsed
        self.resolver = resolver
        self.want = want
        self.trace = TraceBuilder()
        self.keys: dict[str, KeyRecord | str] = {}
        self.bodies: dict[str, str] = {}

    # -- keys and signatures ---------------------------------------------------------------

    def _key(self, domain: str, selector: str) -> KeyRecord:
        """The public key at ``<selector>._domainkey.<domain>``; _Stop("fail") if none."""
        name = key_name(domain, selector)
        cached = self.keys.get(name)
        if isinstance(cached, KeyRecord):
            self.trace.add(f"the key at {name} (already fetched)", kind="answer")
            return cached
        if isinstance(cached, str):
            raise _Stop("fail", cached, RFC_GET_KEY)
        self.trace.add(f"ask DNS for the TXT record at {name}", kind="query", rfc=RFC_GET_KEY)
        try:
            answer = self.resolver.resolve(name, "TXT")
            texts = [b"".join(r.strings).decode("utf-8", "replace") for r in answer
                     if getattr(r, "strings", None) is not None]
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
            return self._no_key(name, f"no key: {name} has no TXT record")
        except dns.exception.Timeout:
            return self._no_key(name, f"the key could not be fetched: the DNS query for "
                                f"{name} timed out")
        except Exception as exc:  # noqa: BLE001 - any resolver, failing its own way
            return self._no_key(name, f"the key could not be fetched: {type(exc).__name__}: "
                                f"{exc}")
        errors = []
        for text in texts:
            try:
                key = _key_record(text)
            except KeyRecordError as exc:
                errors.append(str(exc))
                continue
            self.keys[name] = key
            self.trace.add(f"an {key.key_type.upper()} key of {key.bits} bits", kind="answer",
                           detail=f'{name}. TXT "{text}"' if self.want else None)
            return key
        return self._no_key(name, "the key record is not usable: "
                            + ("; ".join(errors) or "no TXT record"))

    def _no_key(self, name: str, reason: str) -> KeyRecord:
        self.keys[name] = reason
        self.trace.add(reason, kind="error", rfc=RFC_GET_KEY)
        raise _Stop("fail", reason, RFC_GET_KEY)

    def _signature(self, tags: dict[str, str], required: tuple[str, ...], what: str
                   ) -> tuple[str, str, str, bytes]:
        """The algorithm, d=, s= and b= of an AMS or AS, checked; _Stop("fail") if bad."""
        rfc = RFC_AMS if what.startswith("ARC-Message") else RFC_AS
        missing = [t for t in required if t not in tags]
        if missing:
            raise _Stop("fail", f"the {what} lacks the tag"
                        f"{'s' if len(missing) > 1 else ''} "
                        + ", ".join(f"{m}=" for m in missing), rfc)
        algorithm, domain, selector = tags["a"], tags["d"], tags["s"]
        if algorithm not in SIGNATURE_ALGORITHMS:
            raise _Stop("fail", f"the {what} uses a={algorithm}, not a known algorithm "
                        f"({', '.join(SIGNATURE_ALGORITHMS)})", rfc)
        if not _valid_domain(domain) or not _valid_domain(selector):
            raise _Stop("fail", f"the {what} has d={domain!r} s={selector!r}: not a domain "
                        "and a selector", rfc)
        try:
            signature = base64.b64decode("".join(tags["b"].split()), validate=True)
        except (binascii.Error, ValueError):
            raise _Stop("fail", f"the b= value of the {what} is not base64", rfc) from None
        return algorithm, domain, selector, signature

    def _check(self, key: KeyRecord, algorithm: str, signature: bytes, data: bytes) -> bool:
        if key.key_type != key_type_for(algorithm):
            raise _Stop("fail", f"a={algorithm} needs a {key_type_for(algorithm)} key, but the "
                        f"key record holds k={key.key_type}", RFC_GET_KEY)
        return _verify_signature(key.public_key, signature, _digest(data))

    # -- the two kinds of signature --------------------------------------------------------

    def message_signature(self, arc_set: ARCSet) -> bool:
        """Verify the ARC-Message-Signature of ``arc_set``, DKIM's way (RFC 6376 6.1)."""
        t = self.trace
        tags = arc_set.ams_tags
        algorithm, domain, selector, signature = self._signature(
            tags, _AMS_TAGS, f"ARC-Message-Signature i={arc_set.instance}")
        try:
            canon = _parse_canonicalization(tags.get("c"))
        except _Stop as stop:
            raise _Stop("fail", stop.reason, RFC_AMS) from None
        names = [n.strip(" \t") for n in tags["h"].split(":")]
        if any(not n for n in names):
            raise _Stop("fail", f"h={tags['h']!r} holds an empty header field name", RFC_AMS)
        if "arc-seal" in (n.lower() for n in names):
            raise _Stop("fail", "h= names ARC-Seal: an ARC-Message-Signature must not sign "
                        "ARC-Seal fields", RFC_AMS)
        t.add(f"ARC-Message-Signature i={arc_set.instance}: d={domain} s={selector} "
              f"a={algorithm} c={canon[0]}/{canon[1]}, h={':'.join(names)}", kind="decision",
              rfc=RFC_AMS)
        with t.nested():
            key = self._key(domain, selector)
            computed = self.bodies.get(canon[1])
            if computed is None:
                body = canonical_body(self.parsed.body, canon[1])
                computed = self.bodies[canon[1]] = base64.b64encode(_digest(body)).decode()
            claimed = "".join(tags["bh"].split())
            same = computed == claimed
            t.add(f"body hash ({canon[1]}): computed {computed}, claimed bh={claimed}: "
                  + ("they match" if same else "they differ: the body changed after this "
                     "set was added"), kind="ok" if same else "error", rfc=RFC_BODY_HASH)
            if not same:
                return False
            data, _found, absent = message_signature_input(self.parsed, names, canon[0],
                                                           arc_set.ams.raw[:-2])
            ok = self._check(key, algorithm, signature, data)
            t.add("the signed header fields and this ARC-Message-Signature (b= emptied), "
                  "hashed and checked with the key: "
                  + ("the signature is valid" if ok else "the signature does not match (a "
                     "signed header field changed)"), kind="ok" if ok else "error",
                  rfc=RFC_AMS, detail=_shown(data, self.want))
            if absent:
                t.add(f"h= names {', '.join(absent)} once more than the message has (their "
                      "absence is signed)")
        return ok

    def seal(self, sets: list[ARCSet], arc_set: ARCSet) -> bool:
        """Verify the ARC-Seal of ``arc_set`` over the sets 1..i (RFC 8617 5.1.1)."""
        t = self.trace
        tags = arc_set.seal_tags
        what = f"ARC-Seal i={arc_set.instance}"
        if "h" in tags:
            raise _Stop("fail", f"the {what} has an h= tag; an ARC-Seal has none: it always "
                        "covers the ARC sets", RFC_AS)
        algorithm, domain, selector, signature = self._signature(tags, _AS_TAGS, what)
        when = f", sealed at {_utc(int(tags['t']))}" if tags.get("t", "").isdigit() else ""
        t.add(f"{what}: d={domain} s={selector} a={algorithm} cv={tags['cv']}{when}",
              kind="decision", rfc=RFC_AS)
        with t.nested():
            key = self._key(domain, selector)
            previous = [s for s in sets if s.instance < arc_set.instance]
            data = seal_input(previous, arc_set.aar.raw, arc_set.ams.raw, arc_set.seal.raw[:-2])
            ok = self._check(key, algorithm, signature, data)
            covered = f"sets 1..{arc_set.instance}" if previous else "set 1"
            t.add(f"the ARC fields of {covered}, oldest first, each AAR, AMS, AS (relaxed), "
                  "this seal's b= emptied, hashed and checked with the key: "
                  + ("the seal is valid" if ok else "the seal does not match (an ARC field "
                     "was changed, or the key is not the sealer's)"),
                  kind="ok" if ok else "error", rfc=RFC_SEAL_SCOPE,
                  detail=_shown(data, self.want))
        return ok

    # -- section 5.2 ------------------------------------------------------------------------

    def run(self) -> ARCValidation:
        t = self.trace
        collected = collect_arc_fields(self.parsed)
        top = collected.highest
        if not collected.count:
            t.add("step 1: collect the ARC sets: the message has none", rfc=_step(1))
            return ARCValidation(verdict="none", trace=t.freeze(),
                                 summary="The message has no ARC sets: no handler sealed it.")
        instances = sorted(collected.by_instance)
        t.add(f"step 1: collect the ARC sets: {collected.count} ARC header field"
              f"{'s' if collected.count != 1 else ''}, instances "
              + (", ".join(f"i={n}" for n in instances) or "unreadable"), rfc=_step(1))
        rows = self._rows(collected)
        if top > MAX_INSTANCE:
            return self._fail(rows, f"the chain has instance i={top}: more than the "
                              f"{MAX_INSTANCE} sets a chain may hold", 1, top)
        cv = collected.highest_cv()
        if cv == "fail":
            t.add(f"step 2: the newest ARC-Seal (i={top}) says cv=fail: a handler already "
                  "found the chain broken", kind="error", rfc=_step(2))
            return self._fail(rows, f"the ARC-Seal of i={top} says cv=fail: the chain was "
                              "already broken when that handler got the message", 2, top)
        t.add(f"step 2: the newest ARC-Seal (i={top}) says cv={cv or '?'}, not fail",
              rfc=_step(2))
        problems = collected.structure_problems()
        if problems:
            t.add("step 3: the structure is not valid: " + "; ".join(problems), kind="error",
                  rfc=_step(3))
            return self._fail(rows, "the chain's structure is not valid: " + problems[0], 3)
        sets = collected.sets()
        t.add(f"step 3: the structure is valid: sets 1..{top}, each with one AAR, AMS and "
              "AS; cv=none at i=1" + (", cv=pass above" if top > 1 else ""), kind="ok",
              rfc=_step(3))
        status: dict[int, dict[str, str]] = {s.instance: {} for s in sets}
        try:
            t.add(f"step 4: the newest ARC-Message-Signature (i={top}) must verify: it signs "
                  "the message as the last handler sent it", rfc=_step(4))
            with t.nested():
                ok = self.message_signature(sets[-1])
        except _Stop as stop:
            t.add(f"fail: {stop.reason}", kind="error", rfc=stop.rfc)
            status[top]["ams"] = "fail"
            return self._fail(self._rows(collected, status), stop.reason, 4, top)
        status[top]["ams"] = "pass" if ok else "fail"
        if not ok:
            return self._fail(self._rows(collected, status), f"the newest "
                              f"ARC-Message-Signature (i={top}) does not verify: the message "
                              "was changed after the last handler sealed it", 4, top)
        oldest_pass = self._oldest_pass(sets, status)
        t.add("step 7: verify every ARC-Seal, newest first", rfc=_step(7))
        for arc_set in reversed(sets):
            try:
                with t.nested():
                    ok = self.seal(sets, arc_set)
            except _Stop as stop:
                t.add(f"fail: {stop.reason}", kind="error", rfc=stop.rfc)
                ok = False
                reason = stop.reason
            else:
                reason = (f"the ARC-Seal of i={arc_set.instance} (d="
                          f"{arc_set.seal_tags.get('d')}) does not verify")
            status[arc_set.instance]["as"] = "pass" if ok else "fail"
            if not ok:
                return self._fail(self._rows(collected, status), reason, 7,
                                  arc_set.instance, oldest_pass=None)
        sealers = ", ".join(s.seal_tags.get("d", "?") for s in sets)
        t.add(f"step 8: every seal verified: the chain validation status is pass "
              f"(oldest-pass {oldest_pass})", kind="ok", rfc=_step(8))
        return ARCValidation(
            verdict="pass", trace=t.freeze(), instances=top, oldest_pass=oldest_pass,
            sets=self._rows(collected, status),
            summary=f"The ARC chain of {top} set{'s' if top != 1 else ''} verified (sealed "
                    f"by {sealers}, oldest first); the earlier results it carries can be "
                    "believed as much as those sealers are trusted.")

    def _oldest_pass(self, sets: list[ARCSet], status: dict[int, dict[str, str]]) -> int:
        """Steps 5 and 6: verify the older ARC-Message-Signatures, newest first; the
        oldest-pass is 0 when all verify, else the instance above the first that fails."""
        t = self.trace
        if len(sets) == 1:
            t.add("steps 5 and 6: oldest-pass is 0 (there is no older ARC-Message-Signature)",
                  rfc=_step(5))
            return 0
        t.add("steps 5 and 6: oldest-pass starts at 0; verify the older "
              "ARC-Message-Signatures, newest first, until one fails", rfc=_step(5))
        for arc_set in reversed(sets[:-1]):
            with t.nested():
                try:
                    ok = self.message_signature(arc_set)
                except _Stop as stop:
                    t.add(f"does not verify: {stop.reason}", kind="warning", rfc=stop.rfc)
                    ok = False
            status[arc_set.instance]["ams"] = "pass" if ok else "fail"
            if not ok:
                oldest = arc_set.instance + 1
                t.add(f"the ARC-Message-Signature of i={arc_set.instance} no longer verifies: "
                      f"the message changed after that set (oldest-pass {oldest}); this is "
                      "expected after a mailing list, and does not fail the chain",
                      kind="warning", rfc=_step(6))
                return oldest
        t.add("every older ARC-Message-Signature still verifies: oldest-pass 0", kind="ok",
              rfc=_step(6))
        return 0

    def _rows(self, collected: CollectedFields,
              status: dict[int, dict[str, str]] | None = None) -> tuple[ARCSetResult, ...]:
        rows = []
        for number in sorted(collected.by_instance):
            kinds = collected.by_instance[number]
            seal_tags = collected.tags[number].get(AS, {})
            ams_tags = collected.tags[number].get(AMS, {})
            aar = kinds.get(AAR, [])
            results = results_text_of(aar[0]) if aar else ""
            t_tag = seal_tags.get("t", "")
            done = (status or {}).get(number, {})
            rows.append(ARCSetResult(
                instance=number, sealer=seal_tags.get("d"), selector=seal_tags.get("s"),
                cv=seal_tags.get("cv"), signer=ams_tags.get("d"),
                seal=done.get("as", "not checked"),
                message_signature=done.get("ams", "not checked"), results=results,
                sealed_at=int(t_tag) if t_tag.isdigit() else None))
        return tuple(rows)

    def _fail(self, rows: tuple[ARCSetResult, ...], reason: str, step: int,
              instance: int | None = None, oldest_pass: int | None = None) -> ARCValidation:
        self.trace.add(f"the chain validation status is fail: {reason}", kind="error",
                       rfc=_step(step))
        return ARCValidation(verdict="fail", trace=self.trace.freeze(), sets=rows,
                             instances=max((r.instance for r in rows), default=0),
                             oldest_pass=oldest_pass, failed_instance=instance,
                             summary=f"The ARC chain failed: {reason}.")


def validate_chain(message: bytes | str, resolver: ResolverLike, *,
                   trace: bool = True) -> ARCValidation:
    """Validate the ARC chain of ``message`` (RFC 8617 section 5.2) and say why.

    ``resolver`` follows dnspython's ``Resolver.resolve(qname, rdtype)`` contract (the
    lab's resolver or a :class:`~labsupport.dns.zone.ZoneSet`). The verdict is the chain
    validation status: ``none`` (no ARC sets), ``pass`` or ``fail``. With
    ``trace=False`` the trace leaves out the bytes hashed.
    """
    if isinstance(message, str):
        message = message.encode("utf-8")
    parsed = parse_message(message)
    if parsed.problems and not parsed.headers:
        t = TraceBuilder()
        t.add(parsed.problems[0], kind="error", rfc="RFC 5322 section 2.2")
        return ARCValidation(verdict="fail", trace=t.freeze(),
                             summary="The ARC chain failed: the message's header cannot be "
                                     f"read ({parsed.problems[0]}).")
    return _Validator(parsed, resolver, trace).run()


__all__ = ["validate_chain"]
