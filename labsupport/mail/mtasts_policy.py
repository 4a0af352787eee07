"""MTA-STS policies, read and checked: the ``_mta-sts`` TXT record, the policy file and MX
pattern matching (RFC 8461 sections 3.1, 3.2 and 4.1).

A domain that wants its mail delivered over authenticated TLS only says so twice: a TXT
record at ``_mta-sts.<domain>`` (``v=STSv1; id=20261128T1200``) announces that a policy
exists and names its version, and the policy itself, a short text file served over HTTPS
at ``https://mta-sts.<domain>/.well-known/mta-sts.txt``, says how strict to be and which
MX hosts are genuine::

    version: STSv1
    mode: enforce
    mx: mx1.northwind.test
    mx: *.northwind.test
    max_age: 86400

:func:`read_record` picks and parses the TXT record, :func:`read_policy` the policy file,
each returning a traced result (``verdict`` ``"valid"``, ``"none"`` or ``"invalid"``) whose
summary says in words what is wrong with malformed input; :func:`parse_record` and
:func:`parse_policy` raise :class:`MTASTSError` instead. :func:`mx_matches` and
:func:`match_mx` compare an MX host name with the policy's ``mx`` patterns, where a
wildcard covers exactly one left-most label. Fetching the policy is
:mod:`labsupport.mail.mtasts_fetch`; serving it, :mod:`labsupport.mail.mtasts_server`;
applying it when delivering, :mod:`labsupport.mail.mtasts_enforce`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from ..core.errors import LabError
from ..core.results import Result, TraceBuilder
from .record_fields import choose_record, fields_after_version

RFC = "RFC 8461"
RFC_RECORD = f"{RFC} section 3.1"
RFC_POLICY = f"{RFC} section 3.2"
RFC_FETCH = f"{RFC} section 3.3"
RFC_MX = f"{RFC} section 4.1"
RFC_CERT = f"{RFC} section 4.2"
RFC_APPLY = f"{RFC} section 5"

#: The three modes of a policy (section 3.2) and what each asks of a sender (section 5).
MODES = {
    "enforce": "do not deliver to an MX host that fails MX matching, does not offer "
               "STARTTLS or presents a certificate that does not validate",
    "testing": "deliver as usual, but report every failure (TLS-RPT, RFC 8460)",
    "none": "treat the domain as if it had no policy",
}
#: The largest max_age a policy may give: one year in seconds (section 3.2).
MAX_AGE_LIMIT = 31557600
#: The largest policy body a sender needs to read (section 3.3 suggests 64 KiB).
MAX_POLICY_BYTES = 64 * 1024
#: Where the policy lives on the ``mta-sts`` host (section 3.2).
WELL_KNOWN_PATH = "/.well-known/mta-sts.txt"

_RECORD_START = re.compile(r"\Av=STSv1[ \t]*(;|\Z)")
_ID = re.compile(r"\A[A-Za-z0-9]{1,32}\Z")
_EXT_NAME = re.compile(r"\A[A-Za-z0-9][A-Za-z0-9_.-]{0,31}\Z")
_EXT_VALUE = re.compile(r"\A[\x21-\x3a\x3c\x3e-\x7e]+\Z")
_POLICY_EXT_VALUE = re.compile(r"\A[\x21-\x7e]([\x20-\x7e]*[\x21-\x7e])?\Z")
_LABEL = re.compile(r"\A(?!-)[A-Za-z0-9-]{1,63}(?<!-)\Z")


class MTASTSError(LabError, ValueError):
    """An MTA-STS record or policy is malformed; the message says where and why."""


# -- the TXT record ----------------------------------------------------------------------


@dataclass(frozen=True)
class STSRecord:
    """The ``_mta-sts`` TXT record: its ``id`` and any extension fields (section 3.1)."""

    text: str
    id: str
    extensions: tuple[tuple[str, str], ...] = ()

    def __str__(self) -> str:
        return self.text


def parse_record(text: str) -> STSRecord:
    """Read one ``v=STSv1; id=...`` record (RFC 8461 section 3.1) or raise
    :class:`MTASTSError` with the reason."""
    if not _RECORD_START.match(text):
        raise MTASTSError(f"{text!r} is not an MTA-STS record: it must begin with "
                          f"'v=STSv1' ({RFC_RECORD})")
    ident: str | None = None
    extensions: list[tuple[str, str]] = []
    for name, value in fields_after_version(text, MTASTSError, RFC_RECORD):
        if name == "id":
            if ident is not None:
                raise MTASTSError(f"{text!r} has more than one id field ({RFC_RECORD})")
            if not _ID.match(value):
                raise MTASTSError(f"id={value!r} is not 1 to 32 letters and digits "
                                  f"({RFC_RECORD}: sts-id = \"id=\" 1*32(ALPHA / DIGIT))")
            ident = value
        elif not _EXT_NAME.match(name) or not _EXT_VALUE.match(value):
            raise MTASTSError(f"'{name}={value}' is not a valid extension field: a name of "
                              "letters, digits, '_', '-' or '.' and a value without spaces, "
                              f"'=' or ';' ({RFC_RECORD})")
        else:
            extensions.append((name, value))
    if ident is None:
        raise MTASTSError(f"{text!r} has no id field; a sender needs it to know when the "
                          f"policy changed ({RFC_RECORD})")
    return STSRecord(text=text, id=ident, extensions=tuple(extensions))


@dataclass(frozen=True, kw_only=True)
class RecordResult(Result):
    """The TXT records at ``_mta-sts.<domain>``, read: ``verdict`` is ``"valid"`` (then
    ``record`` is set), ``"none"`` (no MTA-STS record) or ``"invalid"``. For a sender
    ``"none"`` and ``"invalid"`` mean the same: the domain has no available policy
    (unless one is cached)."""

    domain: str
    record: STSRecord | None = None

    def title(self) -> str:
        return f"MTA-STS record of {self.domain}: {self.verdict}"


def read_record(texts: Sequence[str], domain: str = "") -> RecordResult:
    """Choose and parse the MTA-STS record among the TXT strings of ``_mta-sts.<domain>``
    (RFC 8461 section 3.1): discard those not beginning with ``v=STSv1``; exactly one
    must remain, and it must parse."""
    trace = TraceBuilder()
    name = f"_mta-sts.{domain}" if domain else "_mta-sts"
    verdict, summary, record = choose_record(
        texts, trace, name=name, start=_RECORD_START, version="v=STSv1", kind="MTA-STS",
        rfc=RFC_RECORD, parse=parse_record, error=MTASTSError,
        absent="the domain publishes no policy",
        consequence="the sender assumes no policy is available")
    if record is None:
        return RecordResult(verdict=verdict, summary=summary, trace=trace.freeze(),
                            domain=domain)
    trace.add(f"v=STSv1, policy id {record.id}", kind="ok", rfc=RFC_RECORD)
    for ext, value in record.extensions:
        trace.add(f"extension field {ext}={value} (not understood, ignored)", kind="info")
    summary = (f"{name} announces an MTA-STS policy, id {record.id}: fetch it (or use the "
               "cached copy with the same id).")
    return RecordResult(verdict="valid", summary=summary, trace=trace.freeze(),
                        domain=domain, record=record)


# -- the policy file ---------------------------------------------------------------------


@dataclass(frozen=True)
class STSPolicy:
    """A parsed policy file (RFC 8461 section 3.2).

    ``mx`` holds the patterns in the order written; ``lines`` the policy's lines as
    served (TLS-RPT's ``policy-string``); ``extensions`` the fields a sender ignores.
    """

    text: str
    mode: str
    max_age: int
    mx: tuple[str, ...]
    version: str = "STSv1"
    lines: tuple[str, ...] = ()
    extensions: tuple[tuple[str, str], ...] = ()

    @property
    def active(self) -> bool:
        """True for ``enforce`` and ``testing``; ``none`` asks for nothing."""
        return self.mode in ("enforce", "testing")

    def matches(self, host: str) -> bool:
        """Does MX host ``host`` match one of the ``mx`` patterns (section 4.1)?"""
        return any(mx_matches(p, host) for p in self.mx)

    def __str__(self) -> str:
        return self.text


def _valid_pattern(value: str) -> bool:
    name = value[2:] if value.startswith("*.") else value
    labels = name.rstrip(".").split(".")
    return bool(labels) and all(_LABEL.match(label) for label in labels)


def parse_policy(text: str | bytes) -> STSPolicy:
    """Read a policy file (RFC 8461 section 3.2) or raise :class:`MTASTSError`.

    Lines end in LF or CRLF; each is ``key: value``. ``version`` (STSv1), ``mode``
    (enforce, testing or none) and ``max_age`` (0 to 31557600 seconds) are required;
    ``mx`` appears once per allowed MX pattern and at least once unless the mode is
    ``none``. Unknown keys are extensions and ignored; a repeated key other than ``mx``
    is an error here (the RFC leaves it undefined, and it is always a mistake).
    """
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise MTASTSError(f"the policy is not UTF-8 text ({exc}) ({RFC_POLICY})") from exc
    lines = text.replace("\r\n", "\n").split("\n")
    if lines and lines[-1] == "":
        lines.pop()  # the last line may end with its terminator
    if not lines:
        raise MTASTSError(f"the policy is empty: it needs version, mode, mx and max_age "
                          f"({RFC_POLICY})")
    seen: dict[str, str] = {}
    mx: list[str] = []
    extensions: list[tuple[str, str]] = []
    for number, raw in enumerate(lines, 1):
        line = raw.rstrip(" \t")
        key, colon, value = line.partition(":")
        value = value.lstrip(" \t")
        if not colon or not key or key != key.strip():
            raise MTASTSError(f"line {number} {raw!r} is not 'key: value' ({RFC_POLICY})")
        if key == "mx":
            if not _valid_pattern(value):
                raise MTASTSError(f"line {number}: mx {value!r} is not a host name or a "
                                  "'*.' wildcard followed by one; a wildcard may only "
                                  f"stand for the whole left-most label ({RFC_POLICY}, "
                                  f"{RFC_MX})")
            mx.append(value.lower().rstrip("."))
        elif key in ("version", "mode", "max_age"):
            if key in seen:
                raise MTASTSError(f"line {number}: {key!r} appears twice ({RFC_POLICY})")
            seen[key] = value
        elif not _EXT_NAME.match(key) or not _POLICY_EXT_VALUE.match(value):
            raise MTASTSError(f"line {number} {raw!r} is neither a known field (version, "
                              f"mode, mx, max_age) nor a valid extension ({RFC_POLICY})")
        else:
            extensions.append((key, value))
    for key in ("version", "mode", "max_age"):
        if key not in seen:
            raise MTASTSError(f"the policy has no {key!r} field; version, mode and max_age "
                              f"are required ({RFC_POLICY})")
    if seen["version"] != "STSv1":
        raise MTASTSError(f"version {seen['version']!r} is not 'STSv1', the only version "
                          f"({RFC_POLICY})")
    mode = seen["mode"]
    if mode not in MODES:
        raise MTASTSError(f"mode {mode!r} is not enforce, testing or none (lower case) "
                          f"({RFC_POLICY})")
    age_text = seen["max_age"]
    if not re.fullmatch(r"[0-9]{1,10}", age_text):
        raise MTASTSError(f"max_age {age_text!r} is not a whole number of seconds "
                          f"({RFC_POLICY}: 1*10(DIGIT))")
    max_age = int(age_text)
    if max_age > MAX_AGE_LIMIT:
        raise MTASTSError(f"max_age {max_age} is more than {MAX_AGE_LIMIT} seconds (one "
                          f"year), the largest a policy may ask for ({RFC_POLICY})")
    if not mx and mode != "none":
        raise MTASTSError(f"the policy names no mx pattern, so in mode {mode} no MX host "
                          f"could ever match ({RFC_POLICY})")
    return STSPolicy(text=text, mode=mode, max_age=max_age, mx=tuple(mx),
                     version=seen["version"], lines=tuple(lines),
                     extensions=tuple(extensions))


@dataclass(frozen=True, kw_only=True)
class PolicyResult(Result):
    """A policy file, read: ``verdict`` ``"valid"`` (``policy`` is set) or ``"invalid"``."""

    domain: str
    policy: STSPolicy | None = None

    def title(self) -> str:
        where = f" of {self.domain}" if self.domain else ""
        return f"MTA-STS policy{where}: {self.verdict}"


def read_policy(text: str | bytes, domain: str = "") -> PolicyResult:
    """Parse a policy file and explain it line by line (RFC 8461 section 3.2)."""
    trace = TraceBuilder()
    shown = text.decode("utf-8", "replace") if isinstance(text, bytes) else text
    trace.add("read the policy file", kind="info", detail=shown.rstrip("\r\n") or None)
    try:
        policy = parse_policy(text)
    except MTASTSError as exc:
        trace.add(str(exc), kind="error", rfc=RFC_POLICY)
        return PolicyResult(verdict="invalid", summary=f"{exc}: the sender must treat the "
                            "domain as having no valid policy.", trace=trace.freeze(),
                            domain=domain)
    trace.add("version: STSv1", kind="ok", rfc=RFC_POLICY)
    trace.add(f"mode: {policy.mode}: {MODES[policy.mode]}", kind="decision", rfc=RFC_APPLY)
    for pattern in policy.mx:
        what = ("any single label under " + pattern[2:] if pattern.startswith("*.")
                else "exactly this host")
        trace.add(f"mx: {pattern} ({what})", kind="info", rfc=RFC_MX)
    trace.add(f"max_age: {policy.max_age} s: a sender may keep this policy that long",
              kind="info", rfc=RFC_POLICY)
    for key, value in policy.extensions:
        trace.add(f"{key}: {value} (an extension, ignored)", kind="info")
    summary = (f"A valid policy in mode {policy.mode} for MX host(s) "
               f"{', '.join(policy.mx) or '(none)'}, to be cached for {policy.max_age} s.")
    return PolicyResult(verdict="valid", summary=summary, trace=trace.freeze(),
                        domain=domain, policy=policy)


# -- MX host validation -------------------------------------------------------------------


def mx_matches(pattern: str, host: str) -> bool:
    """Does ``host`` match the policy's ``mx`` ``pattern`` (RFC 8461 section 4.1)?

    Names compare without case and without a trailing dot. A pattern ``*.example.com``
    stands for exactly one whole left-most label: it matches ``mail.example.com`` but not
    ``example.com`` nor ``foo.bar.example.com``.
    """
    pattern = pattern.lower().rstrip(".")
    host = host.lower().rstrip(".")
    if pattern.startswith("*."):
        first, dot, rest = host.partition(".")
        return bool(first) and bool(dot) and rest == pattern[2:]
    return host == pattern


@dataclass(frozen=True, kw_only=True)
class MXMatch(Result):
    """Is an MX host one the policy allows? ``verdict`` ``"match"`` or ``"no-match"``."""

    host: str
    pattern: str | None = None

    def title(self) -> str:
        return f"MX {self.host} against the MTA-STS policy: {self.verdict}"


def match_mx(policy: STSPolicy, host: str) -> MXMatch:
    """Compare ``host`` with each ``mx`` pattern in turn, saying why each does or does
    not match (RFC 8461 section 4.1)."""
    trace = TraceBuilder()
    name = host.lower().rstrip(".")
    for pattern in policy.mx:
        if mx_matches(pattern, name):
            why = ("the wildcard stands for the left-most label "
                   f"{name.partition('.')[0]!r}" if pattern.startswith("*.") else
                   "the same name")
            trace.add(f"{name} matches mx: {pattern} ({why})", kind="ok", rfc=RFC_MX)
            return MXMatch(verdict="match", summary=f"{name} is an MX host the policy "
                           f"allows (mx: {pattern}).", trace=trace.freeze(), host=name,
                           pattern=pattern)
        if pattern.startswith("*.") and name.endswith(pattern[1:]):
            why = "the wildcard covers one label only, not " + repr(name[: -len(pattern) + 1])
        elif pattern.startswith("*.") and name == pattern[2:]:
            why = "the wildcard needs a label in front of " + pattern[2:]
        else:
            why = "a different name"
        trace.add(f"{name} does not match mx: {pattern} ({why})", kind="info", rfc=RFC_MX)
    summary = (f"{name} matches none of the policy's mx patterns "
               f"({', '.join(policy.mx) or 'none'}): in enforce mode a sender must not "
               "deliver to it.")
    trace.add(summary, kind="error", rfc=RFC_MX)
    return MXMatch(verdict="no-match", summary=summary, trace=trace.freeze(), host=name)


__all__ = [
    "MAX_AGE_LIMIT", "MODES", "MTASTSError", "MXMatch", "PolicyResult", "RecordResult",
    "STSPolicy", "STSRecord", "WELL_KNOWN_PATH", "match_mx", "mx_matches", "parse_policy",
    "parse_record", "read_policy", "read_record",
]
