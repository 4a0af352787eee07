"""Decoding whole replies for troubleshooting, the examples and the exercise words.

:func:`decode` (with :func:`action_category` and :func:`decoded_html`) puts the parts of
:mod:`labsupport.mail.replycodes_parse`, :mod:`labsupport.mail.replycodes_actions` and
:mod:`labsupport.mail.replycodes_decoded` together; :data:`EXAMPLES` are replies to try, and
:func:`normalise_action` reads a student's word for an action. Re-exported by
:mod:`labsupport.mail.replycodes`.
"""

from __future__ import annotations

import html
import re
from dataclasses import replace
from typing import Any

from .replycodes_actions import _action, _who_acts
from .replycodes_decoded import _CATEGORY_OF_CLASS, MYTHS, Decoded
from .replycodes_explain import _explain_basic, _explain_enhanced
from .replycodes_parse import (
    _MAX_INPUT,
    _from_enhanced_only,
    _from_quoted,
    _from_reply_lines,
    _from_smtplib,
    _no_reply,
    _notes_on,
)
from .replycodes_tables import ReplyCodeError


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
