"""What several explorers share: setting their fields from code. Part of
:mod:`labsupport.teach.widgets`."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any


def field_setter(controls: Mapping[str, Any], state: dict[str, Any],
                 show: Callable[[], None]) -> Callable[..., Any]:
    """A ``panel.set(name=value, ...)`` for an explorer whose ``show()`` redraws it and
    keeps its answer in ``state["result"]``: the fields are set with ``state["quiet"]``
    on (so ``show`` skips the redraws in between), then ``show`` runs once and the new
    result is returned. An unknown field name is a TypeError that lists the known ones."""
    def set_values(**values: Any) -> Any:
        unknown = sorted(set(values) - set(controls))
        if unknown:
            raise TypeError(f"unknown field(s) {', '.join(unknown)}; use {', '.join(controls)}")
        state["quiet"] = True
        try:
            for name, value in values.items():
                controls[name].value = value
        finally:
            state["quiet"] = False
        show()
        return state["result"]
    return set_values


__all__ = ["field_setter"]
