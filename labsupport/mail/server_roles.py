"""The lab mail server's vocabulary: its roles, the limits of a session, its replies, its log.

Everything here is fixed before any client connects. :data:`ROLES` holds the four
listeners a :class:`~labsupport.mail.server.MailServer` can run, each a :class:`Role`:
``mx`` receives mail for the lab's domains (port 25 on the Internet), ``submission`` takes
mail from logged-in users after STARTTLS (port 587), ``submissions`` does the same inside
TLS from the first byte (port 465), and ``legacy``, off unless a lesson turns it on, takes
passwords without any TLS. Next to them: the limits RFC 5321 sets on a session (line
lengths, recipients, errors, idle time), the XCLIENT attributes the MX role honours and
who a client says it stands for (:class:`ClientIdentity`), the enhanced status codes and
clearer sentences that replace aiosmtpd's own replies, :func:`_shown` (client text made
safe to echo), and the server's log (:class:`MailLog`).

Two :class:`typing.Protocol` classes describe what the server needs of its neighbours:
:class:`SubmissionQueue`, the delivering MTA's queue, and :class:`Connection`, one client
connection as the log names it. With them one connection
(:mod:`labsupport.mail.server_session`), the role handler
(:mod:`labsupport.mail.server_handler`) and the server (:mod:`labsupport.mail.server`)
agree on types without importing one another.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from ..core.results import EventLog, html_table, text_table

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


class SubmissionQueue(Protocol):
    """What the server needs from the delivering MTA's queue (``labsupport.mail.delivery``)."""

    def submit(self, mail_from: str, rcpt_tos: list[str], raw: bytes, *,
               sender_domain: str) -> Any: ...


class Connection(Protocol):
    """One client connection as the server's log names it: its role and who the client
    is (a :class:`~labsupport.mail.server_session.LabSMTP`)."""

    @property
    def role(self) -> Role: ...

    @property
    def client_label(self) -> str: ...


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


# -- who the client says it is -----------------------------------------------------------


@dataclass
class ClientIdentity:
    """Who the client says it stands for (XCLIENT); None: the real connection's values."""

    addr: str | None = None
    name: str | None = None
    helo: str | None = None
    proto: str | None = None
    destaddr: str | None = None
