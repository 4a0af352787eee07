"""The ``v=...; name=value; ...`` TXT records of MTA-STS and TLS-RPT, split into fields.

Both records have one grammar (RFC 8461 section 3.1, RFC 8460 section 3): a version field
first, then fields separated by ``;`` with optional white space around it (``*WSP ";"
*WSP``), a final ``;`` allowed. :func:`fields_after_version` splits a record so and checks
each piece is ``name=value``; what the names mean is each record's own reader's business
(:mod:`labsupport.mail.mtasts_policy`, :mod:`labsupport.mail.tlsrpt`). Both also pick
their record the same way among the TXT strings of a name (:func:`choose_record`):
strings not beginning with the version are discarded, and exactly one must remain. DKIM's tag lists
are stricter (RFC 6376 section 3.2) and have their reader in
:mod:`labsupport.auth.dkim_taglist`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import TypeVar

from ..core.errors import LabError
from ..core.results import TraceBuilder

R = TypeVar("R")


def fields_after_version(text: str, error: type[LabError], rfc: str) -> list[tuple[str, str]]:
    """The ``(name, value)`` fields of ``text`` after its first (version) field, in order;
    raises ``error`` naming the first piece that is not ``name=value``.

    >>> fields_after_version("v=STSv1; id=20260101;", LabError, "RFC 8461 section 3.1")
    [('id', '20260101')]
    """
    pieces = [piece.strip(" \t") for piece in text.split(";")][1:]
    if pieces and pieces[-1] == "":
        pieces.pop()  # a trailing ";" is allowed
    fields = []
    for piece in pieces:
        name, eq, value = piece.partition("=")
        if not eq or not name:
            raise error(f"{piece!r} in {text!r} is not a name=value field ({rfc})")
        fields.append((name, value))
    return fields


def choose_record(texts: Sequence[str], trace: TraceBuilder, *, name: str, start: re.Pattern[str],
                  version: str, kind: str, rfc: str, parse: Callable[[str], R],
                  error: type[LabError], absent: str, consequence: str
                  ) -> tuple[str, str, R | None]:
    """Pick the ``kind`` record (``"MTA-STS"``, ``"TLS-RPT"``) among the TXT strings
    ``texts`` at ``name``: keep those ``start`` matches (they begin with ``version``),
    require exactly one, and ``parse`` it. Writes each step into ``trace`` and returns
    ``(verdict, summary, record)``: ``"none"`` (no such record; the summary ends with
    ``absent``), ``"invalid"`` (several, or one that ``parse`` refuses with ``error``; the
    summary ends with ``consequence``) or ``"valid"`` with the parsed record and an empty
    summary, for the caller to write."""
    trace.add(f"{len(texts)} TXT record(s) at {name}", kind="info",
              detail="\n".join(texts) or None)
    candidates = [t for t in texts if start.match(t)]
    dropped = len(texts) - len(candidates)
    if dropped:
        trace.add(f"{dropped} record(s) do not begin with '{version}' and are discarded",
                  kind="info", rfc=rfc)
    if not candidates:
        summary = f"{name} has no {kind} record: {absent}."
        trace.add(summary, kind="decision", rfc=rfc)
        return "none", summary, None
    if len(candidates) > 1:
        summary = (f"{name} has {len(candidates)} records beginning with '{version}'; there "
                   f"must be exactly one, so {consequence}.")
        trace.add(summary, kind="error", rfc=rfc)
        return "invalid", summary, None
    try:
        record = parse(candidates[0])
    except error as exc:
        trace.add(str(exc), kind="error", rfc=rfc)
        return "invalid", f"{exc}; {consequence}.", None
    return "valid", "", record


__all__ = ["choose_record", "fields_after_version"]
