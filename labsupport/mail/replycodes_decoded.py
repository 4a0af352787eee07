"""A decoded reply and the myths it invites (notebooks/08-troubleshooting.ipynb).

The RFC references of decoding, the action :data:`CATEGORIES`, :class:`Myth` and the
misreadings of reply codes (:data:`MYTHS`, :func:`myth_table`), and :class:`Decoded`, what
:func:`labsupport.mail.replycodes_decode.decode` returns. Re-exported by
:mod:`labsupport.mail.replycodes`.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass

from ..core.results import html_table
from .replycodes_explain import CodeTable
from .replycodes_tables import RFC_BANNER_554

# == Decoding whole replies (notebooks/08-troubleshooting.ipynb) =========================

RFC_AFTER_DATA = "RFC 5321 section 4.2.5"
RFC_RETRY = "RFC 5321 section 4.5.4.1"
RFC_BOUNCE = "RFC 5321 section 6.1"
RFC_DSN = "RFC 3464"
RFC_MAIL_TRANSACTION = "RFC 5321 section 3.3"

#: What the sending side does after a reply, one word per class (RFC 5321 section 4.2.1):
#: 2yz done, 3yz continue (send the rest), 4yz retry later, 5yz give up.
CATEGORIES: tuple[str, ...] = ("done", "continue", "retry later", "give up")
_CATEGORY_OF_CLASS = {2: "done", 3: "continue", 4: "retry later", 5: "give up"}


@dataclass(frozen=True)
class Myth:
    """A misreading of reply codes that circulates in guides and forum answers, corrected.

    ``claim`` is the misreading, ``truth`` what the RFCs say instead (short), ``sources``
    the RFC sections that say it. ``about`` says which replies invite the myth, so that
    :func:`decode` can attach it: a class (``"5yz"``), a reply code (``"550"``), an enhanced
    code without its class (``"X.7.1"``), a whole enhanced subject (``"X.4.*"``), or
    ``"coded text"`` for any reply that came with both an enhanced code and text.
    """

    claim: str
    truth: str
    sources: tuple[str, ...]
    about: tuple[str, ...] = ()

    def applies(self, decoded: Decoded) -> bool:
        """Whether ``decoded`` is a reply this myth is commonly misread as."""
        return any(_about_matches(key, decoded) for key in self.about)


def _about_matches(key: str, decoded: Decoded) -> bool:
    if key == "coded text":
        return bool(decoded.text and decoded.enhanced)
    if re.fullmatch(r"[2-5]yz", key):
        return decoded.reply_class == int(key[0])
    if re.fullmatch(r"[2-5][0-9][0-9]", key):
        return decoded.code == int(key)
    if key.startswith("X.") and decoded.enhanced:
        subject, detail = decoded.enhanced.split(".")[1:]
        want_subject, want_detail = key.split(".")[1:]
        return subject == want_subject and want_detail in ("*", detail)
    return False


#: Misreadings of reply codes, each corrected by the RFC text that says otherwise.
MYTHS: tuple[Myth, ...] = (
    Myth("A 5xx reply means a DNS failure.",
         "5yz only says that the command was not accepted and should not be repeated "
         "unchanged (a permanent negative completion); the second digit and the enhanced "
         "code say what kind of failure. DNS trouble has codes of its own: X.4.3 directory "
         "server failure (a DNS server that cannot be reached, say) is 'useful only as a "
         "persistent transient error', so it comes as a 4xx such as 451 4.4.3; X.4.4 "
         "(unable to route) and X.1.2 (bad destination system) are the others.",
         ("RFC 5321 section 4.2.1", "RFC 3463 section 3.5", "RFC 3463 section 3.2"),
         ("5yz", "X.4.*")),
    Myth("A 3xx reply means an extension is required: the server wants something enabled "
         "first.",
         "3yz is a positive intermediate reply: the command was accepted and the server "
         "waits for more. After DATA, 354 asks for the message, ended by <CRLF>.<CRLF>; in "
         "AUTH, 334 carries a base64 challenge and the client answers with its next line. "
         "Nothing needs enabling: the client sends the rest.",
         ("RFC 5321 section 4.2.1", RFC_MAIL_TRANSACTION, "RFC 4954 section 4"),
         ("3yz",)),
    Myth("A 4xx reply means the message was rejected and is lost.",
         "4yz is a transient negative completion: nothing happened yet, the condition is "
         "temporary and the client SHOULD try again. The sender keeps the message queued "
         "and retries it (generally at least 30 minutes apart, giving up only after at "
         "least 4-5 days), and tells its user only if it gives up. Greylisting relies on "
         "exactly this: it answers an unknown sender with a 4xx and accepts the retry.",
         ("RFC 5321 section 4.2.1", RFC_RETRY, RFC_AFTER_DATA, "RFC 6647"),
         ("4yz",)),
    Myth("550 always means that the user does not exist.",
         "550 is 'requested action not taken: mailbox unavailable (e.g., mailbox not found, "
         "no access, or command rejected for policy reasons)'. The enhanced code tells "
         "which: 5.1.1 bad destination mailbox address (no such user) versus 5.7.1 delivery "
         "not authorized (a policy refusal).",
         ("RFC 5321 section 4.2.2", "RFC 3463 section 3.2", "RFC 3463 section 3.8"),
         ("550",)),
    Myth("The enhanced code is optional decoration; the text is what matters.",
         "The other way round. The text is for people: it varies from server to server and "
         "may be missing, and a client MUST decide by the reply code, not by the text. The "
         "enhanced code is the machine-readable refinement: a server that offers "
         "ENHANCEDSTATUSCODES puts one on every 2xx, 4xx and 5xx line (except the greeting "
         "and the EHLO reply), and its class must agree with the reply code. The text adds "
         "what only a person needs.",
         ("RFC 5321 section 4.2", "RFC 2034 section 4", "RFC 3463 section 2"),
         ("coded text",)),
    Myth("421 means that the server is down for good.",
         "421 is '<domain> service not available, closing transmission channel': the server "
         "has to shut the session down, and may say so in answer to any command. It is a "
         "4yz, transient reply: the client keeps the message and tries again later.",
         ("RFC 5321 section 4.2.2", "RFC 5321 section 3.8", "RFC 5321 section 4.2.1"),
         ("421",)),
    Myth("5.7.1 means that you are blacklisted, or that your mail was taken for spam.",
         "X.7.1 says only 'delivery not authorized, message refused': the sender is not "
         "authorized to send to the destination, as a result of per-host or per-recipient "
         "filtering. A refused relay, an SPF fail and any local policy can all use it (this "
         "lab's MX also answers a DMARC reject with it); the text says which. Authentication "
         "failures have had codes of their own since RFC 7372 (X.7.20 to X.7.26).",
         ("RFC 3463 section 3.8", "RFC 7208", "RFC 7372"),
         ("X.7.1",)),
    Myth("A 554 in the greeting (the banner) means: try again later.",
         "554 in place of the 220 greeting means 'No SMTP service here': the server formally "
         "refuses the whole session (it still waits for QUIT and answers other commands with "
         "503). It is a 5yz, permanent reply: connecting again unchanged will not help. "
         "After other commands, 554 means 'transaction failed'.",
         (RFC_BANNER_554, "RFC 5321 section 4.2.3", "RFC 5321 section 4.2.1"),
         ("554",)),
    Myth("250 after the message means it reached the recipient's inbox.",
         "250 after the final dot means that the receiving server accepted responsibility "
         "for the message: it will deliver or relay it, retry transient failures, and send a "
         "bounce (a delivery status notification) to the envelope sender if delivery fails "
         "later. What happens to the message is decided after this reply.",
         (RFC_AFTER_DATA, RFC_BOUNCE, RFC_DSN),
         ("250",)),
    Myth("'Mailbox full' is a permanent failure: the address is dead.",
         "X.2.2 mailbox full 'should be used as a persistent transient failure': the "
         "recipient can delete messages to make room, so 452 4.2.2 is retried like any 4xx. "
         "A 552 ('exceeded storage allocation') refuses this attempt for good, yet the "
         "mailbox exists: mailbox issues are under the general control of the recipient.",
         ("RFC 3463 section 3.3", "RFC 3463 section 2", "RFC 5321 section 4.2.2"),
         ("X.2.2", "552")),
)


def myth_table() -> CodeTable:
    """The myths and what the RFCs say instead, as a table (text and HTML)."""
    rows = tuple((m.claim, m.truth, "; ".join(m.sources)) for m in MYTHS)
    return CodeTable("Myths about SMTP replies, and what the RFCs say",
                     ("myth", "what the RFCs say", "sources"), rows)


@dataclass(frozen=True)
class Decoded:
    """One SMTP reply, decoded for troubleshooting: see :func:`decode`.

    ``code`` and ``enhanced`` are the reply code and enhanced status code (either may be
    missing); ``text`` the server's own words (lines joined by newlines); ``context`` the
    words of the program that quoted the reply, if any. ``code_meaning`` and
    ``enhanced_meaning`` come from the tables above (:func:`explain_reply`). ``category``
    is one of :data:`CATEGORIES` and ``action`` says it in words, from the class (RFC 5321
    section 4.2.1); ``who_acts`` says who has to do something (RFC 3463 section 2 for the
    enhanced subject); ``notes`` flag what is odd about the reply; ``myths`` are the
    misreadings (:data:`MYTHS`) this reply invites.
    """

    reply: str
    code: int | None
    enhanced: str | None
    text: str
    context: str
    code_meaning: str | None
    enhanced_meaning: str | None
    category: str
    action: str
    who_acts: str
    notes: tuple[str, ...] = ()
    myths: tuple[Myth, ...] = ()

    @property
    def reply_class(self) -> int:
        """The class digit that decides: the reply code's first digit, else the enhanced
        code's class."""
        if self.code is not None:
            return self.code // 100
        assert self.enhanced is not None
        return int(self.enhanced[0])

    @property
    def headline(self) -> str:
        """The codes, as a server would put them in front of its text: ``550 5.7.1``."""
        return " ".join(p for p in (str(self.code) if self.code is not None else "",
                                    self.enhanced or "") if p)

    def rows(self) -> list[tuple[str, str]]:
        """The decoded parts as (label, value) pairs, in reading order."""
        rows = [("reply", self.headline)]
        if self.text:
            rows.append(("the server's words", self.text))
        if self.context:
            rows.append(("quoted by", self.context))
        if self.code_meaning:
            rows.append(("reply code", self.code_meaning))
        if self.enhanced_meaning:
            rows.append(("enhanced code", self.enhanced_meaning))
        rows.append(("what the sender does", self.action))
        rows.append(("who acts", self.who_acts))
        rows.extend(("note", note) for note in self.notes)
        return rows

    def __str__(self) -> str:
        lines = [f"Decoded reply: {self.headline}"]
        for label, value in self.rows()[1:]:
            lines.append(f"  {label}: " + value.replace("\n", "\n    "))
        if self.myths:
            lines.append("  Myths this reply invites:")
            for myth in self.myths:
                lines.append(f"    ✘ {myth.claim}")
                lines.append(f"      ✔ {myth.truth} [{'; '.join(myth.sources)}]")
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        table = html_table(["part", "decoded"], [list(r) for r in self.rows()[1:]],
                           caption=f"Decoded reply: {self.headline}")
        if not self.myths:
            return f"<div>{table}</div>"
        items = "".join(
            f"<li><b>✘ {html.escape(m.claim)}</b><br>✔ {html.escape(m.truth)} "
            f"<span style='color:#777'>[{html.escape('; '.join(m.sources))}]</span></li>"
            for m in self.myths)
        return (f"<div>{table}<div style='margin-top:6px'><b>Myths this reply invites</b>"
                f"<ul>{items}</ul></div></div>")
