"""What the troubleshooting lab shows: a ticket reproduced (:class:`Evidence`), a ticket
triaged (:class:`Triage`, :class:`TriageTable`), and the helpers that cut a transcript
or a bounce down to what the user saw.

Part of :mod:`labsupport.teach.troubleshoot`, which re-exports these names.
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..core.results import Result, html_table, text_table
from .troubleshoot_tickets import CAUSES

if TYPE_CHECKING:
    from ..mail.smtp import Transcript


@dataclass(frozen=True, kw_only=True)
class Triage(Result):
    """What the lab's tools find behind one ticket.

    ``verdict`` is ``"broken"`` (``cause`` names what is wrong) or ``"fixed"``.
    """

    number: int
    cause: str | None = None
    evidence: Any = None

    @property
    def fixed(self) -> bool:
        return self.verdict == "fixed"

    def title(self) -> str:
        what = CAUSES.get(self.cause or "", "") if self.cause else "nothing wrong any more"
        return f"Ticket {self.number}: {self.verdict}" + (f" ({self.cause}: {what})"
                                                          if self.cause else "")


@dataclass(frozen=True, kw_only=True)
class Evidence(Result):
    """What the user of a ticket saw, reproduced in the lab (no diagnosis)."""

    number: int
    shown: str = ""

    def title(self) -> str:
        return f"Ticket {self.number}, as the user sees it"

    def text(self) -> str:
        return f"{self.title()}\n  {self.summary}\n\n{self.shown}"

    def _repr_html_(self) -> str:
        return (f"<b>{html.escape(self.title())}</b><br>{html.escape(self.summary)}"
                '<pre style="white-space:pre-wrap;font-family:monospace;font-size:90%">'
                f"{html.escape(self.shown)}</pre>")


def _from_mail(sent: Transcript) -> str:
    """The dialogue of ``sent`` from the MAIL command on (the transaction itself)."""
    lines = sent.dialogue().splitlines()
    start = next((i for i, line in enumerate(lines) if "MAIL FROM:" in line), 0)
    return "\n".join(lines[start:])


def _readable_part(message: Any) -> str:
    """The Subject and the first text/plain part of a message (a DSN's human part)."""
    for part in message.walk():
        if part.get_content_type() == "text/plain":
            body = part.get_content()
            return f"Subject: {message.get('Subject', '')}\n\n{str(body).strip()}"
    return str(message)


@dataclass(frozen=True)
class TriageTable:
    """Several triages as one table."""

    triages: tuple[Triage, ...]

    def _rows(self) -> list[list[object]]:
        return [[t.number, t.verdict, t.cause or "-", t.summary] for t in self.triages]

    def __str__(self) -> str:
        return text_table(["#", "state", "cause", "what the tools show"], self._rows())

    def _repr_html_(self) -> str:
        return html_table(["#", "state", "cause", "what the tools show"], self._rows(),
                          caption="What the lab's tools find")
