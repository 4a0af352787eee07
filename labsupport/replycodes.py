"""Reply codes and enhanced status codes, explained (RFC 5321 section 4.2, RFC 3463).

:func:`explain_reply` says what a reply code (``354``), an enhanced status code
(``5.7.1``) or a whole reply line means; :func:`reply_code_table` gives the tables a
notebook shows. Every entry names the RFC it comes from, and says nothing more.

Introduced in ``notebooks/02-smtp-dialogue.ipynb``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .errors import LabError
from .results import html_table, text_table

RFC_REPLIES = "RFC 5321 section 4.2"
RFC_REPLY_CLASSES = "RFC 5321 section 4.2.1"
RFC_REPLY_CODES = "RFC 5321 section 4.2.3"
RFC_HELO_FALLBACK = "RFC 5321 section 3.2"
RFC_TRACE = "RFC 5321 section 4.4"
RFC_CLOSING = "RFC 5321 section 3.8"
RFC_BANNER_554 = "RFC 5321 section 3.1"
RFC_ENHANCED = "RFC 3463"
RFC_ENHANCED_IN_REPLIES = "RFC 2034 section 4"
RFC_STARTTLS = "RFC 3207 section 4.2"
RFC_IMPLICIT_TLS = "RFC 8314 section 3.3"
RFC_AUTH = "RFC 4954 section 4"
RFC_XCLIENT = "Postfix XCLIENT_README"


class ReplyCodeError(LabError, ValueError):
    """Text given to :func:`explain_reply` is not a reply code or an enhanced status code."""


# -- reply codes --------------------------------------------------------------------------

#: First digit of a reply code (RFC 5321 section 4.2.1).
REPLY_CLASSES: dict[int, str] = {
    1: "1yz positive preliminary reply: SMTP has no command that allows this type of reply",
    2: "2yz positive completion: the requested action has been completed; a new request "
       "may be initiated",
    3: "3yz positive intermediate: the command has been accepted, but the action is held "
       "in abeyance until the client sends more information (as after DATA, or in AUTH)",
    4: "4yz transient negative completion: the command was not accepted and nothing "
       "happened, but the condition is temporary: try again later",
    5: "5yz permanent negative completion: the command was not accepted and nothing "
       "happened; the client should not repeat the exact request",
}

#: Second digit of a reply code (RFC 5321 section 4.2.1).
REPLY_SUBJECTS: dict[int, str] = {
    0: "syntax", 1: "information", 2: "connections", 3: "unspecified", 4: "unspecified",
    5: "mail system",
}

_S = "RFC 5321 section 4.2.3"
_A = "RFC 4954 section 6"
_T = "RFC 3207 section 4"

#: Reply codes: code -> (meaning, where it is defined).
REPLY_CODES: dict[int, tuple[str, str]] = {
    211: ("System status, or system help reply", _S),
    214: ("Help message (useful only to a human)", _S),
    220: ("<domain> Service ready (the banner; also the go-ahead for TLS after STARTTLS, "
          "RFC 3207)", _S),
    221: ("<domain> Service closing transmission channel", _S),
    235: ("Authentication succeeded", _A),
    250: ("Requested mail action okay, completed", _S),
    251: ("User not local; will forward to <forward-path>", _S),
    252: ("Cannot VRFY user, but will accept message and attempt delivery", _S),
    334: ("A server challenge in AUTH: the text is base64, and the client answers with a "
          "base64 line", "RFC 4954 section 4"),
    354: ("Start mail input; end with <CRLF>.<CRLF>", _S),
    421: ("<domain> Service not available, closing transmission channel (may answer any "
          "command when the server must shut down)", _S),
    432: ("A password transition is needed", _A),
    450: ("Requested mail action not taken: mailbox unavailable (e.g., mailbox busy or "
          "temporarily blocked for policy reasons)", _S),
    451: ("Requested action aborted: local error in processing", _S),
    452: ("Requested action not taken: insufficient system storage", _S),
    454: ("Temporary authentication failure (RFC 4954), or TLS not available due to a "
          "temporary reason (RFC 3207)", f"{_A}; {_T}"),
    455: ("Server unable to accommodate parameters", _S),
    500: ("Syntax error, command unrecognized (this may include errors such as command "
          "line too long)", _S),
    501: ("Syntax error in parameters or arguments", _S),
    502: ("Command not implemented", _S),
    503: ("Bad sequence of commands", _S),
    504: ("Command parameter not implemented", _S),
    530: ("Authentication required (RFC 4954), or must issue a STARTTLS command first "
          "(RFC 3207)", f"{_A}; {_T}"),
    534: ("Authentication mechanism is too weak", _A),
    535: ("Authentication credentials invalid", _A),
    538: ("Encryption required for requested authentication mechanism", _A),
    550: ("Requested action not taken: mailbox unavailable (e.g., mailbox not found, no "
          "access, or command rejected for policy reasons)", _S),
    551: ("User not local; please try <forward-path>", _S),
    552: ("Requested mail action aborted: exceeded storage allocation", _S),
    553: ("Requested action not taken: mailbox name not allowed (e.g., mailbox syntax "
          "incorrect)", _S),
    554: ("Transaction failed (or, in the banner, \"No SMTP service here\")", _S),
    555: ("MAIL FROM/RCPT TO parameters not recognized or not implemented", _S),
}

#: Class of an enhanced status code (RFC 3463 section 3.1).
ENHANCED_CLASSES: dict[int, str] = {
    2: "success: a positive delivery action",
    4: "persistent transient failure: the message as sent is valid, but some temporary "
       "condition stopped it; sending again later may succeed",
    5: "permanent failure: not likely to be resolved by sending the message again in the "
       "same form; something about the message or the destination must change",
}

#: Subject of an enhanced status code (RFC 3463 section 3.2).
ENHANCED_SUBJECTS: dict[int, str] = {
    0: "other or undefined status",
    1: "addressing status (the originator or destination address)",
    2: "mailbox status (the recipient's mailbox)",
    3: "mail system status (the destination system)",
    4: "network and routing status",
    5: "mail delivery protocol status",
    6: "message content or media status",
    7: "security or policy status",
}

_R = "RFC 3463"
#: Enhanced status codes: "X.subject.detail" -> (meaning, where it is defined). RFC 3463
#: section 3 and the later entries of the IANA "SMTP Enhanced Status Codes" registry.
ENHANCED_CODES: dict[str, tuple[str, str]] = {
    "X.0.0": ("Other undefined status", _R),
    "X.1.0": ("Other address status", _R),
    "X.1.1": ("Bad destination mailbox address: the mailbox does not exist (the part left "
              "of the @)", _R),
    "X.1.2": ("Bad destination system address: the destination system (the part right of "
              "the @) does not exist or cannot accept mail", _R),
    "X.1.3": ("Bad destination mailbox address syntax", _R),
    "X.1.4": ("Destination mailbox address ambiguous", _R),
    "X.1.5": ("Destination address valid", _R),
    "X.1.6": ("Destination mailbox has moved, no forwarding address", _R),
    "X.1.7": ("Bad sender's mailbox address syntax", _R),
    "X.1.8": ("Bad sender's system address", _R),
    "X.1.10": ("Recipient address has null MX", "RFC 7505"),
    "X.2.0": ("Other or undefined mailbox status", _R),
    "X.2.1": ("Mailbox disabled, not accepting messages", _R),
    "X.2.2": ("Mailbox full", _R),
    "X.2.3": ("Message length exceeds administrative limit", _R),
    "X.2.4": ("Mailing list expansion problem", _R),
    "X.3.0": ("Other or undefined mail system status", _R),
    "X.3.1": ("Mail system full", _R),
    "X.3.2": ("System not accepting network messages", _R),
    "X.3.3": ("System not capable of selected features", _R),
    "X.3.4": ("Message too big for system", _R),
    "X.3.5": ("System incorrectly configured", _R),
    "X.4.0": ("Other or undefined network or routing status", _R),
    "X.4.1": ("No answer from host", _R),
    "X.4.2": ("Bad connection", _R),
    "X.4.3": ("Directory server failure (for example, DNS could not be reached)", _R),
    "X.4.4": ("Unable to route", _R),
    "X.4.5": ("Mail system congestion", _R),
    "X.4.6": ("Routing loop detected", _R),
    "X.4.7": ("Delivery time expired", _R),
    "X.5.0": ("Other or undefined protocol status", _R),
    "X.5.1": ("Invalid command", _R),
    "X.5.2": ("Syntax error", _R),
    "X.5.3": ("Too many recipients", _R),
    "X.5.4": ("Invalid command arguments", _R),
    "X.5.5": ("Wrong protocol version", _R),
    "X.5.6": ("Authentication exchange line is too long", "RFC 4954"),
    "X.6.0": ("Other or undefined media error", _R),
    "X.6.1": ("Media not supported", _R),
    "X.6.2": ("Conversion required and prohibited", _R),
    "X.6.3": ("Conversion required but not supported", _R),
    "X.6.4": ("Conversion with loss performed", _R),
    "X.6.5": ("Conversion failed", _R),
    "X.7.0": ("Other or undefined security status", _R),
    "X.7.1": ("Delivery not authorized, message refused", _R),
    "X.7.2": ("Mailing list expansion prohibited", _R),
    "X.7.3": ("Security conversion required but not possible", _R),
    "X.7.4": ("Security features not supported", _R),
    "X.7.5": ("Cryptographic failure", _R),
    "X.7.6": ("Cryptographic algorithm not supported", _R),
    "X.7.7": ("Message integrity failure", _R),
    "X.7.8": ("Authentication credentials invalid", "RFC 4954"),
    "X.7.9": ("Authentication mechanism is too weak", "RFC 4954"),
    "X.7.10": ("Encryption needed", "RFC 5248"),
    "X.7.11": ("Encryption required for requested authentication mechanism", "RFC 4954"),
    "X.7.12": ("A password transition is needed", "RFC 4954"),
    "X.7.13": ("User account disabled", "RFC 5248"),
    "X.7.14": ("Trust relationship required", "RFC 5248"),
    "X.7.20": ("No passing DKIM signature found", "RFC 7372"),
    "X.7.21": ("No acceptable DKIM signature found", "RFC 7372"),
    "X.7.22": ("No valid author-matched DKIM signature found", "RFC 7372"),
    "X.7.23": ("SPF validation failed", "RFC 7372"),
    "X.7.24": ("SPF validation error", "RFC 7372"),
    "X.7.25": ("Reverse DNS validation failed", "RFC 7372"),
    "X.7.26": ("Multiple authentication checks failed", "RFC 7372"),
    "X.7.27": ("Sender address has null MX", "RFC 7505"),
}

_CODE_TEXT = re.compile(r"^\s*([1-5][0-9][0-9])?(?:[ -]+)?(([245X])\.([0-9]{1,3})\.([0-9]{1,3}))?"
                        r"(?=\s|$)", re.IGNORECASE)


def _explain_basic(code: int) -> str:
    klass = REPLY_CLASSES[code // 100]
    subject = REPLY_SUBJECTS.get(code // 10 % 10)
    known = REPLY_CODES.get(code)
    if known:
        head = f"{code}: {known[0]} [{known[1]}]."
    else:
        head = f"{code}: not one of the reply codes listed in {RFC_REPLY_CODES}."
    second = f" Second digit {code // 10 % 10}: {subject}." if subject else ""
    return f"{head} Class {klass} [{RFC_REPLY_CLASSES}].{second}"


def _explain_enhanced(klass: str, subject: int, detail: int) -> str:
    code = f"{klass}.{subject}.{detail}"
    known = ENHANCED_CODES.get(f"X.{subject}.{detail}")
    if known:
        head = f"{code}: {known[0]} [{known[1]}]."
    else:
        head = f"{code}: a detail code not in this table of RFC 3463 and the IANA registry."
    parts = [head]
    if klass != "X":
        parts.append(f"Class {klass}: {ENHANCED_CLASSES[int(klass)]} [{RFC_ENHANCED} "
                     "section 3.1].")
    if subject in ENHANCED_SUBJECTS:
        parts.append(f"Subject {subject}: {ENHANCED_SUBJECTS[subject]} [{RFC_ENHANCED} "
                     "section 3.2].")
    return " ".join(parts)


def explain_reply(code: str | int) -> str:
    """What an SMTP reply code and/or enhanced status code means.

    Accepts ``250``, ``"354"``, ``"5.7.1"``, ``"X.1.1"`` or a whole reply line such as
    ``"550 5.1.1 no such user"``. Meanings come from RFC 5321 section 4.2 (classes and
    codes), RFC 4954 and RFC 3207 (the AUTH and STARTTLS replies), and RFC 3463 with the
    IANA registry of enhanced status codes; nothing else is claimed.

    >>> explain_reply(354).split(" [")[0]
    '354: Start mail input; end with <CRLF>.<CRLF>'
    """
    text = str(code).strip()
    match = _CODE_TEXT.match(text)
    if match is None or not (match.group(1) or match.group(2)):
        raise ReplyCodeError(
            f"{text!r} is not an SMTP reply code: a reply code is three digits from 2yz to "
            f"5yz ({RFC_REPLIES}), an enhanced status code is class.subject.detail such as "
            "5.7.1 (RFC 3463)")
    parts = []
    if match.group(1):
        parts.append(_explain_basic(int(match.group(1))))
    if match.group(2):
        klass = match.group(3).upper()
        parts.append(_explain_enhanced(klass, int(match.group(4)), int(match.group(5))))
        if match.group(1) and klass != "X" and klass != match.group(1)[0]:
            parts.append(f"Note: the enhanced code's class ({klass}) should match the "
                         f"reply's first digit ({match.group(1)[0]}) [{RFC_ENHANCED_IN_REPLIES}].")
    return "\n".join(parts)


@dataclass(frozen=True)
class CodeTable:
    """A table of codes and meanings that renders as text and as HTML."""

    caption: str
    headers: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]

    def __str__(self) -> str:
        return self.caption + "\n" + text_table(list(self.headers),
                                                [list(r) for r in self.rows])

    def _repr_html_(self) -> str:
        return html_table(list(self.headers), [list(r) for r in self.rows],
                          caption=self.caption)


def reply_code_table(enhanced: bool = False) -> CodeTable:
    """The reply codes (or, with ``enhanced=True``, the enhanced status codes) as a table."""
    if enhanced:
        rows = [(c, m, s) for c, (m, s) in ENHANCED_CODES.items()]
        return CodeTable("Enhanced status codes (class 2, 4 or 5 in place of X)",
                         ("code", "meaning", "defined in"), tuple(rows))
    basic = [(str(c), REPLY_CLASSES[c // 100].split(":")[0].split(" ", 1)[1], m, s)
             for c, (m, s) in REPLY_CODES.items()]
    return CodeTable("SMTP reply codes", ("code", "class", "meaning", "defined in"),
                     tuple(basic))


