"""labsupport.core.results: immutable results, steps and traces, and their renderings."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import pytest

from labsupport.core.results import (
    STEP_MARKS,
    Result,
    Step,
    TraceBuilder,
    html_table,
    text_table,
)


def test_steps_and_results_are_immutable() -> None:
    step = Step("ask DNS", kind="query")
    with pytest.raises(dataclasses.FrozenInstanceError):
        step.text = "changed"  # type: ignore[misc]
    result = Result(verdict="pass", summary="fine", trace=(step,))
    with pytest.raises(dataclasses.FrozenInstanceError):
        result.verdict = "fail"  # type: ignore[misc]
    assert isinstance(result.trace, tuple)


def test_unknown_step_kind_is_rejected() -> None:
    with pytest.raises(ValueError, match="unknown step kind 'shout'"):
        Step("loud", kind="shout")
    with pytest.raises(ValueError, match="unknown step kind"):
        TraceBuilder().add("loud", kind="shout")


@pytest.mark.parametrize("kind", sorted(STEP_MARKS))
def test_every_kind_has_its_mark(kind: str) -> None:
    assert Step("x", kind=kind).as_text() == f"{STEP_MARKS[kind]} x"


def test_step_text_with_depth_rfc_and_detail() -> None:
    step = Step("a host", kind="decision", depth=2, rfc="RFC 5321 section 5.1",
                detail="line one\nline two")
    assert step.as_text() == (
        "    → a host  [RFC 5321 section 5.1]\n"
        "        line one\n"
        "        line two"
    )


def test_step_html_is_escaped_and_indented() -> None:
    step = Step("<script>alert(1)</script>", kind="error", depth=3, rfc="RFC <1>",
                detail="a & b")
    page = step.as_html()
    assert "<script>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "[RFC &lt;1&gt;]" in page and "a &amp; b" in page
    assert "margin-left:4.5em" in page
    assert "#b00020" in page  # errors in red


def test_result_text_lists_the_trace() -> None:
    trace = TraceBuilder()
    trace.add("ask", kind="query")
    with trace.nested():
        trace.add("answer", kind="answer", detail="10 mx1.example.test.")
    result = Result(verdict="mx", summary="Mail goes to mx1.", trace=trace.freeze())
    assert result.title() == "Result: mx"
    assert str(result) == (
        "Result: mx\n"
        "  Mail goes to mx1.\n"
        "Trace:\n"
        "  ? ask\n"
        "    = answer\n"
        "        10 mx1.example.test."
    )
    assert Result(verdict="x", summary="y").text() == "Result: x\n  y"


def test_result_html_is_escaped() -> None:
    result = Result(verdict="<b>", summary="a < b & c", trace=(Step("<i>step</i>"),))
    page = result._repr_html_()
    assert "Result: &lt;b&gt;" in page and "a &lt; b &amp; c" in page
    assert "&lt;i&gt;step&lt;/i&gt;" in page
    assert "<i>" not in page


def test_subclasses_add_fields_and_titles() -> None:
    @dataclass(frozen=True, kw_only=True)
    class Found(Result):
        domain: str

        def title(self) -> str:
            return f"Mail for {self.domain}: {self.verdict}"

    found = Found(verdict="mx", summary="s", domain="northwind.test")
    assert found.text().startswith("Mail for northwind.test: mx")
    assert "Mail for northwind.test: mx" in found._repr_html_()


def test_trace_builder_nests_and_freezes() -> None:
    trace = TraceBuilder()
    trace.add("top")
    with trace.nested():
        trace.add("one down")
        with trace.nested():
            trace.add("two down")
        trace.add("one down again")
    trace.add("top again")
    frozen = trace.freeze()
    assert [s.depth for s in frozen] == [0, 1, 2, 1, 0]
    assert len(trace) == 5
    trace.add("later")
    assert len(frozen) == 5  # a frozen trace does not change afterwards


def test_nesting_ends_even_after_an_error() -> None:
    trace = TraceBuilder()
    with pytest.raises(RuntimeError), trace.nested():
        raise RuntimeError
    assert trace.add("after").depth == 0


def test_trace_builder_extend_nests_another_trace() -> None:
    inner = TraceBuilder()
    inner.add("include", kind="query", rfc="RFC 7208")
    with inner.nested():
        inner.add("inside", kind="answer")
    outer = TraceBuilder(depth=1)
    outer.extend(inner.freeze())
    steps = outer.freeze()
    assert [(s.text, s.depth) for s in steps] == [("include", 1), ("inside", 2)]
    assert steps[0].rfc == "RFC 7208" and steps[0].kind == "query"


def test_tables_are_aligned_and_escaped() -> None:
    text = text_table(["name", "n"], [["a", 1], ["longer", 22]])
    assert text.splitlines() == ["name    n", "------  --", "a       1", "longer  22"]
    page = html_table(["h<1>"], [["<x>"]], caption="c&d")
    assert "h&lt;1&gt;" in page and "&lt;x&gt;" in page and "c&amp;d" in page
    assert "<x>" not in page
    assert "<caption" not in html_table(["h"], [])


def test_event_log_is_bounded_tells_listeners_and_clears() -> None:
    from labsupport.core.results import EventLog

    log: EventLog[int] = EventLog(maxlen=3)
    heard: list[int] = []
    log.on_entry(heard.append)
    for n in range(5):
        log.record(n)
    assert log.entries() == [2, 3, 4] and log.entries(last=2) == [3, 4]
    assert heard == [0, 1, 2, 3, 4] and len(log) == 3
    log.clear()
    assert log.entries() == [] and len(log) == 0
