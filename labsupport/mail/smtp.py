"""The transcript client: talk SMTP one line at a time and keep every line (RFC 5321).

:class:`SMTPSession` opens a connection to any lab listener and sends one command at a
time; each call returns the server's :class:`Reply` at once, so a notebook (or the
console in :mod:`labsupport.teach.widgets`) can go step by step. Every line that crosses the
wire is recorded with its direction, the way swaks shows it: ``->`` from the client,
``<-`` from the server, ``~>`` and ``<~`` inside TLS, ``===`` for notes. AUTH lines are
shown with their base64 decoded beside them, and lines that carry credentials outside
TLS are marked: base64 is an encoding, not encryption.

:func:`send_mail` runs a whole dialogue (EHLO, STARTTLS, AUTH, MAIL, RCPT, DATA, QUIT)
and returns a :class:`Transcript`: a result whose verdict says what became of the
message and which renders as text, as HTML and as a sequence diagram.

The client is written with sockets and :mod:`ssl`, not :mod:`smtplib`, so that nothing
is hidden. It also reads what arrives: :func:`explain_reply` knows the reply codes of
RFC 5321 section 4.2 and the enhanced status codes of RFC 3463 and its IANA registry,
and :func:`received_chain` reads a message's Received header fields hop by hop.

Introduced in ``notebooks/02-smtp-dialogue.ipynb``.
"""

from __future__ import annotations

import base64
import binascii
import html
import re
import socket
import ssl
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from email.message import Message
from pathlib import Path
from typing import Any

from ..core.errors import LabError
from ..core.results import Result, TraceBuilder
from .received import WITH_PROTOCOLS, Hop, received_chain
from .replycodes import (
    ENHANCED_CODES,
    REPLY_CLASSES,
    REPLY_CODES,
    RFC_AUTH,
    RFC_BANNER_554,
    RFC_CLOSING,
    RFC_HELO_FALLBACK,
    RFC_IMPLICIT_TLS,
    RFC_REPLIES,
    RFC_REPLY_CLASSES,
    RFC_STARTTLS,
    RFC_XCLIENT,
    CodeTable,
    ReplyCodeError,
    explain_reply,
    reply_code_table,
)

#: Longest reply line read before giving up. RFC 5321 section 4.5.3.1.5 sets 512 octets
#: (CRLF included) as the limit; the client is lenient and stops only at runaway input.
MAX_REPLY_LINE = 8192
#: Most lines one multi-line reply may have before the client gives up.
MAX_REPLY_LINES = 1000

#: Directions of transcript lines, as swaks shows them.
DIRECTIONS = {
    "->": "client to server",
    "<-": "server to client",
    "~>": "client to server, inside TLS",
    "<~": "server to client, inside TLS",
    "===": "a note from the client",
}

TLS_MODES = ("none", "starttls", "implicit")
AUTH_MECHANISMS = ("PLAIN", "LOGIN")


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


# -- transcript lines ---------------------------------------------------------------------


@dataclass(frozen=True)
class Line:
    """One line of the dialogue, as it crossed the wire (or a note from the client).

    ``direction`` is one of :data:`DIRECTIONS`; ``tls`` says whether the line travelled
    inside TLS; ``kind`` is ``"command"``, ``"reply"``, ``"data"`` (message content after
    354) or ``"note"``; ``end`` is False on every line of a multi-line reply or a message
    but the last. ``decoded`` holds the base64 of an AUTH exchange, decoded (NUL bytes
    shown as ``\\0``); ``credentials`` marks lines that carry a user name or password.
    """

    direction: str
    text: str
    tls: bool = False
    kind: str = "note"
    end: bool = True
    decoded: str | None = None
    credentials: bool = False

    @property
    def from_client(self) -> bool:
        return self.direction in ("->", "~>")

    @property
    def from_server(self) -> bool:
        return self.direction in ("<-", "<~")

    @property
    def exposed(self) -> bool:
        """True for a line that carries credentials outside TLS: anyone on the path reads it."""
        return self.credentials and not self.tls

    @property
    def prefix(self) -> str:
        """The direction as swaks prints it in front of the text, padded to four columns."""
        return {"->": " -> ", "~>": " ~> ", "<-": "<-  ", "<~": "<~  "}.get(
            self.direction, "=== ")

    def as_text(self) -> str:
        """The line as swaks prints it, with the decoded base64 and a warning beside it."""
        line = self.prefix + self.text
        if self.decoded is not None:
            line += f"    [base64 of: {self.decoded}]"
        if self.exposed:
            line += "  !! credentials sent in the clear"
        return line


def _shown(data: bytes) -> str:
    """Bytes from a base64 field, shown readably: NUL as \\0, other controls escaped."""
    text = data.decode("utf-8", errors="replace")
    out = []
    for char in text:
        if char == "\0":
            out.append("\\0")
        elif ord(char) < 32 or ord(char) == 127:
            out.append(f"\\x{ord(char):02x}")
        else:
            out.append(char)
    return "".join(out)


def decode_base64_text(text: str) -> str | None:
    """The base64 ``text`` decoded for display, or None when it is not base64.

    ``*`` (the client cancelling an AUTH exchange, RFC 4954 section 4) is shown as such.
    """
    text = text.strip()
    if text == "*":
        return "* (the client cancels the exchange)"
    if not text or text == "=":
        return None
    try:
        return _shown(base64.b64decode(text, validate=True))
    except (binascii.Error, ValueError):
        return None


def _b64(text: str) -> str:
    return base64.b64encode(text.encode("utf-8")).decode("ascii")


# -- message content ----------------------------------------------------------------------

_LINE_BREAK = re.compile(rb"\r\n|\r|\n")


def message_bytes(message: bytes | str | Message) -> bytes:
    """A message as bytes: text is encoded as UTF-8, an email.message object serialised."""
    if isinstance(message, Message):
        return message.as_bytes()
    if isinstance(message, str):
        return message.encode("utf-8")
    return bytes(message)


def dot_stuff(message: bytes | str | Message) -> bytes:
    """The message as it goes on the wire after DATA, end-of-data line included.

    Every line break becomes CRLF (a bare CR or LF is not allowed in SMTP, RFC 5321
    section 2.3.8), every line that starts with a period gets one more in front
    ("transparency", RFC 5321 section 4.5.2), and the content ends with CRLF . CRLF.
    The receiver takes the extra period off again, so a line starting with "." arrives
    intact.

    >>> dot_stuff("Hi\\n.hidden line\\n")
    b'Hi\\r\\n..hidden line\\r\\n.\\r\\n'
    """
    raw = message_bytes(message)
    lines = _LINE_BREAK.split(raw)
    if lines and lines[-1] == b"":
        lines.pop()  # the content ended with a line break
    stuffed = [b"." + line if line.startswith(b".") else line for line in lines]
    return b"".join(line + b"\r\n" for line in stuffed) + b".\r\n"


# -- the session --------------------------------------------------------------------------


def _xtext(value: str) -> str:
    """xtext (RFC 3461 section 4): '+', '=' and characters outside ! to ~ as +HH."""
    return "".join(
        c if "!" <= c <= "~" and c not in "+=" else "".join(f"+{b:02X}" for b in c.encode())
        for c in value
    )


def _path(address: str) -> str:
    """An address as a reverse- or forward-path: <...>; the empty address is <>."""
    address = address.strip()
    if address.startswith("<") and address.endswith(">"):
        return address
    return f"<{address}>"


def _params(params: Mapping[str, str | None] | Sequence[str] | None) -> str:
    if not params:
        return ""
    if isinstance(params, Mapping):
        words = [k if v is None else f"{k}={v}" for k, v in params.items()]
    else:
        words = list(params)
    return "".join(f" {w}" for w in words)


class SMTPSession:
    """An SMTP connection driven one command at a time, recording every line.

    ``implicit_tls`` starts TLS before the first byte, as on port 465 (RFC 8314);
    otherwise :meth:`starttls` upgrades the connection (RFC 3207). The server's
    certificate is checked against ``ca_file`` (the lab's CA file) for the name
    ``server_hostname`` (default: ``host``) unless ``verify`` is False. ``keylog_file``
    makes the TLS library write its session keys there, so a capture can be decrypted.

    Each method returns the server's :class:`Reply` as soon as it arrives. Problems a
    student can cause (a refused connection, a timeout, a certificate that does not
    verify, a server that hangs up) raise a :class:`SMTPClientError` with a sentence, and
    the same sentence appears in the transcript as a note.

    >>> session = SMTPSession("127.0.0.1", port)        # doctest: +SKIP
    >>> session.connect(); session.ehlo("client.lab.test")  # doctest: +SKIP
    """

    def __init__(self, host: str, port: int, *, implicit_tls: bool = False,
                 ca_file: str | Path | None = None, verify: bool = True,
                 server_hostname: str | None = None, keylog_file: str | Path | None = None,
                 timeout: float = 10.0) -> None:
        self.host = host
        self.port = int(port)
        self.implicit_tls = implicit_tls
        self.ca_file = Path(ca_file) if ca_file is not None else None
        self.verify = verify
        self.server_hostname = server_hostname
        self.keylog_file = keylog_file
        self.timeout = timeout
        #: Service extensions from the last EHLO reply (keyword -> parameters).
        self.extensions: dict[str, str] = {}
        #: True after a successful EHLO (and until TLS or XCLIENT starts afresh).
        self.esmtp = False
        #: True while the client sends message content (after 354, before the final ".").
        self.in_data = False
        self.tls_version: str | None = None
        self.tls_cipher: str | None = None
        self._sock: socket.socket | None = None
        self._buf = bytearray()
        self._lines: list[Line] = []
        self._replies: list[Reply] = []
        self._trace = TraceBuilder()
        self._auth_pending = False
        self._last_command = ""

    # -- state --------------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        return self._sock is not None

    @property
    def tls_active(self) -> bool:
        return self.tls_version is not None

    @property
    def replies(self) -> tuple[Reply, ...]:
        return tuple(self._replies)

    @property
    def last_reply(self) -> Reply | None:
        return self._replies[-1] if self._replies else None

    def has_extension(self, keyword: str) -> bool:
        """Did the last EHLO reply advertise ``keyword`` (e.g. ``"STARTTLS"``)?"""
        return keyword.upper() in self.extensions

    @property
    def transcript(self) -> Transcript:
        """Every line so far, as a :class:`Transcript` (verdict ``"open"`` or ``"closed"``)."""
        commands = sum(1 for line in self._lines if line.kind == "command")
        if self.connected:
            verdict = "open"
        elif self._lines:
            verdict = "closed"
        else:
            verdict = "not connected"
        last = self.last_reply
        summary = (f"{commands} command{'s' if commands != 1 else ''} and "
                   f"{len(self._replies)} repl{'ies' if len(self._replies) != 1 else 'y'} "
                   f"so far with {self.host}:{self.port}")
        summary += f"; last reply: {last.first_line}." if last else "."
        return Transcript(verdict=verdict, summary=summary, trace=self._trace.freeze(),
                          host=self.host, port=self.port, lines=tuple(self._lines),
                          replies=tuple(self._replies))

    def note(self, text: str) -> None:
        """Add a ``===`` note to the transcript."""
        self._lines.append(Line("===", text, tls=self.tls_active, kind="note"))

    def _record(self, from_client: bool, text: str, *, kind: str, end: bool = True,
                decoded: str | None = None, credentials: bool = False) -> None:
        tls = self.tls_active
        if from_client:
            direction = "~>" if tls else "->"
        else:
            direction = "<~" if tls else "<-"
        self._lines.append(Line(direction, text, tls=tls, kind=kind, end=end, decoded=decoded,
                                credentials=credentials))

    def _fail(self, error: SMTPClientError, *, close: bool = True) -> SMTPClientError:
        """Note the error in the transcript (and close) before it is raised."""
        self.note(f"ERROR: {error}")
        self._trace.add(str(error), kind="error")
        if close:
            self._drop()
        return error

    def _drop(self) -> None:
        if self._sock is not None:
            try:
                self._sock.close()
            except OSError:
                pass
            self._sock = None
            self.note("Connection closed.")
        self._buf.clear()
        self.in_data = False
        self._auth_pending = False

    def __enter__(self) -> SMTPSession:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "TLS" if self.tls_active else ("open" if self.connected else "closed")
        return f"<SMTPSession {self.host}:{self.port} {state}, {len(self._lines)} lines>"

    # -- the wire -----------------------------------------------------------------------

    def _where(self) -> str:
        return f"{self.host}:{self.port}"

    def _require_connection(self) -> socket.socket:
        if self._sock is None:
            raise SMTPClientError(
                f"not connected to {self._where()}: call connect() first (or open a new "
                "session after the connection closed)")
        return self._sock

    def _send_bytes(self, data: bytes) -> None:
        sock = self._require_connection()
        try:
            sock.sendall(data)
        except TimeoutError:
            raise self._fail(SMTPTimeout(
                f"{self._where()} did not take our data within {self.timeout:g} seconds"
            )) from None
        except ssl.SSLError as exc:
            raise self._fail(SMTPTLSError(f"TLS failed while sending: {exc}")) from None
        except OSError as exc:
            raise self._fail(SMTPDisconnected(
                f"the connection to {self._where()} was closed while sending "
                f"({exc.strerror or exc})")) from None

    def _read_line(self) -> str:
        sock = self._require_connection()
        while True:
            end = self._buf.find(b"\n")
            if end >= 0:
                raw = bytes(self._buf[:end + 1])
                del self._buf[:end + 1]
                return raw.rstrip(b"\r\n").decode("utf-8", errors="replace")
            if len(self._buf) > MAX_REPLY_LINE:
                raise self._fail(SMTPProtocolError(
                    f"the server sent a line longer than {MAX_REPLY_LINE} bytes without a line "
                    "end; an SMTP reply line is at most 512 (RFC 5321 section 4.5.3.1.5)"))
            try:
                chunk = sock.recv(4096)
            except TimeoutError:
                after = f" after {self._last_command!r}" if self._last_command else ""
                raise self._fail(SMTPTimeout(
                    f"no reply from {self._where()} within {self.timeout:g} seconds{after}; "
                    "the server may be slow on purpose (a delay fault) or waiting for "
                    "something else (after DATA it waits for a line with a single '.')"
                )) from None
            except ssl.SSLError as exc:
                raise self._fail(SMTPTLSError(f"TLS failed while reading: {exc}")) from None
            except OSError as exc:
                raise self._fail(SMTPDisconnected(
                    f"the connection to {self._where()} broke ({exc.strerror or exc})"
                )) from None
            if not chunk:
                partial = f" in the middle of a line ({bytes(self._buf)[:60]!r})" \
                    if self._buf else ""
                raise self._fail(SMTPDisconnected(
                    f"{self._where()} closed the connection without a reply{partial}"))
            self._buf.extend(chunk)

    def _read_reply(self) -> Reply:
        raw: list[str] = []
        try:
            while True:
                line = self._read_line()
                raw.append(line)
                if line[3:4] != "-" or len(raw) >= MAX_REPLY_LINES:
                    break
            reply = parse_reply(raw)
        except SMTPProtocolError as exc:
            for i, line in enumerate(raw):
                self._record(False, line, kind="reply", end=i == len(raw) - 1)
            if self.connected:
                raise self._fail(exc) from None
            raise
        except SMTPClientError:
            for line in raw:
                self._record(False, line, kind="reply", end=False)
            raise
        for i, line in enumerate(raw):
            decoded = decode_base64_text(reply.text) if reply.code == 334 else None
            self._record(False, line, kind="reply", end=i == len(raw) - 1,
                         decoded=decoded if i == len(raw) - 1 else None)
        self._replies.append(reply)
        if reply.code == 421:
            # The server is going away; a client closes its side too (RFC 5321 section 3.8).
            self._trace.add(f"{reply.first_line}: the server is closing the connection",
                            kind="warning", rfc=RFC_CLOSING)
            self._drop()
        elif reply.code == 221:
            self._drop()  # 221 answers QUIT; then the server closes (RFC 5321 4.1.1.10)
        return reply

    def _write_command(self, line: str) -> None:
        if "\r" in line or "\n" in line:
            raise SMTPUsageError(
                "an SMTP command is a single line: remove the line break (a CR or LF inside a "
                "command would smuggle a second command in)")
        self._require_connection()
        decoded: str | None = None
        credentials = False
        words = line.split()
        if self._auth_pending:
            decoded = decode_base64_text(line)
            credentials = decoded is not None and not decoded.startswith("*")
        elif len(words) >= 2 and words[0].upper() == "AUTH":
            if len(words) >= 3:  # an initial response (RFC 4954 section 4)
                decoded = decode_base64_text(words[2])
                credentials = decoded is not None
        self._record(True, line, kind="command", decoded=decoded, credentials=credentials)
        self._last_command = "a line of the AUTH exchange" if credentials else line
        self._send_bytes(line.encode("utf-8") + b"\r\n")

    # -- commands -----------------------------------------------------------------------

    def connect(self) -> Reply:
        """Open the connection (with TLS first if ``implicit_tls``) and read the banner."""
        if self.connected:
            raise SMTPUsageError(f"already connected to {self._where()}")
        self.note(f"Trying {self._where()}...")
        try:
            sock = socket.create_connection((self.host, self.port), timeout=self.timeout)
        except ConnectionRefusedError:
            raise self._fail(SMTPConnectError(
                f"connection to {self._where()} refused: nothing is listening on that port "
                "(is the lab running, and is this the port of the role you want?)"
            )) from None
        except TimeoutError:
            raise self._fail(SMTPTimeout(
                f"could not connect to {self._where()} within {self.timeout:g} seconds"
            )) from None
        except socket.gaierror:
            raise self._fail(SMTPConnectError(
                f"the name {self.host!r} does not resolve; the lab's listeners are at "
                "127.0.0.1")) from None
        except OSError as exc:
            raise self._fail(SMTPConnectError(
                f"could not connect to {self._where()}: {exc.strerror or exc}")) from None
        self._sock = sock
        self.note(f"Connected to {self._where()}.")
        if self.implicit_tls:
            self._trace.add("TLS from the first byte (implicit TLS)", kind="info",
                            rfc=RFC_IMPLICIT_TLS)
            self._start_tls(self.verify)
        reply = self._read_reply()
        kind = "ok" if reply.is_positive else "error"
        self._trace.add(f"banner: {reply.first_line}", kind=kind, rfc=RFC_BANNER_554
                        if reply.code == 554 else RFC_REPLIES)
        return reply

    def send(self, line: str) -> Reply:
        """Send one command line and return the server's reply (RFC 5321 section 4.1)."""
        if self.in_data:
            raise SMTPUsageError(
                "the server is reading message content (after 354): send lines with "
                "data_line() and end with a line holding a single '.'")
        words = line.split()
        was_auth = bool(words) and words[0].upper() == "AUTH"
        in_exchange = self._auth_pending
        self._write_command(line)
        reply = self._read_reply()
        self._auth_pending = reply.code == 334 and (was_auth or in_exchange)
        if reply.code == 354:
            self.in_data = True
        return reply

    def ehlo(self, name: str = "client.lab.test") -> Reply:
        """EHLO: greet, and learn the server's extensions (RFC 5321 section 4.1.1.1)."""
        reply = self.send(f"EHLO {name}")
        if reply.is_positive:
            self.extensions = parse_extensions(reply)
            self.esmtp = True
        return reply

    def helo(self, name: str = "client.lab.test") -> Reply:
        """HELO: the plain greeting of servers without extensions."""
        reply = self.send(f"HELO {name}")
        if reply.is_positive:
            self.extensions = {}
            self.esmtp = False
        return reply

    def starttls(self, verify: bool | None = None) -> Reply:
        """STARTTLS, then the TLS handshake (RFC 3207).

        The certificate is verified (CA file, then host name) unless ``verify`` is False;
        None means "as the session was opened". After TLS starts, everything learnt
        before is forgotten and the client must send EHLO again (RFC 3207 section 4.2).
        Returns the server's reply to STARTTLS; raises :class:`SMTPTLSError` when the
        handshake fails.
        """
        if self.tls_active:
            raise SMTPUsageError("TLS is already active on this connection")
        reply = self.send("STARTTLS")
        if reply.code != 220:
            return reply
        if self._buf:
            self.note(f"the server sent {len(self._buf)} bytes before TLS began; they are "
                      "discarded, since nothing sent in the clear can be trusted inside TLS")
            self._buf.clear()
        self._start_tls(self.verify if verify is None else verify)
        self.extensions = {}
        self.esmtp = False
        self._trace.add("TLS started: forget the extensions, EHLO again", kind="info",
                        rfc=RFC_STARTTLS)
        return reply

    def _context(self, verify: bool) -> ssl.SSLContext:
        try:
            context = ssl.create_default_context(
                cafile=str(self.ca_file) if self.ca_file is not None and verify else None)
        except (OSError, ssl.SSLError) as exc:
            raise self._fail(SMTPTLSError(
                f"cannot read the CA file {self.ca_file}: {exc}")) from None
        if not verify:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        if self.keylog_file is not None:
            context.keylog_filename = str(self.keylog_file)
        return context

    def _start_tls(self, verify: bool) -> None:
        sock = self._require_connection()
        name = self.server_hostname or self.host
        context = self._context(verify)
        try:
            tls_sock = context.wrap_socket(sock, server_hostname=name)
        except ssl.SSLCertVerificationError as exc:
            against = (f"the CA file {self.ca_file}" if self.ca_file is not None else
                       "the system's CAs, which do not include the lab's CA (pass "
                       "ca_file=lab.ca.ca_file)")
            raise self._fail(SMTPTLSError(
                f"TLS certificate verification failed for {name}: {exc.verify_message}; the "
                f"client checked the server's certificate against {against}")) from None
        except ssl.SSLError as exc:
            raise self._fail(SMTPTLSError(
                f"TLS handshake with {self._where()} failed: {exc.reason or exc}")) from None
        except TimeoutError:
            raise self._fail(SMTPTimeout(
                f"TLS handshake with {self._where()} did not finish within "
                f"{self.timeout:g} seconds")) from None
        except OSError as exc:
            raise self._fail(SMTPDisconnected(
                f"the connection to {self._where()} closed during the TLS handshake "
                f"({exc.strerror or exc})")) from None
        self._sock = tls_sock
        cipher = tls_sock.cipher()
        self.tls_version = tls_sock.version() or "TLS"
        self.tls_cipher = cipher[0] if cipher else None
        bits = f":{cipher[2]}" if cipher else ""
        self.note(f"TLS started with cipher {self.tls_version}:{self.tls_cipher}{bits}")
        if verify:
            cert: Any = tls_sock.getpeercert() or {}
            subject = _name_of(cert.get("subject", ()))
            issuer = _name_of(cert.get("issuer", ()))
            self.note(f"TLS peer certificate verified for {name}: subject {subject}, "
                      f"issued by {issuer}")
            self._trace.add(f"TLS {self.tls_version}; certificate verified for {name}",
                            kind="ok")
        else:
            self.note("TLS peer certificate NOT verified (verify=False): anyone in the middle "
                      "could have answered")
            self._trace.add(f"TLS {self.tls_version} without certificate verification",
                            kind="warning")

    def _auth_exchange(self, command: str, responses: Sequence[str]) -> Reply:
        reply = self.send(command)
        for response in responses:
            if reply.code != 334:
                break
            reply = self.send(response)
        if reply.code == 334:  # the server wants more than we have: cancel (RFC 4954)
            reply = self.send("*")
        self._trace.add(f"AUTH: {reply.first_line}",
                        kind="ok" if reply.is_positive else "error", rfc=RFC_AUTH)
        return reply

    def auth_plain(self, user: str, password: str, authzid: str = "") -> Reply:
        """AUTH PLAIN with an initial response: base64 of authzid NUL user NUL password.

        RFC 4954 section 4 and RFC 4616 section 2. Anyone who sees the line can decode
        it; only TLS keeps it secret.
        """
        response = _b64(f"{authzid}\0{user}\0{password}")
        return self._auth_exchange(f"AUTH PLAIN {response}", [response])

    def auth_login(self, user: str, password: str) -> Reply:
        """AUTH LOGIN: the server asks (334) for the user name, then the password, each
        sent as base64 on its own line (a widespread, unstandardised mechanism)."""
        return self._auth_exchange("AUTH LOGIN", [_b64(user), _b64(password)])

    def mail(self, sender: str,
             params: Mapping[str, str | None] | Sequence[str] | None = None) -> Reply:
        """MAIL FROM:<sender> [params]; ``""`` sends the null path <> (RFC 5321 section 4.5.5).

        ``params`` are ESMTP parameters such as ``{"SIZE": "1200", "BODY": "8BITMIME"}``.
        """
        return self.send(f"MAIL FROM:{_path(sender)}{_params(params)}")

    def rcpt(self, recipient: str,
             params: Mapping[str, str | None] | Sequence[str] | None = None) -> Reply:
        """RCPT TO:<recipient> [params] (RFC 5321 section 3.3)."""
        return self.send(f"RCPT TO:{_path(recipient)}{_params(params)}")

    def data(self, message: bytes | str | Message) -> Reply:
        """DATA, then the message (CRLF line ends, dot-stuffed, ended by "."), then the
        server's final reply. If DATA is not answered with 354 that reply is returned
        and no content is sent. RFC 5321 sections 4.1.1.4 and 4.5.2."""
        reply = self.send("DATA")
        if reply.code != 354:
            return reply
        return self.send_content(message)

    def send_content(self, message: bytes | str | Message) -> Reply:
        """After 354: send the message with dot-stuffing and the final "." line, and
        return the server's reply to the whole message."""
        if not self.in_data:
            raise SMTPUsageError("message content goes after DATA and its 354 reply")
        wire = dot_stuff(message)
        lines = wire.split(b"\r\n")[:-1]
        for i, line in enumerate(lines):
            self._record(True, line.decode("utf-8", errors="replace"), kind="data",
                         end=i == len(lines) - 1)
        self._last_command = "the message content"
        self._send_bytes(wire)
        self.in_data = False
        return self._read_reply()

    def data_line(self, line: str) -> Reply | None:
        """After 354: send one line exactly as given (no dot-stuffing). A line holding a
        single "." ends the message: the server's reply is returned; otherwise None."""
        if not self.in_data:
            raise SMTPUsageError("message lines go after DATA and its 354 reply")
        if "\r" in line or "\n" in line:
            raise SMTPUsageError("send one line at a time, without a line break")
        last = line == "."
        self._record(True, line, kind="data", end=last)
        self._send_bytes(line.encode("utf-8") + b"\r\n")
        if not last:
            return None
        self.in_data = False
        self._last_command = "the end-of-data line '.'"
        return self._read_reply()

    def xclient(self, **attrs: str) -> Reply:
        """XCLIENT name=value ...: ask the server to treat this connection as coming from
        another client (Postfix's test extension; the lab MX role honours it).

        ``session.xclient(addr="192.0.2.10", helo="out.northwind.test")``. Values are
        sent as xtext. A server that accepts answers as to a new connection (220), and
        the client must send EHLO again.
        """
        if not attrs:
            raise SMTPUsageError("XCLIENT needs at least one attribute, e.g. addr='192.0.2.10'")
        words = " ".join(f"{name.upper()}={_xtext(str(value))}" for name, value in
                         attrs.items())
        reply = self.send(f"XCLIENT {words}")
        if reply.is_positive:
            self.extensions = {}
            self.esmtp = False
            self._trace.add(f"XCLIENT accepted: the server now sees {words}", kind="info",
                            rfc=RFC_XCLIENT)
        return reply

    def noop(self) -> Reply:
        return self.send("NOOP")

    def rset(self) -> Reply:
        """RSET: abandon the current transaction (RFC 5321 section 4.1.1.5)."""
        return self.send("RSET")

    def quit(self) -> Reply:
        """QUIT, read the 221 reply, and close (RFC 5321 section 4.1.1.10)."""
        try:
            return self.send("QUIT")
        finally:
            self._drop()

    def close(self) -> None:
        """Close the connection without QUIT (safe to call more than once)."""
        self._drop()


def _name_of(rdns: Any) -> str:
    """A certificate name from getpeercert(): 'CN=..., O=...' (best effort)."""
    parts = []
    for rdn in rdns:
        for key, value in rdn:
            short = {"commonName": "CN", "organizationName": "O",
                     "organizationalUnitName": "OU"}.get(key, key)
            parts.append(f"{short}={value}")
    return ", ".join(parts) or "(empty)"


# -- the transcript -----------------------------------------------------------------------

#: Colours of replies by class (RFC 5321 section 4.2.1) in the HTML and the diagram.
REPLY_CLASS_COLOURS = {2: "#2f6f2f", 3: "#1f5f9f", 4: "#c07000", 5: "#b00020"}


@dataclass(frozen=True, kw_only=True)
class Transcript(Result):
    """Every line of one SMTP dialogue, and what became of the message.

    From :func:`send_mail` the verdict is ``"accepted"`` (every recipient accepted and the
    message queued or stored), ``"partly accepted"`` (stored, but some recipients were
    refused), ``"rejected"`` (the server said no: ``stopped_by`` holds the reply, and
    ``temporary`` says whether it was a 4yz "try again later") or ``"failed"`` (the dialogue
    could not be completed: no connection, a timeout, a TLS failure, or the client's own
    refusal to send a password in the clear). From :attr:`SMTPSession.transcript` it is
    ``"open"`` or ``"closed"``.

    ``str()`` gives the swaks-like text, ``_repr_html_`` the same in a notebook with the
    TLS part shaded, :meth:`plot` a sequence diagram.
    """

    host: str
    port: int
    lines: tuple[Line, ...] = ()
    replies: tuple[Reply, ...] = ()
    accepted: tuple[str, ...] = ()
    refused: tuple[tuple[str, Reply], ...] = ()
    stopped_by: Reply | None = None

    def title(self) -> str:
        return f"SMTP dialogue with {self.host}:{self.port}: {self.verdict}"

    @property
    def temporary(self) -> bool:
        """True when the reply that stopped the dialogue was transient (4yz)."""
        return self.stopped_by is not None and self.stopped_by.is_transient

    @property
    def exposed_credentials(self) -> bool:
        """True when a user name or password crossed the wire outside TLS."""
        return any(line.exposed for line in self.lines)

    @property
    def used_tls(self) -> bool:
        return any(line.tls for line in self.lines)

    @property
    def final_reply(self) -> Reply | None:
        return self.replies[-1] if self.replies else None

    def codes(self) -> list[int]:
        """The reply codes in order, e.g. ``[220, 250, 250, 250, 354, 250, 221]``."""
        return [reply.code for reply in self.replies]

    def dialogue(self) -> str:
        """Only the lines, swaks style."""
        return "\n".join(line.as_text() for line in self.lines)

    def text(self) -> str:
        parts = [self.title(), f"  {self.summary}", "", self.dialogue()]
        if self.trace:
            parts += ["", "Trace:"]
            parts += ["  " + step.as_text().replace("\n", "\n  ") for step in self.trace]
        return "\n".join(parts)

    def _repr_html_(self) -> str:
        rows = []
        for line in self.lines:
            style = ["white-space:pre-wrap", "margin:0", "padding:0 4px"]
            if line.tls:
                style.append("background:#e6f2e6")
            if line.kind == "note":
                style.append("color:#666;font-style:italic")
            elif line.from_server and line.kind == "reply":
                code = line.text[:1]
                colour = REPLY_CLASS_COLOURS.get(int(code) if code.isdigit() else 0, "inherit")
                style.append(f"color:{colour}")
            extra = ""
            if line.decoded is not None:
                extra += (' <span style="color:#5f2f8f">[base64 of: '
                          f"{html.escape(line.decoded)}]</span>")
            if line.exposed:
                extra += (' <b style="color:#fff;background:#b00020;padding:0 3px">'
                          "credentials sent in the clear</b>")
            text = html.escape(line.prefix + line.text)
            rows.append(f'<div style="{";".join(style)}">{text}{extra}</div>')
        legend = ('<div style="font-size:85%;color:#666;margin-top:4px">-&gt; client, '
                  "&lt;- server, ~&gt; and &lt;~ inside TLS "
                  '(<span style="background:#e6f2e6">shaded</span>), === notes</div>')
        steps = "".join(step.as_html() for step in self.trace)
        trace = (f'<details><summary>trace</summary>{steps}</details>' if steps else "")
        return ('<div style="border-left:4px solid #888;padding-left:8px">'
                f"<b>{html.escape(self.title())}</b><br>{html.escape(self.summary)}"
                '<div style="font-family:monospace;font-size:90%;margin-top:6px">'
                f"{''.join(rows)}</div>{legend}{trace}</div>")


# -- a whole dialogue ---------------------------------------------------------------------


class _Stop(Exception):
    """Internal: the dialogue ends here with this verdict."""

    def __init__(self, verdict: str, summary: str, reply: Reply | None = None) -> None:
        super().__init__(summary)
        self.verdict = verdict
        self.summary = summary
        self.reply = reply


_TRANSIENT = "a transient failure (4yz): a sender keeps the message and tries again later"
_PERMANENT = "a permanent failure (5yz): sending the same again will not help"


def _said(reply: Reply) -> str:
    return reply.first_line.rstrip(".")


def _refusal(stage: str, reply: Reply) -> _Stop:
    if reply.is_transient:
        why = _TRANSIENT
    elif reply.is_permanent:
        why = _PERMANENT
    else:
        why = "not the reply the dialogue needed here"
    return _Stop("rejected", f"The server refused at {stage} with {_said(reply)}: {why}.",
                 reply)


def send_mail(host: str, port: int, *, mail_from: str, rcpt_to: str | Sequence[str],
              message: bytes | str | Message, tls: str = "none",
              auth: tuple[str, str] | None = None, ca_file: str | Path | None = None,
              ehlo: str = "client.lab.test", xclient: Mapping[str, str] | None = None,
              mechanism: str = "PLAIN", allow_plaintext_auth: bool = False,
              verify: bool = True, server_hostname: str | None = None,
              keylog_file: str | Path | None = None, timeout: float = 10.0) -> Transcript:
    """Send one message through a whole SMTP dialogue and return its :class:`Transcript`.

    The client connects (TLS first when ``tls="implicit"``, RFC 8314), reads the banner,
    sends EHLO (HELO when EHLO gets a 5yz, RFC 5321 section 3.2), STARTTLS and EHLO again
    when ``tls="starttls"`` (RFC 3207), XCLIENT and EHLO again when ``xclient`` is given,
    AUTH when ``auth=(user, password)`` (RFC 4954, ``mechanism`` PLAIN or LOGIN), MAIL,
    one RCPT per recipient, DATA and the message, and QUIT (RFC 5321 section 3.3).

    It never sends a password over an unencrypted connection unless
    ``allow_plaintext_auth=True``, and then the transcript says so loudly. A 4yz or 5yz
    answer at any stage ends the dialogue politely and is recorded; see
    :class:`Transcript` for the verdicts.
    """
    if tls not in TLS_MODES:
        raise SMTPUsageError(f"tls={tls!r}: use one of {', '.join(map(repr, TLS_MODES))}")
    mechanism = mechanism.upper()
    if mechanism not in AUTH_MECHANISMS:
        raise SMTPUsageError(f"mechanism={mechanism!r}: use PLAIN or LOGIN")
    recipients = [rcpt_to] if isinstance(rcpt_to, str) else list(rcpt_to)
    if not recipients:
        raise SMTPUsageError("rcpt_to needs at least one recipient")
    session = SMTPSession(host, port, implicit_tls=tls == "implicit", ca_file=ca_file,
                          verify=verify, server_hostname=server_hostname,
                          keylog_file=keylog_file, timeout=timeout)
    trace = session._trace
    accepted: list[str] = []
    refused: list[tuple[str, Reply]] = []
    verdict = "failed"
    summary = ""
    stopped: Reply | None = None
    content_sent = False

    def expect(stage: str, reply: Reply) -> Reply:
        if not reply.is_positive:
            raise _refusal(stage, reply)
        return reply

    def greet() -> None:
        reply = session.ehlo(ehlo)
        if reply.is_permanent and session.connected:
            trace.add(f"EHLO refused ({reply.code}): fall back to HELO", kind="decision",
                      rfc=RFC_HELO_FALLBACK)
            reply = expect("HELO", session.helo(ehlo))
        expect("EHLO", reply)

    try:
        banner = session.connect()
        expect("the banner", banner)
        greet()
        if tls == "starttls":
            if not session.has_extension("STARTTLS"):
                session.note("the server does not advertise STARTTLS; asking anyway")
            expect("STARTTLS", session.starttls())
            greet()
        if xclient:
            if not session.has_extension("XCLIENT"):
                session.note("the server does not advertise XCLIENT; asking anyway")
            expect("XCLIENT", session.xclient(**dict(xclient)))
            greet()
        if auth is not None:
            if not session.tls_active:
                if not allow_plaintext_auth:
                    session.note("refusing to send AUTH over an unencrypted connection: the "
                                 "password would cross the wire readable by anyone")
                    raise _Stop(
                        "failed",
                        "The client refused to send the password over an unencrypted "
                        "connection; use tls='starttls' or tls='implicit' (or pass "
                        "allow_plaintext_auth=True to watch why not).")
                session.note("WARNING: AUTH WITHOUT TLS. The user name and password below "
                             "cross the wire in the clear; base64 is not encryption.")
                trace.add("AUTH over an unencrypted connection (allow_plaintext_auth=True)",
                          kind="warning", rfc=RFC_AUTH)
            if not session.has_extension("AUTH"):
                session.note("the server does not advertise AUTH here; trying anyway")
            user, password = auth
            if mechanism == "PLAIN":
                reply = session.auth_plain(user, password)
            else:
                reply = session.auth_login(user, password)
            expect(f"AUTH {mechanism}", reply)
        expect("MAIL FROM", session.mail(mail_from))
        for recipient in recipients:
            reply = session.rcpt(recipient)
            if reply.is_positive:
                accepted.append(recipient)
                trace.add(f"RCPT {recipient}: {reply.first_line}", kind="ok")
            else:
                refused.append((recipient, reply))
                trace.add(f"RCPT {recipient}: {reply.first_line}", kind="error",
                          rfc=RFC_REPLY_CLASSES)
                if not session.connected:
                    raise _refusal(f"RCPT TO <{recipient}>", reply)
        if not accepted:
            last = refused[-1][1]
            stop = _refusal("RCPT TO", last)
            stop.summary = ("Every recipient was refused, so no message was sent: " +
                            "; ".join(f"{r}: {_said(rep)}" for r, rep in refused) + ". " +
                            (f"That is {_TRANSIENT}." if all(rep.is_transient for _, rep
                                                            in refused) else ""))
            stop.summary = stop.summary.rstrip()
            raise stop
        reply = session.send("DATA")
        if reply.code != 354:
            raise _refusal("DATA", reply)
        content_sent = True
        reply = session.send_content(message)
        if not reply.is_positive:
            raise _refusal("the end of the message (after the final '.')", reply)
        if refused:
            verdict = "partly accepted"
            summary = (f"The server took the message for {', '.join(accepted)} "
                       f"({_said(reply)}) but refused " +
                       "; ".join(f"{r} ({_said(rep)}: "
                                 f"{'temporary' if rep.is_transient else 'permanent'})"
                                 for r, rep in refused) + ".")
        else:
            verdict = "accepted"
            summary = (f"The server accepted the message for {', '.join(accepted)}: "
                       f"{_said(reply)}.")
        trace.add(summary, kind="ok")
        try:
            session.quit()
        except SMTPClientError:
            pass  # the message was accepted; a lost QUIT changes nothing (RFC 5321 4.1.1.10)
    except _Stop as stop:
        verdict, summary, stopped = stop.verdict, stop.summary, stop.reply
        trace.add(summary, kind="error")
        if session.connected:
            try:
                session.quit()
            except SMTPClientError:
                pass
    except SMTPClientError as exc:
        verdict, summary = "failed", f"The dialogue could not be completed: {exc}."
        if content_sent:
            summary += (" The connection was lost before the server confirmed the message, so "
                        "the client cannot know whether it was delivered.")
    finally:
        session.close()
    return Transcript(verdict=verdict, summary=summary, trace=trace.freeze(), host=host,
                      port=int(port), lines=tuple(session._lines),
                      replies=session.replies, accepted=tuple(accepted),
                      refused=tuple(refused), stopped_by=stopped)


__all__ = [
    "ENHANCED_CODES", "REPLY_CLASSES", "REPLY_CODES", "WITH_PROTOCOLS", "CodeTable", "Hop",
    "Line", "Reply", "ReplyCodeError", "SMTPSession", "Transcript", "dot_stuff",
    "explain_reply", "parse_reply", "received_chain", "reply_code_table", "send_mail",
]
