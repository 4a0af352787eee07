"""What the transcript client keeps: every line of a dialogue, and the whole transcript.

:class:`Line` is one line as it crossed the wire (or a note from the client), with its
direction as swaks shows it (:data:`DIRECTIONS`), whether it travelled inside TLS, the
base64 of an AUTH exchange decoded, and whether it carries credentials.
:class:`Transcript` is the result of one dialogue: its lines, its replies, what became of
the message, rendered as text and as HTML (replies coloured by class with
:data:`REPLY_CLASS_COLOURS`, which the sequence diagram of :mod:`labsupport.teach.plots`
uses too).

Part of the transcript client, :mod:`labsupport.mail.smtp`.
"""

from __future__ import annotations

import html
from dataclasses import dataclass

from ..core.results import Result
from .smtp_replies import Reply

#: Directions of transcript lines, as swaks shows them.
DIRECTIONS = {
    "->": "client to server",
    "<-": "server to client",
    "~>": "client to server, inside TLS",
    "<~": "server to client, inside TLS",
    "===": "a note from the client",
}


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

