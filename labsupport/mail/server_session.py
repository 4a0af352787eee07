"""One client connection to the lab's mail server: :class:`LabSMTP`, on aiosmtpd.

aiosmtpd speaks the protocol; :class:`LabSMTP` is its SMTP class with what a lab needs.
It greets as its role (after any banner fault), gives every reply an enhanced status code
(RFC 3463, RFC 2034) and a sentence a learner can read, hangs up with 421 on a client
that makes too many errors or stays idle too long, and refuses everything but QUIT after
a greeting that refused the session. It speaks Postfix's XCLIENT on the MX role, so that
the lab's delivering MTA (or ``swaks --xclient-addr``) can say which Internet address a
connection stands for, writes the Received header that shows it (RFC 5321 section 4.4),
and checks AUTH logins against the lab accounts. It mends two aiosmtpd gaps: AUTH in
implicit-TLS mode (aiosmtpd only counts TLS it started itself with STARTTLS) and the MAIL
command-length allowance that grows with every EHLO. On a shared host it asks who
connected (:func:`labsupport.core.peers.check_transport`): a process of another local
user gets a 554 greeting (RFC 5321 section 3.1) and nothing but QUIT, so no one can
inject mail into another student's mailboxes.

What a role does with the mail itself is the role handler's
(:mod:`labsupport.mail.server_handler`); :class:`SessionServer` says what a connection
needs of the server.
"""

from __future__ import annotations

import asyncio
import collections
import email.utils
import functools
import ipaddress
import logging
import re
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any, AnyStr, Protocol, cast

from aiosmtpd.smtp import (
    SMTP,
    AuthResult,
    Envelope,
    LoginPassword,
    Session,
    syntax,
)

from ..core.peers import PeerCheck, check_transport
from ..wire.tls import LabCA
from .accounts import Accounts
from .server_handler import HandlerServer, _RoleHandler
from .server_roles import (
    _ENHANCED,
    _ERROR_CODES,
    _REWRITES,
    _UNRECOGNISED,
    _XCLIENT_SPECIAL,
    COMMAND_LINE_LIMIT,
    MAX_ERRORS,
    XCLIENT_ATTRIBUTES,
    ClientIdentity,
    Role,
    _shown,
)
from .smuggling import RFC_LINES, BareLineEnd, bare_line_end

# aiosmtpd logs every unknown command as a warning; without a handler Python would print
# them on stderr, into notebook cells. The lab keeps its own log (MailServer.log).
logging.getLogger("mail.log").addHandler(logging.NullHandler())

#: What may not appear in a Received header's host names (outside printable ASCII, or
#: the parentheses and backslash that would end or escape its comments).
_NOT_PRINTABLE = re.compile(r"[^\x21-\x7e]|[()\\]")

#: The greeting a process of another local user gets (RFC 5321 section 3.1: 554, then
#: only QUIT), with the enhanced code X.7.1 "delivery not authorized" (RFC 3463).
OTHER_USER_GREETING = "554 5.7.1 This lab belongs to another user: no SMTP service here"


def _xtext_decode(value: str) -> str:
    """Decode RFC 3461 section 4 xtext ("+2B" is "+"); ValueError when malformed."""
    out: list[str] = []
    i = 0
    while i < len(value):
        char = value[i]
        if char == "+":
            hexdigits = value[i + 1:i + 3]
            if len(hexdigits) != 2 or not re.fullmatch(r"[0-9A-Fa-f]{2}", hexdigits):
                raise ValueError(f"bad xtext escape in {value!r}")
            out.append(chr(int(hexdigits, 16)))
            i += 3
        else:
            out.append(char)
            i += 1
    return "".join(out)


def _address_literal(address: str) -> str:
    """An IP address as an RFC 5321 section 4.1.3 address literal: [192.0.2.10],
    [IPv6:2001:db8::10]."""
    try:
        parsed = ipaddress.ip_address(address)
    except ValueError:
        return f"[{address}]"
    return f"[IPv6:{parsed}]" if parsed.version == 6 else f"[{parsed}]"


class SessionServer(HandlerServer, Protocol):
    """The lab's mail server as one connection sees it (a
    :class:`~labsupport.mail.server.MailServer`): what :class:`LabSMTP` uses itself, and
    what it hands on to its role handler."""

    @property
    def accounts(self) -> Accounts: ...

    @property
    def ca(self) -> LabCA: ...

    @property
    def size_limit(self) -> int: ...

    @property
    def idle_timeout(self) -> float: ...

    @property
    def _connections(self) -> set[LabSMTP]: ...

    def reverse_name(self, address: str) -> str | None: ...


# -- one connection ----------------------------------------------------------------------


class LabSMTP(SMTP):
    """aiosmtpd's SMTP protocol with the lab's roles, replies, faults and XCLIENT."""

    def __init__(self, server: SessionServer, role: Role, loop: asyncio.AbstractEventLoop) -> None:
        self.server = server
        self.role = role
        # aiosmtpd keeps these limits in one dict shared by every connection and adds to
        # the MAIL allowance on every EHLO; each connection gets its own (see smtp_EHLO).
        self.command_size_limits = collections.defaultdict(lambda: COMMAND_LINE_LIMIT)
        self.client = ClientIdentity()
        self._greeted = False
        self._refused = False
        # A command line the client ended with a bare LF, or with a bare CR in it (set as
        # each command line is read; the guard answers 500 instead of running it).
        self._bare_command: BareLineEnd | None = None
        self._verbatim = False
        self._batch: list[str] | None = None
        self._errors = 0
        #: Who connected (set when the connection is made): only this lab's user is served.
        self.peer_check: PeerCheck | None = None
        super().__init__(
            _RoleHandler(server, role),
            data_size_limit=server.size_limit,
            enable_SMTPUTF8=True,
            decode_data=False,
            hostname=role.hostname,
            ident=role.greeting,
            tls_context=server.ca.server_context() if role.starttls else None,
            require_starttls=role.require_tls,
            timeout=server.idle_timeout,
            auth_require_tls=role.auth_require_tls,
            authenticator=self._check_login,
            loop=loop,
        )
        methods = dict(self._smtp_methods)
        if not role.xclient:
            methods.pop("XCLIENT", None)  # unknown elsewhere, as on a real server
        self._smtp_methods = {name: self._guard(name, method) for name, method in methods.items()}

    # -- connection life -----------------------------------------------------------------

    def _cb_client_connected(self, reader: asyncio.StreamReader,
                             writer: asyncio.StreamWriter) -> None:
        super()._cb_client_connected(reader, writer)  # type: ignore[no-untyped-call]
        # aiosmtpd reads a command line up to a bare LF (and its DATA lines up to CR LF,
        # which the handler checks). Note each command line that is not CR LF-terminated,
        # or holds a bare CR, so the command is refused (RFC 5321 section 2.3.8).
        read_until = reader.readuntil

        async def readuntil(separator: bytes = b"\n") -> bytes:
            line = await read_until(separator)
            self._bare_command = bare_line_end(line) if separator == b"\n" else None
            return line

        reader.readuntil = readuntil  # type: ignore[method-assign,assignment]

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        first = self.transport is None
        super().connection_made(transport)
        if not first:
            return  # the same connection, now inside STARTTLS
        self.peer_check = check_transport(transport)
        self.server._connections.add(self)
        if self.role.implicit_tls and self._tls_protocol is None:
            # The SMTPS fix: aiosmtpd advertises and allows AUTH only when its own
            # STARTTLS set _tls_protocol, so on an implicit-TLS listener AUTH would be
            # hidden although every byte is encrypted. Here the transport is the TLS one.
            ssl_protocol = getattr(transport, "_ssl_protocol", None)
            self._tls_protocol = ssl_protocol if ssl_protocol is not None else cast(Any, True)
            assert self.session is not None
            self.session.ssl = getattr(ssl_protocol, "_extra", None) or {"implicit": True}
        self.server._record(self, "connect", self.tls_description() or "")

    def connection_lost(self, error: Exception | None) -> None:
        self.server._connections.discard(self)
        super().connection_lost(error)

    def _timeout_cb(self) -> None:
        # aiosmtpd hangs up silently; say why first (RFC 5321 section 4.5.3.2.7, 3.8).
        if isinstance(self.transport, asyncio.WriteTransport) \
                and not self.transport.is_closing():
            self.transport.write(b"421 4.4.2 Idle for too long: closing the connection\r\n")
            self.server._record(self, "closed", "idle for too long")
        super()._timeout_cb()

    def _close(self) -> None:
        """Close the connection after what has been written (RFC 5321 section 3.8)."""
        if self.transport is not None:
            self.transport.close()
        if self._handler_coroutine is not None:
            self._handler_coroutine.cancel()

    # -- what the client is --------------------------------------------------------------

    @property
    def peer(self) -> str:
        """The real client, host:port."""
        peer = self.session.peer if self.session is not None else None
        if isinstance(peer, tuple) and len(peer) >= 2:
            return f"{peer[0]}:{peer[1]}"
        return str(peer)

    @property
    def peer_address(self) -> str:
        peer = self.session.peer if self.session is not None else None
        return str(peer[0]) if isinstance(peer, tuple) and peer else "127.0.0.1"

    @property
    def client_address(self) -> str:
        """The client's address as the lab sees it: XCLIENT's, else the real one."""
        addr = self.client.addr
        return addr if addr and addr not in _XCLIENT_SPECIAL else self.peer_address

    @property
    def client_label(self) -> str:
        """For the log: the simulated address and the real one."""
        if self.client.addr:
            return f"{self.client.addr} (XCLIENT, really {self.peer})"
        return self.peer

    def client_name(self) -> str:
        """The client's host name: XCLIENT NAME, else the lab's reverse DNS of its
        address, else "localhost" for the real loopback client, else "unknown"."""
        name = self.client.name
        if name and name not in _XCLIENT_SPECIAL:
            return name
        if name in _XCLIENT_SPECIAL:
            return "unknown"
        if self.client.addr:
            return self.server.reverse_name(self.client.addr) or "unknown"
        return "localhost" if ipaddress.ip_address(self.peer_address).is_loopback else "unknown"

    @property
    def tls_active(self) -> bool:
        return self.transport is not None and \
            self.transport.get_extra_info("ssl_object") is not None

    def tls_description(self) -> str | None:
        """The TLS in use, e.g. ``TLSv1.3 with cipher TLS_AES_256_GCM_SHA384 (256/256
        bits)``, or None without TLS."""
        if self.transport is None:
            return None
        ssl_object = self.transport.get_extra_info("ssl_object")
        if ssl_object is None:
            return None
        cipher = ssl_object.cipher()
        if not cipher:
            return str(ssl_object.version())
        name, _version, bits = cipher
        return f"{ssl_object.version()} with cipher {name} ({bits}/{bits} bits)"

    def protocol_name(self, envelope: Envelope) -> str:
        """The Received header's "with" value: SMTP or ESMTP (RFC 5321), with S for TLS
        and A for AUTH (RFC 3848), UTF8 in front for SMTPUTF8 (RFC 6531 section 3.7.3)."""
        assert self.session is not None
        if envelope.smtp_utf8:
            base = "UTF8SMTP"
        else:
            base = self.client.proto or ("ESMTP" if self.session.extended_smtp else "SMTP")
        if base == "SMTP":
            return base  # RFC 3848 registers no "SMTPS" or "SMTPA"
        return base + ("S" if self.tls_active else "") + \
            ("A" if self.session.authenticated else "")

    def received_header(self, envelope: Envelope, queue_id: str, recipient: str | None,
                        when: datetime) -> bytes:
        """The Received header this server adds (RFC 5321 section 4.4), folded."""
        assert self.session is not None
        helo = self.client.helo if self.client.helo not in (None, *_XCLIENT_SPECIAL) \
            else self.session.host_name
        helo_text = _NOT_PRINTABLE.sub("?", _shown(helo or "unknown", 255))
        name = _NOT_PRINTABLE.sub("?", self.client_name())
        lines = [f"Received: from {helo_text} ({name} {_address_literal(self.client_address)})"]
        tls = self.tls_description()
        if tls:
            lines.append(f"\t(using {tls})")
        by = self.role.hostname
        if self.client.destaddr and self.client.destaddr not in _XCLIENT_SPECIAL:
            by = self.server.reverse_name(self.client.destaddr) or by
        with_id = f"\tby {by} (Mail Labs {self.role.name} role) with " \
                  f"{self.protocol_name(envelope)} id {queue_id}"
        date = email.utils.format_datetime(when)
        if recipient:
            lines += [with_id, f"\tfor <{_shown(recipient, 300)}>; {date}"]
        else:
            lines += [with_id + ";", f"\t{date}"]
        return ("\r\n".join(lines) + "\r\n").encode("utf-8", "surrogateescape")

    # -- replies -------------------------------------------------------------------------

    async def push(self, status: AnyStr) -> None:
        text = status.decode("utf-8", "surrogateescape") if isinstance(status, bytes) \
            else str(status)
        if not self._greeted:
            self._greeted = True
            text = await self._greeting(text)
        elif not self._verbatim:
            text = self._rewrite(text)
        if self._batch is not None:
            self._batch.append(text)  # sent together, see smtp_EHLO
            return
        await self._send(text)
        await self._after_reply(text)

    async def _after_reply(self, text: str) -> None:
        code = text[:3]
        if code == "421":
            self.server._record(self, "closed", text)
            self._close()
        elif code in _ERROR_CODES:
            self._errors += 1
            if self._errors >= MAX_ERRORS:
                reply = (f"421 4.7.0 Too many errors ({self._errors}) on one connection: "
                         "closing it")
                await self._send(reply)
                self.server._record(self, "closed", reply)
                self._close()

    async def _send(self, text: str) -> None:
        await super().push(text.encode("utf-8", "surrogateescape"))
        if self._tls_protocol is not None:
            # Over TLS, asyncio notices a client that hung up only when the loop runs;
            # without this, replies to pipelined commands would go on being written to
            # the lost connection (and asyncio would warn on stderr).
            await asyncio.sleep(0)

    def _rewrite(self, text: str) -> str:
        """aiosmtpd's reply with an enhanced status code and a clearer text."""
        if text in _REWRITES:
            return _REWRITES[text]
        unknown = _UNRECOGNISED.match(text)
        if unknown:
            return f'500 5.5.1 Command not recognized: "{_shown(unknown.group(1), 40)}"'
        if text.startswith("552 Error: message size exceeds"):
            return (f"552 5.3.4 Message too big: the SIZE limit is {self.server.size_limit} "
                    "octets (RFC 1870)")
        if text == "552 Error: Too much mail data":
            return (f"552 5.3.4 Message too big: over the {self.server.size_limit}-octet SIZE "
                    "limit (RFC 1870); the message was not stored")
        if text.startswith("502 Could not VRFY"):
            return "502 5.5.4 Could not VRFY that address"
        code, sep, rest = text[:3], text[3:4], text[4:]
        if code[:1] in "245" and code.isdigit() and sep in (" ", "") \
                and not _ENHANCED.match(rest):
            return f"{code} {code[0]}.0.0 {rest}".rstrip()
        return text

    async def _greeting(self, banner: str) -> str:
        """The banner, after any delay-banner or banner fault (RFC 5321 section 3.1); a
        554 for a client of another user, before any fault is spent on it."""
        if self.peer_check is not None and not self.peer_check.allowed:
            self.server._record(self, "refused", self.peer_check.summary)
            self._refused = True  # RFC 5321 section 3.1: now only QUIT is accepted
            return OTHER_USER_GREETING
        faults = self.server.faults
        delayed = faults.take("delay-banner", self.role.name, self.peer_address)
        if delayed is not None:
            self.server._record(self, "fault", f"delay-banner #{delayed.id}: "
                                f"{delayed.delay:g} s before the greeting")
            await asyncio.sleep(delayed.delay)
            banner = delayed.reply or banner
        rule = faults.take("banner", self.role.name, self.peer_address)
        if rule is not None:
            self.server._record(self, "fault", f"banner #{rule.id}: {rule.reply}")
            if rule.delay:
                await asyncio.sleep(rule.delay)
            banner = rule.reply
        if not banner.startswith("2") and not banner.startswith("421"):
            self._refused = True  # RFC 5321 section 3.1: now only QUIT is accepted
        return banner

    def _guard(self, name: str, method: Callable[[str | None], Awaitable[None]]
               ) -> Callable[[str | None], Awaitable[None]]:
        @functools.wraps(method)
        async def guarded(arg: str | None) -> None:
            if self._bare_command is not None:
                bare, self._bare_command = self._bare_command, None
                what = ("ends with a bare LF (no CR before it)" if bare.char == "LF"
                        else f"holds a bare CR at octet {bare.offset}")
                await self.push(f"500 5.5.2 Syntax error: the {name} command line {what}; "
                                f"SMTP lines end with CR LF only ({RFC_LINES})")
                return
            if self._refused and name != "QUIT":
                await self.push("503 5.5.1 Bad sequence of commands: this server refused the "
                                "session in its greeting; only QUIT is accepted (RFC 5321 "
                                "section 3.1)")
                return
            await method(arg)
        return guarded

    # -- commands ------------------------------------------------------------------------

    async def smtp_EHLO(self, hostname: str) -> None:
        self.command_size_limits = collections.defaultdict(lambda: COMMAND_LINE_LIMIT)
        self._verbatim = True  # RFC 2034: no enhanced codes on the EHLO response
        # aiosmtpd writes each line on its own without yielding to the loop; written
        # together they cost one system call, and a client that hung up is noticed
        # before asyncio complains about writes to a lost connection.
        self._batch = []
        try:
            await super().smtp_EHLO(hostname)
        finally:
            self._verbatim = False
            lines, self._batch = self._batch, None
            if lines:
                await self._send("\r\n".join(lines))
                await self._after_reply(lines[-1])

    async def smtp_HELO(self, hostname: str) -> None:
        self._verbatim = True
        try:
            await super().smtp_HELO(hostname)
        finally:
            self._verbatim = False

    async def smtp_MAIL(self, arg: str | None) -> None:
        if arg and self.role.auth:
            # RFC 4954 section 5: AUTH=<mailbox> on MAIL FROM; accepted and not used.
            arg = re.sub(r"(?i)\s+AUTH=\S*", "", arg)
        await super().smtp_MAIL(arg)

    async def smtp_AUTH(self, arg: str) -> None:
        if not self.role.auth:
            await self.push("503 5.5.1 Error: authentication not enabled: the MX role receives "
                            "mail from other servers without AUTH; log in on the submission "
                            "role")
            return
        await super().smtp_AUTH(arg)

    async def smtp_STARTTLS(self, arg: str) -> None:
        await super().smtp_STARTTLS(arg)
        if self.tls_active:
            self.server._record(self, "starttls", self.tls_description() or "")

    @syntax("XCLIENT attribute=value [attribute=value ...]", when="xclient_enabled")
    async def smtp_XCLIENT(self, arg: str | None) -> None:
        """Postfix's XCLIENT (www.postfix.org/XCLIENT_README.html): the client says which
        address, name, HELO and protocol the session stands for; the server answers with
        a new greeting and the client must EHLO again."""
        assert self.envelope is not None and self.session is not None
        if self.envelope.mail_from:
            await self.push("503 5.5.1 Error: MAIL transaction in progress")
            return
        if not arg:
            await self.push(f"501 5.5.4 Syntax: XCLIENT attribute=value ... "
                            f"({' '.join(XCLIENT_ATTRIBUTES)})")
            return
        given = ClientIdentity(**vars(self.client))
        for item in arg.split():
            name, eq, raw = item.partition("=")
            name = name.upper()
            if not eq or name not in XCLIENT_ATTRIBUTES:
                await self.push(f"501 5.5.4 Bad XCLIENT attribute name: {_shown(name, 30)}")
                return
            try:
                value = _xtext_decode(raw)
            except ValueError:
                await self.push(f"501 5.5.4 Bad XCLIENT {name} syntax: {_shown(raw, 60)}")
                return
            problem = self._xclient_value(name, value, given)
            if problem:
                await self.push(f"501 5.5.4 Bad XCLIENT {name} syntax: {_shown(problem, 60)}")
                return
        self.client = given
        self._set_rset_state()
        self.session.host_name = None
        self.session.extended_smtp = False
        self.server._record(self, "xclient", _shown(arg, 200))
        await self._send(f"220 {self.hostname} {self.__ident__}")

    @property
    def xclient_enabled(self) -> bool:
        return self.role.xclient

    @staticmethod
    def _xclient_value(name: str, value: str, given: ClientIdentity) -> str | None:
        """Store one XCLIENT attribute in ``given``; the bad value, or None."""
        special = value.upper() if value.upper() in _XCLIENT_SPECIAL else None
        if name in ("ADDR", "DESTADDR"):
            if special:
                setattr(given, name.lower(), special)
                return None
            text = value[5:] if value.upper().startswith("IPV6:") else value
            try:
                address = str(ipaddress.ip_address(text))
            except ValueError:
                return value
            setattr(given, name.lower(), address)
        elif name == "PROTO":
            if value.upper() not in ("SMTP", "ESMTP"):
                return value
            given.proto = value.upper()
        elif name in ("NAME", "HELO"):
            if not special and not re.fullmatch(r"[\x21-\x7e]{1,255}", value):
                return value
            setattr(given, name.lower(), special or value)
        return None

    # -- AUTH ----------------------------------------------------------------------------

    def _check_login(self, _smtp: SMTP, _session: Session, _envelope: Envelope,
                      mechanism: str, auth_data: Any) -> AuthResult:
        """Check a login against the lab accounts. A failure must say handled=False:
        otherwise aiosmtpd sends nothing and the client waits for its timeout."""
        if not isinstance(auth_data, LoginPassword):
            return AuthResult(success=False, handled=False)
        login = auth_data.login.decode("utf-8", "replace")
        password = auth_data.password.decode("utf-8", "replace")
        account = self.server.accounts.get(login)
        if account is not None and self.server.accounts.check(login, password):
            self.server._record(self, "auth", f"{mechanism} as {account.address}")
            return AuthResult(success=True, auth_data=account.address)
        self.server._record(self, "auth failed", f"{mechanism} for {_shown(login)!r}")
        return AuthResult(success=False, handled=False,
                          message="535 5.7.8 Authentication credentials invalid: wrong user "
                                  "name or password")
