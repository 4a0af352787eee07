"""What the sending side does after a reply, and who has to act.

The words for each action category, for the replies that ask the client to continue, and
for whose control each enhanced subject is under (RFC 5321 section 4.2.1, RFC 3463 section
2); used by :func:`labsupport.mail.replycodes_decode.decode`.
"""

from __future__ import annotations

from .replycodes_decoded import (
    RFC_AFTER_DATA,
    RFC_BOUNCE,
    RFC_DSN,
    RFC_MAIL_TRANSACTION,
    RFC_RETRY,
)
from .replycodes_tables import RFC_CLOSING, RFC_REPLY_CLASSES

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
