"""The lab's mail server: the roles a real mail system has, on aiosmtpd.

One :class:`MailServer` runs every role on the lab's own event loop, each on its own
ephemeral port on 127.0.0.1 (``lab.smtp.port("mx")``):

``mx``
    What port 25 is on the Internet (RFC 5321): receives mail for the lab's domains and
    their existing mailboxes only (unknown user: 550 5.1.1; any other domain: 550 5.7.1,
    it is never an open relay). No AUTH. STARTTLS offered but optional. XCLIENT (as
    Postfix has it for testing) lets the lab's delivering MTA, or ``swaks --xclient-addr``,
    say which Internet address the connection stands for; the stored message's Received
    header and the server's log show that address.
``submission``
    Port 587 semantics (RFC 6409, RFC 3207): STARTTLS before anything else, AUTH offered
    only inside TLS (PLAIN and LOGIN, RFC 4954, against the lab accounts); an authenticated
    user may send to any lab address; everyone else gets 550 5.7.1.
``submissions``
    Port 465 semantics (RFC 8314): TLS from the first byte, AUTH advertised and working.
``legacy``
    Off unless a lesson turns it on (``lab.smtp.enable_legacy()``): AUTH without any TLS,
    the insecure configuration the TLS lesson captures a password from.

On every message the MX role checks SPF (RFC 7208: the client's address, XCLIENT's when
given, against the MAIL FROM domain, or postmaster@HELO for ``<>``), every DKIM
signature (RFC 6376) and then DMARC (RFC 9989, :mod:`labsupport.auth.dmarc`), with the lab's
zones in memory as resolver, removes any Authentication-Results field that claims to be
its own (RFC 8601 section 5) and adds one Authentication-Results field (authserv-id
``mx.lab.test``, with ``spf=``, ``dkim=`` and ``dmarc=``) below its Received field. It
then applies the disposition the From domain's DMARC policy asks for: ``reject``: the
DATA command gets 550 5.7.1 with the reason and nothing is stored or re-sent;
``quarantine``: each copy goes to the recipient's Junk folder; ``none``: INBOX. Every
evaluation is kept in ``lab.smtp.evaluations`` (:mod:`labsupport.auth.authres`), which
``lab.dmarc_reports()`` turns into aggregate reports (:mod:`labsupport.auth.dmarc_reports`).
The submission roles DKIM-sign the mail of an authenticated user whose domain has a lab
key in ``data/keys`` (selector ``lab2026-rsa``, relaxed/relaxed) before queueing it;
``lab.smtp.set_signing_key(domain, key, selector)`` makes them sign another domain's mail
with a key made at run time (the capstone, ``notebooks/07-capstone-secure-a-domain.ipynb``).

Two lab addresses re-send what they receive through the delivering MTA
(``lab.smtp.aliases()``, described in :mod:`labsupport.mail.aliases`): the forwarder
``carol@alumni.example`` (original MAIL FROM kept: SPF then fails) and the mailing list
``course@lists.campus.test`` (its own envelope sender, a subject tag and a footer: the
author's DKIM body hash then fails; From rewritten for authors whose domain publishes
``p=reject`` or ``p=quarantine``). The MX role accepts mail for both (and stores what
comes to the list's bounce address), queues each copy to be sent from the address's own
outbound host, and signs the list's copies with campus.test's lab key, so they pass DMARC
as lists.campus.test.

Every reply carries an enhanced status code (RFC 3463, RFC 2034) and a sentence a learner
can read; SIZE (RFC 1870), 8BITMIME (RFC 6152) and SMTPUTF8 (RFC 6531) are advertised and
honoured. Misbehaving clients (over-long lines, commands out of sequence, garbage bytes,
too many errors or recipients, oversize messages) get their reply, and the server keeps
serving everyone else. Accepted mail is stored durably (see :mod:`labsupport.mail.mailstore`)
with a Received header (RFC 5321 section 4.4) before the server says 250; mail submitted
for delivery goes to the lab's queue (``lab.queue``) when there is one. Lesson faults
(:mod:`labsupport.mail.faults`) are applied at each stage.

aiosmtpd speaks the protocol; :class:`LabSMTP` adds what a lab needs and mends two
aiosmtpd gaps: AUTH in implicit-TLS mode (aiosmtpd only counts TLS it started itself with
STARTTLS) and the MAIL command-length allowance that grows with every EHLO.

Introduced in ``notebooks/02-smtp-dialogue.ipynb``.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import email.utils
import functools
import ipaddress
import logging
import re
import secrets
import threading
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, AnyStr, Protocol, cast

from aiosmtpd.smtp import (
    SMTP,
    AuthResult,
    Envelope,
    LoginPassword,
    Session,
    TLSSetupException,
    syntax,
)

from ..auth.authres import AuthEvaluation, EvaluationLog, authenticate, header_field, strip_own
from ..core.clock import LabClock
from ..core.errors import LabError
from ..core.results import EventLog, html_table, text_table
from ..wire.tls import LabCA, server_names
from .accounts import Accounts, normalise_address
from .aliases import LAB_ALIASES, Alias, Forwarder, MailingList
from .faults import FaultRule, Faults
from .greylist import Greylist
from .mailstore import INBOX, JUNK, MailStore

if TYPE_CHECKING:
    from ..auth.dkim_keys import LabKey

# aiosmtpd logs every unknown command as a warning; without a handler Python would print
# them on stderr, into notebook cells. The lab keeps its own log (MailServer.log).
logging.getLogger("mail.log").addHandler(logging.NullHandler())

#: The host names the roles greet with. The MX role stands for every MX host of the
#: lab world, the submission roles for every organisation's submission server.
MX_HOSTNAME = "mx.lab.test"
SUBMISSION_HOSTNAME = "smtp.lab.test"

#: The largest message accepted, in octets, advertised with SIZE (RFC 1870).
DEFAULT_SIZE_LIMIT = 10 * 1024 * 1024
#: RFC 5321 section 4.5.3.1.8: a server must accept at least 100 recipients per message.
MAX_RECIPIENTS = 100
#: RFC 5321 section 4.5.3.1.4: a command line is at most 512 octets with its CRLF.
COMMAND_LINE_LIMIT = 512
#: RFC 5321 section 4.5.3.1.6: a text line is at most 1000 octets with its CRLF.
TEXT_LINE_LIMIT = 1000
#: Client errors (5xx replies to bad commands) on one connection before the server
#: gives up on it with 421 (Postfix's smtpd_hard_error_limit is 20; lessons need fewer).
MAX_ERRORS = 10
#: RFC 5321 section 4.5.3.2.7: the server waits at least 5 minutes for the next command.
IDLE_TIMEOUT = 300.0
#: The XCLIENT attributes honoured (Postfix's XCLIENT_README; DESTADDR names the MX host
#: the client meant to reach).
XCLIENT_ATTRIBUTES = ("ADDR", "NAME", "HELO", "PROTO", "DESTADDR")
_XCLIENT_SPECIAL = ("[UNAVAILABLE]", "[TEMPUNAVAIL]")
#: Replies counted as client errors (RFC 5321 section 4.2.3): bad syntax, bad sequence,
#: missing TLS or AUTH, failed AUTH.
_ERROR_CODES = frozenset({"500", "501", "502", "503", "504", "530", "535", "538", "555"})
_ENHANCED = re.compile(r"^[245]\.\d{1,3}\.\d{1,3}( |$)")
#: What may not appear in a Received header's host names (outside printable ASCII, or
#: the parentheses and backslash that would end or escape its comments).
_NOT_PRINTABLE = re.compile(r"[^\x21-\x7e]|[()\\]")


@dataclass(frozen=True)
class Role:
    """What one listener does (see the module docstring for the four roles)."""

    name: str
    hostname: str
    greeting: str
    implicit_tls: bool = False
    starttls: bool = False
    require_tls: bool = False
    auth: bool = False
    auth_require_tls: bool = True
    xclient: bool = False
    submission: bool = False
    summary: str = ""


ROLES: dict[str, Role] = {
    "mx": Role("mx", MX_HOSTNAME, "ESMTP Mail Labs MX role: mail for the lab's domains",
               starttls=True, xclient=True,
               summary="receives mail for the lab's domains (port 25 on the Internet)"),
    "submission": Role("submission", SUBMISSION_HOSTNAME,
                       "ESMTP Mail Labs submission role: STARTTLS, then AUTH",
                       starttls=True, require_tls=True, auth=True, submission=True,
                       summary="mail programs send here: STARTTLS, then AUTH (port 587)"),
    "submissions": Role("submissions", SUBMISSION_HOSTNAME,
                        "ESMTP Mail Labs submissions role: implicit TLS, then AUTH",
                        implicit_tls=True, auth=True, submission=True,
                        summary="TLS from the first byte, then AUTH (port 465, RFC 8314)"),
    "legacy": Role("legacy", SUBMISSION_HOSTNAME,
                   "ESMTP Mail Labs LEGACY role: INSECURE, AUTH without TLS, passwords "
                   "cross the wire in clear text", auth=True, auth_require_tls=False,
                   submission=True,
                   summary="INSECURE: AUTH without TLS, for the TLS lesson only"),
}
#: The roles a lab starts with; "legacy" waits for enable_legacy().
DEFAULT_ROLES = ("mx", "submission", "submissions")

# aiosmtpd's replies that need an enhanced status code or a clearer text.
_REWRITES: dict[str, str] = {
    "250 OK": "250 2.0.0 OK",
    "221 Bye": "221 2.0.0 Bye",
    "220 Ready to start TLS": "220 2.0.0 Ready to start TLS",
    "454 TLS not available": "454 4.7.0 TLS not available",
    "500 Command line too long":
        f"500 5.5.2 Line too long: a command line is at most {COMMAND_LINE_LIMIT} octets "
        "(RFC 5321 section 4.5.3.1.4)",
    "500 Error: bad syntax":
        "500 5.5.2 Syntax error: a command is an ASCII word, then its arguments "
        "(RFC 5321 section 2.4)",
    "500 Error: strict ASCII mode": "500 5.6.7 Non-ASCII text needs SMTPUTF8 (RFC 6531)",
    "554 Command refused due to lack of security":
        "554 5.7.0 Command refused: the TLS handshake did not succeed",
    "530 Must issue a STARTTLS command first":
        "530 5.7.0 Must issue a STARTTLS command first: this role takes mail and passwords "
        "only inside TLS (RFC 3207)",
    "503 Error: send HELO first": "503 5.5.1 Bad sequence of commands: say HELO first",
    "503 Error: send EHLO first": "503 5.5.1 Bad sequence of commands: say EHLO first",
    "503 Error: need MAIL command":
        "503 5.5.1 Bad sequence of commands: MAIL FROM comes first",
    "503 Error: need RCPT command":
        "503 5.5.1 Bad sequence of commands: RCPT TO comes before DATA",
    "503 Error: nested MAIL command":
        "503 5.5.1 Bad sequence of commands: the sender is already given (RSET to start "
        "over)",
    "503 Already authenticated": "503 5.5.1 Bad sequence of commands: already authenticated",
    "500 Error: command 'AUTH' not recognized":
        "503 5.5.1 Bad sequence of commands: AUTH needs EHLO, not HELO (RFC 4954)",
    "501 Not enough value": "501 5.5.4 Syntax: AUTH mechanism [initial-response]",
    "501 Too many values": "501 5.5.4 Syntax: AUTH mechanism [initial-response]",
    "501 Syntax: QUIT": "501 5.5.4 Syntax: QUIT (no arguments)",
    "501 Syntax: RSET": "501 5.5.4 Syntax: RSET (no arguments)",
    "501 Syntax: DATA": "501 5.5.4 Syntax: DATA (no arguments)",
    "501 Syntax: STARTTLS": "501 5.5.4 Syntax: STARTTLS (no arguments)",
    "501 Syntax: NOOP": "501 5.5.4 Syntax: NOOP",
    "501 Syntax: VRFY <address>": "501 5.5.4 Syntax: VRFY <address>",
    "501 Syntax: MAIL FROM: <address>": "501 5.5.4 Syntax: MAIL FROM:<address>",
    "501 Syntax: MAIL FROM: <address> [SP <mail-parameters>]":
        "501 5.5.4 Syntax: MAIL FROM:<address> [SIZE=n] [BODY=7BIT|8BITMIME] [SMTPUTF8]",
    "501 Syntax: RCPT TO: <address>": "501 5.5.4 Syntax: RCPT TO:<address>",
    "501 Syntax: RCPT TO: <address> [SP <mail-parameters>]":
        "501 5.5.4 Syntax: RCPT TO:<address>",
    "501 Error: BODY can only be one of 7BIT, 8BITMIME":
        "501 5.5.4 BODY must be 7BIT or 8BITMIME (RFC 6152)",
    "501 Error: SMTPUTF8 takes no arguments": "501 5.5.4 SMTPUTF8 takes no value (RFC 6531)",
    "501 Error: SMTPUTF8 disabled": "501 5.5.4 SMTPUTF8 is not available",
    "555 MAIL FROM parameters not recognized or not implemented":
        "555 5.5.4 MAIL FROM parameter not recognized: this server knows SIZE, BODY and "
        "SMTPUTF8",
    "555 RCPT TO parameters not recognized or not implemented":
        "555 5.5.4 RCPT TO parameters not recognized: this server knows none",
    "553 5.1.3 Error: malformed address":
        "553 5.1.3 Malformed address: write it as <local-part@domain> (RFC 5321 section "
        "4.1.2)",
    "502 EXPN not implemented": "502 5.5.1 EXPN not implemented: the lab does not expand "
                                "lists",
    "252 Cannot VRFY user, but will accept message and attempt delivery":
        "252 2.1.5 Cannot VRFY user, but will accept message and attempt delivery",
    "500 Line too long (see RFC5321 4.5.3.1.6)":
        f"500 5.5.2 Line too long: a text line is at most {TEXT_LINE_LIMIT} octets with its "
        "CRLF (RFC 5321 section 4.5.3.1.6); the message was not stored",
    "502 5.5.1 Too many unrecognized commands, goodbye.":
        "421 4.7.0 Too many unrecognized commands: closing the connection",
    "501 5.7.0 Auth aborted": "501 5.7.0 AUTH aborted by the client",
}
_UNRECOGNISED = re.compile(r'^500 Error: command "(.*)" not recognized$', re.S)


def _shown(text: str, limit: int = 60) -> str:
    """``text`` safe to echo in a reply or log: no control or undecodable characters."""
    cleaned = text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    cleaned = "".join(c if c.isprintable() else "?" for c in cleaned)
    return cleaned if len(cleaned) <= limit else cleaned[:limit] + "..."


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


def _new_id() -> str:
    """A queue id like Postfix's: 10 hex digits."""
    return secrets.token_hex(5).upper()


class SubmissionQueue(Protocol):
    """What the server needs from the delivering MTA's queue (``labsupport.mail.delivery``)."""

    def submit(self, mail_from: str, rcpt_tos: list[str], raw: bytes, *,
               sender_domain: str) -> Any: ...


#: Why the MX role does not apply a DMARC reject or quarantine to a client on the real
#: loopback address that did not say (XCLIENT ADDR) which Internet host it stands for:
#: that client is the lab's own machine, as OpenDMARC's IgnoreHosts (default 127.0.0.1)
#: and Postfix's mynetworks treat it. The result is still evaluated and stamped.
LOOPBACK_OVERRIDE = ("the client is the lab machine itself (127.0.0.1 without XCLIENT), "
                     "which the MX role trusts, as OpenDMARC's IgnoreHosts does")

#: The selector of the lab keys the submission roles sign with (data/keys, RSA).
SIGNING_SELECTOR = "lab2026-rsa"


# -- the server's log ------------------------------------------------------------------


@dataclass(frozen=True)
class MailLogEntry:
    """One line of the mail server's log."""

    time: float
    role: str
    client: str
    event: str
    detail: str = ""

    def as_row(self) -> list[object]:
        stamp = datetime.fromtimestamp(self.time, tz=UTC).strftime("%H:%M:%S.%f")[:-3]
        return [stamp, self.role, self.client, self.event, self.detail]

    def __str__(self) -> str:
        stamp, role, client, event, detail = self.as_row()
        return f"{stamp} {role} {client} {event}" + (f": {detail}" if detail else "")


class MailLog(EventLog[MailLogEntry]):
    """The mail server's log: connections, XCLIENT, AUTH, refusals, faults, deliveries."""

    HEADERS = ["time (UTC)", "role", "client", "event", "detail"]

    def __str__(self) -> str:
        return text_table(self.HEADERS, [e.as_row() for e in self.entries(20)])

    def _repr_html_(self) -> str:
        return html_table(self.HEADERS, [e.as_row() for e in self.entries(20)],
                          caption="Mail server log (last 20)")


# -- one connection ----------------------------------------------------------------------


@dataclass
class ClientIdentity:
    """Who the client says it stands for (XCLIENT); None: the real connection's values."""

    addr: str | None = None
    name: str | None = None
    helo: str | None = None
    proto: str | None = None
    destaddr: str | None = None


class LabSMTP(SMTP):
    """aiosmtpd's SMTP protocol with the lab's roles, replies, faults and XCLIENT."""

    def __init__(self, server: MailServer, role: Role, loop: asyncio.AbstractEventLoop) -> None:
        self.server = server
        self.role = role
        # aiosmtpd keeps these limits in one dict shared by every connection and adds to
        # the MAIL allowance on every EHLO; each connection gets its own (see smtp_EHLO).
        self.command_size_limits = collections.defaultdict(lambda: COMMAND_LINE_LIMIT)
        self.client = ClientIdentity()
        self._greeted = False
        self._refused = False
        self._verbatim = False
        self._batch: list[str] | None = None
        self._errors = 0
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

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        first = self.transport is None
        super().connection_made(transport)
        if not first:
            return  # the same connection, now inside STARTTLS
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
        """The banner, after any delay-banner or banner fault (RFC 5321 section 3.1)."""
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


# -- what each role does with mail -------------------------------------------------------


class _RoleHandler:
    """aiosmtpd handler hooks: the lab's policy for one role (faults first, then the
    relay and mailbox checks, then storage or the queue)."""

    def __init__(self, server: MailServer, role: Role) -> None:
        self.server = server
        self.role = role

    async def _fault(self, smtp: LabSMTP, stage: str, argument: str) -> FaultRule | None:
        rule = self.server.faults.take(stage, self.role.name, argument)
        if rule is None:
            return None
        self.server._record(smtp, "fault", f"{stage} #{rule.id}: {rule.reply}")
        if rule.delay:
            await asyncio.sleep(rule.delay)
        return rule

    async def handle_HELO(self, smtp: LabSMTP, session: Session, envelope: Envelope,
                          hostname: str) -> str:
        rule = await self._fault(smtp, "ehlo", hostname)
        if rule is not None and rule.code >= 400:
            return rule.reply
        session.host_name = hostname
        return rule.reply if rule else \
            f"250 {self.role.hostname} Hello {_shown(hostname)} [{smtp.client_address}]"

    async def handle_EHLO(self, smtp: LabSMTP, session: Session, envelope: Envelope,
                          hostname: str, responses: list[str]) -> list[str]:
        rule = await self._fault(smtp, "ehlo", hostname)
        if rule is not None and rule.code >= 400:
            session.extended_smtp = False
            return [rule.reply]
        session.host_name = hostname
        lines = [f"250-{self.role.hostname} Hello {_shown(hostname)} [{smtp.client_address}]"]
        for line in responses[1:-1]:
            if line.startswith("250-AUTH") and not self.role.auth:
                continue
            lines.append(line)
        lines.append("250-ENHANCEDSTATUSCODES")
        if self.role.xclient:
            lines.append("250-XCLIENT " + " ".join(XCLIENT_ATTRIBUTES))
        lines.append("250 HELP")
        return lines

    async def handle_MAIL(self, smtp: LabSMTP, session: Session, envelope: Envelope,
                          address: str, mail_options: list[str]) -> str:
        rule = await self._fault(smtp, "mail", address)
        if rule is not None and rule.code >= 400:
            return rule.reply
        if not address.isascii() and not envelope.smtp_utf8:
            return (f"553 5.6.7 <{_shown(address)}>: a non-ASCII address needs SMTPUTF8 on "
                    "MAIL FROM (RFC 6531 section 3.4)")
        local, at, domain = address.rpartition("@")
        if address != "<>" and not (local and at and domain):
            return (f"553 5.1.7 <{_shown(address)}>: a sender is local-part@domain, or <> "
                    "for a bounce (RFC 5321 section 4.1.2)")
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        if rule is not None:
            return rule.reply
        if address == "<>":
            return "250 2.1.0 Sender <> OK (the null sender of bounces, RFC 5321 section 4.5.5)"
        return f"250 2.1.0 Sender <{_shown(address, 200)}> OK"

    async def handle_RCPT(self, smtp: LabSMTP, session: Session, envelope: Envelope,
                          address: str, rcpt_options: list[str]) -> str:
        rule = await self._fault(smtp, "rcpt", address)
        if rule is not None and rule.code >= 400:
            return rule.reply
        if not address.isascii() and not envelope.smtp_utf8:
            return (f"553 5.6.7 <{_shown(address)}>: a non-ASCII address needs SMTPUTF8 on "
                    "MAIL FROM (RFC 6531 section 3.4)")
        if len(envelope.rcpt_tos) >= self.server.max_recipients:
            # RFC 5321 section 4.5.3.1.10 asks for 452 (a client sends the rest later).
            return (f"452 4.5.3 Too many recipients: at most {self.server.max_recipients} per "
                    "message; send the rest in another transaction")
        if address.lower() == "postmaster":
            address = "postmaster@lab.test"  # RFC 5321 section 4.1.1.3: <Postmaster> alone
        refusal = self.server.recipient_refusal(self.role, session, address)
        if refusal is not None:
            self.server._record(smtp, "refused", f"RCPT <{_shown(address)}>: {refusal}")
            return refusal
        if not self.role.submission:
            deferred = self.server.greylist.check(smtp.client_address,
                                                  envelope.mail_from or "", address)
            if deferred is not None:
                self.server._record(smtp, "greylisted", f"RCPT <{_shown(address)}>: {deferred}")
                return deferred
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return rule.reply if rule else f"250 2.1.5 Recipient <{_shown(address, 200)}> OK"

    async def handle_DATA(self, smtp: LabSMTP, session: Session, envelope: Envelope) -> str:
        rule = await self._fault(smtp, "data", " ".join(envelope.rcpt_tos))
        if rule is not None and rule.code >= 400:
            self.server._record(smtp, "not stored", f"fault: {rule.reply}")
            return rule.reply
        content = envelope.original_content or b""
        queue_id = _new_id()
        try:
            if self.role.submission:
                reply = await self._submit(smtp, session, envelope, content, queue_id)
            else:
                reply = await self._deliver(smtp, envelope, content, queue_id)
        except Exception as exc:  # noqa: BLE001 - the client must hear, and may retry
            self.server._record(smtp, "error", f"{type(exc).__name__}: {exc}")
            return ("451 4.3.0 The lab could not store the message "
                    f"({type(exc).__name__}); nothing was kept, try again")
        return rule.reply if rule else reply

    async def _deliver(self, smtp: LabSMTP, envelope: Envelope, content: bytes,
                       queue_id: str) -> str:
        """Final delivery: a copy per mailbox, each with Return-Path, Received and (on
        the MX role) the one Authentication-Results field; forwarder and list addresses
        re-send the message through the delivering MTA."""
        recipients = list(dict.fromkeys(normalise_address(r) for r in envelope.rcpt_tos))
        when = self.server.clock.now()
        sender = "" if envelope.mail_from in (None, "<>") else str(envelope.mail_from)
        loop = asyncio.get_running_loop()
        stamp = b""
        folder = INBOX
        evaluation: AuthEvaluation | None = None
        if not self.role.submission and self.server.auth_resolver is not None:
            evaluation = await self._authenticate(smtp, envelope, content, recipients,
                                                  queue_id)
            # RFC 8601 section 5: fields claiming to be ours were not written by us.
            content = strip_own(content, self.server.authserv_id)
            if evaluation is not None:
                stamp = header_field(evaluation.header)
                if evaluation.disposition == "reject":
                    reply = _dmarc_rejection(evaluation)
                    self.server._record(smtp, "rejected", f"id {queue_id}: {reply}")
                    return reply
                if evaluation.disposition == "quarantine":
                    folder = JUNK
        aliases = self.server.aliases()
        mailboxes = [r for r in recipients if r not in aliases]
        copies = [(r, b"Return-Path: <" + sender.encode("utf-8", "surrogateescape") + b">\r\n"
                   + smtp.received_header(envelope, queue_id, r, when) + stamp + content)
                  for r in mailboxes]
        store = self.server.store

        def write() -> None:
            for address, raw in copies:
                store.deliver(address, raw, folder)

        await loop.run_in_executor(None, write)  # durable before the 250 (fsync)
        for address in recipients:
            if address not in aliases:
                continue
            if folder == JUNK:
                self.server._record(smtp, "not re-sent", f"<{address}>: quarantined by "
                                    "DMARC, so not passed on")
                continue
            await self._resend(smtp, envelope, aliases[address], content, queue_id, when,
                               sender)
        if mailboxes:
            where = " (Junk: DMARC quarantine)" if folder == JUNK else ""
            self.server._record(smtp, "delivered", f"id {queue_id} from <{_shown(sender)}> to "
                                + ", ".join(f"<{r}>" for r in mailboxes) + where)
        if folder == JUNK:
            return f"250 2.0.0 Ok: DMARC quarantine, delivered to Junk as {queue_id}"
        return f"250 2.0.0 Ok: delivered as {queue_id}"

    async def _authenticate(self, smtp: LabSMTP, envelope: Envelope, content: bytes,
                            recipients: list[str], queue_id: str) -> AuthEvaluation | None:
        """SPF and DKIM for one message (in a worker thread: RSA and hashing take time),
        kept in ``server.evaluations``; None (and a log line) if the checks broke."""
        assert smtp.session is not None
        helo = smtp.client.helo if smtp.client.helo not in (None, *_XCLIENT_SPECIAL) \
            else smtp.session.host_name
        sender = "" if envelope.mail_from in (None, "<>") else str(envelope.mail_from)
        check = functools.partial(
            authenticate, content, client_ip=smtp.client_address, mail_from=sender,
            helo=helo, resolver=self.server.auth_resolver, authserv_id=self.server.authserv_id,
            recipients=recipients, now=self.server.clock, queue_id=queue_id)
        try:
            evaluation = await asyncio.get_running_loop().run_in_executor(None, check)
        except Exception as exc:  # noqa: BLE001 - the mail is still delivered, unstamped
            self.server._record(smtp, "error", f"authentication checks failed: "
                                f"{type(exc).__name__}: {exc}")
            return None
        if evaluation.requested_disposition != "none" and smtp.client.addr is None \
                and ipaddress.ip_address(smtp.peer_address).is_loopback:
            evaluation = dataclasses.replace(evaluation, policy_override=LOOPBACK_OVERRIDE)
        self.server.evaluations.append(evaluation)
        self.server._record(smtp, "authenticated", f"id {queue_id}: {evaluation.header}")
        if evaluation.policy_override:
            self.server._record(smtp, "policy not applied", f"id {queue_id}: DMARC asked for "
                                f"{evaluation.requested_disposition}: {LOOPBACK_OVERRIDE}")
        return evaluation

    async def _resend(self, smtp: LabSMTP, envelope: Envelope, alias: Alias, content: bytes,
                      queue_id: str, when: datetime, sender: str) -> None:
        """Hand a message for a forwarder or list address back to the delivering MTA."""
        queue = self.server.queue()
        if queue is None:
            self.server._record(smtp, "not re-sent", f"<{alias.address}> is a {alias.kind}, "
                                "but the lab has no queue to re-send with")
            return
        loop = asyncio.get_running_loop()
        received = smtp.received_header(envelope, queue_id, alias.address, when)
        if isinstance(alias, Forwarder):
            mail_from, rcpts, raw = sender, [alias.target], received + content
        else:
            if not sender:
                self.server._record(smtp, "not re-sent", f"<{alias.address}>: a bounce (MAIL "
                                    "FROM <>) is not sent to the list's members")
                return
            if alias.carries_own_id(content):
                self.server._record(smtp, "not re-sent", f"<{alias.address}>: the message "
                                    "already went through this list (a loop)")
                return
            mail_from, rcpts = alias.bounce_address, list(alias.members)
            rewrite = await loop.run_in_executor(None, functools.partial(
                alias.rewrites_from, content, self.server.auth_resolver))
            posted = alias.post(content, rewrite_from=rewrite)
            if rewrite:
                self.server._record(smtp, "from rewritten", f"<{alias.address}>: the author's "
                                    "domain publishes p=reject or p=quarantine (RFC 7960)")
            raw = received + await self._sign_as(smtp, alias.signing_domain, posted)
        item = await loop.run_in_executor(None, functools.partial(
            queue.submit, mail_from, rcpts, raw, sender_domain=alias.sender_domain))
        kick = getattr(queue, "kick", None)
        if callable(kick):
            kick()
        shown_id = str(getattr(item, "id", "") or queue_id)
        self.server._record(smtp, "re-sent", f"<{alias.address}> ({alias.kind}): queued as "
                            f"{shown_id} from <{_shown(mail_from)}> to "
                            + ", ".join(f"<{r}>" for r in rcpts)
                            + f", sent from {alias.sender_domain}")

    async def _sign_as(self, smtp: LabSMTP, domain: str, message: bytes) -> bytes:
        """``message`` DKIM-signed with the lab key of ``domain`` when there is one."""
        return await self._sign(smtp, f"@{domain}", message)

    async def _submit(self, smtp: LabSMTP, session: Session, envelope: Envelope,
                      content: bytes, queue_id: str) -> str:
        """Submission: hand the message to the lab's queue, or deliver it here when the
        lab has no queue yet."""
        queue = self.server.queue()
        user = str(session.auth_data or "")
        when = self.server.clock.now()
        completed = await self._sign(smtp, user, _complete_headers(
            content, when, queue_id, self.role.hostname))
        if queue is None:
            return await self._deliver(smtp, envelope, completed, queue_id)
        recipients = list(envelope.rcpt_tos)
        only = recipients[0] if len(recipients) == 1 else None
        raw = smtp.received_header(envelope, queue_id, only, when) + completed
        sender = "" if envelope.mail_from in (None, "<>") else str(envelope.mail_from)
        sender_domain = user.rpartition("@")[2] or sender.rpartition("@")[2]
        loop = asyncio.get_running_loop()
        item = await loop.run_in_executor(None, functools.partial(
            queue.submit, sender, recipients, raw, sender_domain=sender_domain))
        kick = getattr(queue, "kick", None)
        if callable(kick):
            kick()  # deliver now rather than at the queue's next poll
        shown_id = str(getattr(item, "id", "") or queue_id)
        self.server._record(smtp, "queued", f"id {shown_id} from <{_shown(sender)}> to "
                            + ", ".join(f"<{_shown(r)}>" for r in recipients)
                            + f" (sent by {user or 'nobody'})")
        return f"250 2.0.0 Ok: queued as {shown_id}"

    async def _sign(self, smtp: LabSMTP, user: str, message: bytes) -> bytes:
        """``message`` DKIM-signed for ``user``'s domain when the lab has a key for it
        (RFC 6376 section 5), else unchanged; a refusal is logged, never fatal."""
        domain = user.rpartition("@")[2].lower()
        key = self.server.signing_key(domain) if domain else None
        if key is None:
            return message
        from ..auth.dkim import DKIMError, sign

        selector = self.server.signing_selector(domain)
        signer = functools.partial(sign, message, domain=domain, selector=selector,
                                   private_key=key, canonicalization=("relaxed", "relaxed"),
                                   timestamp=self.server.clock)
        try:
            signed = await asyncio.get_running_loop().run_in_executor(None, signer)
        except DKIMError as exc:
            self.server._record(smtp, "not signed", f"DKIM for {domain}: {exc}")
            return message
        self.server._record(smtp, "dkim signed", f"d={domain} s={selector}")
        return signed

    async def handle_exception(self, error: Exception) -> str:
        event = "tls failed" if isinstance(error, TLSSetupException) else "error"
        cause = error.__cause__ if isinstance(error, TLSSetupException) else error
        self.server.log.record(MailLogEntry(self.server.clock.time(), self.role.name, "-",
                                            event, f"{type(cause).__name__}: {cause}"))
        return f"451 4.3.0 Internal error ({type(error).__name__}): please try again"


def _dmarc_rejection(evaluation: AuthEvaluation) -> str:
    """The 550 5.7.1 reply for a message the From domain's DMARC policy rejects."""
    result = evaluation.dmarc
    domain = getattr(result, "from_domain", None) or "the From domain"
    record_domain = getattr(result, "record_domain", None) or domain
    tag = getattr(result, "policy", None) or "p"
    return (f"550 5.7.1 Message rejected: DMARC policy of {_shown(record_domain, 100)} "
            f"({tag}=reject): neither SPF nor DKIM passed aligned with the From domain "
            f"{_shown(domain, 100)} (RFC 9989)")


def _complete_headers(content: bytes, when: datetime, queue_id: str, hostname: str) -> bytes:
    """Add Date and Message-ID when a submitted message lacks them (RFC 6409 section 8)."""
    head, sep, _body = content.partition(b"\r\n\r\n")
    if not sep:
        head = content
    names = {line.split(b":", 1)[0].strip().lower() for line in head.split(b"\r\n")
             if line and not line[:1].isspace() and b":" in line}
    added = b""
    if b"date" not in names:
        added += b"Date: " + email.utils.format_datetime(when).encode() + b"\r\n"
    if b"message-id" not in names:
        added += f"Message-ID: <{queue_id}.{int(time.time())}@{hostname}>\r\n".encode()
    return added + content


# -- the server --------------------------------------------------------------------------


class MailServer:
    """The lab's mail roles on one asyncio loop (see the module docstring).

    Build it with the lab's parts (``labsupport.start()`` does); :meth:`start` runs on
    the loop. ``queue`` is called for each submitted message and returns the delivering
    MTA's queue, or None to deliver lab mail straight into the mailboxes.
    """

    def __init__(self, *, accounts: Accounts, store: MailStore, faults: Faults, ca: LabCA,
                 domains: Iterable[str], clock: LabClock | None = None,
                 queue: Callable[[], SubmissionQueue | None] | None = None,
                 reverse_name: Callable[[str], str | None] | None = None,
                 size_limit: int = DEFAULT_SIZE_LIMIT, max_recipients: int = MAX_RECIPIENTS,
                 idle_timeout: float = IDLE_TIMEOUT, ports: dict[str, int] | None = None,
                 roles: Iterable[str] = DEFAULT_ROLES, auth_resolver: Any = None,
                 signing_keys: Path | None = None,
                 aliases: Iterable[Alias] = LAB_ALIASES) -> None:
        self.accounts = accounts
        self.store = store
        self.faults = faults
        self.ca = ca
        self.domains = tuple(sorted({d.lower().rstrip(".") for d in domains}))
        self.clock = clock or LabClock()
        #: The MX role's greylisting (off until a lesson turns it on), on the lab clock.
        self.greylist = Greylist(self.clock)
        self.queue: Callable[[], SubmissionQueue | None] = queue or (lambda: None)
        self._reverse_name = reverse_name
        self.size_limit = size_limit
        self.max_recipients = max_recipients
        self.idle_timeout = idle_timeout
        self.log = MailLog()
        #: Resolver for the MX role's SPF and DKIM checks (the lab's zones, in memory);
        #: None: no checks and no Authentication-Results field.
        self.auth_resolver = auth_resolver
        self.authserv_id = MX_HOSTNAME
        #: The MX role's latest SPF and DKIM evaluations, newest last.
        self.evaluations = EvaluationLog()
        self._signing_keys_dir = signing_keys
        self._signing_keys: dict[str, LabKey | None] = {}
        self._keys_lock = threading.Lock()
        #: Selectors set with set_signing_key (the lab keys use SIGNING_SELECTOR).
        self._signing_selectors: dict[str, str] = {}
        self._aliases = {normalise_address(a.address): a for a in aliases}
        self._wanted_ports = dict(ports or {})
        self._start_roles = tuple(roles)
        for name in (*self._start_roles, *self._wanted_ports):
            if name not in ROLES:
                raise LabError(f"unknown role {name!r}: use one of {', '.join(ROLES)}")
        self._servers: dict[str, asyncio.base_events.Server] = {}
        self._ports: dict[str, int] = {}
        self._connections: set[LabSMTP] = set()
        self._loop: asyncio.AbstractEventLoop | None = None

    # -- policy --------------------------------------------------------------------------

    def is_lab_domain(self, domain: str) -> bool:
        """True for a lab receiving domain or a name under one (lists.campus.test)."""
        domain = domain.lower().rstrip(".")
        return any(domain == d or domain.endswith("." + d) for d in self.domains)

    def aliases(self) -> dict[str, Alias]:
        """The forwarder and mailing-list addresses the MX role accepts, each with what
        it does (``describe()``)."""
        return dict(self._aliases)

    def _bounce_addresses(self) -> set[str]:
        return {normalise_address(a.bounce_address) for a in self._aliases.values()
                if isinstance(a, MailingList)}

    def signing_key(self, domain: str) -> LabKey | None:
        """The lab's RSA key the submission roles sign ``domain``'s mail with, or None
        (no key directory, or no key for that domain)."""
        domain = domain.lower().rstrip(".")
        if self._signing_keys_dir is None or not domain:
            return None
        with self._keys_lock:
            if domain not in self._signing_keys:
                from ..auth.dkim_keys import DKIMError, lab_key

                try:
                    key: LabKey | None = lab_key(domain, "rsa", self._signing_keys_dir)
                except (DKIMError, OSError):
                    key = None
                self._signing_keys[domain] = key
            return self._signing_keys[domain]

    def set_signing_key(self, domain: str, key: LabKey | None,
                        selector: str | None = None) -> None:
        """Sign the mail the submission roles send for ``domain`` with ``key`` under
        ``selector`` from now on (RFC 6376: the receiver finds the public key at
        ``<selector>._domainkey.<domain>``, so publish it there, e.g. with
        :func:`labsupport.auth.dkim_keys.publish`). ``key=None`` stops signing for the domain
        (a lab key in ``data/keys`` is used again if it has one). ``selector`` defaults to
        the key's own (``key.selector``). Introduced in
        ``notebooks/07-capstone-secure-a-domain.ipynb``."""
        domain = domain.lower().rstrip(".")
        if not domain:
            raise LabError("set_signing_key needs a domain, e.g. 'newco.test'")
        with self._keys_lock:
            if key is None:
                self._signing_keys.pop(domain, None)
                self._signing_selectors.pop(domain, None)
                return
            chosen = selector or getattr(key, "selector", None)
            if not chosen:
                raise LabError(f"which selector does {domain} sign with? give selector=..., "
                               "the name its key is published under")
            self._signing_keys[domain] = key
            self._signing_selectors[domain] = str(chosen)

    def reset_signing(self) -> None:
        """Forget keys set with :meth:`set_signing_key`; the lab keys in ``data/keys`` are
        read again when next needed (``lab.reset()`` calls this)."""
        with self._keys_lock:
            self._signing_keys.clear()
            self._signing_selectors.clear()

    def signing_selector(self, domain: str) -> str:
        """The selector the submission roles put in ``s=`` for ``domain``'s mail."""
        return self._signing_selectors.get(domain.lower().rstrip("."), SIGNING_SELECTOR)

    def reverse_name(self, address: str) -> str | None:
        """The lab's reverse DNS name for ``address`` (PTR), if any."""
        if self._reverse_name is None:
            return None
        try:
            return self._reverse_name(address)
        except Exception:  # noqa: BLE001 - a name is a nicety; the address stays
            return None

    def recipient_refusal(self, role: Role, session: Session, address: str) -> str | None:
        """The reply refusing ``address`` on ``role``, or None to accept it."""
        local, at, domain = address.rpartition("@")
        shown = _shown(address, 200)
        if not at or not local or not domain:
            return f"553 5.1.3 <{shown}>: a recipient is local-part@domain"
        lab_domain = self.is_lab_domain(domain)
        if role.submission:
            if not session.authenticated:
                return (f"550 5.7.1 <{shown}>: Relay access denied: log in (AUTH) to send "
                        f"through the {role.name} role")
            if not lab_domain:
                return (f"550 5.7.1 <{shown}>: Relay access denied: the lab delivers only to "
                        "its own domains and never to the Internet")
            if self.queue() is None and not self.accounts.exists(address):
                return f"550 5.1.1 <{shown}>: Recipient address rejected: no such mailbox " \
                       "in the lab"
            return None
        if not lab_domain:
            return (f"550 5.7.1 <{shown}>: Relay access denied: this MX accepts mail only for "
                    "the lab's domains (it is not an open relay)")
        wanted = normalise_address(address)
        if wanted in self._aliases or wanted in self._bounce_addresses():
            return None  # a forwarder, a list, or a list's bounce mailbox
        if not self.accounts.exists(address):
            return f"550 5.1.1 <{shown}>: Recipient address rejected: no such mailbox in the lab"
        return None

    def _record(self, smtp: LabSMTP, event: str, detail: str = "") -> None:
        self.log.record(MailLogEntry(self.clock.time(), smtp.role.name, smtp.client_label,
                                     event, detail))

    # -- life cycle (on the loop) --------------------------------------------------------

    async def start(self) -> None:
        """Start the roles this server was built with."""
        self._loop = asyncio.get_running_loop()
        for name in self._start_roles:
            await self.start_role(name)

    async def start_role(self, name: str) -> int:
        """Start one role (if it is not running) and return its port."""
        if name not in ROLES:
            raise LabError(f"unknown role {name!r}: use one of {', '.join(ROLES)}")
        if name in self._servers:
            return self._ports[name]
        role = ROLES[name]
        loop = asyncio.get_running_loop()
        self._loop = loop
        context = self.ca.server_context() if role.implicit_tls else None
        server = await loop.create_server(lambda: LabSMTP(self, role, loop), "127.0.0.1",
                                          self._wanted_ports.get(name, 0), ssl=context)
        self._servers[name] = server
        self._ports[name] = int(server.sockets[0].getsockname()[1])
        return self._ports[name]

    async def stop_role(self, name: str) -> None:
        """Stop one role: no new connections, and its open ones closed."""
        server = self._servers.pop(name, None)
        self._ports.pop(name, None)
        if server is None:
            return
        server.close()
        await self._close_connections([c for c in self._connections if c.role.name == name])
        try:
            await asyncio.wait_for(server.wait_closed(), 5)
        except TimeoutError:
            pass

    async def stop(self) -> None:
        """Stop every role."""
        for name in list(self._servers):
            await self.stop_role(name)
        await self._close_connections(list(self._connections))

    @staticmethod
    async def _close_connections(connections: list[LabSMTP]) -> None:
        tasks = []
        for connection in connections:
            if connection.transport is not None:
                connection.transport.close()
            if connection._handler_coroutine is not None:
                connection._handler_coroutine.cancel()
                tasks.append(connection._handler_coroutine)
        if tasks:
            await asyncio.wait(tasks, timeout=5)

    # -- from any thread -----------------------------------------------------------------

    def port(self, role: str) -> int:
        """The port ``role`` listens on (127.0.0.1)."""
        if role not in ROLES:
            raise LabError(f"unknown role {role!r}: use one of {', '.join(ROLES)}")
        try:
            return self._ports[role]
        except KeyError:
            hint = " (turn it on with lab.smtp.enable_legacy())" if role == "legacy" else ""
            raise LabError(f"the {role} role is not running{hint}") from None

    def ports(self) -> dict[str, int]:
        """Every running role and its port."""
        return dict(self._ports)

    def info(self) -> dict[str, dict[str, Any]]:
        """``{"mx": {"host": "127.0.0.1", "port": N}, ...}`` for every running role."""
        return {name: {"host": "127.0.0.1", "port": port} for name, port in self._ports.items()}

    def _run(self, coro: Awaitable[Any]) -> Any:
        loop = self._loop
        if loop is None or loop.is_closed():
            raise LabError("the mail server is not running; start the lab first")
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            raise LabError("call this from outside the lab's event loop "
                           "(or await start_role/stop_role there)")
        return asyncio.run_coroutine_threadsafe(coro, loop).result(10)  # type: ignore[arg-type]

    def enable_legacy(self) -> int:
        """Turn on the insecure legacy role (AUTH without TLS) and return its port."""
        return int(self._run(self.start_role("legacy")))

    def disable_legacy(self) -> None:
        """Turn the legacy role off again."""
        if "legacy" in self._servers:
            self._run(self.stop_role("legacy"))

    # -- renderings ----------------------------------------------------------------------

    def _rows(self) -> list[list[object]]:
        return [[name, f"127.0.0.1 port {port}", ROLES[name].summary]
                for name, port in self._ports.items()]

    def __repr__(self) -> str:
        ports = ", ".join(f"{name} {port}" for name, port in self._ports.items())
        return f"<MailServer {ports or 'stopped'}>"

    def __str__(self) -> str:
        return text_table(["role", "where", "what"], self._rows())

    def _repr_html_(self) -> str:
        return html_table(["role", "where", "what"], self._rows(), caption="Lab mail server")


def example_commands(ports: dict[str, int], ca_file: str, address: str, password: str,
                     rcpt: str = "carol@campus.test") -> list[tuple[str, str]]:
    """Terminal commands that talk to the running roles, as (what it shows, command).

    Only roles in ``ports`` get commands; ``address``/``password`` is the account used
    for AUTH. ``serve`` prints them; the tests run them.
    """
    commands: list[tuple[str, str]] = []
    mx, sub, subs = ports.get("mx"), ports.get("submission"), ports.get("submissions")
    login = f"--auth PLAIN --auth-user {address} --auth-password {password}"
    if mx:
        commands += [
            ("plain SMTP to the MX role",
             f"swaks --server 127.0.0.1:{mx} --from bob@northwind.test --to {rcpt}"),
            ("the attacker's forgery (XCLIENT): refused by Northwind's DMARC p=reject",
             f"swaks --server 127.0.0.1:{mx} --xclient-addr 203.0.113.66 "
             f"--xclient-helo out.phisher.example --from ceo@northwind.test --to {rcpt}"),
        ]
    if sub:
        commands += [
            ("submission: STARTTLS, then AUTH",
             f"swaks --server 127.0.0.1:{sub} --tls --tls-verify --tls-ca-path {ca_file} "
             f"{login} --from {address} --to {rcpt}"),
            ("the TLS handshake and certificate, after STARTTLS",
             f"openssl s_client -starttls smtp -connect 127.0.0.1:{sub} -CAfile {ca_file} "
             "-crlf -nocommands"),
            ("curl, TLS required (write the message in message.txt first)",
             f"curl --ssl-reqd --url smtp://127.0.0.1:{sub} --cacert {ca_file} "
             f"--user '{address}:{password}' --mail-from {address} --mail-rcpt {rcpt} "
             "--upload-file message.txt"),
        ]
    if subs:
        commands += [
            ("submissions: TLS from the first byte, then AUTH",
             f"swaks --server 127.0.0.1:{subs} --tls-on-connect --tls-verify --tls-ca-path "
             f"{ca_file} {login} --from {address} --to {rcpt}"),
            ("the implicit-TLS handshake",
             f"openssl s_client -connect 127.0.0.1:{subs} -CAfile {ca_file} -crlf -nocommands"),
        ]
    if ports.get("legacy"):
        commands.append(("INSECURE legacy role: AUTH in clear text",
                         f"swaks --server 127.0.0.1:{ports['legacy']} {login} "
                         f"--from {address} --to {rcpt}"))
    return commands


def lab_hostnames(domains: Iterable[str]) -> list[str]:
    """The names the lab's server certificate carries: the roles' host names, each lab
    domain and a wildcard under it (``*.northwind.test`` covers ``mx1.northwind.test``)."""
    return [MX_HOSTNAME, SUBMISSION_HOSTNAME, *server_names(domains)]


__all__ = ["DEFAULT_ROLES", "LAB_ALIASES", "ROLES", "SIGNING_SELECTOR", "Alias", "Forwarder",
           "LabSMTP", "MailLog", "MailLogEntry", "MailServer", "MailingList", "Role",
           "SubmissionQueue", "example_commands", "lab_hostnames"]
