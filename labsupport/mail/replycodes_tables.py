"""The tables of SMTP reply codes and enhanced status codes, with the RFCs that define them.

The RFC references the reply-code modules cite, :class:`ReplyCodeError`, the classes and
subjects of reply codes (RFC 5321 section 4.2.1) and the reply codes themselves (RFC 5321
section 4.2.3, RFC 4954, RFC 3207), and the classes, subjects and detail codes of enhanced
status codes (RFC 3463 and the IANA registry). Re-exported by
:mod:`labsupport.mail.replycodes`.
"""

from __future__ import annotations

from ..core.errors import LabError

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
