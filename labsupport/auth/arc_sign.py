"""Sealing with ARC: add an ARC set to a message, showing every step (RFC 8617 5.1).

A handler that re-sends a message (a forwarder, a mailing list) seals it so that the
next receiver can see what the message's authentication looked like *before* the
handler changed it or sent it from another host:

1. if the newest ARC-Seal already says ``cv=fail``, stop: nothing more is added
   (RFC 8617 section 5.1);
2. ``ARC-Authentication-Results: i=N; <the handler's own Authentication-Results>``
   (section 4.1.1);
3. ``ARC-Message-Signature: i=N; ...``: a DKIM signature of the message as it goes out
   (section 4.1.2; the lab's DKIM canonicalization and hashing, relaxed/relaxed);
4. ``ARC-Seal: i=N; cv=...; ...``: a signature over every ARC set, oldest first, this
   one included (section 5.1.1); with ``cv=fail`` over this set alone (section 5.1.2).

``cv`` is the chain validation status of the message as the handler received it
(RFC 8617 section 5.2): give the :class:`~labsupport.auth.arc_results.ARCValidation`
the handler's checks made (the MX role keeps it on its evaluation), or a resolver to
validate the chain here. :func:`seal_traced` returns an
:class:`~labsupport.auth.arc_results.ARCSealing` with the trace; :func:`seal` the
sealed message. The keys are DKIM keys, published the same way (RFC 6376 section
3.6.2); :func:`arc_key` finds the lab's own.

Introduced with the forwarder and the list (``labsupport.mail.aliases``).
"""

from __future__ import annotations

import base64
import functools
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from ..core.results import TraceBuilder
from ..dns.mx import ResolverLike
from .arc_results import ARCSealing, ARCValidation
from .arc_sets import (
    CHAIN_STATUSES,
    FIELD_NAMES,
    MAX_INSTANCE,
    RFC_AAR,
    RFC_AMS,
    RFC_AS,
    RFC_INSTANCE,
    RFC_SEAL_FAIL,
    RFC_SEAL_SCOPE,
    RFC_SEALER,
    ARCError,
    ARCSet,
    collect_arc_fields,
    message_signature_input,
    seal_input,
)
from .arc_verify import validate_chain
from .authres_format import header_field
from .authres_model import AuthResultsError
from .authres_parse import parse_authres
from .dkim_canon import CRLF, canonical_body, parse_message
from .dkim_hashing import _PKCS1, _PREHASHED_SHA256, _digest, _shown
from .dkim_keyrecord import MIN_RSA_BITS
from .dkim_keys import (
    LAB_KEY_DIR,
    DKIMKeyError,
    LabKey,
    lab_key_path,
    lab_selector,
    load_key,
    load_private_key,
)
from .dkim_sign import _fold, _header_names, _time_arg
from .dkim_sigtags import RFC_BODY_HASH, RFC_KEY_SIZE, Now, _valid_domain

#: The selector of the lab's own ARC keys: ``data/keys/<domain>/arc2026.rsa.pem``,
#: published at ``arc2026._domainkey.<domain>``. A domain without one seals with its
#: DKIM key (``lab2026-rsa``).
ARC_SELECTOR = "arc2026"

#: The canonicalization of the lab's ARC-Message-Signatures (the ARC-Seal is always
#: relaxed, RFC 8617 section 5.1.1).
ARC_CANONICALIZATION = ("relaxed", "relaxed")


def arc_key(domain: str, directory: Path | None = None) -> LabKey:
    """The lab key ``domain`` seals with: its ARC key ``<domain>/arc2026.rsa.pem``
    (selector ``arc2026``) when it has one, else its DKIM key (``lab2026-rsa``).
    ``directory`` is the key directory (``data/keys``). Lab-only keys, never for real
    mail. Raises :class:`~labsupport.auth.arc_sets.ARCError` when there is neither."""
    domain = domain.lower().rstrip(".")
    base = directory or LAB_KEY_DIR
    path = base / domain / f"{ARC_SELECTOR}.rsa.pem"
    if path.exists():
        return _cached_key(path, path.stat().st_mtime_ns, domain, ARC_SELECTOR)
    dkim_path = lab_key_path(domain, "rsa", base)
    if dkim_path.exists():
        return _cached_key(dkim_path, dkim_path.stat().st_mtime_ns, domain,
                           lab_selector("rsa"))
    raise ARCError(f"the lab has no key to seal for {domain}: neither {path} nor a DKIM key "
                   f"({dkim_path})")


@functools.lru_cache(maxsize=32)
def _cached_key(path: Path, _mtime: int, domain: str, selector: str) -> LabKey:
    """A key file read once (reading an RSA key checks it, which takes a while); a file
    that changes is read again."""
    key = load_key(path, domain=domain, selector=selector)
    key.private_key  # noqa: B018 - parse it now, once
    return key


def _refuse(fields: dict[str, Any], t: TraceBuilder, reason: str, rfc: str | None = None,
            verdict: str = "refused") -> ARCSealing:
    t.add(f"{verdict}: {reason}", kind="error" if verdict == "refused" else "warning", rfc=rfc)
    return ARCSealing(verdict=verdict, summary=f"Not sealed: {reason}.", trace=t.freeze(),
                      **fields)


def _sign_digest(key: rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey, digest: bytes) -> str:
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return base64.b64encode(key.sign(digest)).decode()
    return base64.b64encode(key.sign(digest, _PKCS1, _PREHASHED_SHA256)).decode()


def _with_b(head: bytes, b64: str) -> bytes:
    return head + "\r\n\t ".join(b64[i:i + 72] for i in range(0, len(b64), 72)).encode() + CRLF


def _results_value(text: str) -> str:
    """The Authentication-Results value, without a field name if one was given."""
    value = " ".join(text.split())
    if value.lower().startswith("authentication-results:"):
        value = value.partition(":")[2].strip()
    return value


def seal_traced(
    message: bytes | str,
    *,
    domain: str,
    selector: str,
    private_key: Any,
    authentication_results: str,
    chain: ARCValidation | str | None = None,
    resolver: ResolverLike | None = None,
    headers: Iterable[str] | None = None,
    oversign: Iterable[str] = ("from",),
    timestamp: Now | bool = True,
    trace: bool = True,
) -> ARCSealing:
    """Seal ``message`` with a new ARC set and show every step (RFC 8617 section 5.1).

    * ``domain``, ``selector``, ``private_key``: who seals (``d=``, ``s=``) and with
      which key (a :class:`~labsupport.auth.dkim_keys.LabKey`, a ``cryptography`` key or
      PEM text); receivers fetch the public key at ``<selector>._domainkey.<domain>``.
    * ``authentication_results``: the Authentication-Results value of the sealer's own
      checks on the message as received (``"mx.lab.test; spf=pass ...; dkim=pass ..."``),
      copied into the ARC-Authentication-Results.
    * ``chain``: the chain validation status of the message as received: an
      :class:`~labsupport.auth.arc_results.ARCValidation`, or ``"none"``, ``"pass"`` or
      ``"fail"``; None: validate it here with ``resolver`` (a message without ARC sets
      needs neither: ``cv=none``).
    * ``headers``: the fields the ARC-Message-Signature signs (by default those a DKIM
      signer signs, and every DKIM-Signature); ``oversign`` as for DKIM.
    * ``timestamp``: ``t=`` (True: now by the lab clock; seconds, a datetime or a
      LabClock; None: no ``t=``).

    The verdict is ``sealed``, ``not sealed`` (the chain had failed already) or
    ``refused`` with the reason; never an exception.
    """
    t = TraceBuilder()
    fields: dict[str, Any] = {"domain": domain, "selector": selector}
    try:
        return _seal(message, t, fields, domain=domain, selector=selector,
                     private_key=private_key, results=authentication_results, chain=chain,
                     resolver=resolver, headers=headers, oversign=oversign,
                     timestamp=timestamp, want=trace)
    except (ARCError, DKIMKeyError) as exc:
        return _refuse(fields, t, str(exc))


def _seal(message: bytes | str, t: TraceBuilder, fields: dict[str, Any], *, domain: str,
          selector: str, private_key: Any, results: str, chain: ARCValidation | str | None,
          resolver: ResolverLike | None, headers: Iterable[str] | None,
          oversign: Iterable[str], timestamp: Now | bool, want: bool) -> ARCSealing:
    if isinstance(message, str):
        message = message.encode("utf-8")
    domain = domain.strip().rstrip(".")
    fields["domain"] = domain
    if not _valid_domain(domain) or not _valid_domain(selector):
        return _refuse(fields, t, f"d={domain!r} s={selector!r} are not a domain and a "
                       "selector", RFC_AMS)
    key = load_private_key(private_key)
    algorithm = "ed25519-sha256" if isinstance(key, ed25519.Ed25519PrivateKey) else "rsa-sha256"
    if isinstance(key, rsa.RSAPrivateKey) and key.key_size < MIN_RSA_BITS:
        return _refuse(fields, t, f"the RSA key has only {key.key_size} bits (at least "
                       f"{MIN_RSA_BITS})", RFC_KEY_SIZE)
    value = _results_value(results)
    try:
        parse_authres(value)
    except AuthResultsError as exc:
        return _refuse(fields, t, f"the Authentication-Results to record cannot be read: {exc}",
                       RFC_AAR)
    parsed = parse_message(message)
    if parsed.problems:
        return _refuse(fields, t, "the message's header cannot be read: " + parsed.problems[0],
                       "RFC 5322 section 2.2")
    collected = collect_arc_fields(parsed)
    instance = collected.highest + 1
    fields["instance"] = instance
    t.add(f"seal as d={domain} s={selector} ({algorithm}): this handler's set is i={instance}"
          + (f", after the {collected.highest} already on the message" if collected.highest
             else ", the first"), kind="decision", rfc=RFC_SEALER)

    # Step 1 of section 5.1, and the chain validation status (section 5.2).
    if collected.highest_cv() == "fail":
        return _refuse(fields, t, f"the newest ARC-Seal (i={collected.highest}) says cv=fail: "
                       "the chain is broken already, so a sealer adds nothing", RFC_SEALER,
                       verdict="not sealed")
    if isinstance(chain, ARCValidation):
        cv, how = chain.verdict, "the chain validation of the message as received"
        fields["chain"] = chain
    elif isinstance(chain, str):
        cv, how = chain.strip().lower(), "as asked"
        if cv not in CHAIN_STATUSES:
            return _refuse(fields, t, f"cv={chain!r} is not a chain validation status "
                           f"({', '.join(CHAIN_STATUSES)})", RFC_AS)
    elif resolver is not None:
        found = validate_chain(message, resolver, trace=want)
        cv, how = found.verdict, "validated here: " + found.summary
        fields["chain"] = found
    elif not collected.count:
        cv, how = "none", "the message has no ARC sets"
    else:
        return _refuse(fields, t, "the message carries ARC sets: give the chain validation "
                       "(chain=) or a resolver to decide cv=", RFC_SEALER)
    if cv == "none" and collected.count:
        return _refuse(fields, t, "cv=none is only for the first set, but the message carries "
                       "ARC sets already", RFC_AS)
    if cv != "none" and not collected.count:
        return _refuse(fields, t, f"cv={cv} needs a chain, but the message has no ARC sets: "
                       "the first set says cv=none", RFC_AS)
    if instance > MAX_INSTANCE:
        return _refuse(fields, t, f"the message has {collected.highest} ARC sets, the most a "
                       "chain may hold", RFC_INSTANCE)
    previous: list[ARCSet] = []
    if cv == "pass":
        problems = collected.structure_problems()
        if problems:
            return _refuse(fields, t, "cv=pass, but the chain's structure is not valid: "
                           + problems[0], RFC_AS)
        previous = collected.sets()
    fields["cv"] = cv
    t.add(f"chain validation status cv={cv} ({how})", kind="decision", rfc=RFC_AS)

    # The ARC-Authentication-Results (section 4.1.1).
    aar = b"ARC-Authentication-Results: " + f"i={instance}; ".encode() \
        + header_field(value)[len(b"Authentication-Results: "):]
    t.add(f"ARC-Authentication-Results i={instance}: a copy of this handler's own "
          "Authentication-Results, what SPF, DKIM and DMARC said before the message was "
          "re-sent", rfc=RFC_AAR,
          detail=aar.decode("utf-8", "replace").rstrip().replace("\r\n", "\n") if want else None)

    # The ARC-Message-Signature (section 4.1.2), a DKIM signature of the message.
    names = _header_names(parsed, headers, oversign)
    if headers is None:
        names += ["dkim-signature"] * parsed.count("dkim-signature")
    arc_names = [n for n in names if n.encode() in FIELD_NAMES]
    if arc_names:
        return _refuse(fields, t, f"h= names {', '.join(arc_names)}: the lab's sealer signs no "
                       "ARC field with the ARC-Message-Signature (ARC-Seal is forbidden there)",
                       RFC_AMS)
    if "from" not in names:
        return _refuse(fields, t, "the From field must be signed (add 'from' to headers)",
                       RFC_AMS)
    fields["signed_headers"] = tuple(names)
    header_canon, body_canon = ARC_CANONICALIZATION
    body = canonical_body(parsed.body, body_canon)
    body_hash = base64.b64encode(_digest(body)).decode()
    signed_at = _time_arg(timestamp)
    tags = [("i", str(instance)), ("a", algorithm), ("c", f"{header_canon}/{body_canon}"),
            ("d", domain), ("s", selector)]
    if signed_at is not None:
        tags.append(("t", str(signed_at)))
    tags += [("h", ":".join(names)), ("bh", body_hash)]
    ams_head = ("ARC-Message-Signature: " + _fold(tags, 23) + "\r\n\tb=").encode()
    data, _found, _absent = message_signature_input(parsed, names, header_canon, ams_head)
    ams = _with_b(ams_head, _sign_digest(key, _digest(data)))
    t.add(f"ARC-Message-Signature i={instance}: the body canonicalized ({body_canon}, "
          f"{len(body)} octets) and hashed, bh={body_hash}", rfc=RFC_BODY_HASH)
    t.add(f"then the header fields h={':'.join(names)} ({header_canon}) and this field with "
          "an empty b=, hashed and signed with the private key, as DKIM does", rfc=RFC_AMS,
          detail=_shown(data, want))

    # The ARC-Seal (sections 5.1.1 and 5.1.2).
    seal_tags = [("i", str(instance)), ("cv", cv), ("a", algorithm), ("d", domain),
                 ("s", selector)]
    if signed_at is not None:
        seal_tags.append(("t", str(signed_at)))
    seal_head = ("ARC-Seal: " + _fold(seal_tags, 10) + "\r\n\tb=").encode()
    data = seal_input(previous, aar, ams, seal_head)
    seal_field = _with_b(seal_head, _sign_digest(key, _digest(data)))
    if cv == "fail":
        scope, rfc = f"only this set (i={instance}): the chain it received failed", \
            RFC_SEAL_FAIL
    elif previous:
        scope, rfc = f"every ARC set, 1..{instance}, oldest first", RFC_SEAL_SCOPE
    else:
        scope, rfc = "this first set", RFC_SEAL_SCOPE
    t.add(f"ARC-Seal i={instance} cv={cv}: signs {scope}, each field relaxed (AAR, AMS, "
          "AS), this seal with an empty b= last", rfc=rfc, detail=_shown(data, want))

    arc_set = seal_field + ams + aar
    out = arc_set.replace(CRLF, b"\n") if b"\r\n" not in message and b"\n" in message \
        else arc_set
    t.add("add the three fields on top of the message (ARC-Seal, ARC-Message-Signature, "
          "ARC-Authentication-Results)", kind="ok", rfc=RFC_SEALER,
          detail=arc_set.decode("utf-8", "replace").rstrip().replace("\r\n", "\n")
          if want else None)
    return ARCSealing(
        verdict="sealed", trace=t.freeze(), sealed_message=out + message, arc_set=out,
        aar=aar, message_signature=ams, seal=seal_field,
        summary=f"Sealed by {domain} (s={selector}) as ARC set i={instance} with cv={cv}.",
        **fields)


def seal(message: bytes | str, *, domain: str, selector: str, private_key: Any,
         authentication_results: str, chain: ARCValidation | str | None = None,
         resolver: ResolverLike | None = None, headers: Iterable[str] | None = None,
         oversign: Iterable[str] = ("from",), timestamp: Now | bool = True) -> bytes:
    """``message`` with a new ARC set on top (:func:`seal_traced` without the trace);
    raises :class:`~labsupport.auth.arc_sets.ARCError` with the reason when it is not
    sealed."""
    done = seal_traced(message, domain=domain, selector=selector, private_key=private_key,
                       authentication_results=authentication_results, chain=chain,
                       resolver=resolver, headers=headers, oversign=oversign,
                       timestamp=timestamp, trace=False)
    if done.sealed_message is None:
        raise ARCError(done.summary)
    return done.sealed_message


__all__ = ["ARC_SELECTOR", "ARCError", "arc_key", "seal", "seal_traced"]
