"""The commands a running lab answers on its control channel, for
``python -m labsupport dns|faults|greylist|queue|clock|reset`` (:mod:`labsupport.lab.cli`).

:class:`LabCommands` is a part of :class:`labsupport.lab.lab.Lab` (which it is mixed
into); the lab registers each method with ``lab.add_command`` and
:mod:`labsupport.lab.control` calls it with the arguments a client sent.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC
from typing import TYPE_CHECKING, Any

from ..core.clock import LabClock
from ..core.errors import LabError, ZoneEditError
from ..dns.zone import ZoneSet
from ..mail.faults import Faults

if TYPE_CHECKING:
    from ..mail.server import MailServer


class LabCommands:
    """The control channel's commands (a part of :class:`~labsupport.lab.lab.Lab`)."""

    # What the lab object holds (made in Lab.__init__ and _setup_mail).
    clock: LabClock
    zones: ZoneSet
    faults: Faults
    smtp: MailServer
    queue: Any
    reset: Callable[[], None]

    def _reset_command(self) -> str:
        self.reset()
        return "the lab is back to its known state"

    def _dns_command(self, action: str, name: str = "", type: str = "",
                     values: list[str] | None = None,
                     zone: str | None = None) -> str:
        values = values or []
        if action in ("add", "set") and not values:
            raise ZoneEditError(f"dns {action} needs a name, a type and at least one value, "
                                "e.g. dns add careless.test MX '20 server.careless.test.'")
        if action == "add":
            for value in values:
                self.zones.add(name, type, value)
        elif action == "set":
            self.zones.set(name, type, *values)
        elif action == "remove":
            self.zones.remove(name, type or None, values[0] if values else None)
        elif action == "reset":
            self.zones.reset(zone)
        elif action == "show":
            if not (zone or name):
                raise LabError(f"show which zone? one of: {', '.join(self.zones.origins)}")
            return self.zones.zone_text(zone or name)
        else:
            raise LabError(f"unknown dns action {action!r}: use add, set, remove, reset or show")
        return "done"

    def _queue_command(self, action: str = "show") -> str:
        """``python -m labsupport queue [show|flush]``: the outbound queue, or try it now."""
        if self.queue is None:
            raise LabError("this lab has no delivery queue")
        if action == "flush":
            attempts = self.queue.flush()
            return "\n\n".join(a.text() for a in attempts) or "the queue is empty"
        if action != "show":
            raise LabError(f"unknown queue action {action!r}: use show or flush")
        return str(self.queue.describe()) if self.queue.items() else "the queue is empty"

    def _faults_command(self, action: str = "list", stage: str = "", reply: str = "",
                        match: str | None = None, times: int | None = 1, role: str = "mx",
                        delay: float = 0.0, host: str = "", rule_id: int | None = None
                        ) -> dict[str, Any]:
        """``python -m labsupport faults add|list|clear|remove|down|up`` on a running lab."""
        if action == "add":
            rule = self.faults.add(stage, reply, match=match, times=times, role=role,
                                   delay=delay)
            done = f"added {rule.describe()}"
        elif action == "clear":
            self.faults.clear()
            done = "every fault rule removed and every host up"
        elif action == "remove":
            if rule_id is None:
                raise LabError("remove which rule? give its number, e.g. faults remove 2")
            self.faults.remove(rule_id)
            done = f"rule #{rule_id} removed"
        elif action == "down":
            self.faults.host_down(host)
            done = f"{host} is down: the delivering MTA gets no connection to it"
        elif action == "up":
            self.faults.host_up(host)
            done = f"{host} is up again"
        elif action == "list":
            done = ""
        else:
            raise LabError(f"unknown faults action {action!r}: use add, list, clear, remove, "
                           "down or up")
        return {"done": done, "rules": [r.as_dict() for r in self.faults.rules()],
                "down": self.faults.down_hosts(), "text": str(self.faults)}

    def _greylist_command(self, action: str = "show", domains: list[str] | None = None,
                          delay: float | None = None) -> str:
        """``python -m labsupport greylist on|off|show`` on a running lab."""
        from ..mail.greylist import DEFAULT_DELAY

        greylist = self.smtp.greylist
        if action == "on":
            greylist.enable(domains or [], delay=DEFAULT_DELAY if delay is None else delay)
            done = f"greylisting mail to {', '.join(greylist.domains)}"
        elif action == "off":
            greylist.disable()
            done = "greylisting is off"
        elif action == "show":
            return str(greylist)
        else:
            raise LabError(f"unknown greylist action {action!r}: use on, off or show")
        return f"{done}\n{greylist}"

    def _clock_command(self, advance: float | None = None, set: str | None = None,
                       freeze: bool = False, real: bool = False) -> str:
        from datetime import datetime

        if real:
            self.clock.reset()
        if set:
            when = datetime.fromisoformat(set)
            if when.tzinfo is None:  # a time without an offset is taken as UTC
                when = when.replace(tzinfo=UTC)
            self.clock.set(when)
        if advance:
            self.clock.advance(advance)
        if freeze:
            self.clock.freeze()
        return self.clock.now().isoformat(timespec="seconds")


__all__ = ["LabCommands"]
