"""Greylisting: the MX role's "come back later" to senders it has not seen before.

Greylisting (RFC 6647) answers the first delivery attempt of an unknown sender with a
temporary failure, ``451 4.7.1``. A real mail server keeps the message and tries again
later, as RFC 5321 section 4.5.4.1 requires of every sender; much bulk software sends
once and never retries. The receiver remembers who it deferred by the triplet most
implementations use: the client's address, the envelope sender and the recipient. A retry
of the same triplet after the delay is accepted, and the triplet is then known: later
mail from it passes at once. That is why the first message from a new correspondent is
late, and the next ones are not.

:class:`Greylist` is that policy, off until a lesson turns it on for some recipient
domains (``lab.smtp.greylist.enable(["campus.test"])``). Its clock is the lab clock, so
``lab.clock.advance(300)`` makes the retry window open at once. Hosts the receiving
organisation trusts (its own outbound servers) are never greylisted. ``lab.reset()``
turns it off and forgets every triplet.

Introduced in ``notebooks/08-troubleshooting.ipynb``.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from ..core.errors import LabError
from ..core.results import html_table, text_table

RFC_GREYLISTING = "RFC 6647"
RFC_RETRY = "RFC 5321 section 4.5.4.1"
#: The default wait before a retry is accepted: five minutes, a common default.
DEFAULT_DELAY = 300.0


@dataclass
class Triplet:
    """What the greylist remembers about one (client address, sender, recipient)."""

    client: str
    sender: str
    recipient: str
    first_seen: float
    attempts: int = 1
    passed_at: float | None = None

    @property
    def known(self) -> bool:
        """True once a retry was accepted: later mail from the triplet passes at once."""
        return self.passed_at is not None


def _key(client: str, sender: str, recipient: str) -> tuple[str, str, str]:
    return (client.strip(), sender.strip().strip("<>").lower(),
            recipient.strip().strip("<>").lower())


class Greylist:
    """The greylisting policy of the lab's MX role (see the module docstring)."""

    def __init__(self, clock: Any) -> None:
        self.clock = clock
        self.delay = DEFAULT_DELAY
        self._domains: set[str] = set()
        self._trusted: set[str] = set()
        self._triplets: dict[tuple[str, str, str], Triplet] = {}
        self._lock = threading.Lock()

    # -- switching it on and off -----------------------------------------------------------

    def enable(self, domains: Iterable[str], *, delay: float = DEFAULT_DELAY,
               trusted: Iterable[str] = ()) -> None:
        """Greylist mail to ``domains``; accept a retry after ``delay`` seconds (lab
        clock); never greylist the client addresses in ``trusted``."""
        wanted = {d.strip().lower().rstrip(".") for d in domains}
        if not wanted or "" in wanted:
            raise LabError("greylisting needs at least one recipient domain, e.g. "
                           "lab.smtp.greylist.enable(['campus.test'])")
        if delay < 0:
            raise LabError(f"delay={delay!r}: the wait before a retry is accepted cannot be "
                           "negative")
        with self._lock:
            self._domains |= wanted
            self._trusted |= {t.strip() for t in trusted}
            self.delay = float(delay)

    def disable(self) -> None:
        """Turn greylisting off and forget every triplet."""
        with self._lock:
            self._domains.clear()
            self._trusted.clear()
            self._triplets.clear()
            self.delay = DEFAULT_DELAY

    @property
    def domains(self) -> list[str]:
        return sorted(self._domains)

    @property
    def enabled(self) -> bool:
        return bool(self._domains)

    # -- the decision ----------------------------------------------------------------------

    def check(self, client: str, sender: str, recipient: str) -> str | None:
        """The reply deferring this RCPT, or None to let it through."""
        domain = recipient.strip().strip("<>").rpartition("@")[2].lower().rstrip(".")
        now = self.clock.time()
        with self._lock:
            if domain not in self._domains or client.strip() in self._trusted:
                return None
            key = _key(client, sender, recipient)
            seen = self._triplets.get(key)
            if seen is None:
                self._triplets[key] = Triplet(*key, first_seen=now)
                return (f"451 4.7.1 Greylisted: this sender is new here, please try again "
                        f"in {self.delay:g} seconds")
            if seen.known:
                return None
            seen.attempts += 1
            waited = now - seen.first_seen
            if waited < self.delay:
                return (f"451 4.7.1 Greylisted: retried too soon ({waited:.0f} of "
                        f"{self.delay:g} seconds), please try again later")
            seen.passed_at = now
            return None

    def triplets(self) -> list[Triplet]:
        """What the greylist remembers, oldest first."""
        with self._lock:
            return sorted(self._triplets.values(), key=lambda t: t.first_seen)

    # -- renderings ------------------------------------------------------------------------

    def _rows(self) -> list[list[object]]:
        rows: list[list[object]] = []
        for t in self.triplets():
            state = (f"known (passed {t.passed_at - t.first_seen:.0f} s after first seen)"
                     if t.passed_at is not None else "deferred")
            rows.append([t.client, t.sender or "<>", t.recipient, t.attempts, state])
        return rows

    def _heading(self) -> str:
        if not self.enabled:
            return "Greylisting is off"
        return (f"Greylisting mail to {', '.join(self.domains)}: a retry is accepted after "
                f"{self.delay:g} s [{RFC_GREYLISTING}]")

    def __str__(self) -> str:
        return self._heading() + "\n" + text_table(
            ["client", "sender", "recipient", "attempts", "state"], self._rows())

    def _repr_html_(self) -> str:
        return html_table(["client", "sender", "recipient", "attempts", "state"],
                          self._rows(), caption=self._heading())

    def __repr__(self) -> str:
        return f"<Greylist {'on for ' + ', '.join(self.domains) if self.enabled else 'off'}>"


__all__ = ["DEFAULT_DELAY", "Greylist", "Triplet"]
