"""The one exception root of labsupport, and the errors a student can cause.

Every error that a learner can provoke (a typo in a record, a name outside the lab, a
lab that is not running) derives from :class:`LabError` and carries a sentence that
explains it. In a notebook these errors show that sentence instead of a long traceback.
"""

from __future__ import annotations


class LabError(Exception):
    """Root of every labsupport error: a message meant for a person."""

    def _render_traceback_(self) -> list[str]:
        # IPython calls this instead of printing a traceback: show the sentence only.
        return [f"\x1b[31m{type(self).__name__}: {self}\x1b[0m"]


class ZoneEditError(LabError, ValueError):
    """A live edit of the lab zones could not be made (bad name, type or value)."""


class LabNotRunning(LabError):
    """A command needs a running lab and none was found for the state directory."""


class CheckFailed(LabError, AssertionError):
    """A teaching claim or an exercise check did not hold.

    It is an AssertionError so that test tools treat it as a failure, but its message
    always says in words what was expected and what happened.
    """


class StateDirBusy(LabError):
    """Another running lab holds this state directory."""
