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

The client is split by concept, and this module stays its entry point (every name it
offered before is still importable from here): :mod:`labsupport.mail.smtp_replies` holds
:class:`Reply`, :func:`parse_reply` and the client's errors;
:mod:`labsupport.mail.smtp_encoding` base64, dot-stuffing and the arguments of commands;
:mod:`labsupport.mail.smtp_transcript` the recorded :class:`Line` and the
:class:`Transcript`; :mod:`labsupport.mail.smtp_session` the :class:`SMTPSession`; this
module :func:`send_mail`, which runs a whole dialogue.

Introduced in ``notebooks/02-smtp-dialogue.ipynb``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from email.message import Message
from pathlib import Path

from .received import WITH_PROTOCOLS as WITH_PROTOCOLS
from .received import Hop as Hop
from .received import received_chain as received_chain
from .replycodes import ENHANCED_CODES as ENHANCED_CODES
from .replycodes import REPLY_CLASSES as REPLY_CLASSES
from .replycodes import REPLY_CODES as REPLY_CODES
from .replycodes import RFC_AUTH as RFC_AUTH
from .replycodes import RFC_BANNER_554 as RFC_BANNER_554
from .replycodes import RFC_CLOSING as RFC_CLOSING
from .replycodes import RFC_HELO_FALLBACK as RFC_HELO_FALLBACK
from .replycodes import RFC_IMPLICIT_TLS as RFC_IMPLICIT_TLS
from .replycodes import RFC_REPLIES as RFC_REPLIES
from .replycodes import RFC_REPLY_CLASSES as RFC_REPLY_CLASSES
from .replycodes import RFC_STARTTLS as RFC_STARTTLS
from .replycodes import RFC_XCLIENT as RFC_XCLIENT
from .replycodes import CodeTable as CodeTable
from .replycodes import ReplyCodeError as ReplyCodeError
from .replycodes import explain_reply as explain_reply
from .replycodes import reply_code_table as reply_code_table
from .smtp_encoding import decode_base64_text as decode_base64_text
from .smtp_encoding import dot_stuff as dot_stuff
from .smtp_encoding import message_bytes as message_bytes
from .smtp_replies import MAX_REPLY_LINE as MAX_REPLY_LINE
from .smtp_replies import MAX_REPLY_LINES as MAX_REPLY_LINES
from .smtp_replies import Reply as Reply
from .smtp_replies import SMTPClientError as SMTPClientError
from .smtp_replies import SMTPConnectError as SMTPConnectError
from .smtp_replies import SMTPDisconnected as SMTPDisconnected
from .smtp_replies import SMTPProtocolError as SMTPProtocolError
from .smtp_replies import SMTPTimeout as SMTPTimeout
from .smtp_replies import SMTPTLSError as SMTPTLSError
from .smtp_replies import SMTPUsageError as SMTPUsageError
from .smtp_replies import parse_extensions as parse_extensions
from .smtp_replies import parse_reply as parse_reply
from .smtp_session import SMTPSession as SMTPSession
from .smtp_transcript import DIRECTIONS as DIRECTIONS
from .smtp_transcript import REPLY_CLASS_COLOURS as REPLY_CLASS_COLOURS
from .smtp_transcript import Line as Line
from .smtp_transcript import Transcript as Transcript

TLS_MODES = ("none", "starttls", "implicit")
AUTH_MECHANISMS = ("PLAIN", "LOGIN")


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
