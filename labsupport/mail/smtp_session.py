"""The transcript client's session: one SMTP connection driven one command at a time.

:class:`SMTPSession` opens a connection to any lab listener (TLS first when
``implicit_tls``, RFC 8314), sends one command at a time and returns the server's
:class:`~labsupport.mail.smtp_replies.Reply` at once, upgrades with STARTTLS (RFC 3207),
authenticates with AUTH PLAIN or LOGIN (RFC 4954), and records every line that crosses
the wire as a :class:`~labsupport.mail.smtp_transcript.Line`, so that
:attr:`SMTPSession.transcript` can show the dialogue so far.

Part of the transcript client, :mod:`labsupport.mail.smtp`.
"""

from __future__ import annotations

import select
import socket
import ssl
from collections.abc import Mapping, Sequence
from email.message import Message
from pathlib import Path
from typing import Any

from ..core.results import TraceBuilder
from .replycodes import (
    RFC_AUTH,
    RFC_BANNER_554,
    RFC_CLOSING,
    RFC_IMPLICIT_TLS,
    RFC_REPLIES,
    RFC_STARTTLS,
    RFC_XCLIENT,
)
from .smtp_encoding import _b64, _params, _path, _xtext, decode_base64_text, dot_stuff
from .smtp_replies import (
    MAX_REPLY_LINE,
    MAX_REPLY_LINES,
    Reply,
    SMTPClientError,
    SMTPConnectError,
    SMTPDisconnected,
    SMTPProtocolError,
    SMTPTimeout,
    SMTPTLSError,
    SMTPUsageError,
    parse_extensions,
    parse_reply,
)
from .smtp_transcript import Line, Transcript


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

    def send_raw(self, data: bytes, *, what: str = "the raw bytes") -> None:
        """Send ``data`` exactly as given (no dot-stuffing, no line-end repair): octets the
        other methods refuse to send, such as a bare CR or LF (SMTP smuggling). The
        transcript records one row per CRLF line, bare CR and LF spelled ``<CR>``/``<LF>``;
        ``what`` names it in a timeout's message. Read the answer with :meth:`read_reply`."""
        self._require_connection()
        rows = data.removesuffix(b"\r\n").split(b"\r\n")  # the last line's CRLF ends it
        for i, row in enumerate(rows):
            text = row.decode("utf-8", errors="replace").replace("\r", "<CR>")
            self._record(True, text.replace("\n", "<LF>"), end=i == len(rows) - 1,
                         kind="data" if self.in_data else "command")
        self._last_command = what
        self._send_bytes(data)
        if self.in_data and (data.endswith(b"\r\n.\r\n") or data == b".\r\n"):
            self.in_data = False  # the message has ended

    def read_reply(self, wait: float | None = None) -> Reply | None:
        """The server's next reply; with ``wait``, None when none begins to arrive within
        ``wait`` seconds (replies nobody asked for, to smuggled commands, say)."""
        sock = self._require_connection()
        ready = bool(self._buf) or (isinstance(sock, ssl.SSLSocket) and sock.pending() > 0)
        if wait is not None and not ready and not select.select([sock], [], [], wait)[0]:
            return None
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

