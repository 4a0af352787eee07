"""Authentication-Results, written: the header value for the SPF and DKIM results of one
message, folded into a header line (RFC 8601 section 2.2, RFC 5322 section 2.2.3).

:func:`format_authres` builds the value: one ``spf=`` resinfo saying which identity was
checked (``smtp.mailfrom`` or ``smtp.helo``), one ``dkim=`` per signature with the
signing domain, identity, selector, algorithm and the first characters of its ``b=``
(RFC 6008), then any further resinfo texts (the DMARC one). :func:`header_field` folds
the value into an ``Authentication-Results:`` line, one resinfo a line.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from .authres_model import (
    HEADER_NAME,
    LAB_AUTHSERV_ID,
    RFC_SYNTAX,
    AuthResultsError,
    _comment_text,
    _is_token,
    _pvalue,
)

if TYPE_CHECKING:
    from .dkim import DKIMResult, DKIMVerification
    from .spf import SPFResult

# -- writing -------------------------------------------------------------------------------


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

