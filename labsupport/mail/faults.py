"""Deterministic faults for lessons: "the next RCPT to bob@ gets 451", "mx1 is down".

A lesson does not wait for the Internet to misbehave: it says what goes wrong, where and
how often, and the lab's mail server does exactly that. A :class:`FaultRule` names a stage
of the SMTP dialogue, the reply the server gives there instead of its own, which role it
applies to (the MX role by default), an optional text the stage's argument must contain
(``match="bob@"``), how many times it fires (once by default, ``None`` for ever) and an
optional delay before the reply.

Stages, in the order a session meets them (RFC 5321 section 3):

``delay-banner``
    wait ``delay`` seconds before the greeting (the reply, if any, replaces the greeting);
``banner``
    the greeting itself (``554 5.3.2 No service`` refuses the session, RFC 5321 section
    3.1: the server then answers 503 to everything but QUIT);
``ehlo``
    the reply to EHLO or HELO (its argument is the client's host name);
``mail``, ``rcpt``
    the reply to MAIL FROM or RCPT TO (argument: the address);
``data``
    the reply after the end of the message data (argument: the recipients), so "421 and
    close after DATA" loses the message as a crashing server would.

A reply starting with 421 closes the connection after it is sent (RFC 5321 section 3.8).
The server's own work (relay checks, storage) does not happen when a fault replies with
4xx or 5xx; a 2xx fault reply only changes the text.

Host faults (:meth:`Faults.host_down`) are for the delivering MTA: a host marked down is
skipped as if the connection were refused.

Set from Python (``lab.faults.add(...)``) or on a running lab from a terminal
(``python -m labsupport faults add rcpt "451 4.7.1 Greylisted" --match bob@``).

Introduced in ``notebooks/02-smtp-dialogue.ipynb``.
"""

from __future__ import annotations

import dataclasses
import itertools
import re
import threading
from dataclasses import dataclass
from typing import Any

from ..core.errors import LabError
from ..core.results import html_table, text_table

#: The stages a fault can be attached to, in dialogue order.
STAGES = ("delay-banner", "banner", "ehlo", "mail", "rcpt", "data")
#: The server roles (see :mod:`labsupport.mail.server`); "*" means every role.
ROLES = ("mx", "submission", "submissions", "legacy", "*")
#: An SMTP reply: three digits (RFC 5321 section 4.2), then a space and text, or nothing.
_REPLY = re.compile(r"^[2-5][0-5][0-9]( [^\r\n]*)?$")
#: The longest delay a rule may ask for: long enough for any client timeout lesson.
MAX_DELAY = 600.0


@dataclass(frozen=True)
class FaultRule:
    """One fault: at ``stage`` on ``role``, when the argument contains ``match``
    (case-insensitive), wait ``delay`` seconds and give ``reply``; ``times`` uses (None:
    every time), ``used`` so far."""

    id: int
    stage: str
    reply: str
    match: str | None = None
    times: int | None = 1
    role: str = "mx"
    delay: float = 0.0
    used: int = 0

    @property
    def remaining(self) -> int | None:
        """Uses left (None: unlimited)."""
        return None if self.times is None else max(self.times - self.used, 0)

    @property
    def code(self) -> int:
        """The reply code (0 for a delay-only rule)."""
        return int(self.reply[:3]) if self.reply else 0

    @property
    def closes(self) -> bool:
        """True when the server closes the connection after this reply (421)."""
        return self.code == 421

    def applies(self, stage: str, role: str, argument: str) -> bool:
        if self.stage != stage or self.role not in ("*", role):
            return False
        if self.times is not None and self.used >= self.times:
            return False
        return self.match is None or self.match.lower() in argument.lower()

    def describe(self) -> str:
        where = f"{self.stage} on the {'every' if self.role == '*' else self.role} role"
        when = f" when it contains {self.match!r}" if self.match else ""
        how_often = ("every time" if self.times is None
                     else f"{self.remaining} of {self.times} use(s) left")
        wait = f", after {self.delay:g} s" if self.delay else ""
        reply = self.reply or "(the normal reply)"
        return f"#{self.id} {where}{when}: {reply}{wait} ({how_often})"

    def as_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "remaining": self.remaining}


class Faults:
    """The lab's fault rules and down hosts; thread-safe (the server's loop consumes rules
    while a notebook or the control channel adds them)."""

    HEADERS = ["id", "stage", "role", "match", "reply", "delay", "uses left"]

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._rules: list[FaultRule] = []
        self._ids = itertools.count(1)
        self._down: set[str] = set()

    # -- rules ---------------------------------------------------------------------------

    def add(self, stage: str, reply: str = "", *, match: str | None = None,
            times: int | None = 1, role: str = "mx", delay: float = 0.0) -> FaultRule:
        """Add a rule (see the module docstring) and return it.

        >>> faults = Faults()
        >>> faults.add("rcpt", "451 4.7.1 Greylisted, try again later", match="bob@").id
        1
        """
        stage = stage.strip().lower()
        if stage not in STAGES:
            raise LabError(f"unknown fault stage {stage!r}: use one of {', '.join(STAGES)}")
        if role not in ROLES:
            raise LabError(f"unknown role {role!r}: use one of {', '.join(ROLES)}")
        reply = reply.strip()
        if reply or stage != "delay-banner":
            if not _REPLY.match(reply):
                raise LabError(f"{reply!r} is not an SMTP reply: write a three-digit code "
                               "and a text, e.g. '451 4.7.1 Greylisted, try again later'")
        if times is not None and times < 1:
            raise LabError("times must be 1 or more (or None: every time)")
        if not 0 <= delay <= MAX_DELAY:
            raise LabError(f"delay must be between 0 and {MAX_DELAY:g} seconds")
        if stage == "delay-banner" and not delay:
            raise LabError("a delay-banner fault needs a delay, e.g. delay=5")
        with self._lock:
            rule = FaultRule(id=next(self._ids), stage=stage, reply=reply, match=match or None,
                             times=times, role=role, delay=float(delay))
            self._rules.append(rule)
        return rule

    def take(self, stage: str, role: str, argument: str = "") -> FaultRule | None:
        """The first rule for ``stage`` on ``role`` whose match is in ``argument``, with one
        use consumed, or None. Rules that are used up stay listed until cleared."""
        with self._lock:
            for index, rule in enumerate(self._rules):
                if rule.applies(stage, role, argument):
                    used = dataclasses.replace(rule, used=rule.used + 1)
                    self._rules[index] = used
                    return used
        return None

    def rules(self) -> list[FaultRule]:
        """Every rule, in the order they were added (used-up ones included)."""
        with self._lock:
            return list(self._rules)

    def remove(self, rule_id: int) -> None:
        """Remove one rule by its id."""
        with self._lock:
            before = len(self._rules)
            self._rules = [r for r in self._rules if r.id != rule_id]
            if len(self._rules) == before:
                raise LabError(f"there is no fault rule #{rule_id}")

    def clear(self) -> None:
        """Remove every rule and bring every host back up (``lab.reset()`` calls this)."""
        with self._lock:
            self._rules.clear()
            self._down.clear()

    # -- hosts, for the delivering MTA ---------------------------------------------------

    @staticmethod
    def _host(hostname: str) -> str:
        host = hostname.strip().lower().rstrip(".")
        if not host:
            raise LabError("which host? e.g. mx1.northwind.test")
        return host

    def host_down(self, hostname: str) -> None:
        """Mark ``hostname`` down: the delivering MTA skips it (connection refused)."""
        with self._lock:
            self._down.add(self._host(hostname))

    def host_up(self, hostname: str) -> None:
        """Bring ``hostname`` back."""
        with self._lock:
            self._down.discard(self._host(hostname))

    def is_down(self, hostname: str) -> bool:
        """True when a lesson marked ``hostname`` down."""
        with self._lock:
            return hostname.strip().lower().rstrip(".") in self._down

    def down_hosts(self) -> list[str]:
        with self._lock:
            return sorted(self._down)

    # -- renderings ----------------------------------------------------------------------

    def _rows(self) -> list[list[object]]:
        return [[r.id, r.stage, r.role, r.match or "", r.reply or "(normal)",
                 f"{r.delay:g} s" if r.delay else "",
                 "always" if r.remaining is None else r.remaining]
                for r in self.rules()]

    def __str__(self) -> str:
        text = text_table(self.HEADERS, self._rows()) if self._rules else "no fault rules"
        down = self.down_hosts()
        return text + (f"\nhosts down: {', '.join(down)}" if down else "")

    def __repr__(self) -> str:
        return f"<Faults: {len(self._rules)} rule(s), {len(self._down)} host(s) down>"

    def _repr_html_(self) -> str:
        down = self.down_hosts()
        caption = "Fault rules" + (f" (hosts down: {', '.join(down)})" if down else "")
        return html_table(self.HEADERS, self._rows(), caption=caption)


__all__ = ["Faults", "FaultRule", "STAGES", "ROLES"]
