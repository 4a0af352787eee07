"""The lab's state on disk: the runtime file that says how to reach a running lab, and
the journal of live zone edits that a lab started again on the same state directory
replays.

:class:`LabState` is a part of :class:`labsupport.lab.lab.Lab` (which it is mixed into).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..core.errors import LabError
from ..dns.zone import ZoneSet
from . import control, statedir
from .statedir import RUNTIME_FILE

#: The journal of live zone edits, one JSON object a line, in the state directory.
_EDITS_FILE = "dns-edits.jsonl"


class LabState:
    """The runtime file and the zone-edit journal (a part of
    :class:`~labsupport.lab.lab.Lab`)."""

    # What the lab object holds (made in Lab.__init__ and _start).
    state_dir: Path
    zones: ZoneSet
    _control: control.ControlServer | None
    info: Callable[[], dict[str, Any]]

    def _write_runtime_file(self) -> None:
        assert self._control is not None
        payload = {**self.info(), "control": {"port": self._control.port,
                                              "token": self._control.token}}
        statedir.write_private(self.state_dir / RUNTIME_FILE, json.dumps(payload))  # mode 0600

    def _journal_edit(self, op: dict[str, Any]) -> None:
        path = self.state_dir / _EDITS_FILE
        if op.get("op") == "reset" and op.get("zone") is None:
            path.unlink(missing_ok=True)
            return
        statedir.append_private(path, json.dumps(op) + "\n")

    def _replay_edits(self) -> None:
        path = self.state_dir / _EDITS_FILE
        if not path.exists():
            return
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                self.zones.apply(json.loads(line))
            except (LabError, ValueError, KeyError):
                continue  # an edit that no longer fits the course's zones is dropped


__all__ = ["LabState"]
