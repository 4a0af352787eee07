"""Results and traces: the one small base every evaluator and client returns.

A :class:`Result` is immutable. It has a ``verdict`` (a short word such as ``"pass"`` or
``"null-mx"``), a ``summary`` sentence that says why, and a ``trace``: the ordered
:class:`Step` objects that led there. A result renders itself as indented text
(``str(result)``), as HTML in a notebook (``_repr_html_``), and subclasses may add a
picture. Protocol code builds a trace with :class:`TraceBuilder` and never prints.

Introduced in ``notebooks/01-dns-mx.ipynb``.
"""

from __future__ import annotations

import html
import threading
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Generic, TypeVar

#: Kinds of step, and the mark each one gets in the text rendering.
STEP_MARKS = {
    "info": "·",
    "query": "?",
    "answer": "=",
    "decision": "→",
    "warning": "!",
    "error": "✘",
    "ok": "✔",
}

_STEP_COLOURS = {
    "query": "#1f5f9f",
    "answer": "#2f6f2f",
    "decision": "#5f2f8f",
    "warning": "#9f6f00",
    "error": "#b00020",
    "ok": "#2f6f2f",
}


@dataclass(frozen=True)
class Step:
    """One step of a trace: what happened, in words.

    ``kind`` is one of :data:`STEP_MARKS`; ``depth`` nests a step under the one before
    (an include inside SPF, an address lookup under its MX host); ``rfc`` names the rule
    being applied ("RFC 5321 section 5.1"); ``detail`` holds verbatim material such as a
    DNS answer or a canonicalized header, shown in a monospaced block.
    """

    text: str
    kind: str = "info"
    depth: int = 0
    rfc: str | None = None
    detail: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in STEP_MARKS:
            raise ValueError(f"unknown step kind {self.kind!r}; use one of {sorted(STEP_MARKS)}")

    def as_text(self) -> str:
        pad = "  " * self.depth
        line = f"{pad}{STEP_MARKS[self.kind]} {self.text}"
        if self.rfc:
            line += f"  [{self.rfc}]"
        if self.detail:
            line += "".join(f"\n{pad}    {d}" for d in self.detail.splitlines())
        return line

    def as_html(self) -> str:
        colour = _STEP_COLOURS.get(self.kind, "inherit")
        rfc = (
            f' <span style="color:#777;font-size:85%">[{html.escape(self.rfc)}]</span>'
            if self.rfc
            else ""
        )
        detail = (
            '<pre style="margin:2px 0 4px 1.5em;padding:2px 6px;background:#f4f4f4;'
            f'font-size:85%">{html.escape(self.detail)}</pre>'
            if self.detail
            else ""
        )
        return (
            f'<div style="margin-left:{1.5 * self.depth}em">'
            f'<span style="color:{colour};font-family:monospace">{STEP_MARKS[self.kind]}</span> '
            f"{html.escape(self.text)}{rfc}{detail}</div>"
        )


@dataclass(frozen=True, kw_only=True)
class Result:
    """An immutable outcome with a verdict, a reason in words and an ordered trace.

    Subclasses add their own fields (``@dataclass(frozen=True, kw_only=True)``) and may
    override :meth:`title` (pictures of results are drawn in :mod:`labsupport.teach.plots`).
    """

    verdict: str
    summary: str
    trace: tuple[Step, ...] = field(default=(), repr=False)

    def title(self) -> str:
        """A one-line heading for renderings."""
        return f"{type(self).__name__}: {self.verdict}"

    def text(self) -> str:
        """The result as indented text: heading, reason, then every step."""
        lines = [self.title(), f"  {self.summary}"]
        if self.trace:
            lines.append("Trace:")
            lines.extend("  " + step.as_text().replace("\n", "\n  ") for step in self.trace)
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.text()

    def _repr_html_(self) -> str:
        steps = "".join(step.as_html() for step in self.trace)
        return (
            '<div style="border-left:4px solid #888;padding-left:8px">'
            f"<b>{html.escape(self.title())}</b><br>{html.escape(self.summary)}"
            f'<div style="margin-top:4px">{steps}</div></div>'
        )


class TraceBuilder:
    """Collects steps while an evaluator works; ``freeze()`` gives the tuple to store.

    >>> t = TraceBuilder()
    >>> t.add("query example.test MX", kind="query")
    >>> with t.nested():
    ...     t.add("answer: 10 mx.example.test.", kind="answer")
    >>> [s.depth for s in t.freeze()]
    [0, 1]
    """

    def __init__(self, depth: int = 0) -> None:
        self._steps: list[Step] = []
        self._depth = depth

    def add(
        self,
        text: str,
        *,
        kind: str = "info",
        rfc: str | None = None,
        detail: str | None = None,
    ) -> Step:
        step = Step(text=text, kind=kind, depth=self._depth, rfc=rfc, detail=detail)
        self._steps.append(step)
        return step

    def extend(self, steps: tuple[Step, ...] | list[Step]) -> None:
        """Append steps from another trace, nested under the current depth."""
        for step in steps:
            self._steps.append(
                Step(
                    text=step.text,
                    kind=step.kind,
                    depth=step.depth + self._depth,
                    rfc=step.rfc,
                    detail=step.detail,
                )
            )

    @contextmanager
    def nested(self) -> Iterator[None]:
        self._depth += 1
        try:
            yield
        finally:
            self._depth -= 1

    def freeze(self) -> tuple[Step, ...]:
        return tuple(self._steps)

    def __len__(self) -> int:
        return len(self._steps)


def html_table(headers: list[str], rows: list[list[object]], caption: str | None = None) -> str:
    """A plain HTML table, every cell escaped; used by results that are lists of things."""
    head = "".join(f"<th style='text-align:left'>{html.escape(h)}</th>" for h in headers)
    body = "".join(
        "<tr>" + "".join(f"<td style='text-align:left'>{html.escape(str(c))}</td>" for c in row)
        + "</tr>"
        for row in rows
    )
    cap = f"<caption style='text-align:left'>{html.escape(caption)}</caption>" if caption else ""
    return f"<table>{cap}<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def text_table(headers: list[str], rows: list[list[object]]) -> str:
    """The same table as aligned plain text."""
    cells = [headers] + [[str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


E = TypeVar("E")


class EventLog(Generic[E]):
    """A bounded, thread-safe log of recent entries with listeners (the DNS server's query
    log and the mail server's log). Subclasses may count entries in :meth:`_counted`."""

    def __init__(self, maxlen: int = 2000) -> None:
        self._entries: deque[E] = deque(maxlen=maxlen)
        self._lock = threading.Lock()
        self._listeners: list[Callable[[E], None]] = []

    def record(self, entry: E) -> None:
        with self._lock:
            self._entries.append(entry)
            self._counted(entry)
        for listener in list(self._listeners):
            listener(entry)

    def _counted(self, entry: E) -> None:
        """Called under the lock for each new entry; counters go here."""

    def on_entry(self, listener: Callable[[E], None]) -> None:
        """Call ``listener(entry)`` for every new entry (``serve`` prints them)."""
        self._listeners.append(listener)

    def entries(self, last: int | None = None) -> list[E]:
        with self._lock:
            items = list(self._entries)
        return items if last is None else items[-last:]

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self._cleared()

    def _cleared(self) -> None:
        """Called under the lock when the log is cleared."""

    def __len__(self) -> int:
        return len(self._entries)
