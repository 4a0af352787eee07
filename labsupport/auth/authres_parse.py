"""Authentication-Results, read: an RFC 8601 value back into its parts (section 2.2).

:func:`parse_authres` reads a value, or a whole header line, into an
:class:`~labsupport.auth.authres_model.AuthResults`; what does not fit the grammar is an
:class:`~labsupport.auth.authres_model.AuthResultsError` naming the position where it
went wrong. The scanner reads the value as RFC 5322 and RFC 2045 write it: white space
and nested comments (CFWS), tokens, quoted strings, and property values that may be an
address. :func:`authserv_id_of` reads only the start, the authserv-id, for a value whose
rest may be malformed.
"""

from __future__ import annotations

import re

from .authres_model import (
    _BARE_PVALUE,
    _KEYWORD,
    HEADER_NAME,
    RFC_SYNTAX,
    AuthResults,
    AuthResultsError,
    MethodResult,
    Property,
    _is_token,
    _quoted,
)

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

