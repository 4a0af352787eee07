"""The lab clock: time that tests and notebooks can set and advance.

Greylisting retries, queue runs, report periods and signature timestamps all ask this
clock, never ``time.time()``, so a notebook can say "an hour passes" and see the effect
at once, and a test can pin the time.

Introduced in ``notebooks/00-start-here.ipynb``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime


class LabClock:
    """A clock that follows real time, shifted by an offset, or stands still.

    >>> clock = LabClock()
    >>> clock.advance(3600)          # an hour passes for the lab
    >>> clock.freeze(at=0)           # stand still at the Unix epoch
    >>> clock.time()
    0.0
    """

    def __init__(self, realtime: Callable[[], float] = time.time) -> None:
        self._realtime = realtime
        self._offset = 0.0
        self._frozen: float | None = None
        self._lock = threading.Lock()
        self._listeners: list[Callable[[float], None]] = []

    def time(self) -> float:
        """Seconds since the Unix epoch, in the lab's time."""
        with self._lock:
            if self._frozen is not None:
                return self._frozen
            return self._realtime() + self._offset

    def now(self) -> datetime:
        """The lab's time as an aware UTC datetime."""
        return datetime.fromtimestamp(self.time(), tz=UTC)

    @property
    def frozen(self) -> bool:
        return self._frozen is not None

    def advance(self, seconds: float) -> None:
        """Move the lab's time forward (never backward) by ``seconds``."""
        if seconds < 0:
            raise ValueError("the lab clock only moves forward; use set() to go back")
        with self._lock:
            if self._frozen is not None:
                self._frozen += seconds
            else:
                self._offset += seconds
        self._notify()

    def set(self, when: datetime | float) -> None:
        """Jump to ``when`` (a datetime, or seconds since the epoch) and keep running."""
        target = when.timestamp() if isinstance(when, datetime) else float(when)
        with self._lock:
            if self._frozen is not None:
                self._frozen = target
            else:
                self._offset = target - self._realtime()
        self._notify()

    def freeze(self, at: datetime | float | None = None) -> None:
        """Stop the clock, at its current time or at ``at``."""
        if at is None:
            current = self.time()
        else:
            current = at.timestamp() if isinstance(at, datetime) else float(at)
        with self._lock:
            self._frozen = current
        self._notify()

    def unfreeze(self) -> None:
        """Let the clock run again from where it stands."""
        with self._lock:
            if self._frozen is not None:
                self._offset = self._frozen - self._realtime()
                self._frozen = None

    def reset(self) -> None:
        """Back to real time."""
        with self._lock:
            self._offset = 0.0
            self._frozen = None
        self._notify()

    def on_change(self, listener: Callable[[float], None]) -> None:
        """Call ``listener(new_time)`` whenever the clock is set or advanced."""
        self._listeners.append(listener)

    def _notify(self) -> None:
        current = self.time()
        for listener in list(self._listeners):
            listener(current)

    def __repr__(self) -> str:
        state = "frozen" if self.frozen else "running"
        return f"<LabClock {self.now().isoformat(timespec='seconds')} {state}>"
