"""DMARC Policy Records: the ``v=DMARC1; p=...`` text a domain publishes (RFC 9989).

A domain owner states its DMARC policy in a TXT record at ``_dmarc.<domain>``, written
as tag=value pairs (section 4.7 names the tags, section 4.8 gives the grammar). This
module reads one: :func:`is_dmarc_record` says whether a TXT string is a DMARC record at
all, and :func:`parse_record` turns it into a :class:`DMARCRecord`, filling in the
defaults for absent tags and saying in words (``problems``) what was ignored or replaced:
unknown tags, the obsolete ``pct``, ``rf`` and ``ri``, values that are not valid, and
what an invalid policy means for the receiver (a record with a valid ``rua`` URI counts
as ``p=none``, one without asks for no DMARC processing at all).

Only a text that does not start with ``v=DMARC1`` is refused outright, with
:class:`DMARCRecordError`. Finding the record in DNS is
:mod:`labsupport.auth.dmarc_discovery`; using it is :mod:`labsupport.auth.dmarc`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..core.errors import LabError

RFC = "RFC 9989"
RFC_FORMAT = f"{RFC} section 4.7"
RFC_GRAMMAR = f"{RFC} section 4.8"
RFC_DISCOVERY = f"{RFC} section 4.10.1"

POLICIES = ("none", "quarantine", "reject")
_OBSOLETE = {"pct": "sampling rate", "rf": "failure report format",
             "ri": "aggregate report interval"}
_KNOWN = {"v", "p", "sp", "np", "psd", "t", "adkim", "aspf", "rua", "ruf", "fo"}
_VERSION = re.compile(r"\Av[ \t]*=[ \t]*DMARC1[ \t]*(;|\Z)")
_URI = re.compile(r"\A[A-Za-z][A-Za-z0-9+.-]*:[^\s,!]+\Z")
_FO = re.compile(r"\A[01ds](:[01ds])*\Z")


class DMARCRecordError(LabError, ValueError):
    """The text is not a DMARC Policy Record at all (no leading ``v=DMARC1``)."""


# -- the record ----------------------------------------------------------------------


@dataclass(frozen=True)
class DMARCRecord:
    """One DMARC Policy Record, read as RFC 9989 sections 4.7 and 4.8 say.

    Values are lower-cased words. ``p`` is the policy to use: ``"none"`` when the tag is
    absent (section 4.7); when ``p``, ``sp`` or ``np`` is not valid it is ``"none"`` if the
    record has a valid ``rua`` URI and ``None`` otherwise: the receiver then applies no
    DMARC processing (section 4.10.1; :attr:`usable` is False). ``sp`` and ``np`` are
    ``None`` when absent. ``problems`` says in words what was ignored or replaced:
    unknown tags, the obsolete ``pct``, ``rf`` and ``ri``, invalid values.
    """

    text: str
    v: str = "DMARC1"
    p: str | None = "none"
    sp: str | None = None
    np: str | None = None
    psd: str = "u"
    t: str = "n"
    adkim: str = "r"
    aspf: str = "r"
    rua: tuple[str, ...] = ()
    ruf: tuple[str, ...] = ()
    fo: str = "0"
    tags: tuple[tuple[str, str], ...] = ()
    problems: tuple[str, ...] = ()

    @property
    def usable(self) -> bool:
        """False when the record asks for no DMARC processing (invalid ``p`` and no rua)."""
        return self.p is not None

    @property
    def testing(self) -> bool:
        return self.t == "y"

    def mode(self, mechanism: str) -> str:
        """``"relaxed"`` or ``"strict"`` for ``"spf"`` (aspf) or ``"dkim"`` (adkim)."""
        value = self.aspf if mechanism == "spf" else self.adkim
        return "strict" if value == "s" else "relaxed"

    def __str__(self) -> str:
        return self.text


def _policy_value(tag: str, value: str, problems: list[str]) -> tuple[str | None, bool]:
    word = value.strip().lower()
    if word in POLICIES:
        return word, True
    problems.append(f"{tag}={value!r} is not none, quarantine or reject ({RFC_FORMAT})")
    return None, False


def _uris(tag: str, value: str, problems: list[str]) -> tuple[str, ...]:
    out: list[str] = []
    for raw in value.split(","):
        uri = raw.strip()
        if not uri:
            continue
        size = re.search(r"![0-9]+[kmgt]?\Z", uri)
        if size:
            problems.append(f"{tag}: the size limit {size.group()!r} is obsolete syntax and "
                            f"ignored ({RFC_GRAMMAR}, obs-dmarc-uri)")
            uri = uri[: size.start()]
        if _URI.match(uri):
            out.append(uri)
        else:
            problems.append(f"{tag}: {uri!r} is not a URI; ignored ({RFC_GRAMMAR})")
    return tuple(out)


def _flag(tag: str, value: str, allowed: str, default: str, problems: list[str]) -> str:
    word = value.strip().lower()
    if len(word) == 1 and word in allowed:
        return word
    problems.append(f"{tag}={value!r} is not one of {', '.join(allowed)}; the default "
                    f"{default!r} is used ({RFC_GRAMMAR})")
    return default


def is_dmarc_record(text: str) -> bool:
    """Does this TXT string start with the ``v=DMARC1`` tag (section 4.7, tag v)?"""
    return bool(_VERSION.match(text.lstrip(" \t")))


def parse_record(text: str | bytes) -> DMARCRecord:
    """Read a DMARC Policy Record (RFC 9989 sections 4.7 and 4.8).

    Raises :class:`DMARCRecordError` only when the text is not a DMARC record: the first
    tag is not ``v=DMARC1`` (case-sensitive), and the whole record MUST be ignored.
    Anything else wrong is kept in ``problems`` and replaced by the default: unknown tags
    are ignored, ``pct``/``rf``/``ri`` are flagged as removed (Appendix C.5.2), and an
    invalid ``p``, ``sp`` or ``np`` turns the record into ``p=none`` if it has a valid
    ``rua`` URI, or into a record that asks for no DMARC processing (section 4.10.1).
    """
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    stripped = text.strip(" \t\r\n")
    if not is_dmarc_record(stripped):
        raise DMARCRecordError(
            f"{text!r} is not a DMARC record: it must start with the tag v=DMARC1 (the "
            f"value is case-sensitive) ({RFC_FORMAT}, tag v)")
    problems: list[str] = []
    tags: list[tuple[str, str]] = []
    seen: dict[str, str] = {}
    for part in stripped.split(";"):
        if not part.strip(" \t"):
            continue
        name, sep, value = part.partition("=")
        name = name.strip(" \t").lower()
        value = value.strip(" \t")
        if not sep or not re.fullmatch(r"[a-z]+", name):
            problems.append(f"{part.strip()!r} is not a tag=value pair; ignored ({RFC_GRAMMAR})")
            continue
        tags.append((name, value))
        if name in seen:
            problems.append(f"tag {name} appears twice; the first value is used")
            continue
        seen[name] = value
        if name in _OBSOLETE:
            problems.append(f"tag {name} ({_OBSOLETE[name]}) was removed by RFC 9989 and is "
                            f"ignored (Appendix C.5.2)")
        elif name not in _KNOWN:
            problems.append(f"unknown tag {name} is ignored ({RFC_FORMAT})")
    rua = _uris("rua", seen["rua"], problems) if "rua" in seen else ()
    ruf = _uris("ruf", seen["ruf"], problems) if "ruf" in seen else ()
    valid = True
    p: str | None = "none"
    if "p" in seen:
        p, ok = _policy_value("p", seen["p"], problems)
        valid = valid and ok
    else:
        problems.append(f"no p tag: the record is treated as p=none ({RFC_FORMAT}, tag p)")
    sp = np = None
    if "sp" in seen:
        sp, ok = _policy_value("sp", seen["sp"], problems)
        valid = valid and ok
    if "np" in seen:
        np, ok = _policy_value("np", seen["np"], problems)
        valid = valid and ok
    if not valid:
        sp = np = None
        if rua:
            p = "none"
            problems.append(f"an invalid policy with a valid rua URI: the receiver acts as "
                            f"if the record said p=none ({RFC_DISCOVERY})")
        else:
            p = None
            problems.append(f"an invalid policy and no valid rua URI: the receiver applies "
                            f"no DMARC processing ({RFC_DISCOVERY})")
    psd = _flag("psd", seen["psd"], "ynu", "u", problems) if "psd" in seen else "u"
    t = _flag("t", seen["t"], "yn", "n", problems) if "t" in seen else "n"
    adkim = _flag("adkim", seen["adkim"], "rs", "r", problems) if "adkim" in seen else "r"
    aspf = _flag("aspf", seen["aspf"], "rs", "r", problems) if "aspf" in seen else "r"
    fo = "0"
    if "fo" in seen:
        fo = seen["fo"].replace(" ", "").lower()
        if not _FO.match(fo) or {"0", "1"} <= set(fo.split(":")):
            problems.append(f"fo={seen['fo']!r} is not valid; the default '0' is used "
                            f"({RFC_GRAMMAR})")
            fo = "0"
    return DMARCRecord(text=stripped, p=p, sp=sp, np=np, psd=psd, t=t, adkim=adkim,
                       aspf=aspf, rua=rua, ruf=ruf, fo=fo, tags=tuple(tags),
                       problems=tuple(problems))

