"""Helpers that several lessons' exercise checks share: the auth modules they import
when first used (:mod:`labsupport.auth.spf`, :mod:`labsupport.auth.dkim`) and the reading
of a "which letters?" answer.

The verdict type and its helpers (:class:`~labsupport.teach.verdicts.Verdict`,
:func:`~labsupport.teach.verdicts.answer_of`, :func:`~labsupport.teach.verdicts.report`)
live in :mod:`labsupport.teach.verdicts`. Part of :mod:`labsupport.teach.checks`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from types import ModuleType


def _spf() -> ModuleType:
    """labsupport.auth.spf, imported when an SPF check first runs (keeps the import cheap)."""
    from ..auth import spf

    return spf


def _dkim() -> ModuleType:
    """labsupport.auth.dkim, imported when a DKIM check first runs."""
    from ..auth import dkim

    return dkim


def _letters(value: Any) -> set[str] | None:
    if isinstance(value, str):
        return {c for c in value.lower() if c.isalnum()}
    try:
        return {str(v).strip().lower() for v in value}
    except TypeError:
        return None
