"""Lesson 10's smuggling console (labsupport/teach/widgets_beyond.py), against the lab's MX
role and the lenient toy server."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

import labsupport
from labsupport.mail.smtp_replies import SMTPUsageError
from labsupport.teach.checks_beyond import LenientServer

pytest.importorskip("ipywidgets")

from labsupport.teach.widgets import smuggling_console  # noqa: E402


@pytest.fixture
def console(clean_lab: labsupport.Lab) -> Iterator[tuple[object, LenientServer]]:
    with LenientServer() as lenient:
        panel = smuggling_console({
            "lab MX": ("127.0.0.1", clean_lab.smtp.port("mx"), clean_lab.mail),
            "lenient": (lenient.host, lenient.port, lenient)}, settle=0.05)
        yield panel, lenient


def test_the_console_sends_on_start_and_on_every_change(
        console: tuple[object, LenientServer], clean_lab: labsupport.Lab) -> None:
    panel, lenient = console
    first = panel.result()  # type: ignore[attr-defined]
    assert (first.variant.name, first.verdict, first.stored) == ("LF.CRLF", "refused", 0)
    assert first.reply.first_line.startswith("554 5.5.2")
    verdict = panel.children[1].value  # type: ignore[attr-defined]
    assert "<b style='color:#2f6f2f'>refused</b>" in verdict
    assert "messages stored by this attempt: <b>0</b>" in verdict
    assert "<summary>the dialogue</summary>" in panel.children[2].value  # type: ignore[attr-defined]
    panel.controls["server"].value = "lenient"  # type: ignore[attr-defined]
    smuggled = panel.result()  # type: ignore[attr-defined]
    assert smuggled.verdict == "smuggled" and smuggled.stored == 2 and lenient.count() == 2
    assert "250 ok; 250 ok; 354 go ahead; 250 2.0.0 queued" in panel.children[1].value  # type: ignore[attr-defined]
    panel.controls["chosen"].value = "CR.CR"  # type: ignore[attr-defined]
    assert panel.result().variant.name == "CR.CR" and lenient.count() == 4  # type: ignore[attr-defined]
    panel.controls["again"].click()  # type: ignore[attr-defined]
    assert lenient.count() == 6
    assert clean_lab.mail.count("carol@campus.test") == 0


def test_set_sends_once_and_refuses_unknown_names(console: tuple[object, LenientServer]) -> None:
    panel, lenient = console
    result = panel.set(chosen="lf.lf", server="lenient")  # type: ignore[attr-defined]
    assert result.verdict == "smuggled" and lenient.count() == 2  # one send, not one per change
    assert panel.set(server="lab MX").verdict == "refused"  # type: ignore[attr-defined]
    with pytest.raises(ValueError, match="no server 'elsewhere'; the servers are lab MX, lenient"):
        panel.set(server="elsewhere")  # type: ignore[attr-defined]
    with pytest.raises(SMTPUsageError, match="no end-of-data variant 'LF.LF.LF'"):
        panel.set(chosen="LF.LF.LF")  # type: ignore[attr-defined]
    with pytest.raises(ValueError, match="give at least one server"):
        smuggling_console({})
