"""The lab's outbound queue: :class:`Queue`, its files, its runs and its worker thread.

The queue keeps each message as two files written atomically, runs the due items on the
lab clock (from a worker thread or a call), decides when to try a message again or give
up on it (RFC 5321 section 4.5.4.1), and returns failures to the sender as a bounce
(RFC 3464). How one recipient domain is delivered (MX look-up and SMTP) is in
:mod:`labsupport.mail.delivery_smtp`. Part of :mod:`labsupport.mail.delivery`.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import secrets
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import replace
from pathlib import Path
from typing import Any

from ..core.clock import LabClock
from ..core.errors import LabError
from ..dns.mx import ResolverLike
from .delivery_dsn import FailedRecipient, _reporting_mta, build_dsn
from .delivery_items import (
    MAX_QUEUE_LIFETIME,
    RETRY_SCHEDULE,
    RFC_BOUNCE,
    RFC_DSN,
    RFC_NULL_SENDER,
    RFC_RETRY,
    SMTP_TIMEOUT,
    STATUS_EXPIRED,
    DeliveryAttempt,
    FaultsLike,
    QueueItem,
    QueueTable,
    StoreLike,
    _duration,
    _frozen_recipients,
    _schedule_text,
    _when,
)
from .delivery_smtp import _DomainDelivery, _is_local, _outbound_address, _Outcome
from .mtasts_fetch import PolicyFetcher

# -- the queue ---------------------------------------------------------------------------


class Queue(_DomainDelivery):
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
    hosts of equal preference. ``mtasts``, a
    :class:`~labsupport.mail.mtasts_fetch.PolicyFetcher`, turns on MTA-STS (RFC 8461):
    domains with an active policy then get only matching MX hosts, over validated TLS.
    ``dane``, the lab's DNS server (``lab.dns``) or a
    :class:`~labsupport.mail.dane_enforce.DaneValidator`, turns on DANE (RFC 7672): MX
    hosts with DNSSEC-signed TLSA records then get mail only over STARTTLS with a
    certificate that matches them.
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
        mtasts: PolicyFetcher | None = None,
        dane: Any = None,
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
        self.mtasts = mtasts
        self.dane = dane
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


# -- small helpers -----------------------------------------------------------------------


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


def _monotonic() -> float:
    return time.monotonic()
