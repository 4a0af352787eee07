"""The delivering MTA: a persistent outbound queue, MX fallback, retries and bounces.

When an authenticated user submits mail for another lab domain, the lab delivers it the
way a real mail transfer agent does: it groups the recipients by domain, looks up each
domain's MX hosts in the lab's DNS (:func:`labsupport.dns.mx.mx_hosts`, RFC 5321 section 5.1)
and tries them in order. A host that is down (a lesson fault) or answers 4xx sends it on
to the next host; when every host failed for now the message stays in the queue and is
tried again on the lab clock (RFC 5321 section 4.5.4.1); a 5xx reply, or a message too
old to keep trying, is returned to the sender as a delivery status notification (a
"bounce", RFC 3464), unless the envelope sender is empty (RFC 5321 section 4.5.5).

Every lab MX host name is served by one listener, the lab's MX role on 127.0.0.1: the
MX lookup decides the order and which faults apply, the TCP connection always goes to
``127.0.0.1:mx_port()``. The sender appears to the MX role as its organisation's
outbound host (``out.<domain>``, e.g. 192.0.2.10) through Postfix's XCLIENT command,
when the MX role offers it. Nothing here ever connects outside 127.0.0.1.

:meth:`Queue.run` talks to the lab's DNS server and MX role, which live on the lab's
event loop: call it from another thread (a notebook cell, an executor, the queue's own
worker started with :meth:`Queue.start`), never on that loop; it refuses to run there.

Introduced in ``notebooks/02-smtp-dialogue.ipynb``.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.charset
import email.utils
import json
import os
import random
import re
import secrets
import smtplib
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from email.message import Message
from email.mime.base import MIMEBase
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText
from pathlib import Path
from types import MappingProxyType
from typing import Any, Protocol

import dns.exception

from ..core.clock import LabClock
from ..core.errors import LabError
from ..core.results import Result, TraceBuilder, html_table, text_table
from ..dns.mx import MXResult, ResolverLike, mx_hosts

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

_ENHANCED = re.compile(r"^([245])\.(\d{1,3})\.(\d{1,3})\b")
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


@dataclass(frozen=True, kw_only=True)
class DeliveryAttempt(Result):
    """One queue run's try at one recipient domain of one message.

    ``verdict`` is ``"delivered"`` (every recipient there accepted the message),
    ``"deferred"`` (some recipient failed only temporarily: the message stays queued
    until ``next_attempt_at``) or ``"bounced"`` (the rest failed for good: a DSN went to
    the sender unless the envelope sender was empty). ``host`` took the message;
    ``tried`` lists every host tried, in order, and why it was left.
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


# -- the queue ---------------------------------------------------------------------------


class Queue:
    """The lab's outbound mail queue, kept in ``directory`` and tried on the lab clock.

    Each item is two files written atomically (temporary file, fsync, rename): the raw
    message ``<id>.eml`` first, then its envelope ``<id>.json``, which commits it. A lab
    started again on the same directory finds its queue as it was; a crash while writing
    leaves only temporary files or an envelope-less message, cleared at the next start.

    ``resolver`` follows dnspython's ``Resolver.resolve`` contract; ``store.deliver``
    receives bounces; ``faults.is_down(host)`` switches MX hosts off; ``mx_port()`` is
    the MX role's port on 127.0.0.1; ``local_domains()``, when given, names the domains
    the lab serves (anything else is never tried and gets no bounce). ``serving_loop()``
    returns the lab's event loop, on which :meth:`run` refuses to run. ``rng`` orders MX
    hosts of equal preference.
    """

    def __init__(
        self,
        directory: Path,
        *,
        resolver: ResolverLike,
        clock: LabClock,
        store: StoreLike,
        faults: FaultsLike | None = None,
        mx_port: Callable[[], int],
        local_domains: Callable[[], set[str]] | None = None,
        serving_loop: Callable[[], asyncio.AbstractEventLoop | None] | None = None,
        rng: random.Random | None = None,
        retry_schedule: Iterable[float] = RETRY_SCHEDULE,
        max_lifetime: float = MAX_QUEUE_LIFETIME,
        timeout: float = SMTP_TIMEOUT,
    ) -> None:
        self.directory = Path(directory)
        self.resolver = resolver
        self.clock = clock
        self.store = store
        self.faults = faults
        self.mx_port = mx_port
        self.local_domains = local_domains
        self.serving_loop = serving_loop
        self.rng = rng or random.Random()
        self.retry_schedule = tuple(float(s) for s in retry_schedule) or RETRY_SCHEDULE
        self.max_lifetime = float(max_lifetime)
        self.timeout = float(timeout)
        self._lock = threading.Lock()       # guards _items and the files
        self._run_lock = threading.Lock()   # one queue run at a time
        self._items: dict[str, QueueItem] = {}
        self._history: deque[DeliveryAttempt] = deque(maxlen=200)
        self._errors: deque[str] = deque(maxlen=50)
        self._worker: threading.Thread | None = None
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._following_clock = False
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._load()

    # -- what the lab and the notebook use -----------------------------------------------

    def submit(self, mail_from: str, rcpt_tos: Iterable[str], raw: bytes, *,
               sender_domain: str) -> QueueItem:
        """Queue ``raw`` from ``mail_from`` (``""`` for the null sender) to ``rcpt_tos``,
        grouped by domain, due at once; returns the stored item. Thread-safe."""
        by_domain: dict[str, list[str]] = {}
        for rcpt in rcpt_tos:
            address = rcpt.strip().strip("<>")
            local, at, domain = address.rpartition("@")
            if not at or not local or not domain:
                raise LabError(f"{rcpt!r} is not a mail address (local-part@domain), so the "
                               "queue cannot route it")
            key = domain.lower().rstrip(".")
            if address not in by_domain.setdefault(key, []):
                by_domain[key].append(address)
        if not by_domain:
            raise LabError("a message needs at least one recipient to be queued")
        now = self.clock.time()
        item = QueueItem(
            id=self._new_id(), mail_from=mail_from.strip().strip("<>"),
            recipients=_frozen_recipients({d: tuple(r) for d, r in by_domain.items()}),
            sender_domain=sender_domain.lower().rstrip("."), created_at=now,
            next_attempt_at=now, size=len(raw),
        )
        with self._lock:
            message = self._path(item.id, ".eml")
            try:
                _write_atomic(message, bytes(raw))
                _write_atomic(self._path(item.id, ".json"), _encode(item))
            except BaseException:
                message.unlink(missing_ok=True)
                raise
            self._items[item.id] = item
        return item

    def items(self) -> list[QueueItem]:
        """The queued messages, oldest first."""
        with self._lock:
            return sorted(self._items.values(), key=lambda i: (i.created_at, i.id))

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)

    def due(self, now: float | None = None) -> list[QueueItem]:
        """The items whose next try is at or before ``now`` (the lab clock by default)."""
        when = self.clock.time() if now is None else now
        return [i for i in self.items() if i.next_attempt_at <= when]

    def next_attempt_at(self) -> float | None:
        """The lab time of the earliest next try, or None when the queue is empty."""
        with self._lock:
            return min((i.next_attempt_at for i in self._items.values()), default=None)

    def history(self, last: int | None = None) -> list[DeliveryAttempt]:
        """The most recent delivery attempts, oldest first (up to 200 are kept)."""
        with self._lock:
            attempts = list(self._history)
        return attempts[-last:] if last else attempts

    def errors(self) -> list[str]:
        """Unexpected failures of the background worker or of loading the queue."""
        with self._lock:
            return list(self._errors)

    def clear(self) -> None:
        """Drop every queued message and the history (the lab's reset)."""
        with self._lock:
            for item_id in list(self._items):
                self._forget(item_id)
            self._history.clear()
            self._errors.clear()

    def describe(self, now: float | None = None) -> QueueTable:
        """The queue as a table for the notebook: what waits, for whom and until when."""
        when = self.clock.time() if now is None else now
        rows = tuple(
            (item.id, item.mail_from or "<>", ", ".join(item.all_recipients),
             str(item.attempts), _when(item.next_attempt_at, when),
             item.last_reply or "not tried yet")
            for item in self.items()
        )
        return QueueTable(
            headers=("id", "from", "waiting recipients", "tries", "next try", "last result"),
            rows=rows, caption=f"Outbound queue ({len(rows)} message(s))",
        )

    def __str__(self) -> str:
        return self.describe().text()

    def _repr_html_(self) -> str:
        return self.describe()._repr_html_()

    def __repr__(self) -> str:
        return f"<Queue {len(self)} message(s) in {self.directory}>"

    # -- running the queue ---------------------------------------------------------------

    def run(self, now: float | None = None, *, force: bool = False) -> list[DeliveryAttempt]:
        """Try every due item (every item with ``force``) once; one result per domain.

        ``now`` is the lab time to act at (default: the lab clock). Blocking: it asks DNS
        and speaks SMTP. Never call it on the lab's event loop, which serves that DNS and
        that SMTP (use a thread, ``loop.run_in_executor`` or :meth:`kick`).
        """
        self._refuse_serving_loop()
        with self._run_lock:
            when = self.clock.time() if now is None else now
            attempts: list[DeliveryAttempt] = []
            for listed in self.items() if force else self.due(when):
                with self._lock:
                    item = self._items.get(listed.id)
                if item is not None:  # None: removed meanwhile (clear())
                    attempts.extend(self._run_item(item, when))
            with self._lock:
                self._history.extend(attempts)
            return attempts

    def flush(self) -> list[DeliveryAttempt]:
        """Try every queued message now, due or not (``postqueue -f``)."""
        return self.run(force=True)

    # -- the background worker -----------------------------------------------------------

    def start(self, *, poll_interval: float = 1.0) -> None:
        """Run due items from a worker thread: every ``poll_interval`` seconds, at once
        after :meth:`kick`, and whenever the lab clock is set or advanced."""
        if self._worker is not None and self._worker.is_alive():
            return
        if not self._following_clock:
            self.clock.on_change(self._clock_changed)
            self._following_clock = True
        self._stopping.clear()
        self._worker = threading.Thread(target=self._work, args=(poll_interval,),
                                        name="mail-labs-queue", daemon=True)
        self._worker.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the worker thread (waits for a run in progress, up to ``timeout``)."""
        self._stopping.set()
        self._wake.set()
        worker, self._worker = self._worker, None
        if worker is not None:
            worker.join(timeout)

    def kick(self) -> None:
        """Ask the worker to run the queue now; safe from any thread and on any loop."""
        self._wake.set()

    def wait_idle(self, timeout: float = 30.0) -> bool:
        """Wait until nothing is due and no run is in progress; False on timeout.

        For notebooks and tests after :meth:`kick` or a submission (needs :meth:`start`).
        """
        deadline = _monotonic() + timeout
        while True:
            remaining = deadline - _monotonic()
            if remaining <= 0 or not self._run_lock.acquire(timeout=remaining):
                return False
            try:
                if not self.due():
                    return True
            finally:
                self._run_lock.release()
            self.kick()
            if self._stopping.wait(0.02) or self._worker is None:
                return False

    def _clock_changed(self, now: float) -> None:
        # Called by LabClock in whichever thread moved the clock (maybe the lab's loop):
        # only wake the worker here, never run the queue.
        upcoming = self.next_attempt_at()
        if upcoming is not None and upcoming <= now:
            self.kick()

    def _work(self, poll_interval: float) -> None:
        while not self._stopping.is_set():
            self._wake.wait(poll_interval)
            self._wake.clear()
            if self._stopping.is_set():
                break
            try:
                if self.due():
                    self.run()
            except Exception as exc:  # noqa: BLE001 - the worker must keep going
                with self._lock:
                    self._errors.append(f"queue run failed: {type(exc).__name__}: {exc}")

    def _refuse_serving_loop(self) -> None:
        if self.serving_loop is None:
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            return
        if running is self.serving_loop():
            raise LabError(
                "Queue.run() was called on the lab's event loop, which serves the DNS and "
                "the MX role it needs: it would wait for itself. Call it from another "
                "thread (await loop.run_in_executor(None, queue.run)) or use queue.kick()."
            )

    # -- one item ------------------------------------------------------------------------

    def _run_item(self, item: QueueItem, now: float) -> list[DeliveryAttempt]:
        try:
            raw = self._path(item.id, ".eml").read_bytes()
        except OSError as exc:
            with self._lock:
                self._errors.append(f"{item.id}: the message file is gone ({exc}); dropped")
                self._forget(item.id)
            return []
        outbound = _outbound_address(self.resolver, item.sender_domain)
        outcomes = [
            self._deliver_domain(item, domain, rcpts, raw, outbound, now)
            for domain, rcpts in item.recipients.items()
        ]
        attempt_no = item.attempts + 1
        pending = {o.domain: tuple(o.pending) for o in outcomes if o.pending}
        last_temporary = next((o.last_temporary for o in outcomes if o.pending), None)

        # Decide when to try again, or give up (RFC 5321 section 4.5.4.1).
        next_at: float | None = None
        expired = False
        if pending:
            age = now - item.created_at
            if age >= self.max_lifetime:
                expired = True
            else:
                delay = self.retry_schedule[min(attempt_no, len(self.retry_schedule)) - 1]
                next_at = min(now + delay, item.created_at + self.max_lifetime)
        for o in outcomes:
            if not o.pending:
                continue
            if expired:
                o.trace.add(
                    f"the message has waited {_duration(now - item.created_at)}, the "
                    f"queue's limit is {_duration(self.max_lifetime)}: give up and return "
                    "it to the sender", kind="decision", rfc=RFC_RETRY)
                for rcpt in o.pending:
                    o.failures.append(FailedRecipient(
                        rcpt, STATUS_EXPIRED, o.last_diagnostic or
                        f"X-Lab; delivery time expired after {attempt_no} tries",
                        o.last_remote, expired=True))
                    o.failed.append((rcpt, o.last_temporary or "delivery time expired"))
                o.pending.clear()
            else:
                assert next_at is not None
                o.trace.add(
                    f"every host failed for now: keep the message in the queue and try "
                    f"again at {_when(next_at, now)} (try {attempt_no} of a schedule "
                    f"{_schedule_text(self.retry_schedule)}, for up to "
                    f"{_duration(self.max_lifetime)})", kind="decision", rfc=RFC_RETRY)

        failures = [f for o in outcomes for f in o.failures]
        bounce_to = self._bounce(item, failures, raw, now, outcomes) if failures else None

        # Store the new state of the item before reporting it.
        with self._lock:
            if item.id in self._items:
                if pending and not expired:
                    assert next_at is not None
                    updated = replace(item, recipients=_frozen_recipients(pending),
                                      attempts=attempt_no, next_attempt_at=next_at,
                                      last_reply=last_temporary)
                    try:
                        _write_atomic(self._path(item.id, ".json"), _encode(updated))
                        self._items[item.id] = updated
                    except OSError as exc:
                        self._errors.append(f"{item.id}: could not save the queue: {exc}")
                else:
                    self._forget(item.id)
        return [o.freeze(item, now, next_at if o.pending else None, bounce_to)
                for o in outcomes]

    def _deliver_domain(self, item: QueueItem, domain: str, rcpts: tuple[str, ...],
                        raw: bytes, outbound: str | None, now: float) -> _Outcome:
        out = _Outcome(domain=domain, recipients=rcpts, pending=list(rcpts))
        trace = out.trace
        sender = item.mail_from or "<>"
        trace.add(f"message {item.id} from {sender} for {', '.join(rcpts)}: try "
                  f"{item.attempts + 1}, queued {_duration(now - item.created_at)} ago",
                  kind="info")

        if self.local_domains is not None and not _is_local(domain, self.local_domains()):
            self._outside_lab(out, domain, "it is not one of the lab's domains")
            return out
        trace.add(f"look up where mail for {domain} goes", kind="query", rfc=RFC_MX)
        found = mx_hosts(domain, self.resolver, rng=self.rng)
        with trace.nested():
            trace.extend(found.trace)
        if found.verdict == "outside-lab":
            self._outside_lab(out, domain, "the lab's DNS serves no zone for it")
            return out
        if not found.deliverable:
            self._no_host(out, found)
            return out

        hosts = [h for h in found.hosts if h.usable]
        trace.add("try the MX hosts in order: " + ", ".join(h.name for h in hosts),
                  kind="decision", rfc=RFC_MX)
        soft_rejects: dict[str, tuple[str, str | None]] = {}
        for position, mx in enumerate(hosts):
            if not out.pending:
                break
            host = mx.name.lower()
            left = len(hosts) - position - 1
            trace.add(f"try {host} (preference {mx.preference})", kind="info")
            with trace.nested():
                if self.faults is not None and self.faults.is_down(host):
                    reply = "connection refused"
                    trace.add(f"{host} is down (a lesson fault): connection refused",
                              kind="error")
                    out.tried.append(HostTry(host, "refused", reply))
                    out.note_temporary(f"connect to {host}: {reply}",
                                       f"X-Lab; connect to {host}: {reply}", None)
                    self._move_on(trace, left, why="could not connect")
                    continue
                self._session(out, host, item, raw, outbound, soft_rejects, left)
        # A 5xx greeting is skipped like a failed connection (Postfix's
        # smtp_skip_5xx_greeting); when no host did better, it is final.
        for rcpt in list(out.pending):
            if rcpt in soft_rejects and rcpt not in out.temporary_rcpts:
                reply, remote = soft_rejects[rcpt]
                out.fail(rcpt, reply, remote)
        if out.failures:
            trace.add("a 5xx reply is a permanent failure: these recipients are returned "
                      "to the sender: " + ", ".join(f.recipient for f in out.failures),
                      kind="decision", rfc=RFC_REPLY)
        if out.delivered:
            trace.add(f"delivered to {out.host} for {', '.join(out.delivered)}", kind="ok")
        return out

    def _session(self, out: _Outcome, host: str, item: QueueItem, raw: bytes,
                 outbound: str | None, soft_rejects: dict[str, tuple[str, str | None]],
                 left: int) -> None:
        """One SMTP session with the MX role, standing for ``host``."""
        trace = out.trace
        helo = f"out.{item.sender_domain}" if item.sender_domain else "out.lab.test"
        rcpts = list(out.pending)
        client = smtplib.SMTP(local_hostname=helo, timeout=self.timeout)

        def said(code: int, text: bytes | str) -> str:
            lines = (text.decode("utf-8", "replace") if isinstance(text, bytes)
                     else text).splitlines() or [""]
            detail = None
            if len(lines) > 1:  # a multi-line reply, as the server sent it
                detail = "\n".join(f"{code}{'-' if i < len(lines) - 1 else ' '}{line}"
                                   for i, line in enumerate(lines))
            trace.add(f"<- {code} {lines[0]}".rstrip(), kind="answer", detail=detail)
            return _reply(code, text)

        def temporary(reply: str, why: str, remote: bool = True,
                      who: list[str] | None = None) -> None:
            out.tried.append(HostTry(host, "temporary", reply))
            diagnostic = f"smtp; {reply}" if remote else f"X-Lab; {reply}"
            out.note_temporary(reply, diagnostic, host if remote else None, who)
            trace.add(f"{why}: a temporary failure", kind="warning", rfc=RFC_REPLY)
            self._move_on(trace, left, why="temporary failure")

        try:
            try:
                port = self.mx_port()
                trace.add(f"connect to {host}: 127.0.0.1 port {port} (the lab's MX role "
                          "answers for every lab MX host name)", kind="info")
                code, text = client.connect("127.0.0.1", port)
            except (OSError, LabError) as exc:
                reply = f"connection failed: {exc}"
                out.tried.append(HostTry(host, "refused", reply))
                out.note_temporary(f"connect to {host}: {reply}",
                                   f"X-Lab; connect to {host}: {reply}", None)
                trace.add(f"cannot connect: {exc}", kind="error")
                self._move_on(trace, left, why="could not connect")
                return
            reply = said(code, text)
            if code != 220:
                if 500 <= code < 600:
                    for rcpt in rcpts:
                        soft_rejects[rcpt] = (reply, host)
                    out.tried.append(HostTry(host, "permanent", reply))
                    trace.add("the server refuses service at the greeting: skip it, as "
                              "Postfix does; final only if no other host takes the message",
                              kind="warning", rfc="RFC 5321 section 3.1")
                    self._move_on(trace, left, why="greeting refused")
                else:
                    temporary(reply, "the greeting is not 220")
                return

            greeted, reply = self._hello(client, helo, trace, said)
            if not greeted:
                if reply.startswith("5"):
                    out.tried.append(HostTry(host, "permanent", reply))
                    for rcpt in rcpts:
                        out.fail(rcpt, reply, host)
                else:
                    temporary(reply, "the server refused our greeting")
                return
            if client.has_extn("xclient"):
                if outbound:
                    command = f"ADDR={outbound} HELO={helo}"
                    trace.add(f"-> XCLIENT {command}", kind="query", rfc=RFC_XCLIENT,
                              detail=f"the MX role offers XCLIENT: it will see this client "
                                     f"as {helo} [{outbound}], the sending organisation's "
                                     "outbound host, instead of 127.0.0.1")
                    code, text = client.docmd("XCLIENT", command)
                    reply = said(code, text)
                    if 200 <= code < 300:
                        # Postfix answers XCLIENT with a new greeting: say EHLO again.
                        greeted, reply = self._hello(client, helo, trace, said)
                        if not greeted:
                            temporary(reply, "the server refused EHLO after XCLIENT")
                            return
                    elif 400 <= code < 500:
                        temporary(reply, "XCLIENT failed")
                        return
                    else:
                        trace.add("XCLIENT refused: go on as 127.0.0.1", kind="warning")
                else:
                    trace.add(f"{helo} has no IPv4 address in the lab's DNS: no XCLIENT, the "
                              "MX role sees 127.0.0.1", kind="warning")

            if not client.has_extn("smtputf8") and not all(
                    a.isascii() for a in [item.mail_from, *rcpts]):
                reply = ("553 5.6.7 the addresses are not ASCII and the server does not "
                         "offer SMTPUTF8")
                trace.add(reply, kind="error", rfc="RFC 6531 section 3.5")
                out.tried.append(HostTry(host, "permanent", reply))
                for rcpt in rcpts:
                    out.fail(rcpt, reply, None, diagnostic=f"X-Lab; {reply}")
                return
            options = self._mail_options(client, item, raw, rcpts)
            mail_from = item.mail_from
            trace.add(f"-> MAIL FROM:<{mail_from}>{''.join(' ' + o for o in options)}",
                      kind="query")
            code, text = client.mail(mail_from, options)
            reply = said(code, text)
            if 400 <= code < 500 or not 200 <= code < 600:
                temporary(reply, "MAIL FROM was deferred")
                return
            if code >= 500:
                out.tried.append(HostTry(host, "permanent", reply))
                for rcpt in rcpts:
                    out.fail(rcpt, reply, host)
                return

            accepted: list[str] = []
            deferred: list[str] = []
            for rcpt in rcpts:
                trace.add(f"-> RCPT TO:<{rcpt}>", kind="query")
                code, text = client.rcpt(rcpt)
                reply = said(code, text)
                if 200 <= code < 300:
                    accepted.append(rcpt)
                elif 500 <= code < 600:
                    out.fail(rcpt, reply, host)
                else:
                    deferred.append(rcpt)
                    out.note_temporary(reply, f"smtp; {reply}", host, [rcpt])
            if not accepted:
                with contextlib.suppress(smtplib.SMTPException, OSError):
                    client.rset()
                outcome = "temporary" if deferred else "permanent"
                out.tried.append(HostTry(host, outcome, out.last_temporary or reply))
                if deferred:
                    trace.add("no recipient accepted for now: a temporary failure",
                              kind="warning", rfc=RFC_REPLY)
                    self._move_on(trace, left, why="temporary failure")
                else:
                    trace.add("every recipient refused for good (5xx): no other MX host is "
                              "tried for them", kind="decision", rfc=RFC_REPLY)
                return

            trace.add("-> DATA", kind="query")
            try:
                code, text = client.data(_crlf(raw))
            except smtplib.SMTPDataError as exc:
                reply = said(exc.smtp_code, exc.smtp_error)
                self._data_refused(out, host, accepted, deferred, exc.smtp_code, reply, left)
                return
            trace.add(f"[the message, {len(raw)} bytes, then <CRLF>.<CRLF>]", kind="info")
            reply = said(code, text)
            if 200 <= code < 300:
                out.host = host
                out.delivered.extend(accepted)
                for rcpt in accepted:
                    out.pending.remove(rcpt)
                outcome = "partial" if deferred else "delivered"
                out.tried.append(HostTry(host, outcome, reply))
                out.reply = reply
                if deferred:
                    self._move_on(trace, left, why=f"{len(deferred)} recipient(s) deferred")
            else:
                self._data_refused(out, host, accepted, deferred, code, reply, left)
        except (smtplib.SMTPException, OSError) as exc:
            reply = f"connection lost: {exc}"
            out.tried.append(HostTry(host, "temporary", reply))
            out.note_temporary(reply, f"X-Lab; {host}: {reply}", None)
            trace.add(f"{host}: {reply}", kind="error")
            self._move_on(trace, left, why="connection lost")
        finally:
            with contextlib.suppress(smtplib.SMTPException, OSError):
                client.quit()
            client.close()

    def _data_refused(self, out: _Outcome, host: str, accepted: list[str],
                      deferred: list[str], code: int, reply: str, left: int) -> None:
        if 500 <= code < 600:
            out.tried.append(HostTry(host, "permanent", reply))
            for rcpt in accepted:
                out.fail(rcpt, reply, host)
            if deferred:
                self._move_on(out.trace, left, why=f"{len(deferred)} recipient(s) deferred")
            return
        out.tried.append(HostTry(host, "temporary", reply))
        out.note_temporary(reply, f"smtp; {reply}", host, accepted)
        out.trace.add("the message was not accepted for now: a temporary failure",
                      kind="warning", rfc=RFC_REPLY)
        self._move_on(out.trace, left, why="temporary failure")

    @staticmethod
    def _hello(client: smtplib.SMTP, helo: str, trace: TraceBuilder,
               said: Callable[[int, bytes | str], str]) -> tuple[bool, str]:
        """EHLO, or HELO when EHLO is refused (RFC 5321 section 3.2)."""
        trace.add(f"-> EHLO {helo}", kind="query")
        code, text = client.ehlo(helo)
        reply = said(code, text)
        if code == 250:
            return True, reply
        trace.add(f"-> HELO {helo}", kind="query")
        code, text = client.helo(helo)
        reply = said(code, text)
        return code == 250, reply

    @staticmethod
    def _mail_options(client: smtplib.SMTP, item: QueueItem, raw: bytes,
                      rcpts: list[str]) -> list[str]:
        options: list[str] = []
        if client.has_extn("size"):
            options.append(f"SIZE={len(raw)}")
        if client.has_extn("8bitmime") and any(b > 127 for b in raw):
            options.append("BODY=8BITMIME")
        if client.has_extn("smtputf8") and not all(
                a.isascii() for a in [item.mail_from, *rcpts]):
            options.append("SMTPUTF8")
        return options

    @staticmethod
    def _move_on(trace: TraceBuilder, left: int, *, why: str) -> None:
        if left:
            trace.add(f"{why}: try the next MX host", kind="decision", rfc=RFC_MX)
        else:
            trace.add(f"{why}, and no MX host is left to try", kind="decision", rfc=RFC_MX)

    def _outside_lab(self, out: _Outcome, domain: str, why: str) -> None:
        reply = (f"550 5.7.1 {domain} is outside the lab ({why}); the lab never delivers "
                 "mail to the Internet")
        out.trace.add(f"{domain} is outside the lab: no MX host is tried and no connection "
                      "is made", kind="error")
        for rcpt in out.recipients:
            out.fail(rcpt, reply, None, diagnostic=f"X-Lab; {reply}")
        out.trace.add("a permanent failure: return the message to the sender",
                      kind="decision", rfc=RFC_REPLY)

    def _no_host(self, out: _Outcome, found: MXResult) -> None:
        if found.verdict == "temporary-failure":
            reply = found.smtp_reply or "451 4.4.3 Directory server failure"
            out.note_temporary(reply, f"X-Lab; {reply}", None)
            out.trace.add(f"{found.summary} A DNS failure is temporary.", kind="warning",
                          rfc=RFC_MX)
            return
        if found.verdict == "invalid-name":
            reply = f"501 5.1.3 {found.domain} is not a valid domain name"
        else:
            reply = found.smtp_reply or "550 5.1.2 Bad destination system address"
        out.trace.add(f"{found.summary}", kind="error", rfc=RFC_MX)
        for rcpt in out.recipients:
            out.fail(rcpt, reply, None, diagnostic=f"X-Lab; {reply}")
        out.trace.add("nowhere to deliver: a permanent failure, return the message to the "
                      "sender", kind="decision", rfc=RFC_REPLY)

    # -- bounces (RFC 3464) --------------------------------------------------------------

    def _bounce(self, item: QueueItem, failures: list[FailedRecipient], raw: bytes, now: float,
                outcomes: list[_Outcome]) -> str | None:
        touched = [o for o in outcomes if o.failures]
        if not item.mail_from:
            for o in touched:
                o.trace.add("no bounce: the envelope sender is empty (this message is itself "
                            "a notification), and a bounce to <> could loop",
                            kind="decision", rfc=RFC_NULL_SENDER)
            return None
        sender_domain = item.mail_from.rpartition("@")[2].lower()
        if self.local_domains is not None and not _is_local(sender_domain,
                                                            self.local_domains()):
            for o in touched:
                o.trace.add(f"no bounce: the sender {item.mail_from} is outside the lab",
                            kind="warning", rfc=RFC_BOUNCE)
            return None
        dsn = build_dsn(item, failures, raw, now=now, reporting_mta=_reporting_mta(item))
        try:
            self.store.deliver(item.mail_from, dsn)
        except Exception as exc:  # noqa: BLE001 - a store failure is reported, not raised
            for o in touched:
                o.trace.add(f"the bounce could not be stored for {item.mail_from}: {exc}",
                            kind="error", rfc=RFC_BOUNCE)
            with self._lock:
                self._errors.append(f"{item.id}: bounce to {item.mail_from} failed: {exc}")
            return None
        for o in touched:
            o.trace.add(f"bounce: a delivery status notification from MAILER-DAEMON (envelope "
                        f"sender <>) went to {item.mail_from}'s mailbox", kind="ok",
                        rfc=f"{RFC_DSN}, {RFC_BOUNCE}")
        return item.mail_from

    # -- files ---------------------------------------------------------------------------

    def _path(self, item_id: str, suffix: str) -> Path:
        return self.directory / f"{item_id}{suffix}"

    def _new_id(self) -> str:
        while True:
            candidate = secrets.token_hex(5).upper()
            if candidate not in self._items and not self._path(candidate, ".eml").exists():
                return candidate

    def _forget(self, item_id: str) -> None:
        """Remove an item, envelope first (so a crash between leaves an orphan message,
        which the next load clears, never an envelope without its message)."""
        self._items.pop(item_id, None)
        self._path(item_id, ".json").unlink(missing_ok=True)
        self._path(item_id, ".eml").unlink(missing_ok=True)

    def _load(self) -> None:
        for stray in self.directory.glob(".*.tmp"):
            stray.unlink(missing_ok=True)  # a write that never finished
        for envelope in sorted(self.directory.glob("*.json")):
            try:
                item = QueueItem.from_json(json.loads(envelope.read_text(encoding="utf-8")))
            except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
                self._errors.append(f"{envelope.name} is unreadable ({exc}); set aside")
                envelope.replace(envelope.with_suffix(".json.broken"))
                continue
            if not self._path(item.id, ".eml").exists():
                self._errors.append(f"{envelope.name} has no message; dropped")
                envelope.unlink(missing_ok=True)
                continue
            self._items[item.id] = item
        for message in self.directory.glob("*.eml"):
            if message.stem not in self._items:
                message.unlink(missing_ok=True)  # queued no further than its message


# -- the bounce message ------------------------------------------------------------------


@dataclass(frozen=True)
class FailedRecipient:
    """One recipient a DSN reports: its RFC 3463 status and the diagnostic (``smtp; <the
    server's reply>``, or ``X-Lab; ...`` when the lab itself decided)."""

    recipient: str
    status: str
    diagnostic: str
    remote_mta: str | None
    expired: bool = False


def build_dsn(item: QueueItem, failures: list[FailedRecipient], raw: bytes, *, now: float,
              reporting_mta: str) -> bytes:
    """A delivery status notification (RFC 3464) for the ``failures`` of ``item``.

    ``multipart/report; report-type=delivery-status`` (RFC 6522) with three parts: a
    human-readable explanation, the ``message/delivery-status`` fields (per message:
    Reporting-MTA, Arrival-Date; per recipient: Final-Recipient, Action: failed, Status,
    Remote-MTA, Diagnostic-Code, Last-Attempt-Date) and the original headers as
    ``text/rfc822-headers``. It is from MAILER-DAEMON and is sent with an empty envelope
    sender, so that it never causes a bounce itself (RFC 5321 section 4.5.5).
    """
    when = _rfc5322_date(now)
    lines = [
        f"This is the mail system at host {reporting_mta}.",
        "",
        "I'm sorry to have to inform you that your message could not",
        "be delivered to one or more recipients. Its headers are attached below.",
        "",
    ]
    for f in failures:
        where = f" (host {f.remote_mta} said)" if f.remote_mta else ""
        why = f.diagnostic.partition(";")[2].strip()
        note = " The message was too old to keep trying." if f.expired else ""
        lines.append(f"<{f.recipient}>{where}: {why}{note}")
    human = _text_part("\n".join(lines) + "\n", "plain")
    human["Content-Description"] = "Notification"

    per_message = Message()
    per_message["Reporting-MTA"] = f"dns; {reporting_mta}"
    per_message["X-Lab-Queue-ID"] = item.id
    per_message["Arrival-Date"] = _rfc5322_date(item.created_at)
    blocks = [per_message]
    for f in failures:
        block = Message()
        block["Final-Recipient"] = f"rfc822; {f.recipient}"
        block["Action"] = "failed"
        block["Status"] = f.status
        if f.remote_mta:
            block["Remote-MTA"] = f"dns; {f.remote_mta}"
        block["Diagnostic-Code"] = f.diagnostic
        block["Last-Attempt-Date"] = when
        blocks.append(block)
    status = MIMEBase("message", "delivery-status")
    del status["MIME-Version"]
    status.set_payload(blocks)  # type: ignore[arg-type]  # a list of header blocks
    status["Content-Description"] = "Delivery report"

    head = re.split(rb"\r?\n\r?\n", raw, maxsplit=1)[0]
    headers = _text_part(head.decode("utf-8", "replace").replace("\r\n", "\n") + "\n",
                         "rfc822-headers")
    headers["Content-Description"] = "Undelivered Message Headers"

    report = MIMEMultipart("report", report_type="delivery-status")
    report["From"] = f"Mail Delivery System <MAILER-DAEMON@{reporting_mta}>"
    report["To"] = item.mail_from
    report["Subject"] = "Undelivered Mail Returned to Sender"
    report["Date"] = when
    report["Message-ID"] = f"<{item.id}.{secrets.token_hex(4)}@{reporting_mta}>"
    report["Auto-Submitted"] = "auto-replied"  # RFC 3834: no vacation replies to this
    for part in (human, status, headers):
        del part["MIME-Version"]
        report.attach(part)
    return report.as_bytes(policy=report.policy.clone(linesep="\r\n"))


# -- small helpers -----------------------------------------------------------------------


@dataclass
class _Outcome:
    """What happened to one domain of one item in this run (mutable while it runs)."""

    domain: str
    recipients: tuple[str, ...]
    pending: list[str]
    trace: TraceBuilder = field(default_factory=TraceBuilder)
    tried: list[HostTry] = field(default_factory=list)
    delivered: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)
    failures: list[FailedRecipient] = field(default_factory=list)
    temporary_rcpts: set[str] = field(default_factory=set)
    host: str | None = None
    reply: str | None = None
    last_temporary: str | None = None
    last_diagnostic: str | None = None
    last_remote: str | None = None

    def fail(self, rcpt: str, reply: str, remote: str | None, *,
             diagnostic: str | None = None) -> None:
        if rcpt not in self.pending:
            return
        self.pending.remove(rcpt)
        self.failed.append((rcpt, reply))
        self.failures.append(FailedRecipient(rcpt, _status_of(reply),
                                      diagnostic or f"smtp; {reply}", remote))
        self.reply = reply

    def note_temporary(self, reply: str, diagnostic: str, remote: str | None,
                       rcpts: Iterable[str] | None = None) -> None:
        self.last_temporary = reply
        self.last_diagnostic = diagnostic
        self.last_remote = remote
        self.reply = reply
        self.temporary_rcpts.update(self.pending if rcpts is None else rcpts)

    def freeze(self, item: QueueItem, now: float, next_at: float | None,
               bounce_to: str | None) -> DeliveryAttempt:
        if self.pending:
            verdict = "deferred"
        elif self.failed:
            verdict = "bounced"
        else:
            verdict = "delivered"
        summary = _summary(self, verdict, next_at, now)
        return DeliveryAttempt(
            verdict=verdict, summary=summary, trace=self.trace.freeze(), item_id=item.id,
            domain=self.domain, mail_from=item.mail_from, recipients=self.recipients,
            at=now, host=self.host, tried=tuple(self.tried), delivered=tuple(self.delivered),
            failed=tuple(self.failed), deferred=tuple(self.pending), reply=self.reply,
            next_attempt_at=next_at, bounce_to=bounce_to if self.failures else None,
        )


def _summary(out: _Outcome, verdict: str, next_at: float | None, now: float) -> str:
    parts: list[str] = []
    if out.delivered:
        parts.append(f"Delivered to {', '.join(out.delivered)} through {out.host}.")
    if out.failed:
        why = "; ".join(f"{r}: {reply}" for r, reply in out.failed)
        parts.append(f"Returned to the sender: {why}.")
    if verdict == "deferred":
        hosts = ", ".join(t.host for t in out.tried) or "no host"
        parts.append(f"Not yet delivered to {', '.join(out.pending)} (tried {hosts}; "
                     f"{out.last_temporary or 'temporary failure'}); next try "
                     f"{_when(next_at, now) if next_at is not None else 'later'}.")
    return " ".join(parts)


def _text_part(text: str, subtype: str) -> MIMEText:
    """A text part readable in the raw source: 7bit ASCII, else quoted-printable UTF-8."""
    if text.isascii():
        return MIMEText(text, subtype, "us-ascii")
    charset = email.charset.Charset("utf-8")
    charset.body_encoding = email.charset.QP
    return MIMEText(text, subtype, charset)  # type: ignore[arg-type]


def _frozen_recipients(mapping: Mapping[str, tuple[str, ...]]
                       ) -> Mapping[str, tuple[str, ...]]:
    return MappingProxyType(dict(mapping))


def _encode(item: QueueItem) -> bytes:
    return (json.dumps(item.to_json(), indent=1) + "\n").encode("utf-8")


def _write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that a crash leaves the old file or the new one,
    never a part: write a hidden temporary file, fsync it, rename it over ``path``,
    then fsync the directory so the rename itself survives a power cut."""
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(3)}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    if hasattr(os, "O_DIRECTORY"):
        dir_fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(dir_fd)
        except OSError:
            pass  # some file systems cannot sync a directory
        finally:
            os.close(dir_fd)


def _outbound_address(resolver: ResolverLike, sender_domain: str) -> str | None:
    """The IPv4 address of ``out.<sender_domain>``, the organisation's outbound host."""
    if not sender_domain:
        return None
    try:
        answer = resolver.resolve(f"out.{sender_domain}", "A")
    except dns.exception.DNSException:
        return None
    for rdata in answer:
        return str(rdata.address)
    return None


def _is_local(domain: str, local: set[str]) -> bool:
    name = domain.lower().rstrip(".")
    wanted = {d.lower().rstrip(".") for d in local}
    return any(name == d or name.endswith("." + d) for d in wanted)


def _reporting_mta(item: QueueItem) -> str:
    return f"out.{item.sender_domain}" if item.sender_domain else "out.lab.test"


def _reply(code: int, text: bytes | str) -> str:
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    return f"{code} {' '.join(text.split())}".strip()


def _status_of(reply: str) -> str:
    """The RFC 3463 status of a reply: its enhanced code, else X.0.0 from its class."""
    code, _, text = reply.partition(" ")
    found = _ENHANCED.match(text)
    if found:
        return ".".join(found.groups())
    return f"{code[:1]}.0.0" if code[:1] in ("4", "5") else "5.0.0"


def _crlf(raw: bytes) -> bytes:
    return re.sub(rb"\r?\n", b"\r\n", raw)


def _rfc5322_date(ts: float) -> str:
    return email.utils.format_datetime(datetime.fromtimestamp(ts, tz=UTC))


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


def _monotonic() -> float:
    return time.monotonic()


__all__ = [
    "MAX_QUEUE_LIFETIME", "RETRY_SCHEDULE", "STATUS_EXPIRED", "DeliveryAttempt", "HostTry",
    "FailedRecipient", "Queue", "QueueItem", "QueueTable", "build_dsn",
]
