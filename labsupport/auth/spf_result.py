"""SPF results: what check_host() answers, and the trace it keeps on the way.

:class:`SPFResult` is the outcome of one evaluation (RFC 7208 section 4): the result,
one of seven, with the explanation of a fail, every record evaluated, the counters of
section 4.6.4 and the full trace. :class:`SPFNode` is one record in the include/redirect
tree and :class:`TermOutcome` what became of one of its terms.

Two small pieces serve the evaluation while it runs: the trace it writes step by step,
indented under the include or redirect that led there, and the exception that ends it
at once with a permerror or temperror.

The evaluation itself is in :mod:`labsupport.auth.spf_eval`; :mod:`labsupport.auth.spf`
is the public entry point.
"""

from __future__ import annotations

import html
from dataclasses import dataclass, field
from typing import NamedTuple

from ..core.results import Result, Step, html_table
from .spf_record import (
    MAX_DNS_TERMS,
    MAX_VOID_LOOKUPS,
    RESULT_COLOURS,
    RESULT_MEANINGS,
)

# -- the result -----------------------------------------------------------------------


class SPFNode(NamedTuple):
    """One record evaluated: the top domain, or one reached by include or redirect."""

    number: int
    parent: int | None
    via: str
    term: str | None
    domain: str
    record: str | None
    result: str


class TermOutcome(NamedTuple):
    """What became of one term of one record: matched, did not match, not reached..."""

    node: int
    depth: int
    domain: str
    term: str
    outcome: str


@dataclass(frozen=True, kw_only=True)
class SPFResult(Result):
    """The outcome of check_host() (RFC 7208 section 4) with its full trace.

    ``verdict`` (also ``result``) is one of :data:`RESULTS`. ``explanation`` is set for
    a fail: the domain's ``exp=`` text or the receiver's default. ``records`` lists
    every (domain, record) evaluated, in order; ``mechanism`` is the term that decided,
    in the record of ``mechanism_domain``. ``dns_terms``, ``void_lookups`` and
    ``dns_queries`` are the counters at the end. ``chain`` is the include/redirect tree
    and ``terms`` the outcome of every term. ``identity`` says which identity was checked
    (``"mailfrom"`` or ``"helo"``); ``helo_check`` holds a HELO check made first.
    """

    ip: str
    domain: str
    sender: str
    helo: str | None = None
    identity: str = "mailfrom"
    explanation: str | None = None
    records: tuple[tuple[str, str], ...] = ()
    mechanism: str | None = None
    mechanism_domain: str | None = None
    dns_terms: int = 0
    void_lookups: int = 0
    dns_queries: int = 0
    chain: tuple[SPFNode, ...] = ()
    terms: tuple[TermOutcome, ...] = field(default=(), repr=False)
    helo_check: SPFResult | None = field(default=None, repr=False)

    @property
    def result(self) -> str:
        """The SPF result, one of :data:`RESULTS`."""
        return self.verdict

    @property
    def meaning(self) -> str:
        return RESULT_MEANINGS.get(self.verdict, "")

    def title(self) -> str:
        who = "HELO" if self.identity == "helo" else "MAIL FROM"
        return f"SPF {self.verdict} for {self.domain} ({who}) from {self.ip}"

    def _facts(self) -> list[tuple[str, str]]:
        facts = [("result", f"{self.verdict}: {self.meaning}")]
        if self.explanation is not None:
            facts.append(("explanation", self.explanation))
        if self.mechanism:
            facts.append(("decided by", f"{self.mechanism} (record of {self.mechanism_domain})"))
        for domain, record in self.records:
            facts.append(("record", f"{domain}: {record}"))
        facts.append(("counters", f"{self.dns_terms} of {MAX_DNS_TERMS} DNS-querying terms, "
                                  f"{self.void_lookups} of {MAX_VOID_LOOKUPS} void lookups, "
                                  f"{self.dns_queries} DNS queries"))
        if self.helo_check is not None:
            facts.append(("HELO check", f"{self.helo_check.verdict} for "
                                        f"{self.helo_check.domain}"))
        return facts

    def text(self) -> str:
        lines = [self.title(), f"  {self.summary}"]
        lines.extend(f"  {name}: {value}" for name, value in self._facts()[1:])
        if self.trace:
            lines.append("Trace:")
            lines.extend("  " + step.as_text().replace("\n", "\n  ") for step in self.trace)
        return "\n".join(lines)

    def term_rows(self) -> list[list[object]]:
        return [[("  " * t.depth) + t.domain, t.term, t.outcome] for t in self.terms]

    def _repr_html_(self) -> str:
        colour = RESULT_COLOURS.get(self.verdict, "#888")
        facts = "".join(f"<tr><th style='text-align:left;padding-right:1em'>"
                        f"{html.escape(k)}</th><td style='text-align:left'>{html.escape(v)}"
                        "</td></tr>" for k, v in self._facts())
        table = html_table(["record of", "term", "outcome"], self.term_rows()) \
            if self.terms else ""
        steps = "".join(step.as_html() for step in self.trace)
        return (
            f'<div style="border-left:4px solid {colour};padding-left:8px">'
            f"<b>{html.escape(self.title())}</b><br>{html.escape(self.summary)}"
            f"<table>{facts}</table>{table}"
            f'<details><summary>trace ({len(self.trace)} steps)</summary>'
            f'<div style="margin-top:4px">{steps}</div></details></div>'
        )


# -- the trace of an evaluation, and its early end ----------------------------------------


class _Stop(Exception):
    """permerror or temperror: evaluation ends at once, wherever it is."""

    def __init__(self, result: str, reason: str, rfc: str | None = None) -> None:
        super().__init__(reason)
        self.result = result
        self.reason = reason
        self.rfc = rfc


#: Steps are made without the dataclass __init__ (half the cost, and an evaluation makes
#: a few dozen); every kind used here is one Step accepts. A slotted Step has no
#: __dict__, and then its constructor is used.
_FAST_STEPS = not hasattr(Step, "__slots__")
_new = object.__new__


class _Trace:
    """The steps of one evaluation; ``with trace:`` indents (cheaper than TraceBuilder's
    generator-based context manager, which matters at a few thousand checks a second)."""

    __slots__ = ("steps", "depth", "on")

    def __init__(self, on: bool) -> None:
        self.steps: list[Step] = []
        self.depth = 0
        self.on = on

    def add(self, text: str, kind: str = "info", rfc: str | None = None,
            detail: str | None = None) -> None:
        if self.on:
            if _FAST_STEPS:
                step = _new(Step)
                step.__dict__.update(text=text, kind=kind, depth=self.depth, rfc=rfc,
                                     detail=detail)
            else:
                step = Step(text, kind, self.depth, rfc, detail)
            self.steps.append(step)

    def __enter__(self) -> None:
        self.depth += 1

    def __exit__(self, *exc: object) -> None:
        self.depth -= 1
