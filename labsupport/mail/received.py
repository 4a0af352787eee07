"""Reading the Received header fields of a message, hop by hop (RFC 5321 section 4.4).

Introduced in ``notebooks/02-smtp-dialogue.ipynb``.
"""

from __future__ import annotations

import email
import email.policy
import email.utils
import re
from dataclasses import dataclass
from datetime import datetime
from email.message import Message

# -- Received header fields ---------------------------------------------------------------

#: What the WITH clause of a Received field says about the hop (RFC 3848, RFC 5321 4.4).
WITH_PROTOCOLS: dict[str, str] = {
    "SMTP": "SMTP, without extensions (HELO)",
    "ESMTP": "SMTP with extensions (EHLO)",
    "ESMTPA": "ESMTP with successful AUTH",
    "ESMTPS": "ESMTP with STARTTLS",
    "ESMTPSA": "ESMTP with both STARTTLS and successful AUTH",
    "LMTP": "LMTP (local delivery)",
    "LMTPA": "LMTP with successful AUTH",
    "LMTPS": "LMTP with STARTTLS",
    "LMTPSA": "LMTP with both STARTTLS and successful AUTH",
}

_KEYWORDS = ("from", "by", "via", "with", "id", "for")
_IP_IN_BRACKETS = re.compile(r"\[(?:IPv6:)?([0-9A-Fa-f:.]+)\]")


@dataclass(frozen=True)
class Hop:
    """One Received header field: one server's note of how it got the message.

    The clauses of RFC 5321 section 4.4: ``from_`` (the name the client gave in
    HELO/EHLO) with ``from_info`` (the receiver's own note, e.g. the client's real name
    and address, whence ``from_ip``), ``by`` (the receiving host), ``via``, ``with_``
    (the protocol, RFC 3848), ``id``, ``for_`` (the recipient) and ``date``. ``number``
    counts from 1 at the first hop (the bottom-most field, the oldest).
    """

    number: int
    raw: str
    from_: str | None = None
    from_info: str | None = None
    from_ip: str | None = None
    by: str | None = None
    by_info: str | None = None
    via: str | None = None
    with_: str | None = None
    id: str | None = None
    for_: str | None = None
    date: datetime | None = None
    date_text: str = ""

    @property
    def protocol(self) -> str | None:
        """What ``with_`` means (e.g. ESMTPSA: TLS and AUTH), or None if unknown."""
        return WITH_PROTOCOLS.get((self.with_ or "").upper())

    def __str__(self) -> str:
        parts = [f"hop {self.number}:"]
        if self.from_:
            parts.append(f"from {self.from_}" + (f" ({self.from_info})" if self.from_info
                                                 else ""))
        if self.by:
            parts.append(f"by {self.by}")
        if self.with_:
            parts.append(f"with {self.with_}")
        if self.date_text:
            parts.append(f"at {self.date_text}")
        return " ".join(parts)


def _tokens(text: str) -> list[tuple[str, str]]:
    """Split a Received field (before its ';') into words and (comments)."""
    tokens: list[tuple[str, str]] = []
    i, n = 0, len(text)
    while i < n:
        char = text[i]
        if char.isspace():
            i += 1
        elif char == "(":
            depth, j, body = 1, i + 1, []
            while j < n and depth:
                if text[j] == "\\" and j + 1 < n:
                    body.append(text[j + 1])
                    j += 2
                    continue
                depth += {"(": 1, ")": -1}.get(text[j], 0)
                if depth:
                    body.append(text[j])
                j += 1
            tokens.append(("comment", "".join(body).strip()))
            i = j
        else:
            j = i
            closer = {"<": ">", "[": "]", '"': '"'}.get(char)
            if closer:
                end = text.find(closer, i + 1)
                j = n if end < 0 else end + 1
            while j < n and not text[j].isspace() and text[j] != "(":
                j += 1
            tokens.append(("word", text[i:j]))
            i = j
    return tokens


def _split_date(value: str) -> tuple[str, str]:
    """The clauses and the date: the date follows the last ';' outside comments."""
    depth, cut = 0, -1
    for i, char in enumerate(value):
        if char == "(":
            depth += 1
        elif char == ")" and depth:
            depth -= 1
        elif char == ";" and depth == 0:
            cut = i
    if cut < 0:
        return value, ""
    return value[:cut], value[cut + 1:].strip()


def parse_received(value: str, number: int = 1) -> Hop:
    """Parse one Received field's value into a :class:`Hop` (RFC 5321 section 4.4)."""
    unfolded = re.sub(r"\s+", " ", str(value)).strip()
    clauses_text, date_text = _split_date(unfolded)
    values: dict[str, str] = {}
    infos: dict[str, list[str]] = {}
    current: str | None = None
    for kind, token in _tokens(clauses_text):
        if kind == "comment":
            if current is not None:
                infos.setdefault(current, []).append(token)
            continue
        lowered = token.lower()
        if lowered in _KEYWORDS and (current is None or current in values):
            current = lowered
            continue
        if current is not None and current not in values:
            values[current] = token
    from_info = "; ".join(infos.get("from", [])) or None
    ip_source = " ".join(filter(None, [from_info, values.get("from")]))
    ip_match = _IP_IN_BRACKETS.search(ip_source)
    date: datetime | None = None
    if date_text:
        try:
            date = email.utils.parsedate_to_datetime(date_text)
        except (TypeError, ValueError, IndexError):
            date = None
    return Hop(number=number, raw=unfolded, from_=values.get("from"), from_info=from_info,
               from_ip=ip_match.group(1) if ip_match else None, by=values.get("by"),
               by_info="; ".join(infos.get("by", [])) or None, via=values.get("via"),
               with_=values.get("with"), id=values.get("id"),
               for_=(values.get("for") or "").strip("<>") or None, date=date,
               date_text=date_text)


def received_chain(message: Message | bytes | str) -> list[Hop]:
    """The Received fields of a message, oldest hop first.

    Each server that handles a message adds its Received field on top
    (RFC 5321 section 4.4), so the chain is read from the bottom field up: hop 1 is
    where the message entered the mail system, the last hop the final server.
    """
    if isinstance(message, bytes):
        message = email.message_from_bytes(message, policy=email.policy.default)
    elif isinstance(message, str):
        message = email.message_from_string(message, policy=email.policy.default)
    fields = message.get_all("Received") or []
    return [parse_received(str(value), number)
            for number, value in enumerate(reversed(fields), start=1)]
