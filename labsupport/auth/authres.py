"""Authentication-Results: what the receiving server found out, in one header (RFC 8601).

A receiving mail server checks SPF, DKIM and DMARC and writes the outcome into
one ``Authentication-Results`` header field on the message it stores, so that the mail
program and the filters after it need not repeat the checks::

    Authentication-Results: mx.lab.test;
        spf=pass (192.0.2.10 may send mail for northwind.test ...)
        smtp.mailfrom=alice@northwind.test;
        dkim=pass (...) header.d=northwind.test header.s=lab2026-rsa header.b=Ab12Cd34

The field starts with the *authserv-id*, the name of the service that did the checks
(the lab's is ``mx.lab.test``, :data:`LAB_AUTHSERV_ID`); then one *resinfo* per check:
``method=result``, an optional comment, and properties ``ptype.property=value`` that say
what was checked (RFC 8601 section 2.2): ``smtp.mailfrom`` and ``smtp.helo`` for SPF
(section 2.7.2), ``header.d``, ``header.i``, ``header.s``, ``header.a`` and ``header.b``
for DKIM (section 2.7.1 and RFC 6008), ``header.from`` for DMARC (RFC 9989). A message
with no check at all says ``none``.

Anyone can write such a header into a message, so a receiver trusts only the fields
carrying its own authserv-id, and removes those it finds on incoming mail before adding
its own (RFC 8601 section 5): :func:`strip_own`.

* :func:`format_authres` builds the header value from an
  :class:`~labsupport.auth.spf.SPFResult` and a :class:`~labsupport.auth.dkim.DKIMVerification`;
  :func:`header_field` folds it into a header line;
* :func:`parse_authres` reads a value back into :class:`AuthResults`;
* :func:`strip_own` removes the fields carrying an authserv-id from a raw message;
* :func:`authenticate` runs the checks the lab's MX role runs on every message (SPF,
  DKIM, then DMARC with :func:`labsupport.auth.dmarc.evaluate`) and returns an
  :class:`AuthEvaluation` with the disposition DMARC asks for; the MX role keeps the
  latest ones in ``lab.smtp.evaluations`` (an :class:`EvaluationLog`).

Introduced in ``notebooks/04-spf.ipynb`` and ``notebooks/05-dkim.ipynb``.
"""

from __future__ import annotations

import collections
import email.parser
import email.policy
import html
import re
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from ..core.errors import LabError
from ..core.results import html_table, text_table

if TYPE_CHECKING:
    from .dkim import DKIMResult, DKIMVerification
    from .spf import SPFResult

RFC_AUTHRES = "RFC 8601"
RFC_SYNTAX = "RFC 8601 section 2.2"
RFC_REMOVAL = "RFC 8601 section 5"

#: The lab's authserv-id: the MX role's host name (RFC 8601 section 2.5).
LAB_AUTHSERV_ID = "mx.lab.test"

#: The header field's name.
HEADER_NAME = "Authentication-Results"

#: The result words each method may report (RFC 8601 sections 2.7.1 to 2.7.3 and the
#: DMARC registration of RFC 7489 section 11.2).
METHOD_RESULTS: dict[str, tuple[str, ...]] = {
    "spf": ("none", "neutral", "pass", "fail", "softfail", "temperror", "permerror",
            "policy"),
    "dkim": ("none", "pass", "fail", "policy", "neutral", "temperror", "permerror"),
    "dmarc": ("none", "pass", "fail", "temperror", "permerror"),
}

#: The properties each method reports (RFC 8601 section 2.7, IANA "Email Authentication
#: Methods").
METHOD_PROPERTIES: dict[str, tuple[str, ...]] = {
    "spf": ("smtp.mailfrom", "smtp.helo"),
    "dkim": ("header.d", "header.i", "header.s", "header.a", "header.b"),
    "dmarc": ("header.from", "policy.dmarc"),  # policy.dmarc: RFC 9989 section 9.1
}

#: What the MX role does for each DMARC disposition (RFC 9989 section 5.8 leaves the
#: action to the receiver; these are the common ones).
DISPOSITION_ACTIONS = {"none": "INBOX", "quarantine": "Junk", "reject": "rejected (550 5.7.1)"}

#: How many evaluations the MX role keeps (``lab.smtp.evaluations``).
MAX_EVALUATIONS = 2000

#: Longest comment written into a resinfo (longer reasons are cut, with "...").
MAX_COMMENT = 160

# RFC 2045 token: any printable ASCII except SPACE and tspecials.
_TSPECIALS = set('()<>@,;:\\"/[]?=')
_KEYWORD = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9_-]*[A-Za-z0-9])?")
# pvalue without quotes: [local-part "@"] domain-name, or a token (RFC 8601 section 2.2).
_ADDRESS_PVALUE = re.compile(
    r"(?:[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*)?"
    r"@[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*")
# What the parser accepts without quotes (lenient: real fields carry b= values bare).
_BARE_PVALUE = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~.\-\u0080-\U0010ffff@]+")


class AuthResultsError(LabError, ValueError):
    """An Authentication-Results value that does not follow RFC 8601 section 2.2."""


# -- the parsed header --------------------------------------------------------------------


@dataclass(frozen=True)
class Property:
    """One ``ptype.property=value`` of a resinfo, e.g. ``header.d=northwind.test``."""

    ptype: str
    name: str
    value: str

    @property
    def key(self) -> str:
        """``ptype.property`` in lower case, e.g. ``"smtp.mailfrom"``."""
        return f"{self.ptype}.{self.name}".lower()

    def __str__(self) -> str:
        return f"{self.ptype}.{self.name}={_pvalue(self.value)}"


@dataclass(frozen=True)
class MethodResult:
    """One resinfo: ``method=result``, its comment, its ``reason=`` and its properties."""

    method: str
    result: str
    version: str | None = None
    reason: str | None = None
    comment: str | None = None
    properties: tuple[Property, ...] = ()

    def get(self, key: str, default: str | None = None) -> str | None:
        """The value of property ``key`` (``"header.d"``), or ``default``."""
        wanted = key.lower()
        return next((p.value for p in self.properties if p.key == wanted), default)

    @property
    def props(self) -> dict[str, str]:
        """The properties as a dict, ``{"header.d": "northwind.test", ...}``."""
        return {p.key: p.value for p in self.properties}

    def __str__(self) -> str:
        text = self.method + (f"/{self.version}" if self.version else "") + f"={self.result}"
        if self.comment:
            text += f" ({_comment_text(self.comment)})"
        if self.reason is not None:
            text += f" reason={_quoted(self.reason)}"
        return " ".join([text, *(str(p) for p in self.properties)])


@dataclass(frozen=True)
class AuthResults:
    """A parsed Authentication-Results value (RFC 8601 section 2.2).

    ``results`` holds one :class:`MethodResult` per resinfo, in order; it is empty when
    the value says ``none`` (no check was made).
    """

    authserv_id: str
    results: tuple[MethodResult, ...] = ()
    version: str | None = None

    def find(self, method: str) -> MethodResult | None:
        """The first result of ``method`` (``"spf"``, ``"dkim"``), or None."""
        return next(iter(self.all(method)), None)

    def all(self, method: str) -> list[MethodResult]:
        """Every result of ``method``, in order (DKIM has one per signature)."""
        return [r for r in self.results if r.method.lower() == method.lower()]

    def methods(self) -> list[str]:
        return [r.method for r in self.results]

    def text(self) -> str:
        """The value written out again (one line)."""
        head = self.authserv_id if _is_token(self.authserv_id) else _quoted(self.authserv_id)
        if self.version:
            head += f" {self.version}"
        if not self.results:
            return f"{head}; none"
        return "; ".join([head, *(str(r) for r in self.results)])

    def __str__(self) -> str:
        return self.text()

    def _repr_html_(self) -> str:
        rows: list[list[object]] = [
            [r.method, r.result, " ".join(str(p) for p in r.properties),
             r.comment or r.reason or ""] for r in self.results]
        return html_table(["method", "result", "properties", "comment"], rows,
                          caption=f"Authentication-Results by {html.escape(self.authserv_id)}")


# -- writing -------------------------------------------------------------------------------


def _is_token(text: str) -> bool:
    return bool(text) and all(0x20 < ord(c) < 0x7F and c not in _TSPECIALS for c in text)


def _quoted(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _pvalue(text: str) -> str:
    """A property value: bare when it is a token or ``[local-part]@domain`` (RFC 8601
    section 2.2), otherwise a quoted string."""
    if _is_token(text) or _ADDRESS_PVALUE.fullmatch(text):
        return text
    return _quoted(text)


def _comment_text(text: str, limit: int = MAX_COMMENT) -> str:
    """``text`` as the inside of an RFC 5322 comment: one line, ( ) and \\ escaped."""
    flat = " ".join(text.split())
    if len(flat) > limit:
        flat = flat[:limit - 3].rstrip() + "..."
    return re.sub(r"([()\\])", r"\\\1", flat)


def _spf_resinfo(spf: SPFResult) -> str:
    parts = [f"spf={spf.verdict}"]
    if spf.summary:
        parts.append(f"({_comment_text(spf.summary)})")
    if spf.identity == "helo":
        parts.append(f"smtp.helo={_pvalue(spf.domain or spf.helo or '')}")
    else:
        parts.append(f"smtp.mailfrom={_pvalue(spf.sender)}")
    return " ".join(parts)


def _dkim_resinfo(sig: DKIMResult) -> str:
    parts = [f"dkim={sig.verdict}"]
    if sig.summary:
        parts.append(f"({_comment_text(sig.summary)})")
    if sig.domain:
        parts.append(f"header.d={_pvalue(sig.domain)}")
    if sig.identity:
        parts.append(f"header.i={_pvalue(sig.identity)}")
    if sig.selector:
        parts.append(f"header.s={_pvalue(sig.selector)}")
    if sig.algorithm:
        parts.append(f"header.a={_pvalue(sig.algorithm)}")
    b = "".join(dict(sig.tags).get("b", "").split())[:8]
    if b:  # RFC 6008: the first characters of b=, to tell signatures apart
        parts.append(f"header.b={_pvalue(b)}")
    return " ".join(parts)


def format_authres(authserv_id: str = LAB_AUTHSERV_ID, spf: SPFResult | None = None,
                   dkim: DKIMVerification | None = None, *,
                   extra: Iterable[str] = ()) -> str:
    """The Authentication-Results value for these results (RFC 8601 section 2.2).

    One ``spf=`` resinfo for the SPF result (``smtp.mailfrom``, or ``smtp.helo`` when
    the HELO identity was checked), one ``dkim=`` per DKIM signature (``dkim=none``
    when the message has none), then the ``extra`` resinfo texts (``"dmarc=pass
    header.from=northwind.test"``). With nothing at all the value is ``<id>; none``.
    The value is one line; :func:`header_field` folds it.
    """
    if not authserv_id or not _is_token(authserv_id):
        raise AuthResultsError(f"{authserv_id!r} is not an authserv-id: use a host name such "
                               f"as {LAB_AUTHSERV_ID!r} ({RFC_SYNTAX})")
    resinfos: list[str] = []
    if spf is not None:
        resinfos.append(_spf_resinfo(spf))
    if dkim is not None:
        if dkim.signatures:
            resinfos.extend(_dkim_resinfo(s) for s in dkim.signatures)
        else:
            resinfos.append(f"dkim={dkim.verdict}" + (
                f" ({_comment_text(dkim.summary)})" if dkim.summary else ""))
    resinfos.extend(extra)
    if not resinfos:
        return f"{authserv_id}; none"
    return "; ".join([authserv_id, *resinfos])


def _top_level_split(value: str) -> list[str]:
    """``value`` split at each "; " outside comments and quoted strings."""
    pieces: list[str] = []
    depth = 0
    quoted = escaped = False
    start = 0
    for i, char in enumerate(value):
        if escaped:
            escaped = False
        elif char == "\\":
            escaped = True
        elif quoted:
            quoted = char != '"'
        elif char == '"':
            quoted = True
        elif char == "(":
            depth += 1
        elif char == ")":
            depth = max(0, depth - 1)
        elif char == ";" and depth == 0 and value[i + 1:i + 2] == " ":
            pieces.append(value[start:i])
            start = i + 2
    pieces.append(value[start:])
    return pieces


def header_field(value: str, *, name: str = HEADER_NAME) -> bytes:
    """``Authentication-Results: <value>`` folded before each resinfo (and before a long
    comment), ending in CR LF, as UTF-8 bytes (RFC 5322 section 2.2.3)."""
    pieces = _top_level_split(value)
    lines = [f"{name}: {pieces[0]}" + (";" if len(pieces) > 1 else "")]
    for number, piece in enumerate(pieces[1:], start=2):
        end = ";" if number < len(pieces) else ""
        comment = piece.find(" (")
        close = piece.rfind(") ")
        if len(piece) > 76 and comment > 0 and close > comment:
            lines += [f"\t{piece[:comment]}", f"\t{piece[comment + 1:close + 1]}",
                      f"\t{piece[close + 2:]}{end}"]
        else:
            lines.append(f"\t{piece}{end}")
    return ("\r\n".join(lines) + "\r\n").encode("utf-8")


# -- reading -------------------------------------------------------------------------------


class _Scanner:
    """Reads an unfolded header value: CFWS (white space and nested comments), tokens,
    quoted strings; remembers the comments it skipped."""

    def __init__(self, text: str) -> None:
        self.text = re.sub(r"\r?\n(?=[ \t])", "", text)
        self.pos = 0
        self.comments: list[str] = []

    def error(self, what: str) -> AuthResultsError:
        shown = self.text[:self.pos] + " >>>" + self.text[self.pos:]
        return AuthResultsError(f"{what} at position {self.pos}: {shown!r} ({RFC_SYNTAX})")

    def at_end(self) -> bool:
        return self.pos >= len(self.text)

    def peek(self) -> str:
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def cfws(self) -> None:
        while self.pos < len(self.text):
            char = self.text[self.pos]
            if char in " \t\r\n":
                self.pos += 1
            elif char == "(":
                self.comments.append(self._comment())
            else:
                return

    def _comment(self) -> str:
        depth = 0
        out: list[str] = []
        while self.pos < len(self.text):
            char = self.text[self.pos]
            self.pos += 1
            if char == "\\" and self.pos < len(self.text):
                out.append(self.text[self.pos])
                self.pos += 1
                continue
            if char == "(":
                depth += 1
                if depth == 1:
                    continue
            elif char == ")":
                depth -= 1
                if depth == 0:
                    return "".join(out).strip()
            out.append(char)
        raise self.error("a comment that is never closed")

    def expect(self, char: str) -> None:
        self.cfws()
        if self.peek() != char:
            raise self.error(f"expected {char!r}")
        self.pos += 1

    def keyword(self, what: str) -> str:
        self.cfws()
        found = _KEYWORD.match(self.text, self.pos)
        if not found:
            raise self.error(f"expected {what}")
        self.pos = found.end()
        return found.group()

    def quoted_string(self) -> str:
        self.pos += 1  # the opening quote
        out: list[str] = []
        while self.pos < len(self.text):
            char = self.text[self.pos]
            self.pos += 1
            if char == "\\" and self.pos < len(self.text):
                out.append(self.text[self.pos])
                self.pos += 1
            elif char == '"':
                return "".join(out)
            else:
                out.append(char)
        raise self.error("a quoted string that is never closed")

    def value(self, what: str) -> str:
        """RFC 2045 value: a token or a quoted string."""
        self.cfws()
        if self.peek() == '"':
            return self.quoted_string()
        start = self.pos
        while self.pos < len(self.text) and _is_token(self.text[self.pos]):
            self.pos += 1
        if start == self.pos:
            raise self.error(f"expected {what}")
        return self.text[start:self.pos]

    def pvalue(self) -> str:
        """RFC 8601 pvalue: a value, or [local-part@]domain-name."""
        self.cfws()
        if self.peek() == '"':
            local = self.quoted_string()
            domain = _BARE_PVALUE.match(self.text, self.pos)
            if domain and domain.group().startswith("@"):  # "quoted local-part"@domain
                self.pos = domain.end()
                return _quoted(local) + domain.group()
            return local
        found = _BARE_PVALUE.match(self.text, self.pos)
        if not found:
            raise self.error("expected a property value")
        self.pos = found.end()
        return found.group()


def parse_authres(value: str | bytes) -> AuthResults:
    """Read an Authentication-Results value (RFC 8601 section 2.2), or a whole header
    line starting with ``Authentication-Results:``; raises :class:`AuthResultsError` with
    the position of the first thing that does not fit."""
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    text = value.strip()
    if text.lower().startswith(HEADER_NAME.lower() + ":"):
        text = text[len(HEADER_NAME) + 1:]
    scan = _Scanner(text)
    authserv_id = scan.value("the authserv-id")
    scan.cfws()
    version = None
    digits = re.compile(r"[0-9]+").match(scan.text, scan.pos)
    if digits:
        version = digits.group()
        scan.pos = digits.end()
    results: list[MethodResult] = []
    scan.cfws()
    if scan.at_end():
        raise scan.error("expected ';' and a result (or 'none')")
    while True:
        scan.cfws()
        if scan.at_end():
            break
        scan.expect(";")
        scan.cfws()
        if scan.at_end():
            break  # a trailing ';' is tolerated
        scan.comments.clear()
        method = scan.keyword("a method name (spf, dkim, dmarc, ...)")
        scan.cfws()
        if method.lower() == "none" and scan.peek() in ("", ";"):
            continue  # no-result
        method_version = None
        if scan.peek() == "/":
            scan.pos += 1
            method_version = scan.keyword("a method version")
        scan.expect("=")
        result = scan.keyword(f"the result of {method}")
        scan.cfws()
        reason = None
        properties: list[Property] = []
        while not scan.at_end() and scan.peek() != ";":
            word = scan.keyword("'reason' or a property (ptype.property=value)")
            scan.cfws()
            if word.lower() == "reason" and scan.peek() == "=":
                scan.pos += 1
                reason = scan.value("the reason")
            else:
                scan.expect(".")
                name = scan.keyword(f"a property name after {word}.")
                scan.expect("=")
                properties.append(Property(word, name, scan.pvalue()))
            scan.cfws()
        comment = "; ".join(scan.comments) or None
        results.append(MethodResult(method, result.lower(), method_version, reason, comment,
                                    tuple(properties)))
    return AuthResults(authserv_id, tuple(results), version)


def authserv_id_of(value: str | bytes) -> str | None:
    """The authserv-id an Authentication-Results value starts with, or None when it
    cannot be read (only the start is read: the rest may be malformed)."""
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    scan = _Scanner(value.strip())
    try:
        return scan.value("the authserv-id")
    except AuthResultsError:
        return None


# -- removing forged fields ----------------------------------------------------------------


def _header_fields(head: bytes) -> list[list[bytes]]:
    """The header section as fields, each a list of its physical lines (with endings)."""
    fields: list[list[bytes]] = []
    for line in head.splitlines(keepends=True):
        if line[:1] in (b" ", b"\t") and fields:
            fields[-1].append(line)
        else:
            fields.append([line])
    return fields


def strip_own(raw: bytes, authserv_id: str = LAB_AUTHSERV_ID) -> bytes:
    """``raw`` without the Authentication-Results fields that carry ``authserv_id``.

    RFC 8601 section 5: a border MTA removes such fields from incoming mail before
    adding its own, since only it may speak in its name; anyone else's fields stay (the
    authserv-id is compared without regard to case). Line endings and every other byte
    are kept.
    """
    wanted = authserv_id.lower()
    for separator in (b"\r\n\r\n", b"\n\n"):
        cut = raw.find(separator)
        if cut >= 0:
            split_at = cut + len(separator) // 2
            head, rest = raw[:split_at], raw[split_at:]
            break
    else:
        head, rest = raw, b""
    kept: list[bytes] = []
    for lines in _header_fields(head):
        name, colon, value = b"".join(lines).partition(b":")
        if colon and name.strip().lower() == HEADER_NAME.lower().encode():
            found = authserv_id_of(value)
            if found is not None and found.lower() == wanted:
                continue
        kept.extend(lines)
    return b"".join(kept) + rest


# -- what the MX role does -----------------------------------------------------------------


@dataclass(frozen=True)
class AuthEvaluation:
    """What the MX role found out about one message, and the header it wrote.

    ``spf`` is the :class:`~labsupport.auth.spf.SPFResult` (client address, MAIL FROM, HELO),
    ``dkim`` the :class:`~labsupport.auth.dkim.DKIMVerification` of every signature,
    ``dmarc`` the :class:`~labsupport.auth.dmarc.DMARCResult` (None when DMARC was not
    evaluated); ``header`` is the Authentication-Results value stamped on the stored
    message, and :attr:`action` what the MX role did with it.
    """

    time: float
    client_ip: str
    helo: str | None
    mail_from: str
    recipients: tuple[str, ...]
    message_id: str | None
    spf: SPFResult | None
    dkim: DKIMVerification | None
    header: str
    authserv_id: str = LAB_AUTHSERV_ID
    queue_id: str | None = None
    subject: str | None = field(default=None, repr=False)
    dmarc: Any = None
    #: Why the MX role did not apply the policy DMARC asked for (RFC 9990's
    #: ``local_policy`` override), or None.
    policy_override: str | None = None

    @property
    def dmarc_result(self) -> str:
        """The DMARC verdict (``pass``, ``fail``, ``none``...), ``none`` if not evaluated."""
        return str(self.dmarc.verdict) if self.dmarc is not None else "none"

    @property
    def requested_disposition(self) -> str:
        """What the From domain's DMARC policy asks for this message: ``none``,
        ``quarantine`` or ``reject`` (``none`` when DMARC was not evaluated)."""
        if self.dmarc is None:
            return "none"
        return str(getattr(self.dmarc, "disposition", "none") or "none")

    @property
    def disposition(self) -> str:
        """The disposition applied: the requested one, or ``none`` when a local policy
        overrode it (:attr:`policy_override`)."""
        return "none" if self.policy_override else self.requested_disposition

    @property
    def dmarc_reasons(self) -> tuple[tuple[str, str | None], ...]:
        """The policy override reasons an aggregate report gives (RFC 9990)."""
        return (("local_policy", self.policy_override),) if self.policy_override else ()

    @property
    def action(self) -> str:
        """What the MX role does with the message: ``rejected (550 5.7.1)``, ``Junk``
        (quarantine) or ``INBOX``."""
        return DISPOSITION_ACTIONS.get(self.disposition, "INBOX")

    @property
    def results(self) -> AuthResults:
        """The header, parsed."""
        return parse_authres(self.header)

    @property
    def spf_result(self) -> str:
        return self.spf.verdict if self.spf is not None else "none"

    @property
    def dkim_results(self) -> tuple[str, ...]:
        return self.dkim.results if self.dkim is not None else ()

    def as_row(self) -> list[object]:
        stamp = datetime.fromtimestamp(self.time, tz=UTC).strftime("%H:%M:%S")
        dkim = ", ".join(f"{s.verdict} ({s.domain or '?'})" for s in self.dkim.signatures) \
            if self.dkim is not None and self.dkim.signatures else "none"
        return [stamp, self.client_ip, self.mail_from or "<>",
                ", ".join(self.recipients), self.spf_result, dkim, self.dmarc_result,
                self.action]

    def text(self) -> str:
        lines = [f"message {self.message_id or '(no Message-ID)'} from {self.client_ip}, "
                 f"MAIL FROM <{self.mail_from}> to {', '.join(self.recipients)}",
                 f"Authentication-Results: {self.header}"]
        if self.spf is not None:
            lines.append("  SPF: " + self.spf.summary)
        if self.dkim is not None:
            lines.append("  DKIM: " + self.dkim.summary)
        if self.dmarc is not None:
            lines.append(f"  DMARC: {self.dmarc.summary} -> {self.action}")
        if self.policy_override:
            lines.append(f"  policy not applied: {self.policy_override}")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.text()

    def _repr_html_(self) -> str:
        parts = [f"<p><b>Authentication-Results:</b> <code>{html.escape(self.header)}</code></p>"]
        if self.spf is not None:
            parts.append(f"<details><summary>SPF: {html.escape(self.spf.verdict)}</summary>"
                         f"{self.spf._repr_html_()}</details>")
        if self.dkim is not None:
            parts.append(f"<details><summary>DKIM: {html.escape(self.dkim.verdict)}</summary>"
                         f"{self.dkim._repr_html_()}</details>")
        if self.dmarc is not None:
            parts.append(f"<details><summary>DMARC: {html.escape(self.dmarc_result)}, "
                         f"{html.escape(self.action)}</summary>"
                         f"{self.dmarc._repr_html_()}</details>")
        return "".join(parts)


class EvaluationLog:
    """The MX role's latest evaluations (``lab.smtp.evaluations``), newest last, at most
    ``maxlen``; ``lab.reset()`` empties it. Thread-safe; indexable like a list."""

    HEADERS = ["time (UTC)", "client", "MAIL FROM", "recipients", "SPF", "DKIM", "DMARC",
               "action"]

    def __init__(self, maxlen: int = MAX_EVALUATIONS) -> None:
        self._items: collections.deque[AuthEvaluation] = collections.deque(maxlen=maxlen)
        self._lock = threading.Lock()

    def append(self, evaluation: AuthEvaluation) -> None:
        with self._lock:
            self._items.append(evaluation)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()

    def all(self) -> list[AuthEvaluation]:
        with self._lock:
            return list(self._items)

    def last(self) -> AuthEvaluation | None:
        """The newest evaluation, or None."""
        with self._lock:
            return self._items[-1] if self._items else None

    def for_recipient(self, address: str) -> list[AuthEvaluation]:
        """The evaluations of messages that went to ``address``, oldest first."""
        wanted = address.lower()
        return [e for e in self.all() if wanted in (r.lower() for r in e.recipients)]

    def __len__(self) -> int:
        return len(self._items)

    def __iter__(self) -> Iterator[AuthEvaluation]:
        return iter(self.all())

    def __getitem__(self, index: int) -> AuthEvaluation:
        return self.all()[index]

    def __bool__(self) -> bool:
        return bool(self._items)

    def __str__(self) -> str:
        return text_table(self.HEADERS, [e.as_row() for e in self.all()[-20:]])

    def _repr_html_(self) -> str:
        return html_table(self.HEADERS, [e.as_row() for e in self.all()[-20:]],
                          caption="MX role: SPF, DKIM and DMARC of the latest messages "
                                  "(last 20)")


def _header_value(raw: bytes, name: str) -> str | None:
    parsed = email.parser.BytesHeaderParser(policy=email.policy.compat32).parsebytes(raw)
    value = parsed.get(name)
    return " ".join(str(value).split()) if value is not None else None


def authenticate(message: bytes, *, client_ip: str, mail_from: str, helo: str | None,
                 resolver: Any, authserv_id: str = LAB_AUTHSERV_ID,
                 recipients: Iterable[str] = (), now: Any = None,
                 queue_id: str | None = None, dmarc: bool = True,
                 dmarc_method: str = "treewalk") -> AuthEvaluation:
    """Check SPF (RFC 7208, the MAIL FROM identity, or postmaster@HELO for ``<>``),
    every DKIM signature (RFC 6376) of ``message`` and then DMARC (RFC 9989, with
    ``dmarc_method``: the tree walk, or ``"psl"`` as RFC 7489 did) as the MX role does,
    and build the one Authentication-Results value for them (``dmarc=False``: SPF and
    DKIM only).

    ``resolver`` follows dnspython's ``Resolver.resolve`` contract; the MX role gives
    the lab's in-memory zones (``lab.zones``), never a resolver that asks the lab's DNS
    server over UDP, which shares its event loop. ``now`` is the time for DKIM's
    ``x=`` and SPF's ``%{t}`` (a :class:`~labsupport.core.clock.LabClock`, seconds or None).
    """
    from .dkim import verify
    from .spf import SPFArgumentError, spf_verdict

    if now is None:
        seconds = time.time()
    elif isinstance(now, datetime):
        seconds = now.timestamp()
    elif isinstance(now, int | float):
        seconds = float(now)
    else:
        seconds = float(now.time())  # a LabClock
    try:
        spf: SPFResult | None = spf_verdict(client_ip, mail_from, helo or "", resolver,
                                            receiver=authserv_id, timestamp=int(seconds))
    except SPFArgumentError:
        spf = None  # no address to check (a client address the lab cannot read)
    dkim = verify(message, resolver, now=seconds)
    dmarc_result: Any = None
    extra: list[str] = []
    if dmarc:
        from .dmarc import evaluate

        dmarc_result = evaluate(message, mail_from=mail_from, spf=spf, dkim=dkim,
                                resolver=resolver, method=dmarc_method)
        extra.append(dmarc_result.authres())
    return AuthEvaluation(
        time=seconds, client_ip=client_ip, helo=helo, mail_from=mail_from,
        recipients=tuple(recipients), message_id=_header_value(message, "Message-ID"),
        spf=spf, dkim=dkim, header=format_authres(authserv_id, spf, dkim, extra=extra),
        authserv_id=authserv_id, queue_id=queue_id,
        subject=_header_value(message, "Subject"), dmarc=dmarc_result)


__all__ = [
    "HEADER_NAME", "LAB_AUTHSERV_ID", "METHOD_PROPERTIES", "METHOD_RESULTS", "AuthEvaluation",
    "AuthResults", "AuthResultsError", "EvaluationLog", "MethodResult", "Property",
    "authenticate", "authserv_id_of", "format_authres", "header_field", "parse_authres",
    "strip_own",
]
