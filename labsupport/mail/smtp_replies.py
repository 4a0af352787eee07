"""The transcript client's replies and errors: what an SMTP server answers (RFC 5321).

:class:`Reply` is one server reply (a code, maybe an enhanced status code, and its lines
of text); :func:`parse_reply` reads the lines of one reply into it, checking the rules of
RFC 5321 section 4.2, and :func:`parse_extensions` reads the service extensions an EHLO
reply advertises. :data:`MAX_REPLY_LINE` and :data:`MAX_REPLY_LINES` bound how much of a
reply the client reads. Here too are the errors the client raises, all
:class:`SMTPClientError`, each with a sentence that says why it could not go on.

Part of the transcript client, :mod:`labsupport.mail.smtp`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from ..core.errors import LabError
from .replycodes import RFC_REPLIES, explain_reply

#: Longest reply line read before giving up. RFC 5321 section 4.5.3.1.5 sets 512 octets
#: (CRLF included) as the limit; the client is lenient and stops only at runaway input.
MAX_REPLY_LINE = 8192
#: Most lines one multi-line reply may have before the client gives up.
MAX_REPLY_LINES = 1000


# -- errors -------------------------------------------------------------------------------


class SMTPClientError(LabError):
    """The transcript client could not go on; the sentence says why."""


class SMTPUsageError(SMTPClientError, ValueError):
    """A call to the client was not well formed (a bad option, a command with a line break)."""


class SMTPConnectError(SMTPClientError, ConnectionError):
    """No connection: refused, unreachable, or a name that does not resolve."""


class SMTPTimeout(SMTPClientError, TimeoutError):
    """The server did not answer (or accept a connection) in time."""


class SMTPDisconnected(SMTPClientError, ConnectionError):
    """The connection closed while the client was waiting for the server."""


class SMTPTLSError(SMTPClientError):
    """TLS could not start: most often the server's certificate did not verify."""


class SMTPProtocolError(SMTPClientError):
    """The server sent something that is not an SMTP reply (RFC 5321 section 4.2)."""


# -- replies ------------------------------------------------------------------------------

_REPLY_LINE = re.compile(r"^([1-5][0-9][0-9])(?:([ -])(.*))?$", re.DOTALL)
_ENHANCED = re.compile(r"^([245])\.([0-9]{1,3})\.([0-9]{1,3})(?=\s|$)")


@dataclass(frozen=True)
class Reply:
    """One server reply: a code, maybe an enhanced status code, and its lines of text.

    RFC 5321 section 4.2: every line starts with the same three-digit code; all lines but
    the last put a hyphen after it, the last a space (or nothing). When the server uses
    enhanced status codes (RFC 2034, RFC 3463) they follow the code on each line; they are
    kept in ``enhanced`` and taken off ``lines``. ``raw`` holds the lines as received.
    """

    code: int
    lines: tuple[str, ...] = ("",)
    enhanced: str | None = None
    raw: tuple[str, ...] = ()

    @property
    def text(self) -> str:
        """The reply's text, lines joined with newlines, without codes."""
        return "\n".join(self.lines)

    @property
    def first_line(self) -> str:
        """The first line as received, for one-line summaries."""
        return self.raw[0] if self.raw else f"{self.code} {self.lines[0]}".rstrip()

    @property
    def reply_class(self) -> str:
        """``"2yz"``, ``"3yz"``, ``"4yz"`` or ``"5yz"`` (RFC 5321 section 4.2.1)."""
        return f"{self.code // 100}yz"

    @property
    def is_positive(self) -> bool:
        """2yz: the requested action was completed."""
        return 200 <= self.code < 300

    @property
    def is_intermediate(self) -> bool:
        """3yz: accepted so far; the server waits for more (354 after DATA, 334 in AUTH)."""
        return 300 <= self.code < 400

    @property
    def is_transient(self) -> bool:
        """4yz: not done, but the condition is temporary: try again later."""
        return 400 <= self.code < 500

    @property
    def is_permanent(self) -> bool:
        """5yz: not done, and repeating the same request will not help."""
        return 500 <= self.code < 600

    def explain(self) -> str:
        """What the code (and the enhanced code, if any) mean; see :func:`explain_reply`."""
        return explain_reply(f"{self.code} {self.enhanced}" if self.enhanced else self.code)

    def __str__(self) -> str:
        return "\n".join(self.raw) if self.raw else self.first_line


def parse_reply(lines: Sequence[str]) -> Reply:
    """Parse the lines of one reply (CRLF already removed) into a :class:`Reply`.

    Raises :class:`SMTPProtocolError` when a line is not ``code[SP|-]text``, when the
    codes differ between lines, or when a line other than the last says "more follows".
    RFC 5321 section 4.2.
    """
    if not lines:
        raise SMTPProtocolError("an empty reply: the server sent no reply line")
    code: str | None = None
    texts: list[str] = []
    for number, line in enumerate(lines, start=1):
        match = _REPLY_LINE.match(line)
        if match is None:
            raise SMTPProtocolError(
                f"the server sent {line[:80]!r}, which is not an SMTP reply line: a reply "
                f"line is a three-digit code, then a space or a hyphen, then text "
                f"({RFC_REPLIES})")
        if code is not None and match.group(1) != code:
            raise SMTPProtocolError(
                f"the lines of one reply carry different codes ({code} and "
                f"{match.group(1)}); every line of a multi-line reply repeats the same code "
                f"({RFC_REPLIES})")
        code = match.group(1)
        more = match.group(2) == "-"
        if more and number == len(lines):
            raise SMTPProtocolError(
                f"the reply ended on {line[:80]!r}, whose hyphen says more lines follow "
                f"({RFC_REPLIES})")
        if not more and number < len(lines):
            raise SMTPProtocolError(
                f"line {number} of the reply, {line[:80]!r}, ends the reply but more lines "
                f"came after it ({RFC_REPLIES})")
        texts.append(match.group(3) or "")
    assert code is not None
    enhanced: str | None = None
    found = _ENHANCED.match(texts[0])
    if found is not None and found.group(1) == code[0]:
        enhanced = found.group(0)
        texts = [
            t[len(enhanced):].lstrip() if t.startswith(enhanced) else t for t in texts
        ]
    return Reply(code=int(code), lines=tuple(texts), enhanced=enhanced, raw=tuple(lines))


def parse_extensions(reply: Reply) -> dict[str, str]:
    """The service extensions an EHLO reply advertises: keyword -> parameters.

    The first line greets; each further line is a keyword and its parameters
    (RFC 5321 section 4.1.1.1). Keywords are returned in upper case.
    """
    found: dict[str, str] = {}
    for line in reply.lines[1:]:
        keyword, _, params = line.strip().partition(" ")
        if keyword:
            found[keyword.upper()] = params.strip()
    return found

