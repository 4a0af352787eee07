"""Authentication-Results, the parsed header: its parts and how their values are written
(RFC 8601 section 2.2).

An Authentication-Results value is an *authserv-id*, then one *resinfo* per check:
``method=result``, an optional comment, ``reason=`` and properties
``ptype.property=value``. :class:`AuthResults` is the value read, :class:`MethodResult`
one resinfo and :class:`Property` one property; each writes itself back as text.

This module also holds what the reading and the writing share: the names and the
authserv-id of the lab, the results and properties each method reports, the grammar's
tokens, and the quoting of values, bare when RFC 8601 allows it and a quoted string
otherwise. :class:`AuthResultsError` is raised for a value that does not follow the
grammar.

Reading is in :mod:`labsupport.auth.authres_parse`, writing from the check results in
:mod:`labsupport.auth.authres_format`; :mod:`labsupport.auth.authres` is the public entry
point.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass

from ..core.errors import LabError
from ..core.results import html_table

RFC_AUTHRES = "RFC 8601"
RFC_SYNTAX = "RFC 8601 section 2.2"
RFC_REMOVAL = "RFC 8601 section 5"

#: The lab's authserv-id: the MX role's host name (RFC 8601 section 2.5).
LAB_AUTHSERV_ID = "mx.lab.test"

#: The header field's name.
HEADER_NAME = "Authentication-Results"

#: The result words each method may report (RFC 8601 sections 2.7.1 to 2.7.3, the
#: DMARC registration of RFC 7489 section 11.2 and the ARC one of RFC 8617).
METHOD_RESULTS: dict[str, tuple[str, ...]] = {
    "spf": ("none", "neutral", "pass", "fail", "softfail", "temperror", "permerror",
            "policy"),
    "dkim": ("none", "pass", "fail", "policy", "neutral", "temperror", "permerror"),
    "dmarc": ("none", "pass", "fail", "temperror", "permerror"),
    "arc": ("none", "pass", "fail"),
}

#: The properties each method reports (RFC 8601 section 2.7, IANA "Email Authentication
#: Methods").
METHOD_PROPERTIES: dict[str, tuple[str, ...]] = {
    "spf": ("smtp.mailfrom", "smtp.helo"),
    "dkim": ("header.d", "header.i", "header.s", "header.a", "header.b"),
    "dmarc": ("header.from", "policy.dmarc"),  # policy.dmarc: RFC 9989 section 9.1
    "arc": ("header.oldest-pass", "smtp.remote-ip"),  # RFC 8617
}

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


# -- writing values ------------------------------------------------------------------------


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

