"""ARC sets: the three header fields each re-sending handler adds, found and read
(RFC 8617 section 4).

A handler that re-sends a message (a forwarder, a mailing list) and takes part in ARC
adds one *ARC set* of three header fields, all with the same instance number ``i=``
(1 for the first handler, then 2, ... up to 50, RFC 8617 section 4.2.1):

``ARC-Authentication-Results`` (AAR, section 4.1.1)
    ``i=N;`` then a copy of the Authentication-Results the handler wrote for the
    message as it arrived: what SPF, DKIM and DMARC said *before* it changed anything.
``ARC-Message-Signature`` (AMS, section 4.1.2)
    A DKIM signature in all but name (no ``v=``, and ``i=`` is the instance, not an
    identity) over the message as the handler sends it on.
``ARC-Seal`` (AS, section 4.1.3)
    A signature over the ARC sets alone, its own included, with ``cv=`` (chain
    validation status) saying what the handler found: ``none`` (it is the first),
    ``pass`` or ``fail``.

This module holds what the sealer (:mod:`labsupport.auth.arc_sign`) and the validator
(:mod:`labsupport.auth.arc_verify`) share: the RFC sections the traces cite,
:func:`collect_arc_fields` (every ARC field by instance, and what is wrong with their
structure, RFC 8617 section 5.2 step 3), the bytes an ARC-Seal covers
(:func:`seal_input`, section 5.1.1) and the bytes an ARC-Message-Signature covers
(:func:`message_signature_input`, the DKIM rules of RFC 6376 section 3.7). Both reuse
the lab's DKIM canonicalization (:mod:`labsupport.auth.dkim_canon`) and hashing
(:mod:`labsupport.auth.dkim_hashing`).

Introduced with the forwarder and the list (``labsupport.mail.aliases``).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from ..core.errors import LabError
from .dkim_canon import HeaderField, ParsedMessage, _relaxed_header
from .dkim_hashing import _header_index, _select, _signature_part
from .dkim_taglist import TagListError, parse_tag_list

RFC_ARC = "RFC 8617"
RFC_AAR = "RFC 8617 section 4.1.1"
RFC_AMS = "RFC 8617 section 4.1.2"
RFC_AS = "RFC 8617 section 4.1.3"
RFC_SET = "RFC 8617 section 4.2"
RFC_INSTANCE = "RFC 8617 section 4.2.1"
RFC_SEALER = "RFC 8617 section 5.1"
RFC_SEAL_SCOPE = "RFC 8617 section 5.1.1"
RFC_SEAL_FAIL = "RFC 8617 section 5.1.2"
RFC_VALIDATOR = "RFC 8617 section 5.2"

#: The highest instance number an ARC set may have (RFC 8617 section 4.2.1).
MAX_INSTANCE = 50

#: The chain validation statuses an ARC-Seal's ``cv=`` may say (RFC 8617 section 4.1.3).
CHAIN_STATUSES = ("none", "pass", "fail")

AAR = b"arc-authentication-results"
AMS = b"arc-message-signature"
AS = b"arc-seal"
#: The three ARC header fields, in the order a set is hashed (section 5.1.1).
ARC_FIELDS = (AAR, AMS, AS)
FIELD_NAMES = {AAR: "ARC-Authentication-Results", AMS: "ARC-Message-Signature",
               AS: "ARC-Seal"}
SHORT_NAMES = {AAR: "AAR", AMS: "AMS", AS: "AS"}

_AAR_INSTANCE = re.compile(rb"[ \t\r\n]*i[ \t]*=[ \t]*([0-9]{1,5})[ \t\r\n]*;")
_DIGITS = re.compile(r"[0-9]{1,5}\Z")


class ARCError(LabError, ValueError):
    """An ARC request that cannot be honoured, with the reason in words."""


@dataclass(frozen=True)
class ARCSet:
    """One complete ARC set: its instance and its three header fields, with the tags of
    the two signatures read."""

    instance: int
    aar: HeaderField
    ams: HeaderField
    seal: HeaderField
    ams_tags: dict[str, str] = field(compare=False)
    seal_tags: dict[str, str] = field(compare=False)

    @property
    def cv(self) -> str:
        """The chain validation status this set's ARC-Seal claims (``cv=``)."""
        return self.seal_tags.get("cv", "")

    @property
    def results_text(self) -> str:
        """The ARC-Authentication-Results value after ``i=N;``, unfolded."""
        return results_text_of(self.aar)


def results_text_of(aar: HeaderField) -> str:
    """An ARC-Authentication-Results value after ``i=N;``, unfolded: an
    Authentication-Results value (authserv-id, then the results, RFC 8617 4.1.1)."""
    value = aar.value
    found = _AAR_INSTANCE.match(value)
    rest = value[found.end():] if found else value
    return " ".join(rest.decode("utf-8", "replace").split())


@dataclass
class CollectedFields:
    """Every ARC header field of a message, by instance (RFC 8617 section 5.2 step 1).

    ``by_instance`` maps each instance number to its fields of each kind (a well-formed
    chain has exactly one of each); ``unreadable`` says, in words, which fields have no
    readable instance number or tags.
    """

    by_instance: dict[int, dict[bytes, list[HeaderField]]]
    tags: dict[int, dict[bytes, dict[str, str]]]
    unreadable: list[str]
    count: int

    @property
    def highest(self) -> int:
        """N, the highest instance number (0 without any ARC field)."""
        return max(self.by_instance, default=0)

    def highest_cv(self) -> str | None:
        """``cv=`` of the ARC-Seal of the highest instance, if there is exactly one."""
        seals = self.by_instance.get(self.highest, {}).get(AS, [])
        if len(seals) != 1:
            return None
        return self.tags[self.highest][AS].get("cv")

    def structure_problems(self) -> list[str]:
        """What makes the chain's structure invalid (RFC 8617 section 5.2 step 3):
        an instance without exactly one field of each kind, gaps or numbers out of
        range, and ``cv=`` values other than none for i=1 and pass above it."""
        problems = list(self.unreadable)
        top = self.highest
        for number in sorted(self.by_instance):
            if not 1 <= number <= MAX_INSTANCE:
                problems.append(f"instance i={number} is outside 1..{MAX_INSTANCE}")
        missing = [n for n in range(1, min(top, MAX_INSTANCE) + 1) if n not in self.by_instance]
        if missing:
            problems.append("the instances do not run 1.." + str(top) + " without gaps: "
                            + ", ".join(f"i={n}" for n in missing) + " missing")
        for number in sorted(self.by_instance):
            kinds = self.by_instance[number]
            for kind in ARC_FIELDS:
                found = len(kinds.get(kind, []))
                if found != 1:
                    problems.append(f"instance i={number} has {found} {FIELD_NAMES[kind]} "
                                    "fields; a set has exactly one")
            if len(kinds.get(AS, [])) == 1:
                cv = self.tags[number][AS].get("cv")
                wanted = "none" if number == 1 else "pass"
                if cv != wanted:
                    problems.append(f"the ARC-Seal of i={number} says cv={cv or '(missing)'}, "
                                    f"but i={number} must say cv={wanted}")
        return problems

    def sets(self) -> list[ARCSet]:
        """The complete sets, oldest first (call only when there are no structure
        problems)."""
        out = []
        for number in sorted(self.by_instance):
            kinds = self.by_instance[number]
            out.append(ARCSet(number, kinds[AAR][0], kinds[AMS][0], kinds[AS][0],
                              self.tags[number][AMS], self.tags[number][AS]))
        return out


def _read_instance(header: HeaderField) -> tuple[int | None, dict[str, str], str | None]:
    """The instance number of one ARC field, its tags (AMS and AS) and a problem."""
    name = FIELD_NAMES[header.key]
    if header.key == AAR:
        found = _AAR_INSTANCE.match(header.value)
        if found is None:
            return None, {}, (f"an {name} field does not start with i=<instance>; "
                              f"({RFC_AAR})")
        return int(found.group(1)), {}, None
    text = header.value.decode("utf-8", "replace")
    try:
        tags = parse_tag_list(text)
    except TagListError as exc:
        return None, {}, f"an {name} field is not a valid tag list: {exc}"
    instance = tags.get("i")
    if instance is None or not _DIGITS.match(instance):
        return None, tags, f"an {name} field has no valid instance tag i= ({RFC_INSTANCE})"
    return int(instance), tags, None


def collect_arc_fields(parsed: ParsedMessage) -> CollectedFields:
    """Every ARC-Authentication-Results, ARC-Message-Signature and ARC-Seal field of
    ``parsed``, grouped by instance (RFC 8617 section 5.2 step 1)."""
    by_instance: dict[int, dict[bytes, list[HeaderField]]] = {}
    tags: dict[int, dict[bytes, dict[str, str]]] = {}
    unreadable: list[str] = []
    count = 0
    for header in parsed.headers:
        if header.key not in FIELD_NAMES:
            continue
        count += 1
        instance, found_tags, problem = _read_instance(header)
        if instance is None:
            unreadable.append(problem or f"an unreadable {FIELD_NAMES[header.key]} field")
            continue
        by_instance.setdefault(instance, {}).setdefault(header.key, []).append(header)
        tags.setdefault(instance, {})[header.key] = found_tags
    return CollectedFields(by_instance, tags, unreadable, count)


# -- what the signatures cover -------------------------------------------------------------


def seal_input(previous: Sequence[ARCSet], aar: bytes, ams: bytes, seal: bytes) -> bytes:
    """The bytes an ARC-Seal signs (RFC 8617 section 5.1.1): every earlier ARC set in
    increasing instance order, each as AAR, AMS, AS, then this set's AAR and AMS, all
    with ``relaxed`` header canonicalization, then this ARC-Seal itself with its ``b=``
    value emptied and no final CR LF. ``previous`` is empty for a seal with cv=fail,
    which covers only its own set (section 5.1.2). ``aar`` and ``ams`` are whole fields
    (with CR LF), ``seal`` the ARC-Seal field without its final CR LF."""
    data = b"".join(_relaxed_header(s.aar.raw) + _relaxed_header(s.ams.raw)
                    + _relaxed_header(s.seal.raw) for s in previous)
    return data + _relaxed_header(aar) + _relaxed_header(ams) + _signature_part(seal, "relaxed")


def message_signature_input(parsed: ParsedMessage, names: Sequence[str], canonicalization: str,
                            ams: bytes) -> tuple[bytes, list[str], list[str]]:
    """The header bytes an ARC-Message-Signature signs: the fields named in ``h=``,
    each from the bottom up, canonicalized, then the AMS itself with ``b=`` emptied and
    no final CR LF (as for DKIM, RFC 6376 sections 3.7 and 5.4.2). ``ams`` is the AMS
    field without its final CR LF. Returns the bytes, the names found and the names that
    found no field."""
    keys = [n.lower() for n in names]
    chosen, found, absent = _select(parsed, _header_index(parsed), list(names), keys,
                                    canonicalization)
    return b"".join(chosen) + _signature_part(ams, canonicalization), found, absent


__all__ = ["AAR", "AMS", "ARC_FIELDS", "AS", "CHAIN_STATUSES", "FIELD_NAMES", "MAX_INSTANCE",
           "ARCError", "ARCSet", "CollectedFields", "collect_arc_fields",
           "message_signature_input", "results_text_of", "seal_input"]
