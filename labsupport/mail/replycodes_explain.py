"""What a reply code or enhanced status code means, in words and as tables.

:func:`explain_reply` reads a reply code, an enhanced status code or a reply line and says
what the tables of :mod:`labsupport.mail.replycodes_tables` give for it;
:class:`CodeTable` and :func:`reply_code_table` show the tables in a notebook. Re-exported
by :mod:`labsupport.mail.replycodes`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..core.results import html_table, text_table
from .replycodes_tables import (
    ENHANCED_CLASSES,
    ENHANCED_CODES,
    ENHANCED_SUBJECTS,
    REPLY_CLASSES,
    REPLY_CODES,
    REPLY_SUBJECTS,
    RFC_ENHANCED_IN_REPLIES,
    RFC_ENHANCED_STRUCTURE,
    RFC_REPLIES,
    RFC_REPLY_CLASSES,
    RFC_REPLY_CODES,
    ReplyCodeError,
)

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
