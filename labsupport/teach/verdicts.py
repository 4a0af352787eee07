"""Verdicts that speak in words: the claims behind a lesson's sentences and the shape
every exercise check shares (right, wrong with a hint, or not answered yet).

:func:`claim` and :func:`claim_true` back a sentence of the lesson with the lab's
behaviour: one that holds prints a line that says so; one that stops being true raises
:class:`~labsupport.core.errors.CheckFailed`, so the notebook fails in CI. Exercise
judges return a :class:`Verdict`; :func:`report` prints it. Introduced in
``notebooks/00-start-here.ipynb``.

Under grading (the environment variable ``MAIL_LABS_GRADING`` set to ``1``, as
``grading/nbgrader_config.py`` does for ``nbgrader autograde``) an answer not given yet
raises too, so that its check cell scores nothing; otherwise it only says so, and a
student's "Run All" goes on to the next exercise.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..core.errors import CheckFailed

#: Set to "1" when the notebooks run to be graded (nbgrader autograde).
GRADING_ENV = "MAIL_LABS_GRADING"

PASS = "✔"
FAIL = "✘"
TODO = "…"


def claim(what: str, got: Any, expected: Any) -> None:
    """Assert that ``got == expected`` and say so in words; ``what`` names the fact."""
    if got == expected:
        print(f"{PASS} {what}: {got!r}, as the lesson says.")
        return
    raise CheckFailed(f"{FAIL} {what}: the lesson expects {expected!r}, but the lab gave "
                      f"{got!r}.")


def claim_true(what: str, condition: bool, detail: str = "") -> None:
    """Assert that the sentence ``what`` holds; ``detail`` says what was observed."""
    if condition:
        print(f"{PASS} {what}" + (f" ({detail})" if detail else ""))
        return
    raise CheckFailed(f"{FAIL} Expected: {what}. " + (f"Observed: {detail}." if detail
                                                     else "It does not hold."))


@dataclass(frozen=True)
class Verdict:
    """What an exercise check found: right, wrong (with a hint), or not answered yet."""

    status: str  # "right", "wrong" or "unanswered"
    message: str

    @property
    def right(self) -> bool:
        return self.status == "right"

    def __str__(self) -> str:
        mark = {"right": PASS, "wrong": FAIL}.get(self.status, TODO)
        return f"{mark} {self.message}"

    __repr__ = __str__


def answer_of(get: Callable[[], Any] | Any) -> tuple[bool, Any]:
    """Read a student's answer: ``(False, None)`` when it is not given yet.

    ``get`` is a value or a no-argument callable such as ``lambda: my_answer``; a callable
    that raises NameError (the answer cell did not run) or NotImplementedError (the
    placeholder is still there) means "not answered yet".
    """
    if not callable(get):
        return (get is not Ellipsis and get is not None), get
    try:
        value = get()
    except (NameError, NotImplementedError):
        return False, None
    return (value is not Ellipsis and value is not None), value


def grading() -> bool:
    """Do the notebooks run to be graded (``MAIL_LABS_GRADING=1``)?"""
    return os.environ.get(GRADING_ENV) == "1"


def report(verdict: Verdict) -> None:
    """Print the verdict; raise CheckFailed when the answer is wrong (so CI notices), and
    under grading when it is not given yet (so the check cell scores nothing)."""
    if verdict.status == "wrong" or (verdict.status == "unanswered" and grading()):
        raise CheckFailed(str(verdict))
    print(verdict)
