"""Reply codes and enhanced status codes, explained (RFC 5321 section 4.2, RFC 3463).

:func:`explain_reply` says what a reply code (``354``), an enhanced status code
(``5.7.1``) or a whole reply line means; :func:`reply_code_table` gives the tables a
notebook shows. Every entry names the RFC it comes from, and says nothing more.

:func:`decode` goes further for troubleshooting: it finds the reply in whatever was pasted
(a reply line, a multi-line reply, a bounce message or a mail program quoting the server,
Python's ``smtplib`` exceptions) and says what the sending side does next, who has to act,
and which common misreadings (:data:`MYTHS`) the reply invites. :func:`decoder` is the same
as a small ipywidgets explorer; the exercise check is
:func:`labsupport.teach.checks.judge_reply_actions`.

Introduced in ``notebooks/02-smtp-dialogue.ipynb``; the decoder, the myths and the exercise
in ``notebooks/08-troubleshooting.ipynb``.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass, replace
from typing import Any

from ..core.errors import LabError
from ..core.results import html_table, text_table

RFC_REPLIES = "RFC 5321 section 4.2"
RFC_REPLY_CLASSES = "RFC 5321 section 4.2.1"
RFC_REPLY_CODES = "RFC 5321 section 4.2.3"
RFC_HELO_FALLBACK = "RFC 5321 section 3.2"
RFC_TRACE = "RFC 5321 section 4.4"
RFC_CLOSING = "RFC 5321 section 3.8"
RFC_BANNER_554 = "RFC 5321 section 3.1"
RFC_ENHANCED = "RFC 3463"
#: Where RFC 3463 defines the class and subject sub-codes ("Status Code Structure").
RFC_ENHANCED_STRUCTURE = "RFC 3463 section 2"
RFC_ENHANCED_IN_REPLIES = "RFC 2034 section 4"
RFC_STARTTLS = "RFC 3207 section 4.2"
RFC_IMPLICIT_TLS = "RFC 8314 section 3.3"
RFC_AUTH = "RFC 4954 section 4"
RFC_XCLIENT = "Postfix XCLIENT_README"


class ReplyCodeError(LabError, ValueError):
    """Text given to :func:`explain_reply` or :func:`decode` holds no reply code or enhanced
    status code that can be read."""


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

#: Class of an enhanced status code (RFC 3463 section 2).
ENHANCED_CLASSES: dict[int, str] = {
    2: "success: a positive delivery action",
    4: "persistent transient failure: the message as sent is valid, but some temporary "
       "condition stopped it; sending again later may succeed",
    5: "permanent failure: not likely to be resolved by sending the message again in the "
       "same form; something about the message or the destination must change",
}

#: Subject of an enhanced status code (RFC 3463 section 2).
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
        parts.append(f"Class {klass}: {ENHANCED_CLASSES[int(klass)]} [{RFC_ENHANCED_STRUCTURE}].")
    if subject in ENHANCED_SUBJECTS:
        parts.append(f"Subject {subject}: {ENHANCED_SUBJECTS[subject]} "
                     f"[{RFC_ENHANCED_STRUCTURE}].")
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


# -- what the sending side does, and who acts ---------------------------------------------

_ACTIONS = {
    "done": "Done: the requested action was completed, and the client goes on with its next "
            f"command ({RFC_REPLY_CLASSES}). After the final dot of a message, 2yz means the "
            "receiver took responsibility for delivering or relaying it "
            f"({RFC_AFTER_DATA}).",
    "continue": "Continue: the command was accepted, and the server waits for more "
                f"({RFC_REPLY_CLASSES}): send the rest.",
    "retry later": "Retry later: nothing happened, but the condition is temporary "
                   f"({RFC_REPLY_CLASSES}). Keep the message: the sending queue tries again "
                   "by itself, waiting between tries (generally at least 30 minutes) and "
                   f"giving up only after days (generally at least 4-5) ({RFC_RETRY}); only "
                   "then does the sender get a bounce.",
    "give up": "Give up on this request: it was not accepted, and repeating it unchanged "
               f"will not help ({RFC_REPLY_CLASSES}). A relay that had already accepted the "
               f"message sends a bounce, a delivery status notification ({RFC_DSN}), to the "
               f"envelope sender ({RFC_BOUNCE}); a program submitting mail tells its user. "
               "Something must change (the address, the login, the message or the "
               "receiver's policy) before a new try.",
}

_CONTINUE_WITH = {
    354: "Send the message, ended by a line holding a single dot (<CRLF>.<CRLF>) "
         f"({RFC_MAIL_TRANSACTION}).",
    334: "Send the next line of the AUTH exchange: the base64 answer to the server's "
         "challenge, or '*' to cancel (RFC 4954 section 4).",
}

#: Who has to act, by subject of the enhanced code: RFC 3463 section 2 says whose control
#: each subject is "assumed to be under".
_SUBJECT_OWNERS = {
    1: "the sender: addressing errors 'can generally be corrected by the sender and "
       "retried'",
    2: "the recipient: mailbox issues are 'under the general control of the recipient'",
    3: "the destination system's administrator: mail system issues are under their "
       "general control",
    4: "the administrator of the destination or of a system on the way: network and "
       "routing (DNS included) are under their control",
    5: "the mail software on either side: a delivery protocol failure (an implementation "
       "error or an unreliable connection)",
    6: "both the sender and the receiver: they must support a common set of content types",
    7: "the sender, the recipient's side, or both: each must permit the exchange "
       "(per-host or per-recipient policy, keys and certificates); the text says whose "
       "policy refused",
}

_AUTH_CODES = frozenset({530, 534, 535, 538})
_AUTH_DETAILS = frozenset({"7.8", "7.9", "7.11", "7.12"})


def _action(category: str, code: int | None) -> str:
    text = _ACTIONS[category]
    if category == "continue":
        text += " " + _CONTINUE_WITH.get(code or 0, "Send the information the server asked "
                                         "for.")
    if code == 421:
        text += f" The server closes the connection after a 421 ({RFC_CLOSING})."
    return text


def _who_acts(klass: int, code: int | None, enhanced: str | None) -> str:
    if klass == 2:
        return "nobody: the request was done"
    if klass == 3:
        return "the sending client: it sends what the server asked for"
    subject = detail = None
    if enhanced:
        subject, detail = enhanced.split(".", 1)[1].split(".")
    if code in _AUTH_CODES or (subject is not None and f"{subject}.{detail}" in _AUTH_DETAILS):
        return ("the sender: log in with a valid account (AUTH, RFC 4954), or start TLS "
                "first when the text asks for it (RFC 3207)")
    owner = _SUBJECT_OWNERS.get(int(subject)) if subject is not None else None
    if klass == 4:
        later = f" If the condition lasts, {owner}." if owner else ""
        return f"nobody at once: the sending queue retries by itself ({RFC_RETRY}).{later}"
    if owner:
        return owner
    if code is not None and code // 10 % 10 == 0:
        return ("the sending software: its command or arguments were not accepted (second "
                f"digit 0: syntax, {RFC_REPLY_CLASSES})")
    return ("not said by the code alone: the enhanced code (none here) or the text says "
            "whose side must change something")


# -- finding the reply in what was pasted ---------------------------------------------------

_MAX_INPUT = 100_000
_LINE = re.compile(r"([2-5][0-9][0-9])(?:([ -])(.*))?")
_ENHANCED_START = re.compile(r"([245])\.([0-9]{1,3})\.([0-9]{1,3})(?=[\s,;:]|\Z)")
_X_CODE = re.compile(r"(?<![\w.])X\.[0-9]{1,3}\.[0-9]{1,3}(?![\w])", re.IGNORECASE)
_PY_LITERAL = r"b?(?:'(?:[^'\\\n]|\\.)*'|\"(?:[^\"\\\n]|\\.)*\")"
_SMTPLIB = re.compile(rf"\(\s*([2-5][0-9][0-9])\s*,\s*({_PY_LITERAL})"
                      rf"((?:\s*,\s*{_PY_LITERAL})*)\s*\)")
_QUOTED_FULL = re.compile(r"(?<![\w.:/\[-])([2-5][0-9][0-9])[ -]\s*"
                          r"([245]\.[0-9]{1,3}\.[0-9]{1,3})(?=[\s,;:)]|\Z)")
_QUOTED_CODE = re.compile(r"(?<![\w.:/\[-])([2-5][0-9][0-9])(?=[ -]|\Z)")
_QUOTED_ENHANCED = re.compile(r"(?<![\w.])([245]\.[0-9]{1,3}\.[0-9]{1,3})(?![\w]|\.[0-9])")
_IN_REPLY_TO = re.compile(r"\s*\((in reply to [^()]*)\)\s*\Z", re.IGNORECASE)

_Parsed = tuple[int | None, str | None, str, str, list[str]]


def _shown(text: str) -> str:
    return repr(text if len(text) <= 80 else text[:77] + "...")


def _no_reply(text: str) -> ReplyCodeError:
    if re.fullmatch(r"[0-9]{3}", text) and text[0] == "1":
        return ReplyCodeError(f"{text} is not an SMTP reply code: SMTP uses no 1yz replies, its "
                              f"codes start with 2, 3, 4 or 5 ({RFC_REPLY_CLASSES}).")
    if _X_CODE.search(text):
        return ReplyCodeError(f"{_shown(text)} has X in place of the class: tables write "
                              "X.7.1 for 'any class', but a server sends 2, 4 or 5 there "
                              "(RFC 3463 section 2); decode '5.7.1' or '4.7.1' instead.")
    return ReplyCodeError(
        f"{_shown(text)} holds no SMTP reply: a reply code is three digits whose first is "
        f"2, 3, 4 or 5, such as 550 ({RFC_REPLIES}), and an enhanced status code is "
        "class.subject.detail with class 2, 4 or 5, such as 5.7.1 (RFC 3463 section 2).")


def _take_enhanced(lines: list[str]) -> tuple[str | None, list[str]]:
    """The enhanced code at the start of the first line, taken off every line that has it."""
    found = _ENHANCED_START.match(lines[0]) if lines else None
    if found is None:
        return None, lines
    enhanced = found.group(0)

    def without(line: str) -> str:
        rest = line[len(enhanced):]
        return rest.strip() if line.startswith(enhanced) and rest[:1] in ("", " ", "\t") \
            else line

    return enhanced, [without(line) for line in lines]


def _unrepr(literal: str) -> str:
    """The text of a Python bytes or str literal as smtplib's exceptions print it."""
    import ast
    import warnings

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            value = ast.literal_eval(literal)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return literal.lstrip("b")[1:-1]
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


def _from_smtplib(text: str) -> _Parsed | None:
    """``(550, b'5.1.1 no such user')``: how smtplib's exceptions print a reply."""
    found = _SMTPLIB.search(text)
    if found is None:
        return None
    body = _unrepr(found.group(2))
    lines = [line.strip() for line in body.splitlines()] or [""]
    enhanced, lines = _take_enhanced(lines)
    # SMTPSenderRefused adds the sender: "(553, b'5.1.8 ...', 'a@b')".
    extra = [_unrepr(m.group(0)) for m in re.finditer(_PY_LITERAL, found.group(3))]
    around = (text[:found.start()] + " " + text[found.end():]).strip(" \t\r\n{}[]:,'\"")
    context = " … ".join(c for c in [around, *extra] if c)
    return int(found.group(1)), enhanced, "\n".join(lines), context, []


def _from_reply_lines(text: str) -> _Parsed | None:
    """One reply as the server sent it: every line is ``code[SP|-]text``."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    found = [_LINE.fullmatch(line) for line in lines]
    matches = [m for m in found if m is not None]
    if not lines or len(matches) != len(lines):
        return None
    codes = sorted({m.group(1) for m in matches})
    if len(codes) > 1:
        raise ReplyCodeError(
            f"these lines carry different codes ({' and '.join(codes)}): every line of a "
            f"multi-line reply repeats the same code ({RFC_REPLY_CLASSES}), so they are "
            "several replies; decode them one at a time.")
    notes = []
    if matches[-1].group(2) == "-":
        notes.append("The last line has a hyphen after the code, which says that more lines "
                     f"follow ({RFC_REPLY_CLASSES}): this reply may be cut short.")
    if any(m.group(2) == " " for m in matches[:-1]):
        notes.append("A line before the last has a space after the code, which ends a reply "
                     f"({RFC_REPLY_CLASSES}): these lines may come from more than one reply.")
    enhanced, texts = _take_enhanced([(m.group(3) or "").strip() for m in matches])
    return int(codes[0]), enhanced, "\n".join(texts), "", notes


def _from_enhanced_only(text: str) -> _Parsed | None:
    """``5.7.1`` or ``5.7.1 some text``: an enhanced status code without a reply code."""
    if _ENHANCED_START.match(text) is None:
        return None
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    enhanced, lines = _take_enhanced(lines)
    return None, enhanced, "\n".join(lines), "", []


def _context_before(text: str, start: int) -> str:
    """The quoting program's words before a reply: its line, or the line above."""
    before = text[:start]
    line_start = before.rfind("\n") + 1
    same_line = before[line_start:].strip()
    if same_line:
        return same_line
    above = before[:line_start].rstrip().splitlines()
    return above[-1].strip() if above else ""


def _continued(text: str, end: int, code: int | None) -> str:
    """The rest of the reply's line, and the lines a bounce wrapped it onto (indented, or
    starting with the same code), up to a blank or an unindented line."""
    first, _, after = text[end:].partition("\n")
    kept = [first]
    for line in after.splitlines():
        if not line.strip():
            break
        if line[:1].isspace() or (code is not None and re.match(rf"\s*{code}[ -]", line)):
            kept.append(line)
        else:
            break
    return "\n".join(kept)


def _from_quoted(text: str) -> _Parsed | None:
    """A reply quoted by a mail program or a bounce: ``... said: 550 5.1.1 <bob@x>: ...``."""
    code: int | None
    enhanced: str | None
    full = _QUOTED_FULL.search(text)
    if full is not None:
        found, code, enhanced = full, int(full.group(1)), full.group(2)
    elif (bare := _QUOTED_CODE.search(text)) is not None:
        found, code, enhanced = bare, int(bare.group(1)), None
    elif (lone := _QUOTED_ENHANCED.search(text)) is not None:
        found, code, enhanced = lone, None, lone.group(1)
    else:
        return None
    rest = _continued(text, found.end(), code)
    if code is not None:
        again = rf"(?<!\S){code}[ -]" + (rf"(?:\s*{re.escape(enhanced)}(?=\s|\Z))?"
                                        if enhanced else "")
        rest = re.sub(again, " ", rest)
    context = [_context_before(text, found.start())]
    rest = " ".join(rest.split())  # the quoting program wrapped the lines, not the server
    trailer = _IN_REPLY_TO.search(rest)
    if trailer is not None:
        context.append(trailer.group(1))
        rest = rest[:trailer.start()]
    body = rest.lstrip("- ").strip()
    return code, enhanced, body, " … ".join(c for c in context if c), []


def _notes_on(code: int | None, enhanced: str | None, text: str) -> list[str]:
    notes = []
    if code is not None and code // 10 % 10 > 5:
        notes.append(f"The second digit of {code} is {code // 10 % 10}; RFC 5321 section 4.2 "
                     "allows only 0 to 5 there. A client reads a code it does not know by its "
                     "first digit only (RFC 5321 section 4.2).")
    if code is not None and enhanced and enhanced[0] != str(code)[0]:
        notes.append(f"The enhanced code's class ({enhanced[0]}) does not agree with the "
                     f"reply code's first digit ({str(code)[0]}), as {RFC_ENHANCED_IN_REPLIES} "
                     "requires. A client acts on the reply code, not on the rest "
                     f"({RFC_REPLIES}); so does this decoder.")
    if code is not None and code // 100 == 3 and enhanced:
        notes.append(f"3xx replies carry no enhanced status code ({RFC_ENHANCED_IN_REPLIES}).")
    if code is None and enhanced:
        notes.append("Only an enhanced code was given: its class decides here (RFC 3463 "
                     "section 2). In a real reply, the reply code in front of it is what a "
                     f"client acts on ({RFC_REPLIES}).")
    if code == 334 and text.strip():
        import base64

        try:
            said = base64.b64decode(text.strip(), validate=True).decode("ascii")
        except ValueError:
            said = ""
        if said and said.isprintable():
            notes.append(f"The text of a 334 is base64 (RFC 4954 section 4); this one says "
                         f"{said!r}.")
    return notes


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


def _decoded(given: str, code: int | None, enhanced: str | None, text: str, context: str,
             notes: list[str]) -> Decoded:
    notes = notes + _notes_on(code, enhanced, text)
    klass = code // 100 if code is not None else int(enhanced[0]) if enhanced else 0
    category = _CATEGORY_OF_CLASS[klass]
    enhanced_meaning = None
    if enhanced:
        first, subject, detail = enhanced.split(".")
        enhanced_meaning = _explain_enhanced(first, int(subject), int(detail))
    decoded = Decoded(
        reply=given, code=code, enhanced=enhanced, text=text, context=context,
        code_meaning=_explain_basic(code) if code is not None else None,
        enhanced_meaning=enhanced_meaning, category=category,
        action=_action(category, code), who_acts=_who_acts(klass, code, enhanced),
        notes=tuple(notes))
    myths = tuple(m for m in MYTHS if m.applies(decoded))
    return replace(decoded, myths=myths)


def decode(reply: str | int | bytes) -> Decoded:
    """Decode an SMTP reply: its codes, what the sender does next, who acts, and the myths.

    Takes a reply code (``550`` or ``"550"``), an enhanced status code (``"5.7.1"``), a
    reply line (``"550 5.7.1 Relay access denied"``), a multi-line reply
    (``"550-5.7.1 first\\r\\n550 5.7.1 second"``), or a reply as mail programs and bounce
    messages quote it (``"SMTP error from remote mail server after RCPT TO:<bob@x>: 550
    5.1.1 ..."``, ``"... said: 550 5.1.1 ... (in reply to RCPT TO command)"``, Python's
    ``"(550, b'5.1.1 no such user')"``). Text that holds no reply raises
    :class:`ReplyCodeError` with a sentence that says why.

    The action follows the class, as RFC 5321 section 4.2.1 defines it; when the reply code
    and the enhanced code disagree, the reply code decides (RFC 5321 section 4.2) and a
    note says so (RFC 2034 section 4).

    >>> decode("451 4.7.1 Greylisted, try again later").category
    'retry later'
    """
    if isinstance(reply, bool) or not isinstance(reply, str | int | bytes | bytearray):
        raise ReplyCodeError(f"decode() reads a reply (text such as '550 5.1.1 no such user') "
                             f"or a reply code (a number such as 550), not a "
                             f"{type(reply).__name__}.")
    if isinstance(reply, int):
        if not 200 <= reply <= 599:
            raise _no_reply(str(reply))
        return _decoded(str(reply), reply, None, "", "", [])
    if isinstance(reply, bytes | bytearray):
        reply = bytes(reply).decode("utf-8", "replace")
    text = reply.strip()
    if not text:
        raise ReplyCodeError("there is nothing to decode: paste a reply such as "
                             "'550 5.1.1 <bob@campus.test>: User unknown'.")
    if len(text) > _MAX_INPUT:
        raise ReplyCodeError(f"that is {len(text)} characters, far more than a reply: paste "
                             "the lines around the reply code only.")
    if re.fullmatch(r"[0-9]+", text) and not (len(text) == 3 and text[0] in "2345"):
        raise _no_reply(text)
    parsed = (_from_smtplib(text) or _from_reply_lines(text) or _from_enhanced_only(text)
              or _from_quoted(text))
    if parsed is None:
        raise _no_reply(text)
    code, enhanced, body, context, notes = parsed
    return _decoded(reply, code, enhanced, body, context, notes)


def action_category(reply: str | int | bytes) -> str:
    """What the sending side does after ``reply``: ``"done"``, ``"continue"``, ``"retry
    later"`` or ``"give up"`` (RFC 5321 section 4.2.1; see :func:`decode`)."""
    return decode(reply).category


def decoded_html(reply: str | int | bytes) -> str:
    """:func:`decode` as HTML for a notebook; text that holds no reply gives the sentence
    that says why, in red, instead of an exception."""
    try:
        return decode(reply)._repr_html_()
    except ReplyCodeError as error:
        return f"<div style='color:#b00020'>{html.escape(str(error))}</div>"


# -- examples ----------------------------------------------------------------------------

#: Replies to try in :func:`labsupport.teach.widgets.reply_decoder`: (label, reply as a server
#: or a bounce shows it).
EXAMPLES: tuple[tuple[str, str], ...] = (
    ("greylisting: 451 4.7.1",
     "451 4.7.1 <bob@campus.test>: Recipient address rejected: Greylisted, try again later"),
    ("relay denied: 550 5.7.1",
     "550 5.7.1 <carol@elsewhere.test>: Relay access denied"),
    ("unknown user: 550 5.1.1",
     "550 5.1.1 <nobody@campus.test>: Recipient address rejected: User unknown"),
    ("DMARC reject: 550 5.7.1",
     "550 5.7.1 Message rejected: DMARC policy of northwind.test (p=reject): neither SPF "
     "nor DKIM passed aligned with the From domain northwind.test"),
    ("mailbox full, for now: 452 4.2.2",
     "452 4.2.2 <bob@campus.test>: Mailbox full, try again later"),
    ("mailbox full, this message: 552 5.2.2",
     "552 5.2.2 <bob@campus.test>: Mailbox full: quota exceeded"),
    ("DNS trouble at the receiver: 451 4.4.3",
     "451 4.4.3 Temporary lookup failure"),
    ("after DATA: 354", "354 End data with <CR><LF>.<CR><LF>"),
    ("AUTH challenge: 334", "334 VXNlcm5hbWU6"),
    ("closing: 421 4.7.0",
     "421 4.7.0 mx.campus.test Too many errors on one connection: closing the connection"),
    ("log in first: 530 5.7.0", "530 5.7.0 Authentication required"),
    ("wrong password: 535 5.7.8", "535 5.7.8 Authentication credentials invalid"),
    ("refused in the banner: 554", "554 mx.campus.test No SMTP service here"),
    ("accepted: 250 2.0.0", "250 2.0.0 Ok: queued as 4B2C1"),
    ("multi-line: 550-5.7.1",
     "550-5.7.1 Unauthenticated email from northwind.test is not accepted due to\r\n"
     "550 5.7.1 the domain's DMARC policy."),
    ("quoted by a bounce",
     "SMTP error from remote mail server after RCPT TO:<bob@campus.test>: 550 5.1.1 "
     "<bob@campus.test>: Recipient address rejected: User unknown"),
    ("quoted by Python's smtplib",
     "(550, b'5.1.1 <nobody@campus.test>: Recipient address rejected: User unknown')"),
)


# -- the exercise --------------------------------------------------------------------------

#: Words a student may use for each category, besides the category itself.
_SYNONYMS: dict[str, str] = {
    "done": "done", "ok": "done", "okay": "done", "success": "done", "successful": "done",
    "succeeded": "done", "completed": "done", "complete": "done", "accepted": "done",
    "continue": "continue", "send more": "continue", "send the rest": "continue",
    "send rest": "continue", "go on": "continue", "intermediate": "continue",
    "more": "continue", "send data": "continue", "next": "continue",
    "retry later": "retry later", "retry": "retry later", "try again later": "retry later",
    "try again": "retry later", "try later": "retry later", "later": "retry later",
    "retry afterwards": "retry later", "defer": "retry later", "deferred": "retry later",
    "temporary": "retry later", "tempfail": "retry later", "temp fail": "retry later",
    "wait": "retry later", "wait and retry": "retry later", "queue": "retry later",
    "requeue": "retry later", "soft bounce": "retry later",
    "give up": "give up", "giveup": "give up", "bounce": "give up", "fail": "give up",
    "failed": "give up", "failure": "give up", "permanent": "give up", "reject": "give up",
    "rejected": "give up", "stop": "give up", "do not retry": "give up",
    "don't retry": "give up", "dont retry": "give up", "hard bounce": "give up",
    "abandon": "give up", "permfail": "give up", "perm fail": "give up",
}


def normalise_action(word: Any) -> str | None:
    """A student's word for what the sender does, as one of :data:`CATEGORIES`, or None.

    Accepts the four words and common variants ("retry", "try again later", "bounce",
    "fail"...), in any case, with hyphens, underscores or small spelling slips.
    """
    import difflib

    said = re.sub(r"[\s_-]+", " ", str(word).strip().lower()).strip(" .!")
    if said in _SYNONYMS:
        return _SYNONYMS[said]
    close = difflib.get_close_matches(said, list(_SYNONYMS), n=1, cutoff=0.8)
    return _SYNONYMS[close[0]] if close else None
