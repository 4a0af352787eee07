"""The delivering MTA's settings and records: what is queued and what a run reports.

The RFC references and tunables of :mod:`labsupport.mail.delivery` (the retry schedule,
the queue lifetime, the SMTP timeout), the protocols of what the queue needs of a mail
store and of the lab's faults, the records :class:`QueueItem`, :class:`HostTry`,
:class:`DeliveryAttempt` and :class:`QueueTable`, and the small helpers that format lab
times and durations for them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any, Protocol

from ..core.results import Result, html_table, text_table

RFC_MX = "RFC 5321 section 5.1"
RFC_RETRY = "RFC 5321 section 4.5.4.1"
RFC_REPLY = "RFC 5321 section 4.2.1"
RFC_NULL_SENDER = "RFC 5321 section 4.5.5"
RFC_BOUNCE = "RFC 5321 section 6.1"
RFC_DSN = "RFC 3464"
RFC_STATUS = "RFC 3463"
RFC_XCLIENT = "Postfix XCLIENT_README"

#: Seconds to wait after the 1st, 2nd, 3rd... failed try; the last value repeats.
#: RFC 5321 section 4.5.4.1 asks for at least 30 minutes between tries in general; the
#: lab starts shorter so a lesson sees the retry, as Postfix does (5 min, doubling).
RETRY_SCHEDULE: tuple[float, ...] = (300.0, 900.0, 3600.0, 4 * 3600.0)

#: Give up on a message this long after it was queued (RFC 5321 section 4.5.4.1:
#: "at least 4-5 days"); Postfix's maximal_queue_lifetime is 5 days too.
MAX_QUEUE_LIFETIME = 5 * 24 * 3600.0

#: RFC 3463 section 3.5, X.4.7 "Delivery time expired": the status of a message given
#: up after temporary failures. RFC 3463 calls it useful only as a persistent transient
#: error, so it keeps its 4 (as Postfix and sendmail report it) with ``Action: failed``.
STATUS_EXPIRED = "4.4.7"

#: Seconds smtplib waits for the MX role before a try counts as a temporary failure.
SMTP_TIMEOUT = 20.0
_FILE_VERSION = 1


class StoreLike(Protocol):
    """What the queue needs of a mail store: put a message into a mailbox."""

    def deliver(self, address: str, raw: bytes, folder: str = "INBOX") -> str: ...


class FaultsLike(Protocol):
    """What the queue needs of the lab's faults: is an MX host name switched off?"""

    def is_down(self, hostname: str) -> bool: ...


# -- results ---------------------------------------------------------------------------

@dataclass(frozen=True)
class QueueItem:
    """One queued message: who sent it, who still waits for it, and when it is next tried.

    ``recipients`` maps each recipient domain to the recipients there that are still
    waiting (delivered and failed recipients leave the item); ``attempts`` counts the
    queue runs that tried it; times are seconds on the lab clock.
    """

    id: str
    mail_from: str
    recipients: Mapping[str, tuple[str, ...]] = field(hash=False)
    sender_domain: str
    created_at: float
    next_attempt_at: float
    attempts: int = 0
    size: int = 0
    last_reply: str | None = None

    @property
    def all_recipients(self) -> tuple[str, ...]:
        return tuple(r for rcpts in self.recipients.values() for r in rcpts)

    def to_json(self) -> dict[str, Any]:
        return {
            "version": _FILE_VERSION, "id": self.id, "mail_from": self.mail_from,
            "recipients": {d: list(r) for d, r in self.recipients.items()},
            "sender_domain": self.sender_domain, "created_at": self.created_at,
            "next_attempt_at": self.next_attempt_at, "attempts": self.attempts,
            "size": self.size, "last_reply": self.last_reply,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> QueueItem:
        return cls(
            id=str(data["id"]), mail_from=str(data["mail_from"]),
            recipients=_frozen_recipients(
                {str(d): tuple(str(r) for r in rs) for d, rs in data["recipients"].items()}),
            sender_domain=str(data["sender_domain"]), created_at=float(data["created_at"]),
            next_attempt_at=float(data["next_attempt_at"]), attempts=int(data["attempts"]),
            size=int(data.get("size", 0)), last_reply=data.get("last_reply"),
        )

    def __str__(self) -> str:
        sender = self.mail_from or "<>"
        return (f"{self.id} from {sender} to {', '.join(self.all_recipients)}, "
                f"{self.attempts} tries, next {_when(self.next_attempt_at)}")


@dataclass(frozen=True)
class HostTry:
    """One MX host tried for one domain: its name, what happened and the reply."""

    host: str
    outcome: str  # "delivered", "refused", "temporary", "permanent" or "partial"
    reply: str


@dataclass(frozen=True)
class TLSSession:
    """One SMTP session (or MX host skipped) under an MTA-STS policy, as TLS-RPT counts
    it (RFC 8460 section 4): ``result`` is ``"success"`` or a result type such as
    ``starttls-not-supported``, ``certificate-host-mismatch`` or ``validation-failure``;
    ``delivered`` says whether the message went through that host anyway (testing mode)."""

    policy_domain: str
    mode: str
    policy_id: str
    policy_string: tuple[str, ...]
    mx_patterns: tuple[str, ...]
    mx_host: str
    result: str
    at: float
    sending_ip: str | None = None
    receiving_ip: str | None = None
    failure_reason: str | None = None
    delivered: bool = False


@dataclass(frozen=True, kw_only=True)
class DeliveryAttempt(Result):
    """One queue run's try at one recipient domain of one message.

    ``verdict`` is ``"delivered"`` (every recipient there accepted the message),
    ``"deferred"`` (some recipient failed only temporarily: the message stays queued
    until ``next_attempt_at``) or ``"bounced"`` (the rest failed for good: a DSN went to
    the sender unless the envelope sender was empty). ``host`` took the message;
    ``tried`` lists every host tried, in order, and why it was left; ``tls`` holds what
    MTA-STS decided for each host when the domain has a policy (for TLS-RPT).
    """

    item_id: str
    domain: str
    mail_from: str
    recipients: tuple[str, ...]
    at: float
    host: str | None = None
    tried: tuple[HostTry, ...] = ()
    delivered: tuple[str, ...] = ()
    failed: tuple[tuple[str, str], ...] = ()
    deferred: tuple[str, ...] = ()
    reply: str | None = None
    next_attempt_at: float | None = None
    bounce_to: str | None = None
    tls: tuple[TLSSession, ...] = ()

    def title(self) -> str:
        return f"Delivery of {self.item_id} to {self.domain}: {self.verdict}"

    def _repr_html_(self) -> str:
        if not self.tried:
            return super()._repr_html_()
        rows: list[list[object]] = [[i + 1, t.host, t.outcome, t.reply]
                                    for i, t in enumerate(self.tried)]
        table = html_table(["try", "host", "outcome", "reply"], rows)
        marker = '<div style="margin-top:4px">'
        return super()._repr_html_().replace(marker, table + marker, 1)


@dataclass(frozen=True)
class QueueTable:
    """The queue as a table: ``str()`` for text, ``_repr_html_`` for a notebook."""

    headers: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    caption: str

    def text(self) -> str:
        if not self.rows:
            return f"{self.caption}: empty"
        return self.caption + "\n" + text_table(list(self.headers),
                                                [list(r) for r in self.rows])

    def __str__(self) -> str:
        return self.text()

    def _repr_html_(self) -> str:
        rows: list[list[object]] = [list(r) for r in self.rows]
        caption = self.caption if self.rows else f"{self.caption}: empty"
        return html_table(list(self.headers), rows, caption=caption)


# -- small helpers -----------------------------------------------------------------------


def _frozen_recipients(mapping: Mapping[str, tuple[str, ...]]
                       ) -> Mapping[str, tuple[str, ...]]:
    return MappingProxyType(dict(mapping))


def _when(ts: float | None, now: float | None = None) -> str:
    if ts is None:
        return "-"
    text = datetime.fromtimestamp(ts, tz=UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    if now is None:
        return text
    delta = ts - now
    if abs(delta) < 1:
        return f"{text} (now)"
    return f"{text} (in {_duration(delta)})" if delta > 0 else f"{text} ({_duration(-delta)} ago)"


def _duration(seconds: float) -> str:
    seconds = max(0.0, seconds)
    for size, unit in ((86400, "d"), (3600, "h"), (60, "min")):
        if seconds >= size:
            value = seconds / size
            return f"{value:.0f} {unit}" if value == int(value) else f"{value:.1f} {unit}"
    return f"{seconds:.0f} s"


def _schedule_text(schedule: tuple[float, ...]) -> str:
    return ", ".join(_duration(s) for s in schedule) + " then every " + _duration(schedule[-1])
