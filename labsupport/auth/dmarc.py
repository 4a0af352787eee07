"""DMARC: does the From domain a reader sees stand behind this message? (RFC 9989)

DMARC ties the two authentication results a reader never sees (SPF's MAIL FROM domain,
DKIM's ``d=`` domain) to the domain in the From header field, the Author Domain, and
lets that domain's owner say what a receiver should do with mail that does not pass.

- :func:`parse_record` reads a DMARC Policy Record (RFC 9989 sections 4.7 and 4.8).
- :func:`discover` finds the record that applies to a domain and the domain's
  Organizational Domain by the DNS Tree Walk (section 4.10: at most 8 queries, the
  ``psd=`` flag decides where an organization ends), or, with ``method="psl"``, the
  RFC 7489 way: a public-suffix list (the lab's own, ``data/psl``) and at most 2 queries.
- :func:`organizational_domain` answers only the second question.
- :func:`evaluate` does what a receiver does with a message (section 5.3): extract the
  Author Domain, discover the policy, check each SPF and DKIM identifier for alignment
  (relaxed or strict, section 4.4), decide pass or fail and the disposition the policy
  asks for (``p``, ``sp`` or ``np``, softened by ``t=y`` testing mode).

Every result keeps a trace in words; the resolver follows dnspython's
``Resolver.resolve(qname, rdtype)`` contract (the lab's resolver, a real one, or a
:class:`~labsupport.dns.zone.ZoneSet`).

To be taught in ``notebooks/06-dmarc.ipynb`` (issue 7).
"""

from __future__ import annotations

import email.parser
import email.policy
import email.utils
import html
import re
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import dns.exception
import dns.rcode
import dns.resolver

from ..core.errors import LabError
from ..core.paths import DATA_DIR
from ..core.results import Result, TraceBuilder, html_table, text_table

if TYPE_CHECKING:  # the evaluators are only read, never imported at run time
    from .dkim import DKIMVerification
    from .spf import SPFResult

__all__ = [
    "MAX_TREE_WALK_QUERIES",
    "PSL_PATH",
    "Alignment",
    "DMARCRecord",
    "DMARCRecordError",
    "DMARCResult",
    "Discovery",
    "PublicSuffixList",
    "discover",
    "evaluate",
    "is_dmarc_record",
    "lab_public_suffix_list",
    "organizational_domain",
    "parse_record",
    "tree_walk_names",
]

RFC = "RFC 9989"
RFC_FORMAT = f"{RFC} section 4.7"
RFC_GRAMMAR = f"{RFC} section 4.8"
RFC_ALIGNMENT = f"{RFC} section 4.4"
RFC_TREE_WALK = f"{RFC} section 4.10"
RFC_DISCOVERY = f"{RFC} section 4.10.1"
RFC_ORG_DOMAIN = f"{RFC} section 4.10.2"
RFC_AUTHOR = f"{RFC} section 5.3.1"
RFC_PASS_FAIL = f"{RFC} section 5.3.5"
RFC_DNS_ERRORS = f"{RFC} section 5.3.6"
RFC_NONEXISTENT = f"{RFC} section 3.2.13"
RFC_RESULTS = f"{RFC} section 9.2"
RFC_7489_ORG = "RFC 7489 section 3.2"
RFC_7489_DISCOVERY = "RFC 7489 section 6.6.3"

#: At most this many DMARC queries in one DNS Tree Walk (RFC 9989 section 4.10).
MAX_TREE_WALK_QUERIES = 8
#: A name of this many labels or more is shortened to this many minus one (section 4.10).
_SHORTEN_AT = 8

#: The lab's public-suffix list for ``method="psl"`` (the real list's format).
PSL_PATH = DATA_DIR / "psl" / "lab_public_suffix_list.dat"

METHODS = ("treewalk", "psl")
VERDICTS = ("pass", "fail", "none", "temperror", "permerror")
POLICIES = ("none", "quarantine", "reject")
#: What ``t=y`` makes of each policy: one level below (RFC 9989 section 4.7, tag t).
_TESTING = {"reject": "quarantine", "quarantine": "none", "none": "none"}
_OBSOLETE = {"pct": "sampling rate", "rf": "failure report format",
             "ri": "aggregate report interval"}
_KNOWN = {"v", "p", "sp", "np", "psd", "t", "adkim", "aspf", "rua", "ruf", "fo"}
_VERSION = re.compile(r"\Av[ \t]*=[ \t]*DMARC1[ \t]*(;|\Z)")
_URI = re.compile(r"\A[A-Za-z][A-Za-z0-9+.-]*:[^\s,!]+\Z")
_FO = re.compile(r"\A[01ds](:[01ds])*\Z")
_LABEL = re.compile(r"\A(?!-)[a-z0-9_-]{1,63}(?<!-)\Z")


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


# -- names ---------------------------------------------------------------------------


def _normalize(domain: str) -> str:
    """Lower case, no trailing dot, A-labels for U-labels (section 5.3.1)."""
    name = domain.strip().rstrip(".").lower()
    if name and not name.isascii():
        try:
            name = name.encode("idna").decode("ascii")
        except UnicodeError:
            pass
    return name


def _labels(domain: str) -> list[str]:
    return [label for label in domain.split(".") if label]


def tree_walk_names(domain: str) -> list[str]:
    """The names a DNS Tree Walk from ``domain`` may query, in order (section 4.10).

    The domain itself; then, if it has 8 labels or more, its last 7 labels, otherwise
    its parent; then one label less each time, down to the top-level name. Never more
    than :data:`MAX_TREE_WALK_QUERIES` names.
    """
    labels = _labels(_normalize(domain))
    if not labels:
        return []
    names = [".".join(labels)]
    x = len(labels)
    keep = _SHORTEN_AT - 1 if x >= _SHORTEN_AT else x - 1
    while keep >= 1:
        names.append(".".join(labels[-keep:]))
        keep -= 1
    return names


def _one_label_below(domain: str, parent: str) -> str:
    """The name under ``parent`` on the way to ``domain``: one label more than parent."""
    labels = _labels(domain)
    return ".".join(labels[-(len(_labels(parent)) + 1):])


def _is_subdomain(child: str, parent: str) -> bool:
    return child != parent and child.endswith("." + parent)


# -- the public-suffix list (RFC 7489) ------------------------------------------------


class PublicSuffixList:
    """A public-suffix list in the real list's format (https://publicsuffix.org/list/).

    :meth:`public_suffix` applies its rules (the longest match wins, an exception rule
    beats a wildcard, the implicit rule ``*`` applies when nothing matches);
    :meth:`organizational_domain` adds one label, as RFC 7489 section 3.2 says.
    """

    def __init__(self, text: str, source: str = "<text>") -> None:
        self.source = source
        self.rules: set[str] = set()
        self.wildcards: set[str] = set()
        self.exceptions: set[str] = set()
        for line in text.splitlines():
            rule = line.strip().split()[0].lower() if line.strip() else ""
            if not rule or rule.startswith("//"):
                continue
            if rule.startswith("!"):
                self.exceptions.add(rule[1:])
            elif rule.startswith("*."):
                self.wildcards.add(rule[2:])
            else:
                self.rules.add(rule)

    @classmethod
    def from_file(cls, path: str | Path) -> PublicSuffixList:
        path = Path(path)
        return cls(path.read_text(encoding="utf-8"), source=str(path))

    def __len__(self) -> int:
        return len(self.rules) + len(self.wildcards) + len(self.exceptions)

    def public_suffix(self, domain: str) -> str:
        labels = _labels(_normalize(domain))
        best = 1  # the implicit rule "*"
        for i in range(len(labels)):
            name = ".".join(labels[i:])
            n = len(labels) - i
            if name in self.exceptions:
                return ".".join(labels[i + 1:])  # an exception wins: its parent is the suffix
            if name in self.rules:
                best = max(best, n)
            parent = ".".join(labels[i + 1:])
            if parent and parent in self.wildcards:
                best = max(best, n)
        return ".".join(labels[-best:])

    def organizational_domain(self, domain: str) -> str:
        """The public suffix plus one label; a name that is itself a suffix stays itself."""
        labels = _labels(_normalize(domain))
        suffix = self.public_suffix(domain)
        n = len(_labels(suffix))
        if n >= len(labels):
            return ".".join(labels)
        return ".".join(labels[-(n + 1):])


@lru_cache(maxsize=1)
def lab_public_suffix_list() -> PublicSuffixList:
    """The lab's list, ``data/psl/lab_public_suffix_list.dat``, read once."""
    return PublicSuffixList.from_file(PSL_PATH)


# -- DNS -------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Answer:
    kind: str  # "records", "nxdomain", "nodata", "refused", "error"
    records: tuple[str, ...] = ()
    error: str = ""


class _DNS:
    """Asks ``resolver``, remembers every answer (one evaluation asks a name once)."""

    def __init__(self, resolver: Any) -> None:
        self.resolver = resolver
        self.cache: dict[tuple[str, str], _Answer] = {}
        self.asked: list[tuple[str, str]] = []

    def query(self, qname: str, rdtype: str) -> tuple[_Answer, bool]:
        key = (qname, rdtype)
        if key in self.cache:
            return self.cache[key], True
        self.asked.append(key)
        try:
            answer = self.resolver.resolve(qname, rdtype)
        except dns.resolver.NXDOMAIN:
            found = _Answer("nxdomain")
        except dns.resolver.NoNameservers as exc:
            errors = exc.kwargs.get("errors") or []
            refused = [e[3] in ("REFUSED", dns.rcode.REFUSED) for e in errors
                       if isinstance(e, tuple) and len(e) > 3]
            if refused and all(refused):
                found = _Answer("refused")
            else:
                found = _Answer("error", error=f"{type(exc).__name__}: {exc}")
        except dns.resolver.NoAnswer:
            found = _Answer("nodata")
        except dns.exception.DNSException as exc:
            found = _Answer("error", error=f"{type(exc).__name__}: {exc}")
        else:
            if rdtype == "TXT":
                texts = tuple(b"".join(r.strings).decode("utf-8", "replace") for r in answer)
            else:
                texts = tuple(r.to_text() for r in answer)
            found = _Answer("records", texts) if texts else _Answer("nodata")
        self.cache[key] = found
        return found, False


@dataclass(frozen=True)
class _Found:
    """What ``_dmarc.<name>`` held for the walk."""

    name: str
    record: DMARCRecord | None
    error: str | None = None


def _fetch(dnsq: _DNS, name: str, trace: TraceBuilder) -> _Found:
    """Query ``_dmarc.<name>`` TXT and keep the one DMARC record, if exactly one."""
    qname = f"_dmarc.{name}"
    answer, cached = dnsq.query(qname, "TXT")
    again = " (answer remembered from an earlier query)" if cached else ""
    trace.add(f"query {qname} TXT{again}", kind="query")
    with trace.nested():
        if answer.kind == "error":
            trace.add(f"DNS error: {answer.error}", kind="error", rfc=RFC_DNS_ERRORS)
            return _Found(name, None, answer.error)
        if answer.kind == "refused":
            trace.add(f"REFUSED: no name server serves {qname}; read as no DMARC record "
                      f"(a lab choice: the lab world has no zone for its top-level names)",
                      kind="warning")
            return _Found(name, None)
        if answer.kind in ("nxdomain", "nodata"):
            word = "no such name" if answer.kind == "nxdomain" else "no TXT records"
            trace.add(f"{word}: no DMARC record at {name}", kind="answer")
            return _Found(name, None)
        dmarc = [t for t in answer.records if is_dmarc_record(t)]
        others = len(answer.records) - len(dmarc)
        if others:
            trace.add(f"{others} TXT record(s) not starting with v=DMARC1 discarded",
                      kind="info", rfc=f"{RFC_TREE_WALK} step 2")
        if not dmarc:
            trace.add(f"no DMARC record at {name}", kind="answer")
            return _Found(name, None)
        if len(dmarc) > 1:
            trace.add(f"{len(dmarc)} DMARC records at {name}: all are discarded",
                      kind="warning", rfc=f"{RFC_TREE_WALK} step 2",
                      detail="\n".join(dmarc))
            return _Found(name, None)
        record = parse_record(dmarc[0])
        trace.add(f"DMARC record at {name}", kind="answer", detail=record.text)
        for problem in record.problems:
            trace.add(problem, kind="warning")
        return _Found(name, record)


# -- discovery ------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class Discovery(Result):
    """Where the DMARC record for ``domain`` is, and where its organization ends.

    ``verdict`` is ``found``, ``none`` (no record applies) or ``temperror`` (a DNS error
    stopped the walk). ``record`` is the record to apply, published at
    ``record_domain`` (the domain itself, its Organizational Domain, or its Public Suffix
    Domain, in that order of preference: RFC 9989 section 4.10.1). ``queries`` lists the
    ``_dmarc`` names asked, in order; ``found`` every (name, record text) the walk saw.
    ``method`` is ``"treewalk"`` (RFC 9989) or ``"psl"`` (RFC 7489 with the lab's list).
    """

    domain: str
    method: str = "treewalk"
    record: DMARCRecord | None = None
    record_domain: str | None = None
    organizational_domain: str = ""
    psd_domain: str | None = None
    queries: tuple[str, ...] = ()
    found: tuple[tuple[str, str], ...] = ()

    def title(self) -> str:
        where = f" at {self.record_domain}" if self.record_domain else ""
        return (f"DMARC discovery for {self.domain} ({self.method}): {self.verdict}{where}; "
                f"Organizational Domain {self.organizational_domain}")


class _Walk:
    """One DNS Tree Walk (section 4.10) from ``start``, its records and its outcome."""

    def __init__(self, start: str, dnsq: _DNS, trace: TraceBuilder) -> None:
        self.start = start
        self.found: list[_Found] = []  # every name with a record, longest first
        self.queries: list[str] = []
        self.error: str | None = None
        names = tree_walk_names(start)
        trace.add(f"DNS Tree Walk from {start}: at most {len(names)} queries "
                  f"({', '.join('_dmarc.' + n for n in names)})", rfc=RFC_TREE_WALK)
        for index, name in enumerate(names):
            if index == 1 and len(_labels(start)) >= _SHORTEN_AT:
                trace.add(f"{start} has {len(_labels(start))} labels: the walk goes on at "
                          f"its last {_SHORTEN_AT - 1} labels, {name}",
                          rfc=f"{RFC_TREE_WALK} step 4")
            self.queries.append(f"_dmarc.{name}")
            got = _fetch(dnsq, name, trace)
            if got.error is not None:
                self.error = got.error
                trace.add("the walk stops on a DNS error", kind="error", rfc=RFC_DNS_ERRORS)
                return
            if got.record is not None:
                self.found.append(got)
                if got.record.psd in ("y", "n"):
                    trace.add(f"the record at {name} has psd={got.record.psd}: the walk stops",
                              kind="decision", rfc=f"{RFC_TREE_WALK} step 6")
                    return
        if names:
            trace.add("no labels left: the walk ends", rfc=f"{RFC_TREE_WALK} step 7")

    def organizational_domain(self, trace: TraceBuilder) -> str:
        """Section 4.10.2: psd=n, else psd=y (not at the start), else the fewest labels."""
        for got in self.found:
            assert got.record is not None
            if got.record.psd == "n":
                trace.add(f"{got.name} has psd=n: it is the Organizational Domain",
                          kind="decision", rfc=f"{RFC_ORG_DOMAIN} rule 1")
                return got.name
            if got.record.psd == "y" and got.name != self.start:
                org = _one_label_below(self.start, got.name)
                trace.add(f"{got.name} has psd=y, a Public Suffix Domain: the Organizational "
                          f"Domain is the name one label below it, {org}", kind="decision",
                          rfc=f"{RFC_ORG_DOMAIN} rule 2")
                return org
        if self.found:
            fewest = min(self.found, key=lambda f: len(_labels(f.name)))
            trace.add(f"the record with the fewest labels is at {fewest.name}: it is the "
                      f"Organizational Domain", kind="decision", rfc=f"{RFC_ORG_DOMAIN} rule 3")
            return fewest.name
        trace.add(f"no DMARC record on the walk: {self.start} is its own Organizational "
                  f"Domain", kind="decision", rfc=RFC_ORG_DOMAIN)
        return self.start

    def psd(self) -> _Found | None:
        for got in self.found:
            if got.record is not None and got.record.psd == "y" and got.name != self.start:
                return got
        return None


def _check_method(method: str) -> None:
    if method not in METHODS:
        raise ValueError(f"method is 'treewalk' (RFC 9989) or 'psl' (RFC 7489), not {method!r}")


def _discover(domain: str, dnsq: _DNS, method: str, trace: TraceBuilder) -> Discovery:
    _check_method(method)
    domain = _normalize(domain)
    if method == "psl":
        return _discover_psl(domain, dnsq, trace)
    trace.add("method: the DNS Tree Walk of RFC 9989 (no public-suffix list)",
              rfc=RFC_TREE_WALK)
    walk = _Walk(domain, dnsq, trace)
    found = tuple((f.name, f.record.text) for f in walk.found if f.record is not None)
    if walk.error is not None:
        return Discovery(verdict="temperror", summary=f"a DNS error stopped the walk: "
                         f"{walk.error}", domain=domain, organizational_domain=domain,
                         queries=tuple(walk.queries), found=found, trace=trace.freeze())
    org = walk.organizational_domain(trace)
    by_name = {f.name: f for f in walk.found}
    psd = walk.psd()
    chosen: _Found | None = None
    queries = list(walk.queries)
    if domain in by_name:
        chosen = by_name[domain]
        trace.add(f"the Author Domain {domain} has a record: it is the one to apply",
                  kind="decision", rfc=RFC_DISCOVERY)
    elif org in by_name:
        chosen = by_name[org]
        trace.add(f"no record at {domain}: the record of its Organizational Domain {org} "
                  f"applies", kind="decision", rfc=RFC_DISCOVERY)
    else:
        if org != domain and org not in {q.removeprefix("_dmarc.") for q in walk.queries}:
            trace.add(f"the Organizational Domain {org} was skipped by the walk: ask it too",
                      rfc=RFC_DISCOVERY)
            queries.append(f"_dmarc.{org}")
            got = _fetch(dnsq, org, trace)
            if got.error is not None:
                return Discovery(verdict="temperror", summary=f"a DNS error: {got.error}",
                                 domain=domain, organizational_domain=org,
                                 queries=tuple(queries), found=found, trace=trace.freeze())
            if got.record is not None:
                chosen = got
                found = (*found, (org, got.record.text))
                trace.add(f"no record at {domain}: the record of its Organizational Domain "
                          f"{org} applies", kind="decision", rfc=RFC_DISCOVERY)
        if chosen is None and psd is not None:
            chosen = psd
            trace.add(f"neither {domain} nor {org} has a record: the record of the Public "
                      f"Suffix Domain {psd.name} applies", kind="decision", rfc=RFC_DISCOVERY)
    return _discovery_result(domain, "treewalk", chosen, org, psd.name if psd else None,
                             tuple(queries), found, trace)


def _discovery_result(domain: str, method: str, chosen: _Found | None, org: str,
                      psd: str | None, queries: tuple[str, ...],
                      found: tuple[tuple[str, str], ...], trace: TraceBuilder) -> Discovery:
    if chosen is None or chosen.record is None:
        trace.add(f"no DMARC record applies to {domain}: DMARC does not apply",
                  kind="decision", rfc=RFC_DISCOVERY)
        return Discovery(verdict="none", summary=f"no DMARC record applies to {domain} "
                         f"({len(queries)} queries); its Organizational Domain is {org}",
                         domain=domain, method=method, organizational_domain=org,
                         psd_domain=psd, queries=queries, found=found, trace=trace.freeze())
    return Discovery(verdict="found", summary=f"the record at _dmarc.{chosen.name} applies to "
                     f"{domain} ({len(queries)} queries); its Organizational Domain is {org}",
                     domain=domain, method=method, record=chosen.record,
                     record_domain=chosen.name, organizational_domain=org, psd_domain=psd,
                     queries=queries, found=found, trace=trace.freeze())


def _discover_psl(domain: str, dnsq: _DNS, trace: TraceBuilder) -> Discovery:
    psl = lab_public_suffix_list()
    trace.add(f"method: RFC 7489, the Organizational Domain from a public-suffix list "
              f"({PSL_PATH.name}, {len(psl)} rules)", rfc=RFC_7489_ORG)
    org = psl.organizational_domain(domain)
    trace.add(f"public suffix {psl.public_suffix(domain)}: the Organizational Domain of "
              f"{domain} is {org}", kind="decision", rfc=RFC_7489_ORG)
    queries = [f"_dmarc.{domain}"]
    got = _fetch(dnsq, domain, trace)
    found: list[tuple[str, str]] = []
    if got.record is not None:
        found.append((domain, got.record.text))
    chosen = got if got.record is not None else None
    if got.error is None and chosen is None and org != domain:
        queries.append(f"_dmarc.{org}")
        got = _fetch(dnsq, org, trace)
        if got.record is not None:
            found.append((org, got.record.text))
            chosen = got
            trace.add(f"no record at {domain}: the record of {org} applies", kind="decision",
                      rfc=RFC_7489_DISCOVERY)
    if got.error is not None:
        return Discovery(verdict="temperror", summary=f"a DNS error: {got.error}",
                         domain=domain, method="psl", organizational_domain=org,
                         queries=tuple(queries), found=tuple(found), trace=trace.freeze())
    return _discovery_result(domain, "psl", chosen, org, None, tuple(queries), tuple(found),
                             trace)


def discover(domain: str, resolver: Any, *, method: str = "treewalk") -> Discovery:
    """Find the DMARC record that applies to ``domain`` and its Organizational Domain.

    ``method="treewalk"``: the DNS Tree Walk of RFC 9989 section 4.10 (the domain, then
    its parents, long names shortened to 7 labels, at most 8 queries, stopping at a
    record with ``psd=y`` or ``psd=n``); the record applied is the domain's own, else
    its Organizational Domain's, else its Public Suffix Domain's (section 4.10.1), and
    the Organizational Domain is chosen as section 4.10.2 says. ``method="psl"``: RFC
    7489 section 6.6.3, the domain's record, else its Organizational Domain's from the
    lab's public-suffix list (:data:`PSL_PATH`).
    """
    return _discover(domain, _DNS(resolver), method, TraceBuilder())


def organizational_domain(domain: str, resolver: Any, *, method: str = "treewalk") -> str:
    """The Organizational Domain of ``domain`` (RFC 9989 section 4.10.2, or RFC 7489
    section 3.2 with ``method="psl"``, which asks no DNS question)."""
    _check_method(method)
    if method == "psl":
        return lab_public_suffix_list().organizational_domain(domain)
    trace = TraceBuilder()
    walk = _Walk(_normalize(domain), _DNS(resolver), trace)
    return walk.organizational_domain(trace)


# -- evaluation -----------------------------------------------------------------------


@dataclass(frozen=True)
class Alignment:
    """One authenticated (or not) identifier and its alignment test (section 4.4).

    ``mechanism`` is ``"spf"`` or ``"dkim"``; ``domain`` the SPF MAIL FROM domain or the
    DKIM ``d=``; ``result`` that mechanism's own result; ``mode`` ``"relaxed"`` or
    ``"strict"``; ``organizational_domain`` the identifier's (relaxed mode); ``aligned``
    is True only for a passing identifier that aligns; ``reason`` says why in words.
    """

    mechanism: str
    domain: str
    result: str
    mode: str
    aligned: bool
    reason: str
    organizational_domain: str | None = None
    selector: str | None = None


@dataclass(frozen=True, kw_only=True)
class DMARCResult(Result):
    """The outcome of DMARC for one message (RFC 9989 section 5.3).

    ``verdict``: ``pass`` (an aligned identifier), ``fail`` (a record applies and none
    aligns), ``none`` (no record applies), ``temperror`` (a DNS error) or ``permerror``
    (no single Author Domain, or a record that asks for no DMARC processing).
    ``disposition`` is what the policy asks for: ``none`` unless the verdict is fail;
    then the ``p``, ``sp`` or ``np`` value (``policy`` names the tag), one level lower
    when the record says ``t=y`` (``testing``); ``requested`` is the tag's value before
    testing mode. ``alignments`` lists every SPF and DKIM identifier with its test.
    """

    from_domain: str | None = None
    from_addresses: tuple[str, ...] = ()
    mail_from: str = ""
    method: str = "treewalk"
    record: DMARCRecord | None = None
    record_domain: str | None = None
    organizational_domain: str | None = None
    policy: str | None = None
    requested: str | None = None
    disposition: str = "none"
    testing: bool = False
    author_domain_exists: bool | None = None
    spf_aligned: bool = False
    dkim_aligned: bool = False
    alignments: tuple[Alignment, ...] = ()
    discovery: Discovery | None = field(default=None, repr=False)

    @property
    def result(self) -> str:
        return self.verdict

    def title(self) -> str:
        who = self.from_domain or "no Author Domain"
        return f"DMARC {self.verdict} for {who}: disposition {self.disposition}"

    def _facts(self) -> list[tuple[str, str]]:
        facts = [("method", "DNS Tree Walk (RFC 9989)" if self.method == "treewalk"
                  else "public-suffix list (RFC 7489)")]
        if self.record is not None:
            facts.append(("record", f"_dmarc.{self.record_domain}: {self.record.text}"))
        if self.organizational_domain:
            facts.append(("Organizational Domain", self.organizational_domain))
        if self.policy:
            test = " (t=y testing mode)" if self.testing else ""
            facts.append(("policy", f"{self.policy}={self.requested}{test}"))
        return facts

    def alignment_rows(self) -> list[list[object]]:
        return [[a.mechanism, a.domain, a.result, a.mode, "yes" if a.aligned else "no",
                 a.reason] for a in self.alignments]

    def text(self) -> str:
        lines = [self.title(), f"  {self.summary}"]
        lines.extend(f"  {name}: {value}" for name, value in self._facts())
        if self.alignments:
            table = text_table(["id", "domain", "result", "mode", "aligned", "why"],
                               self.alignment_rows())
            lines.extend("  " + line for line in table.splitlines())
        if self.trace:
            lines.append("Trace:")
            lines.extend("  " + step.as_text().replace("\n", "\n  ") for step in self.trace)
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        facts = "".join(f"<div><b>{html.escape(k)}</b>: {html.escape(v)}</div>"
                        for k, v in self._facts())
        table = (html_table(["id", "domain", "result", "mode", "aligned", "why"],
                            self.alignment_rows(), caption="Identifier alignment")
                 if self.alignments else "")
        steps = "".join(step.as_html() for step in self.trace)
        return (
            '<div style="border-left:4px solid #888;padding-left:8px">'
            f"<b>{html.escape(self.title())}</b><br>{html.escape(self.summary)}"
            f"{facts}{table}<details><summary>Trace</summary>{steps}</details></div>"
        )

    def authres(self) -> str:
        """This result as a ``dmarc=`` entry of an Authentication-Results field (RFC 8601,
        with the ``header.from`` and ``policy.dmarc`` properties of RFC 9989 section 9.1)."""
        reason = re.sub(r"[();\\]", " ", self.summary)
        reason = " ".join(reason.split())
        parts = [f"dmarc={self.verdict} ({reason})"]
        if self.from_domain:
            parts.append(f"header.from={self.from_domain}")
        if self.record is not None and self.verdict in ("pass", "fail"):
            parts.append(f"policy.dmarc={self.disposition}")
        return " ".join(parts)


def _author_domains(message: bytes, trace: TraceBuilder) -> tuple[list[str], list[str], str]:
    """The From addresses, their domains, and a problem sentence ('' when fine)."""
    # 8-bit headers (RFC 6532) are read as UTF-8
    parser = email.parser.HeaderParser(policy=email.policy.compat32)
    headers = parser.parsestr(message.decode("utf-8", "replace"))
    fields = headers.get_all("From") or []
    if not fields:
        return [], [], "the message has no From header field"
    if len(fields) > 1:
        trace.add(f"{len(fields)} From header fields: the message is not valid RFC 5322",
                  kind="warning", rfc=f"{RFC} section 4.4")
    values = [str(v) for v in fields]
    addresses = [addr for _name, addr in email.utils.getaddresses(values) if addr]
    if not addresses:
        return [], [], f"the From field {values[0]!r} holds no address"
    domains: list[str] = []
    for addr in addresses:
        local, at, dom = addr.rpartition("@")
        dom = _normalize(dom) if at and local else ""
        if not dom:
            return addresses, [], f"the From address {addr!r} has no domain"
        if len(dom) > 253 or not all(_LABEL.match(label) for label in dom.split(".")):
            return addresses, [], f"the From address {addr!r} has no valid domain name"
        if dom not in domains:
            domains.append(dom)
    if len(domains) > 1:
        return addresses, domains, (f"the From field names {len(domains)} domains "
                                    f"({', '.join(domains)})")
    if len(fields) > 1:
        return addresses, domains, "the message has several From header fields"
    if len(addresses) > 1:
        trace.add(f"{len(addresses)} From addresses, all at {domains[0]}: one Author Domain",
                  rfc=RFC_AUTHOR)
    return addresses, domains, ""


def _domain_exists(dnsq: _DNS, domain: str, trace: TraceBuilder) -> bool | None:
    """Section 3.2.13: a domain with NXDOMAIN or NODATA for A, AAAA and MX does not
    exist. ``None`` on a DNS error."""
    trace.add(f"does {domain} exist? (A, AAAA and MX)", rfc=RFC_NONEXISTENT)
    with trace.nested():
        for rdtype in ("A", "AAAA", "MX"):
            answer, _cached = dnsq.query(domain, rdtype)
            if answer.kind == "error":
                trace.add(f"{domain} {rdtype}: DNS error {answer.error}", kind="error")
                return None
            if answer.kind == "records":
                trace.add(f"{domain} {rdtype}: {', '.join(answer.records)}: it exists",
                          kind="answer")
                return True
            trace.add(f"{domain} {rdtype}: {answer.kind}", kind="answer")
    trace.add(f"{domain} does not exist", kind="decision", rfc=RFC_NONEXISTENT)
    return False


class _OrgDomains:
    """Organizational Domains of several names, sharing one DNS cache."""

    def __init__(self, dnsq: _DNS, method: str, trace: TraceBuilder) -> None:
        self.dnsq = dnsq
        self.method = method
        self.trace = trace
        self.known: dict[str, str | None] = {}

    def get(self, domain: str) -> str | None:
        if domain in self.known:
            return self.known[domain]
        if self.method == "psl":
            org: str | None = lab_public_suffix_list().organizational_domain(domain)
            self.trace.add(f"Organizational Domain of {domain} from the list: {org}",
                           rfc=RFC_7489_ORG)
        else:
            self.trace.add(f"Organizational Domain of {domain}:", rfc=RFC_ORG_DOMAIN)
            with self.trace.nested():
                walk = _Walk(domain, self.dnsq, self.trace)
                org = None if walk.error else walk.organizational_domain(self.trace)
        self.known[domain] = org
        return org


def _align(mechanism: str, domain: str, result: str, author: str, author_org: str,
           mode: str, orgs: _OrgDomains, selector: str | None = None) -> Alignment:
    domain = _normalize(domain)
    if result != "pass":
        return Alignment(mechanism, domain, result, mode, False,
                         f"{mechanism.upper()} did not pass ({result}): not an authenticated "
                         f"identifier", selector=selector)
    if mode == "strict":
        same = domain == author
        why = (f"identical to {author}" if same else f"{domain} is not {author} (strict mode "
               f"asks for the very same name)")
        return Alignment(mechanism, domain, result, mode, same, why, selector=selector)
    if domain == author:
        return Alignment(mechanism, domain, result, mode, True, f"identical to {author}",
                         author_org, selector=selector)
    org = orgs.get(domain)
    if org is None:
        return Alignment(mechanism, domain, result, mode, False, "a DNS error stopped the "
                         "tree walk for this identifier", selector=selector)
    same = org == author_org
    why = (f"same Organizational Domain {org}" if same else f"Organizational Domain {org}, "
           f"not {author_org}")
    return Alignment(mechanism, domain, result, mode, same, why, org, selector=selector)


def evaluate(message: bytes | str, *, mail_from: str, spf: SPFResult | None,
             dkim: DKIMVerification | None, resolver: Any,
             method: str = "treewalk") -> DMARCResult:
    """DMARC for one message, as a receiver applies it (RFC 9989 section 5.3).

    ``message`` is the message as received (its From field gives the Author Domain);
    ``mail_from`` the SMTP MAIL FROM (kept for reports); ``spf`` the SPF result of the MAIL
    FROM identity and ``dkim`` the verification of every signature (either may be None:
    no identifier of that kind). ``method`` chooses how Organizational Domains are found:
    ``"treewalk"`` (RFC 9989) or ``"psl"`` (RFC 7489 with the lab's list).
    """
    _check_method(method)
    if isinstance(message, str):
        message = message.encode("utf-8")
    trace = TraceBuilder()
    dnsq = _DNS(resolver)
    base: dict[str, Any] = {"mail_from": mail_from, "method": method}
    trace.add("method: " + ("DNS Tree Walk (RFC 9989 section 4.10)" if method == "treewalk"
                            else "public-suffix list (RFC 7489 section 3.2), the lab's list"))
    addresses, domains, problem = _author_domains(message, trace)
    base["from_addresses"] = tuple(addresses)
    if problem:
        trace.add(f"{problem}: DMARC validation is not possible and stops", kind="error",
                  rfc=RFC_AUTHOR)
        return DMARCResult(verdict="permerror", summary=f"{problem}; DMARC needs exactly one "
                           f"Author Domain ({RFC_AUTHOR})", trace=trace.freeze(),
                           from_domain=domains[0] if len(domains) == 1 else None, **base)
    author = domains[0]
    trace.add(f"Author Domain: {author} (From: {', '.join(addresses)})", kind="ok",
              rfc=RFC_AUTHOR)
    trace.add("policy discovery", rfc=RFC_DISCOVERY)
    with trace.nested():
        disc = _discover(author, dnsq, method, TraceBuilder())
        trace.extend(disc.trace)
    base.update(from_domain=author, discovery=disc,
                organizational_domain=disc.organizational_domain)
    if disc.verdict == "temperror":
        return DMARCResult(verdict="temperror", summary=f"policy discovery for {author} met a "
                           f"DNS error: DMARC can neither pass nor fail ({RFC_DNS_ERRORS})",
                           trace=trace.freeze(), **base)
    record = disc.record
    if record is None:
        return DMARCResult(verdict="none", summary=f"no DMARC record applies to {author}: the "
                           f"DMARC mechanism does not apply ({RFC_DISCOVERY})",
                           trace=trace.freeze(), **base)
    base.update(record=record, record_domain=disc.record_domain, testing=record.testing)
    if not record.usable:
        trace.add("the record's policy is invalid and it has no valid rua: no DMARC "
                  "processing", kind="error", rfc=RFC_DISCOVERY)
        return DMARCResult(verdict="permerror", summary=f"the DMARC record at "
                           f"_dmarc.{disc.record_domain} is not valid, so no DMARC "
                           f"processing is applied ({RFC_DISCOVERY})", trace=trace.freeze(),
                           **base)
    # which policy tag applies (section 4.10.1)
    tag, exists = "p", None
    if disc.record_domain != author and _is_subdomain(author, disc.record_domain or ""):
        exists = _domain_exists(dnsq, author, trace)
        if exists is None:
            return DMARCResult(verdict="temperror", summary=f"a DNS error while checking "
                               f"whether {author} exists ({RFC_DNS_ERRORS})",
                               trace=trace.freeze(), **base)
        if method == "treewalk" and not exists and record.np is not None:
            tag = "np"
        elif record.sp is not None:
            tag = "sp"
    requested = {"p": record.p, "sp": record.sp, "np": record.np}[tag] or "none"
    trace.add(f"the policy that applies: {tag}={requested}"
              + ("" if tag == "p" and disc.record_domain == author else
                 f" ({author} is a {'non-existent ' if exists is False else ''}subdomain of "
                 f"{disc.record_domain})"), kind="decision", rfc=RFC_DISCOVERY)
    base.update(policy=tag, requested=requested, author_domain_exists=exists)
    # alignment (sections 4.4 and 4.10.2)
    orgs = _OrgDomains(dnsq, method, trace)
    if disc.organizational_domain:
        orgs.known[author] = disc.organizational_domain
    author_org = disc.organizational_domain or author
    alignments: list[Alignment] = []
    trace.add("identifier alignment", rfc=RFC_ALIGNMENT)
    with trace.nested():
        if spf is not None and spf.identity == "mailfrom":
            alignments.append(_align("spf", spf.domain, spf.verdict, author, author_org,
                                     record.mode("spf"), orgs))
        elif spf is not None:
            trace.add("the SPF result is for the HELO identity: DMARC uses only the MAIL FROM "
                      "identity", kind="info", rfc=f"{RFC} section 4.4.2")
        for sig in (dkim.signatures if dkim is not None else ()):
            if sig.domain:
                alignments.append(_align("dkim", sig.domain, sig.verdict, author, author_org,
                                         record.mode("dkim"), orgs, sig.selector))
        for a in alignments:
            trace.add(f"{a.mechanism} {a.domain} ({a.result}, {a.mode}): "
                      f"{'aligned' if a.aligned else 'not aligned'}, {a.reason}",
                      kind="ok" if a.aligned else "info")
    spf_ok = any(a.aligned for a in alignments if a.mechanism == "spf")
    dkim_ok = any(a.aligned for a in alignments if a.mechanism == "dkim")
    base.update(spf_aligned=spf_ok, dkim_aligned=dkim_ok, alignments=tuple(alignments))
    if spf_ok or dkim_ok:
        which = " and ".join(n for n, ok in (("SPF", spf_ok), ("DKIM", dkim_ok)) if ok)
        trace.add(f"pass: {which} aligned with {author}", kind="ok", rfc=RFC_PASS_FAIL)
        return DMARCResult(verdict="pass", summary=f"{which} passed for a domain aligned with "
                           f"{author}", trace=trace.freeze(), disposition="none", **base)
    if any(a.result == "pass" and a.aligned is False and "DNS error" in a.reason
           for a in alignments):
        return DMARCResult(verdict="temperror", summary="a DNS error stopped an alignment "
                           f"check ({RFC_DNS_ERRORS})", trace=trace.freeze(), **base)
    disposition = requested
    if record.testing and requested != "none":
        disposition = _TESTING[requested]
        trace.add(f"t=y testing mode: {requested} is applied one level lower, as "
                  f"{disposition}", kind="decision", rfc=f"{RFC_FORMAT}, tag t")
    trace.add(f"fail: no aligned identifier; the policy asks for {disposition}",
              kind="error", rfc=RFC_PASS_FAIL)
    summary = (f"no SPF or DKIM identifier that passed is aligned with {author}; "
               f"{tag}={requested}" + (" in testing mode" if record.testing else "")
               + f" asks for {disposition}")
    return DMARCResult(verdict="fail", summary=summary, trace=trace.freeze(),
                       disposition=disposition, **base)

