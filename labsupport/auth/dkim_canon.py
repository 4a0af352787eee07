"""DKIM canonicalization: the exact bytes a signature covers (RFC 6376 section 3.4).

A DKIM signature does not cover the message as it travels but a *canonical* form of it,
so that harmless changes on the way (re-folded header lines, trailing spaces, extra empty
lines at the end) do not break it. There are two algorithms, chosen separately for the
header and for the body (the ``c=`` tag, ``header/body``):

* ``simple`` changes almost nothing: header fields exactly as written, the body with
  its empty lines at the end reduced to one line end;
* ``relaxed`` also lower-cases header field names, unfolds header lines, squeezes runs
  of spaces and tabs into one space, and drops spaces and tabs at line ends.

The four functions named as the RFC names them (:func:`canonicalize_header_simple`,
:func:`canonicalize_header_relaxed`, :func:`canonicalize_body_simple`,
:func:`canonicalize_body_relaxed`) work on bytes, as the RFC does. :func:`parse_message`
splits a message into its header fields and body the way a verifier reads it (line ends
made CR LF, RFC 5322 section 2.1), and :func:`show_whitespace` makes CR, LF, spaces and
tabs visible for traces ("␍␊", "·", "→").

Introduced in ``notebooks/05-dkim.ipynb``.
"""

from __future__ import annotations

import re
from typing import NamedTuple

RFC_CANON = "RFC 6376 section 3.4"
RFC_HEADER_SIMPLE = "RFC 6376 section 3.4.1"
RFC_HEADER_RELAXED = "RFC 6376 section 3.4.2"
RFC_BODY_SIMPLE = "RFC 6376 section 3.4.3"
RFC_BODY_RELAXED = "RFC 6376 section 3.4.4"
RFC_MESSAGE_FORMAT = "RFC 5322 section 2.1"
RFC_FIELDS = "RFC 5322 section 2.2"

#: The two canonicalization algorithms (RFC 6376 section 3.4).
CANONICALIZATIONS = ("simple", "relaxed")

CRLF = b"\r\n"

_BARE_LF = re.compile(rb"(?<!\r)\n")
# A header field starts with its name, printable US-ASCII except the colon (ftext,
# RFC 5322 section 3.6.8), then the colon; white space before the colon is obsolete
# syntax that readers accept (RFC 5322 section 4.5). A field ends at a CR LF that is not
# followed by white space (a continuation line).
_FIELD_START = re.compile(rb"([\x21-\x39\x3b-\x7e]+)[ \t]*:")
_FIELD_BREAK = re.compile(rb"\r\n(?![ \t])")


class MessageFormatError(ValueError):
    """A message whose header section cannot be read (a line without a colon, a
    continuation line with nothing to continue)."""


# -- line ends ---------------------------------------------------------------------------


def to_crlf(data: bytes) -> bytes:
    """Bare LF line ends made CR LF, as a message on the wire has them (RFC 5322 2.1).

    Messages stored in files often end their lines with LF alone; a verifier reads them
    as CR LF. A CR LF already there is left alone, and so is a CR without LF.
    """
    if data.count(b"\n") == data.count(CRLF):
        return data
    return _BARE_LF.sub(CRLF, data)


# -- the four canonicalization algorithms ------------------------------------------------


def canonicalize_header_simple(field: bytes) -> bytes:
    """The ``simple`` header canonicalization (RFC 6376 section 3.4.1).

    The header field is not changed in any way: name, folding, spaces and case stay as
    written. ``field`` is one whole field (``b"Subject: hi\\r\\n"``, with any
    continuation lines); bare LF line ends are read as CR LF and a missing final CR LF
    is added, since every header field ends with one.
    """
    field = to_crlf(field)
    return field if field.endswith(CRLF) else field + CRLF


def canonicalize_header_relaxed(field: bytes) -> bytes:
    """The ``relaxed`` header canonicalization (RFC 6376 section 3.4.2).

    * the field name is lower-cased (``Subject`` becomes ``subject``);
    * the field is unfolded: the CR LF of each continuation line is removed;
    * every run of spaces and tabs becomes one space;
    * spaces and tabs at the end of the value, and around the colon, are removed.

    ``field`` is one whole field, as for :func:`canonicalize_header_simple`.

    >>> canonicalize_header_relaxed(b"B : Y\\t\\r\\n\\tZ  \\r\\n")
    b'b:Y Z\\r\\n'
    """
    return _relaxed_header(to_crlf(field))


def canonicalize_body_simple(body: bytes) -> bytes:
    """The ``simple`` body canonicalization (RFC 6376 section 3.4.3).

    Empty lines at the end of the body are removed, and the body ends with exactly one
    CR LF. An empty body (or one made only of empty lines) becomes a single CR LF.
    Nothing else changes. Bare LF line ends are read as CR LF.

    >>> canonicalize_body_simple(b" C \\r\\nD \\t E\\r\\n\\r\\n\\r\\n")
    b' C \\r\\nD \\t E\\r\\n'
    """
    return _simple_body(to_crlf(body))


def canonicalize_body_relaxed(body: bytes) -> bytes:
    """The ``relaxed`` body canonicalization (RFC 6376 section 3.4.4).

    * spaces and tabs at the end of every line are removed;
    * every other run of spaces and tabs becomes one space;
    * empty lines at the end of the body are removed;
    * a non-empty body that does not end with CR LF gets one.

    An empty body stays empty (unlike ``simple``, which makes it one CR LF).

    >>> canonicalize_body_relaxed(b" C \\r\\nD \\t E\\r\\n\\r\\n\\r\\n")
    b' C\\r\\nD E\\r\\n'
    """
    return _relaxed_body(to_crlf(body))


def canonicalize_header(field: bytes, algorithm: str) -> bytes:
    """One header field canonicalized with ``algorithm`` (``"simple"`` or ``"relaxed"``)."""
    if algorithm == "relaxed":
        return canonicalize_header_relaxed(field)
    if algorithm == "simple":
        return canonicalize_header_simple(field)
    raise ValueError(f"unknown canonicalization {algorithm!r}; use 'simple' or 'relaxed'")


def canonicalize_body(body: bytes, algorithm: str) -> bytes:
    """The body canonicalized with ``algorithm`` (``"simple"`` or ``"relaxed"``)."""
    if algorithm == "relaxed":
        return canonicalize_body_relaxed(body)
    if algorithm == "simple":
        return canonicalize_body_simple(body)
    raise ValueError(f"unknown canonicalization {algorithm!r}; use 'simple' or 'relaxed'")


# -- the same, for text already read as CR LF (no checks: the hot path) -------------------


def _relaxed_header(field: bytes) -> bytes:
    name, _, value = field.partition(b":")
    value = value.replace(CRLF, b"")
    if b"\t" in value:
        value = value.replace(b"\t", b" ")
    while b"  " in value:
        value = value.replace(b"  ", b" ")
    return name.rstrip(b" \t").lower() + b":" + value.strip(b" ") + CRLF


def _strip_trailing_empty_lines(body: bytes) -> bytes:
    """``body`` without the CR LF pairs at its very end (a bare CR there stays)."""
    end = len(body)
    while end >= 2 and body[end - 1] == 10 and body[end - 2] == 13:
        end -= 2
        if len(body) - end > 256:  # a long run of empty lines: let C do the work
            stripped = body.rstrip(b"\r\n")
            tail = body[len(stripped):]
            end = len(tail)
            while end >= 2 and tail[end - 2] == 13 and tail[end - 1] == 10:
                end -= 2
            return stripped + tail[:end]
    return body[:end]


def _simple_body(body: bytes) -> bytes:
    if body.endswith(b"\r\n\r\n") or not body.endswith(CRLF):
        body = _strip_trailing_empty_lines(body) + CRLF
    return body


def _relaxed_body(body: bytes) -> bytes:
    if not body:
        return body
    if not body.endswith(CRLF):
        body += CRLF
    if b"\t" in body:
        body = body.replace(b"\t", b" ")
    # Squeeze runs of spaces with split and join (plain bytes searches, far faster than
    # a regular expression over the whole body). One pass leaves a double space only
    # where a run was three or more long: then a piece is empty or starts with a space.
    while True:
        pieces = body.split(b"  ")
        if len(pieces) == 1:
            break
        body = b" ".join(pieces)
        for piece in pieces[1:]:
            if not piece or piece[0] == 32:
                break
        else:
            break
    # After squeezing, white space at a line end is exactly one space.
    pieces = body.split(b" \r\n")
    if len(pieces) > 1:
        body = CRLF.join(pieces)
    if body.endswith(b"\r\n\r\n") or body == CRLF:
        body = _strip_trailing_empty_lines(body)
        if body:
            body += CRLF
    return body


def canonical_body(body: bytes, algorithm: str) -> bytes:
    """Body canonicalization for text already read as CR LF (the verifier's path)."""
    return _relaxed_body(body) if algorithm == "relaxed" else _simple_body(body)


def canonical_header(field: bytes, algorithm: str) -> bytes:
    """Header canonicalization for a field already read as CR LF (the verifier's path)."""
    return _relaxed_header(field) if algorithm == "relaxed" else field


# -- reading a message -------------------------------------------------------------------


class HeaderField(NamedTuple):
    """One header field as the message has it.

    ``name`` is the field name as written (without spaces before the colon), ``key``
    the same in lower case for matching, and ``raw`` the whole field: name, colon, value,
    continuation lines, and the final CR LF.
    """

    name: bytes
    key: bytes
    raw: bytes

    @property
    def value(self) -> bytes:
        """Everything after the colon, continuation lines included, without the final CR LF."""
        return self.raw.partition(b":")[2][:-2]

    def text(self) -> str:
        """The field as text (UTF-8, RFC 8616), without the final line end."""
        return self.raw[:-2].decode("utf-8", "replace")


class ParsedMessage(NamedTuple):
    """A message read as a verifier reads it.

    ``headers`` in order, top first; ``body`` after the empty line; ``separator`` tells
    whether there was such an empty line (a message may have no body at all,
    RFC 5322 section 3.5); ``lf_fixed`` counts bare LF line ends read as CR LF;
    ``problems`` lists, in words, what makes the header section unreadable (empty when
    all is well); ``mbox_line`` is a leading mbox "From " line that was set aside.
    """

    headers: tuple[HeaderField, ...]
    body: bytes
    separator: bool = True
    lf_fixed: int = 0
    problems: tuple[str, ...] = ()
    mbox_line: bytes | None = None

    def fields(self, name: str | bytes) -> list[HeaderField]:
        """Every field called ``name`` (any case), top first."""
        key = (name.encode() if isinstance(name, str) else name).lower()
        return [h for h in self.headers if h.key == key]

    def count(self, name: str | bytes) -> int:
        return len(self.fields(name))

    @property
    def header_block(self) -> bytes:
        return b"".join(h.raw for h in self.headers)


_new_field = tuple.__new__


def parse_message(message: bytes | str) -> ParsedMessage:
    """Split ``message`` into header fields and body (RFC 5322 sections 2.1 and 2.2).

    Bare LF line ends are read as CR LF. A first line in mbox style (``From joe@...``,
    no colon after a field name) is set aside. Lines that are not header fields (no
    colon, a name with spaces, a continuation line at the very top) are not an
    exception: they are listed in ``problems`` so the caller can say what is wrong.
    Without an empty line the whole message is header (a message without body, RFC 5322
    section 3.5) unless a line there is not a header field, which usually means the
    empty line between header and body is missing.
    """
    if isinstance(message, str):
        message = message.encode("utf-8")
    lf = message.count(b"\n")
    crlf = message.count(CRLF)
    if lf != crlf:
        message = _BARE_LF.sub(CRLF, message)
    lf_fixed = lf - crlf

    if message.startswith(CRLF):
        return ParsedMessage((), message[2:], True, lf_fixed)
    end = message.find(b"\r\n\r\n")
    if end < 0:
        block, body, separator = message, b"", False
        if block and not block.endswith(CRLF):
            block += CRLF
    else:
        block, body, separator = message[: end + 2], message[end + 4:], True

    headers: list[HeaderField] = []
    problems: list[str] = []
    mbox_line: bytes | None = None
    pieces = _FIELD_BREAK.split(block)
    pieces.pop()  # the block ends with CR LF: the last piece is empty
    match = _FIELD_START.match
    for number, piece in enumerate(pieces):
        found = match(piece)
        if found is not None:
            name = found.group(1)
            headers.append(_new_field(HeaderField, (name, name.lower(), piece + CRLF)))
        elif number == 0 and piece.startswith(b"From "):
            mbox_line = piece
        else:
            line = 1 + number + sum(p.count(CRLF) for p in pieces[:number])
            problems.append(_not_a_field(piece, line))
    if problems and not separator:
        problems.append("the message has no empty line, so everything is read as header; "
                        "perhaps the empty line that separates header and body is missing "
                        f"({RFC_MESSAGE_FORMAT})")
    elif problems and headers:
        problems.append("lines that are not header fields among the header fields: perhaps "
                        "the empty line that separates header and body is missing "
                        f"({RFC_MESSAGE_FORMAT})")
    return ParsedMessage(tuple(headers), body, separator, lf_fixed, tuple(problems),
                         mbox_line)


def _not_a_field(piece: bytes, line: int) -> str:
    first = piece.split(CRLF, 1)[0]
    if piece[:1] in (b" ", b"\t"):
        return (f"line {line} starts with white space, so it continues a header field, "
                f"but there is none before it: {_quote(first)}")
    name, colon, _ = first.partition(b":")
    if not colon:
        return f"line {line} is not a header field (it has no colon): {_quote(first)}"
    return (f"line {line} is not a header field ({_quote(name.rstrip())} is not a field "
            f"name: no spaces or control characters allowed): {_quote(first)}")


def _quote(line: bytes, limit: int = 60) -> str:
    text = line.decode("utf-8", "replace")
    return repr(text if len(text) <= limit else text[:limit] + "…")


# -- making white space visible ----------------------------------------------------------

#: The marks used by :func:`show_whitespace`.
VISIBLE = {"\r\n": "␍␊", "\r": "␍", "\n": "␊", " ": "·", "\t": "→"}


def show_whitespace(data: bytes | str, *, max_lines: int | None = None,
                    max_octets: int = 65536) -> str:
    """``data`` with CR LF, spaces and tabs made visible, one text line per line.

    CR LF shows as "␍␊" at the end of its line, a lone CR as "␍", a lone LF as "␊", a
    space as "·", a tab as "→". Bytes that are not UTF-8 show as ``\\xNN``. With
    ``max_lines``, a longer text shows its first two thirds of that many lines and its
    last third, and says how much was left out between them; ``max_octets`` caps what is
    shown of a text without line ends.

    >>> show_whitespace(b"b:Y Z\\r\\n\\tx")
    'b:Y·Z␍␊\\n→x'
    """
    raw = data.encode("utf-8", "surrogateescape") if isinstance(data, str) else data
    if not raw:
        return "(empty)"
    if max_lines is not None and max_lines > 0:
        head = max(1, (2 * max_lines) // 3)
        tail = max_lines - head
        pieces = raw.split(b"\r\n", head)
        if len(pieces) > head:
            rest = pieces[-1]
            ends = rest.rsplit(b"\r\n", tail + 1) if tail else [rest]
            if len(ends) == tail + 2 or not tail:
                middle = ends[0] if tail else rest
                if middle:
                    shown_head = raw[: len(raw) - len(rest)]
                    shown_tail = rest[len(middle) + 2:] if tail else b""
                    lines = middle.count(b"\n") + 1
                    gap = (f"… {lines} line{'s' if lines != 1 else ''} ({len(middle) + 2} "
                           "octets) not shown …")
                    text = _visible(shown_head[:max_octets]) + "\n" + gap
                    return text + "\n" + _visible(shown_tail[:max_octets]) if shown_tail \
                        else text
    if len(raw) > max_octets:
        return _visible(raw[:max_octets]) + f"\n… {len(raw) - max_octets} more octets not shown"
    return _visible(raw)


def _visible(raw: bytes) -> str:
    if raw.isascii() and b"\t" not in raw:
        # The usual case, fast: "·" is in Latin-1, so one byte-for-byte translation
        # and one decoding; then the text is cut at CR LF (when every CR and LF is part
        # of a CR LF pair).
        text = raw.translate(_SPACE_TO_DOT).decode("latin-1")
        lines = text.split("\r\n")
        if text.count("\r") == len(lines) - 1 == text.count("\n"):
            return _joined(lines)
    lines = [piece.replace(b"\r", _CR_MARK).replace(b"\n", _LF_MARK).replace(b" ", _DOT)
             .replace(b"\t", _ARROW).decode("utf-8", "backslashreplace")
             for piece in raw.split(b"\r\n")]
    return _joined(lines)


def _joined(lines: list[str]) -> str:
    """Lines that were separated by CR LF, each shown with "␍␊" at its end."""
    ends = lines[-1] == ""
    if ends:
        lines.pop()
    text = "␍␊\n".join(lines)
    return text + "␍␊" if ends else text


_SPACE_TO_DOT = bytes.maketrans(b" ", "·".encode("latin-1"))
_DOT = "·".encode()
_ARROW = "→".encode()
_CR_MARK = "␍".encode()
_LF_MARK = "␊\n".encode()
